"""A connection's server side as a schedule: what to send, after which client event, how late.

A :class:`Timeline` is the list of :class:`Cue` a :class:`~rtreplay.player.Player` works
through, in order. Each cue holds recorded server frames that go out together, the
:class:`~rtreplay.protocol.Requirement` they wait for (the client event that causes them,
or every client event recorded before them), and when they are due once released: each
frame ``(frame.t - cue.t0) / speed + cue.delay`` seconds after the release (at once
without a ``speed``; never before the frame ahead of it). A cue may also end the
connection (:class:`Ending`), as the recording's server did.

:meth:`Timeline.of` builds the recorded schedule; before a player starts, it can be
changed: :meth:`~Timeline.cut` ends the connection at a frame (a fault, an
interruption), :meth:`~Timeline.delay` makes frames late (latency), :meth:`~Timeline.insert`
adds frames the recording never had (an injected ``error``). Frames are addressed by
their recorded position among the connection's server frames (``ServerFrame.index``).
A cue may carry a :class:`Mark`: a point the player reports when it reaches it (an
injected fault firing), and after which it may send nothing for a while (a stall).
:mod:`rtreplay.faults` and :mod:`rtreplay.latency` make such changes from plain values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .protocol import Requirement

if TYPE_CHECKING:
    from ._index import IndexedConnection, ServerFrame

__all__ = ["Cue", "Ending", "Mark", "Timeline"]


@dataclass(frozen=True, slots=True)
class Ending:
    """Close the connection: with ``code`` and ``reason``, or drop it (``abort``).

    ``t`` is the recorded time of the close (seconds), which paces it like a frame.
    """

    code: int
    reason: str = ""
    abort: bool = False
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Mark:
    """A point of the schedule the player reports when it gets there: an injected fault.

    It comes after the frames of its cue and before the cue's ending. ``t`` is its recorded
    time (seconds), which paces it like a frame; ``label`` says what it is (a fault's
    string form); ``fault`` is the fault itself; ``hold``: seconds nothing more goes out
    once it is reached (``math.inf``: nothing ever again, the connection stays open);
    ``cut``: the connection ends here, so what the recording has after it is not played.
    """

    t: float
    label: str
    fault: object = None
    hold: float = 0.0
    cut: bool = False


@dataclass(frozen=True, slots=True)
class Cue:
    """Recorded server frames sent together once ``requirement`` holds, then maybe an ending.

    ``t0`` is the recorded time (seconds) pacing is measured from: that of the client event
    the requirement names (0 for the connection's start). ``delay`` adds seconds before
    every frame of the cue (and the ending). ``mark``, if any, is reached after the
    frames and before the ending.
    """

    frames: Sequence[ServerFrame]
    requirement: Requirement
    t0: float = 0.0
    delay: float = 0.0
    ending: Ending | None = None
    mark: Mark | None = None


class Timeline:
    """The cues of one connection, in the order they are sent (see the module docstring)."""

    def __init__(self, cues: Sequence[Cue] = ()) -> None:
        self.cues: list[Cue] = list(cues)

    @classmethod
    def of(cls, connection: IndexedConnection) -> Timeline:
        """The recorded schedule: frames with the same requirement grouped, then the close.

        A close by the recorded server comes after the last client event (a dropped
        connection is an ``abort``); a close by the client, or none, ends nothing.
        """
        clients = connection.clients
        cues: list[Cue] = []
        run: list[ServerFrame] = []
        req: Requirement | None = None
        for frame in connection.server:
            r = frame.requirement
            if req is not None and (r.after, r.every, r.also) != (req.after, req.every, req.also):
                cues.append(Cue(run, req, clients[req.after].t if req.after >= 0 else 0.0))
                run = []
            if not run:
                req = r
            run.append(frame)
        if run and req is not None:
            cues.append(Cue(run, req, clients[req.after].t if req.after >= 0 else 0.0))
        close = connection.close
        if close is not None and close.by != "client":
            last = len(clients) - 1
            code = close.code
            if code is None or code == 1006:
                ending = Ending(1006, close.reason, abort=True, t=close.t)
            else:
                ending = Ending(1000 if code == 1005 else code, close.reason, t=close.t)
            cues.append(
                Cue((), Requirement(last, True, "close"), clients[last].t if clients else 0.0, 0.0, ending)
            )
        return cls(cues)

    def copy(self) -> Timeline:
        """A timeline of the same cues, to change without changing this one."""
        return Timeline(self.cues)

    # -- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.cues)

    def __iter__(self) -> Iterator[Cue]:
        return iter(self.cues)

    def frames(self) -> Iterator[ServerFrame]:
        """Every frame of the schedule, in the order it is sent."""
        for cue in self.cues:
            yield from cue.frames

    # -- changing (before a player starts) -------------------------------------------------

    def split(self, index: int) -> int:
        """Make recorded server frame ``index`` the first of a cue; return that cue's position.

        Raises :class:`KeyError` when no frame of the timeline has that recorded position.
        """
        for i, cue in enumerate(self.cues):
            for k, frame in enumerate(cue.frames):
                if frame.index != index:
                    continue
                if k == 0:
                    return i
                head = replace(cue, frames=list(cue.frames[:k]), ending=None, mark=None)
                tail = replace(cue, frames=list(cue.frames[k:]))
                self.cues[i : i + 1] = [head, tail]
                return i + 1
        raise KeyError(f"no server frame {index} in this timeline")

    def split_after(self, index: int) -> int:
        """Make recorded server frame ``index`` the last of a cue; return the position
        right after that cue (where a new cue goes out just after the frame).

        The cue's ending and mark, if any, move to a cue of their own at that position, so
        that what is inserted there comes before them. Raises :class:`KeyError` when no
        frame of the timeline has that recorded position.
        """
        for i, cue in enumerate(self.cues):
            for k, frame in enumerate(cue.frames):
                if frame.index != index:
                    continue
                if k + 1 < len(cue.frames):
                    return self.split(cue.frames[k + 1].index)
                if cue.ending is not None or cue.mark is not None:
                    self.cues[i : i + 1] = [
                        replace(cue, ending=None, mark=None),
                        replace(cue, frames=()),
                    ]
                return i + 1
        raise KeyError(f"no server frame {index} in this timeline")

    def cut(self, index: int, ending: Ending) -> None:
        """Send nothing from recorded frame ``index`` on: end the connection there instead."""
        i = self.split(index)
        cue = self.cues[i]
        self.cues[i:] = [replace(cue, frames=(), ending=ending, mark=None)]

    def delay(self, index: int, seconds: float) -> None:
        """Make recorded frame ``index`` (and the rest of its cue) ``seconds`` later.

        Frames after it are never sent before it, so they wait too, unless they are due
        later anyway.
        """
        if not seconds >= 0:
            raise ValueError(f"a delay is a number of seconds >= 0, not {seconds!r}")
        i = self.split(index)
        self.cues[i] = replace(self.cues[i], delay=self.cues[i].delay + seconds)

    def insert(self, index: int, frames: Sequence[ServerFrame]) -> None:
        """Send ``frames`` (made-up ones: ``ServerFrame(..., data=...)``) right before
        recorded frame ``index``, when it would have been released."""
        i = self.split(index)
        cue = self.cues[i]
        self.cues.insert(i, replace(cue, frames=list(frames), ending=None, mark=None))
