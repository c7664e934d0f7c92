"""The recorded client, played against a server under test: Sans-I/O, one connection.

The replay :class:`~rtreplay.player.Player` plays the recorded *server* to a live client;
a :class:`Driver` plays the recorded *client* to a live server and checks what comes
back. No sockets, no clock of its own: its owner (:mod:`rtreplay.drive`'s websockets
shell, the Locust user, a test) feeds it and asks it, passing the time (seconds, any
monotonic clock)::

    driver.connect(now)                  # the handshake was accepted
    driver.receive(message, now)         # each message the server sends (str or bytes)
    for action in driver.poll(now):      # what to do now, in order: Send, Close
        ...
    driver.next_deadline()               # when to poll again if nothing comes (or None)
    driver.disconnect(now, code, reason) # the connection is gone

**When client events go out.** In recorded order. A client event waits until the
server events recorded before it have come (a stream once its first delta has; the
events a client never waits for, ``rate_limits.updated`` and input transcriptions,
only at the end), then for its recorded delay after the latest of them, divided by
``speed``, and never sooner than its recorded delay after the client event before it.
``input_audio_buffer.append`` events are a microphone: inside a run of appends none waits
for the server (the voice activity events between them are caused by the audio itself),
and they go at ``audio_speed`` times real time (``1.0`` by default; ``None`` or ``0``: at
once). IDs the recording's server handed out are replaced, wherever a client event
carries them, by the ones this server handed out for the same events.

**What comes back** is matched to the recorded server side by the server-side match
policy (:mod:`rtreplay.expect`): streams as wholes, causally independent events in any
order, IDs learned, volatile fields masked, content at the chosen strictness.

**Nothing waits forever.** While the driver waits for a server event, the server may
stay silent for at most ``timeout`` seconds (10 by default). Then every awaited event is
reported missing, by name and cassette line, and the drive goes on; if the server sent
nothing at all since the wait began, it is reported as not answering and the connection
is closed.

**The end.** After the last client event, the driver waits for the rest of the recorded
server events (the same bound), then ends as the recording did: closes with the recorded
code after the recorded delay, or waits for the server to close when the recording's
server closed. Events that belong to a response the recording's client hung up on
(the recording ends mid-response) are listed, not judged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

from ._index import CassetteIndex, IndexedConnection
from .expect import (
    Expectation,
    ServerPolicy,
    StreamKey,
    delta_key,
    event_roles,
    is_stream,
    non_blocking,
    resolve_server_policy,
    role_conflict,
    stream_content,
)
from .match import Difference
from .protocol import Requirement
from .redact import REDACTED
from .report import DriveMismatch, DriveMismatchKind, DriveProgress, DriveReport, ResponseTiming

if TYPE_CHECKING:
    from .cassette import Cassette, Open, Reject
    from .cassette import Close as CloseRecord

__all__ = [
    "DEFAULT_TIMEOUT",
    "Action",
    "ClientHandshake",
    "ClientStep",
    "Close",
    "Driver",
    "Script",
    "Send",
    "check_drive_options",
    "client_handshake",
    "scripts",
]

#: Seconds a server may stay silent while the driver waits for a recorded event. A server
#: under test answers within milliseconds and a live model within a few seconds; a
#: missing event is missing whatever the bound.
DEFAULT_TIMEOUT = 10.0

_any = msgspec.json.Decoder()

_CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key")
_HOP_BY_HOP = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "sec-websocket-protocol",
    }
)


def check_drive_options(
    speed: float | None, audio_speed: float | None, timeout: float | None
) -> tuple[float | None, float | None, float]:
    """Validate the drive's timing options; return them normalised (``0`` -> ``None``).

    Raises :class:`ValueError` naming the bad option.
    """

    def number(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, not {value!r}")
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        return float(value)

    s = None if speed is None else number("speed", speed) or None
    a = None if audio_speed is None else number("audio_speed", audio_speed) or None
    if timeout is None:
        raise ValueError("timeout must be a number of seconds > 0: nothing waits forever")
    t = number("timeout", timeout)
    if t <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
    return s, a, t


# -- the handshake ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientHandshake:
    """How to open a connection as the recorded client did.

    ``url`` is the full URL (path and query included); ``headers`` the recorded request
    headers with the user's credential in place of the redacted one (or without it);
    ``subprotocols`` those to offer; ``credential_missing`` names the credential the
    recording sent and no key was given for.
    """

    url: str
    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()
    credential_missing: str | None = None

    @property
    def user_agent(self) -> str | None:
        for name, value in self.headers:
            if name == "user-agent":
                return value
        return None


def client_handshake(open: Open, url: str, api_key: str | None = None) -> ClientHandshake:
    """The handshake of recorded connection ``open``, made to the server at ``url``.

    ``url`` is ``ws://`` or ``wss://`` (``http``/``https`` are taken for them); its path,
    when it has one, replaces the recorded path, and its query parameters are added to the
    recorded ones (its own win). Headers are the recorded ones, less those of one hop;
    the recorded credential (redacted in every cassette) is replaced by ``api_key``, or
    left out without one. Raises :class:`ValueError` for a URL that is not a WebSocket URL.
    """
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a WebSocket URL: {url!r} (give ws://HOST:PORT[/PATH])")
    path = parts.path if parts.path not in ("", "/") else open.path
    query: dict[str, str] = {}
    missing: str | None = None
    for key, value in open.query.items():
        if REDACTED in value:
            if api_key:
                query[key] = value.replace(REDACTED, api_key)
            else:
                missing = missing or f"the {key!r} query parameter"
            continue
        query[key] = value
    query.update(parse_qsl(parts.query, keep_blank_values=True))
    headers: list[tuple[str, str]] = []
    for name, value in open.headers.items():
        lname = name.lower()
        if lname in _HOP_BY_HOP:
            continue
        if REDACTED in value:
            if lname in _CREDENTIAL_HEADERS and api_key:
                headers.append((lname, value.replace(REDACTED, api_key)))
            elif lname in _CREDENTIAL_HEADERS:
                missing = missing or f"the {lname!r} header"
            continue
        headers.append((lname, value))
    subprotocols: list[str] = []
    if open.subprotocol:
        subprotocols.append(open.subprotocol)
        has_header = any(name in _CREDENTIAL_HEADERS for name, _ in headers)
        if api_key and not has_header and missing is None:
            # A browser client: its key travelled as a subprotocol (PROTOCOL.md 1.3).
            subprotocols.append(f"openai-insecure-api-key.{api_key}")
    from urllib.parse import urlencode

    q = urlencode(query)
    full = f"{scheme}://{parts.netloc}{path}" + (f"?{q}" if q else "")
    return ClientHandshake(full, tuple(headers), tuple(subprotocols), missing)


# -- the recorded client side, prepared once ---------------------------------------------------


@dataclass(eq=False)
class ClientStep:
    """One recorded client frame, ready to send.

    ``payload`` is the recorded message (``str`` for a text frame); ``ids`` the recorded
    server IDs it echoes, to replace; ``prereqs`` the expectations it waits for and
    ``anchor`` the one recorded last among them (its recorded delay counts from there).
    """

    index: int
    t: float
    payload: str | bytes
    label: str
    turn: int
    line: int
    is_append: bool = False
    ids: tuple[str, ...] = ()
    prereqs: tuple[int, ...] = ()
    anchor: int | None = None


@dataclass(eq=False)
class Script:
    """One recorded connection prepared for driving, shared by every driver of it.

    ``steps`` are the client frames, ``expectations`` the server side; ``introduced`` the
    IDs its server handed out; ``unfinished`` the recorded responses with no
    ``response.done`` (the recording's client hung up on them).
    """

    connection: IndexedConnection
    steps: list[ClientStep]
    expectations: list[Expectation]
    by_type: dict[str | None, list[int]]
    introduced: frozenset[str]
    unfinished: frozenset[str]
    openers: dict[str, int] = field(default_factory=dict)  # recorded response -> its created
    by_response: dict[str, list[int]] = field(default_factory=dict)  # its expectations
    source: str | None = None
    recorded_open: Open | None = None  # the whole handshake record (the index keeps less)
    warnings: tuple[str, ...] = ()  # what reading the cassette found (a last line cut short)

    @property
    def number(self) -> int:
        return self.connection.number

    @property
    def open(self) -> Open:
        return self.recorded_open if self.recorded_open is not None else self.connection.open

    @property
    def reject(self) -> Reject | None:
        return self.connection.reject

    @property
    def close(self) -> CloseRecord | None:
        return self.connection.close

    @property
    def last_t(self) -> float:
        ts = [s.t for s in self.steps] + [e.t_last for e in self.expectations]
        return max(ts, default=0.0)


def scripts(cassette: str | os.PathLike[str] | Cassette) -> list[Script]:
    """Every connection of a cassette, prepared for driving, in recorded order.

    Raises the cassette errors of :func:`rtreplay.load`.
    """
    from .cassette import Cassette as CassetteType
    from .codec import load

    if isinstance(cassette, CassetteType):
        loaded = cassette
        index = CassetteIndex.from_cassette(loaded, digests=False)
    else:
        loaded = load(cassette)
        # Read again for what the index keeps and a whole load does not: each frame's line
        # (a last line cut short was already warned about once).
        import warnings

        from .errors import CassetteTruncatedWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CassetteTruncatedWarning)
            index = CassetteIndex.from_path(cassette, digests=False)
        index.close()
    out = []
    for conn, ic in zip(loaded.connections, index.connections, strict=True):
        script = _script(conn.frames, ic, loaded.path)
        script.recorded_open = conn.open
        script.warnings = tuple(loaded.warnings)
        out.append(script)
    return out


def _script(frames: Sequence[Any], ic: IndexedConnection, source: str | None) -> Script:
    profile = ic.profile
    # Server frames recorded before each client frame.
    before: list[int] = []
    servers = 0
    payloads: list[str | bytes] = []
    server_data: list[bytes] = []
    for f in frames:
        if f.dir == "server":
            servers += 1
            server_data.append(f.payload_bytes())
        else:
            before.append(servers)
            payloads.append(f.payload())
    expectations: list[Expectation] = []
    frame_exp: list[int] = []
    streams: dict[StreamKey, int] = {}
    by_type: dict[str | None, list[int]] = {}
    openers: dict[str, int] = {}
    done_responses: set[str] = set()
    created_responses: set[str] = set()
    turn = 1
    for sf, data in zip(ic.server, server_data, strict=True):
        kind = sf.type
        if is_stream(kind):
            found = delta_key(data)
            if found is not None:
                key, roles = found
                if key in streams:
                    e = expectations[streams[key]]
                    e.count += 1
                    e.t_last = sf.t
                    e.pieces.append(data)
                    frame_exp.append(e.index)
                    continue
                e = Expectation(
                    len(expectations), sf.index, kind, kind or "", sf.requirement, sf.t, turn,
                    sf.line, raw=data, stream=True, t_last=sf.t, roles=roles, key=key,
                    pieces=[data],
                )
                e.event = _decode(data)
                e.blocking = not non_blocking(kind, profile.per_response)
                streams[key] = e.index
                expectations.append(e)
                by_type.setdefault(kind, []).append(e.index)
                frame_exp.append(e.index)
                continue
        event = _decode(data) if sf.text else None
        label = kind or ("text frame" if sf.text else "binary frame")
        e = Expectation(
            len(expectations), sf.index, kind, label, sf.requirement, sf.t, turn, sf.line,
            event=event, raw=data, t_last=sf.t, roles=event_roles(event),
        )
        e.blocking = not non_blocking(kind, profile.per_response)
        expectations.append(e)
        by_type.setdefault(kind, []).append(e.index)
        frame_exp.append(e.index)
        response = e.response
        if response is not None and kind == profile.response_created:
            openers.setdefault(response, e.index)
            created_responses.add(response)
        if kind == profile.response_done:
            if response is not None:
                done_responses.add(response)
            turn += 1
    introduced = frozenset(ic.introduced) - frozenset(ic.client_chosen)
    steps: list[ClientStep] = []
    carried: list[int] = []
    seen = 0  # server frames whose expectations were handed to a step already
    previous_append = False
    for c, n_before, payload in zip(ic.clients, before, payloads, strict=True):
        new = sorted({frame_exp[i] for i in range(seen, n_before)})
        seen = max(seen, n_before)
        carried.extend(e for e in new if expectations[e].blocking)
        ids: tuple[str, ...] = ()
        if c.event is not None and not c.is_append:
            ids = tuple(sorted(set(_strings(c.event)) & introduced))
        step = ClientStep(
            c.index, c.t, payload, c.describe(), c.turn, c.line, is_append=c.is_append, ids=ids,
        )
        if not (c.is_append and previous_append):
            # A run of appends is a microphone: only its first waits for the server.
            wanted = sorted(set(carried))
            step.prereqs = tuple(wanted)
            if wanted:
                step.anchor = max(wanted, key=lambda i: (expectations[i].t_last, i))
            carried = []
        previous_append = c.is_append
        steps.append(step)
    by_response: dict[str, list[int]] = {}
    for e in expectations:
        if e.response is not None:
            by_response.setdefault(e.response, []).append(e.index)
    return Script(
        ic,
        steps,
        expectations,
        by_type,
        introduced,
        frozenset(created_responses - done_responses),
        openers,
        by_response,
        source,
    )


def _decode(data: bytes) -> Any:
    try:
        return _any.decode(data)
    except msgspec.DecodeError:
        return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


# -- what the driver asks its owner to do --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send these client messages now, in order (``str``: a text frame)."""

    messages: Sequence[str | bytes]
    labels: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection now with ``code`` and ``reason``."""

    code: int = 1000
    reason: str = ""


Action = Send | Close

_UNMATCHED, _MATCHED, _MISSING = 0, 1, 2
_RUNNING, _ENDING, _CLOSING, _DONE = 1, 2, 3, 4


class _Timing:
    __slots__ = ("asked", "created", "done", "first_delta", "turn")

    def __init__(self, asked: float, created: float, turn: int) -> None:
        self.asked = asked
        self.created = created
        self.turn = turn
        self.first_delta: float | None = None
        self.done: float | None = None


class Driver:
    """Plays one recorded connection's client side to a server and checks its answers.

    ``script`` is a recorded connection prepared by :func:`scripts`. ``policy`` (or a
    strictness name: ``"type"``, ``"structure"``, ``"exact"``) compares the server's
    events; ``speed`` paces client events (``None`` or ``0``: as soon as their server
    events came, ``1.0`` as recorded, ``2.0`` twice as fast); ``audio_speed`` paces audio
    appends (``1.0``: real time, the default); ``timeout`` bounds every wait (seconds the
    server may stay silent). ``conn`` numbers the connection in ``report`` (a new
    :class:`~rtreplay.report.DriveReport` by default). Bad options raise
    :class:`ValueError`.
    """

    def __init__(
        self,
        script: Script,
        *,
        policy: ServerPolicy | str = "type",
        speed: float | None = 1.0,
        audio_speed: float | None = 1.0,
        timeout: float = DEFAULT_TIMEOUT,
        conn: int = 0,
        report: DriveReport | None = None,
    ) -> None:
        self.speed, self.audio_speed, self.timeout = check_drive_options(speed, audio_speed, timeout)
        self.policy = resolve_server_policy(policy)
        self.script = script
        self.conn = conn
        self.report = report if report is not None else DriveReport(script.source, "", self.policy.name)
        exps = script.expectations
        self.progress = DriveProgress(conn, script.number, len(script.steps), len(exps))
        self.report.add_connection(self.progress)
        self._state = [_UNMATCHED] * len(exps)
        self._at = [0.0] * len(exps)  # when each expectation was settled
        self._unmatched = len(exps)
        self._next = 0  # the next client step
        self._due_prev = 0.0
        self._t_prev = 0.0
        self._sent_at: list[float] = []
        self._l2r: dict[str, str] = {}
        self._r2l: dict[str, str] = {}
        self._streams: dict[StreamKey, int] = {}  # live stream key -> expectation (-1: none)
        self._first_open: dict[str | None, int] = {}  # per type: where candidates start
        self._pieces: dict[int, list[str]] = {}  # exact: a stream's live deltas
        self._beyond: set[str] = set()  # live IDs of events past the recording's end
        self._done_live: set[str] = set()  # live responses whose response.done came
        self._timings: dict[str, _Timing] = {}
        self._phase = 0
        self._connected_at = 0.0
        self._wait_since = 0.0
        self._heard = False  # the server sent something since the wait began
        self._last_server: float | None = None
        self._last_types: list[str] = []
        self._last_sent: str | None = None
        self._close_sent = False
        self.beyond = 0  # server messages past the recording's end, so far
        self._stopped = False
        self._last_activity = 0.0
        self.finished = False

    # -- the owner's inputs -------------------------------------------------------------------

    def connect(self, now: float, handshake_time: float | None = None) -> None:
        """The server accepted the handshake (``handshake_time``: how long it took, seconds)."""
        self._phase = _RUNNING
        self._connected_at = self._wait_since = self._due_prev = self._last_activity = now
        self.progress.connect = handshake_time
        reject = self.script.reject
        if reject is not None:
            self._mismatch(
                "handshake",
                f"the recording's server refused this connection with HTTP {reject.status}; "
                f"this server accepted it",
            )
            self._phase = _CLOSING

    def refused(self, status: int, body: str = "", hint: str | None = None) -> None:
        """The server refused the handshake with this HTTP status and body."""
        self.progress.refused = status
        self._phase = _DONE
        self.finished = True
        reject = self.script.reject
        if reject is not None and reject.status == status:
            return
        text = " ".join(body.split())[:300]
        if reject is not None:
            what = (
                f"the server refused the connection with HTTP {status}, the recording's with "
                f"HTTP {reject.status}"
            )
        else:
            what = f"the server refused the connection with HTTP {status}"
        message = what + (f": {text}" if text else "") + (f" ({hint})" if hint else "")
        self._mismatch("refused", message)

    def unreachable(self, reason: str) -> None:
        """No connection could be made (``reason``: what the network said)."""
        self._phase = _DONE
        self.finished = True
        self._mismatch("unreachable", f"cannot connect: {reason}")

    def receive(self, message: str | bytes, now: float) -> None:
        """A message from the server (``str`` for a text frame, ``bytes`` for binary)."""
        self.progress.received += 1
        self._last_server = now
        self._heard = True
        if self.progress.first_event is None:
            self.progress.first_event = now - self._connected_at
        if self._phase == _DONE:
            return
        if isinstance(message, bytes) or not message.startswith(("{", " ", "\n", "\t", "\r")):
            self._on_other(message, now)
            return
        if '.delta"' in message:
            found = delta_key(message)
            if found is not None and is_stream(found[0][0]):
                self._on_delta(found[0], found[1], message, now)
                return
        event = _decode(message.encode()) if isinstance(message, str) else None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._on_other(message, now)
            return
        self._on_event(event, now)

    def disconnect(
        self, now: float, code: int | None = None, reason: str = "", *, failed: str | None = None
    ) -> None:
        """The connection is gone (``code`` ``None`` or ``1006``: dropped without a close).

        ``failed``: the client's WebSocket library ended it itself, and why (a server
        message over its size limit: code 1009); a mismatch if the recording went on.
        """
        if self._phase == _DONE and self.finished:
            return
        shown = f"code {code if code is not None else 1006}" + (f", {reason!r}" if reason else "")
        if failed is not None:
            self.progress.closed = f"closed by the driver (code {code}): {failed}"
            if self._phase in (_RUNNING, _ENDING):
                self._closed_early(shown, lead=f"{failed}; the driver closed the connection ({shown})")
        elif self._close_sent:
            self.progress.closed = f"closed by the driver ({shown})"
        else:
            self.progress.closed = f"closed by the server ({shown})"
            close = self.script.close
            ended = self._next >= len(self.script.steps) and self._unmatched == 0
            if ended and close is not None and close.by == "server":
                recorded = close.code if close.code is not None else 1006
                got = code if code is not None else 1006
                if recorded != got:
                    self._mismatch(
                        "close",
                        f"the server closed with code {got}, the recording's with {recorded}",
                    )
            elif self._phase in (_RUNNING, _ENDING):
                self._closed_early(shown)
        self._phase = _DONE
        self.finished = True
        self._finish(now)

    # -- the owner's questions -------------------------------------------------------------------

    def poll(self, now: float) -> list[Action]:
        """Everything due at ``now``, in order."""
        if self._phase == _DONE or self._phase == 0:
            return []
        actions: list[Action] = []
        steps = self.script.steps
        if self._phase == _RUNNING:
            batch: list[str | bytes] = []
            labels: list[str] = []
            while self._next < len(steps):
                step = steps[self._next]
                if not self._ready(step):
                    if now >= self._deadline():
                        self._give_up([e for e in step.prereqs if self._state[e] == _UNMATCHED], now, step)
                        if self._phase != _RUNNING:
                            break
                        continue
                    break
                due = self._due(step)
                if due > now:
                    break
                if due > -math.inf and now - due > self.progress.late:
                    self.progress.late = now - due
                batch.append(self._message(step))
                labels.append(step.label)
                self._sent_at.append(now)
                self._last_activity = now
                self._due_prev = max(due, self._due_prev)
                self._t_prev = step.t
                self._next += 1
                self._wait_since = now
                self._heard = False
                self._last_sent = step.label
            self.progress.clients_sent = self._next
            if batch:
                actions.append(Send(batch, labels))
            if self._phase == _RUNNING and self._next >= len(steps):
                self._phase = _ENDING
        if self._phase == _ENDING:
            if self._unmatched and now >= self._deadline():
                self._give_up([i for i, s in enumerate(self._state) if s == _UNMATCHED], now, None)
            if not self._unmatched and self._phase == _ENDING:
                self._phase = _CLOSING
        if self._phase == _CLOSING and not self._close_sent:
            close = self._closing(now)
            if close is not None:
                self._close_sent = True
                actions.append(close)
        return actions

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to do if no message comes; ``None``: nothing.

        A time in the past means now.
        """
        if self._phase in (0, _DONE) or self._close_sent:
            return None
        steps = self.script.steps
        if self._phase == _RUNNING:
            if self._next >= len(steps):
                return -math.inf
            step = steps[self._next]
            return self._due(step) if self._ready(step) else self._deadline()
        if self._phase == _ENDING:
            return self._deadline() if self._unmatched else -math.inf
        return self._close_due()

    @property
    def done(self) -> bool:
        """Every client event was sent and every recorded server event settled."""
        return self._next >= len(self.script.steps) and not self._unmatched

    # -- the schedule ------------------------------------------------------------------------------

    def _ready(self, step: ClientStep) -> bool:
        state = self._state
        return all(state[e] != _UNMATCHED for e in step.prereqs)

    def _due(self, step: ClientStep) -> float:
        s = self.audio_speed if step.is_append else self.speed
        if s is None:
            return -math.inf
        due = self._due_prev + max(0.0, step.t - self._t_prev) / s
        if step.anchor is not None:
            e = self.script.expectations[step.anchor]
            due = max(due, self._at[step.anchor] + max(0.0, step.t - e.t_last) / s)
        return due

    def _deadline(self) -> float:
        since = self._wait_since
        if self._last_server is not None and self._last_server > since:
            since = self._last_server
        return since + self.timeout

    def _close_due(self) -> float:
        close = self.script.close
        if self._stopped or self.script.reject is not None:
            return -math.inf
        if close is not None and close.by == "server":
            return self._deadline()
        if close is None or close.by != "client" or self.speed is None:
            return -math.inf
        return self._last_activity + max(0.0, close.t - self.script.last_t) / self.speed

    def _closing(self, now: float) -> Close | None:
        close = self.script.close
        if self._stopped:
            return Close(1000, "rtreplay: the server under test stopped answering")
        if self.script.reject is not None:
            return Close(1000, "")
        if now < self._close_due():
            return None
        if close is not None and close.by == "server":
            self._mismatch(
                "close",
                f"the recording's server closed the connection (code {close.code}) after its "
                f"last event; this one had not after {self.timeout:g} s",
            )
            return Close(1000, "")
        code = 1000
        reason = ""
        if close is not None and close.by == "client" and close.code not in (None, 1005, 1006):
            code = close.code
            reason = close.reason
        return Close(code, reason)

    def _message(self, step: ClientStep) -> str | bytes:
        payload = step.payload
        if not step.ids or not isinstance(payload, str):
            return payload
        for rec in step.ids:
            live = self._r2l.get(rec)
            if live is not None and live != rec:
                payload = payload.replace(f'"{rec}"', msgspec.json.encode(live).decode())
            elif live is None:
                self.report.add_note(
                    f"connection {self.conn}: {step.label} (client event {step.index + 1}) "
                    f"echoes {rec!r}, which this server never handed out a counterpart for; "
                    f"sent as recorded"
                )
        return payload

    def _give_up(self, awaited: list[int], now: float, step: ClientStep | None) -> None:
        """The wait ran out: the awaited events are missing; a silent server ends it all."""
        exps = self.script.expectations
        before = (
            f"before {step.label} (client event {step.index + 1})"
            if step is not None
            else "after the last client event"
        )
        if not self._heard:
            names = ", ".join(exps[e].describe() for e in awaited[:3])
            more = f" and {len(awaited) - 3} more" if len(awaited) > 3 else ""
            first = exps[awaited[0]] if awaited else None
            self._mismatch(
                "timeout",
                f"the server sent nothing for {self.timeout:g} s while the driver waited for "
                f"{names}{more} {before}; it stopped answering (change the bound with "
                f"--timeout)",
                exp=first,
            )
            for e in awaited:
                self._settle(e, _MISSING, now)
            self._stopped = True
            self._phase = _CLOSING
            return
        for e in awaited:
            x = exps[e]
            self._mismatch(
                "missing",
                f"the server never sent {x.describe()}, which the recording has {before}; "
                f"waited until it had been silent for {self.timeout:g} s",
                exp=x,
            )
            self._settle(e, _MISSING, now)
        self._wait_since = now
        self._heard = False

    def _closed_early(self, shown: str, lead: str | None = None) -> None:
        exps = self.script.expectations
        left = [e for e in exps if self._state[e.index] == _UNMATCHED]
        steps = len(self.script.steps) - self._next
        parts = []
        if steps:
            parts.append(f"{steps} client event{'s' if steps != 1 else ''} still to send")
        if left:
            names = ", ".join(e.describe() for e in left[:4]) + (" ..." if len(left) > 4 else "")
            parts.append(f"{len(left)} recorded server event{'s' if len(left) != 1 else ''} still expected ({names})")
        if not parts:
            return
        self._mismatch(
            "closed",
            (lead or f"the server closed the connection ({shown})")
            + " before the recording's end: "
            + "; ".join(parts),
            exp=left[0] if left else None,
        )

    # -- matching ------------------------------------------------------------------------------

    def _allowed(self, e: Expectation) -> bool:
        req: Requirement = e.requirement
        return req.every or req.after < self._next

    def _settle(self, i: int, state: int, now: float) -> None:
        if self._state[i] == _UNMATCHED:
            self._unmatched -= 1
            if state == _MATCHED:
                self.progress.matched += 1
        self._state[i] = state
        self._at[i] = now
        self._last_activity = max(self._last_activity, now)

    def _saw(self, kind: str) -> None:
        last = self._last_types
        if not last or last[-1] != kind:
            last.append(kind)
            if len(last) > 3:
                del last[0]

    def _learn_roles(self, roles: Mapping[str, str], recorded: Mapping[str, str]) -> None:
        for role, live in roles.items():
            rec = recorded.get(role)
            if rec is not None and rec not in self._r2l and live not in self._l2r:
                self._r2l[rec] = live
                self._l2r[live] = rec

    def _learn(self, rec: Any, live: Any) -> None:
        if isinstance(rec, dict) and isinstance(live, dict):
            for k, v in rec.items():
                if k in live:
                    self._learn(v, live[k])
        elif isinstance(rec, list) and isinstance(live, list):
            for a, b in zip(rec, live, strict=False):
                self._learn(a, b)
        elif (
            isinstance(rec, str)
            and isinstance(live, str)
            and rec in self.script.introduced
            and rec not in self._r2l
            and live not in self._l2r
        ):
            self._r2l[rec] = live
            self._l2r[live] = rec

    def _candidates(self, kind: str | None, stream: bool) -> Iterator[Expectation]:
        exps = self.script.expectations
        indexes = self.script.by_type.get(kind, ())
        state = self._state
        # Those before the first still expected are settled for good: start past them.
        k = self._first_open.get(kind, 0)
        while k < len(indexes) and state[indexes[k]] != _UNMATCHED:
            k += 1
        self._first_open[kind] = k
        for i in indexes[k:]:
            e = exps[i]
            if state[i] == _UNMATCHED and e.stream == stream and self._allowed(e):
                yield e

    def _on_delta(self, key: StreamKey, roles: dict[str, str], message: str, now: float) -> None:
        kind = key[0]
        self._saw(kind)
        known = self._streams.get(key)
        if known is not None:
            if known >= 0:
                self._absorb(known, message)
            return
        chosen = None
        for e in self._candidates(kind, True):
            if role_conflict(roles, e.roles, self._l2r, self._r2l) is None:
                chosen = e
                break
        if chosen is None:
            self._streams[key] = -1
            self._unmatched_event(kind, roles, _decode(message.encode()), now)
            return
        self._streams[key] = chosen.index
        self._learn_roles(roles, chosen.roles)
        self._settle(chosen.index, _MATCHED, now)
        self._check_opener(chosen, kind, roles)
        if self.policy.strictness == "structure":
            got = _decode(message.encode())
            self._content(chosen, got, self.policy.compare(chosen.event, got))
        self._absorb(chosen.index, message)
        live_response = roles.get("response_id")
        timing = self._timings.get(live_response) if live_response else None
        if timing is not None and timing.first_delta is None:
            timing.first_delta = now

    def _absorb(self, i: int, message: str) -> None:
        if self.policy.strictness != "exact":
            return
        got = _decode(message.encode())
        delta = got.get("delta") if isinstance(got, dict) else None
        if isinstance(delta, str):
            self._pieces.setdefault(i, []).append(delta)

    def _on_event(self, event: dict[str, Any], now: float) -> None:
        kind: str = event["type"]
        self._saw(kind)
        roles = event_roles(event)
        profile = self.script.connection.profile
        chosen: Expectation | None = None
        fallback: tuple[Expectation, list[Difference]] | None = None
        code = _error_code(event) if kind == profile.error else None
        for e in self._candidates(kind, False):
            if role_conflict(roles, e.roles, self._l2r, self._r2l) is not None:
                continue
            differences = self.policy.compare(e.event, event)
            same_code = code is None or _error_code(e.event) == code
            if not differences and same_code:
                chosen = e
                break
            if fallback is None or (same_code and _error_code(fallback[0].event) != code):
                fallback = (e, differences)
        found: list[Difference] = []
        if chosen is None and fallback is not None:
            chosen, found = fallback
        if chosen is None:
            self._unmatched_event(kind, roles, event, now)
            return
        self._learn_roles(roles, chosen.roles)
        self._learn(chosen.event, event)
        self._settle(chosen.index, _MATCHED, now)
        self._check_opener(chosen, kind, roles)
        if found:
            self._content(chosen, event, found)
        live_response = roles.get("response_id")
        if kind == profile.response_created and live_response is not None:
            after = chosen.requirement.after
            asked = self._sent_at[after] if 0 <= after < len(self._sent_at) else self._connected_at
            self._timings[live_response] = _Timing(asked, now, chosen.turn)
        if kind == profile.response_done and live_response is not None:
            self._done_live.add(live_response)
            timing = self._timings.get(live_response)
            if timing is not None:
                timing.done = now
            if chosen.response is not None:
                self._end_response(chosen.response, now)

    def _check_opener(self, e: Expectation, kind: str, roles: Mapping[str, str]) -> None:
        response = e.response
        if response is None:
            return
        opener = self.script.openers.get(response)
        if opener is not None and opener != e.index and self._state[opener] == _UNMATCHED:
            opened = self.script.expectations[opener]
            self._mismatch(
                "order",
                f"the server sent {kind} before {opened.label} of its response",
                exp=e,
                got=kind,
            )
        live = roles.get("response_id")
        profile = self.script.connection.profile
        if live is not None and live in self._done_live and kind != profile.response_done:
            self._mismatch(
                "order", f"the server sent {kind} after its response's {profile.response_done}", exp=e, got=kind
            )

    def _end_response(self, response: str, now: float) -> None:
        """``response.done`` came: what the recording has of that response is due by now."""
        profile = self.script.connection.profile
        exps = self.script.expectations
        for i in self.script.by_response.get(response, ()):
            e = exps[i]
            if self._state[e.index] == _UNMATCHED and e.type not in profile.per_response:
                self._mismatch(
                    "missing",
                    f"the server ended the response ({profile.response_done}) without sending "
                    f"{e.describe()}, which the recording has before it",
                    exp=e,
                )
                self._settle(e.index, _MISSING, now)
            elif e.stream and self.policy.strictness == "exact":
                self._compare_stream(e)

    def _compare_stream(self, e: Expectation) -> None:
        pieces = self._pieces.pop(e.index, None)
        if pieces is None or e.type is None:
            return
        want_text, want_audio = e.joined()
        got_text, got_audio = stream_content(e.type, iter(pieces))
        if want_text != got_text or want_audio != got_audio:
            if want_text != got_text:
                d = Difference("delta (joined)", want_text, got_text)
            else:
                d = Difference("delta (joined)", "", "", "the audio differs from the recording's")
            self._mismatch(
                "content",
                f"{e.label} (joined) differs from the recording: {d}",
                exp=e,
                differences=(d,),
            )

    def _content(self, e: Expectation, got: Any, differences: list[Difference]) -> None:
        if not differences:
            return
        shown = "; ".join(str(d) for d in differences[:3])
        more = len(differences) - 3
        self._mismatch(
            "content",
            f"{e.label} differs from the recording: {shown}" + (f" (and {more} more)" if more > 0 else ""),
            exp=e,
            got=self.policy.masked(got),
            differences=tuple(differences),
        )

    def _unmatched_event(self, kind: str, roles: Mapping[str, str], event: Any, now: float) -> None:
        live_ids = set(roles.values())
        unfinished = self.script.unfinished
        if live_ids & self._beyond or any(self._l2r.get(v) in unfinished for v in live_ids):
            self._beyond.update(live_ids)
            self.beyond += 1
            self.report.add_beyond(self.conn, kind)
            return
        what = kind
        if isinstance(event, dict) and kind == self.script.connection.profile.error:
            err = event.get("error")
            if isinstance(err, dict):
                what = f"{kind} {err.get('code')!r}: {err.get('message')}"
        self._mismatch(
            "unexpected",
            f"the server sent {what}, which the recording does not have here",
            got=self.policy.masked(event) if event is not None else kind,
        )

    def _on_other(self, message: str | bytes, now: float) -> None:
        label = "binary frame" if isinstance(message, bytes) else "text frame"
        self._saw(label)
        for e in self._candidates(None, False):
            if e.event is None:
                if self.policy.strictness == "exact":
                    raw = message if isinstance(message, bytes) else message.encode()
                    if raw != e.raw:
                        self._settle(e.index, _MATCHED, now)
                        self._mismatch(
                            "content",
                            f"the {label} differs from the recording's",
                            exp=e,
                            got=message[:200],
                        )
                        return
                self._settle(e.index, _MATCHED, now)
                return
        self._mismatch(
            "unexpected", f"the server sent a {label}, which the recording does not have here", got=message[:200]
        )

    # -- the report --------------------------------------------------------------------------------

    def _mismatch(
        self,
        kind: DriveMismatchKind,
        message: str,
        *,
        exp: Expectation | None = None,
        got: Any = None,
        differences: tuple[Difference, ...] = (),
    ) -> None:
        steps = self.script.steps
        if exp is not None:
            turn = exp.turn
        elif steps:
            turn = steps[min(self._next, len(steps) - 1)].turn
        else:
            turn = 1
        expected: Any = None
        if exp is not None:
            expected = (
                f"{exp.describe()} (a stream)" if exp.stream else self.policy.masked(exp.event) if exp.event is not None else exp.label
            )
        self.report.add_mismatch(
            DriveMismatch(
                kind,
                self.conn,
                self.script.number,
                turn,
                message,
                expected,
                got,
                differences,
                exp.frame if exp is not None else None,
                self.script.connection.server_count,
                exp.line if exp is not None else 0,
                self.script.source,
                self._last_sent,
                tuple(self._last_types),
            )
        )

    def _finish(self, now: float) -> None:
        if self.policy.strictness == "exact":
            for i in list(self._pieces):
                self._compare_stream(self.script.expectations[i])
        for timing in self._timings.values():
            self.progress.responses.append(
                ResponseTiming(
                    self.conn,
                    timing.turn,
                    timing.created - timing.asked,
                    None if timing.first_delta is None else timing.first_delta - timing.asked,
                    None if timing.done is None else timing.done - timing.asked,
                )
            )


def _error_code(event: Any) -> Any:
    if isinstance(event, dict):
        err = event.get("error")
        if isinstance(err, dict):
            return err.get("code")
    return None
