"""The replay report: what a replay found, as plain data.

A :class:`ReplayReport` holds, for a whole cassette:

- :attr:`~ReplayReport.mismatches`: each :class:`Mismatch` (its :data:`MismatchKind`, where
  in the conversation, what was expected and what came);
- :attr:`~ReplayReport.audio`: each :class:`AudioDifference` accepted within the audio
  tolerance (a different amount of audio that was not a mismatch);
- :attr:`~ReplayReport.reorderings`: each :class:`Reordering` (a client event accepted
  ahead of the recorded order);
- :attr:`~ReplayReport.connections`: a :class:`ConnectionProgress` per connection a client
  opened, from which :attr:`~ReplayReport.unplayed` lists what was never played.

``str(report)`` is the readable text the CLI and the pytest plugin show. The replay core
writes it (:class:`~rtreplay.replay.ReplaySession` for handshakes, each
:class:`~rtreplay.player.Player` for its connection) through the ``add_*`` methods; anyone
may read it at any time, from any thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .match import Difference, format_value

if TYPE_CHECKING:
    from ._index import ClientFrame, IndexedConnection

__all__ = [
    "KEPT",
    "AudioDifference",
    "ConnectionProgress",
    "Failure",
    "Mismatch",
    "MismatchKind",
    "Reordering",
    "ReplayReport",
    "Unplayed",
]

#: What went wrong. ``"unexpected"``: no recorded event of that type was due;
#: ``"content"``: the expected type, other content; ``"id"``: an echoed ID is not the one
#: handed out; ``"rule"``: a user rule said no; ``"audio"``: a different amount (beyond the
#: audio tolerance) or content of audio; ``"after_end"``: the recording has no more client
#: events; ``"stall"``: the replay held server events for a client that sent nothing for
#: the stall timeout; ``"handshake"``: the connection request differs;
#: ``"no_connection"``: more connections than recorded (or none of the right protocol).
MismatchKind = Literal[
    "unexpected",
    "content",
    "id",
    "rule",
    "audio",
    "after_end",
    "stall",
    "handshake",
    "no_connection",
]


@dataclass(frozen=True)
class Mismatch:
    """A client event (or silence) that did not match the recording, and where it happened.

    ``conn`` is the live connection (numbered from 0 in order of arrival),
    ``recorded_conn`` the recorded one it replays; ``index`` the recorded client event it
    was compared with or waited for (0-based) of ``total``; ``expected`` and ``got`` the
    events, masked fields left out; ``after`` the last client events matched before it,
    ``last_sent`` the last server event released before it. A ``"stall"`` also names the
    server event it holds (``held``) and the last message the client sent
    (``last_received``).
    """

    kind: MismatchKind
    conn: int
    recorded_conn: int | None
    turn: int
    index: int | None
    total: int
    expected: Any
    got: Any
    message: str
    differences: tuple[Difference, ...] = ()
    after: tuple[str, ...] = ()
    last_sent: str | None = None
    held: str | None = None
    last_received: str | None = None

    @property
    def where(self) -> str:
        rec = "" if self.recorded_conn is None else f" (recorded connection {self.recorded_conn})"
        at = f"connection {self.conn}{rec}, turn {self.turn}"
        if self.index is not None:
            at += f", client event {self.index + 1} of {self.total}"
        return at

    @property
    def summary(self) -> str:
        """One line: where, and what went wrong."""
        return f"{self.where}: {self.message}"

    def __str__(self) -> str:
        lines = [self.summary]
        if self.after or self.last_sent:
            after = ", ".join(self.after) if self.after else "(nothing yet)"
            sent = f"; last server event sent: {self.last_sent}" if self.last_sent else ""
            lines.append(f"  after: {after}{sent}")
        if self.held is not None:
            lines.append(f"  holds:    {self.held}")
        if self.kind == "stall" or (self.kind == "audio" and self.held is not None):
            lines.append(f"  awaits:   {_show_event(self.expected)}")
            lines.append(f"  last received from the client: {self.last_received or '(nothing)'}")
        elif self.kind not in ("audio", "handshake", "no_connection"):
            lines.append(f"  expected: {_show_event(self.expected)}")
            lines.append(f"  got:      {_show_event(self.got)}")
        if self.differences:
            lines.append("  differences (masked fields left out):")
            lines.extend(f"    {d}" for d in self.differences[:20])
            if len(self.differences) > 20:
                lines.append(f"    ... and {len(self.differences) - 20} more")
        return "\n".join(lines)


def _show_event(event: Any) -> str:
    if event is None:
        return "(nothing)"
    return format_value(event, limit=200)


@dataclass(frozen=True)
class AudioDifference:
    """An amount of audio that differed from the recording but within the audio tolerance.

    ``where`` says at which point of the stream (``"before input_audio_buffer.commit"``,
    ``"at the end of the audio"``...); amounts are milliseconds of audio.
    """

    conn: int
    recorded_conn: int
    turn: int
    where: str
    expected_ms: float
    got_ms: float
    tolerance_ms: float

    def __str__(self) -> str:
        diff = self.got_ms - self.expected_ms
        more = "more" if diff > 0 else "less"
        return (
            f"connection {self.conn} (recorded connection {self.recorded_conn}), turn "
            f"{self.turn}: {abs(diff):,.0f} ms {more} audio than recorded {self.where} "
            f"({self.got_ms:,.0f} ms sent, {self.expected_ms:,.0f} ms recorded); accepted, "
            f"within the {self.tolerance_ms:,.0f} ms audio tolerance"
        )


@dataclass(frozen=True)
class Reordering:
    """A client event accepted ahead of the recorded order."""

    conn: int
    recorded_conn: int
    expected: str  # the recorded event that was due
    got: str  # the later recorded event it matched
    index: int

    def __str__(self) -> str:
        return (
            f"connection {self.conn}: {self.got} (client event {self.index + 1}) arrived "
            f"before {self.expected}; accepted"
        )


@dataclass(frozen=True)
class Unplayed:
    """What one connection of the recording still held when the replay ended."""

    conn: int | None  # the live connection, None when no client ever got this one
    recorded_conn: int
    events: tuple[str, ...]  # recorded client events never received, grouped
    missing: int  # how many recorded client events that is
    frames: int  # recorded server frames never sent

    def __str__(self) -> str:
        who = f"connection {self.conn} (recorded connection {self.recorded_conn})"
        if self.conn is None:
            who = f"recorded connection {self.recorded_conn} was never connected to"
            return f"{who} ({self.missing} client events, {self.frames} server frames)"
        parts = []
        if self.missing:
            parts.append(f"{self.missing} client events never received: {', '.join(self.events)}")
        if self.frames:
            parts.append(f"{self.frames} server frames never sent")
        return f"{who}: " + "; ".join(parts)


def group_events(frames: Iterable[ClientFrame]) -> tuple[str, ...]:
    """Recorded client events as a report lists them: runs of one type counted, audio summed."""
    out: list[str] = []
    run: list[ClientFrame] = []

    def flush() -> None:
        if not run:
            return
        name = run[0].describe()
        if run[0].is_append:
            total = sum(f.audio_len for f in run)
            out.append(f"{name} x{len(run)} ({total:,} bytes of audio)")
        elif len(run) > 1:
            out.append(f"{name} x{len(run)}")
        else:
            out.append(name)
        run.clear()

    for f in frames:
        if run and f.describe() != run[0].describe():
            flush()
        run.append(f)
    flush()
    return tuple(out)


@dataclass(frozen=True)
class Failure:
    """Something the replay could not do for a connection: a recorded frame it could not
    send, a handshake it could not answer. It fails the replay like a mismatch."""

    conn: int | None  # the live connection; None before one was assigned
    recorded_conn: int | None
    message: str

    def __str__(self) -> str:
        who = "a connection" if self.conn is None else f"connection {self.conn}"
        if self.recorded_conn is not None:
            who += f" (recorded connection {self.recorded_conn})"
        return f"{who}: {self.message}"


#: Mismatches (and reorderings and audio differences) a report keeps in full; later ones
#: are counted: a client sending mismatching events for an hour cannot grow it without bound.
KEPT = 1000


@dataclass
class ConnectionProgress:
    """How far one live connection got: written by its player as the replay goes.

    ``matched[k]`` tells whether recorded client event ``k`` was received (or forgiven,
    for audio within the tolerance); ``sent`` counts the recorded server frames handed
    out; ``refused``: the recorded handshake was a refusal, replayed as such.
    """

    conn: int
    recorded_conn: int
    clients: Sequence[ClientFrame]
    server_total: int
    matched: list[bool] = field(default_factory=list)
    sent: int = 0
    refused: bool = False
    closed: bool = False

    def unplayed(self) -> Unplayed | None:
        """What this connection's recording still holds, or ``None`` if all was played."""
        if self.refused:
            return None
        matched = self.matched
        missing = [c for c in self.clients if not matched[c.index]]
        frames = self.server_total - self.sent
        if not missing and not frames:
            return None
        return Unplayed(
            self.conn, self.recorded_conn, group_events(missing), len(missing), frames
        )


