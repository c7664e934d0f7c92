"""Writing a burst of WebSocket messages with one system call.

``websockets``' own ``send()`` hands each frame to the transport separately, and an
asyncio socket transport with an empty buffer makes one ``send`` system call per
``write``: at tens of thousands of frames a second that call is a quarter of a relay's
time. Both the replay server and the recording proxy often hold several messages at once;
:func:`send_many` frames them all inside one ``send_context`` (what ``send()`` itself uses,
in websockets 14 to 17) and writes the bytes joined. Without ``send_context`` (a future
websockets), it falls back to ``send()`` per message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.datastructures import Headers

from .cassette import Protocol

__all__ = ["handshake_protocol", "offered_subprotocols", "send_many", "websockets_logger"]


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


class _OneLineHandshakeFailures(logging.Filter):
    """Turn websockets' "opening handshake failed" traceback into one readable line.

    A port scanner, a TLS hello sent to a ``ws://`` port or a plain HTTP request each make
    websockets log the failed handshake at ERROR with a traceback. The client got its answer
    (or nothing, as it deserved); the server is fine. One warning line says what came.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "opening handshake failed" and record.exc_info:
            exc = record.exc_info[1]
            cause = exc.__cause__ if exc is not None else None
            reason = f"{exc}" + (f": {cause}" if cause is not None else "")
            record.msg = "opening handshake failed: %s"
            record.args = (reason,)
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = "WARNING"
        return True


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
