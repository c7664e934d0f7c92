"""Latency profiles: how slowly each response's deltas arrive, deterministic under a seed.

``speed`` replays the recording's own pacing, faster or slower. A :class:`Latency` makes
up a pacing instead, to test how a client handles a slow model: the time to the first
delta of each response (``ttft``), the pace of the deltas after it (``rate`` deltas a
second; output audio at ``audio_speed`` times real time), and ``jitter``, a random extra
wait drawn from a generator seeded with ``seed`` and the connection's number, so a run
is the same every time. The server sleeps, never the test.

Written as a string on the command line and in markers (``ttft=0.8,rate=20,jitter=0.05``),
read by :meth:`Latency.parse`, written back by ``str()``. :func:`apply_latency` is a pure
function from a recorded :class:`~rtreplay.timeline.Timeline` to a new one.

**What is paced.** A response's deltas are its ``response.*.delta`` events (text, audio,
audio transcript, function call arguments). Its frames before the first delta
(``response.created``, ``response.output_item.added``...) go when the response is
released, as recorded; the first delta ``ttft`` seconds later; each next delta after the
previous one's cost: ``1 / rate`` seconds, or for an output audio delta, its duration
divided by ``audio_speed`` when that is given. Frames between two deltas go with the one
before them (the ``*.done`` events follow the last delta). Every wait gets a jitter of
``uniform(0, jitter)`` seconds. With a ``speed`` as well, these waits add to the recorded
pacing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from .timeline import Cue, Timeline

if TYPE_CHECKING:
    from ._index import ServerFrame

__all__ = ["AUDIO_DELTAS", "Latency", "apply_latency", "is_delta", "parse_latency"]

#: Output audio deltas (GA and beta names), paced by their duration under ``audio_speed``.
AUDIO_DELTAS = frozenset({"response.output_audio.delta", "response.audio.delta"})
_CREATED = "response.created"

SYNTAX = "ttft=SECONDS,rate=DELTAS_PER_SECOND,audio_speed=FACTOR,jitter=SECONDS,seed=N"


def is_delta(kind: str | None) -> bool:
    """Whether a server event type is a response's delta (``response.*.delta``)."""
    return kind is not None and kind.startswith("response.") and kind.endswith(".delta")


@dataclass(frozen=True)
class Latency:
    """A made-up pacing of responses (see the module docstring).

    ``ttft``: seconds from a response's release to its first delta. ``rate``: deltas a
    second after the first (``None``: no wait between deltas). ``audio_speed``: output
    audio arrives this many times faster than it plays (1.0: as fast as a listener hears
    it; ``None``: audio deltas are paced by ``rate`` like the others). ``jitter``: seconds,
    the most a random extra wait adds to each. ``seed``: the jitter's seed. Every value is
    ``>= 0`` (``rate`` and ``audio_speed`` ``> 0``); bad ones raise :class:`ValueError`.
    """

    ttft: float = 0.0
    rate: float | None = None
    audio_speed: float | None = None
    jitter: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ttft", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"latency {name} is a number of seconds >= 0, not {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("rate", "audio_speed"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
                raise ValueError(f"latency {name} is a number > 0 (or None), not {value!r}")
            object.__setattr__(self, name, float(value))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"latency seed is a whole number, not {self.seed!r}")

    @classmethod
    def parse(cls, text: str) -> Latency:
        """Read ``ttft=0.8,rate=20,audio_speed=1,jitter=0.05,seed=1`` (any of them, any order).

        Raises :class:`ValueError` naming the string and the part that is wrong.
        """
        values: dict[str, Any] = {}
        names = [f.name for f in fields(cls)]
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in names:
                raise ValueError(f"latency {text!r}: {part!r} is not NAME=VALUE with NAME one of {', '.join(names)} ({SYNTAX})")
            if name in values:
                raise ValueError(f"latency {text!r}: {name} is given twice")
            try:
                values[name] = int(raw) if name == "seed" else float(raw)
            except ValueError:
                raise ValueError(f"latency {text!r}: {name} must be a number, not {raw.strip()!r}") from None
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{exc} (in {text!r})") from None

    def __str__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                parts.append(f"{f.name}={value:g}" if isinstance(value, float) else f"{f.name}={value}")
        return ",".join(parts) or "ttft=0"

    def random(self, conn: int) -> random.Random:
        """The jitter's generator for live connection ``conn``: the same every run."""
        return random.Random(f"rtreplay-latency:{self.seed}:{conn}")


def parse_latency(value: Latency | str | Mapping[str, Any] | None) -> Latency | None:
    """A :class:`Latency` from itself, its string, or a mapping of its fields; ``None`` stays.

    Raises :class:`ValueError` for anything else.
    """
    if value is None or isinstance(value, Latency):
        return value
    if isinstance(value, str):
        return Latency.parse(value)
    if isinstance(value, Mapping):
        names = {f.name for f in fields(Latency)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"latency got unknown keys {unknown}; valid: {', '.join(sorted(names))}")
        return Latency(**value)
    raise ValueError(f"latency is a Latency, a string such as 'ttft=0.8,rate=20' or a dict, not {value!r}")


def apply_latency(
    timeline: Timeline,
    latency: Latency,
    *,
    conn: int = 0,
    audio_seconds: Callable[[ServerFrame], float] | None = None,
) -> Timeline:
    """A new timeline: ``timeline`` with each response's deltas paced by ``latency``.

    Pure: ``timeline`` is not changed, and the same arguments give the same result.
    ``conn`` (the live connection's number) seeds the jitter. ``audio_seconds`` gives an
    output audio delta's duration in seconds (its ``delta`` decoded, in the session's
    output format); without it, audio deltas are paced by ``rate`` like the others.
    """
    rng = latency.random(conn)

    def wait(seconds: float) -> float:
        return seconds + (rng.uniform(0.0, latency.jitter) if latency.jitter else 0.0)

    delays: dict[int, float] = {}
    clock: float | None = None
    for f in timeline.frames():
        kind = f.type
        if kind == _CREATED:
            clock = None
        if f.index < 0 or not is_delta(kind):
            continue
        if clock is None:
            clock = wait(latency.ttft)
        delays[f.index] = clock
        clock += wait(_cost(f, latency, audio_seconds))
    if not delays:
        return timeline.copy()
    cues: list[Cue] = []
    for cue in timeline.cues:
        run: list[ServerFrame] = []
        delay = cue.delay
        for f in cue.frames:
            d = delays.get(f.index)
            if d is not None:
                if run:
                    cues.append(replace(cue, frames=run, delay=delay, ending=None, mark=None))
                    run = []
                delay = cue.delay + d
            run.append(f)
        cues.append(replace(cue, frames=run, delay=delay))
    return Timeline(cues)


def _cost(
    frame: ServerFrame, latency: Latency, audio_seconds: Callable[[ServerFrame], float] | None
) -> float:
    """How long the next delta waits after this one."""
    if frame.type in AUDIO_DELTAS and latency.audio_speed is not None and audio_seconds is not None:
        return audio_seconds(frame) / latency.audio_speed
    return 1.0 / latency.rate if latency.rate is not None else 0.0
