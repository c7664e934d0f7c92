"""The mock Realtime server: a thin websockets server around the replay player.

:class:`ReplayServer` serves a cassette to any Realtime client. It accepts what the real
clients send (``/v1/realtime``, ``/realtime``, ``/openai/realtime``,
``/openai/v1/realtime`` with any query; any credential; the ``realtime`` subprotocol
browsers offer; GA, or beta with ``OpenAI-Beta: realtime=v1`` when the cassette recorded
beta), gives each connection the recorded connection it stands for, and lets a
:class:`~rtreplay.player.Player` decide what to send. Everything that went wrong is in
:attr:`ReplayServer.report`; ``rtreplay serve`` (:func:`serve_main`) runs it from a shell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ._index import AUDIO_APPEND, CassetteIndex, IndexedConnection, ServerFrame
from ._received import RECEIVED_AUDIO_BUDGET, ReceivedEvent
from ._service import Service, is_loopback
from ._version import __version__
from ._wsio import handshake_protocol, offered_subprotocols, send_many, websockets_logger
from .cassette import Cassette
from .errors import MismatchError
from .match import MatchPolicy, resolve_policy
from .player import (
    Action,
    CloseConnection,
    Mismatch,
    Player,
    ReplayReport,
    Send,
    SendError,
)

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
REALTIME_PATHS = ("/v1/realtime", "/realtime", "/openai/realtime", "/openai/v1/realtime")
#: Largest client message accepted (the API allows 15 MiB of audio per append).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
# How long stopping waits for clients to complete their closing handshakes.
CLOSE_TIMEOUT = 5.0

# Query parameters that say which session a connection is for.
_HANDSHAKE_KEYS = ("model", "deployment", "intent", "call_id")

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


class _Sender:
    """Sends what a player asked for, in order, each frame when it is due."""

    def __init__(self, ws: ServerConnection, index: CassetteIndex) -> None:
        self.ws = ws
        self.index = index
        self.queue: deque[Action] = deque()
        self.wake = asyncio.Event()
        self.sent = 0
        self.closed_by_us: CloseConnection | None = None

    def push(self, actions: list[Action]) -> None:
        self.queue.extend(actions)
        self.wake.set()

    async def run(self) -> None:
        ws, queue = self.ws, self.queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not queue:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                action = queue.popleft()
                if type(action) is Send:
                    if action.speed is None:
                        await self._send_now(action.frames)
                    else:
                        for frame, data in self.index.payloads(action.frames):
                            delay = action.due(frame) - loop.time()
                            if delay > 0:
                                await asyncio.sleep(delay)
                            await ws.send(data, text=frame.text)
                            self.sent += 1
                elif type(action) is SendError:
                    await ws.send(action.message, text=True)
                elif type(action) is CloseConnection:
                    delay = action.due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    self.closed_by_us = action
                    if action.abort:
                        ws.transport.abort()
                    else:
                        await ws.close(action.code, action.reason)
                    return
        except ConnectionClosed:
            return

    async def _send_now(self, frames: Sequence[ServerFrame]) -> None:
        # Frames due together are written in batches (send_many: one write and one
        # flow-control wait per batch rather than per frame); a batch is capped like
        # websockets' write buffer so a client that stops reading makes us hold little.
        batch: list[tuple[bytes, bool]] = []
        size = 0
        for frame, data in self.index.payloads(frames):
            batch.append((data, frame.text))
            size += len(data)
            if size >= _BATCH_BYTES or len(batch) >= _BATCH_FRAMES:
                self.sent += await send_many(self.ws, batch)
                batch = []
                size = 0
        if batch:
            self.sent += await send_many(self.ws, batch)


class ReplayServer(Service):
    """A local mock Realtime server that replays a cassette.

    ``cassette`` is a path or an in-memory :class:`~rtreplay.cassette.Cassette`. ``speed``
    ``None`` or ``0`` sends every frame as soon as it is released (the default: tests do
    not wait), ``1.0`` at the recorded pace, ``2.0`` twice as fast. ``match``:
    ``"default"``, ``"type"``, ``"exact"`` or a :class:`~rtreplay.match.MatchPolicy`.
    ``strict``: a mismatch closes the connection with 1008 instead of sending an ``error``
    event. ``require_auth``: refuse handshakes that carry no credential at all.
    ``repeat``: every client gets the first (or the matching) recorded connection again,
    instead of the k-th client getting the k-th connection.

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
        require_auth: bool = False,
        repeat: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context)
        if speed is not None and (speed < 0 or speed != speed):
            raise ValueError(f"speed must be a number >= 0 (0: instant), not {speed}")
        self.policy = resolve_policy(match)
        self.speed = speed or None
        self.strict = strict
        self.require_auth = require_auth
        self.repeat = repeat
        self.index = CassetteIndex.load(cassette)
        self.cassette_path = self.index.path
        self.report = ReplayReport(self.index.path, self.index.connections)
        self.received: list[ReceivedEvent] = []
        #: Bytes of ``input_audio_buffer.append`` messages kept whole in :attr:`received`.
        self.received_audio_budget = RECEIVED_AUDIO_BUDGET
        self._received_audio = 0
        self._used: set[int] = set()
        self._next_conn = 0
        self._assigned: dict[ServerConnection, tuple[int, IndexedConnection]] = {}
        self._live: set[ServerConnection] = set()
        self._server: Server | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def _start(self) -> int:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            compression=None,
            max_size=MAX_MESSAGE_SIZE,
            process_request=self._process_request,
            process_response=self._process_response,
            select_subprotocol=_select_subprotocol,
            server_header=f"rtreplay/{__version__}",
            # Pings from clients are answered; the mock sends none of its own, so a test
            # paused in a debugger keeps its connection.
            ping_interval=None,
            ssl=self.ssl_context,
            logger=websockets_logger("rtreplay.server.websockets"),
        )
        sockname = next(iter(self._server.sockets)).getsockname()
        return int(sockname[1])

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
        self.index.close()

    def check(self, *, complete: bool = True) -> None:
        """Raise :class:`~rtreplay.errors.MismatchError` if the replay went wrong.

        With ``complete`` (the default), recorded client events never received count too.
        """
        if not self.report.ok or (complete and not self.report.complete):
            raise MismatchError(self.report)

    # -- handshake --------------------------------------------------------------------

    def _refuse(self, connection: ServerConnection, status: int, body: str) -> Response:
        return connection.respond(status, body.rstrip("\n") + "\n")

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        normalized = path.rstrip("/") or "/"
        if normalized not in REALTIME_PATHS:
            logger.warning("refused %s: HTTP 404, not a Realtime endpoint", request.path)
            return self._refuse(
                connection,
                404,
                f"rtreplay: no Realtime endpoint at {path}; connect to /v1/realtime "
                f"(websocket_base_url {self.websocket_base_url})",
            )
        if self.require_auth and not _has_credential(request, offered_subprotocols(request.headers)):
            logger.warning("refused %s: HTTP 401, no credential", request.path)
            return self._refuse(
                connection,
                401,
                "rtreplay: no credential: send 'Authorization: Bearer <key>', 'api-key: <key>' "
                "or the 'openai-insecure-api-key.<key>' subprotocol (any key is accepted)",
            )
        return None

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        if response.status_code != 101:
            return None
        # Chosen only once the handshake is valid, so a bad request uses up no connection.
        url = urlsplit(request.path)
        query = dict(parse_qsl(url.query))
        offered = offered_subprotocols(request.headers)
        protocol = handshake_protocol(request.headers, offered)
        live = self._next_conn
        self._next_conn += 1
        target = f"{url.path}{'?' + url.query if url.query else ''}"
        chosen = self._select(live, url.path.rstrip("/"), query, protocol)
        if isinstance(chosen, tuple):
            status, message = chosen
            self._report(
                Mismatch(
                    "no_connection" if status == 409 else "handshake",
                    live,
                    None,
                    1,
                    None,
                    0,
                    None,
                    None,
                    message,
                )
            )
            logger.warning("conn %d: %s refused with HTTP %d: %s", live, target, status, message)
            return self._refuse(connection, status, f"rtreplay: {message}")
        ic = chosen
        peer = _peer(connection)
        if ic.reject is not None:
            Player(ic, policy=self.policy, conn=live, report=self.report)
            rej = ic.reject
            logger.info(
                "conn %d: %s from %s: replaying recorded connection %d, refused with HTTP %d",
                live,
                target,
                peer,
                ic.number,
                rej.status,
            )
            refused = connection.respond(rej.status, rej.body)
            for name, value in rej.headers.items():
                if name.lower() in ("content-length", "connection", "date", "transfer-encoding"):
                    continue
                del refused.headers[name]
                refused.headers[name] = value
            return refused
        logger.info(
            "conn %d: %s from %s: replaying recorded connection %d (%s, %d client events, "
            "%d server frames)",
            live,
            target,
            peer,
            ic.number,
            ic.protocol.upper(),
            len(ic.clients),
            ic.server_count,
        )
        self._assigned[connection] = (live, ic)
        return None

    def _select(
        self, live: int, path: str, query: dict[str, str], protocol: str
    ) -> IndexedConnection | tuple[int, str]:
        connections = self.index.connections
        recorded = len(connections)
        if self.repeat:
            pool = list(connections)
        else:
            pool = [c for c in connections if c.number not in self._used]
        if not pool:
            return 409, (
                f"the cassette recorded {recorded} connection{'s' if recorded != 1 else ''} and "
                f"every one was replayed; this is connection {live + 1}. Record it, or replay "
                f"with repeat=True (--repeat) to serve the same connection again"
            )
        same = [c for c in pool if c.protocol == protocol]
        if not same:
            names = {
                "ga": "the GA protocol (no OpenAI-Beta header)",
                "beta": "the beta protocol (OpenAI-Beta: realtime=v1)",
            }
            return 400, (
                f"the cassette recorded {names[pool[0].protocol]}, but the client asked for "
                f"{names[protocol]}; connect with the client the cassette was recorded with"
            )
        exact = [c for c in same if not _handshake_differences(c, path, query)]
        chosen = exact[0] if exact else same[0]
        if not self.repeat:
            self._used.add(chosen.number)
        differences = _handshake_differences(chosen, path, query)
        if differences and self.policy.content:
            message = (
                f"the connection request differs from recorded connection {chosen.number}: "
                + "; ".join(differences)
            )
            self._report(
                Mismatch(
                    "handshake",
                    live,
                    chosen.number,
                    1,
                    None,
                    len(chosen.clients),
                    None,
                    None,
                    message,
                )
            )
            logger.warning("conn %d: mismatch: %s", live, message)
        return chosen

    def _report(self, mismatch: Mismatch) -> None:
        self.report.add_mismatch(mismatch)

    # -- connections ------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        entry = self._assigned.pop(ws, None)
        if entry is None:  # pragma: no cover - every accepted handshake is assigned
            await ws.close(1011, "rtreplay: no recorded connection for this handshake")
            return
        live, ic = entry
        self._live.add(ws)
        player = Player(
            ic,
            policy=self.policy,
            speed=self.speed,
            strict=self.strict,
            conn=live,
            report=self.report,
        )
        loop = asyncio.get_running_loop()
        sender = _Sender(ws, self.index)
        sender.push(player.connect(loop.time()))
        task = loop.create_task(sender.run())
        received = self.received
        try:
            while True:
                message = await ws.recv()
                actions = player.receive(message, loop.time())
                if player.last_type == AUDIO_APPEND:
                    self._received_audio += len(message)
                    if self._received_audio > self.received_audio_budget:
                        received.append(ReceivedEvent(live, None, len(message)))
                    else:
                        received.append(ReceivedEvent(live, message))
                else:
                    received.append(ReceivedEvent(live, message))
                if actions:
                    sender.push(actions)
                    for action in actions:
                        if type(action) is SendError or (
                            type(action) is CloseConnection and action.code == 1008
                        ):
                            logger.warning("mismatch: %s", player.mismatches[-1].summary)
                            break
        except ConnectionClosed:
            pass
        finally:
            self._live.discard(ws)
            player.disconnect()
            if not task.done():
                task.cancel()
            # Waited for, not awaited: a cancellation of this handler must not be swallowed.
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                logger.error("conn %d: sending failed: %r", live, task.exception())
            matched = sum(1 for c in ic.clients) - (
                u.missing if (u := player.unplayed()) is not None else 0
            )
            code = ws.close_code if ws.close_code is not None else 1006
            if sender.closed_by_us is not None:
                by = "by the replay"
            elif getattr(ws.protocol, "close_rcvd_then_sent", None) is False and self._closed:
                by = "as the server stopped"
            else:
                by = "by the client"
            logger.info(
                "conn %d: closed %s (code %d): %d/%d client events matched, %d/%d server frames "
                "sent, %d mismatch%s",
                live,
                by,
                code,
                matched,
                len(ic.clients),
                sender.sent,
                ic.server_count,
                len(player.mismatches),
                "es" if len(player.mismatches) != 1 else "",
            )


