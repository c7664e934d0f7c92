"""Load: many driven sessions at once, and the latency a user of the server would feel.

:func:`load` runs ``concurrency`` copies of a cassette's recorded client at once against
a server, each ``repeat`` times in a row, every one checked as ``rtreplay drive`` checks
one (:mod:`rtreplay.driver`). The recording is read once and shared. The
:class:`LoadReport` says how the sessions went (matched, failed, errors) and what a user
waits for: the opening handshake, the server's first event, each response's first delta
(from the client event that asked for it), each response's whole time; as percentiles, in
milliseconds; and the throughput (sessions and server events per second).

One process drives a few hundred sessions at once (``docs/performance.md``); beyond that,
run the same cassette-driven users under Locust on several machines
(:mod:`rtreplay.locust`).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .drive import Drive
from .driver import DEFAULT_TIMEOUT, Script, check_drive_options, scripts
from .expect import ServerPolicy, resolve_server_policy
from .report import DriveReport

if TYPE_CHECKING:
    from .cassette import Cassette

__all__ = ["LoadReport", "load", "percentile"]

#: Mismatch kinds that mean the server could not be used at all, rather than answered wrong.
ERROR_KINDS = frozenset({"refused", "unreachable", "timeout", "closed"})


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by nearest rank; ``nan`` when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class LoadReport:
    """What a load run found (times in seconds; ``str()`` shows milliseconds).

    ``sessions`` run, of which ``failed`` found a mismatch and ``errors`` could not be
    used (refused, unreachable, silent, closed early); ``mismatches`` counts them by
    kind; ``first_failure`` is the report of the first session that failed.
    """

    source: str | None
    target: str
    concurrency: int
    repeat: int
    sessions: int = 0
    failed: int = 0
    errors: int = 0
    wall: float = 0.0
    connect: list[float] = field(default_factory=list)
    first_event: list[float] = field(default_factory=list)
    first_delta: list[float] = field(default_factory=list)
    response: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    frames_received: int = 0
    client_events: int = 0
    mismatches: Counter[str] = field(default_factory=Counter)
    first_failure: DriveReport | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.sessions > 0

    def add(self, report: DriveReport) -> None:
        self.sessions += 1
        if not report.ok:
            self.failed += 1
            if any(m.kind in ERROR_KINDS for m in report.mismatches):
                self.errors += 1
            self.mismatches.update(m.kind for m in report.mismatches)
            if self.first_failure is None:
                self.first_failure = report
        for p in report.connections:
            if p.connect is not None:
                self.connect.append(p.connect)
            if p.first_event is not None:
                self.first_event.append(p.first_event)
            self.frames_received += p.received
            self.late.append(p.late)
            self.client_events += p.clients_sent
            for r in p.responses:
                if r.first_delta is not None:
                    self.first_delta.append(r.first_delta)
                if r.duration is not None:
                    self.response.append(r.duration)

    def latency(self) -> dict[str, dict[str, float]]:
        """Per measure, its p50, p90, p99 and max, in milliseconds."""
        out: dict[str, dict[str, float]] = {}
        for name, values in (
            ("connect", self.connect),
            ("first_event", self.first_event),
            ("first_delta", self.first_delta),
            ("response", self.response),
            ("late", self.late),
        ):
            out[name] = {
                "count": float(len(values)),
                **{f"p{q}": percentile(values, q) * 1000 for q in (50, 90, 99)},
                "max": (max(values) * 1000) if values else math.nan,
            }
        return out

    def throughput(self) -> dict[str, float]:
        wall = self.wall or math.nan
        return {
            "sessions_per_s": self.sessions / wall,
            "server_frames_per_s": self.frames_received / wall,
            "client_events_per_s": self.client_events / wall,
        }

    def __str__(self) -> str:
        name = f" of {self.source}" if self.source else ""
        lines = [
            f"rtreplay: load{name} against {self.target}: {self.sessions} sessions "
            f"({self.concurrency} at once x {self.repeat}) in {self.wall:.2f} s: "
            f"{self.sessions - self.failed} as recorded, {self.failed} with mismatches"
            + (f" ({self.errors} could not be used)" if self.errors else ""),
            "",
            f"{'latency (ms)':<26}{'count':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}",
        ]
        labels = {
            "connect": "handshake",
            "first_event": "first server event",
            "first_delta": "first delta of a response",
            "response": "whole response",
            "late": "driver behind its pace",
        }
        for key, stats in self.latency().items():
            cells = "".join(f"{_ms(stats[k]):>9}" for k in ("p50", "p90", "p99", "max"))
            lines.append(f"{labels[key]:<26}{int(stats['count']):>7}{cells}")
        t = self.throughput()
        lines.append("")
        lines.append(
            f"throughput: {t['sessions_per_s']:,.1f} sessions/s, "
            f"{t['server_frames_per_s']:,.0f} server frames/s, "
            f"{t['client_events_per_s']:,.0f} client events/s"
        )
        if self.mismatches:
            kinds = ", ".join(f"{k} x{n}" for k, n in self.mismatches.most_common())
            lines.append(f"mismatches by kind: {kinds}")
        if self.first_failure is not None:
            lines.append("")
            lines.append("the first session that failed:")
            lines.append(str(self.first_failure))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "concurrency": self.concurrency,
            "repeat": self.repeat,
            "sessions": self.sessions,
            "failed": self.failed,
            "errors": self.errors,
            "wall_s": self.wall,
            "latency_ms": self.latency(),
            "throughput": self.throughput(),
            "mismatches": dict(self.mismatches),
            "first_failure": None if self.first_failure is None else self.first_failure.to_dict(),
        }


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


async def load(
    cassette: str | os.PathLike[str] | Cassette | Sequence[Script],
    url: str,
    *,
    concurrency: int = 1,
    repeat: int = 1,
    match: str | ServerPolicy = "type",
    speed: float | None = 1.0,
    audio_speed: float | None = 1.0,
    timeout: float = DEFAULT_TIMEOUT,
    api_key: str | None = None,
) -> LoadReport:
    """Drive ``concurrency`` sessions at once against ``url``, each ``repeat`` times.

    The options are :class:`~rtreplay.drive.Drive`'s. Raises :class:`ValueError` for a
    concurrency or repeat below 1 and for bad drive options; the cassette errors of
    :func:`rtreplay.load`.
    """
    for name, value in (("concurrency", concurrency), ("repeat", repeat)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
    check_drive_options(speed, audio_speed, timeout)
    policy = resolve_server_policy(match)
    prepared = list(cassette) if isinstance(cassette, (list, tuple)) else scripts(cassette)  # type: ignore[arg-type]
    source = prepared[0].source if prepared else None
    result = LoadReport(source, url, concurrency, repeat)
    options: dict[str, Any] = dict(
        match=policy, speed=speed, audio_speed=audio_speed, timeout=timeout, api_key=api_key
    )
    result.target = Drive(prepared, url, **options).report.target

    async def user(k: int) -> None:
        for _ in range(repeat):
            report = await Drive(prepared, url, conn_offset=0, **options).run()
            result.add(report)

    started = time.perf_counter()
    await asyncio.gather(*(user(k) for k in range(concurrency)))
    result.wall = time.perf_counter() - started
    return result
