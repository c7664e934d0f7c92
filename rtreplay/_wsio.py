"""websockets plumbing shared by the replay server and the recording proxy.

**Bursts in one system call.** ``websockets``' own ``send()`` hands each frame to the
transport separately, and an asyncio socket transport with an empty buffer makes one
``send`` system call per ``write``: at tens of thousands of frames a second that call is a
quarter of a relay's time. Both the replay server and the recording proxy often hold several messages at once;
:func:`send_many` frames them all inside one ``send_context`` (what ``send()`` itself uses,
in websockets 14 to 17) and writes the bytes joined. Without ``send_context`` (a future
websockets), it falls back to ``send()`` per message.

**Frames that skip recv() and send().** A proxy has no use for websockets' message queue:
per message, ``recv()`` costs an assembler, a future and a task switch, and ``send()`` a
flow-control wait and a system call. :class:`TapServerConnection` and
:class:`TapClientConnection` hand the data frames of an open connection to a callback as
the protocol parses them, all those of one socket read together, so the proxy can record
and forward them in the same callback (:func:`forward_frames` writes them to the other hop
with one system call). Everything else stays websockets' own: it answers pings, runs the
closing handshake, and ``wait_closed()`` tells when a hop has ended. Flow control joins
the two hops: while a hop's write buffer is over its limit, the hop that feeds it is not
read from (asyncio's ``pause_writing`` / ``resume_writing``). ``process_event``,
``data_received`` and the protocol's ``send_*`` methods are the same in websockets 14 to 17.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import PayloadTooBig, SecurityError
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import Event, Side, State

from .cassette import Protocol
from .redact import Redactor

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets installed without its C extension
    from websockets.utils import apply_mask

__all__ = [
    "AnsweringServerConnection",
    "FramesCallback",
    "TapClientConnection",
    "TapServerConnection",
    "forward_frames",
    "handshake_protocol",
    "offered_subprotocols",
    "send_many",
    "too_big",
    "websockets_logger",
]


def too_big(connection: Any, limit: int) -> str | None:
    """What made websockets close ``connection`` with 1009, in words; ``None`` if it did not.

    websockets fails a connection whose peer sends a message over ``max_size`` (``limit``
    bytes) with close code 1009 and keeps the :class:`~websockets.exceptions.PayloadTooBig`
    it raised in ``protocol.parser_exc``; the exception's type is checked, not its text.
    """
    exc = getattr(getattr(connection, "protocol", None), "parser_exc", None)
    if not isinstance(exc, PayloadTooBig):
        return None
    size = getattr(exc, "size", None)
    read = getattr(exc, "cur_size", None)
    of = f" of {size + (read or 0):,} bytes," if isinstance(size, int) else ""
    return f"a message{of} over the {limit / (1 << 20):g} MiB limit ({limit:,} bytes)"


def offered_subprotocols(headers: Headers) -> list[str]:
    """The subprotocols a handshake offers, in order (every ``Sec-WebSocket-Protocol``)."""
    offered: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        offered.extend(p.strip() for p in value.split(",") if p.strip())
    return offered


def handshake_protocol(headers: Headers, offered: Iterable[str]) -> Protocol:
    """``"beta"`` for ``OpenAI-Beta: realtime=v1`` (or its browser subprotocol), else ``"ga"``.

    The recorder writes it into the cassette and the replay server checks a client against
    it, so both must read a handshake the same way.
    """
    beta_header = ",".join(headers.get_all("OpenAI-Beta")).replace(" ", "")
    if "realtime=v1" in beta_header or "openai-beta.realtime-v1" in offered:
        return "beta"
    return "ga"


async def send_many(
    ws: Connection, messages: Iterable[tuple[bytes | str, bool]], max_bytes: int = 64 * 1024
) -> int:
    """Send ``(data, is_text)`` messages in order; return how many were sent.

    Messages are written together up to ``max_bytes`` at a time, and websockets' flow
    control (the wait for the buffer to drain) runs between such writes, so a client that
    stops reading never makes us buffer much more than ``max_bytes``.
    """
    context: Any = getattr(ws, "send_context", None)
    protocol: Any = getattr(ws, "protocol", None)
    if context is None or protocol is None or not hasattr(protocol, "data_to_send"):
        count = 0
        for data, text in messages:
            await ws.send(data, text=text)
            count += 1
        return count
    count = 0
    pending = iter(messages)
    more = True
    while more:
        more = False
        size = 0
        async with context():
            for data, text in pending:
                if isinstance(data, str):
                    data = data.encode()
                if text:
                    protocol.send_text(data)
                else:
                    protocol.send_binary(data)
                count += 1
                size += len(data)
                if size >= max_bytes:
                    more = True
                    break
            _write_joined(ws, protocol.data_to_send())
    return count


def _write_joined(ws: Any, chunks: list[bytes]) -> None:
    """Write pending protocol output as ``send_data`` does, but joined into one write."""
    transport = ws.transport
    pending: list[bytes] = []
    for data in chunks:
        if data:
            pending.append(data)
            continue
        # An empty chunk asks for a TCP half-close (after a close frame): flush, then do it.
        if pending:
            transport.write(b"".join(pending))
            pending = []
        if transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):  # as websockets does
                transport.write_eof()
        else:  # pragma: no cover - TLS cannot half-close
            transport.close()
    if pending:
        transport.write(pending[0] if len(pending) == 1 else b"".join(pending))


FramesCallback = Callable[[list[Frame]], None]
_DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})

# The mixin below extends websockets' Connection; at run time it must come before
# ServerConnection or ClientConnection in the bases, so it derives from object.
if TYPE_CHECKING:
    _TapBase = Connection
else:
    _TapBase = object


class _Tap(_TapBase):
    """Hand an open connection's data frames to a callback instead of ``recv()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[Frame] = []  # frames parsed before tap(), or during one read
        self.on_frames: FramesCallback | None = None
        self.feeder: Connection | None = None

    def tap(self, on_frames: FramesCallback, feeder: Connection) -> None:
        """Give data frames to ``on_frames`` from now on (those held so far first).

        ``feeder`` is the connection whose frames this one is sent: it is not read from
        while this connection's write buffer is full.
        """
        self.on_frames = on_frames
        self.feeder = feeder
        self.transport.resume_reading()  # the owner may have paused it until now
        if self.held:
            frames, self.held = self.held, []
            on_frames(frames)

    def process_event(self, event: Event) -> None:
        if type(event) is Frame and event.opcode in _DATA_OPCODES:
            self.held.append(event)
        else:  # the handshake, ping, pong, close: websockets' own business
            super().process_event(event)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.held and self.on_frames is not None:
            frames, self.held = self.held, []
            self.on_frames(frames)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.feeder is not None:
            gate_reading(self.feeder, "peer", paused=True)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.feeder is not None:
            gate_reading(self.feeder, "peer", paused=False)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.feeder is not None:  # nothing will drain here any more: let it read on
            gate_reading(self.feeder, "peer", paused=False)


