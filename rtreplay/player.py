"""The replay state machine: client messages in, server frames out. No sockets, no asyncio.

A :class:`Player` replays one recorded connection. The shell that owns the socket calls
:meth:`Player.connect` when the client is connected and :meth:`Player.receive` with every
message the client sends, each time with the current clock value, and carries out the
actions it gets back, in order:

- :class:`Send`: recorded server frames, each due at ``action.due(frame)``;
- :class:`SendError`: a Realtime ``error`` event telling the client its event did not match;
- :class:`CloseConnection`: close (or drop) the connection, when due.

When to send. A recorded server frame is released once every client event recorded before
it has been matched; frames recorded before the first client event go out on connect. With
a ``speed``, a released frame is due its recorded delay after the client event that
released it, divided by ``speed``; without one (the default), at once.

Matching. An incoming event is compared (by the :class:`~rtreplay.match.MatchPolicy`) with
the next recorded client event, and with later ones of the same turn that do not echo an ID
from a server frame still held back, because clients do not always send in the recorded
order (``openai-agents`` races its second ``session.update`` against ``response.create``).
Accepting a later one is noted in :attr:`Player.reorderings`. ``input_audio_buffer.append``
events are one stream: received audio releases the frames recorded after the same amount
of recorded audio, and the total is compared at the next other client event.

Mismatches. An event that matches nothing gets an ``error`` event back and is otherwise
ignored; one of the expected type whose content differs gets an ``error`` event and counts
as that step, so the rest of the session still plays and every difference is reported in
one run. In strict mode the first mismatch closes the connection with code 1008. Each
mismatch is a :class:`Mismatch` saying where in the conversation it happened; the
:class:`ReplayReport` gathers them with what was never played.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ._index import (
    AUDIO_APPEND,
    ClientFrame,
    IndexedConnection,
    ServerFrame,
    audio_length,
    hash_audio,
)
from .match import Difference, MatchPolicy, Verdict, format_value

__all__ = [
    "Action",
    "CloseConnection",
    "Mismatch",
    "Player",
    "Reordering",
    "ReplayReport",
    "Send",
    "SendError",
    "Unplayed",
]

# How many recorded client events ahead of the next one an incoming event may match.
REORDER_WINDOW = 16

_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Send:
    """Send these recorded server frames, in order, each at :meth:`due`."""

    frames: Sequence[ServerFrame]
    clock: float  # the clock value when they were released
    t0: float  # recorded time of the client event that released them
    speed: float | None  # None: instant

    def due(self, frame: ServerFrame) -> float:
        if self.speed is None:
            return self.clock
        return self.clock + max(0.0, frame.t - self.t0) / self.speed


@dataclass(frozen=True, slots=True)
class SendError:
    """Send this ``error`` event (UTF-8 JSON, a text frame) now."""

    message: bytes
    mismatch: Mismatch


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close the connection with ``code`` and ``reason`` at ``due``; ``abort``: drop it."""

    code: int
    reason: str
    due: float
    abort: bool = False


Action = Send | SendError | CloseConnection


@dataclass(frozen=True)
class Mismatch:
    """A client event that did not match the recording, and where it happened.

    ``kind``: ``"unexpected"`` (no recorded event of that type was due), ``"content"``,
    ``"id"`` (an echoed ID is not the one handed out), ``"rule"`` (a user rule said no),
    ``"audio"`` (a different amount or content of audio), ``"after_end"`` (the recording
    has no more client events), ``"handshake"`` (the connection request differs) or
    ``"no_connection"`` (more connections than recorded).
    """

    kind: str
    conn: int  # the live connection, numbered from 0 in order of arrival
    recorded_conn: int | None
    turn: int
    index: int | None  # the recorded client event it was compared with (0-based)
    total: int  # recorded client events on that connection
    expected: Any
    got: Any
    message: str
    differences: tuple[Difference, ...] = ()
    after: tuple[str, ...] = ()  # the last client events matched before it
    last_sent: str | None = None  # the last server event released before it

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
        if self.kind not in ("audio", "handshake", "no_connection"):
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


