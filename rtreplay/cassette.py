"""The cassette format, versions 1 and 2: its records as msgspec Structs. No I/O here.

A cassette is a JSON Lines file. Its first line is a :class:`Header`; in version 2, the
:class:`AudioFile` records that declare the audio files its frames refer to; then, for each
connection, an :class:`Open` record (the handshake), its :class:`Frame` records in order,
and a :class:`Close` record, or a :class:`Reject` record when the handshake was refused.
Records of concurrent connections may interleave; each carries its connection number
``conn``. ``docs/cassette-format.md`` is the full specification.

Version 2 differs in two things. The base64 audio of an audio event (``audio`` of
``input_audio_buffer.append``, ``delta`` of ``response.output_audio.delta``...) may be kept
out of line, decoded, in a content-addressed file beside the cassette; the frame's JSON
then holds ``""`` in its place and an :class:`AudioRef` says where its audio bytes are.
And :class:`HttpExchange` records may come anywhere after the header: the HTTP calls a
Realtime app makes beside its WebSocket connections (``POST /v1/realtime/client_secrets``).
A cassette declares the lowest format that holds its records.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

import msgspec

from ._version import __version__

__all__ = [
    "AUDIO_FILES_FORMAT",
    "FORMAT_VERSION",
    "FORMAT_VERSIONS",
    "HTTP_FORMAT",
    "AudioFile",
    "AudioRef",
    "Cassette",
    "Close",
    "Connection",
    "Direction",
    "Frame",
    "Header",
    "HttpExchange",
    "HttpRequest",
    "HttpResponse",
    "Open",
    "Protocol",
    "Record",
    "Reject",
    "http_body",
    "json_raw",
    "utc_timestamp",
]

#: The format a cassette with its audio inline is written in (every format-1 reader reads it).
FORMAT_VERSION = 1
#: The format of a cassette whose audio lives in files beside it.
AUDIO_FILES_FORMAT = 2
#: The format a cassette holding :class:`HttpExchange` records declares: format 2 is format 1
#: plus out-of-line audio and HTTP exchanges (a reader of format 1 refuses it with its
#: version error instead of meeting an unknown record).
HTTP_FORMAT = 2
#: Every format this rtreplay reads.
FORMAT_VERSIONS = (1, 2)

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


class AudioFile(msgspec.Struct, frozen=True, tag="audio", tag_field="kind"):
    """Format 2: an audio file the cassette's frames refer to, declared after the header.

    ``path`` is relative to the cassette's directory (``rtreplay-audio/<sha256>.raw``),
    ``sha256`` the hex digest of its contents, ``bytes`` its size. It holds the frames'
    audio (one connection's, one direction's), decoded from base64, end to end: headerless
    audio in the session's format (PCM16 or G.711).
    """

    id: str
    path: str
    sha256: str
    bytes: int


class AudioRef(msgspec.Struct, frozen=True):
    """Format 2: where a frame's audio is, out of line.

    The frame's JSON holds the empty string ``""`` as the value of its top-level ``field``;
    the message is that JSON with the base64 (standard alphabet, padded, one line) of the
    ``length`` audio bytes at ``offset`` of the file declared as ``file`` put between those
    quotes.
    """

    file: str
    field: str
    offset: int
    length: int


class Frame(msgspec.Struct, frozen=True, tag="frame", tag_field="kind"):
    """One WebSocket message, with exactly one of ``json``, ``text`` or ``binary`` set.

    ``json`` holds a text frame that was valid JSON, verbatim when it fitted on one line
    (so a replay is byte-identical) and re-encoded compactly otherwise. ``text`` holds any
    other text frame; ``binary`` a binary frame (base64 in the file). In format 2 a JSON
    frame may keep its audio out of line (``audio``, see :class:`AudioRef`); the reader
    puts it back unless asked not to, so ``payload()`` is always the message as it was sent.
    """

    conn: int
    t: float
    dir: Direction
    audio: AudioRef | msgspec.UnsetType = msgspec.UNSET
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


class HttpRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """An HTTP request: the live one a server answers, or a recorded one (credentials
    redacted). ``json`` holds a body that was JSON (compact, one line), ``text`` any other."""

    method: str
    path: str
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    json: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    text: str | msgspec.UnsetType = msgspec.UNSET

    def body(self) -> bytes:
        """The body's bytes (empty when there is none)."""
        return _body(self.json, self.text)


class HttpResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    """An HTTP response; its body as in :class:`HttpRequest`."""

    status: int
    headers: dict[str, str] = {}
    json: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    text: str | msgspec.UnsetType = msgspec.UNSET

    def body(self) -> bytes:
        """The body's bytes (empty when there is none)."""
        return _body(self.json, self.text)


def _body(json: msgspec.Raw | msgspec.UnsetType, text: str | msgspec.UnsetType) -> bytes:
    if json is not msgspec.UNSET:
        return bytes(json)
    if text is not msgspec.UNSET:
        return text.encode()
    return b""


def http_body(data: bytes) -> tuple[msgspec.Raw | msgspec.UnsetType, str | msgspec.UnsetType]:
    """The ``(json, text)`` fields for a body as it came off the wire (both unset when empty)."""
    if not data:
        return msgspec.UNSET, msgspec.UNSET
    text = data.decode("utf-8", "replace")
    raw = json_raw(text)
    return (raw, msgspec.UNSET) if raw is not None else (msgspec.UNSET, text)


class HttpExchange(msgspec.Struct, frozen=True, tag="http", tag_field="kind"):
    """Format 2: an HTTP call beside the WebSocket connections, and its answer.

    ``n`` numbers the cassette's exchanges from 0, in order; ``started`` is the wall-clock
    time it was made (ISO 8601 UTC), from which a replay moves the response's time fields
    (``expires_at``); ``duration`` how long the upstream took (seconds). The response of a
    ``client_secrets`` call holds a placeholder (``ek_REDACTED``) where the secret was.
    """

    n: int
    request: HttpRequest
    response: HttpResponse
    started: str | None = None
    duration: float = 0.0


Record = Header | AudioFile | Open | Frame | Close | Reject | HttpExchange


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
    exchanges: list[HttpExchange] = field(default_factory=list)

    def records(self) -> Iterator[Record]:
        """The records to write for this cassette: the HTTP exchanges (which come before
        the connections they open), then connection after connection."""
        yield self.header
        yield from self.exchanges
        for conn in self.connections:
            yield conn.open
            if conn.reject is not None:
                yield conn.reject
            yield from conn.frames
            if conn.close is not None:
                yield conn.close
