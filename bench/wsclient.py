"""A lean WebSocket client for the benchmarks, so that the client is never what is measured.

A ``websockets`` client parses every frame with a generator and queues each message; on a
2-core machine it is about as slow as the server it measures, which would pull every ratio
towards 1. This client writes pre-masked frames with one ``sendall`` and only walks the
headers of the (unmasked) server frames it receives. It speaks just enough RFC 6455 for
the bench: one handshake, text frames, ping/pong, the closing handshake.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

from websockets.frames import Frame, Opcode

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 1, 2, 8, 9, 10

__all__ = ["BlockingClient", "FrameReader", "async_connect", "close_frame", "text_frame"]


def text_frame(payload: bytes) -> bytes:
    """A masked client text frame carrying ``payload`` (UTF-8 JSON)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=True)


def close_frame(code: int = 1000) -> bytes:
    return Frame(Opcode.CLOSE, code.to_bytes(2, "big")).serialize(mask=True)


def text_frames(payloads: Iterable[bytes]) -> bytes:
    return b"".join(text_frame(p) for p in payloads)


class FrameReader:
    """Splits the bytes a server sends into frames (Sans-I/O).

    ``feed`` returns ``(opcode, payload)`` pairs; when ``keep`` is false a data frame's
    payload is replaced by its length, so counting a million frames copies nothing.
    """

    __slots__ = ("buf", "keep")

    def __init__(self, keep: bool = False) -> None:
        self.buf = bytearray()
        self.keep = keep

    def feed(self, data: bytes) -> list[tuple[int, bytes | int]]:
        buf = self.buf
        buf += data
        n = len(buf)
        pos = 0
        out: list[tuple[int, bytes | int]] = []
        keep = self.keep
        while n - pos >= 2:
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if b1 & 0x80:
                raise ValueError("the server sent a masked frame")
            end = pos + head + length
            if end > n:
                break
            op = buf[pos] & 0x0F
            if keep or op >= 8:
                out.append((op, bytes(buf[pos + head : end])))
            else:
                out.append((op, length))
            pos = end
        del buf[:pos]
        return out


def _handshake(url: str, headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    assert parts.scheme == "ws", "the bench only speaks ws:// on loopback"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode()


def _check_response(head: bytes, url: str) -> None:
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise ConnectionError(f"{url}: handshake refused: {status.decode(errors='replace')}")


# A key-shaped credential, so the recorder does its redaction work as it would for real.
BENCH_KEY = "sk-bench-0123456789abcdef"


def _headers(extra: dict[str, str] | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {BENCH_KEY}"}
    headers.update(extra or {})
    return headers


class BlockingClient:
    """One connection with a blocking socket: the cheapest client Python can be."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        keep: bool = False,
        timeout: float = 60.0,
    ) -> None:
        host, port, request = _handshake(url, _headers(headers))
        self.url = url
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"{url}: connection closed during the handshake")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        _check_response(head, url)
        self.reader = FrameReader(keep)
        self.pending: list[tuple[int, bytes | int]] = self.reader.feed(rest)
        self.close_code: int | None = None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frames(self) -> Iterator[tuple[int, bytes | int]]:
        """Data frames as they arrive, until the server's close frame (answered)."""
        sock, reader = self.sock, self.reader
        while True:
            batch, self.pending = self.pending, []
            for op, payload in batch:
                if op < 8:
                    yield op, payload
                elif op == OP_CLOSE:
                    assert isinstance(payload, bytes)
                    self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
                    self._answer_close()
                    return
                elif op == OP_PING:
                    assert isinstance(payload, bytes)
                    sock.sendall(Frame(Opcode.PONG, payload).serialize(mask=True))
            chunk = sock.recv(1 << 20)
            if not chunk:
                self.close_code = 1006
                return
            self.pending = reader.feed(chunk)

    def _answer_close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(close_frame(1000))
        self.sock.close()

    def close(self) -> None:
        """Start the closing handshake and wait (briefly) for the server's close frame."""
        if self.sock.fileno() < 0:
            return
        try:
            self.sock.sendall(close_frame(1000))
            self.sock.settimeout(5)
            for _ in self.frames():
                pass
        except OSError:
            pass
        finally:
            self.sock.close()


class AsyncClient:
    """The same client on asyncio streams, for many connections at once."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rest: bytes, keep: bool
    ):
        self.stream = reader
        self.writer = writer
        self.reader = FrameReader(keep)
        self.pending = self.reader.feed(rest)
        self.close_code: int | None = None

    async def next_frames(self) -> list[tuple[int, bytes | int]] | None:
        """The data frames of the next chunk read (perhaps none), or None once closed."""
        while True:
            batch, self.pending = self.pending, []
            out = []
            for op, payload in batch:
                if op < 8:
                    out.append((op, payload))
                elif op == OP_CLOSE:
                    assert isinstance(payload, bytes)
                    self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
                    self.writer.write(close_frame(1000))
                    self.writer.close()
                    return out or None
                elif op == OP_PING:
                    assert isinstance(payload, bytes)
                    self.writer.write(Frame(Opcode.PONG, payload).serialize(mask=True))
            if out:
                return out
            if self.close_code is not None:
                return None
            chunk = await self.stream.read(1 << 20)
            if not chunk:
                self.close_code = 1006
                return None
            self.pending = self.reader.feed(chunk)

    async def close(self) -> None:
        if self.close_code is None:
            self.writer.write(close_frame(1000))
            try:
                while await asyncio.wait_for(self.next_frames(), 5) is not None:
                    pass
            except (asyncio.TimeoutError, OSError):
                pass
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def async_connect(
    url: str, *, headers: dict[str, str] | None = None, keep: bool = False
) -> AsyncClient:
    host, port, request = _handshake(url, _headers(headers))
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.write(request)
    data = await reader.readuntil(b"\r\n\r\n")
    _check_response(data, url)
    return AsyncClient(reader, writer, b"", keep)


def now() -> float:
    return time.perf_counter()