def _group(frames: Iterable[ClientFrame]) -> tuple[str, ...]:
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


class ReplayReport:
    """Everything a replay found wrong, live: mismatches, reorderings, what was not played.

    ``str(report)`` is the readable report the CLI and the pytest plugin show.
    """

    def __init__(
        self, source: str | None = None, connections: Sequence[IndexedConnection] = ()
    ) -> None:
        self.source = source
        self.mismatches: list[Mismatch] = []
        self.reorderings: list[Reordering] = []
        self.players: list[Player] = []
        self._connections = list(connections)

    def add_player(self, player: Player) -> None:
        self.players.append(player)

    def add_mismatch(self, mismatch: Mismatch) -> None:
        self.mismatches.append(mismatch)

    @property
    def unplayed(self) -> list[Unplayed]:
        """Per connection, the recorded client events never received (empty when complete)."""
        out = [u for p in list(self.players) if (u := p.unplayed()) is not None]
        used = {p.connection.number for p in self.players}
        for ic in self._connections:
            if ic.number not in used:
                out.append(
                    Unplayed(None, ic.number, _group(ic.clients), len(ic.clients), ic.server_count)
                )
        return out

    @property
    def ok(self) -> bool:
        """No mismatch so far."""
        return not self.mismatches

    @property
    def complete(self) -> bool:
        """Every recorded client event was received (on every recorded connection)."""
        return not self.unplayed

    def __str__(self) -> str:
        unplayed = self.unplayed
        name = f" of {self.source}" if self.source else ""
        if not self.mismatches and not unplayed:
            head = f"rtreplay: replay{name}: every client event matched the recording"
            lines = [head]
        else:
            n = len(self.mismatches)
            lines = [
                f"rtreplay: replay{name}: {n} mismatch{'es' if n != 1 else ''}"
                + (f", {len(unplayed)} connection(s) not played to the end" if unplayed else "")
            ]
        for i, m in enumerate(self.mismatches, 1):
            lines.append("")
            lines.append(f"mismatch {i} of {len(self.mismatches)} ({m.kind}): {m}")
        if unplayed:
            lines.append("")
            lines.append("unplayed:")
            lines.extend(f"  {u}" for u in unplayed)
        if self.reorderings:
            lines.append("")
            lines.append("accepted reorderings:")
            lines.extend(f"  {r}" for r in self.reorderings)
        return "\n".join(lines)

    __repr__ = __str__


