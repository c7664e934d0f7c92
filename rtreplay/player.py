"""The replay state machine for one connection: client messages and the clock in, what to send out.

Sans-I/O: no sockets, no asyncio, no clock of its own. A :class:`Player` replays one
recorded connection to one client. Its owner (the server, or a test) feeds it and asks
it, passing the current time (seconds, any monotonic clock) each time::

    player.connect(now)                   # the client is connected
    player.receive(message, now)          # each message the client sends (str or bytes)
    for action in player.poll(now):       # what is due now, in order:
        ...                               #   Send, SendError, CloseConnection
    player.next_deadline()                # when to poll again if nothing comes (or None)
    player.disconnect(now)                # the connection is gone

**When frames go out.** The player works through its :class:`~rtreplay.timeline.Timeline`
in order: a recorded server frame is released once the client event that causes it has
been matched (see :mod:`rtreplay.protocol` for the cause table), or, for events with no
known cause, once every client event recorded before it has; never before the frames
ahead of it. With a ``speed``, a released frame is due its recorded delay after its
cause, divided by ``speed``; without one (the default), at once.

**Matching.** An incoming event is compared (by the :class:`~rtreplay.match.MatchPolicy`)
with the next recorded client event, and with later ones of the same turn that do not
echo an ID from a server frame not yet sent, because clients do not always send in the
recorded order (``openai-agents`` races its second ``session.update`` against
``response.create``). Accepting a later one is noted as a reordering.
``input_audio_buffer.append`` events are one stream: received audio releases the frames
recorded after the same amount of recorded audio, and the total is compared at the next
other client event.

**Tolerant audio.** The amount of audio may differ from the recording by up to
``audio_tolerance`` seconds (trailing silence varies from run to run): when the client
stops short and stays quiet, the frames waiting for the rest of the audio are released;
extra audio is accepted. Each such difference is noted in the report
(:class:`~rtreplay.report.AudioDifference`); a larger one is an ``"audio"`` mismatch.

**Stalls.** When the player holds server frames for a client event that does not come,
or has sent every recorded server frame while the recording goes on with the client
closing (or sending events no server frame waits for), and for ``stall_timeout`` seconds
the client has sent nothing that moves the replay on, the replay cannot go on: it reports
a ``"stall"`` mismatch naming what it holds (or that it sent everything), what it waits
for and the last thing the client sent, sends the client an ``error`` event and closes the
connection with 1008 (so a client blocked in a read wakes up). A message moves the replay
on when it matches a recorded client event, or brings the client's audio closer to the
audio recorded before the next client event; a mismatch, a keepalive or audio beyond the
recording's does not restart the clock.

**Faults and interruptions.** A timeline may carry injected faults (marks, see
:mod:`rtreplay.faults`): :meth:`Player.poll` reports each as a :class:`FaultFired` when it
is reached, holds everything after a stall for its seconds (or for good), and a fault that
ends the connection leaves the rest of the recording *cut*, not unplayed. A client that
interrupts the response it is receiving (``response.cancel``, a truncate of its item,
``output_audio_buffer.clear``, or speech where the recorded server VAD heard it) gets the
rest of that response left out and its ending as the API sends it, made from what it
actually received (:mod:`rtreplay.interruption`). A writer that holds frames across
awaits shows them in :attr:`Player.holding` and asks :meth:`Player.withdraw` what to still
write once :attr:`Player.interruptions` changed.

**Mismatches.** An event that matches nothing gets an ``error`` event back and is
otherwise ignored; one of the expected type whose content differs gets an ``error`` event
and counts as that step, so the rest of the session still plays and every difference is
reported in one run. In strict mode the first mismatch closes the connection with 1008.
Everything goes into the :class:`~rtreplay.report.ReplayReport`; the player is the only
writer of its connection's part.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from . import interruption as _int
from ._index import (
    MAX_EVENT_DEPTH,
    ClientFrame,
    IndexedConnection,
    ServerFrame,
    deeper_than,
    hash_audio,
)
from .faults import Fault, locate
from .match import Difference, MatchPolicy, Verdict, VerdictKind
from .protocol import METADATA_PATHS, Requirement, _path_values, audio_length
from .report import (
    KEPT,
    NOTHING_HELD,
    AudioDifference,
    ConnectionProgress,
    FiredFault,
    Interruption,
    Mismatch,
    MismatchKind,
    Reordering,
    ReplayReport,
    Unplayed,
)
from .timeline import Cue, Mark, Timeline
from .volatile import Rewriter

if TYPE_CHECKING:
    from ._index import CassetteIndex
    from .cassette import Cassette

__all__ = [
    "DEFAULT_AUDIO_TOLERANCE",
    "DEFAULT_STALL_TIMEOUT",
    "Action",
    "ClientEcho",
    "CloseConnection",
    "FaultFired",
    "Holding",
    "Mismatch",
    "Player",
    "Reordering",
    "ReplayReport",
    "Send",
    "SendError",
    "Unplayed",
    "check_options",
]

#: Seconds a client may go without moving the replay on while it holds server frames for
#: the client (or has sent them all). A test client answers a server event within
#: milliseconds, and a tool call that does real work within a second or two; a deadlock is
#: a deadlock whatever the bound. Ten seconds fails it well before the test timeouts people
#: set (pytest-timeout, CI job limits), with the explanation instead of a bare stack dump.
DEFAULT_STALL_TIMEOUT = 10.0
#: Seconds of audio the client may send more or less than the recording: trailing silence
#: varies by a tenth of a second or two between runs; a missing word is longer.
DEFAULT_AUDIO_TOLERANCE = 0.25
#: How long a client's audio must pause before the player takes it as finished: twice the
#: longest pause between its appends so far (a client streaming in real time pauses for
#: one chunk at a time), within these bounds in seconds.
AUDIO_QUIET_MIN = 0.25
AUDIO_QUIET_MAX = 1.0
#: How many recorded client events ahead of the next one an incoming event may match.
REORDER_WINDOW = 16

_decoder = msgspec.json.Decoder()


# -- what the player asks its owner to do ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send these server frames now, in order (:meth:`messages` gives their payloads).

    ``echo``: what this run's client chose in place of recorded values (its own item IDs,
    ``event_id``, ``response.metadata``); the frames carry it back, as the API would have.
    ``rewrite``, when set, changes the payloads of recorded text frames before they go out
    (times moved to replay time, fresh IDs: :mod:`rtreplay.volatile`); :meth:`payloads`
    applies it.
    """

    frames: Sequence[ServerFrame]
    source: CassetteIndex | None = None  # where the payloads of recorded frames are read
    echo: ClientEcho | None = None
    rewrite: Rewriter | None = None

    def payloads(self) -> Iterator[tuple[ServerFrame, bytes]]:
        """Each frame with the payload to send, read from the cassette as needed."""
        if self.source is not None:
            pairs: Iterator[tuple[ServerFrame, bytes]] = self.source.payloads(self.frames)
        else:
            pairs = _in_memory(self.frames)
        echo, rewrite = self.echo, self.rewrite
        if echo is None and rewrite is None:
            yield from pairs
            return
        for frame, data in pairs:
            if frame.text:
                if echo is not None:
                    data = echo.apply(data)
                if rewrite is not None and frame.index >= 0:
                    data = rewrite.apply(data, times=frame.times)
            yield frame, data

    def messages(self) -> Iterator[tuple[bytes, bool]]:
        """``(payload, is_text)`` per frame, read from the cassette as needed."""
        for frame, data in self.payloads():
            yield data, frame.text


def _in_memory(frames: Sequence[ServerFrame]) -> Iterator[tuple[ServerFrame, bytes]]:
    for frame in frames:
        if frame.data is None:
            raise ValueError(f"{frame!r} has no payload and the player has no cassette")
        yield frame, frame.data


def _plain(value: str) -> bool:
    return value.isascii() and value.isprintable() and '"' not in value and "\\" not in value


