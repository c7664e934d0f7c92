"""The mock Realtime server: a thin websockets shell around the replay core.

:class:`ReplayServer` serves a cassette to any Realtime client. Every decision is the
Sans-I/O core's: :class:`~rtreplay.replay.ReplaySession` says which recorded connection a
handshake gets (or how to refuse it), and a :class:`~rtreplay.player.Player` per
connection says what to send and when. The shell turns HTTP requests into
:class:`~rtreplay.replay.Handshake` values, feeds each client message to the player, and
sleeps until the player's next deadline or the next message, then writes what is due
(frames due together in batches). It accepts what the real clients send (``/v1/realtime``,
``/realtime``, ``/openai/realtime``, ``/openai/v1/realtime`` with any query; any
credential; the ``realtime`` subprotocol browsers offer). Everything that went wrong is in
:attr:`ReplayServer.report`; ``rtreplay serve`` (:func:`serve_main`) runs it from a shell.

Injected faults and latency (``faults=``, ``latency=``) are the core's too; the shell only
carries out what has no WebSocket frame: a refusal's HTTP answer, a handshake dropped or
held, a connection dropped without a close frame.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import email.utils
import http
import logging
import math
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from ._http import with_http
from ._index import CassetteIndex, ServerFrame
from ._received import RECEIVED_AUDIO_BUDGET, ReceivedEvent
from ._service import Service, check_port, is_loopback
from ._version import __version__
from ._wsio import (
    AnsweringServerConnection,
    handshake_protocol,
    offered_subprotocols,
    send_many,
    too_big,
    websockets_logger,
)
from .cassette import Cassette, HttpRequest, HttpResponse
from .codec import partial_note
from .errors import CassetteChangedError, CassetteError, MismatchError
from .faults import Fault
from .latency import Latency
from .match import MatchPolicy
from .player import (
    DEFAULT_AUDIO_TOLERANCE,
    DEFAULT_STALL_TIMEOUT,
    CloseConnection,
    FaultFired,
    Player,
    Send,
    SendError,
)
from .protocol import REALTIME
from .redact import Redactor, credentials_in_handshake
from .replay import Accept, Drop, Handshake, Refuse, ReplaySession
from .report import Failure, ReplayReport

__all__ = [
    "MAX_MESSAGE_SIZE",
    "REALTIME_PATHS",
    "RECEIVED_AUDIO_BUDGET",
    "ReceivedEvent",
    "ReplayReport",
    "ReplayServer",
    "add_serve_arguments",
    "serve_main",
]

logger = logging.getLogger("rtreplay.server")

#: Paths a Realtime client may connect to (OpenAI and the two Azure shapes).
REALTIME_PATHS = REALTIME.paths
#: Largest client message accepted (the API allows 15 MiB of audio per append).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
# Connections the kernel queues before the server accepts them (capped by somaxconn).
BACKLOG = 1024
# How long stopping waits for clients to complete their closing handshakes.
CLOSE_TIMEOUT = 5.0

# Mismatches logged one by one per connection; after that one line says more came.
_LOGGED_MISMATCHES = 100
# websockets keeps a raw byte over 127 in a request target as a lone surrogate (14-16).
_NOT_ASCII = (
    "rtreplay: the request target holds bytes that are not ASCII; percent-encode them "
    "(RFC 3986: %C3%A9 for é)\n"
)

# Frames due at once are written in batches of about this many bytes (at most one frame
# more), like websockets' own write buffer: a client that stops reading holds little.
_BATCH_BYTES = 32 * 1024
_BATCH_FRAMES = 256


def _has_credential(request: Request, offered: Iterable[str]) -> bool:
    auth = request.headers.get("Authorization", "").strip()
    if auth and auth.lower() not in ("bearer", "bearer null", "bearer undefined"):
        return True
    if request.headers.get("api-key", "").strip():
        return True
    return any(p.startswith("openai-insecure-api-key.") and len(p) > 24 for p in offered)


def _select_subprotocol(connection: ServerConnection, offered: Any) -> Any:
    # Browsers abort unless one offered subprotocol is selected; the API selects ``realtime``.
    return "realtime" if "realtime" in offered else None


def _ephemeral_key(request: Request, offered: Iterable[str]) -> str | None:
    """The ``ek_...`` key a handshake carries (bearer token or browser subprotocol), if any."""
    found = credentials_in_handshake({"authorization": request.headers.get("Authorization", "")}, offered)
    return next((k for k in found if k.startswith("ek_")), None)


def _handshake(request: Request) -> Handshake:
    url = urlsplit(request.path)
    offered = offered_subprotocols(request.headers)
    return Handshake(
        path=url.path,
        query=dict(parse_qsl(url.query)),
        protocol=handshake_protocol(request.headers, offered),
        credential=_has_credential(request, offered),
        ephemeral_key=_ephemeral_key(request, offered),
    )


class _Connection:
    """What the shell keeps of one live connection while it runs."""

    __slots__ = ("closed_by_us", "failure", "frames", "interruptions", "logged", "sent", "wake", "written")

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.sent = 0
        self.closed_by_us: CloseConnection | None = None
        #: Why the replay could not go on (a payload it could not read or send), if so.
        self.failure: str | None = None
        self.logged = 0  # mismatches logged
        self.interruptions = 0  # the player's count when its last frames were handed out
        # What it is writing (the player's Holding): frames handed out, how many written.
        self.frames: Sequence[ServerFrame] = ()
        self.written = 0


class ReplayServer(Service):
    """A local mock Realtime server that replays a cassette.

    ``cassette`` is a path or an in-memory :class:`~rtreplay.cassette.Cassette`. ``speed``
    ``None`` or ``0`` sends every frame as soon as it is released (the default: tests do
    not wait), ``1.0`` at the recorded pace, ``2.0`` twice as fast. ``match``:
    ``"default"``, ``"type"``, ``"exact"`` or a :class:`~rtreplay.match.MatchPolicy`.
    ``strict``: a mismatch closes the connection with 1008 instead of sending an ``error``
    event. ``stall_timeout``: seconds a client may stay silent while the replay holds
    server events for it before the connection is closed with 1008 and a ``"stall"``
    mismatch (``None`` or ``0``: never). ``audio_tolerance``: seconds of audio the client
    may send more or less than recorded. ``require_auth``: refuse handshakes that carry no
    credential at all. ``repeat``: every client gets the first (or the matching) recorded
    connection again, instead of the k-th client getting the k-th connection.
    ``keep_received=False``: keep nothing in :attr:`received` (a long-running server nobody
    asks). ``shift_times`` (on by default): time fields such as ``session.expires_at`` are
    moved to replay time, keeping their offset from the recording's start; ``False`` sends
    them as recorded. ``fresh_ids``: each connection gets its own IDs instead of the
    recorded ones, and a client that echoes a stale one is told (see
    :mod:`rtreplay.volatile`). ``faults``: :class:`~rtreplay.faults.Fault` values or their
    strings (``"close:1011@after:response.output_audio.delta#3"``) to inject; ``latency``:
    a :class:`~rtreplay.latency.Latency` (or ``"ttft=0.8,rate=20"``) pacing each response
    (docs/faults.md). Bad options raise :class:`ValueError`; a cassette that cannot be
    read, a :class:`~rtreplay.errors.CassetteError`.

    A cassette file that changes on disk while served (re-recorded, copied over) is loaded
    again before the next handshake, and the log says so; see
    :meth:`~rtreplay.replay.ReplaySession.refresh` for what open connections do.

    Memory is bounded whatever the clients send: the report keeps the first 1,000
    mismatches in full (strings cut to 1,000 characters) and counts the rest; a client that
    stops reading is not read from either.

    Start it with ``async with``, ``await server.start()`` or ``with server.in_thread():``;
    then give a client :attr:`websocket_base_url` (or :attr:`url`). :attr:`report` and
    :attr:`received` are live.
    """

    def __init__(
        self,
        cassette: str | os.PathLike[str] | Cassette,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float | None = None,
        match: str | MatchPolicy = "default",
        strict: bool = False,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        audio_tolerance: float | None = DEFAULT_AUDIO_TOLERANCE,
        require_auth: bool = False,
        repeat: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        keep_received: bool = True,
        shift_times: bool = True,
        fresh_ids: bool = False,
        faults: Iterable[Fault | str] | Fault | str | None = (),
        latency: Latency | str | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context)
        self.session = ReplaySession(
            cassette,
            match=match,
            speed=speed,
            strict=strict,
            stall_timeout=stall_timeout,
            audio_tolerance=audio_tolerance,
            repeat=repeat,
            require_auth=require_auth,
            shift_times=shift_times,
            fresh_ids=fresh_ids,
            faults=faults,
            latency=latency,
        )
        self.faults = self.session.faults
        self.latency = self.session.latency
        self.policy = self.session.policy
        self.speed = self.session.speed
        self.stall_timeout = self.session.stall_timeout
        self.audio_tolerance = self.session.audio_tolerance
        self.strict = strict
        self.require_auth = require_auth
        self.repeat = repeat
        #: Whether :attr:`received` keeps the clients' messages (``rtreplay serve``, which
        #: nobody can ask, does not).
        self.keep_received = keep_received
        self.received: list[ReceivedEvent] = []
        #: Said after a stall in the log: how the user of this server changes the bound.
        self.stall_hint = ""
        # Clients' keys (Azure's ?api-key=...) stay out of the log lines.
        self._redactor = Redactor()
        #: Bytes of ``input_audio_buffer.append`` messages kept whole in :attr:`received`.
        self.received_audio_budget = RECEIVED_AUDIO_BUDGET
        self._received_audio = 0
        self._accepted: dict[ServerConnection, Accept] = {}
        self._live: set[ServerConnection] = set()
        self._server: Server | None = None

    @property
    def index(self) -> CassetteIndex:
        """The cassette as loaded last (a cassette that changed on disk is loaded again
        before the next handshake: see :meth:`~rtreplay.replay.ReplaySession.refresh`)."""
        return self.session.index

    @property
    def report(self) -> ReplayReport:
        return self.session.report

    @property
    def cassette_path(self) -> str | None:
        return self.session.index.path

    # -- lifecycle --------------------------------------------------------------------

    async def _start(self) -> int:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            compression=None,
            max_size=MAX_MESSAGE_SIZE,
            create_connection=with_http(AnsweringServerConnection, self._http),
            process_request=self._process_request,
            process_response=self._process_response,
            select_subprotocol=_select_subprotocol,
            server_header=f"rtreplay/{__version__}",
            # Pings from clients are answered; the mock sends none of its own, so a test
            # paused in a debugger keeps its connection.
            ping_interval=None,
            ssl=self.ssl_context,
            logger=websockets_logger("rtreplay.server.websockets"),
            # asyncio's default backlog (100) drops the connections of a larger burst of
            # clients starting at once (a test suite under xdist, a load test): each then
            # waits a second for the SYN to be sent again.
            backlog=BACKLOG,
        )
        sockname = next(iter(self._server.sockets)).getsockname()
        port = int(sockname[1])
        self.port = port
        self.session.base_url = self.websocket_base_url
        return port

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(asyncio.shield(self._server.wait_closed()), CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                # A client that stopped reading keeps websockets' close() waiting on its
                # full socket forever (the close timeout starts only after the drain).
                for connection in list(self._live):
                    connection.transport.abort()
                await self._server.wait_closed()
        self.session.close()

    def check(self, *, complete: bool = True) -> None:
        """Raise :class:`~rtreplay.errors.MismatchError` if the replay went wrong.

        With ``complete`` (the default), recorded client events never received count too.
        """
        if not self.report.ok or (complete and not self.report.complete):
            raise MismatchError(self.report)

    # -- HTTP beside the connections (client secrets) ----------------------------------

    def _refresh(self, what: str) -> str | None:
        """Load the cassette again if it changed on disk (logged); why nothing can be
        served, if so (then ``what``, the request, is refused with 503)."""
        try:
            reloaded = self.session.refresh()
        except CassetteError as exc:
            logger.error("refused %s: HTTP 503, %s", what, exc)
            return f"rtreplay: {exc}\n"
        if reloaded is not None:
            logger.warning("%s", reloaded)
        return None

    async def _http(self, request: HttpRequest) -> HttpResponse:
        # A client secret comes before the connection that uses it: from the same version.
        unusable = self._refresh(f"{request.method} {request.path}")
        if unusable is not None:
            return HttpResponse(503, text=unusable)
        response = self.session.answer_http(request)
        level = logging.INFO if response.status < 400 else logging.WARNING
        logger.log(level, "%s %s: HTTP %d", request.method, request.path, response.status)
        return response

    # -- handshake --------------------------------------------------------------------

    def _respond(self, connection: ServerConnection, refuse: Refuse) -> Response:
        return _refusal(refuse)

    def _loggable(self, request: Request) -> str:
        """The request target for a log line: the client's key never reaches a log."""
        self._redactor.add_handshake(
            dict(request.headers.raw_items()), offered_subprotocols(request.headers)
        )
        return self._redactor.target(request.path)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not request.path.isascii():
            return connection.respond(400, _NOT_ASCII)
        unusable = self._refresh(self._loggable(request))
        if unusable is not None:
            return connection.respond(503, unusable)
        refused = self.session.screen(_handshake(request))
        if refused is None:
            return None
        logger.warning("refused %s: HTTP %d, %s", self._loggable(request), refused.status, refused.reason)
        return self._respond(connection, refused)

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | Awaitable[Response | None] | None:
        if response.status_code != 101:
            return None
        try:
            return self._answer(connection, request)
        except Exception as exc:  # a bug: the client and the report both hear of it
            failure = Failure(None, None, f"the handshake could not be answered: {exc!r}")
            self.report.add_failure(failure)
            logger.exception("%s; answered HTTP 500", failure)
            return connection.respond(500, f"rtreplay: {failure.message}\n")

    def _answer(
        self, connection: ServerConnection, request: Request
    ) -> Response | Awaitable[Response | None] | None:
        # Decided only once the handshake is valid, so a bad request uses up no connection.
        decision = self.session.accept(_handshake(request))
        target = self._loggable(request)
        if isinstance(decision, Drop):
            logger.warning("conn %d: %s dropped: %s", decision.conn, target, decision.reason)
            # No answer at all: the TCP connection ends (the response below goes nowhere,
            # and keeps websockets from running the connection's handler).
            connection.transport.abort()
            return connection.respond(500, "")
        if isinstance(decision, Refuse):
            if decision.recorded is not None:
                logger.info(
                    "conn %d: %s from %s: %s", decision.conn, target, _peer(connection), decision.reason
                )
            else:
                logger.warning(
                    "conn %d: %s refused with HTTP %d: %s",
                    decision.conn,
                    target,
                    decision.status,
                    decision.reason,
                )
            return self._respond(connection, decision)
        player = decision.player
        ic = player.connection
        logger.info(
            "conn %d: %s from %s: replaying recorded connection %d (%s, %d client events, "
            "%d server frames)",
            decision.conn,
            target,
            _peer(connection),
            ic.number,
            ic.protocol.upper(),
            len(ic.clients),
            ic.server_count,
        )
        if ic.warning is not None:
            logger.warning("conn %d: %s", decision.conn, ic.warning)
        if decision.differences and self.policy.content:
            logger.warning(
                "conn %d: mismatch: the connection request differs from recorded connection "
                "%d: %s",
                decision.conn,
                ic.number,
                "; ".join(decision.differences),
            )
        self._accepted[connection] = decision
        if decision.wait:
            return self._hold(decision)
        return None

    async def _hold(self, decision: Accept) -> None:
        """An injected stall at the handshake: answer it late, or never (until the client
        gives up, or websockets' opening timeout ends the connection)."""
        logger.warning(
            "conn %d: the handshake is held %s (an injected stall)",
            decision.conn,
            "until the client gives up" if decision.wait == math.inf else f"for {decision.wait:g} s",
        )
        await asyncio.sleep(decision.wait if decision.wait != math.inf else 86400.0)

    # -- connections ------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        accepted = self._accepted.pop(ws, None)
        if accepted is None:  # pragma: no cover - every accepted handshake is assigned
            await ws.close(1011, "rtreplay: no recorded connection for this handshake")
            return
        live, player = accepted.conn, accepted.player
        self._live.add(ws)
        loop = asyncio.get_running_loop()
        state = _Connection()
        player.holding = state  # what the writer still holds, should the client interrupt
        player.connect(loop.time())
        writer = loop.create_task(self._write(ws, player, state))
        received = self.received
        append = player.connection.profile.audio_append
        wake = state.wake
        try:
            while True:
                message = await ws.recv()
                player.receive(message, loop.time())
                if player.pending:
                    # Something is due, or audio brought the deadline forward (once the
                    # client's audio is within the tolerance of what the held frames wait
                    # for, they go out after a short quiet, well before the stall timeout
                    # the writer sleeps towards). Otherwise the deadline can only have moved
                    # later: a timer firing early polls and sleeps again.
                    wake.set()
                if not self.keep_received:
                    continue
                if append is not None and player.last_type == append:
                    self._received_audio += len(message)
                    if self._received_audio > self.received_audio_budget:
                        received.append(ReceivedEvent(live, None, len(message), append))
                        continue
                received.append(ReceivedEvent(live, message))
        except ConnectionClosed:
            pass
        finally:
            self._live.discard(ws)
            player.disconnect(loop.time())
            if not writer.done():
                writer.cancel()
            # Waited for, not awaited: a cancellation of this handler must not be swallowed.
            await asyncio.wait([writer])
            failure = state.failure
            if not writer.cancelled() and writer.exception() is not None:
                failure = f"sending failed: {writer.exception()!r}"
            if failure is not None:
                ic = player.connection
                failure += f"; {state.sent} of {ic.server_count} server frames were sent"
                logger.error("conn %d: %s", live, failure)
                self.report.add_failure(Failure(live, ic.number, failure))
            self._log_close(ws, live, player, state)

    async def _write(self, ws: ServerConnection, player: Player, state: _Connection) -> None:
        """Sleep until the player's next deadline (or a client message); write what is due."""
        loop = asyncio.get_running_loop()
        wake = state.wake
        try:
            while True:
                wake.clear()
                actions = player.poll(loop.time())
                state.interruptions = player.interruptions
                for action in actions:
                    if type(action) is Send:
                        await self._send_frames(ws, player, action, state)
                    elif type(action) is FaultFired:
                        fired = action.fired
                        logger.warning(
                            "conn %d: injected fault %s fired %s (%.3f s after the connection opened)",
                            fired.conn, fired.fault, fired.where, fired.seconds,
                        )
                    elif type(action) is SendError:
                        _log_mismatch(player, action.mismatch, state, self.stall_hint)
                        await ws.send(action.message, text=True)
                    elif type(action) is CloseConnection:
                        if action.mismatch is not None and action.mismatch.held is None:
                            _log_mismatch(player, action.mismatch, state)
                        state.closed_by_us = action
                        if action.abort:
                            ws.transport.abort()
                        else:
                            await ws.close(action.code, action.reason)
                        return
                deadline = player.next_deadline()
                if wake.is_set() or (deadline is not None and deadline <= loop.time()):
                    continue
                timer = loop.call_at(deadline, wake.set) if deadline is not None else None
                try:
                    await wake.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
        except ConnectionClosed:
            return
        except (OSError, ValueError) as exc:
            # A payload that could not be read or sent: the client must not wait for it in
            # vain, and the report must say so (the handler reports state.failure).
            changed = isinstance(exc, CassetteChangedError)
            why = str(exc) if changed else repr(exc)
            state.failure = f"a recorded server frame could not be sent ({why}); closed with 1011"
            if ws.protocol.state is not State.CLOSED:
                with contextlib.suppress(ConnectionClosed):
                    await ws.close(
                        1011,
                        "rtreplay: the cassette changed on disk during the replay"
                        if changed
                        else "rtreplay: a recorded frame could not be sent",
                    )

    async def _send_frames(
        self, ws: ServerConnection, player: Player, action: Send, state: _Connection
    ) -> None:
        # Frames due together are written in batches (send_many: one write and one
        # flow-control wait per batch rather than per frame); a batch is capped like
        # websockets' write buffer so a client that stops reading makes us hold little.
        try:
            rest = await self._send_batches(ws, player, action, state)
            while rest:
                # The client interrupted a response while we waited to write: what is left
                # of it must not go out after the interruption arrived.
                state.interruptions = player.interruptions
                rest = player.withdraw(rest)
                if rest:
                    rest = await self._send_batches(ws, player, dataclasses.replace(action, frames=rest), state)
        finally:
            state.frames = ()

    async def _send_batches(
        self, ws: ServerConnection, player: Player, action: Send, state: _Connection
    ) -> Sequence[ServerFrame]:
        """Write the frames in batches until done (``()``) or until the client interrupted
        a response during a wait (this one's, or an earlier write's): then return those
        not written yet."""
        held = action.frames
        if player.interruptions != state.interruptions:
            return held
        state.frames, state.written = held, 0
        batch: list[tuple[bytes, bool]] = []
        size = 0
        for frame, data in action.payloads():
            batch.append((data, frame.text))
            size += len(data)
            if size >= _BATCH_BYTES or len(batch) >= _BATCH_FRAMES:
                # The batch is in the transport once send_many starts waiting: what
                # comes after it is what the client has not got yet.
                state.written += len(batch)
                state.sent += await send_many(ws, batch)
                batch = []
                size = 0
                if player.interruptions != state.interruptions:
                    return held[state.written :]
        if batch:
            state.written += len(batch)
            state.sent += await send_many(ws, batch)
        return ()

    def _log_close(self, ws: ServerConnection, live: int, player: Player, state: _Connection) -> None:
        ic = player.connection
        unplayed = player.unplayed()
        matched = len(ic.clients) - (unplayed.missing if unplayed is not None else 0)
        code = ws.close_code if ws.close_code is not None else 1006
        big = too_big(ws, MAX_MESSAGE_SIZE)
        if big is not None:
            # websockets cut the connection itself: the bare 1006 would say nothing.
            code = 1009
            problem = (
                f"the client sent {big} of rtreplay's server; closed with 1009 (message too "
                "big), as the Realtime API takes at most 15 MiB of audio per "
                "input_audio_buffer.append: send audio in smaller appends"
            )
            logger.warning("conn %d: %s", live, problem)
            self.report.add_failure(Failure(live, ic.number, problem))
        elif code == 1009 and state.closed_by_us is None:
            logger.warning(
                "conn %d: the client closed with 1009 (message too big): a recorded server frame "
                "is larger than the client accepts (its max_size; openai-agents' is 8 MiB)",
                live,
            )
        if state.closed_by_us is not None or big is not None or state.failure is not None:
            by = "by the replay"  # a failure closed it with 1011
        elif getattr(ws.protocol, "close_rcvd_then_sent", None) is False and self._closed:
            by = "as the server stopped"
        else:
            by = "by the client"
        n = len(player.mismatches)
        logger.info(
            "conn %d: closed %s (code %d): %d/%d client events matched, %d/%d server frames "
            "sent, %d mismatch%s",
            live,
            by,
            code,
            matched,
            len(ic.clients),
            state.sent,
            ic.server_count,
            n,
            "es" if n != 1 else "",
        )


