"""The recording proxy: relays a client's Realtime sessions to the upstream API into a cassette.

A client connects to ``ws://HOST:PORT/<base>/realtime?...``; the proxy opens
``{upstream}/realtime?...`` with the client's handshake (headers, offered subprotocols,
path tail and query; never hop-by-hop headers), and only once the upstream has accepted
does it accept the client, with the subprotocol the upstream chose. Frames then flow both
ways unchanged and in order, each one written to the cassette *before* it is forwarded, so
a proxy killed at any moment leaves a ``<cassette>.<pid>.partial`` file holding every frame
either side received from it.

Throughput: frames skip websockets' ``recv()`` and ``send()``. Each hop hands the frames
of one socket read to the relay (``TapServerConnection`` / ``TapClientConnection`` in
``rtreplay/_wsio.py``), which writes them to the cassette with one system call and to the
other hop with another, in the same callback: a burst costs two writes however many
frames it holds, and no frame waits for a task switch. Flow control joins the hops: while
the client's write buffer is full, the upstream is not read from (and the other way
round), so a client that stops reading stops the upstream after one read (at most 256 KiB)
plus websockets' write buffer.

``docs/recording.md`` is the user's guide: path mapping, credentials, close codes, what
gets written when.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http
import importlib
import inspect
import logging
import math
import os
import re
import signal
import ssl
import sys
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

import msgspec
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from ._http import UpstreamFailure, forward, http_url, with_http
from ._received import APPEND_TYPE_BYTES, RECEIVED_AUDIO_BUDGET, ReceivedEvent
from ._service import Service, is_loopback
from ._wsio import (
    TapClientConnection,
    TapServerConnection,
    forward_frames,
    handshake_protocol,
    offered_subprotocols,
    too_big,
    websockets_logger,
)
from .audiofiles import AudioMode
from .cassette import (
    Close,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Open,
    Reject,
    http_body,
    utc_timestamp,
)
from .client_secrets import endpoint_of, with_placeholder
from .codec import CassetteWriter, leftover_partials, make_directories, remove_made_directories
from .errors import EventHookError, RecordError, RtreplayError, UpstreamError
from .protocol import profile_for
from .redact import EventHook, Redactor, credentials_in_handshake

__all__ = [
    "DEFAULT_UPSTREAM",
    "MAX_SIZE",
    "ConnectionStats",
    "Recorder",
    "add_record_arguments",
    "record_main",
    "upstream_url",
]

logger = logging.getLogger("rtreplay.recorder")

DEFAULT_UPSTREAM = "wss://api.openai.com/v1"
# The close code the API ends a beta client with, after an ``error`` with code
# ``beta_api_shape_disabled`` (CHANGES.md, "Beta sunset").
BETA_REFUSED = 4000
MAX_SIZE = 16 * 1024 * 1024  # the API accepts 15 MiB audio appends; base64 and JSON add a little
DEFAULT_IDLE_TIMEOUT = 300.0
CLOSE_TIMEOUT = 5.0  # how long a closing handshake may take before the connection is dropped
# After a write failed, connections are accepted again once this much disk space is free.
WRITE_HEADROOM = 256 * 1024

Side = Literal["client", "server"]

# Headers that belong to one hop of the connection (RFC 9110 7.6.1, RFC 6455), and those
# websockets sets itself on the upstream hop. Sec-WebSocket-Protocol travels as the
# ``subprotocols`` argument instead.
HOP_BY_HOP = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "sec-websocket-protocol",
    }
)
# Headers not worth keeping in a cassette: they describe the recording machine (OS, arch,
# runtime version, retry count) and would make every re-recording differ.
_UNRECORDED = re.compile(r"^(x-stainless-|accept-encoding$)")
# Upstream refusal headers passed back to the client with its status and body (a
# redirect's Location too: the proxy never follows one, the client decides).
_REFUSAL_HEADERS = frozenset({"content-type", "retry-after", "www-authenticate", "location"})
_REFUSAL_PREFIXES = ("x-request-id", "openai-", "x-ratelimit-", "x-ms-", "apim-", "azureml-")
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
_CREDENTIAL_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})


def normalized_path(path: str) -> str | None:
    """``path`` with its dot segments resolved (RFC 3986 5.2.4), or ``None`` if it cannot be.

    Dot segments count percent-encoded too (``%2e%2e``), as an upstream may decode them
    before resolving; a segment holding an encoded ``/`` or a backslash is refused, for the
    same reason.
    """
    out: list[str] = []
    for segment in path.split("/"):
        decoded = urllib.parse.unquote(segment, errors="strict") if "%" in segment else segment
        if "/" in decoded or "\\" in decoded:
            return None
        if decoded == ".":
            continue
        if decoded == "..":
            if len(out) > 1:
                out.pop()
            continue
        out.append(segment)
    return "/".join(out) or "/"


def upstream_url(upstream: str, path: str, query: str = "") -> str | None:
    """The upstream URL for a client's request path, or ``None`` if it is not a realtime path.

    The client's base (everything before its last ``realtime`` path segment) is replaced by
    the upstream's base; the tail from ``/realtime`` on and the query are kept verbatim:
    ``/v1/realtime?model=x`` and ``/openai/realtime?api-version=..&deployment=..`` both go
    to ``{upstream}/realtime?...``. Dot segments are resolved first (see
    :func:`normalized_path`): a path that ``..`` leads out of the Realtime endpoint is not
    a realtime path, for an upstream would serve another endpoint with the recorder's key.
    """
    try:
        resolved = normalized_path(path)
    except UnicodeDecodeError:
        return None
    if resolved is None:
        return None
    segments = resolved.split("/")
    indexes = [i for i, s in enumerate(segments) if s == "realtime"]
    if not indexes:
        return None
    tail = "/" + "/".join(segments[indexes[-1] :])
    base = urllib.parse.urlsplit(upstream)
    url = urllib.parse.urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + tail, query, ""))
    return url


@dataclass
class ConnectionStats:
    """Live figures for one recorded connection (what ``rtreplay record`` displays)."""

    conn: int
    target: str
    started: float = field(default_factory=time.monotonic)
    frames: dict[Side, int] = field(default_factory=lambda: {"client": 0, "server": 0})
    bytes: dict[Side, int] = field(default_factory=lambda: {"client": 0, "server": 0})
    ended: float | None = None
    close: Close | None = None

    @property
    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    def summary(self) -> str:
        """One line: frames and bytes each way, elapsed time, and how it ended."""
        line = (
            f"conn {self.conn} {self.target}: client->server {self.frames['client']} frames "
            f"{_size(self.bytes['client'])}, server->client {self.frames['server']} frames "
            f"{_size(self.bytes['server'])}, {self.elapsed:.1f} s"
        )
        if self.close is not None:
            line += f", {_describe_close(self.close)}"
        return line


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def _describe_close(close: Close) -> str:
    who = f"closed by the {close.by}" if close.by else "dropped"
    reason = f" ({close.reason})" if close.reason else ""
    return f"{who} with code {close.code}{reason}"


_OTHER: dict[Side, Side] = {"client": "server", "server": "client"}


class _Relay:
    """One client connection and its upstream connection, relayed and recorded.

    Data frames never pass through ``recv()`` or ``send()``: each hop is a tap connection
    (``rtreplay/_wsio.py``) that hands :meth:`_relay` the frames of one socket read, which
    are written to the cassette with one system call and then to the other hop with
    another, in the same callback. A task per hop waits for it to close, and closes the
    other hop likewise.
    """

    def __init__(
        self,
        recorder: Recorder,
        conn: int,
        client: TapServerConnection,
        upstream: TapClientConnection,
        target: str,
    ) -> None:
        self.recorder = recorder
        self.conn = conn
        self.hops: dict[Side, TapServerConnection | TapClientConnection] = {"client": client, "server": upstream}
        self.t0 = time.monotonic()
        self.last_activity = self.t0
        self.stats = ConnectionStats(conn, target, started=self.t0)
        self.close: Close | None = None
        # Hops the proxy itself is closing: their ConnectionClosed is an echo, not news.
        self.closing: set[Side] = set()
        self.unusable: set[Side] = set()  # hops that can no longer be sent to
        # Frames of a fragmented message, held until its last one: the message is written
        # whole, and before any of its frames is forwarded.
        self.fragments: dict[Side, list[Frame]] = {"client": [], "server": []}
        self._ending: asyncio.Task[None] | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> None:
        client, upstream = self.hops["client"], self.hops["server"]
        client.tap(lambda frames: self._relay(frames, "client"), feeder=upstream)
        upstream.tap(lambda frames: self._relay(frames, "server"), feeder=client)
        tasks = [asyncio.create_task(self._watch("client")), asyncio.create_task(self._watch("server"))]
        if self.recorder.idle_timeout is not None:
            tasks.append(asyncio.create_task(self._watchdog(self.recorder.idle_timeout)))
        try:
            await asyncio.gather(*tasks[:2])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._ending is not None:
                await asyncio.gather(self._ending, return_exceptions=True)
            if self.close is None:  # cancelled from outside: treat as a shutdown
                self.close = Close(self.conn, round(self.now(), 6), 1001, "rtreplay recorder stopped", "server")
            self.stats.ended = time.monotonic()
            # The summary is logged: its close reason is redacted like the cassette's.
            close = self.recorder.redactor.record(self.close)
            assert isinstance(close, Close)
            self.stats.close = close

    # -- the two directions -------------------------------------------------------------

    def _relay(self, frames: list[Frame], side: Side) -> None:
        """Write the frames one read from ``side`` produced, with one system call, then send them on."""
        other = _OTHER[side]
        dst = self.hops[other]
        if other in self.unusable or dst.protocol.state is not State.OPEN:
            return  # the other side is gone: these frames reach no one, so are not recorded
        try:
            now = time.monotonic()
            self.last_activity = now
            t = now - self.t0
            messages: list[tuple[float, bytes, bool]] = []
            out: list[Frame] = []  # the frames of whole messages, in order
            ends: list[int] = []  # where each message's frames end in ``out``
            held = self.fragments[side]
            for frame in frames:
                if held or not frame.fin:
                    held.append(frame)
                    if not frame.fin:
                        continue
                    out += held
                    data = b"".join(f.data for f in held)
                    text = held[0].opcode is Opcode.TEXT
                    held = self.fragments[side] = []
                else:
                    out.append(frame)
                    data = frame.data if type(frame.data) is bytes else bytes(frame.data)
                    text = frame.opcode is Opcode.TEXT
                messages.append((t, data, text))
                ends.append(len(out))
            if not messages:
                return
            try:
                written = self.recorder._writer.write_messages(self.conn, side, messages)
            except EventHookError as exc:
                # What the hook passed goes on; the event it failed on and the rest do not
                # (a cassette never holds less than was relayed), and the connection ends.
                if exc.recorded:
                    forward_frames(dst, out[: ends[exc.recorded - 1]])
                self._hook_failed(exc)
                return
            except RtreplayError as exc:
                self._cannot_record(exc)
                return
            not_utf8 = written < len(messages)  # messages[written] claimed to be text
            if not_utf8:
                out = out[: ends[written - 1]] if written else []
                del messages[written:]
            self.stats.frames[side] += written
            self.stats.bytes[side] += sum(len(data) for _t, data, _text in messages)
            if side == "client":
                self.recorder._keep_received(self.conn, messages)
            if out:
                forward_frames(dst, out)
            if not_utf8:
                # websockets closes a connection that sends a text message that is not
                # UTF-8 with 1007; so does the proxy (what came before it went through).
                src = self.hops[side]
                src.protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")
                src.send_data()
        except Exception:  # a bug: end this connection, not the whole proxy
            logger.exception("conn %d: cannot relay a frame; closing the connection (1011)", self.conn)
            self._end_soon(Close(self.conn, round(self.now(), 6), 1011, "rtreplay internal error", "server"))

    def _hook_failed(self, exc: EventHookError) -> None:
        """The redactor's hook failed: the recording cannot be whole, and says so when it
        is finished (:class:`RecordError`, what was recorded kept in the partial file);
        this connection ends with 1011, so its client hears of it at once."""
        self.recorder._failures.append(str(exc))
        logger.error("conn %d: %s; closing the connection (1011)", self.conn, exc)
        self._end_soon(
            Close(self.conn, round(self.now(), 6), 1011, "rtreplay cannot record: the redaction event_hook failed", "server")
        )

    def _cannot_record(self, exc: RtreplayError) -> None:
        """Writing failed: what could not be written is not forwarded, and the connection ends."""
        self.recorder._write_failed(exc, self.conn)
        self._end_soon(
            Close(self.conn, round(self.now(), 6), 1011, "rtreplay cannot record: the cassette cannot be written", "server")
        )

    def _end_soon(self, close: Close) -> None:
        self.unusable.update(("client", "server"))
        if self._ending is None:
            self._ending = asyncio.get_running_loop().create_task(self._end(close))

    async def _watch(self, side: Side) -> None:
        """Wait for ``side`` to close, then end the other hop likewise."""
        hop = self.hops[side]
        await hop.wait_closed()
        self.unusable.add(side)
        big = too_big(hop, MAX_SIZE)
        if big is not None:
            sender = "upstream" if side == "server" else "client"
            advice = (
                "the Realtime API takes at most 15 MiB of audio per input_audio_buffer.append: "
                "send audio in smaller appends"
                if sender == "client"
                else "the limit is fixed (the API's own messages stay well under it): "
                "check what the upstream is"
            )
            logger.warning(
                "conn %d: the %s sent %s of the recorder; both sides closed with 1009 (message "
                "too big), recorded. %s",
                self.conn,
                sender,
                big,
                advice[0].upper() + advice[1:],
            )
        self._hop_closed(side, hop.protocol.close_exc)
        await self._after(side)

    # -- how it ends ----------------------------------------------------------------------

    def _hop_closed(self, side: Side, exc: ConnectionClosed) -> None:
        """Decide, from the first hop to close, how the connection ended."""
        if self.close is not None or side in self.closing:
            return
        t = round(self.now(), 6)
        rcvd, sent = exc.rcvd, exc.sent
        if rcvd is not None and (sent is None or exc.rcvd_then_sent):
            self.close = Close(self.conn, t, rcvd.code, rcvd.reason, side)
        elif sent is not None:
            # websockets itself closed this hop (keepalive timeout, frame too big, protocol
            # error): the client sees the server end the connection with that code.
            self.close = Close(self.conn, t, sent.code, sent.reason, "server")
        else:
            who = "upstream" if side == "server" else "client"
            self.close = Close(self.conn, t, 1006, f"{who} dropped the connection without a close frame", None)

    async def _after(self, side: Side) -> None:
        """After ``side`` finished and its frames were forwarded, end the other hop likewise."""
        close = self.close
        if close is None:
            return
        other: Side = "server" if side == "client" else "client"
        if close.code == 1006 and other == "client":
            # The upstream dropped: so does the client's connection, as the API's would.
            self.closing.add(other)
            self.hops[other].transport.abort()
            return
        if close.code == 1006:
            code, reason = 1001, "client went away"
        else:
            code = close.code or 1000
            if code not in _SENDABLE and not 3000 <= code < 5000:
                code = 1000  # 1005 (an empty close frame) cannot be sent as such
            reason = close.reason
        await self._close_hop(other, code, reason)

    async def _close_hop(self, side: Side, code: int, reason: str) -> None:
        self.closing.add(side)
        self.unusable.add(side)
        hop = self.hops[side]
        try:
            # A peer that stopped reading keeps websockets' close() waiting on its full
            # socket forever (the close timeout starts only after the drain).
            await asyncio.wait_for(hop.close(code, reason), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            hop.transport.abort()
        except Exception:  # the hop is gone already: nothing left to close
            pass

    async def _end(self, close: Close) -> None:
        """End the connection from the proxy: record ``close``, close both hops."""
        if self.close is None:
            self.close = close
        self.closing.update(("client", "server"))
        code, reason = (close.code or 1000), close.reason
        await asyncio.gather(
            self._close_hop("client", code, reason),
            self._close_hop("server", 1001, "going away"),
        )

    async def shutdown(self) -> None:
        # A side whose close frame already arrived closed first, even if its reader task
        # has not run since (a client that closes just before the recorder does).
        for side in ("client", "server"):
            protocol = self.hops[side].protocol
            rcvd = protocol.close_rcvd
            if self.close is None and rcvd is not None and (protocol.close_sent is None or protocol.close_rcvd_then_sent):
                self.close = Close(self.conn, round(self.now(), 6), rcvd.code, rcvd.reason, side)
        await self._end(Close(self.conn, round(self.now(), 6), 1001, "rtreplay recorder shutting down", "server"))

    async def _watchdog(self, idle: float) -> None:
        while True:
            remaining = self.last_activity + idle - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(remaining)
        logger.warning("conn %d: no frame either way for %g s; closing it (1011)", self.conn, idle)
        await self._end(Close(self.conn, round(self.now(), 6), 1011, f"rtreplay: idle for {idle:g} s", "server"))


def _seconds(name: str, value: object, hint: str) -> float:
    """A timeout given to the recorder: a finite number of seconds > 0, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} ({hint}) must be a number of seconds > 0, not {value!r}")
    return float(value)