# The longest request line and header line websockets reads (http11.MAX_LINE_LENGTH).
_MAX_LINE = 8192
_HTTP_LINE = re.compile(rb"([A-Z]{3,10}) (\S+) (HTTP/\d\.\d)\r?$")


class AnsweringServerConnection(ServerConnection):
    """A server connection that answers a handshake it cannot read with an HTTP error.

    websockets closes the connection without a word when a request fails to parse (HTTP/1.0,
    a line over 8 KiB, over 128 headers, a method other than GET). A client then sees only
    a closed socket; this says what was wrong, as a 4xx or 505. What the request was is
    read here from its first bytes (websockets' exception texts are not relied on). Bytes
    that are not HTTP at all (a TLS hello) still get no answer. It also stops reading from a
    client while the answers to it cannot be written (its pongs, for a client that pings
    and never reads): no more than one read's worth of them is ever buffered.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head: bytes | None = b""
        protocol = self.protocol
        send_eof = protocol.send_eof

        def answer_then_eof() -> None:
            protocol.send_eof = send_eof  # type: ignore[method-assign]
            answer = self._bad_request() if protocol.state is State.CONNECTING else None
            if answer is None:
                send_eof()
            else:  # send_response() ends with the EOF itself
                protocol.send_response(answer)

        protocol.send_eof = answer_then_eof  # type: ignore[method-assign]

    def data_received(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            if self.protocol.state is State.CONNECTING and len(head) <= _MAX_LINE:
                self._head = head + data[: _MAX_LINE + 2 - len(head)]
            else:
                self._head = None
        super().data_received(data)

    def _bad_request(self) -> Response | None:
        exc = self.protocol.handshake_exc
        # (websockets 15+ wraps the parser's exception in InvalidMessage; 14.1 does not.)
        cause = (exc.__cause__ or exc) if exc is not None else None
        head = self._head or b""
        if cause is None or isinstance(cause, EOFError) or not head:
            return None
        line, crlf, _ = head.partition(b"\n")
        match = _HTTP_LINE.match(line)
        if not crlf and len(line) > _MAX_LINE:
            status, text = 414, f"the request line is over {_MAX_LINE} bytes; send a shorter URL"
        elif match is None:
            return None  # not HTTP: nobody to answer
        elif not match.group(2).isascii():
            status, text = 400, "the request target holds bytes that are not ASCII; percent-encode them"
        elif match.group(1) != b"GET":
            status, text = 405, f"a WebSocket handshake is a GET, not {match.group(1).decode()}"
        elif match.group(3) != b"HTTP/1.1":
            status, text = 505, f"a WebSocket handshake needs HTTP/1.1, not {match.group(3).decode()}"
        elif isinstance(cause, SecurityError):
            status, text = 431, (
                f"a header line is over {_MAX_LINE} bytes, or there are over 128 headers"
            )
        else:
            status, text = 400, "the request's headers cannot be read (a malformed header line?)"
        response = self.protocol.reject(status, f"rtreplay: {text}\n")
        if status == 405:
            response.headers["Allow"] = "GET"
        return response

    def pause_writing(self) -> None:
        super().pause_writing()
        gate_reading(self, "own", paused=True)

    def resume_writing(self) -> None:
        super().resume_writing()
        gate_reading(self, "own", paused=False)


def gate_reading(connection: Connection, reason: str, *, paused: bool) -> None:
    """Pause reading from ``connection`` while any reason holds (its own full write
    buffer, or that of the hop it feeds); resume when none does."""
    reasons: set[str] = connection.__dict__.setdefault("_read_paused_for", set())
    if paused:
        reasons.add(reason)
        connection.transport.pause_reading()
    else:
        reasons.discard(reason)
        if not reasons:
            connection.transport.resume_reading()


class TapServerConnection(_Tap, AnsweringServerConnection):
    """A server-side connection whose data frames go to :meth:`tap`'s callback."""