# Headers of a recorded refusal that describe the recorded message, not this one.
_FRAMING_HEADERS = frozenset({"content-length", "connection", "date", "transfer-encoding"})
# websockets 17 writes header values as ISO-8859-1 (and refuses other characters); 14 to 16
# as UTF-8. Either way a recorded value goes out as its UTF-8 bytes.
_LATIN1_HEADERS = Headers([("x", "\xe9")]).serialize() == b"x: \xe9\r\n\r\n"


def _refusal(refuse: Refuse) -> Response:
    """A refusal as HTTP: its status, headers (in order) and body, as recorded or decided.

    The reader checked that a recorded status is a refusal (300-599) and that its headers
    can be sent. Only the framing is this response's own: ``Content-Length``, ``Connection:
    close`` and ``Date``; a status the standard does not name (Cloudflare's 520) has an
    empty reason phrase.
    """
    body = refuse.body.encode()
    try:
        phrase = http.HTTPStatus(refuse.status).phrase
    except ValueError:
        phrase = ""
    headers = Headers()
    headers["Date"] = email.utils.formatdate(usegmt=True)
    headers["Connection"] = "close"
    headers["Content-Length"] = str(len(body))
    if refuse.recorded is None and not any(n.lower() == "content-type" for n in refuse.headers):
        headers["Content-Type"] = "text/plain; charset=utf-8"  # rtreplay's own: one line of text
    for name, value in refuse.headers.items():
        if name.lower() not in _FRAMING_HEADERS:
            headers[name] = _on_the_wire(value)
    return Response(refuse.status, phrase, headers, body)