class Recorder(Service):
    """A recording proxy to a Realtime API: ``async with Recorder("x.jsonl") as rec: ...``.

    Point a client at ``rec.websocket_base_url`` (or ``rec.url``); each connection is
    relayed to ``upstream`` (default ``$RTREPLAY_UPSTREAM``, else the OpenAI API) and
    written to ``cassette`` as it happens. ``api_key`` (default
    ``$OPENAI_API_KEY``) is sent only for clients that bring no credential of their own.
    ``open_timeout`` bounds the upstream handshake (504 after it); ``idle_timeout`` closes a
    connection with 1011 after that many seconds without a frame either way (``None``: never).
    ``close()`` closes live connections with 1001 and moves the finished cassette into place;
    after ``discard()`` it throws the recording away instead. :attr:`received` lists what
    the clients sent (``keep_received=False``: nothing, for a long-running proxy).
    ``audio="files"`` finishes the cassette with its audio in files beside it (format 2,
    see :mod:`rtreplay.audiofiles`); the default keeps it inline, in one file.
    """

    def __init__(
        self,
        cassette: str | os.PathLike[str],
        *,
        upstream: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        redactor: Redactor | None = None,
        open_timeout: float = 10.0,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
        upstream_ssl: ssl.SSLContext | None = None,
        keep_received: bool = True,
        audio: AudioMode = "inline",
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context)
        self.audio: AudioMode = audio
        if upstream is None:
            upstream = os.environ.get("RTREPLAY_UPSTREAM") or DEFAULT_UPSTREAM
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme not in ("ws", "wss") or not parsed.netloc:
            shown = upstream.rpartition("@")[2]  # never a password, not even in an error
            raise ValueError(f"upstream must be a ws:// or wss:// URL like {DEFAULT_UPSTREAM}, not {shown!r}")
        self.cassette_path = Path(cassette)
        # A cassette path that is a symbolic link is followed: the cassette is written where
        # it points, and the link stays a link.
        self._target = Path(os.path.realpath(cassette)) if self.cassette_path.is_symlink() else self.cassette_path
        if self.cassette_path.is_dir():
            raise RecordError(
                f"{self.cassette_path} is a directory: name a cassette file in it "
                f"(for example {self.cassette_path / 'session.jsonl'})"
            )
        self.upstream = upstream.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None
        self.redactor = redactor if redactor is not None else Redactor()
        if self.api_key:
            self.redactor.add_secret(self.api_key)
        # Credentials in the upstream URL (ws://user:password@host) never reach a log either.
        if parsed.password or parsed.username:
            user = urllib.parse.unquote(parsed.username or "")
            password = urllib.parse.unquote(parsed.password or "")
            for part in (parsed.password, parsed.username, user, password):
                if part:
                    self.redactor.add_secret(part)
            # websockets sends them to the upstream as Basic authorization.
            self.redactor.add_secret(base64.b64encode(f"{user}:{password}".encode()).decode())
        self._log_filter = _RedactingFilter(self.redactor)
        self.open_timeout = _seconds("open_timeout", open_timeout, "--open-timeout")
        self.idle_timeout = None if idle_timeout is None else _seconds("idle_timeout", idle_timeout, "--idle-timeout; never: None, or 0 on the command line")
        self.upstream_ssl = upstream_ssl
        self.connections = 0  # connections recorded (accepted or refused by the upstream)
        self.exchanges = 0  # HTTP calls recorded (client secrets)
        self.refused = 0
        #: Each time the upstream could not be reached (502) or did not answer (504).
        self.upstream_errors: list[UpstreamError] = []
        #: Each time the upstream refused a handshake: what it answered (status, body), redacted.
        self.refusals: list[str] = []
        self.stats: list[ConnectionStats] = []
        #: Whether :attr:`received` keeps the clients' messages (``rtreplay record``, which
        #: nobody can ask, does not).
        self.keep_received = keep_received
        #: Client bytes kept whole in :attr:`received`; past them, audio appends lose their audio.
        self.received_audio_budget = RECEIVED_AUDIO_BUDGET
        self._received_bytes = 0
        # (conn, data, is_text, elided) per client message: tuples of atomic values, which
        # the garbage collector stops tracking, made into ReceivedEvents when asked for.
        self._received: list[tuple[int, bytes | None, bool, int]] = []
        self._received_events: list[ReceivedEvent] = []
        self._discard = False
        #: The cassette, once ``close()`` wrote it (``None``: discarded, nothing recorded,
        #: every connection refused and the old cassette kept, or writing failed).
        self.written: Path | None = None
        #: Where what was recorded is kept when the cassette could not be finished.
        self.kept_partial: Path | None = None
        # What could not be written (for close()'s error), and whether writing fails now.
        self._failures: list[str] = []
        self._write_error: RtreplayError | None = None
        self._lock = _CassetteLock(self._target)
        self._connecting: set[asyncio.Task[Any]] = set()
        self._server: Server | None = None
        self._writer: CassetteWriter
        self._relays: set[_Relay] = set()
        # A client whose handshake is under way: its upstream, what it asked for, where it
        # goes, its connection number and when it started (its open record is written).
        self._pending: dict[ServerConnection, tuple[TapClientConnection, str, str, int, float]] = {}
        self._reapers: set[asyncio.Task[None]] = set()
        self._stopping = False

    def check(self) -> None:
        """Raise the first :class:`~rtreplay.errors.UpstreamError`, if the upstream ever
        could not be reached or did not answer (the client got 502 or 504)."""
        if self.upstream_errors:
            raise self.upstream_errors[0]

    def discard(self) -> None:
        """Make ``close()`` throw the recording away; an existing cassette stays as it was."""
        self._discard = True

    # -- lifecycle ------------------------------------------------------------------------

    async def _start(self) -> int:
        self._lock.acquire()
        try:
            self._writer = CassetteWriter(self._target, redactor=self.redactor, audio=self.audio)
        except BaseException:
            self._lock.release()
            remove_made_directories(self._lock.made)
            raise
        for log in _LOGGERS:
            logging.getLogger(log).addFilter(self._log_filter)
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                create_connection=with_http(TapServerConnection, self._http_exchange),
                process_request=self._process_request,
                select_subprotocol=self._select_subprotocol,
                # permessage-deflate is accepted only when the upstream accepted it too
                # (see _process_request); every other client gets no compression.
                compression="deflate",
                max_size=MAX_SIZE,
                # The client's handshake waits for the upstream's.
                open_timeout=self.open_timeout + 5,
                close_timeout=5,
                ssl=self.ssl_context,
                logger=websockets_logger("rtreplay.recorder.websockets"),
            )
        except OSError as exc:
            self._writer.abort()
            self._lock.release()
            remove_made_directories(self._lock.made)
            for log in _LOGGERS:
                logging.getLogger(log).removeFilter(self._log_filter)
            raise RecordError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        logger.info("recording to %s: ws://%s:%d/v1 -> %s", self.cassette_path, self.host, port, _public(self.upstream))
        for partial, pid, running in leftover_partials(self._target):
            if not running:  # (ours, and another live recorder's, are not leftovers)
                logger.warning(
                    "%s was left by an interrupted recording (process %d is gone) and is left "
                    "alone: keep it with `rtreplay recover --partial %s <cassette>`, or delete it",
                    partial, pid, partial,
                )
        return port

    async def _stop(self) -> None:
        self._stopping = True
        # Handshakes waiting on a silent upstream are answered 503 now, not after
        # open_timeout: stopping is prompt.
        for task in self._connecting:
            task.cancel()
        await asyncio.gather(*(relay.shutdown() for relay in list(self._relays)))
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for task in self._reapers:
            task.cancel()
        await asyncio.gather(*self._reapers, return_exceptions=True)
        for connection in list(self._pending):
            await self._abandon(connection, "rtreplay recorder stopped during the handshake")
        try:
            self._finish()
        finally:
            self._lock.release()
            if self.written is None and self.kept_partial is None:
                # Nothing was written: no directory the recording made is left empty.
                remove_made_directories(self._lock.made)
            for log in _LOGGERS:
                logging.getLogger(log).removeFilter(self._log_filter)

    def _finish(self) -> None:
        writer, path = self._writer, self.cassette_path
        if self._failures:
            # Keep what was written, every whole record of it, where the message says.
            kept = writer.close_partial()
            self.kept_partial = kept if kept.exists() else None
            state = "left as it was" if path.exists() else "not written"
            where = (
                f"what was recorded ({self.connections} connection(s)) is kept in {kept}: "
                f"rename it to {path.name} to use it" if self.kept_partial else "nothing was kept"
            )
            failures = "; ".join(dict.fromkeys(self._failures))
            raise RecordError(f"the recording could not be written whole ({failures}); {path} {state}; {where}")
        if self._discard:
            writer.abort()
            logger.info("recording discarded; %s left as it was", path)
            return
        if self.connections == 0 and self.exchanges == 0:
            writer.abort()
            state = "left as it was" if path.exists() else "not written"
            logger.warning("no connection was recorded; %s %s", path, state)
            return
        if self.refused == self.connections and path.exists():
            writer.abort()
            logger.warning(
                "the upstream refused every connection; %s left as it was (delete it to record a refusal)",
                path,
            )
            return
        try:
            self.written = writer.close()
        except RtreplayError as exc:
            self.kept_partial = writer.partial_path if writer.partial_path.exists() else None
            note = f"; what was recorded is kept in {self.kept_partial}" if self.kept_partial else ""
            raise RecordError(f"{exc}{note}") from None
        if writer.relinked:
            logger.warning("the directory of %s was removed while recording: made it again", path)
        http = f" and {self.exchanges} HTTP exchange(s)" if self.exchanges else ""
        logger.info("wrote %s: %d connection(s)%s", path, self.connections, http)

    @property
    def received(self) -> list[ReceivedEvent]:
        """Every message the clients sent, in order, as ``ReplayServer.received`` has them."""
        events = self._received_events
        for conn, data, text, elided in self._received[len(events) :]:
            events.append(ReceivedEvent(conn, None, elided) if data is None else ReceivedEvent.from_wire(conn, data, text))
        return events

    def _keep_received(self, conn: int, messages: list[tuple[float, bytes, bool]]) -> None:
        """Note client messages for :attr:`received`.

        Every client byte counts toward the budget: telling an audio append from other
        events for sure would cost a decode per message, which the proxy does not spend.
        """
        if not self.keep_received:
            return
        kept = self._received
        budget = self.received_audio_budget
        for _t, data, text in messages:
            self._received_bytes += len(data)
            if self._received_bytes > budget and text and APPEND_TYPE_BYTES in data:
                kept.append((conn, None, text, len(data)))
            else:
                kept.append((conn, data, text, 0))

    def _write_failed(self, exc: RtreplayError, conn: int | None) -> None:
        """Writing the cassette failed: note it; new connections are refused until it works."""
        self._failures.append(f"{f'conn {conn}: ' if conn is not None else ''}{exc}")
        if self._write_error is None:
            logger.error(
                "cannot write the cassette: %s; connections that cannot be recorded are closed "
                "(1011) and new ones refused (503) until writing works again", exc,
            )
        self._write_error = exc

    def _cannot_write_now(self) -> RtreplayError | None:
        """After a failed write: why the cassette still cannot be written, if it cannot.

        Writing must work, and (where the file system says) leave room for a session: a
        disk that had a record cut off has a few bytes free, not enough for the next one.
        """
        try:
            self._writer.check_writable()
        except RtreplayError as exc:
            return exc
        try:
            stat = os.statvfs(self._writer.partial_path.parent)
        except (OSError, AttributeError):  # no statvfs (Windows), or the directory is gone
            return None
        free = stat.f_bavail * stat.f_frsize
        if free < WRITE_HEADROOM:
            return RecordError(f"{self._writer.partial_path}: only {free:,} bytes free on its disk")
        return None

    def _write_works(self) -> None:
        if self._write_error is not None:
            logger.warning("the cassette can be written again: accepting connections")
            self._write_error = None

    # -- HTTP beside the connections (client secrets) --------------------------------------

    async def _http_exchange(self, request: HttpRequest) -> HttpResponse:
        """Relay a ``client_secrets`` call to the upstream and record it, the secret it
        returns replaced by a placeholder (:mod:`rtreplay.client_secrets`)."""
        started = time.monotonic()
        wall = utc_timestamp("milliseconds")
        # Secrets first, as for a handshake: the backend's key, a key in the query.
        self.redactor.add_handshake(request.headers)
        for name, value in request.query.items():
            if name.lower() in self.redactor.secret_query:
                self.redactor.add_secret(value)
        target = self.redactor.target(request.path)
        if self._stopping:
            return HttpResponse(503, text="rtreplay recorder is shutting down\n")
        if self._write_error is not None:
            problem = self._cannot_write_now()
            if problem is not None:
                logger.warning("refused %s %s: the cassette cannot be written (%s); answered 503", request.method, target, problem)
                return HttpResponse(503, {"retry-after": "5"}, text=f"rtreplay record cannot write its cassette now ({problem})\n")
            self._write_works()
        if request.method != "POST" or endpoint_of(request.path) is None:
            logger.warning("refused %s %s: not a client_secrets call; answered 404", request.method, target)
            return HttpResponse(
                404,
                text=f"rtreplay record relays Realtime WebSocket sessions and POST "
                f".../realtime/client_secrets only, not {request.method} {target}\n",
            )
        url = upstream_url(self.upstream, request.path, urllib.parse.urlencode(request.query))
        if url is None:  # its dot segments lead out of the Realtime endpoint
            logger.warning("refused %s %s: its dot segments lead out of the Realtime endpoint", request.method, target)
            return HttpResponse(400, text="rtreplay record: the path leaves the Realtime endpoint once its '..' segments are resolved; refused\n")
        # The body is recorded as JSON text: ask for it uncompressed (the SDKs offer gzip).
        headers = [
            (n, v)
            for n, v in request.headers.items()
            if n not in HOP_BY_HOP and n not in ("host", "origin", "content-length", "accept-encoding")
        ]
        if not any(n in _CREDENTIAL_HEADERS for n, _ in headers) and self.api_key:
            headers.append(("authorization", f"Bearer {self.api_key}"))
        try:
            response, _reason = await forward(
                http_url(url), request, headers, timeout=self.open_timeout, context=self.upstream_ssl
            )
        except UpstreamFailure as exc:
            logger.warning("%s %s: upstream %s: %s; answered %d", request.method, target, _public(url), exc.reason, exc.status)
            self.upstream_errors.append(UpstreamError(_public(url), exc.status, exc.reason))
            return HttpResponse(exc.status, text=f"rtreplay: the upstream {_public(url)}: {exc.reason}\n")
        body, found = with_placeholder(response.body())
        for secret in found:
            self.redactor.add_secret(secret)
        kept = {
            name: value
            for name, value in response.headers.items()
            if name in _REFUSAL_HEADERS or name.startswith(_REFUSAL_PREFIXES)
        }
        recorded_request = msgspec.structs.replace(
            request,
            headers={n: v for n, v in request.headers.items() if n not in HOP_BY_HOP and not _UNRECORDED.match(n)},
        )
        exchange = HttpExchange(
            self.exchanges,
            recorded_request,
            HttpResponse(response.status, kept, *http_body(body)),
            started=wall,
            duration=round(time.monotonic() - started, 6),
        )
        try:
            self._writer.write(exchange)
        except RtreplayError as exc:
            self._write_failed(exc, None)
            return HttpResponse(503, {"retry-after": "5"}, text=f"rtreplay record cannot write its cassette now ({exc})\n")
        self.exchanges += 1
        logger.info(
            "http %d: %s %s -> HTTP %d%s", exchange.n, request.method, target, response.status,
            " (its ephemeral key recorded as a placeholder)" if found else "",
        )
        return response

    # -- handshake ------------------------------------------------------------------------

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        pending = self._pending.get(connection)
        return pending[0].subprotocol if pending is not None else None

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        started = time.monotonic()
        # websockets 17 parses any method and HTTP/1.0 and refuses them only after this
        # hook (14 to 16 refuse them first): the upstream is never contacted for them.
        method, version = getattr(request, "method", "GET"), getattr(request, "protocol", "HTTP/1.1")
        if method != "GET" or version != "HTTP/1.1":
            status = http.HTTPStatus.METHOD_NOT_ALLOWED if method != "GET" else http.HTTPStatus.HTTP_VERSION_NOT_SUPPORTED
            response = connection.respond(
                status, f"rtreplay: a WebSocket handshake is an HTTP/1.1 GET, not {method} {version}\n"
            )
            if method != "GET":
                response.headers["Allow"] = "GET"
            return response
        # websockets keeps a raw byte over 127 as a lone surrogate, which nothing can send on.
        bad = next((name for name, value in request.headers.raw_items() if not value.isascii()), None)
        if not request.path.isascii() or bad is not None:
            where = "target" if bad is None else f"header {bad}"
            logger.warning("refused a request whose %s holds bytes that are not ASCII; answered 400", where)
            return connection.respond(
                http.HTTPStatus.BAD_REQUEST,
                f"rtreplay record: the request {where} holds bytes that are not ASCII; "
                "percent-encode them (RFC 3986: %C3%A9 for é)\n",
            )
        parsed = urllib.parse.urlsplit(request.path)
        raw = list(request.headers.raw_items())
        offered = offered_subprotocols(request.headers)
        # Secrets first: nothing about this connection is written (or logged) before the
        # redactor knows them, a key in the query (Azure's ?api-key=) included.
        for name, value in raw:
            self.redactor.add_handshake({name: value})
        self.redactor.add_handshake({}, offered)
        for name, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
            if name.lower() in self.redactor.secret_query:
                self.redactor.add_secret(value)
        target = self.redactor.target(request.path)
        if self._stopping:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "rtreplay recorder is shutting down\n")
        if not _is_upgrade(request):
            # websockets would answer 426 too, but only after the upstream was contacted
            # (and, refusing a request without a key, recorded as a refusal).
            logger.warning("refused %s: not a WebSocket handshake; answered 426", target)
            response = connection.respond(
                http.HTTPStatus.UPGRADE_REQUIRED,
                f"rtreplay record relays WebSocket connections only: connect to {self.websocket_base_url}"
                "/realtime?model=... with a WebSocket client\n",
            )
            response.headers["Upgrade"] = "websocket"
            return response
        url = upstream_url(self.upstream, parsed.path, parsed.query)
        if url is None:
            if "realtime" in parsed.path.split("/"):  # it was one, before its dots were resolved
                logger.warning("refused %s: its dot segments lead out of the Realtime endpoint", target)
                return connection.respond(
                    http.HTTPStatus.BAD_REQUEST,
                    "rtreplay record: the path leaves the Realtime endpoint once its '..' "
                    "segments (or encoded slashes) are resolved; refused\n",
                )
            logger.warning("refused %s: not a realtime path (expected .../realtime)", target)
            return connection.respond(
                http.HTTPStatus.NOT_FOUND,
                f"rtreplay record proxies Realtime sessions only: connect to {self.websocket_base_url}"
                f"/realtime?model=..., not {target.partition('?')[0]}\n",
            )
        if self._write_error is not None:
            problem = self._cannot_write_now()
            if problem is not None:
                return self._cannot_write(connection, target, problem)
            self._write_works()
        forwarded = _forward_headers(raw)
        has_credential = any(n.lower() in _CREDENTIAL_HEADERS for n, _ in forwarded) or bool(
            credentials_in_handshake({}, offered)
        )
        if not has_credential and self.api_key:
            forwarded.append(("Authorization", f"Bearer {self.api_key}"))
        deflate = any(
            "permessage-deflate" in v for n, v in raw if n.lower() == "sec-websocket-extensions"
        )
        connecting = asyncio.ensure_future(_connect(
                url,
                additional_headers=forwarded,
                subprotocols=[Subprotocol(p) for p in offered] or None,
                compression="deflate" if deflate else None,
                user_agent_header=None,
                create_connection=TapClientConnection,
                open_timeout=self.open_timeout,
                max_size=MAX_SIZE,
                close_timeout=5,
                **_connect_options(url, self.upstream_ssl),
        ))
        self._connecting.add(connecting)
        try:
            await asyncio.wait([connecting])
        finally:
            self._connecting.discard(connecting)
        try:
            if connecting.cancelled():
                logger.warning("%s: the recorder stopped during the upstream handshake; answered 503", target)
                return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "rtreplay recorder is shutting down\n")
            upstream = connecting.result()
        except InvalidStatus as exc:
            return self._refused(connection, request, exc.response, started)
        except asyncio.TimeoutError:
            logger.warning("%s: upstream %s did not answer within %g s; answered 504", target, _public(url), self.open_timeout)
            self.upstream_errors.append(
                UpstreamError(_public(url), 504, f"no handshake within {self.open_timeout:g} s")
            )
            return connection.respond(
                http.HTTPStatus.GATEWAY_TIMEOUT,
                f"rtreplay: the upstream {_public(url)} did not complete the handshake within {self.open_timeout:g} s\n",
            )
        except (OSError, InvalidHandshake, ssl.SSLError) as exc:
            # (A subprotocol the upstream chose but nobody offered, a bad header: the
            # message may quote what the client sent, key included.)
            reason = self.redactor.text(_reason(exc))
            logger.warning("%s: cannot reach upstream %s: %s; answered 502", target, _public(url), reason)
            self.upstream_errors.append(UpstreamError(_public(url), 502, reason))
            return connection.respond(
                http.HTTPStatus.BAD_GATEWAY, f"rtreplay: cannot reach the upstream {_public(url)}: {reason}\n"
            )
        if not deflate or not upstream.protocol.extensions:
            # The upstream declined compression (or was not offered it): so does the proxy.
            with contextlib.suppress(AttributeError):
                connection.protocol.available_extensions = []
        assert isinstance(upstream, TapClientConnection)
        # Nothing is read from the upstream until the client is connected too (the relay
        # then takes what came with the handshake first): a chatty upstream cannot make
        # the proxy buffer while the client's handshake completes.
        upstream.transport.pause_reading()
        # The connection is recorded before the client is accepted: one that cannot be
        # recorded is never accepted.
        conn = self.connections
        try:
            self._writer.write(self._open_record(conn, request, upstream.subprotocol))
        except RtreplayError as exc:
            self._write_failed(exc, conn)
            await _close_unused(upstream)
            return self._cannot_write(connection, target, exc)
        self._write_works()
        self.connections += 1
        self._pending[connection] = (upstream, target, url, conn, time.monotonic())
        reaper = asyncio.create_task(self._reap(connection))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)
        return None

    async def _reap(self, connection: ServerConnection) -> None:
        """Close the upstream of a client that vanished before its handshake completed."""
        await connection.wait_closed()
        await self._abandon(connection, "client dropped the connection during the handshake")

    async def _abandon(self, connection: ServerConnection, reason: str) -> None:
        """End a connection whose client never completed its handshake (its open record is written)."""
        pending = self._pending.pop(connection, None)
        if pending is None:
            return
        upstream, _target, _url, conn, started = pending
        self._write_close(Close(conn, round(time.monotonic() - started, 6), 1006, reason, None))
        with contextlib.suppress(Exception):
            await _close_unused(upstream)

    def _write_close(self, close: Close) -> None:
        try:
            self._writer.write(close)
        except RtreplayError as exc:
            self._write_failed(exc, close.conn)

    def _cannot_write(self, connection: ServerConnection, target: str, exc: RtreplayError) -> Response:
        logger.warning("refused %s: the cassette cannot be written (%s); answered 503", target, exc)
        response = connection.respond(
            http.HTTPStatus.SERVICE_UNAVAILABLE,
            f"rtreplay record cannot write its cassette now ({exc}); no connection is accepted "
            "until it can: free some space, or stop the recorder\n",
        )
        response.headers["Retry-After"] = "5"
        return response

    def _open_record(self, conn: int, request: Request, subprotocol: str | None) -> Open:
        parsed = urllib.parse.urlsplit(request.path)
        raw = list(request.headers.raw_items())
        headers: dict[str, str] = {}
        for name, value in raw:
            key = name.lower()
            if key in HOP_BY_HOP or _UNRECORDED.match(key):
                continue
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return Open(
            conn,
            path=parsed.path,
            query=dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)),
            protocol=handshake_protocol(request.headers, offered_subprotocols(request.headers)),
            subprotocol=subprotocol,
            headers=headers,
            started=utc_timestamp("milliseconds"),
        )

    def _refused(self, connection: ServerConnection, request: Request, response: Response, started: float) -> Response:
        body = bytes(response.body or b"")
        text = body.decode("utf-8", "replace")
        target = self.redactor.target(request.path)
        if not 300 <= response.status_code <= 599:
            # 1xx and 2xx are no refusal, and no cassette may claim they are.
            logger.warning(
                "%s: upstream %s answered HTTP %d instead of switching protocols; answered 502",
                target, _public(self.upstream), response.status_code,
            )
            return connection.respond(
                http.HTTPStatus.BAD_GATEWAY,
                f"rtreplay: the upstream answered HTTP {response.status_code} instead of a "
                "WebSocket handshake\n",
            )
        headers = {
            name.lower(): _text(value)
            for name, value in response.headers.raw_items()
            if name.lower() in _REFUSAL_HEADERS or name.lower().startswith(_REFUSAL_PREFIXES)
        }
        conn = self.connections
        try:
            self._writer.write_many(
                [
                    self._open_record(conn, request, None),
                    Reject(conn, round(time.monotonic() - started, 6), response.status_code, headers, text),
                ]
            )
        except RtreplayError as exc:
            self._write_failed(exc, conn)
            return self._cannot_write(connection, target, exc)
        else:
            self._write_works()
            self.connections += 1
            self.refused += 1
        # Redacted whole, then cut: a key cut in two would be a key no rule recognises.
        snippet = " ".join(self.redactor.text(text).split())[:200]
        refusal = (
            f"upstream refused {target} with HTTP {response.status_code} "
            f"{self.redactor.text(response.reason_phrase)}" + (f": {snippet}" if snippet else "")
        )
        self.refusals.append(refusal)
        logger.warning("conn %d: %s", conn, refusal)
        out = Headers()
        for name, value in headers.items():
            out[name] = value
        out["Content-Length"] = str(len(body))
        out["Connection"] = "close"
        return Response(response.status_code, response.reason_phrase, out, body)

    # -- a connection ---------------------------------------------------------------------

    async def _handle(self, client: ServerConnection) -> None:
        pending = self._pending.pop(client, None)
        if pending is None:  # pragma: no cover - the handshake completed without an upstream
            await client.close(1011, "rtreplay: no upstream connection")
            return
        upstream, target, url, conn, _started = pending
        assert client.request is not None and isinstance(client, TapServerConnection)
        protocol = handshake_protocol(client.request.headers, offered_subprotocols(client.request.headers))
        relay = _Relay(self, conn, client, upstream, target)
        self.stats.append(relay.stats)
        self._relays.add(relay)
        logger.info("conn %d: %s -> %s (%s protocol)", conn, target, _public(url), protocol.upper())
        parsed_target = urllib.parse.urlsplit(client.request.path)
        profile = profile_for(parsed_target.path, dict(urllib.parse.parse_qsl(parsed_target.query)))
        if profile is not None and profile.warning is not None:
            logger.warning("conn %d: %s", conn, profile.warning.format(path=parsed_target.path))
        try:
            await relay.run()
        finally:
            self._relays.discard(relay)
            close = relay.close
            assert close is not None
            self._write_close(close)
            with contextlib.suppress(Exception):
                await asyncio.gather(client.close(1001), upstream.close(1001))
            logger.info("%s", relay.stats.summary())
            if protocol == "beta" and close.code == BETA_REFUSED:
                logger.warning(
                    "conn %d: the API closed a beta client with %d (its error, beta_api_shape_disabled, "
                    "is in the cassette): beta sessions can no longer be recorded; record with a GA client "
                    "(no OpenAI-Beta header), or move a beta cassette to GA with `rtreplay migrate`",
                    conn, close.code,
                )


