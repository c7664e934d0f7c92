"""The cassette format, version 1: its records as msgspec Structs. No I/O here.

A cassette is a JSON Lines file. Its first line is a :class:`Header`; then, for each
connection, an :class:`Open` record (the handshake), its :class:`Frame` records in order,
and a :class:`Close` record, or a :class:`Reject` record when the handshake was refused.
Records of concurrent connections may interleave; each carries its connection number
``conn``. ``docs/cassette-format.md`` is the full specification.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

import msgspec

from ._version import __version__

__all__ = [
    "FORMAT_VERSION",
    "Cassette",
    "Close",
    "Connection",
    "Direction",
    "Frame",
    "Header",
    "Open",
    "Protocol",
    "Record",
    "Reject",
    "json_raw",
    "utc_timestamp",
]

FORMAT_VERSION = 1

Direction = Literal["client", "server"]
Protocol = Literal["ga", "beta"]
Closer = Literal["client", "server"]


class Header(msgspec.Struct, frozen=True, tag="header", tag_field="kind"):
    """First line of every cassette: which format, written by which rtreplay."""

    format: int = FORMAT_VERSION
    rtreplay: str = __version__
    created: str | None = None


class Open(msgspec.Struct, frozen=True, tag="open", tag_field="kind"):
    """A connection's handshake, with secrets already removed."""

    conn: int
    path: str = "/v1/realtime"
    query: dict[str, str] = {}
    protocol: Protocol = "ga"
    subprotocol: str | None = None
    headers: dict[str, str] = {}
    # Wall-clock start, ISO 8601 UTC; informative only (offsets use a monotonic clock).
    started: str | None = None


class Frame(msgspec.Struct, frozen=True, tag="frame", tag_field="kind"):
    """One WebSocket message, with exactly one of ``json``, ``text`` or ``binary`` set.

    ``json`` holds a text frame that was valid JSON, verbatim when it fitted on one line
    (so a replay is byte-identical) and re-encoded compactly otherwise. ``text`` holds any
    other text frame; ``binary`` a binary frame (base64 in the file).
    """

    conn: int
    t: float
    dir: Direction
    json: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    text: str | msgspec.UnsetType = msgspec.UNSET
    binary: bytes | msgspec.UnsetType = msgspec.UNSET

    @classmethod
    def from_message(cls, conn: int, t: float, dir: Direction, message: str | bytes) -> Frame:
        """Build the record for a message as a WebSocket library delivers it."""
        t = round(t, 6)
        if isinstance(message, str):
            raw = json_raw(message)
            if raw is None:
                return cls(conn, t, dir, text=message)
            return cls(conn, t, dir, json=raw)
        return cls(conn, t, dir, binary=bytes(message))

    @property
    def is_text(self) -> bool:
        return self.binary is msgspec.UNSET

    def payload(self) -> str | bytes:
        """The message to send on replay: ``str`` for a text frame, ``bytes`` for binary."""
        if self.json is not msgspec.UNSET:
            return bytes(self.json).decode()
        if self.text is not msgspec.UNSET:
            return self.text
        assert self.binary is not msgspec.UNSET
        return self.binary

    def payload_bytes(self) -> bytes:
        """The message's bytes as they go on the wire (UTF-8 for text)."""
        if self.json is not msgspec.UNSET:
            return bytes(self.json)
        if self.text is not msgspec.UNSET:
            return self.text.encode()
        assert self.binary is not msgspec.UNSET
        return self.binary

    def event(self) -> object:
        """The decoded JSON value of a JSON frame, else ``None``."""
        if self.json is msgspec.UNSET:
            return None
        return msgspec.json.decode(self.json)


class Close(msgspec.Struct, frozen=True, tag="close", tag_field="kind"):
    """How a connection ended: close code and reason, and which side closed first.

    ``code`` is ``1006`` (and ``by`` ``None``) when the connection dropped with no close
    frame.
    """

    conn: int
    t: float
    code: int | None = 1000
    reason: str = ""
    by: Closer | None = None


class Reject(msgspec.Struct, frozen=True, tag="reject", tag_field="kind", omit_defaults=True):
    """The upstream refused the handshake with an HTTP response; no frames follow."""

    conn: int
    t: float
    status: int
    headers: dict[str, str] = {}
    body: str = ""


Record = Header | Open | Frame | Close | Reject


def utc_timestamp(timespec: str = "seconds") -> str:
    """Now, as the format writes wall-clock times: ISO 8601 UTC with a ``Z``."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


def json_raw(text: str) -> msgspec.Raw | None:
    """``text`` as a Raw JSON value that fits on one line, or ``None`` if it is not JSON.

    Compact JSON is kept byte for byte. JSON that spans lines is re-encoded compactly:
    Raw is written unchecked, and a newline in it would split the record.
    """
    data = text.encode()
    try:
        raw = msgspec.json.decode(data, type=msgspec.Raw)
    except (msgspec.DecodeError, ValueError, RecursionError):
        # Nested deeper than a reader can follow: kept as text, which replays the same.
        return None
    if b"\n" in data or b"\r" in data:
        return msgspec.Raw(msgspec.json.encode(msgspec.json.decode(data)))
    return raw


@dataclass
class Connection:
    """One connection of a cassette, assembled from its records."""

    open: Open
    frames: list[Frame] = field(default_factory=list)
    close: Close | None = None
    reject: Reject | None = None

    @property
    def index(self) -> int:
        return self.open.conn

    def client_frames(self) -> Iterator[Frame]:
        return (f for f in self.frames if f.dir == "client")

    def server_frames(self) -> Iterator[Frame]:
        return (f for f in self.frames if f.dir == "server")


@dataclass
class Cassette:
    """A whole cassette in memory: its header and its connections in order of opening."""

    header: Header = field(default_factory=Header)
    connections: list[Connection] = field(default_factory=list)
    path: str | None = None
    warnings: list[str] = field(default_factory=list)

    def records(self) -> Iterator[Record]:
        """The records to write for this cassette, connection after connection."""
        yield self.header
        for conn in self.connections:
            yield conn.open
            if conn.reject is not None:
                yield conn.reject
            yield from conn.frames
            if conn.close is not None:
                yield conn.close