class ClientEcho:
    """Values this run's client chose in place of the recorded ones, put back into server frames.

    A client may pick its own ``item.id`` (and ``call_id``, ``previous_item_id``), its
    ``event_id`` (which ``error.event_id`` echoes) and ``response.metadata`` (which
    ``response.created`` and ``response.done`` echo; PROTOCOL.md, server events). The
    recorded server frames carry the recorded choices; :meth:`apply` gives them this run's.
    Immutable: a player makes a new one when it learns a new value.
    """

    __slots__ = ("_needles", "_plain", "_quoted", "ids", "metadata")

    def __init__(
        self, ids: Mapping[str, str], metadata: tuple[tuple[Any, Any], ...] = ()
    ) -> None:
        self.ids = dict(ids)  # recorded -> chosen this run
        self.metadata = metadata  # (recorded response.metadata, this run's)
        # A frame holds a recorded value as it is, or JSON-escaped (or with \u escapes).
        self._needles = {k.encode() for k in self.ids} | {
            msgspec.json.encode(k)[1:-1] for k in self.ids
        }
        self._plain = bool(self.ids) and not metadata and all(
            _plain(k) and _plain(v) for k, v in self.ids.items()
        )
        # Plain values are replaced in the bytes, all at once (a value chosen this run may
        # be another one's recorded value: no replacement may see another's output).
        quoted = {b'"%s"' % k.encode(): b'"%s"' % v.encode() for k, v in self.ids.items()}
        self._quoted = (
            re.compile(b"|".join(re.escape(k) for k in sorted(quoted, key=len, reverse=True))),
            quoted,
        )

    def with_changes(
        self, ids: Mapping[str, str], metadata: tuple[tuple[Any, Any], ...] = ()
    ) -> ClientEcho:
        return ClientEcho({**self.ids, **ids}, self.metadata + metadata)

    def apply(self, data: bytes) -> bytes:
        """A recorded server frame's JSON bytes with this run's values (the same bytes if none)."""
        escaped = b"\\u" in data
        mentioned = escaped or any(n in data for n in self._needles)
        if not mentioned and (not self.metadata or b'"metadata"' not in data):
            return data
        if self._plain and not escaped:
            pattern, quoted = self._quoted
            return pattern.sub(lambda m: quoted[m.group()], data)
        try:
            event = _decoder.decode(data)
        except (msgspec.DecodeError, RecursionError):
            return data
        changed = False
        placed: Any = None  # this run's metadata, not to be rewritten again
        response = event.get("response") if isinstance(event, dict) else None
        if isinstance(response, dict) and "metadata" in response:
            for recorded, chosen in self.metadata:
                if response["metadata"] == recorded:
                    response["metadata"] = placed = chosen
                    changed = True
                    break
        if self.ids and isinstance(event, (dict, list)):
            changed = self._walk(event, placed) or changed
        if not changed:
            return data
        try:
            return msgspec.json.encode(event)
        except RecursionError:  # a frame nested too deeply to encode again goes as recorded
            return data

    def _walk(self, value: dict[str, Any] | list[Any], skip: Any) -> bool:
        ids = self.ids
        changed = False
        stack = [value]
        while stack:
            v = stack.pop()
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, item in items:
                if isinstance(item, str):
                    if item in ids:
                        v[k] = ids[item]  # type: ignore[index]
                        changed = True
                elif isinstance(item, (dict, list)) and item is not skip:
                    stack.append(item)
        return changed

    def __repr__(self) -> str:
        return f"ClientEcho({self.ids!r}, {len(self.metadata)} metadata)"


