"""The replay report: what a replay found, as plain data.

A :class:`ReplayReport` holds, for a whole cassette:

- :attr:`~ReplayReport.mismatches`: each :class:`Mismatch` (its :data:`MismatchKind`, where
  in the conversation, what was expected and what came);
- :attr:`~ReplayReport.audio`: each :class:`AudioDifference` accepted within the audio
  tolerance (a different amount of audio that was not a mismatch);
- :attr:`~ReplayReport.reorderings`: each :class:`Reordering` (a client event accepted
  ahead of the recorded order);
- :attr:`~ReplayReport.connections`: a :class:`ConnectionProgress` per connection a client
  opened, from which :attr:`~ReplayReport.unplayed` lists what was never played (and
  :attr:`~ReplayReport.cut` what an injected fault cut off);
- :attr:`~ReplayReport.faults`: each :class:`FiredFault`, an injected fault that fired,
  where and when; :attr:`~ReplayReport.unfired` the configured faults that never did;
- :attr:`~ReplayReport.interruptions`: each :class:`Interruption` the replay followed (a
  client that cancelled, truncated or spoke over a response at its own moment).

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
    "NOTHING_HELD",
    "AudioDifference",
    "ConnectionProgress",
    "DriveMismatch",
    "DriveMismatchKind",
    "DriveProgress",
    "DriveReport",
    "Failure",
    "FiredFault",
    "Interruption",
    "Mismatch",
    "MismatchKind",
    "Reordering",
    "ReplayReport",
    "ResponseTiming",
    "Unplayed",
]

#: What went wrong. ``"unexpected"``: no recorded event of that type was due;
#: ``"content"``: the expected type, other content; ``"id"``: an echoed ID is not the one
#: handed out; ``"rule"``: a user rule said no; ``"audio"``: a different amount (beyond the
#: audio tolerance) or content of audio; ``"after_end"``: the recording has no more client
#: events; ``"stall"``: the replay held server events for a client that sent nothing for
#: the stall timeout; ``"handshake"``: the connection request differs;
#: ``"no_connection"``: more connections than recorded (or none of the right protocol);
#: ``"http"``: an HTTP call (``POST /v1/realtime/client_secrets``) the cassette cannot
#: answer, or whose body differs from the recorded one.
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
    "http",
]


#: What a stall holds when the replay had sent every recorded server event (the client
#: waited for more than the recording has).
NOTHING_HELD = "nothing: every recorded server event was sent"


@dataclass(frozen=True)
class Mismatch:
    """A client event (or silence) that did not match the recording, and where it happened.

    ``conn`` is the live connection (numbered from 0 in order of arrival),
    ``recorded_conn`` the recorded one it replays; ``index`` the recorded client event it
    was compared with or waited for (0-based) of ``total``; ``expected`` and ``got`` the
    events, masked fields left out; ``after`` the last client events matched before it,
    ``last_sent`` the last server event released before it. A ``"stall"`` also names the
    server event it holds (``held``; :data:`NOTHING_HELD` when it had sent every recorded
    one) and the last message the client sent (``last_received``); ``awaits`` says in
    words what it waited for when that is no client event (the client's close).
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
    awaits: str | None = None

    @property
    def where(self) -> str:
        if self.kind == "http":
            rec = "" if self.recorded_conn is None else f" (recorded exchange {self.recorded_conn})"
            return f"HTTP request {self.conn}{rec}"
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
            lines.append(f"  awaits:   {self.awaits or _show_event(self.expected)}")
            lines.append(f"  last received from the client: {self.last_received or '(nothing)'}")
        elif self.kind not in ("audio", "handshake", "no_connection", "http"):
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
    cut_by: str | None = None  # the injected fault that ended the connection there

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
        if self.cut_by is not None:
            return f"{who}: cut by the fault {self.cut_by}: " + ("; ".join(parts) or "nothing left")
        return f"{who}: " + "; ".join(parts)


@dataclass(frozen=True)
class FiredFault:
    """An injected fault that fired: which, on which connection, where and when.

    ``fault`` is its string form; ``where`` says at which point of the recording
    (``"after response.created (server event 8 of 24, x.jsonl:12)"``, ``"at the
    handshake"``); ``seconds`` since the connection was accepted (0 at the handshake).
    """

    fault: str
    conn: int
    recorded_conn: int | None
    where: str
    seconds: float = 0.0

    def __str__(self) -> str:
        rec = "" if self.recorded_conn is None else f" (recorded connection {self.recorded_conn})"
        when = "" if self.where.startswith("at the handshake") else f", {self.seconds:.3f} s after it opened"
        return f"connection {self.conn}{rec}: {self.fault} fired {self.where}{when}"


@dataclass(frozen=True)
class Interruption:
    """A response the client interrupted at its own moment, and what the replay did.

    ``by`` is what interrupted it (``response.cancel``, ``conversation.item.truncate``,
    ``output_audio_buffer.clear``, or ``speech`` for server VAD); ``response_id`` the
    response (``None`` when none was playing); ``sent_deltas`` its deltas the client got,
    ``dropped`` its recorded frames left out; ``synthesised`` the event types the replay
    made up (from the recording's own events of that response, with the content actually
    sent); ``recorded``: the recording interrupted this response too (at another moment).
    """

    conn: int
    recorded_conn: int
    by: str
    response_id: str | None
    reason: str
    sent_deltas: int = 0
    dropped: int = 0
    synthesised: tuple[str, ...] = ()
    recorded: bool = False

    def __str__(self) -> str:
        who = f"connection {self.conn} (recorded connection {self.recorded_conn})"
        if self.response_id is None:
            made = ", ".join(self.synthesised) or "nothing"
            return f"{who}: {self.by} with no response playing: {self.reason}; answered with {made}"
        was = "the recording interrupted it at another moment" if self.recorded else "the recording had no interruption there"
        return (
            f"{who}: {self.by} interrupted {self.response_id} after {self.sent_deltas} "
            f"delta{'s' if self.sent_deltas != 1 else ''} ({was}): {self.dropped} recorded frames "
            f"left out; synthesised {', '.join(self.synthesised) or 'nothing'} ({self.reason})"
        )


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
    out, ``dropped`` those the replay left out on purpose (the rest of a response the
    client interrupted); ``refused``: the recorded handshake was a refusal, replayed as
    such; ``cut_by``: the injected fault that ended the connection (what was not played
    then counts as cut, not unplayed).
    """

    conn: int
    recorded_conn: int
    clients: Sequence[ClientFrame]
    server_total: int
    matched: list[bool] = field(default_factory=list)
    sent: int = 0
    refused: bool = False
    closed: bool = False
    dropped: int = 0
    cut_by: str | None = None

    def _left(self) -> Unplayed | None:
        matched = self.matched
        missing = [c for c in self.clients if not matched[c.index]]
        frames = self.server_total - self.sent - self.dropped
        if not missing and not frames:
            return None
        return Unplayed(
            self.conn, self.recorded_conn, group_events(missing), len(missing), frames, self.cut_by
        )

    def unplayed(self) -> Unplayed | None:
        """What this connection's recording still holds, or ``None`` if all was played
        (or the rest was cut by an injected fault: see :meth:`cut`)."""
        if self.refused or self.cut_by is not None:
            return None
        return self._left()

    def cut(self) -> Unplayed | None:
        """What an injected fault cut off this connection's recording, or ``None``."""
        if self.cut_by is None:
            return None
        return self._left()


class ReplayReport:
    """Everything a replay found, live: mismatches, audio differences, reorderings, progress,
    and warnings about the recording (a connection to an endpoint rtreplay does not know).

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
        self.others_not_kept = 0  # audio differences, reorderings, faults, interruptions
        self.faults: list[FiredFault] = []
        self.interruptions: list[Interruption] = []
        #: The faults the replay was asked to inject (their string forms).
        self.configured_faults: list[str] = []
        self._recorded = list(recorded)
        #: What the replay says about the recording itself (an endpoint rtreplay does not know).
        self.warnings: list[str] = [w for ic in self._recorded if (w := ic.warning)]
        #: Recorded HTTP exchanges (client secrets), and those a request asked for.
        self.exchanges: list[str] = []
        self.exchanges_served: set[int] = set()
        # Where the connections of the version loaded last begin (see reloaded()).
        self._since_load = 0

    # -- written by the replay core ------------------------------------------------------

    def reloaded(self, recorded: Sequence[IndexedConnection], note: str) -> None:
        """The cassette was loaded again (it changed on disk): what comes next is measured
        against ``recorded``. What was found so far stays; ``note`` joins :attr:`warnings`."""
        self._recorded = list(recorded)
        self._since_load = len(self.connections)
        self.warnings.append(note)
        self.warnings.extend(w for ic in self._recorded if (w := ic.warning))

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

    def add_fault(self, fired: FiredFault) -> None:
        if len(self.faults) < KEPT:
            self.faults.append(fired)
        else:
            self.others_not_kept += 1

    def add_interruption(self, interruption: Interruption) -> None:
        if len(self.interruptions) < KEPT:
            self.interruptions.append(interruption)
        else:
            self.others_not_kept += 1

    # -- read by anyone ------------------------------------------------------------------

    @property
    def unplayed(self) -> list[Unplayed]:
        """Per connection, the recorded client events never received (empty when complete)."""
        progress = list(self.connections)
        out = [u for p in progress if (u := p.unplayed()) is not None]
        used = {p.recorded_conn for p in progress[self._since_load :]}
        for ic in self._recorded:
            if ic.number not in used:
                out.append(
                    Unplayed(
                        None, ic.number, group_events(ic.clients), len(ic.clients), ic.server_count
                    )
                )
        return out

    @property
    def cut(self) -> list[Unplayed]:
        """Per connection an injected fault ended, what of the recording it cut off."""
        return [u for p in list(self.connections) if (u := p.cut()) is not None]

    @property
    def unfired(self) -> list[str]:
        """The configured faults that never fired on any connection (their string forms)."""
        fired = {f.fault for f in self.faults}
        return [f for f in self.configured_faults if f not in fired]

    @property
    def ok(self) -> bool:
        """No mismatch and no failure so far."""
        return not self.mismatches and not self.failures

    @property
    def unrequested(self) -> list[str]:
        """The recorded HTTP exchanges no request asked for, described."""
        return [e for n, e in enumerate(self.exchanges) if n not in self.exchanges_served]

    @property
    def complete(self) -> bool:
        """Every recorded client event was received (on every recorded connection), and
        every recorded HTTP exchange was asked for."""
        return not self.unplayed and not self.unrequested

    @property
    def stalls(self) -> list[Mismatch]:
        """The mismatches that cut a stalled connection (kind ``"stall"``, or ``"audio"``
        found while the replay waited for audio that never came)."""
        return [m for m in self.mismatches if m.held is not None]

    def __str__(self) -> str:
        unplayed = self.unplayed
        unrequested = self.unrequested
        mismatches = list(self.mismatches)
        failures = list(self.failures)
        name = f" of {self.source}" if self.source else ""
        n = len(mismatches) + self.mismatches_not_kept
        if not mismatches and not unplayed and not failures and not unrequested:
            lines = [f"rtreplay: replay{name}: every client event matched the recording"]
            if self.faults:
                fired = len(self.faults)
                lines[0] += f" ({fired} injected fault{'s' if fired != 1 else ''} fired)"
        else:
            lines = [
                f"rtreplay: replay{name}: {n} mismatch{'es' if n != 1 else ''}"
                + (f", {len(failures)} failure(s)" if failures else "")
                + (f", {len(unplayed)} connection(s) not played to the end" if unplayed else "")
                + (f", {len(unrequested)} HTTP exchange(s) never requested" if unrequested else "")
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
        if unrequested:
            lines.append("")
            lines.append("recorded HTTP exchanges no request asked for:")
            lines.extend(f"  {e}" for e in unrequested)
        if self.faults:
            lines.append("")
            lines.append("injected faults:")
            lines.extend(f"  {f}" for f in list(self.faults))
        unfired = self.unfired
        if unfired:
            lines.append("")
            lines.append("injected faults that never fired:")
            lines.extend(f"  {f}" for f in unfired)
        cut = self.cut
        if cut:
            lines.append("")
            lines.append("cut by a fault (not played, as asked):")
            lines.extend(f"  {u}" for u in cut)
        if self.interruptions:
            lines.append("")
            lines.append("interruptions followed:")
            lines.extend(f"  {i}" for i in list(self.interruptions))
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
        if self.warnings:
            lines.append("")
            lines.append("warnings:")
            lines.extend(f"  {w}" for w in self.warnings)
        return "\n".join(lines)

    __repr__ = __str__


# -- the drive report: a server under test, driven with the recorded client -------------------

#: What went wrong when driving a server. ``"missing"``: a recorded server event never
#: came (the wait for it ran out, its response ended without it, or the session ended);
#: ``"unexpected"``: the server sent an event the recording has no counterpart for;
#: ``"content"``: the expected type, other content at the chosen strictness; ``"order"``:
#: an event came before the event that opens its response, or after the response ended;
#: ``"timeout"``: the server sent nothing for the timeout while the driver waited;
#: ``"closed"``: the server closed the connection before the recording's end; ``"close"``:
#: the recording's server closed and this one did not, or with another code;
#: ``"refused"``: the server refused a handshake the recording's accepted (or with another
#: status); ``"handshake"``: it accepted one the recording's refused; ``"unreachable"``:
#: no connection could be made.
DriveMismatchKind = Literal[
    "missing",
    "unexpected",
    "content",
    "order",
    "timeout",
    "closed",
    "close",
    "refused",
    "handshake",
    "unreachable",
]


@dataclass(frozen=True)
class DriveMismatch:
    """A server event that did not answer as recorded, and where in the conversation.

    ``conn`` is the driven connection (from 0), ``recorded_conn`` the recorded one it
    plays; ``index`` the recorded server event (0-based among the connection's server
    frames) of ``total``, at cassette line ``line`` of ``source``; ``expected`` and ``got``
    the events, volatile fields left out; ``sent`` the last client event sent before it,
    ``after`` the last server events received.
    """

    kind: DriveMismatchKind
    conn: int
    recorded_conn: int
    turn: int
    message: str
    expected: Any = None
    got: Any = None
    differences: tuple[Difference, ...] = ()
    index: int | None = None
    total: int = 0
    line: int = 0
    source: str | None = None
    sent: str | None = None
    after: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        at = f"connection {self.conn} (recorded connection {self.recorded_conn}), turn {self.turn}"
        if self.index is not None:
            at += f", server event {self.index + 1} of {self.total}"
            if self.source and self.line:
                at += f" ({self.source}:{self.line})"
        return at

    @property
    def summary(self) -> str:
        return f"{self.where}: {self.message}"

    def __str__(self) -> str:
        lines = [self.summary]
        if self.sent or self.after:
            sent = self.sent or "(nothing yet)"
            last = ", ".join(self.after) if self.after else "(nothing yet)"
            lines.append(f"  last client event sent: {sent}; last server events: {last}")
        if self.kind in ("missing", "unexpected", "content", "order", "timeout"):
            lines.append(f"  expected: {_show_event(self.expected)}")
            lines.append(f"  got:      {_show_event(self.got)}")
        if self.differences:
            lines.append("  differences (volatile fields left out):")
            lines.extend(f"    {d}" for d in self.differences[:20])
            if len(self.differences) > 20:
                lines.append(f"    ... and {len(self.differences) - 20} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class ResponseTiming:
    """How long one response took, as the client felt it (seconds).

    ``first_event``: from the client event that asked for it (or the audio that ended the
    turn) to ``response.created``; ``first_delta``: to its first delta (text, audio,
    transcript or arguments), ``None`` when none came; ``duration``: to ``response.done``.
    """

    conn: int
    turn: int
    first_event: float
    first_delta: float | None = None
    duration: float | None = None


@dataclass
class DriveProgress:
    """How far one driven connection got: written by its driver as the drive goes.

    Times are seconds: ``connect`` the opening handshake, ``first_event`` from the
    connection's opening to the server's first event, ``late`` the most a client event
    went out after its recorded pace made it due (the driver falling behind: a loaded
    machine, not the server).
    """

    conn: int
    recorded_conn: int
    clients_total: int
    expected_total: int
    clients_sent: int = 0
    matched: int = 0
    received: int = 0
    connect: float | None = None
    first_event: float | None = None
    refused: int | None = None
    closed: str = ""
    late: float = 0.0
    responses: list[ResponseTiming] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"connection {self.conn} (recorded connection {self.recorded_conn})"
        if self.refused is not None:
            return f"{head}: refused with HTTP {self.refused}"
        parts = [
            f"{self.clients_sent}/{self.clients_total} client events sent",
            f"{self.matched}/{self.expected_total} recorded server events matched "
            f"({self.received} frames received)",
        ]
        if self.first_event is not None:
            parts.append(f"first server event after {self.first_event * 1000:,.0f} ms")
        deltas = [r.first_delta for r in self.responses if r.first_delta is not None]
        if deltas:
            shown = ", ".join(f"{d * 1000:,.0f}" for d in deltas[:8])
            parts.append(f"first delta of each response after {shown} ms")
        if self.closed:
            parts.append(self.closed)
        return f"{head}: " + "; ".join(parts)


class DriveReport:
    """Everything a drive found: mismatches, events past the recording's end, progress.

    ``source`` names the cassette, ``target`` the server driven, ``strictness`` how content
    was compared. Written by the drivers through ``add_*``; read by anyone.
    """

    def __init__(self, source: str | None = None, target: str = "", strictness: str = "type") -> None:
        self.source = source
        self.target = target
        self.strictness = strictness
        self.mismatches: list[DriveMismatch] = []
        self.beyond: list[tuple[int, str]] = []  # (connection, event type) past the recording
        self.connections: list[DriveProgress] = []
        self.notes: list[str] = []

    def add_mismatch(self, mismatch: DriveMismatch) -> None:
        self.mismatches.append(mismatch)

    def add_connection(self, progress: DriveProgress) -> None:
        self.connections.append(progress)

    def add_beyond(self, conn: int, kind: str) -> None:
        self.beyond.append((conn, kind))

    def add_note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    @property
    def ok(self) -> bool:
        """No mismatch."""
        return not self.mismatches

    @property
    def responses(self) -> list[ResponseTiming]:
        return [r for p in self.connections for r in p.responses]

    def __str__(self) -> str:
        name = f" of {self.source}" if self.source else ""
        target = f" against {self.target}" if self.target else ""
        head = f"rtreplay: drive{name}{target} ({self.strictness} strictness)"
        n = len(self.mismatches)
        if not n:
            lines = [f"{head}: every recorded server event came as recorded"]
        else:
            lines = [f"{head}: {n} mismatch{'es' if n != 1 else ''}"]
        for i, m in enumerate(self.mismatches, 1):
            lines.append("")
            lines.append(f"mismatch {i} of {n} ({m.kind}): {m}")
        if self.connections:
            lines.append("")
            lines.extend(str(p) for p in self.connections)
        if self.beyond:
            lines.append("")
            lines.append(
                "past the recording's end (its client closed mid-response), not compared:"
            )
            by_conn: dict[int, list[str]] = {}
            for conn, kind in self.beyond:
                by_conn.setdefault(conn, []).append(kind)
            for conn, kinds in by_conn.items():
                lines.append(f"  connection {conn}: {', '.join(group_names(kinds))}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)

    __repr__ = __str__

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data (``rtreplay drive --report FILE``)."""
        return {
            "source": self.source,
            "target": self.target,
            "strictness": self.strictness,
            "ok": self.ok,
            "mismatches": [
                {
                    "kind": m.kind,
                    "connection": m.conn,
                    "recorded_connection": m.recorded_conn,
                    "turn": m.turn,
                    "server_event": None if m.index is None else m.index + 1,
                    "line": m.line or None,
                    "message": m.message,
                    "expected": m.expected,
                    "got": m.got,
                    "differences": [str(d) for d in m.differences],
                }
                for m in self.mismatches
            ],
            "connections": [
                {
                    "connection": p.conn,
                    "recorded_connection": p.recorded_conn,
                    "client_events_sent": p.clients_sent,
                    "client_events": p.clients_total,
                    "server_events_matched": p.matched,
                    "server_events_expected": p.expected_total,
                    "frames_received": p.received,
                    "connect_s": p.connect,
                    "first_event_s": p.first_event,
                    "refused": p.refused,
                    "responses": [
                        {
                            "turn": r.turn,
                            "first_event_s": r.first_event,
                            "first_delta_s": r.first_delta,
                            "duration_s": r.duration,
                        }
                        for r in p.responses
                    ],
                }
                for p in self.connections
            ],
            "beyond_recording": [{"connection": c, "type": k} for c, k in self.beyond],
            "notes": list(self.notes),
        }


def group_names(kinds: Iterable[str]) -> list[str]:
    """Event types as a report lists them: runs of one type counted."""
    out: list[str] = []
    run: list[str] = []
    for k in [*kinds, ""]:
        if run and k != run[0]:
            out.append(run[0] if len(run) == 1 else f"{run[0]} x{len(run)}")
            run = []
        if k:
            run.append(k)
    return out