def _on_the_wire(value: str) -> str:
    if _LATIN1_HEADERS and not value.isascii():
        return value.encode("utf-8").decode("iso-8859-1")
    return value


# Set on the log records that say a mismatch, which the report says too (the pytest plugin
# leaves them out of a test's captured log).
_MISMATCH_MARK = "rtreplay_mismatch"


def _log_mismatch(player: Player, mismatch: Any, state: _Connection, hint: str = "") -> None:
    mark = {_MISMATCH_MARK: True}
    state.logged += 1
    if state.logged > _LOGGED_MISMATCHES:
        if state.logged == _LOGGED_MISMATCHES + 1:
            logger.warning(
                "conn %d: more mismatches; not logged one by one (the report counts them)",
                player.conn,
                extra=mark,
            )
        return
    if mismatch.held is not None:
        # A stall: the whole explanation, which is all an `rtreplay serve` user gets.
        text = "; ".join(x.strip() for x in str(mismatch).splitlines())
        logger.warning("conn %d: %s%s", player.conn, text, f"; {hint}" if hint else "", extra=mark)
    else:
        logger.warning("mismatch: %s", mismatch.summary, extra=mark)


def _peer(connection: ServerConnection) -> str:
    try:
        addr = connection.remote_address
    except Exception:  # pragma: no cover - transport already gone
        return "?"
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


