"""The whole-cassette replay, Sans-I/O: which recorded connection a handshake gets, or a refusal.

As websockets' ``ServerProtocol.accept()`` decides a handshake from values, a
:class:`ReplaySession` decides from a :class:`Handshake` (the request's path, query,
protocol and whether it carries a credential) what the server answers:

- :meth:`ReplaySession.screen` refuses what no cassette can serve (HTTP 404 for a path
  that is not a Realtime endpoint, 401 without a credential under ``require_auth``, 401 for
  an ephemeral key the replay did not issue when the cassette recorded how keys are made);
- :meth:`ReplaySession.accept` picks the recorded connection (:func:`choose_connection`)
  and returns an :class:`Accept` carrying the :class:`~rtreplay.player.Player` to run, or a
  :class:`Refuse`: 409 when every recorded connection was replayed, 400 for the wrong
  protocol, or the recorded refusal itself.

:meth:`ReplaySession.answer_http` answers the HTTP calls beside the connections (an
ephemeral key from ``client_secrets``: :mod:`rtreplay.client_secrets`). The server shell
(:mod:`rtreplay.server`) only turns HTTP requests into handshakes and refusals into
responses. Everything is written to :attr:`ReplaySession.report`.

Injected faults (:mod:`rtreplay.faults`) and latency (:mod:`rtreplay.latency`) change each
player's timeline here, per live connection (:meth:`ReplaySession.timeline`); the faults
at ``connect`` decide the handshake instead: a :class:`Refuse` for ``refuse``, a
:class:`Drop` for ``drop``, an :class:`Accept` answered ``wait`` seconds late for
``stall``.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from . import interruption as _int
from ._index import CassetteIndex, IndexedConnection, ServerFrame, file_identity
from .cassette import HttpRequest, HttpResponse
from .client_secrets import HttpReplay
from .errors import CassetteError
from .faults import Fault, apply_faults, locate, parse_faults, refusal
from .latency import Latency, apply_latency, parse_latency
from .match import MatchPolicy, resolve_policy
from .player import DEFAULT_AUDIO_TOLERANCE, DEFAULT_STALL_TIMEOUT, Player, check_options
from .protocol import GENERIC, PCM16, REALTIME, AudioFormat, Profile, audio_format, profile_for
from .report import ConnectionProgress, FiredFault, Mismatch, ReplayReport
from .timeline import Timeline

if TYPE_CHECKING:
    from .cassette import Cassette, Protocol

__all__ = [
    "Accept",
    "Drop",
    "Handshake",
    "Refuse",
    "ReplaySession",
    "choose_connection",
    "handshake_differences",
]

_PROTOCOL_NAMES = {
    "ga": "the GA protocol (no OpenAI-Beta header)",
    "beta": "the beta protocol (OpenAI-Beta: realtime=v1)",
}


@dataclass(frozen=True)
class Handshake:
    """What the replay needs of a connection request.

    ``path`` without its query; ``query`` its parameters; ``protocol`` ``"ga"`` or
    ``"beta"`` (see :func:`rtreplay._wsio.handshake_protocol`); ``credential``: it carries
    an API key in any of the forms clients use; ``ephemeral_key``: the ``ek_...`` key it
    carries, if one (checked against those the replay issued).
    """

    path: str = "/v1/realtime"
    query: Mapping[str, str] = field(default_factory=dict)
    protocol: Protocol = "ga"
    credential: bool = True
    #: The ephemeral key (``ek_...``) the request carries, if any (never shown).
    ephemeral_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Accept:
    """Accept the connection: ``player`` replays recorded connection ``recorded`` to it."""

    conn: int  # the live connection's number, from 0 in order of arrival
    recorded: int
    player: Player
    differences: tuple[str, ...] = ()  # how the request differs from the recorded one
    wait: float = 0.0  # seconds to hold the answer (an injected stall; math.inf: never)


@dataclass(frozen=True)
class Refuse:
    """Refuse the connection with this HTTP response.

    ``conn`` is the live connection's number when one was used up; ``recorded`` the
    recorded connection when this replays a recorded refusal.
    """

    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)
    conn: int | None = None
    recorded: int | None = None
    reason: str = ""  # one line for the log


@dataclass(frozen=True)
class Drop:
    """End the TCP connection with no answer at all (an injected ``drop@connect``)."""

    conn: int
    reason: str = ""  # one line for the log


def handshake_differences(
    connection: IndexedConnection, handshake: Handshake, keys: Sequence[str] = REALTIME.handshake_keys
) -> list[str]:
    """How a request's session-choosing query parameters differ from the recorded ones."""
    recorded = connection.open.query
    out = []
    for key in keys:
        want, got = recorded.get(key), handshake.query.get(key)
        if want != got:
            out.append(f"{key}: recorded {want!r}, got {got!r}")
    return out