class ReplayReport:
    """Everything a replay found, live: mismatches, audio differences, reorderings, progress.

    ``source`` names the cassette; ``recorded`` are the cassette's connections, so that
    those no client ever opened are listed as unplayed.
    """

    def __init__(
        self, source: str | None = None, recorded: Sequence[IndexedConnection] = ()
    ) -> None:
        self.source = source
        self.mismatches: list[Mismatch] = []  # the first KEPT
        self.failures: list[Failure] = []
        self.audio: list[AudioDifference] = []
        self.reorderings: list[Reordering] = []
        self.connections: list[ConnectionProgress] = []
        # Past KEPT, these are counted, not kept.
        self.mismatches_not_kept = 0
        self.others_not_kept = 0  # audio differences and reorderings
        self._recorded = list(recorded)

    # -- written by the replay core ------------------------------------------------------

    def add_connection(self, progress: ConnectionProgress) -> None:
        self.connections.append(progress)

    def add_mismatch(self, mismatch: Mismatch) -> None:
        if len(self.mismatches) < KEPT:
            self.mismatches.append(mismatch)
        else:
            self.mismatches_not_kept += 1

    def add_failure(self, failure: Failure) -> None:
        self.failures.append(failure)

    def add_audio(self, difference: AudioDifference) -> None:
        if len(self.audio) < KEPT:
            self.audio.append(difference)
        else:
            self.others_not_kept += 1

    def add_reordering(self, reordering: Reordering) -> None:
        if len(self.reorderings) < KEPT:
            self.reorderings.append(reordering)
        else:
            self.others_not_kept += 1

    # -- read by anyone ------------------------------------------------------------------

    @property
    def unplayed(self) -> list[Unplayed]:
        """Per connection, the recorded client events never received (empty when complete)."""
        progress = list(self.connections)
        out = [u for p in progress if (u := p.unplayed()) is not None]
        used = {p.recorded_conn for p in progress}
        for ic in self._recorded:
            if ic.number not in used:
                out.append(
                    Unplayed(
                        None, ic.number, group_events(ic.clients), len(ic.clients), ic.server_count
                    )
                )
        return out

    @property
    def ok(self) -> bool:
        """No mismatch and no failure so far."""
        return not self.mismatches and not self.failures

    @property
    def complete(self) -> bool:
        """Every recorded client event was received (on every recorded connection)."""
        return not self.unplayed

    @property
    def stalls(self) -> list[Mismatch]:
        """The mismatches that cut a stalled connection (kind ``"stall"``, or ``"audio"``
        found while the replay waited for audio that never came)."""
        return [m for m in self.mismatches if m.held is not None]

    def __str__(self) -> str:
        unplayed = self.unplayed
        mismatches = list(self.mismatches)
        failures = list(self.failures)
        name = f" of {self.source}" if self.source else ""
        n = len(mismatches) + self.mismatches_not_kept
        if not mismatches and not unplayed and not failures:
            lines = [f"rtreplay: replay{name}: every client event matched the recording"]
        else:
            lines = [
                f"rtreplay: replay{name}: {n} mismatch{'es' if n != 1 else ''}"
                + (f", {len(failures)} failure(s)" if failures else "")
                + (f", {len(unplayed)} connection(s) not played to the end" if unplayed else "")
            ]
        if failures:
            lines.append("")
            lines.append("failures:")
            lines.extend(f"  {f}" for f in failures)
        for i, m in enumerate(mismatches, 1):
            lines.append("")
            lines.append(f"mismatch {i} of {n} ({m.kind}): {m}")
        if self.mismatches_not_kept:
            lines.append("")
            lines.append(
                f"... and {self.mismatches_not_kept:,} more mismatches, counted but not kept "
                f"(the first {KEPT:,} are)"
            )
        if unplayed:
            lines.append("")
            lines.append("unplayed:")
            lines.extend(f"  {u}" for u in unplayed)
        if self.audio:
            lines.append("")
            lines.append("audio accepted within the tolerance:")
            lines.extend(f"  {a}" for a in self.audio)
        if self.reorderings:
            lines.append("")
            lines.append("accepted reorderings:")
            lines.extend(f"  {r}" for r in self.reorderings)
        if self.others_not_kept:
            lines.append(f"  ... and {self.others_not_kept:,} more, counted but not kept")
        return "\n".join(lines)

    __repr__ = __str__