class _CassetteLock:
    """One recorder per cassette: an exclusive lock on ``<cassette>.lock`` while it records.

    Two recorders writing one cassette would each report success while only the last file
    survived; the second one is refused at start instead, naming the first. ``flock`` locks
    belong to an open file, so this holds between processes and within one; the kernel
    drops the lock of a process that dies, so no stale lock is left to clear.
    """

    def __init__(self, cassette: Path) -> None:
        self.cassette = cassette
        self.path = cassette.with_name(f"{cassette.name}.lock")
        self._fd: int | None = None
        #: The directories acquire() made (outermost first), for the recorder to take away
        #: again when it wrote nothing.
        self.made: list[Path] = []

    def acquire(self) -> None:
        if fcntl is None:  # pragma: no cover - Windows: no lock
            return
        try:
            self.made = make_directories(self.path.parent)
        except (OSError, ValueError):
            return  # the writer reports why the directory cannot be used
        remade = 0
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except FileNotFoundError:
                # A recorder of another cassette there that wrote nothing took the directory
                # away (empty, as it had made it) between our mkdir and our open: make it again.
                remade += 1
                try:
                    if remade > 100:
                        raise OSError
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except (OSError, ValueError):
                    return  # (idem)
                continue
            except (OSError, ValueError):
                return  # (idem)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                os.close(fd)
                who = "this process" if holder == str(os.getpid()) else f"process {holder or '?'}"
                raise RecordError(
                    f"{self.cassette} is being recorded by another recorder ({who}); two "
                    "recorders cannot write one cassette: wait for it to finish, or record to "
                    "another file"
                ) from None
            # The previous holder may have removed the file between our open and our lock.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            # While still locked, so whoever opens it next makes a new one; and only our
            # own (its directory may have been removed and another recorder made a new one).
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