def endpoint_key(profile: Profile, path: str) -> tuple[str, ...]:
    """What makes two connections the same endpoint: the paths of a known profile (Azure's
    and OpenAI's are one endpoint), the path itself for an unknown one."""
    return (path.rstrip("/") or "/",) if profile is GENERIC or not profile.paths else profile.paths


def _describe_endpoint(profile: Profile, path: str) -> str:
    return f"{path} ({profile.title})"


def choose_connection(
    connections: Sequence[IndexedConnection],
    used: Collection[int],
    handshake: Handshake,
    *,
    repeat: bool = False,
    live: int = 0,
) -> IndexedConnection | tuple[int, str]:
    """The recorded connection a handshake gets, or ``(HTTP status, why not)``.

    The first connection not ``used`` yet (any, with ``repeat``) of the handshake's
    endpoint (:func:`~rtreplay.protocol.profile_for` of its path and query) and protocol,
    preferring one whose session-choosing query (``model``, ``intent``, ``call_id``,
    ``deployment``...) is the same; 404 when the cassette recorded no connection to that
    endpoint (or none at all), 409 when none is left, 400 when none speaks the protocol. ``live`` numbers
    the request (from 0) for the message.
    """
    if not connections:
        # Not "every one was replayed ... or --repeat": no option makes one.
        return 404, (
            "the cassette recorded no WebSocket connection, so there is nothing to replay: "
            "record a session into it (rtreplay record --out CASSETTE, or pytest --realtime-record)"
        )
    profile = profile_for(handshake.path, handshake.query) or REALTIME
    key = endpoint_key(profile, handshake.path)
    here = [c for c in connections if endpoint_key(c.profile, c.open.path) == key]
    if not here and connections:
        recorded_at = sorted({_describe_endpoint(c.profile, c.open.path) for c in connections})
        return 404, (
            f"the cassette recorded no connection to {_describe_endpoint(profile, handshake.path)}; "
            f"it recorded {', '.join(recorded_at)}. Record this endpoint, or point the client "
            f"at the recorded one"
        )
    connections = here
    recorded = len(connections)
    pool = list(connections) if repeat else [c for c in connections if c.number not in used]
    if not pool:
        return 409, (
            f"the cassette recorded {recorded} connection{'s' if recorded != 1 else ''} and "
            f"every one was replayed; this is connection {live + 1}. Record it, or replay "
            f"with repeat=True (--repeat) to serve the same connection again"
        )
    same = [c for c in pool if c.protocol == handshake.protocol]
    if not same:
        return 400, (
            f"the cassette recorded {_PROTOCOL_NAMES[pool[0].protocol]}, but the client asked "
            f"for {_PROTOCOL_NAMES[handshake.protocol]}; connect with the client the cassette "
            f"was recorded with"
        )
    exact = [c for c in same if not handshake_differences(c, handshake, c.profile.handshake_keys)]
    return exact[0] if exact else same[0]