@dataclass(frozen=True, slots=True)
class SendError:
    """Send this Realtime ``error`` event (UTF-8 JSON, a text frame) now."""

    message: bytes
    mismatch: Mismatch


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close the connection now with ``code`` and ``reason``; ``abort``: drop it.

    ``mismatch`` is the mismatch that made the replay close (strict mode, a stall), if any.
    """

    code: int
    reason: str
    abort: bool = False
    mismatch: Mismatch | None = None


class Holding(Protocol):
    """What a writer holds of the frames :meth:`Player.poll` handed out: ``frames``, in
    order, of which it wrote the first ``written``. Set :attr:`Player.holding` to it when
    writing takes awaits, so that a response interrupted meanwhile leaves out what the
    client has not got (:meth:`Player.withdraw`)."""

    frames: Sequence[ServerFrame]
    written: int


@dataclass(frozen=True, slots=True)
class FaultFired:
    """An injected fault fired (already in the report): nothing to send, something to log."""

    fired: FiredFault


Action = Send | SendError | CloseConnection | FaultFired


def check_options(
    speed: float | None, stall_timeout: float | None, audio_tolerance: float | None
) -> tuple[float | None, float | None, float]:
    """Validate the replay's timing options; return them normalised (``0`` -> ``None``).

    Raises :class:`ValueError` naming the bad option: every replay option is checked here,
    so the server, the CLI and the pytest plugin refuse the same values the same way.
    """

    def number(name: str, value: object, meaning: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number of seconds ({meaning}), not {value!r}")
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be >= 0 ({meaning}), not {value!r}")
        return float(value)

    speed_ = None if speed is None else number("speed", speed, "0: instant") or None
    stall = (
        None
        if stall_timeout is None
        else number("stall_timeout", stall_timeout, "0 or None: never") or None
    )
    tolerance = (
        0.0
        if audio_tolerance is None
        else number("audio_tolerance", audio_tolerance, "0: exact amounts")
    )
    return speed_, stall, tolerance


class _Out:
    """An output the player scheduled: frames (paced), an error event, or the close."""

    __slots__ = ("action", "base", "build", "delay", "frames", "i", "kind", "mark", "recorded", "t", "t0")

    def __init__(
        self,
        kind: int,
        base: float,
        *,
        frames: Sequence[ServerFrame] = (),
        t0: float = 0.0,
        delay: float = 0.0,
        t: float = 0.0,
        action: Action | None = None,
        mark: Mark | None = None,
        build: Callable[[], Sequence[ServerFrame]] | None = None,
    ) -> None:
        self.kind = kind
        self.base = base
        self.frames = frames
        self.i = 0
        self.t0 = t0
        self.delay = delay
        self.t = t
        self.action = action
        self.recorded = bool(frames) and frames[0].index >= 0
        self.mark = mark
        self.build = build


# What an output is: frames, an error event, the close, a mark (a fault firing), frames
# made up when due (the end of an interrupted response).
_SEND, _ERROR, _CLOSE, _MARK, _MAKE = 0, 1, 2, 3, 4


class Player:
    """Replays one recorded connection to one client (see the module docstring).

    ``connection`` is a recorded connection of a cassette index; :meth:`load` builds a
    player from a cassette path or :class:`~rtreplay.cassette.Cassette`, and
    :meth:`rtreplay.replay.ReplaySession.player` from a replay session.

    Options: ``policy`` compares events (default :meth:`MatchPolicy.default`); ``speed``
    ``None`` or 0 sends at once, ``1.0`` at the recorded pace, ``2.0`` twice as fast;
    ``strict`` closes on the first mismatch; ``stall_timeout`` (seconds; ``None`` or 0:
    never) bounds how long the client may stay silent while frames wait for it;
    ``audio_tolerance`` (seconds of audio) how much more or less audio than recorded is
    accepted. ``conn`` numbers the live connection in the report; ``report`` is the
    :class:`ReplayReport` to write to (a new one by default); ``timeline`` replaces the
    recorded schedule (:meth:`Timeline.of`); ``source`` reads payloads of frames kept in
    the cassette file. ``shift_times`` (on by default) moves the recorded time fields
    (``expires_at``...) to replay time, keeping their offset from the recording's start;
    ``fresh_ids`` gives this connection its own IDs in place of the recorded ones
    (:mod:`rtreplay.volatile`), and ``issued`` (fresh ID -> live connection number, shared
    by the connections of one replay) lets a stale echo name where it came from; ``clock``
    is the wall clock (unix seconds) times are shifted to. Bad options raise
    :class:`ValueError`.
    """

    def __init__(
        self,
        connection: IndexedConnection,
        *,
        policy: MatchPolicy | None = None,
        speed: float | None = None,
        strict: bool = False,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        audio_tolerance: float | None = DEFAULT_AUDIO_TOLERANCE,
        conn: int = 0,
        report: ReplayReport | None = None,
        timeline: Timeline | None = None,
        source: CassetteIndex | None = None,
        shift_times: bool = True,
        fresh_ids: bool = False,
        issued: dict[str, int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.speed, self.stall_timeout, self.audio_tolerance = check_options(
            speed, stall_timeout, audio_tolerance
        )
        self.shift_times = shift_times
        self.fresh_ids = fresh_ids
        self.clock = clock
        self._issued = issued if issued is not None else {}
        self.rewriter = Rewriter()  # made for the live connection by connect()
        self.connection = connection
        self.policy = policy if policy is not None else MatchPolicy.default()
        self.strict = strict
        self.conn = conn
        self.report = report if report is not None else ReplayReport(None, [connection])
        self.timeline = timeline if timeline is not None else connection.timeline
        self.source = source
        self.mismatches: list[Mismatch] = []  # the first KEPT of them
        self.mismatch_count = 0
        self.last_mismatch: Mismatch | None = None
        self.reorderings: list[Reordering] = []
        self.received = 0
        self.last_type: str | None = None  # type of the last received event
        self.finished = False  # the client went away, or the replay closed
        clients = connection.clients
        self._clients = clients
        self._matched = [False] * len(clients)
        self.progress = ConnectionProgress(
            conn, connection.number, clients, connection.server_count, self._matched
        )
        self.report.add_connection(self.progress)
        self._first = 0
        # Output.
        self._cue = 0  # the next cue of the timeline to release
        self._out: deque[_Out] = deque()
        self._floor = -math.inf  # when the last frame went out: none goes before it
        self._sent_upto = 0  # recorded server frames before this index have been sent
        self._last_sent: str | None = None
        self._stopped = False
        self._errors = 0
        # Time.
        self._activity = 0.0  # the last client message that moved the replay on, or frames sent
        self._steps = 0  # recorded client events matched so far (progress, for the stall clock)
        self._idle = 0  # client messages since the last that moved the replay on
        self._boundary = 0  # no recorded event before this one is both unmatched and not audio
        self._last_received: float | None = None
        self._last_desc: str | None = None
        # Audio: at the last boundary (a matched event other than an append), the audio
        # received so far and the audio recorded before that event; what was forgiven
        # since (shortfalls within the tolerance); the extra audio after the recording.
        self._appends = connection.appends
        self._next_append = 0
        self._audio = 0
        self._audio_at_boundary = 0
        self._recorded_at_boundary = 0
        self._forgiven = 0
        self._audio_hash = hashlib.blake2b(digest_size=16)
        self._extra = 0
        self._extra_reported = False
        self._gap_max = 0.0  # the longest pause between appends since the audio resumed
        self._previous_append = False
        # The audio the held frames need, when the last deadline given was the stall's
        # because the client's audio was short of it by more than the tolerance; audio
        # reaching it brings the deadline forward (the pause that ends the audio).
        self._audio_need: int | None = None
        self._sooner = False  # the deadline moved earlier since the last poll
        fmt = connection.input_format
        self._format = fmt
        self._tolerance = 0 if self.policy.audio == "content" else fmt.size(self.audio_tolerance)
        self._bound: dict[str, str] = {}
        self._bound_rev: dict[str, str] = {}
        self._echo: ClientEcho | None = None
        self._after: deque[str] = deque(maxlen=3)
        self._connected_at = 0.0
        #: How many times a response was interrupted: a writer holding frames handed out
        #: before compares it to know when to ask :meth:`withdraw` which to leave out.
        self.interruptions = 0
        self._left_out: set[int] = set()  # recorded frames never sent: interrupted responses
        #: What a writer still holds of the frames handed out (see :class:`Holding`).
        self.holding: Holding | None = None
        self._dropping: set[int] = set()  # frames of interrupted responses
        self._interrupted: set[str] = set()  # IDs of the responses interrupted
        self._made = 0  # events made up so far (their event_id numbers)
        # Server VAD: the recorded speech_started frames, the next one not yet released.
        self._speech = _int.speech_frames(connection) if connection.appends else []
        self._speech_next = 0

    @classmethod
    def load(
        cls, cassette: str | os.PathLike[str] | Cassette, connection: int = 0, **options: Any
    ) -> Player:
        """A player for recorded connection ``connection`` (its ``conn`` number) of a cassette.

        ``options`` are the constructor's. Raises the cassette errors of
        :func:`rtreplay.load`, and :class:`ValueError` for a connection the cassette lacks.
        """
        from ._index import CassetteIndex

        index = CassetteIndex.load(cassette)
        for ic in index.connections:
            if ic.number == connection:
                options.setdefault("report", ReplayReport(index.path, index.connections))
                return cls(ic, source=index, **options)
        numbers = ", ".join(str(ic.number) for ic in index.connections) or "none"
        raise ValueError(
            f"{index.path or 'the cassette'} has no connection {connection} (it has: {numbers})"
        )

    # -- the IdContext the match policy asks ------------------------------------------

    def _rewrite(self, frames: Sequence[ServerFrame]) -> Rewriter | None:
        """The rewriter for these frames, if it changes any of them: fresh IDs touch every
        frame, moved times only the frames that hold a time field (few: session events)."""
        rewriter = self.rewriter
        if rewriter.ids or (rewriter.shift and any(f.times for f in frames)):
            return rewriter
        return None

    def sent_as(self, recorded_id: str) -> str:
        return self.rewriter.sent_as(recorded_id)

    def origin(self, received_id: str) -> str | None:
        if not self.fresh_ids:
            return None
        if received_id in self.connection.introduced:
            return (
                "the recording's ID: with fresh IDs the client must echo the one this replay "
                "sent, so it kept an ID from another session"
            )
        other = self._issued.get(received_id)
        if other is not None and other != self.conn:
            return f"the ID live connection {other} was given: a stale ID from another session"
        return None

    def handed_out(self, recorded_id: str) -> bool:
        if recorded_id in self.connection.client_chosen:
            return False
        frame = self.connection.introduced.get(recorded_id)
        return frame is not None and frame < self._sent_upto

    def bound(self, recorded_id: str) -> str | None:
        return self._bound.get(recorded_id)

    def bound_to(self, received_id: str) -> str | None:
        return self._bound_rev.get(received_id)

    # -- inputs -----------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """The client is connected (``now``: the clock, in seconds)."""
        ic = self.connection
        if self.shift_times or self.fresh_ids:
            ids = (
                [v for v in ic.introduced if v not in ic.client_chosen] if self.fresh_ids else ()
            )
            self.rewriter = Rewriter.for_connection(
                recorded_at=ic.recorded_at if self.shift_times else None,
                now=self.clock() if self.shift_times else None,
                ids=ids,
                time_fields=ic.profile.time_fields,
            )
            for fresh in self.rewriter.ids.values():
                self._issued[fresh] = self.conn
        self._activity = now
        self._connected_at = now
        self._schedule(now)

    def receive(self, message: str | bytes, now: float) -> None:
        """A message from the client (``str`` for a text frame, ``bytes`` for binary)."""
        if self._stopped:
            return
        self.received += 1
        gap = now - self._last_received if self._last_received is not None else 0.0
        self._last_received = now
        steps, interruptions = self._steps, self.interruptions
        moved = False
        event: Any = None
        if isinstance(message, str):  # Realtime events are text; binary frames compare verbatim
            try:
                event = _decoder.decode(message)
            except (msgspec.DecodeError, RecursionError):
                event = None
            if event is not None and deeper_than(event, MAX_EVENT_DEPTH):
                event = None  # compared as text: a comparison that deep would exhaust the stack
        kind = event.get("type") if isinstance(event, dict) else None
        self.last_type = kind if isinstance(kind, str) else None
        self._last_desc = self.last_type or _describe_message(message, event)
        append = self.connection.profile.audio_append
        if kind is not None and kind == append and isinstance(event.get("audio"), str):
            if self._previous_append:
                self._gap_max = max(self._gap_max, gap)
            self._previous_append = True
            toward = self._toward()
            self._on_audio(event, now)
            moved = self._toward() > toward
            need = self._audio_need
            if need is not None and need - self._covered() <= self._tolerance:
                self._audio_need = None
                self._sooner = True
        else:
            self._previous_append = False
            self._gap_max = 0.0
            self._extra_reported = False
            if kind in _int.INTERRUPTING:
                self._on_interrupting(event, kind, message, now)
            else:
                self._on_event(event, message, now)
        if moved or self._steps != steps or self.interruptions != interruptions:
            self._activity = now  # (an interruption that took effect changed the timeline)
            self._idle = 0
        else:
            self._idle += 1
        self._schedule(now)

    def _toward(self) -> int:
        """How far the client's audio reaches (bytes of the recorded stream), up to the
        audio recorded before the next client event that is not audio: audio beyond that
        moves nothing on (a microphone left streaming silence)."""
        clients, matched = self._clients, self._matched
        n = len(clients)
        p = max(self._boundary, self._first)
        while p < n and (matched[p] or clients[p].is_append):
            p += 1
        self._boundary = p
        target = clients[p].audio_before if p < n else self.connection.audio_total
        return min(self._covered(), target)

    def disconnect(self, now: float | None = None) -> None:
        """The connection is gone; what was not received stays unplayed.

        Audio that stopped short of the recording within the tolerance counts as complete.
        """
        if self.finished and self.progress.closed:
            return
        self.finished = True
        self.progress.closed = True
        if self._stopped:
            return
        self._end_of_audio()

    # -- outputs ------------------------------------------------------------------------

    def poll(self, now: float) -> list[Action]:
        """Everything due at ``now``, in the order to carry it out."""
        self._sooner = False
        if not self._out and not self._stopped:
            self._watch(now)
        actions: list[Action] = []
        sent = False
        out = self._out
        speed = self.speed
        while out:
            p = out[0]
            if p.kind == _SEND:
                frames, i, n = p.frames, p.i, len(p.frames)
                if speed is None:
                    due = max(p.base + p.delay, self._floor)
                    if due > now:
                        break
                    self._floor = due
                    j = n
                else:
                    j = i
                    while j < n:
                        due = p.base + p.delay + max(0.0, frames[j].t - p.t0) / speed
                        due = max(due, self._floor)
                        if due > now:
                            break
                        self._floor = due
                        j += 1
                if j > i:
                    sent = True
                    chunk = frames if i == 0 and j == n else frames[i:j]
                    actions.append(Send(chunk, self.source, self._echo, self._rewrite(chunk)))
                    last = frames[j - 1]
                    if p.recorded:
                        self.progress.sent += j - i
                        self._sent_upto = last.index + 1
                    self._last_sent = last.type or self._last_sent
                if j < n:
                    p.i = j
                    break
                out.popleft()
            elif p.kind == _ERROR:
                assert p.action is not None
                actions.append(p.action)
                out.popleft()
            elif p.kind == _MAKE:
                assert p.build is not None
                # Made now, from what was really sent: the frames made up go out as any.
                p.frames, p.kind, p.build = p.build(), _SEND, None
                if not p.frames:
                    out.popleft()
            elif p.kind == _MARK:
                due = max(self._close_due(p), self._floor)
                if due > now:
                    break
                out.popleft()
                assert p.mark is not None
                actions.append(self._fire(p.mark, due))
                if p.mark.hold == math.inf:
                    out.clear()  # an endless stall: nothing ever again
                    self._stopped = True
                elif p.mark.hold:
                    self._floor = due + p.mark.hold
                    self._activity = max(self._activity, self._floor)
            else:
                due = max(self._close_due(p), self._floor)
                if due > now:
                    break
                assert p.action is not None
                actions.append(p.action)
                out.clear()
                self._stopped = True
                self.finished = True
        if sent:  # (an error event answering a mismatch moves nothing on)
            self._activity = max(self._activity, now)
        return actions

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to do if no message comes; ``None``: nothing.

        A time in the past means now.
        """
        if self._out:
            p = self._out[0]
            if p.kind == _SEND:
                base = p.base + p.delay
                if self.speed is not None:
                    base += max(0.0, p.frames[p.i].t - p.t0) / self.speed
                return max(base, self._floor)
            if p.kind == _ERROR or p.kind == _MAKE:
                return p.base
            return max(self._close_due(p), self._floor)
        if self._stopped or self.finished:
            return None
        wait = self._waiting()
        if wait is None:
            if self.stall_timeout is not None and self._cue >= len(self.timeline.cues):
                return self._activity + self.stall_timeout  # everything sent: the client's turn
            return None
        deadline: float | None = None
        if self.stall_timeout is not None:
            deadline = self._activity + self.stall_timeout
        audio = self._audio_wait(*wait)
        self._audio_need = audio[1] if audio is not None and not audio[3] else None
        if audio is not None and audio[3]:
            quiet = self._quiet_since() + self._audio_quiet()
            deadline = quiet if deadline is None else min(deadline, quiet)
        return deadline

    def _close_due(self, p: _Out) -> float:
        if self.speed is None:
            return p.base + p.delay
        return p.base + p.delay + max(0.0, p.t - p.t0) / self.speed

    # -- state ------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether something is scheduled to go out, or :meth:`next_deadline` moved earlier
        since the last :meth:`poll` (so :meth:`poll` and :meth:`next_deadline` are worth
        calling now)."""
        return bool(self._out) or self._sooner

    @property
    def done(self) -> bool:
        """Every recorded client event was matched."""
        return self._first >= len(self._clients)

    @property
    def released(self) -> int:
        """Recorded server frames handed out so far."""
        return self.progress.sent

    def unplayed(self) -> Unplayed | None:
        """What this connection's recording still holds, or ``None`` if all was played."""
        return self.progress.unplayed()

    # -- the schedule -----------------------------------------------------------------

    def _satisfied(self, req: Requirement) -> bool:
        if req.also and not all(self._matched[i] for i in req.also):
            return False
        after = req.after
        if after < 0:
            return True
        if req.every:
            return self._first > after
        return self._matched[after]

    def _schedule(self, now: float) -> None:
        if self._stopped:
            return
        cues = self.timeline.cues
        while self._cue < len(cues):
            cue = cues[self._cue]
            if not self._satisfied(cue.requirement):
                return
            self._cue += 1
            speech = self._speech_next < len(self._speech) and bool(cue.frames)
            if cue.frames and not (speech and self._speaks(cue, now)):
                self._out.append(
                    _Out(_SEND, now, frames=cue.frames, t0=cue.t0, delay=cue.delay)
                )
            if cue.mark is not None:
                mark = cue.mark
                self._out.append(
                    _Out(_MARK, now, t0=cue.t0, delay=cue.delay, t=mark.t, mark=mark)
                )
            if cue.ending is not None:
                e = cue.ending
                action = CloseConnection(e.code, e.reason, e.abort)
                self._out.append(_Out(_CLOSE, now, t0=cue.t0, delay=cue.delay, t=e.t, action=action))
                return

    def _waiting(self) -> tuple[Cue, int] | None:
        """The cue held for the client, and the client event it waits for."""
        cues = self.timeline.cues
        if self._cue >= len(cues):
            return None
        cue = cues[self._cue]
        req = cue.requirement
        if self._satisfied(req):
            return None
        main = Requirement(req.after, req.every, req.rule)
        if req.also and self._satisfied(main):
            # Only some of the events it also waits for (tool outputs) are missing.
            return cue, next(i for i in req.also if not self._matched[i])
        return cue, (self._first if req.every else req.after)

    def _covered(self) -> int:
        """How far into the recorded audio stream the client's audio reaches (bytes)."""
        return self._audio - self._audio_at_boundary + self._recorded_at_boundary + self._forgiven

    def _audio_wait(self, cue: Cue, j: int) -> tuple[int, int, int, bool] | None:
        """When the cue waits for audio only: (last append, audio needed, covered, within
        the tolerance); else ``None``."""
        clients = self._clients
        if not clients[j].is_append:
            return None
        req = cue.requirement
        last = j
        if req.every:
            for k in range(j, req.after + 1):
                if self._matched[k]:
                    continue
                if not clients[k].is_append:
                    return None
                last = k
        need = clients[last].audio_end
        covered = self._covered()
        within = self.policy.audio == "ignore" or need - covered <= self._tolerance
        return last, need, covered, within

    def _quiet_since(self) -> float:
        return self._last_received if self._last_received is not None else self._activity

    def _audio_quiet(self) -> float:
        quiet = min(max(2 * self._gap_max, AUDIO_QUIET_MIN), AUDIO_QUIET_MAX)
        if self.stall_timeout is not None:
            quiet = min(quiet, self.stall_timeout)
        return quiet

    def _watch(self, now: float) -> None:
        """Nothing is due: act on the client's silence (the audio's end, a stall)."""
        if self.finished:  # the client is gone: nobody left to wait for
            return
        wait = self._waiting()
        if wait is None:
            if (
                self.stall_timeout is not None
                and self._cue >= len(self.timeline.cues)
                and now >= self._activity + self.stall_timeout
            ):
                self._stall_at_end(now)
            return
        cue, j = wait
        audio = self._audio_wait(cue, j)
        if audio is not None and audio[3] and now >= self._quiet_since() + self._audio_quiet():
            last, need, covered, _ = audio
            held = _held(cue, total=len(self.connection.server))
            self._forgive(last, need, covered, f"before {held}")
            self._schedule(now)
            return
        if self.stall_timeout is not None and now >= self._activity + self.stall_timeout:
            self._stall(now, cue, j, audio)

    def _forgive(self, last: int, need: int, covered: int, where: str) -> None:
        """Take the client's audio as reaching recorded append ``last`` (within the tolerance)."""
        clients = self._clients
        for k in range(self._first, last + 1):
            if clients[k].is_append and not self._matched[k]:
                self._mark(k)
        appends = self._appends
        while self._next_append < len(appends) and appends[self._next_append] <= last:
            self._next_append += 1
        shortfall = need - covered
        self._forgiven += shortfall
        self._gap_max = 0.0
        if shortfall > 0 and self.policy.audio != "ignore":
            base = self._recorded_at_boundary
            self._note_audio(where, need - base, covered - base, clients[last].turn)

    def _note_audio(self, where: str, expected: int, got: int, turn: int) -> None:
        ms = self._format.ms
        self.report.add_audio(
            AudioDifference(
                self.conn,
                self.connection.number,
                turn,
                where,
                ms(expected),
                ms(got),
                self.audio_tolerance * 1000,
            )
        )

    def _end_of_audio(self) -> None:
        """The client left: audio short of the recording within the tolerance is complete;
        extra audio after the recording is noted."""
        clients = self._clients
        rest = [c for c in clients[self._first :] if not self._matched[c.index]]
        if rest and all(c.is_append for c in rest):
            last = rest[-1]
            need, covered = last.audio_end, self._covered()
            if self.policy.audio == "ignore" or need - covered <= self._tolerance:
                self._forgive(last.index, need, covered, "at the end of the audio")
        if self._extra and not self._extra_reported and self.policy.audio != "ignore":
            turn = clients[-1].turn if clients else 1
            self._note_audio("after the recording's last client event", 0, self._extra, turn)

    def _stall(self, now: float, cue: Cue, j: int, audio: tuple[int, int, int, bool] | None) -> None:
        c = self._clients[j]
        held = _held(cue, self.report.source, len(self.connection.server))
        last = self._last_desc or "nothing"
        kind: MismatchKind
        if audio is not None:
            _, need, covered, _ = audio
            ms = self._format.ms
            base = self._recorded_at_boundary
            kind = "audio"
            what = (
                f"the client's audio stopped {_ms(ms(need - covered))} short: the replay holds "
                f"{held} until {_ms(ms(need - base))} of audio have arrived "
                f"({c.describe()}, {self._client_at(c)}), {_ms(ms(covered - base))} have, "
                f"beyond the {_ms(self.audio_tolerance * 1000)} audio tolerance"
            )
        else:
            kind = "stall"
            what = (
                f"the replay holds {held} until the client sends {c.describe()} "
                f"({self._client_at(c)})"
            )
        message = f"stall: {what}, and {self._silence()} (last sent: {last})"
        expected = c.event if c.event is not None else c.message
        m = self._record(kind, j, expected, None, message, (), held=held)
        self._cut_stalled(m, f"rtreplay stall: waiting for {c.describe()}", now)

    def _stall_at_end(self, now: float) -> None:
        """Every recorded server frame went out, and the client neither closes nor sends
        what the recording has next: the client waits for more than the recording has."""
        self._end_of_audio()  # audio a little short of the recording's is complete
        c = next((c for c in self._clients[self._first :] if not self._matched[c.index]), None)
        awaits: str | None = None
        if c is not None and c.is_append:
            still = c.audio_end - self._covered()
            what = (
                f"the recording has the client send more audio next ({c.describe()}, "
                f"{self._client_at(c)}; {_ms(self._format.ms(still))} of audio still recorded)"
            )
            reason = "rtreplay stall: every recorded server event was sent; the recording has more audio next"
        elif c is not None:
            what = (
                f"the recording has the client send {c.describe()} next ({self._client_at(c)}), "
                "which no recorded server event waits for"
            )
            reason = f"rtreplay stall: every recorded server event was sent; the recording has {c.describe()} next"
        else:
            close = self.connection.close
            if close is not None:
                how = f"code {close.code}" + (f", {close.reason!r}" if close.reason else "")
                what = f"the recording has the client close the connection next ({how})"
                awaits = f"the client to close the connection, as the recorded client did ({how})"
                reason = "rtreplay stall: every recorded server event was sent; the recorded client closed here"
            else:
                what = "the recording ends there, with the connection still open (no close was recorded)"
                awaits = "nothing: the recording ends there"
                reason = "rtreplay stall: every recorded server event was sent; the recording ends here"
        message = (
            f"stall: the replay has no recorded server event left to send: {what}, and "
            f"{self._silence()} (last sent: {self._last_desc or 'nothing'})"
        )
        expected = None if c is None else c.event if c.event is not None else c.message
        index = None if c is None else c.index
        m = self._record("stall", index, expected, None, message, (), held=NOTHING_HELD, awaits=awaits)
        self._cut_stalled(m, reason, now)

    def _silence(self) -> str:
        """How the client went without moving the replay on, for a stall's message."""
        timeout = f"the stall timeout, {self.stall_timeout:g} s"
        idle = self._idle
        if not idle:
            return f"the client has been silent for {timeout}"
        what = (
            "audio beyond what the recording has there"
            if self.last_type is not None and self.last_type == self.connection.profile.audio_append
            else "none of them a recorded client event"
        )
        return (
            f"for {timeout}, the client has sent nothing that moves the replay on "
            f"({idle:,} message{'s' if idle != 1 else ''}, {what})"
        )

    def _cut_stalled(self, m: Mismatch, reason: str, now: float) -> None:
        """Tell the client about a stall (an ``error`` event), then close with 1008."""
        self._errors += 1
        error = _error_event(self._errors, "rtreplay_stall", f"rtreplay: {m.summary}", None, None)
        self._out.append(_Out(_ERROR, now, action=SendError(error, m)))
        self._out.append(_Out(_CLOSE, now, action=CloseConnection(1008, _cut(reason, 123), False, m)))

    def _client_at(self, c: ClientFrame) -> str:
        at = f"client event {c.index + 1} of {len(self._clients)}"
        source = self.report.source
        return f"{at}, {source}:{c.line}" if source and c.line else at

    # -- matching ---------------------------------------------------------------------

    def _mark(self, j: int) -> None:
        self._matched[j] = True
        self._steps += 1
        n = len(self._clients)
        while self._first < n and self._matched[self._first]:
            self._first += 1

    def _on_audio(self, event: dict[str, Any], now: float) -> None:
        audio: str = event["audio"]
        size = audio_length(audio)
        if self.done:
            self._extra += size
            self._check_extra(event, size, now)
            return
        self._audio += size
        if self.policy.audio == "content":
            hash_audio(self._audio_hash, audio)
        # Appends of the current turn covered by the audio received so far are matched,
        # which releases the server frames recorded after them (speech_started...).
        turn = self._clients[self._first].turn
        covered = self._covered()
        appends = self._appends
        while self._next_append < len(appends):
            c = self._clients[appends[self._next_append]]
            if not self._matched[c.index]:
                if c.turn != turn or c.audio_end > covered:
                    break
                self._mark(c.index)
                self._after.append(c.describe())
            self._next_append += 1
        if self.done:  # this append ran past the recording's last one: the rest is extra
            self._extra = covered - self.connection.audio_total
            self._check_extra(event, size, now)

    def _check_extra(self, event: dict[str, Any], size: int, now: float) -> None:
        """Audio after the recording's last client event: fine within the tolerance."""
        if self.policy.audio == "ignore" or self._extra <= self._tolerance:
            return
        if self._extra_reported:
            return
        self._extra_reported = True
        self._mismatch(
            "after_end",
            None,
            None,
            {**event, "audio": f"<{size:,} bytes of audio>"},
            f"got {event['type']} after the recording's last client event: "
            f"{_ms(self._format.ms(self._extra))} of audio more than recorded, beyond the "
            f"{_ms(self.audio_tolerance * 1000)} audio tolerance",
            (),
            event,
            now,
        )

    def _compare(self, c: ClientFrame, event: Any, message: str | bytes) -> Verdict:
        if c.event is None and c.message is not None:
            if type(c.message) is type(message) and c.message == message:
                return Verdict("match")
            kind: VerdictKind = (
                "content" if type(c.message) is type(message) and event is None else "type"
            )
            return Verdict(kind, (Difference("", c.message, message),))
        if event is None:
            return Verdict("type", (Difference("", c.event, message, "not a JSON event"),))
        if c.type == _int.TRUNCATE and self.policy.name != "exact" and isinstance(event, dict):
            # How much audio the client played before truncating is its own: never a mismatch.
            recorded = {k: v for k, v in c.event.items() if k != "audio_end_ms"}
            event = {k: v for k, v in event.items() if k != "audio_end_ms"}
            return self.policy.compare(recorded, event, self, self.connection.profile.echoed_ids)
        return self.policy.compare(c.event, event, self, self.connection.profile.echoed_ids)

    def _depends_on_held_frames(self, c: ClientFrame) -> bool:
        introduced = self.connection.introduced
        chosen = self.connection.client_chosen
        for v in c.ids:
            if v in chosen:
                continue
            frame = introduced.get(v)
            if frame is not None and frame >= self._sent_upto:
                return True
        return False

    def _on_event(
        self,
        event: Any,
        message: str | bytes,
        now: float,
        unmatched: Callable[[], bool] | None = None,
    ) -> None:
        """Match a client event; ``unmatched`` answers one that matches nothing recorded
        (returning ``True``) instead of reporting it."""
        clients = self._clients
        n = len(clients)
        got = event if event is not None else message
        if unmatched is not None and self.done and unmatched():
            return
        if self.done:
            desc = self._last_desc or "a message"
            self._mismatch(
                "after_end",
                None,
                None,
                got,
                f"got {desc} after the recording's last client event",
                (),
                event,
                now,
            )
            return
        expected_j = next(
            (j for j in range(self._first, n) if not self._matched[j] and not clients[j].is_append),
            None,
        )
        if expected_j is None and unmatched is not None and unmatched():
            return
        if expected_j is None:
            still = sum(c.audio_len for c in clients if not self._matched[c.index])
            append = self.connection.profile.audio_append
            self._mismatch(
                "unexpected",
                self._first,
                clients[self._first].event,
                got,
                f"expected more audio ({append}, {still:,} bytes still recorded), "
                f"got {self.last_type or 'a message that is not an event'}",
                (),
                event,
                now,
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
            if j != expected_j and not (
                self._tool_output(clients[j]) and self._tool_output(clients[expected_j])
            ):
                # (Tool outputs come back in any order: that is no reordering worth a note.)
                r = Reordering(
                    self.conn,
                    self.connection.number,
                    clients[expected_j].describe(),
                    clients[j].describe(),
                    j,
                )
                self.reorderings.append(r)
                self.report.add_reordering(r)
            self._accept(j, expected_j, verdict, now, event)
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
            found: MismatchKind = "rule" if verdict.kind == "rule" else (
                "id" if verdict.kind == "id" else "content"
            )
            self._mismatch(found, j, c.event, got, what, verdict.differences, event, now)
            if not self._stopped:
                self._accept(j, expected_j, verdict, now, event)
            return
        if unmatched is not None and unmatched():
            return
        c = clients[expected_j]
        self._mismatch(
            "unexpected",
            expected_j,
            c.event if c.event is not None else c.message,
            got,
            f"expected {c.describe()}, got {self._last_desc}",
            (),
            event,
            now,
        )

    def _tool_output(self, c: ClientFrame) -> bool:
        """Whether a recorded client event sends a tool's output (a parallel tool call's)."""
        kind = self.connection.profile.tool_output
        item = c.event.get("item") if isinstance(c.event, dict) else None
        return kind is not None and isinstance(item, dict) and item.get("type") == kind

    def _accept(self, j: int, expected_j: int, verdict: Verdict, now: float, event: Any) -> None:
        for recorded, received in verdict.bindings.items():
            self._bound[recorded] = received
            self._bound_rev[received] = recorded
        c = self._clients[j]
        self._learn_echo(c.event, event, verdict.bindings)
        if c.type in _int.INTERRUPTING:
            # Not a boundary of the audio stream: a client interrupts whenever it likes,
            # however much audio it sent (the appends recorded before it are still due).
            if c.type == _int.TRUNCATE:
                self._truncated(j, c, event)
        elif j == expected_j:
            self._audio_boundary(c, now, event)
        self._mark(j)
        self._after.append(c.describe())

    def _learn_echo(self, recorded: Any, got: Any, bindings: Mapping[str, str]) -> None:
        """Note what the client chose in place of the recording, for the frames still to go."""
        ids = {k: v for k, v in bindings.items() if k != v}
        metadata: tuple[tuple[Any, Any], ...] = ()
        if isinstance(recorded, dict) and isinstance(got, dict):
            # Whatever the match policy compared: IDs the client chose when recording.
            chosen = self.connection.client_chosen
            table = self.connection.profile.echoed_ids
            for path in table.get(str(recorded.get("type")), ()):
                if path in METADATA_PATHS:
                    continue
                parts = path.split(".")
                # (Lists of input items may differ in length: pairs as far as both go.)
                pairs = zip(_path_values(recorded, parts), _path_values(got, parts), strict=False)
                for want, have in pairs:
                    if want in chosen and isinstance(have, str) and have and have != want:
                        ids.setdefault(want, have)
            want, have = recorded.get("event_id"), got.get("event_id")
            if isinstance(want, str) and isinstance(have, str) and want and want != have:
                ids[want] = have
            want, have = recorded.get("response"), got.get("response")
            if (
                isinstance(want, dict)
                and isinstance(have, dict)
                and "metadata" in want
                and want["metadata"] != have.get("metadata")
            ):
                metadata = ((want["metadata"], have.get("metadata")),)
        if not ids and not metadata:
            return
        if self._echo is None:
            self._echo = ClientEcho(ids, metadata)
        else:
            self._echo = self._echo.with_changes(ids, metadata)

    def _audio_boundary(self, c: ClientFrame, now: float, event: Any) -> None:
        expected = c.audio_before - self._recorded_at_boundary
        got = self._audio - self._audio_at_boundary + self._forgiven
        mode = self.policy.audio
        if mode != "ignore" and expected != got:
            ms = self._format.ms
            if abs(expected - got) > self._tolerance:
                tolerance = (
                    "audio is compared by content"
                    if mode == "content"
                    else f"beyond the {_ms(self.audio_tolerance * 1000)} audio tolerance"
                )
                self._mismatch(
                    "audio",
                    c.index,
                    None,
                    None,
                    f"expected {_ms(ms(expected))} of audio before {c.describe()}, got "
                    f"{_ms(ms(got))} ({expected:,} and {got:,} bytes; {tolerance})",
                    (),
                    event,
                    now,
                )
            else:
                self._note_audio(f"before {c.describe()}", expected, got, c.turn)
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
            )
        self._audio_at_boundary = self._audio
        self._recorded_at_boundary = c.audio_before
        self._forgiven = 0
        self._audio_hash = hashlib.blake2b(digest_size=16)
        # Appends the client never sent are part of the difference just reported.
        for k in range(self._first, c.index):
            if self._clients[k].is_append:
                self._matched[k] = True
        while self._next_append < len(self._appends) and self._appends[self._next_append] < c.index:
            self._next_append += 1

    # -- injected faults --------------------------------------------------------------

    def _fire(self, mark: Mark, due: float) -> FaultFired:
        """A fault's mark is reached: into the report, and the connection cut if it ends it."""
        fired = FiredFault(
            mark.label, self.conn, self.connection.number, self._where(mark), due - self._connected_at
        )
        self.report.add_fault(fired)
        if mark.cut:
            self.progress.cut_by = mark.label
        return FaultFired(fired)

    def _where(self, mark: Mark) -> str:
        fault = mark.fault
        if not isinstance(fault, Fault):
            return f"at recorded time {mark.t:g} s"
        at = fault.at
        if at.place == "open":
            return "right after the handshake, before any frame"
        frame = locate(self.connection.server, at)
        if frame is None:
            return f"at recorded time {mark.t:g} s, after the recording's last server event"
        held = _held(Cue((frame,), frame.requirement), self.report.source, len(self.connection.server))
        if at.place == "t":
            return f"at recorded time {mark.t:g} s, before {held}"
        return f"{at.place} {held}"

    # -- interruptions ----------------------------------------------------------------

    def withdraw(self, frames: Sequence[ServerFrame]) -> list[ServerFrame]:
        """Of frames handed out by :meth:`poll` and not written yet, those still to write.

        A response the client interrupted while a writer held some of its frames must
        not go on after the interruption: when :attr:`interruptions` changed since it
        polled, the writer asks this before writing more, and sends only what it returns.
        """
        keep: list[ServerFrame] = []
        dropping = self._dropping
        for f in frames:
            if f.index >= 0 and f.index in dropping and f.index not in self._left_out:
                self._left_out.add(f.index)
                self.progress.sent -= 1
                self.progress.dropped += 1
            else:
                keep.append(f)
        return keep

    def _read(self, frames: Sequence[ServerFrame]) -> Iterator[tuple[ServerFrame, bytes]]:
        if self.source is not None:
            return self.source.payloads(frames)
        return ((f, f.data) for f in frames if f.data is not None)

    def _handed_out(self, index: int) -> bool:
        """Whether the client got recorded frame ``index`` (its writer wrote it)."""
        if index >= self._sent_upto or index in self._left_out:
            return False
        holding = self.holding
        if holding is None:
            return True
        frames, written = holding.frames, holding.written
        if not frames:
            return True
        # Frames go out in recorded order: those from the first unwritten one on are held,
        # and so are those handed out after the last it holds (the next writes of a poll).
        while written < len(frames) and frames[written].index < 0:
            written += 1
        if written < len(frames):
            return index < frames[written].index
        last = max((f.index for f in frames), default=-1)
        return index <= last

    def _playing(self) -> _int.ResponseSpan | None:
        """The response the client is receiving: created sent, done not yet."""
        for span in reversed(_int.response_spans(self.connection, self._read)):
            if not self._handed_out(span.created):
                continue
            if span.id in self._interrupted:
                return None
            if span.done is not None and self._handed_out(span.done):
                return None
            return span
        return None

    def _response_events(
        self, span: _int.ResponseSpan
    ) -> tuple[list[tuple[ServerFrame, Any, bool]], set[str]]:
        """The recorded frames from a response's creation to its end, decoded, each with
        whether it is the response's own (its ID, or one of its items'); its item IDs."""
        server = self.connection.server
        end = span.done if span.done is not None else len(server) - 1
        items: set[str] = set()
        out: list[tuple[ServerFrame, Any, bool]] = []
        for frame, data in self._read(server[span.created : end + 1]):
            event = _int.decode(frame, data)
            mine = False
            if isinstance(event, dict):
                response = event.get("response")
                mine = event.get("response_id") == span.id or (
                    isinstance(response, dict) and response.get("id") == span.id
                )
                item = event.get("item")
                item_id = item.get("id") if isinstance(item, dict) else event.get("item_id")
                if mine and frame.type == "response.output_item.added" and isinstance(item_id, str):
                    items.add(item_id)
                mine = mine or item_id in items or event.get("item_id") in items
            out.append((frame, event, mine))
        return out, items

    def _echoed(self, value: Any) -> Any:
        """A received ID as the recording knows it (fresh IDs and client-chosen ones mapped)."""
        if isinstance(value, str):
            recorded = self.rewriter.recorded(value) if self.rewriter.ids else None
            return recorded if recorded is not None else self._bound_rev.get(value, value)
        return value

    def _made_frame(self, event: dict[str, Any]) -> ServerFrame:
        """A frame the replay made up, with this connection's IDs (fresh ones if so)."""
        data = _int.encode(event)
        if self.rewriter.ids:
            data = self.rewriter.apply(data, times=False)
        return ServerFrame(0.0, True, event["type"], data=data)

    def _on_interrupting(self, event: Any, kind: str, message: str | bytes, now: float) -> None:
        """``response.cancel``, ``conversation.item.truncate``, ``output_audio_buffer.clear``."""
        span = self._playing() if isinstance(event, dict) else None
        events: list[tuple[ServerFrame, Any, bool]] = []
        items: set[str] = set()
        if span is not None:
            target = self._echoed(event.get("response_id")) if kind == _int.CANCEL else None
            if isinstance(target, str) and target != span.id:
                span = None
            else:
                events, items = self._response_events(span)
                if kind == _int.TRUNCATE and self._echoed(event.get("item_id")) not in items:
                    span = None  # a truncate of another item: nothing to interrupt
        if span is None:
            self._on_event(event, message, now, lambda: self._answer_alone(event, kind, now))
            return
        chosen, recorded = self._match_interrupt(span, items, event, kind, message, now)
        if chosen is not None and kind == _int.CANCEL and self._as_recorded(
            events, lambda f: f.requirement.after >= chosen
        ):
            return  # cancelled where the recording did: what it recorded next follows
        answers: set[int] = set()
        if chosen is not None:
            answers = {
                f.index
                for f in self.connection.server
                if f.requirement.after == chosen and not f.requirement.every
                and f.type in ("conversation.item.truncated", "output_audio_buffer.cleared")
            }
        self._interrupt(span, events, kind, "client_cancelled", now, event, answers, recorded)

    def _as_recorded(
        self, events: list[tuple[ServerFrame, Any, bool]], recorded_after: Callable[[ServerFrame], bool]
    ) -> bool:
        """Whether every frame of the response the recording has before its interruption
        was sent: then the recording's own ending of it follows, unchanged."""
        return all(
            self._handed_out(f.index) or recorded_after(f) for f, _, mine in events if mine
        )

    def _match_interrupt(
        self,
        span: _int.ResponseSpan,
        items: set[str],
        event: Any,
        kind: str,
        message: str | bytes,
        now: float,
    ) -> tuple[int | None, bool]:
        """Match a client's interruption of a response with the recording's interruption of
        it, if it had one: ``(the recorded client event matched, the recording had one)``.

        The recording's cancel or clear of that response, if the client interrupted it
        otherwise, is taken as done: the client's interruption stands for it.
        """
        server = self.connection.server
        start = server[span.created].t
        end = server[span.done].t if span.done is not None else math.inf
        candidates: list[ClientFrame] = []
        for c in self._clients[self._first :]:
            if self._matched[c.index] or c.type not in _int.INTERRUPTING:
                continue
            if c.type == _int.TRUNCATE:
                if isinstance(c.event, dict) and c.event.get("item_id") in items:
                    candidates.append(c)
            elif start <= c.t <= end:
                candidates.append(c)
        chosen: int | None = None
        for c in candidates:
            if c.type != kind:
                continue
            verdict = self._compare(c, event, message)
            if verdict.ok:
                chosen = c.index
                self._accept(c.index, c.index, verdict, now, event)
                break
        for c in candidates:
            if c.type != _int.TRUNCATE and not self._matched[c.index] and (chosen is None or c.index < chosen):
                self._mark(c.index)
                self._after.append(f"{c.describe()} (as the client's {kind})")
        return chosen, bool(candidates)

    def _interrupt(
        self,
        span: _int.ResponseSpan,
        events: list[tuple[ServerFrame, Any, bool]],
        by: str,
        reason: str,
        now: float,
        event: Any = None,
        answers: set[int] | None = None,
        recorded: bool = False,
        first: Sequence[ServerFrame] = (),
    ) -> None:
        """Stop a response where it is: leave out the rest of it and queue its ending, made
        when due from what was really sent (``first``: frames to send before it)."""
        self.timeline = self.timeline.copy()  # never change a timeline given to us
        drop = {f.index for f, _, mine in events if mine and not self._handed_out(f.index)}
        templates = [ev for f, ev, mine in events if mine and f.index in drop]
        drop |= answers or set()
        self.progress.dropped += self._remove(drop)
        self._dropping.update(f.index for f, _, mine in events if mine)
        self._interrupted.add(span.id)
        self.interruptions += 1
        client_event = event if isinstance(event, dict) else {}

        def build() -> list[ServerFrame]:
            sent = _int.Sent(span.id)
            for f, ev, mine in events:
                if mine and self._handed_out(f.index):
                    sent.add(ev)
            made = _int.synthesise(
                sent, templates, reason, protocol=self.connection.protocol, number=self._number
            )
            if by == _int.TRUNCATE:
                made.append(self._truncated_event(client_event))
            elif by == _int.CLEAR:
                made.insert(0, _int.cleared(self._event_id(), span.id))
            self.report.add_interruption(
                Interruption(
                    self.conn,
                    self.connection.number,
                    by,
                    span.id,
                    reason,
                    sent.deltas,
                    len(drop),
                    tuple(e["type"] for e in made),
                    recorded,
                )
            )
            return [self._made_frame(e) for e in made]

        self._out.appendleft(_Out(_MAKE, now, build=build))
        if first:
            self._out.appendleft(_Out(_SEND, now, frames=first, t0=first[0].t))

    def _remove(self, drop: set[int]) -> int:
        """Leave out the recorded frames ``drop`` wherever they wait; return how many."""
        if not drop:
            return 0
        removed = 0
        kept: deque[_Out] = deque()
        for p in self._out:
            if p.kind == _SEND and p.recorded:
                rest = [f for f in p.frames[p.i :] if f.index not in drop]
                self._left_out.update(f.index for f in p.frames[p.i :] if f.index in drop)
                removed += len(p.frames) - p.i - len(rest)
                if not rest:
                    continue
                if len(rest) < len(p.frames) - p.i:
                    # What stays (rate_limits.updated...) no longer waits for the deltas
                    # left out: a latency delay paced it behind them.
                    p.delay = 0.0
                p.frames, p.i = rest, 0
            kept.append(p)
        self._out = kept
        cues = self.timeline.cues
        for k in range(self._cue, len(cues)):
            cue = cues[k]
            if any(f.index in drop for f in cue.frames):
                rest = [f for f in cue.frames if f.index not in drop]
                self._left_out.update(f.index for f in cue.frames if f.index in drop)
                removed += len(cue.frames) - len(rest)
                cues[k] = replace(cue, frames=rest, delay=0.0)
        return removed

    def _speaks(self, cue: Cue, now: float) -> bool:
        """Server VAD heard speech (the cue holds a recorded ``speech_started``) while a
        response plays: the API cancels the response (``turn_detected``). Returns whether
        the cue's frames were queued here, ahead of the response's ending."""
        last = max(f.index for f in cue.frames)
        speech = self._speech
        if last < speech[self._speech_next]:
            return False
        at = speech[self._speech_next]
        while self._speech_next < len(speech) and speech[self._speech_next] <= last:
            self._speech_next += 1
        span = self._playing()
        if span is None or not _int.vad_interrupts(self.connection, self._read):
            return False
        events, _ = self._response_events(span)
        if self._as_recorded(events, lambda f: f.index > at):
            return False  # the recording's speech came at this very point: play it as is
        self._interrupt(span, events, "speech", "turn_detected", now, first=cue.frames)
        return True

    def _answer_alone(self, event: Any, kind: str, now: float) -> bool:
        """What the API answers an interrupting event when no response plays and the
        recording has nothing to match it: returns whether it was answered."""
        if not isinstance(event, dict):
            return False
        made: dict[str, Any]
        if kind == _int.CANCEL:
            target = self._echoed(event.get("response_id"))
            if target is not None and not (isinstance(target, str) and self.handed_out(target)):
                return False  # a response the client was never given: a real mismatch
            made = _int.cancel_not_active(self._event_id(), event.get("event_id"))
            what = "the API's error response_cancel_not_active"
        elif kind == _int.TRUNCATE:
            item = self._echoed(event.get("item_id"))
            if not (isinstance(item, str) and self.handed_out(item)):
                return False  # an item the client was never given: a real mismatch
            made = self._truncated_event(event)
            what = "conversation.item.truncated"
        else:
            spans = _int.response_spans(self.connection, self._read)
            sent = [sp.id for sp in spans if self._handed_out(sp.created)]
            made = _int.cleared(self._event_id(), sent[-1] if sent else None)
            what = "output_audio_buffer.cleared"
        self.report.add_interruption(
            Interruption(self.conn, self.connection.number, kind, None, what, synthesised=(made["type"],))
        )
        self._out.append(_Out(_SEND, now, frames=(self._made_frame(made),)))
        return True

    def _truncated(self, j: int, c: ClientFrame, event: Any) -> None:
        """A truncate matched the recorded one: its recorded answer carries the client's
        ``audio_end_ms``, however much audio the client played."""
        if not isinstance(event, dict) or not isinstance(c.event, dict):
            return
        if event.get("audio_end_ms") == c.event.get("audio_end_ms"):
            return
        cues = self.timeline.cues
        for k in range(self._cue, len(cues)):
            cue = cues[k]
            if cue.requirement.after != j or cue.requirement.every:
                continue
            frames = list(cue.frames)
            for i, f in enumerate(frames):
                if f.type != "conversation.item.truncated":
                    continue
                [(_, data)] = list(self._read([f]))
                answer = _int.decode(f, data)
                if isinstance(answer, dict):
                    answer["audio_end_ms"] = event.get("audio_end_ms")
                    frames[i] = ServerFrame(
                        f.t, f.text, f.type, data=_int.encode(answer), index=f.index,
                        line=f.line, requirement=f.requirement,
                    )
                    self.timeline = self.timeline.copy()
                    self.timeline.cues[k] = replace(cue, frames=frames)
                    return

    def _truncated_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return _int.truncated(
            self._event_id(), event.get("item_id"), event.get("content_index", 0), event.get("audio_end_ms")
        )

    def _number(self) -> int:
        self._made += 1
        return self._made

    def _event_id(self) -> str:
        return f"event_rtreplay_{self._number()}"

    # -- mismatches -------------------------------------------------------------------

    def _record(
        self,
        kind: MismatchKind,
        index: int | None,
        expected: Any,
        got: Any,
        message: str,
        differences: tuple[Difference, ...],
        *,
        held: str | None = None,
        awaits: str | None = None,
    ) -> Mismatch:
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
            got=_bounded(policy.masked(got)),
            message=message,
            differences=differences,
            after=tuple(self._after),
            last_sent=self._last_sent,
            held=held,
            last_received=self._last_desc if held is not None else None,
            awaits=awaits,
        )
        self.mismatch_count += 1
        self.last_mismatch = m
        if len(self.mismatches) < KEPT:
            self.mismatches.append(m)
        self.report.add_mismatch(m)
        return m

    def _mismatch(
        self,
        kind: MismatchKind,
        index: int | None,
        expected: Any,
        got: Any,
        message: str,
        differences: tuple[Difference, ...],
        event: Any,
        now: float,
    ) -> None:
        m = self._record(kind, index, expected, got, message, differences)
        if self.strict:
            reason = _cut(f"rtreplay mismatch: {message}", 123)
            self._out.append(_Out(_CLOSE, now, action=CloseConnection(1008, reason, False, m)))
            self._stopped = True
            return
        self._errors += 1
        client_event_id = event.get("event_id") if isinstance(event, dict) else None
        data = _error_event(
            self._errors,
            "rtreplay_mismatch",
            f"rtreplay: {m.summary}",
            differences[0].path if differences else None,
            client_event_id if isinstance(client_event_id, str) else None,
        )
        self._out.append(_Out(_ERROR, now, action=SendError(data, m)))