class _connect(connect):
    """websockets' ``connect`` that never follows a redirect.

    websockets follows a 3xx to another origin with the same headers, the client's
    ``Authorization`` included; the proxy passes the redirect back to the client instead.
    """

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


# The loggers of a recorder: every line they log is redacted first.
_LOGGERS = ("rtreplay.recorder", "rtreplay.recorder.websockets")


class _RedactingFilter(logging.Filter):
    """Removes a recorder's secrets from each log line (message, arguments, traceback)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        text = self.redactor.text
        message = record.getMessage()
        redacted = text(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, ()
        if record.exc_info:
            record.exc_text = text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = text(record.exc_text)
        return True


def _text(value: str) -> str:
    """A header value websockets decoded with surrogate escapes, as valid text."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


async def _close_unused(upstream: TapClientConnection) -> None:
    """Close an upstream connection that was never relayed (its reading was paused)."""
    upstream.transport.resume_reading()
    await upstream.close(1001)


def _is_upgrade(request: Request) -> bool:
    """Whether a request asks for a WebSocket (what websockets checks after process_request)."""
    tokens = {t.strip().lower() for v in request.headers.get_all("Connection") for t in v.split(",")}
    return (
        "upgrade" in tokens
        and request.headers.get("Upgrade", "").strip().lower() == "websocket"
        and "Sec-WebSocket-Key" in request.headers
    )