class ReplaySession:
    """One cassette replayed to any number of clients (see the module docstring).

    ``cassette`` is a path, a :class:`~rtreplay.cassette.Cassette` or an index; the other
    options are :class:`~rtreplay.server.ReplayServer`'s. ``base_url`` is shown in refusals
    of unknown paths. Use it as a context manager, or call :meth:`close`, to release the
    cassette file. Bad options raise :class:`ValueError`.
    """

    def __init__(
        self,
        cassette: str | os.PathLike[str] | Cassette | CassetteIndex,
        *,
        match: str | MatchPolicy = "default",
        speed: float | None = None,
        strict: bool = False,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        audio_tolerance: float | None = DEFAULT_AUDIO_TOLERANCE,
        repeat: bool = False,
        require_auth: bool = False,
        base_url: str | None = None,
        shift_times: bool = True,
        fresh_ids: bool = False,
        faults: Iterable[Fault | str] | Fault | str | None = (),
        latency: Latency | str | Mapping[str, object] | None = None,
    ) -> None:
        self.policy = resolve_policy(match)
        self.faults = parse_faults(faults)
        self.latency = parse_latency(latency)
        self.speed, self.stall_timeout, self.audio_tolerance = check_options(
            speed, stall_timeout, audio_tolerance
        )
        self.strict = strict
        self.repeat = repeat
        self.require_auth = require_auth
        self.base_url = base_url
        self.shift_times = shift_times
        self.fresh_ids = fresh_ids
        # Fresh IDs handed out so far, by the live connection they went to: a client that
        # echoes one on another connection is told where it came from.
        self.issued: dict[str, int] = {}
        self.index = CassetteIndex.load(cassette)
        try:
            self._check_faults()
        except ValueError:
            self.index.close()
            raise
        self.report = ReplayReport(self.index.path, self.index.connections)
        self.report.configured_faults = [str(f) for f in self.faults]
        self._requests = 0
        self._next = 0
        self._formats: weakref.WeakKeyDictionary[IndexedConnection, AudioFormat] = (
            weakref.WeakKeyDictionary()
        )
        # Versions replaced by a reload, still read by the connections that began on them.
        self._retired: weakref.WeakSet[CassetteIndex] = weakref.WeakSet()
        self._unreadable: tuple[int, int, int, int] | None = None  # a new version that failed
        self._start()

    def _start(self) -> None:
        """Make ready to serve :attr:`index` from its first recorded connection."""
        # What a recording proxy accepted (any path ending in a realtime segment, such as
        # Azure's /openai/deployments/<name>/realtime) is served too.
        self._recorded_paths = {ic.open.path.rstrip("/") or "/" for ic in self.index.connections}
        self.http = HttpReplay(self.index.exchanges, repeat=self.repeat, shift_times=self.shift_times)
        self.report.exchanges = [
            f"{e.request.method} {e.request.path} (recorded exchange {e.n})"
            for e in self.index.exchanges
        ]
        self.report.exchanges_served = set()
        self._used: set[int] = set()

    def refresh(self) -> str | None:
        """Load the cassette again if its file changed on disk; what to tell the user, if anything.

        Called before each handshake. A cassette rewritten (re-recorded, edited, copied
        over) is loaded again and the next client gets its first recorded connection;
        connections already open finish on the version they began with when it was
        replaced by renaming (as rtreplay writes), and end with a
        :class:`~rtreplay.errors.CassetteChangedError` when it was rewritten in place. A
        new version that cannot be read yet (half written, invalid, no final newline) is
        not loaded: the version loaded keeps being served while its file is intact.
        Raises :class:`~rtreplay.errors.CassetteError` when neither can be served.
        """
        index = self.index
        change = index.changed_on_disk()
        if change is None or index.path is None:
            return None
        path = index.path
        try:
            now: tuple[int, int, int, int] | None = file_identity(path)
        except OSError:
            now = None
        if now is not None and now == self._unreadable:
            problem = None  # already tried and said
        else:
            problem = _not_ready(path)
            if problem is None:
                try:
                    new = CassetteIndex.load(path)
                except CassetteError as exc:
                    problem = exc.problem if exc.line is None else f"line {exc.line}: {exc.problem}"
                else:
                    return self._switch(new, change)
            self._unreadable = now
        if index.intact:
            if problem is None:
                return None
            return (
                f"{path} changed on disk ({change}), but the new version cannot be loaded "
                f"({problem}); still serving the version loaded before"
            )
        raise CassetteError(
            path,
            f"changed on disk ({change}) and the new version cannot be loaded"
            + (f" ({problem})" if problem else "")
            + "; no version of it can be served until it is readable",
        )

    def _switch(self, new: CassetteIndex, change: str) -> str:
        old = self.index
        self.index = new
        self._retired.add(old)
        self._unreadable = None
        try:
            self._check_faults()
        except ValueError as exc:
            # The faults asked for cannot fire on the new version: it is served all the same.
            warning = f"; {exc}"
        else:
            warning = ""
        n = len(new.connections)
        note = (
            f"{new.path} changed on disk ({change}): loaded again, {n} connection"
            f"{'s' if n != 1 else ''}; the next client gets its first recorded connection"
            + (", open connections finish on the version they began with" if old.intact else "")
            + warning
        )
        self.report.reloaded(new.connections, note)
        self._start()
        if not old.intact:
            old.close()
        return note

    def _check_faults(self) -> None:
        """A fault whose place no recorded connection has would never fire: say so now."""
        for fault in self.faults:
            at = fault.at
            if at.place not in ("before", "after"):
                continue
            if any(locate(ic.server, at) is not None for ic in self.index.connections):
                continue
            counts = ", ".join(
                f"connection {ic.number} has {sum(f.type == at.type for f in ic.server)}"
                for ic in self.index.connections
            )
            raise ValueError(
                f"fault {str(fault)!r} can never fire: no recorded connection of "
                f"{self.index.path or 'the cassette'} has {at.n} {at.type} server event"
                f"{'s' if at.n != 1 else ''} ({counts or 'it has no connection'})"
            )

    def __enter__(self) -> ReplaySession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the cassette file (the report stays readable)."""
        self.index.close()
        for old in list(self._retired):
            old.close()

    @property
    def connections(self) -> list[IndexedConnection]:
        return self.index.connections

    def player(self, recorded: int = 0, *, conn: int | None = None) -> Player:
        """A player for recorded connection ``recorded``, outside of any handshake.

        ``conn`` numbers it in the report (the next live number by default). Raises
        :class:`ValueError` for a connection the cassette lacks.
        """
        for ic in self.index.connections:
            if ic.number == recorded:
                if conn is None:
                    conn = self._next
                    self._next += 1
                return self._player(ic, conn)
        numbers = ", ".join(str(ic.number) for ic in self.index.connections) or "none"
        raise ValueError(f"the cassette has no connection {recorded} (it has: {numbers})")

    def timeline(self, ic: IndexedConnection, conn: int) -> Timeline | None:
        """The schedule live connection ``conn`` gets of recorded connection ``ic``: the
        recorded one with the latency and faults applied (``None``: the recorded one)."""
        timeline: Timeline | None = None
        if self.latency is not None:
            timeline = apply_latency(
                ic.timeline, self.latency, conn=conn, audio_seconds=self._audio_seconds(ic)
            )
        if self.faults:
            timeline = apply_faults(timeline or ic.timeline, self.faults, conn=conn)
        return timeline

    def _audio_seconds(self, ic: IndexedConnection) -> Callable[[ServerFrame], float] | None:
        """An output audio delta's duration, in the format the recorded session says."""
        if self.latency is None or self.latency.audio_speed is None:
            return None
        # ``ic`` is of the version loaded now: its frames are read from that version, even
        # once a changed cassette was loaded again.
        read = self.index.payloads
        fmt = self._formats.get(ic)
        if fmt is None:
            fmt = _output_format(ic, read)
            self._formats[ic] = fmt

        def seconds(frame: ServerFrame) -> float:
            for f, data in read([frame]):
                event = _int.decode(f, data)
                size = event.get("audio_bytes") if isinstance(event, dict) else None
                if isinstance(size, int):
                    return size / fmt.bytes_per_second
            return 0.0

        return seconds

    def _player(self, ic: IndexedConnection, conn: int) -> Player:
        return Player(
            ic,
            timeline=self.timeline(ic, conn) if self.faults or self.latency else None,
            policy=self.policy,
            speed=self.speed,
            strict=self.strict,
            stall_timeout=self.stall_timeout,
            audio_tolerance=self.audio_tolerance,
            conn=conn,
            report=self.report,
            source=self.index,
            shift_times=self.shift_times,
            fresh_ids=self.fresh_ids,
            issued=self.issued,
        )

    def screen(self, handshake: Handshake) -> Refuse | None:
        """What no recording can serve: a path that is no Realtime endpoint (no ``realtime``
        segment) and that the cassette never recorded (404), no credential (401), an
        ephemeral key this replay did not issue (401).
        """
        recorded = (handshake.path.rstrip("/") or "/") in self._recorded_paths
        if not recorded and profile_for(handshake.path, handshake.query) is None:
            where = f" (websocket_base_url {self.base_url})" if self.base_url else ""
            return Refuse(
                404,
                f"rtreplay: no Realtime endpoint at {handshake.path}; connect to /v1/realtime{where}\n",
                reason="not a Realtime endpoint",
            )
        key = handshake.ephemeral_key
        if key is not None and self.http.exchanges and not self.http.accepts(key):
            issued = len(self.http.issued)
            message = (
                "the client connected with an ephemeral key (ek_...) this replay did not issue"
                + (
                    f" (it issued {issued}: connect with the last one its client_secrets "
                    "call returned)"
                    if issued
                    else "; no client_secrets call came first: fetch the key from this server "
                    "(POST .../realtime/client_secrets), as the recording did"
                )
            )
            self.report.add_mismatch(
                Mismatch("handshake", self._next, None, 1, None, 0, None, None, message)
            )
            return Refuse(
                401,
                f"rtreplay: {message}\n",
                reason="an ephemeral key this replay did not issue",
            )
        if self.require_auth and not handshake.credential:
            return Refuse(
                401,
                "rtreplay: no credential: send 'Authorization: Bearer <key>', 'api-key: <key>' "
                "or the 'openai-insecure-api-key.<key>' subprotocol (any key is accepted)\n",
                reason="no credential",
            )
        return None

    def answer_http(self, request: HttpRequest) -> HttpResponse:
        """The response to an HTTP call (``POST .../realtime/client_secrets``): the next
        recorded exchange that fits, with a fresh ephemeral key and its times moved; a
        call the cassette cannot answer, or whose body differs, is a ``"http"`` mismatch."""
        live = self._requests
        self._requests += 1
        answer = self.http.answer(request)
        recorded = answer.recorded
        if recorded is not None:
            self.report.exchanges_served.add(self.index.exchanges.index(recorded))
        if answer.problem is not None:
            self.report.add_mismatch(
                Mismatch(
                    "http",
                    live,
                    recorded.n if recorded is not None else None,
                    1,
                    None,
                    0,
                    None,
                    None,
                    answer.problem,
                    tuple(answer.differences),
                )
            )
        return answer.response

    def accept(self, handshake: Handshake) -> Accept | Refuse | Drop:
        """Decide a valid upgrade request: which recorded connection it gets, or why none."""
        refused = self.screen(handshake)
        if refused is not None:
            return refused
        live = self._next
        self._next += 1
        wait = 0.0
        for fault in self.faults:
            if fault.at.place != "connect" or not fault.applies_to(live):
                continue
            self.report.add_fault(FiredFault(str(fault), live, None, "at the handshake"))
            if fault.what == "refuse":
                body, headers = refusal(fault.status, fault.seconds)
                return Refuse(
                    fault.status, body, headers, conn=live,
                    reason=f"the fault {fault} refused it with HTTP {fault.status}",
                )
            if fault.what == "drop":
                return Drop(live, f"the fault {fault} dropped it with no answer")
            if fault.what == "stall":
                wait = math.inf if fault.seconds is None else max(wait, fault.seconds)
        chosen = choose_connection(
            self.index.connections, self._used, handshake, repeat=self.repeat, live=live
        )
        if isinstance(chosen, tuple):
            status, message = chosen
            self.report.add_mismatch(
                Mismatch("no_connection" if status == 409 else "handshake", live, None, 1, None, 0, None, None, message)
            )
            return Refuse(status, f"rtreplay: {message}\n", conn=live, reason=message)
        ic = chosen
        if not self.repeat:
            self._used.add(ic.number)
        if ic.reject is not None:
            rej = ic.reject
            self.report.add_connection(
                ConnectionProgress(live, ic.number, ic.clients, ic.server_count, refused=True)
            )
            return Refuse(
                rej.status,
                rej.body,
                rej.headers,
                conn=live,
                recorded=ic.number,
                reason=f"replaying recorded connection {ic.number}, refused with HTTP {rej.status}",
            )
        differences = tuple(handshake_differences(ic, handshake, ic.profile.handshake_keys))
        if differences and self.policy.content:
            message = (
                f"the connection request differs from recorded connection {ic.number}: "
                + "; ".join(differences)
            )
            self.report.add_mismatch(
                Mismatch("handshake", live, ic.number, 1, None, len(ic.clients), None, None, message)
            )
        return Accept(live, ic.number, self._player(ic, live), differences, wait)