# What a mismatch keeps of a string the client sent (the report shows 200 characters).
_KEPT_CHARS = 1000


def _bounded(value: Any) -> Any:
    """A received value for a report: strings over 1,000 characters cut (with their length),
    so that a kept mismatch costs little whatever the client sent."""
    if isinstance(value, str):
        return value if len(value) <= _KEPT_CHARS else f"{value[:_KEPT_CHARS]}… ({len(value):,} chars)"
    if isinstance(value, (bytes, bytearray)):
        return value if len(value) <= _KEPT_CHARS else bytes(value[:_KEPT_CHARS])
    if isinstance(value, dict):
        return {k: _bounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bounded(v) for v in value]
    return value


def _error_event(
    number: int, code: str, message: str, param: str | None, event_id: str | None
) -> bytes:
    """A Realtime ``error`` event, as the API shapes it (see PROTOCOL.md, 2.2)."""
    error = {
        "type": "error",
        "event_id": f"event_rtreplay_{number}",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    }
    return json.dumps(error, ensure_ascii=False, separators=(",", ":")).encode()


def _held(cue: Cue, source: str | None = None, total: int | None = None) -> str:
    """The server event a cue holds, and where the recording has it."""
    if not cue.frames:
        ending = cue.ending
        return f"the recorded close (code {ending.code})" if ending is not None else "nothing"
    f = cue.frames[0]
    if f.index < 0:
        return f.describe()
    of = f" of {total}" if total is not None else ""
    at = f", {source}:{f.line}" if source and f.line else ""
    return f"{f.describe()} (server event {f.index + 1}{of}{at})"


def _describe_message(message: str | bytes, event: Any) -> str:
    if isinstance(message, bytes):
        return "a binary frame"
    if event is None:
        return "a text frame that is not JSON"
    if isinstance(event, dict):
        return "an event without a type"
    return "JSON that is not an event"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if abs(value) >= 10 else f"{value:.1f} ms"


def _cut(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."