def _peer(connection: ServerConnection) -> str:
    try:
        addr = connection.remote_address
    except Exception:  # pragma: no cover - transport already gone
        return "?"
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def _handshake_differences(ic: IndexedConnection, path: str, query: dict[str, str]) -> list[str]:
    recorded = ic.open.query
    out = []
    for key in _HANDSHAKE_KEYS:
        want, got = recorded.get(key), query.get(key)
        if want != got:
            out.append(f"{key}: recorded {want!r}, got {got!r}")
    return out


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
        type=int,
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
        "--repeat",
        action="store_true",
        help="serve the first (or matching) recorded connection to every client",
    )
    parser.add_argument(
        "--require-auth",
        action="store_true",
        help="refuse handshakes without any credential (any key is accepted)",
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


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def _error(message: str) -> int:
    print(f"rtreplay serve: error: {message}", file=sys.stderr, flush=True)
    return 2


def serve_main(args: argparse.Namespace) -> int:
    """Run ``rtreplay serve`` until Ctrl-C or SIGTERM."""
    if bool(args.tls_cert) != bool(args.tls_key):
        return _error("--tls-cert and --tls-key go together")
    context: ssl.SSLContext | None = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            return _error(f"cannot load the TLS certificate {args.tls_cert}: {exc}")
    server = ReplayServer(
        args.cassette,
        host=args.host,
        port=args.port,
        speed=args.speed,
        match=args.match,
        strict=args.strict,
        require_auth=args.require_auth,
        repeat=args.repeat,
        ssl_context=context,
    )
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
    print(
        f'  openai SDK: AsyncOpenAI(api_key="test", websocket_base_url="{server.websocket_base_url}")'
        f'; openai-agents: model_config={{"url": "{server.url}?model=gpt-realtime"}}',
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
    report = server.report
    if report.mismatches or report.players:
        print(str(report), file=sys.stderr, flush=True)
    return 0