class TapClientConnection(_Tap, ClientConnection):
    """A client-side connection whose data frames go to :meth:`tap`'s callback."""


def forward_frames(ws: Connection, frames: Sequence[Frame]) -> None:
    """Send frames as they came (fragments stay fragments) with one write.

    The connection must be open and between messages (a fragmented message goes whole);
    the caller checks ``ws.protocol.state``. Without extensions (no permessage-deflate),
    frames are framed here as RFC 6455 lays them out: ``Protocol.send_text`` costs ~5 µs
    a frame in Python, this a tenth of it. The client side masks each frame, as it must.
    """
    protocol = ws.protocol
    if protocol.extensions:
        for frame in frames:
            opcode = frame.opcode
            if opcode is Opcode.TEXT:
                protocol.send_text(frame.data, frame.fin)  # type: ignore[arg-type]
            elif opcode is Opcode.BINARY:
                protocol.send_binary(frame.data, frame.fin)  # type: ignore[arg-type]
            else:
                protocol.send_continuation(frame.data, frame.fin)  # type: ignore[arg-type]
        _write_joined(ws, protocol.data_to_send())
        return
    out = protocol.data_to_send()  # anything websockets queued (none, normally) goes first
    # (An empty chunk would mean "half-close" to _write_joined: empty payloads add nothing.)
    if protocol.side is Side.CLIENT:
        masks = os.urandom(4 * len(frames))
        for i, frame in enumerate(frames):
            mask = masks[4 * i : 4 * i + 4]
            out.append(_header(frame, 0x80) + mask)
            if frame.data:
                out.append(apply_mask(frame.data, mask))  # type: ignore[arg-type]
    else:
        for frame in frames:
            out.append(_header(frame, 0))
            if frame.data:
                out.append(frame.data)  # type: ignore[arg-type]
    _write_joined(ws, out)


def _header(frame: Frame, mask_bit: int) -> bytes:
    first = (0x80 if frame.fin else 0) | frame.opcode.value
    length = len(frame.data)
    if length < 126:
        return _BYTE2.pack(first, mask_bit | length)
    if length < 65536:
        return _HEADER16.pack(first, mask_bit | 126, length)
    return _HEADER64.pack(first, mask_bit | 127, length)


_BYTE2 = struct.Struct("!BB")
_HEADER16 = struct.Struct("!BBH")
_HEADER64 = struct.Struct("!BBQ")


_TARGET = re.compile(r"/\S*\?\S*")
_redactor = Redactor()


class _OneLineHandshakeFailures(logging.Filter):
    """Turn websockets' traceback for a failed opening handshake into one readable line.

    A port scanner, a TLS hello sent to a ``ws://`` port or a plain HTTP request each make
    websockets log the failed handshake at ERROR with a traceback. The client got its answer
    (or nothing, as it deserved); the server is fine. One warning line says what came.

    Such a record is told apart by facts, never by the wording of websockets' message or
    exception (versions change both; 14.1 raises a bare ``ValueError`` where 15 raises
    ``InvalidMessage``): it carries an exception, its connection never completed the
    handshake (no ``101`` response), and the exception was not raised in rtreplay's own
    code, which would be a bug of ours and keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or _opened(record) or _raised_in_rtreplay(exc):
            return True
        cause = exc.__cause__
        reason = f"{type(exc).__name__}: {exc}" + (f" ({cause})" if cause is not None else "")
        # A request line quoted back may carry a key in its query (?api-key=...).
        reason = _TARGET.sub(lambda m: _redactor.target(m.group()), reason)
        record.msg = "a client's opening handshake failed, its connection was dropped: %s"
        record.args = (reason,)
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = "WARNING"
        return True


def _opened(record: logging.LogRecord) -> bool:
    """Whether the record's connection completed its opening handshake."""
    connection = getattr(record, "websocket", None)  # websockets' logger adapter adds it
    response = getattr(connection, "response", None)
    return getattr(response, "status_code", None) == 101


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _raised_in_rtreplay(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is in rtreplay's own code."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep)


def websockets_logger(name: str) -> logging.Logger:
    """The logger to give a websockets server: handshake failures in one line."""
    log = logging.getLogger(name)
    # websockets' DEBUG output prints every request header, credentials included, and
    # every frame: it never turns on because someone debugs the "rtreplay" logger.
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    if not any(isinstance(f, _OneLineHandshakeFailures) for f in log.filters):
        log.addFilter(_OneLineHandshakeFailures())
    return log