def _not_ready(path: str) -> str | None:
    """Why a changed cassette is not loaded yet: it does not end with a newline (it is
    still being written, or was cut short); ``None`` if it may be."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return "it is empty"
            f.seek(size - 1)
            if f.read(1) != b"\n":
                return "its last line has no newline: still being written, or cut short"
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"
    return None


def _output_format(ic: IndexedConnection, read: Callable[[Sequence[ServerFrame]], Iterator[tuple[ServerFrame, bytes]]]) -> AudioFormat:
    """The output audio format of a recorded session: the last one its session events name
    (GA ``session.audio.output.format``, beta ``session.output_audio_format``), else PCM16."""
    found = PCM16
    sessions = [f for f in ic.server if f.type in ("session.created", "session.updated")]
    for frame, data in read(sessions):
        event = _int.decode(frame, data)
        session = event.get("session") if isinstance(event, dict) else None
        if not isinstance(session, dict):
            continue
        beta = session.get("output_audio_format")
        audio = session.get("audio")
        output = audio.get("output") if isinstance(audio, dict) else None
        ga = output.get("format") if isinstance(output, dict) else None
        fmt = audio_format({"input_audio_format": beta} if isinstance(beta, str) else {"audio": {"input": {"format": ga}}})
        if fmt is not None:
            found = fmt
    return found