def _forward_headers(raw: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's end-to-end headers, to send on to the upstream."""
    raw = list(raw)
    named = {
        token.strip().lower()
        for name, value in raw
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(n, v) for n, v in raw if n.lower() not in HOP_BY_HOP and n.lower() not in named]


def _connect_options(url: str, upstream_ssl: ssl.SSLContext | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if url.startswith("wss:") and upstream_ssl is not None:
        options["ssl"] = upstream_ssl
    # websockets 15 reads HTTP(S)_PROXY from the environment by default; a recorder talks
    # to the upstream it was given, directly.
    if "proxy" in inspect.signature(connect).parameters:
        options["proxy"] = None
    return options


def _public(url: str) -> str:
    """A URL without userinfo or query (which may carry keys), fit for a log line."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- the CLI ----------------------------------------------------------------------------------


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rtreplay record``."""
    parser.add_argument("--out", "-o", required=True, metavar="CASSETTE", help="cassette file to write (.jsonl)")
    parser.add_argument(
        "--upstream", default=None, metavar="URL",
        help=f"Realtime API base URL to relay to (default: $RTREPLAY_UPSTREAM or {DEFAULT_UPSTREAM})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one (default: 8765)")
    parser.add_argument(
        "--open-timeout", type=float, default=10.0, metavar="SECONDS",
        help="how long the upstream may take to accept a connection (default: 10)",
    )
    parser.add_argument(
        "--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
        help="close a connection after this long without a frame either way; 0 never "
        f"(default: {DEFAULT_IDLE_TIMEOUT:g})",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no live status lines")
    parser.add_argument(
        "--audio", choices=("inline", "files"), default="inline",
        help="inline: audio inside the cassette, one self-contained file (default); files: "
        "audio in rtreplay-audio/ beside it (cassette format 2, a small readable diff)",
    )
    parser.add_argument(
        "--event-hook", default=None, metavar="MODULE:FUNCTION",
        help="a redaction hook called as FUNCTION(event, direction) with every decoded JSON "
        "event, returning the event to keep (docs/redaction.md); MODULE is imported from the "
        "current directory too",
    )


def record_main(args: argparse.Namespace) -> int:
    """``rtreplay record``: run the proxy until Ctrl-C or SIGTERM, then finish the cassette."""
    status = _Status(sys.stderr, quiet=args.quiet)
    status.setFormatter(logging.Formatter("rtreplay record: %(message)s"))
    logger.addHandler(status)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        return asyncio.run(_record(args, status))
    finally:
        logger.removeHandler(status)
        logger.setLevel(level)
        logger.propagate = propagate


def _event_hook(spec: str) -> EventHook:
    """The callable ``MODULE:FUNCTION`` names (``ValueError`` saying why not)."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"--event-hook {spec!r}: expected MODULE:FUNCTION, e.g. myhooks:drop_user_text")
    if os.getcwd() not in sys.path:  # a hook beside the project, as `python -m` would find it
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # its import runs the user's code: whatever it raises
        raise ValueError(f"--event-hook {spec!r}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    hook = module
    for part in name.split("."):
        if not hasattr(hook, part):
            raise ValueError(f"--event-hook {spec!r}: {module_name} has no {name}")
        hook = getattr(hook, part)
    if not callable(hook):
        raise ValueError(f"--event-hook {spec!r}: {name} is a {type(hook).__name__}, not a function")
    return cast(EventHook, hook)


async def _record(args: argparse.Namespace, status: _Status) -> int:
    try:
        hook = _event_hook(args.event_hook) if args.event_hook else None
        recorder = Recorder(
            args.out,
            upstream=args.upstream,
            host=args.host,
            port=args.port,
            open_timeout=args.open_timeout,
            idle_timeout=args.idle_timeout or None,
            keep_received=False,  # nobody can look at it, and a long run would pile it up
            audio=args.audio,
            redactor=Redactor(event_hook=hook) if hook is not None else None,
        )
    except ValueError as exc:  # a bad --upstream (or $RTREPLAY_UPSTREAM), --port, timeout or hook
        print(f"rtreplay record: error: {exc}", file=sys.stderr, flush=True)
        return 2
    if not recorder.api_key:
        logger.warning("OPENAI_API_KEY is not set: each client must send its own key")
    await recorder.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _stopper(stop, sig))
    print(
        f"Recording to {args.out}. Point your client at websocket_base_url={recorder.websocket_base_url}"
        f" (full URL: {recorder.url}?model=...). Ctrl-C to finish.",
        flush=True,
    )
    if not is_loopback(args.host):
        logger.warning(
            "listening on %s, reachable from other machines (and their clients' keys pass through "
            "this proxy); use --host 127.0.0.1 to keep it local",
            args.host,
        )
    status.recorder = recorder
    display = asyncio.create_task(status.run(stop))
    await stop.wait()
    await display
    logger.info("stopping: closing %d live connection(s)", len(recorder._relays))
    try:
        await recorder.close()
    finally:
        for sig in _STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0


# Ctrl-C, kill, and the terminal going away (SIGHUP) all finish the cassette.
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _stopper(stop: asyncio.Event, sig: int) -> Any:
    def on_signal() -> None:
        if not stop.is_set():
            logger.info("%s: finishing the cassette", signal.Signals(sig).name)
        stop.set()

    return on_signal


class _Status(logging.Handler):
    """Log lines, plus one live line per open connection redrawn in place on a terminal.

    Off a terminal only the log lines are written: one when a connection opens, one with
    its totals when it ends.
    """

    def __init__(self, out: Any, quiet: bool = False) -> None:
        super().__init__()
        self.out = out
        self.live = bool(getattr(out, "isatty", lambda: False)()) and not quiet
        self.recorder: Recorder | None = None
        self.drawn = 0

    async def run(self, stop: asyncio.Event) -> None:
        while self.live and not stop.is_set():
            self.redraw()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        self.clear()

    def clear(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def redraw(self) -> None:
        self.clear()
        if self.recorder is not None:
            for stats in self.recorder.stats:
                if stats.ended is None:
                    self.out.write(stats.summary() + "\n")
                    self.drawn += 1
        self.out.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.clear()
            self.out.write(self.format(record) + "\n")
            if self.live:
                self.redraw()
            self.out.flush()
        except Exception:  # pragma: no cover - logging must not break the proxy
            self.handleError(record)