# -- rtreplay serve ------------------------------------------------------------------


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rtreplay serve``."""
    parser.add_argument("cassette", help="the cassette to replay (.jsonl)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; anything else is reachable from "
        "other machines and prints a warning)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=8765,
        help="port to listen on (default 8765; 0 picks a free one)",
    )
    parser.add_argument(
        "--speed",
        type=_speed,
        default=None,
        help="pacing: 0 sends at once (default), 1 at the recorded pace, 2 twice as fast",
    )
    parser.add_argument(
        "--match",
        choices=("default", "type", "exact"),
        default="default",
        help="how client events are compared with the recording (default: type and content, "
        "with IDs masked)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="close the connection with 1008 on a mismatch instead of sending an error event",
    )
    parser.add_argument(
        "--stall-timeout",
        type=_seconds,
        default=DEFAULT_STALL_TIMEOUT,
        metavar="SECONDS",
        help="close a connection with 1008 when, for this long, its client sent nothing that "
        "moves the replay on while the replay holds server events for it (or has sent them "
        f"all and the client neither closes nor goes on); 0 never (default: {DEFAULT_STALL_TIMEOUT:g})",
    )
    parser.add_argument(
        "--audio-tolerance",
        type=_seconds,
        default=DEFAULT_AUDIO_TOLERANCE,
        metavar="SECONDS",
        help="seconds of input audio a client may send more or less than recorded "
        f"(default: {DEFAULT_AUDIO_TOLERANCE:g})",
    )
    parser.add_argument(
        "--repeat",
        action="store_true",
        help="serve the first (or matching) recorded connection to every client",
    )
    parser.add_argument(
        "--require-auth",
        action="store_true",
        help="refuse handshakes without any credential (any key is accepted)",
    )
    parser.add_argument(
        "--keep-times",
        action="store_true",
        help="send time fields (session.expires_at...) as recorded instead of moving them to "
        "replay time",
    )
    parser.add_argument(
        "--fresh-ids",
        action="store_true",
        help="give each connection its own IDs instead of the recorded ones (catches clients "
        "that reuse IDs from another session)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="WHAT@WHERE",
        help="inject a fault (repeatable): error[:CODE], close[:CODE[:REASON]], drop, "
        "stall[:SECONDS], refuse[:STATUS] or expire, @ connect, open, before:TYPE[#N], "
        "after:TYPE[#N] or t:SECONDS, optionally ,conn=K; e.g. "
        "'error:rate_limit_exceeded@after:response.created' (docs/faults.md)",
    )
    parser.add_argument(
        "--latency",
        type=_latency,
        default=None,
        metavar="PROFILE",
        help="pace each response: ttft=SECONDS (to its first delta), rate=DELTAS_PER_SECOND, "
        "audio_speed=FACTOR (x real time), jitter=SECONDS, seed=N; e.g. 'ttft=0.8,rate=20'",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="serve wss:// with this certificate")
    parser.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="when stopped, write the replay report there as JSON (mismatches, unplayed events)",
    )
    parser.add_argument(
        "--fail-on-mismatch",
        action="store_true",
        help="exit 1 when stopped if any client event did not match, or a recorded one never came",
    )


def _port(text: str) -> int:
    try:
        return check_port(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if text.lstrip("-").isdigit() else f"not a port number: {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text}")
    return value


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(
            f"is a factor >= 0 (0: each frame as soon as it is due, 1: the recorded pace, 2: twice as fast), not {text}"
        )
    return value


def _fault(text: str) -> Fault:
    try:
        return Fault.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _latency(text: str) -> Latency:
    try:
        return Latency.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _error(message: str) -> int:
    print(f"rtreplay serve: error: {message}", file=sys.stderr, flush=True)
    return 2


def serve_main(args: argparse.Namespace) -> int:
    """Run ``rtreplay serve`` until Ctrl-C or SIGTERM."""
    if bool(args.tls_cert) != bool(args.tls_key):
        return _error("--tls-cert and --tls-key go together")
    if args.report:
        # Found out now, not when the run is over and the report is all there is to show.
        folder = os.path.dirname(os.path.abspath(args.report))
        if os.path.isdir(args.report) or not os.path.isdir(folder):
            what = "is a directory" if os.path.isdir(args.report) else f"its directory {folder} does not exist"
            return _error(f"cannot write the report to {args.report}: {what}")
    context: ssl.SSLContext | None = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            return _error(f"cannot load the TLS certificate {args.tls_cert}: {exc}")
    try:
        server = ReplayServer(
            args.cassette,
            host=args.host,
            port=args.port,
            speed=args.speed,
            match=args.match,
            strict=args.strict,
            stall_timeout=args.stall_timeout or None,
            audio_tolerance=args.audio_tolerance,
            require_auth=args.require_auth,
            repeat=args.repeat,
            ssl_context=context,
            keep_received=False,  # nobody can look at it, and a long run would pile it up
            shift_times=not args.keep_times,
            fresh_ids=args.fresh_ids,
            faults=args.fault,
            latency=args.latency,
        )
    except ValueError as exc:  # a fault no recorded connection can take
        return _error(str(exc))
    note = partial_note(args.cassette)
    if note:
        print(f"rtreplay serve: warning: {note}", file=sys.stderr, flush=True)
    server.stall_hint = "the connection was closed with 1008; --stall-timeout SECONDS waits longer (0: never)"
    # The command's own log lines go to stderr, only while it runs: main() may be called
    # in-process (tests, embedding), where a handler left behind would outlive its stream.
    root = logging.getLogger("rtreplay")
    quiet = logging.getLogger("rtreplay.server.websockets")
    saved = root.level, quiet.level, root.propagate
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    quiet.setLevel(logging.WARNING)
    try:
        status = asyncio.run(_serve(server))
        if status == 0:
            status = _finish_report(server, args.report, args.fail_on_mismatch)
        return status
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        quiet.setLevel(saved[1])
        root.propagate = saved[2]


def _finish_report(server: ReplayServer, path: str | None, fail: bool) -> int:
    """Write the JSON report if asked; the exit status ``--fail-on-mismatch`` asks for."""
    report = server.report
    if path:
        import json

        from .failure import report_json

        target = os.path.abspath(path)
        partial = f"{target}.{os.getpid()}.partial"
        try:
            with open(partial, "w", encoding="utf-8") as f:
                json.dump(report_json(report), f, indent=1, ensure_ascii=False)
                f.write("\n")
            os.replace(partial, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            return _error(f"cannot write the report to {path}: {exc.strerror or exc}")
    if fail and not (report.ok and report.complete):
        n = len(report.mismatches)
        print(
            f"rtreplay serve: failing: {n} mismatch{'es' if n != 1 else ''}, "
            f"{len(report.unplayed)} connection(s) not played to the end",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


async def _serve(server: ReplayServer) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        await server.start()
    except OSError as exc:
        return _error(f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}")
    n = len(server.index.connections)
    print(
        f"rtreplay serve: replaying {server.cassette_path} ({n} connection{'s' if n != 1 else ''})",
        flush=True,
    )
    print(f"websocket_base_url: {server.websocket_base_url}", flush=True)
    for fault in server.faults:
        print(f"  injecting fault: {fault}", flush=True)
    if server.latency is not None:
        print(f"  latency: {server.latency}", flush=True)
    print(
        f'  openai SDK: AsyncOpenAI(api_key="test", websocket_base_url="{server.websocket_base_url}")'
        f'; openai-agents: model_config={{"url": "{server.url}?model=gpt-realtime"}}',
        flush=True,
    )
    if n == 0:
        print(
            f"rtreplay serve: warning: {server.cassette_path} recorded no WebSocket connection: "
            "every client will be refused (HTTP 404); record a session into it first",
            file=sys.stderr,
            flush=True,
        )
    if not is_loopback(server.host):
        print(
            f"rtreplay serve: warning: listening on {server.host}, reachable from other "
            f"machines; use --host 127.0.0.1 to keep it local",
            file=sys.stderr,
            flush=True,
        )
    try:
        await stop.wait()
    finally:
        await server.close()
    # Always: a replay nobody connected to lists what it never played.
    print(str(server.report), file=sys.stderr, flush=True)
    return 0