class Player:
    """Replays one recorded connection to one client (see the module docstring).

    ``conn`` is the live connection's number (for the report); ``speed`` ``None`` or 0
    sends at once, ``1.0`` at the recorded pace, ``2.0`` twice as fast.
    """

    def __init__(
        self,
        connection: IndexedConnection,
        *,
        policy: MatchPolicy | None = None,
        speed: float | None = None,
        strict: bool = False,
        conn: int = 0,
        report: ReplayReport | None = None,
    ) -> None:
        if speed is not None and speed < 0:
            raise ValueError(f"speed must be >= 0, not {speed}")
        self.connection = connection
        self.policy = policy if policy is not None else MatchPolicy.default()
        self.speed = speed or None
        self.strict = strict
        self.conn = conn
        self.report = report
        self.mismatches: list[Mismatch] = []
        self.reorderings: list[Reordering] = []
        self.received = 0
        self.released = 0  # server frames handed out in Send actions
        self.last_type: str | None = None  # type of the last received event
        self.finished = False  # the client went away, or strict mode closed
        clients = connection.clients
        self._clients = clients
        self._matched = [False] * len(clients)
        self._first = 0
        self._groups_released = 0
        self._appends = [c.index for c in clients if c.is_append]
        self._next_append = 0
        self._audio = 0  # decoded bytes of audio received
        # At the last boundary (a matched event other than an append): audio received
        # so far, and audio recorded before that event.
        self._audio_at_boundary = 0
        self._recorded_at_boundary = 0
        self._audio_hash = hashlib.blake2b(digest_size=16)
        self._extra_audio = False
        self._bound: dict[str, str] = {}
        self._bound_rev: dict[str, str] = {}
        self._after: deque[str] = deque(maxlen=3)
        self._last_sent: str | None = None
        self._close_done = False
        self._stopped = False
        self._errors = 0
        if report is not None:
            report.add_player(self)

    # -- the IdContext the match policy asks ------------------------------------------

    def handed_out(self, recorded_id: str) -> bool:
        if recorded_id in self.connection.client_chosen:
            return False
        group = self.connection.introduced.get(recorded_id)
        return group is not None and group < self._groups_released

    def bound(self, recorded_id: str) -> str | None:
        return self._bound.get(recorded_id)

    def bound_to(self, received_id: str) -> str | None:
        return self._bound_rev.get(received_id)

    # -- inputs -----------------------------------------------------------------------

    def connect(self, now: float) -> list[Action]:
        """The client is connected: what to send first."""
        actions: list[Action] = []
        self._release(now, actions)
        return actions

    def receive(self, message: str | bytes, now: float) -> list[Action]:
        """A message from the client: what to send in answer."""
        if self._stopped:
            return []
        self.received += 1
        event: Any = None
        if isinstance(message, str):  # Realtime events are text; binary frames compare verbatim
            try:
                event = _decoder.decode(message)
            except msgspec.DecodeError:
                event = None
        kind = event.get("type") if isinstance(event, dict) else None
        self.last_type = kind if isinstance(kind, str) else None
        actions: list[Action] = []
        if kind == AUDIO_APPEND and isinstance(event.get("audio"), str):
            self._on_audio(event, now, actions)
        else:
            self._extra_audio = False
            self._on_event(event, message, now, actions)
        self._release(now, actions)
        return actions

    def disconnect(self) -> None:
        """The connection is gone; what was not received stays unplayed."""
        self.finished = True

    # -- state ------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Every recorded client event was matched."""
        return self._first >= len(self._clients)

    def unplayed(self) -> Unplayed | None:
        """What this connection's recording still holds, or ``None`` if all was played."""
        if self.connection.reject is not None:
            return None
        missing = [c for c in self._clients if not self._matched[c.index]]
        frames = self.connection.server_count - self.released
        if not missing and not frames:
            return None
        return Unplayed(self.conn, self.connection.number, _group(missing), len(missing), frames)

    # -- matching ---------------------------------------------------------------------

    def _mark(self, j: int) -> None:
        self._matched[j] = True
        n = len(self._clients)
        while self._first < n and self._matched[self._first]:
            self._first += 1

    def _on_audio(self, event: dict[str, Any], now: float, actions: list[Action]) -> None:
        audio: str = event["audio"]
        if self.done:
            if not self._extra_audio:
                self._extra_audio = True
                self._mismatch(
                    "after_end",
                    None,
                    None,
                    {**event, "audio": f"<{audio_length(audio):,} bytes of audio>"},
                    f"got {AUDIO_APPEND} after the recording's last client event",
                    (),
                    event,
                    now,
                    actions,
                )
            return
        self._audio += audio_length(audio)
        if self.policy.audio == "content":
            hash_audio(self._audio_hash, audio)
        # Appends of the current turn covered by the audio received so far are matched,
        # which releases the server frames recorded after them (speech_started...).
        turn = self._clients[self._first].turn
        covered = self._audio - self._audio_at_boundary + self._recorded_at_boundary
        appends = self._appends
        while self._next_append < len(appends):
            c = self._clients[appends[self._next_append]]
            if not self._matched[c.index]:
                if c.turn != turn or c.audio_end > covered:
                    break
                self._mark(c.index)
                self._after.append(c.describe())
            self._next_append += 1

    def _compare(self, c: ClientFrame, event: Any, message: str | bytes) -> Verdict:
        if c.event is None and c.message is not None:
            if type(c.message) is type(message) and c.message == message:
                return Verdict("match")
            kind = "content" if type(c.message) is type(message) and event is None else "type"
            return Verdict(kind, (Difference("", c.message, message),))
        if event is None:
            return Verdict("type", (Difference("", c.event, message, "not a JSON event"),))
        return self.policy.compare(c.event, event, self)

    def _depends_on_held_frames(self, c: ClientFrame) -> bool:
        introduced = self.connection.introduced
        for v in c.ids:
            if v in self.connection.client_chosen:
                continue
            group = introduced.get(v)
            if group is not None and group > self._first:
                return True
        return False

    def _on_event(
        self, event: Any, message: str | bytes, now: float, actions: list[Action]
    ) -> None:
        clients = self._clients
        n = len(clients)
        got = event if event is not None else message
        if self.done:
            desc = self.last_type or (
                "a binary frame" if isinstance(message, bytes) else "a text frame"
            )
            self._mismatch(
                "after_end",
                None,
                None,
                got,
                f"got {desc} after the recording's last client event",
                (),
                event,
                now,
                actions,
            )
            return
        expected_j = next(
            (j for j in range(self._first, n) if not self._matched[j] and not clients[j].is_append),
            None,
        )
        if expected_j is None:
            still = sum(c.audio_len for c in clients if not self._matched[c.index])
            self._mismatch(
                "unexpected",
                self._first,
                clients[self._first].event,
                got,
                f"expected more audio ({AUDIO_APPEND}, {still:,} bytes still recorded), "
                f"got {self.last_type or 'a message that is not an event'}",
                (),
                event,
                now,
                actions,
            )
            return
        turn = clients[expected_j].turn
        chosen: tuple[int, Verdict] | None = None
        best: tuple[int, Verdict] | None = None
        scanned = 0
        for j in range(expected_j, n):
            c = clients[j]
            if self._matched[j] or c.is_append:
                continue
            if c.turn != turn or scanned >= REORDER_WINDOW:
                break
            scanned += 1
            if j != expected_j and self._depends_on_held_frames(c):
                continue
            verdict = self._compare(c, event, message)
            if verdict.ok:
                chosen = (j, verdict)
                break
            if best is None and verdict.kind != "type":
                best = (j, verdict)
        if chosen is not None:
            j, verdict = chosen
            if j != expected_j:
                r = Reordering(
                    self.conn,
                    self.connection.number,
                    clients[expected_j].describe(),
                    clients[j].describe(),
                    j,
                )
                self.reorderings.append(r)
                if self.report is not None:
                    self.report.reorderings.append(r)
            self._accept(j, expected_j, verdict, now, actions, event)
            return
        if best is not None:
            j, verdict = best
            c = clients[j]
            if verdict.kind == "rule":
                what = verdict.reason
            else:
                shown = "; ".join(str(d) for d in verdict.differences[:3])
                more = len(verdict.differences) - 3
                what = f"{c.describe()} differs from the recording: {shown}" + (
                    f" (and {more} more)" if more > 0 else ""
                )
            self._mismatch(
                verdict.kind, j, c.event, got, what, verdict.differences, event, now, actions
            )
            if not self._stopped:
                self._accept(j, expected_j, verdict, now, actions, event)
            return
        c = clients[expected_j]
        got_desc = self.last_type or (
            "a binary frame"
            if isinstance(message, bytes)
            else "a text frame that is not JSON"
            if event is None
            else "an event without a type"
        )
        self._mismatch(
            "unexpected",
            expected_j,
            c.event if c.event is not None else c.message,
            got,
            f"expected {c.describe()}, got {got_desc}",
            (),
            event,
            now,
            actions,
        )

    def _accept(
        self,
        j: int,
        expected_j: int,
        verdict: Verdict,
        now: float,
        actions: list[Action],
        event: Any,
    ) -> None:
        for recorded, received in verdict.bindings.items():
            self._bound[recorded] = received
            self._bound_rev[received] = recorded
        c = self._clients[j]
        if j == expected_j:
            self._audio_boundary(c, now, actions, event)
        self._mark(j)
        self._after.append(c.describe())

    def _audio_boundary(
        self, c: ClientFrame, now: float, actions: list[Action], event: Any
    ) -> None:
        expected = c.audio_before - self._recorded_at_boundary
        got = self._audio - self._audio_at_boundary
        mode = self.policy.audio
        if mode != "ignore" and expected != got:
            self._mismatch(
                "audio",
                c.index,
                None,
                None,
                f"expected {expected:,} bytes of audio before {c.describe()}, got {got:,}",
                (),
                event,
                now,
                actions,
            )
        elif mode == "content" and self._audio_hash.digest() != c.audio_digest:
            self._mismatch(
                "audio",
                c.index,
                None,
                None,
                f"the audio sent before {c.describe()} differs from the recording's "
                f"({got:,} bytes, same length)",
                (),
                event,
                now,
                actions,
            )
        self._audio_at_boundary = self._audio
        self._recorded_at_boundary = c.audio_before
        self._audio_hash = hashlib.blake2b(digest_size=16)
        # Appends the client never sent are part of the difference just reported.
        for k in range(self._first, c.index):
            if self._clients[k].is_append:
                self._matched[k] = True
        while self._next_append < len(self._appends) and self._appends[self._next_append] < c.index:
            self._next_append += 1

    def _mismatch(
        self,
        kind: str,
        index: int | None,
        expected: Any,
        got: Any,
        message: str,
        differences: tuple[Difference, ...],
        event: Any,
        now: float,
        actions: list[Action],
    ) -> None:
        clients = self._clients
        if index is not None:
            turn = clients[index].turn
        elif clients:
            turn = clients[-1].turn if self.done else clients[self._first].turn
        else:
            turn = 1
        policy = self.policy
        m = Mismatch(
            kind=kind,
            conn=self.conn,
            recorded_conn=self.connection.number,
            turn=turn,
            index=index,
            total=len(clients),
            expected=policy.masked(expected),
            got=policy.masked(got),
            message=message,
            differences=differences,
            after=tuple(self._after),
            last_sent=self._last_sent,
        )
        self.mismatches.append(m)
        if self.report is not None:
            self.report.add_mismatch(m)
        if self.strict:
            reason = _cut(f"rtreplay mismatch: {message}", 123)
            actions.append(CloseConnection(1008, reason, now))
            self._stopped = True
            self.finished = True
            return
        self._errors += 1
        client_event_id = event.get("event_id") if isinstance(event, dict) else None
        error = {
            "type": "error",
            "event_id": f"event_rtreplay_{self._errors}",
            "error": {
                "type": "invalid_request_error",
                "code": "rtreplay_mismatch",
                "message": f"rtreplay: {m.summary}",
                "param": differences[0].path if differences else None,
                "event_id": client_event_id if isinstance(client_event_id, str) else None,
            },
        }
        data = json.dumps(error, ensure_ascii=False, separators=(",", ":")).encode()
        actions.append(SendError(data, m))

    # -- releasing --------------------------------------------------------------------

    def _release(self, now: float, actions: list[Action]) -> None:
        if self._stopped:
            return
        groups = self.connection.groups
        clients = self._clients
        while self._groups_released <= self._first and self._groups_released < len(groups):
            g = self._groups_released
            frames = groups[g]
            if frames:
                t0 = clients[g - 1].t if g else 0.0
                actions.append(Send(frames, now, t0, self.speed))
                self.released += len(frames)
                self._last_sent = frames[-1].type or self._last_sent
            self._groups_released += 1
        if self._groups_released == len(groups) and not self._close_done:
            self._close_done = True
            close = self.connection.close
            if close is None or close.by == "client":
                return  # the recording stayed open, or the client closed: wait for it
            last_t = clients[-1].t if clients else 0.0
            due = now + max(0.0, close.t - last_t) / self.speed if self.speed else now
            code = close.code
            if code is None or code == 1006:
                actions.append(CloseConnection(1006, close.reason, due, abort=True))
            else:
                actions.append(CloseConnection(1000 if code == 1005 else code, close.reason, due))


def _cut(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."
