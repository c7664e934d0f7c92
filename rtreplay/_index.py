"""A cassette indexed for replay: per frame only what matching and pacing need.

A cassette of an hour of audio can weigh hundreds of megabytes, nearly all of it base64 in
server frames. The index reads the file once and keeps, for each server frame, where its
payload lies in the file (offset and length), its recorded time and its ``type``; the
payload itself is read back with ``os.pread`` when the frame is due. Client frames keep
their decoded event, except the audio of ``input_audio_buffer.append``, of which only the
decoded length (and a running digest of the stream) is kept. An in-memory
:class:`~rtreplay.cassette.Cassette` is indexed the same way, its payloads kept as bytes.

While reading, each connection's events go through its endpoint profile's
:class:`~rtreplay.protocol.CauseTracker`, so that every server frame knows the client event
it waits for (its :class:`~rtreplay.protocol.Requirement`); its line in the file is kept
for reports.

A format-2 cassette keeps audio, decoded, in files beside it: a server frame whose audio is
there keeps its JSON around the audio (a few hundred bytes) and where its audio lies in
the audio file, and the message is put together (the JSON around the base64 of the audio)
when it is due, from one read of the file per run of frames. A client append's audio is
not even read unless audio content is compared: its length is in the reference.
"""

from __future__ import annotations

import binascii
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from sys import intern as _intern
from typing import IO, TYPE_CHECKING, Any

import msgspec

from .audiofiles import AudioStore, audio_position, encode_audio
from .cassette import Cassette, Close, Frame, Header, HttpExchange, Open, Reject
from .codec import CassetteReader, iter_lines
from .errors import CassetteChangedError, CassetteError
from .protocol import (
    AUDIO_APPEND,
    ECHOED_IDS,
    REALTIME,
    AudioFormat,
    Profile,
    Requirement,
    ServerInfo,
    audio_length,
    echoed_ids,
    profile_for,
    server_info,
)
from .volatile import has_time_fields, parse_wall_clock

if TYPE_CHECKING:
    from .timeline import Timeline

__all__ = [
    "AUDIO_APPEND",
    "ECHOED_IDS",
    "MAX_EVENT_DEPTH",
    "CassetteIndex",
    "ClientFrame",
    "IndexedConnection",
    "ServerFrame",
    "audio_length",
    "deeper_than",
    "echoed_ids",
    "file_identity",
    "hash_audio",
]

def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """Which file, at which content: device, inode, size in bytes, modification time (ns)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int, int, int]:
    """The identity of the file at ``path`` now (see :func:`_identity`); raises :class:`OSError`."""
    return _identity(os.stat(path))


def _changed(st: os.stat_result, identity: tuple[int, int, int, int]) -> bool:
    """Whether an open file's content may differ from ``identity`` (its size or mtime moved)."""
    return st.st_size != identity[2] or st.st_mtime_ns != identity[3]


# Payloads are read back in spans of at most this many bytes, so a burst of frames due at
# once costs one system call per span and never the whole connection in memory.
READ_SPAN = 1 << 20


def hash_audio(digest: Any, b64: str) -> None:
    """Feed an append's audio to ``digest``, as the recording's and the client's both are.

    The two digests are compared at each commit, so this is the one place that decides
    what is hashed: the decoded bytes, or the text itself when it is not valid base64
    (non-ASCII text from a bad client or a corrupted cassette).
    """
    try:
        digest.update(binascii.a2b_base64(b64))
    except ValueError:  # binascii.Error, or non-ASCII text
        digest.update(b64.encode())


_APPEND_EVENTS: dict[str, dict[str, Any]] = {AUDIO_APPEND: {"type": AUDIO_APPEND}}
_any_decoder = msgspec.json.Decoder()
_EMPTY_DIGEST = hashlib.blake2b(digest_size=16).digest()
# Shared until a connection has its own (never written to).
_NO_IDS: dict[str, int] = {}
_NO_CHOSEN: frozenset[str] = frozenset()
_NO_APPENDS: list[int] = []
_NO_HEADERS: dict[str, str] = {}
# Client events nested deeper than this are compared as text (Realtime events nest < 10):
# a comparison that deep would exhaust the stack.
MAX_EVENT_DEPTH = 100


def deeper_than(value: Any, limit: int) -> bool:
    """Whether a decoded JSON value nests deeper than ``limit`` (an iterative walk)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            return True
        if type(v) is dict:
            stack.extend((item, depth + 1) for item in v.values() if type(item) in (dict, list))
        elif type(v) is list:
            stack.extend((item, depth + 1) for item in v if type(item) in (dict, list))
    return False


def _slim(open: Open) -> Open:
    """The open record without what a replay does not use (headers, start time), its
    repeated parts shared: 200,000 connections share one ``"/v1/realtime"`` and one query."""
    items = tuple(open.query.items())
    query = _queries.get(items)
    if query is None:
        if len(_queries) >= 1024:
            _queries.clear()
        query = _queries[items] = {_intern(k): _intern(v) for k, v in items}
    return Open(open.conn, _intern(open.path), query, open.protocol, open.subprotocol, _NO_HEADERS, None)


# Queries already seen (never written to: a query is only read once indexed).
_queries: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
_NOT_RECORDED = Requirement(-1, True, "not recorded")


class ServerFrame:
    """A recorded server frame: when, what type, where its payload is, and what it waits for.

    ``index`` is its position among the connection's server frames (``-1`` for a frame
    the replay made up, such as an injected fault), ``line`` its line in the cassette file
    (``0`` when not read from a file), ``requirement`` the client event it waits for (see
    :class:`~rtreplay.protocol.Requirement`), ``times`` whether its payload holds a time
    field a replay may move (:mod:`rtreplay.volatile`). ``audio`` (format 2): where its
    audio is, see :meth:`CassetteIndex.payloads`.
    """

    __slots__ = (
        "audio",
        "data",
        "index",
        "length",
        "line",
        "pos",
        "requirement",
        "t",
        "text",
        "times",
        "type",
    )

    def __init__(
        self,
        t: float,
        text: bool,
        type: str | None,
        *,
        data: bytes | None = None,
        pos: int = -1,
        length: int = 0,
        index: int = -1,
        line: int = 0,
        requirement: Requirement = _NOT_RECORDED,
        audio: tuple[int, int, int, bytes, bytes] | None = None,
    ) -> None:
        self.t = t
        self.text = text
        self.type = type
        self.data = data
        self.pos = pos
        self.length = len(data) if data is not None else length
        self.index = index
        self.line = line
        self.requirement = requirement
        # Format 2: (audio file descriptor, offset and length of its audio bytes there,
        # the JSON before its base64, the JSON after it).
        self.audio = audio
        self.times = False

    def describe(self) -> str:
        return self.type or ("text frame" if self.text else "binary frame")

    def __repr__(self) -> str:
        return f"ServerFrame({self.index}, t={self.t}, type={self.type!r}, {self.length} bytes)"


class ClientFrame:
    """A recorded client frame, decoded (audio kept as its length only)."""

    __slots__ = (
        "audio_before",
        "audio_digest",
        "audio_end",
        "audio_len",
        "event",
        "ids",
        "index",
        "is_append",
        "line",
        "message",
        "t",
        "turn",
        "type",
    )

    def __init__(
        self,
        index: int,
        t: float,
        message: str | bytes | None,
        event: Any,
        line: int = 0,
        echoed: Any = ECHOED_IDS,
    ) -> None:
        self.index = index
        self.t = t
        self.line = line
        # ``message`` is kept only for frames that are not JSON (compared verbatim).
        self.message = message
        self.event = event
        kind = event.get("type") if isinstance(event, dict) else None
        self.type: str | None = kind if isinstance(kind, str) else None
        self.is_append = False
        self.audio_len = 0
        self.audio_end = 0  # cumulative decoded audio through this append
        self.audio_before = 0  # cumulative decoded audio before this (non-append) event
        self.audio_digest = b""  # digest of the audio since the previous non-append event
        self.turn = 1
        self.ids = echoed_ids(event, echoed)

    def describe(self) -> str:
        if self.type is not None:
            return self.type
        if self.message is not None:
            return "binary frame" if isinstance(self.message, bytes) else "text frame"
        return "event without a type"

    def __repr__(self) -> str:
        return f"ClientFrame({self.index}, t={self.t}, {self.describe()})"


class IndexedConnection:
    """One recorded connection as the player needs it.

    ``clients`` are the recorded client frames in order, ``server`` the recorded server
    frames in order, each with its :class:`~rtreplay.protocol.Requirement` (from the
    ``profile``'s cause table); ``introduced`` maps each ID the server handed out to the
    index of the first server frame that carried it; ``input_format`` is the input audio
    format the recording declared (24 kHz PCM unless a session said otherwise).
    """

    # A cassette may hold hundreds of thousands of short connections: each costs little.
    # (__weakref__: what replay features derive from a connection is kept beside it, in
    # weak dictionaries, only while the connection lives.)
    __slots__ = (
        "__weakref__",
        "_audio",
        "_causes",
        "_format_declared",
        "_hash",
        "_timeline",
        "_turn",
        "appends",
        "audio_total",
        "client_chosen",
        "clients",
        "close",
        "digests",
        "input_format",
        "introduced",
        "open",
        "profile",
        "recorded_at",
        "reject",
        "server",
        "tail_audio_digest",
    )

    def __init__(self, open: Open, digests: bool = True, profile: Profile | None = None) -> None:
        # When it was recorded (unix seconds), where replay-time shifting measures from
        # (unknown for a hand-written connection without ``started``: its times are kept).
        self.recorded_at = parse_wall_clock(open.started)
        # What a replay needs of the handshake (not its headers), its parts shared.
        self.open = _slim(open)
        self.digests = digests
        self.profile = profile or profile_for(open.path, open.query) or REALTIME
        self.reject: Reject | None = None
        self.close: Close | None = None
        self.clients: list[ClientFrame] = []
        self.server: list[ServerFrame] = []
        self.introduced: dict[str, int] = _NO_IDS  # made on the first ID
        # IDs a client used before any server frame carried them: chosen by the client.
        self.client_chosen: set[str] | frozenset[str] = _NO_CHOSEN
        self.tail_audio_digest = b""
        self.audio_total = 0
        self.input_format: AudioFormat = self.profile.input_format
        self.appends: list[int] = []  # indices of the audio appends among ``clients``
        self._timeline: Timeline | None = None
        # Build state.
        self._causes = self.profile.causes()
        self._format_declared = False
        self._turn = 1
        self._audio = 0
        self._hash: Any = None  # the audio digest, made on the first append

    @property
    def number(self) -> int:
        return self.open.conn

    @property
    def warning(self) -> str | None:
        """What to tell the user about this connection's endpoint (an unknown one), if anything."""
        if self.profile.warning is None:
            return None
        return f"connection {self.number}: " + self.profile.warning.format(path=self.open.path)

    @property
    def protocol(self) -> str:
        return self.open.protocol

    @property
    def server_count(self) -> int:
        return len(self.server)

    def _declare_format(self, fmt: AudioFormat | None) -> None:
        # The format in force when the audio starts (later changes are rare and ignored).
        if fmt is not None and (self._audio == 0 or not self._format_declared):
            self.input_format = fmt
            self._format_declared = True

    def _add_server(self, frame: ServerFrame, raw: bytes | memoryview | None) -> None:
        info = server_info(raw) if raw is not None else ServerInfo()
        frame.index = len(self.server)
        frame.type = _intern(info.type) if info.type is not None else None
        frame.requirement = self._causes.server(info)
        if raw is not None and info.type is not None:
            frame.times = has_time_fields(bytes(raw), self.profile.time_fields)
        if info.ids:
            if self.introduced is _NO_IDS:
                self.introduced = {}
            for v in info.ids:
                self.introduced.setdefault(v, frame.index)
        if info.session is not None:
            self._declare_format(self.profile.audio_format(info.session))
        self.server.append(frame)
        if frame.type is not None and frame.type == self.profile.response_done:
            self._turn += 1

    def is_append(self, event: Any) -> bool:
        """Whether ``event`` is this endpoint's client audio append."""
        append = self.profile.audio_append
        return append is not None and isinstance(event, dict) and event.get("type") == append

    def _add_client(
        self,
        t: float,
        message: str | bytes | None,
        event: Any,
        line: int = 0,
        stored: tuple[int, bytes | None] | None = None,
    ) -> None:
        # ``stored``: an append whose audio is in a file (format 2): its length in bytes,
        # and the bytes themselves when they are digested.
        audio: str | None = None
        if stored is not None:
            event.pop("audio", None)
        elif self.is_append(event) and isinstance(event.get("audio"), str):
            audio = event.pop("audio")
        frame = ClientFrame(len(self.clients), t, message, event, line, self.profile.echoed_ids)
        frame.turn = self._turn
        chosen = [v for v in frame.ids if v not in self.introduced]
        if chosen:
            if self.client_chosen is _NO_CHOSEN:
                self.client_chosen = set()
            self.client_chosen.update(chosen)  # type: ignore[union-attr]
        if audio is not None or stored is not None:
            frame.is_append = True
            if self.digests and self._hash is None:
                self._hash = hashlib.blake2b(digest_size=16)
            if audio is not None:
                frame.audio_len = audio_length(audio)
                if self.digests:
                    hash_audio(self._hash, audio)
            elif stored is not None:
                frame.audio_len = stored[0]
                if self.digests and stored[1] is not None:
                    self._hash.update(stored[1])
            self._audio += frame.audio_len
            frame.audio_end = self._audio
            kind = self.profile.audio_append
            if len(event) == 1 and kind is not None:
                # Thousands of appends: one shared {"type": ...} instead of one dict each.
                frame.event = _APPEND_EVENTS.setdefault(kind, {"type": kind})
        else:
            frame.audio_before = self._audio
            frame.audio_digest = self._hash.digest() if self._hash is not None else _EMPTY_DIGEST
            self._hash = None
            if isinstance(event, dict):
                self._declare_format(self.profile.audio_format(event.get("session")))
        self._causes.client(frame.index, event)
        self.clients.append(frame)

    def _finish(self) -> None:
        self.tail_audio_digest = self._hash.digest() if self._hash is not None else _EMPTY_DIGEST
        self.audio_total = self._audio
        self.appends = [c.index for c in self.clients if c.is_append] or _NO_APPENDS
        del self._hash
        del self._causes

    @property
    def timeline(self) -> Timeline:
        """A fresh copy of the recorded schedule (built once, its cues shared)."""
        if self._timeline is None:
            from .timeline import Timeline

            self._timeline = Timeline.of(self)
        return self._timeline.copy()

    def __repr__(self) -> str:
        return (
            f"IndexedConnection({self.number}, {len(self.clients)} client frames, "
            f"{self.server_count} server frames)"
        )


class _LineTap:
    """A file wrapper that remembers the last lines handed to the reader, by offset."""

    def __init__(self, file: IO[bytes], name: str) -> None:
        self._file = file
        self.name = name
        self.offset = 0
        self.lines: dict[int, bytes] = {}

    def __iter__(self) -> Iterator[bytes]:
        offset = 0
        for line in iter_lines(self._file, self.name):
            # The reader looks one line ahead: the record it yields is one of the last lines.
            if len(self.lines) >= 3:
                del self.lines[min(self.lines)]
            self.lines[offset] = line
            offset += len(line)
            yield line


class CassetteIndex:
    """A whole cassette indexed for replay, reading server payloads from the file on demand."""

    def __init__(
        self,
        header: Header,
        connections: list[IndexedConnection],
        *,
        path: str | None = None,
        warnings: list[str] | None = None,
        fd: int | None = None,
        exchanges: list[HttpExchange] | None = None,
    ) -> None:
        self.header = header
        self.connections = connections
        self.exchanges: list[HttpExchange] = exchanges or []
        self.path = path
        self.warnings = warnings or []
        self._fd = fd
        self._audio: AudioStore | None = None
        #: The file as it was when indexed (:func:`_identity`), ``None`` for an in-memory cassette.
        self.identity: tuple[int, int, int, int] | None = None

    # -- building ---------------------------------------------------------------------

    @classmethod
    def load(
        cls, source: str | os.PathLike[str] | Cassette | CassetteIndex, *, digests: bool = True
    ) -> CassetteIndex:
        """Index a cassette file, or an in-memory :class:`Cassette`.

        ``digests``: also digest the recorded audio (decoding its base64), which only a
        policy comparing audio content needs.
        """
        if isinstance(source, CassetteIndex):
            return source
        if isinstance(source, Cassette):
            return cls.from_cassette(source, digests=digests)
        return cls.from_path(source, digests=digests)

    @classmethod
    def from_cassette(cls, cassette: Cassette, *, digests: bool = True) -> CassetteIndex:
        connections: list[IndexedConnection] = []
        shared: dict[bytes, Any] = {}  # client events decoded once for all connections
        for conn in cassette.connections:
            ic = IndexedConnection(conn.open, digests)
            ic.reject = conn.reject
            ic.close = conn.close
            for frame in conn.frames:
                _index_frame(ic, frame, frame.payload_bytes() if frame.dir == "server" else None, shared)
            ic._finish()
            connections.append(ic)
        warnings = list(cassette.warnings) + [w for ic in connections if (w := ic.warning)]
        return cls(
            cassette.header,
            connections,
            path=cassette.path,
            warnings=warnings,
            exchanges=list(cassette.exchanges),
        )

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, digests: bool = True) -> CassetteIndex:
        p = Path(path)
        # The reader raises the well-explained errors (missing file, directory...).
        with CassetteReader(p) as probe:
            pass
        del probe
        file = open(p, "rb")  # noqa: SIM115 - kept open for pread while serving
        try:
            before = _identity(os.fstat(file.fileno()))
            tap = _LineTap(file, str(p))
            by_conn: dict[int, IndexedConnection] = {}
            shared: dict[bytes, Any] = {}  # client events decoded once for all connections
            exchanges: list[HttpExchange] = []
            reader = CassetteReader(tap, name=str(p), resolve_audio=False)  # type: ignore[arg-type]
            store = reader.audio
            try:
                for record in reader:
                    if isinstance(record, HttpExchange):
                        exchanges.append(record)
                    elif isinstance(record, Frame):
                        ic = by_conn[record.conn]
                        ref = record.audio
                        if record.dir == "server" and record.json is not msgspec.UNSET:
                            line = tap.lines[reader.offset]
                            raw = bytes(record.json)
                            start = _raw_offset(line, raw)
                            stored = None
                            if ref is not msgspec.UNSET:
                                at = audio_position(raw, ref.field)
                                assert at is not None  # the reader checked
                                stored = (store.fd(ref.file), ref.offset, ref.length, raw[:at], raw[at:])
                            frame = ServerFrame(
                                record.t,
                                True,
                                None,
                                pos=reader.offset + start,
                                length=len(raw),
                                line=reader.line,
                                audio=stored,
                            )
                            ic._add_server(frame, raw)
                        elif ref is not msgspec.UNSET and record.json is not msgspec.UNSET:
                            event = _any_decoder.decode(record.json)
                            if ic.is_append(event) and ref.field == "audio":
                                data = store.read(ref) if ic.digests else None
                                ic._add_client(record.t, None, event, reader.line, (ref.length, data))
                            else:
                                event[ref.field] = encode_audio(store.read(ref)).decode()
                                ic._add_client(record.t, None, event, reader.line)
                        else:
                            # Text and binary payloads are no larger in memory than in
                            # the file's JSON: kept, rather than located in the line.
                            payload = record.payload_bytes() if record.dir == "server" else None
                            _index_frame(ic, record, payload, shared, reader.line)
                    elif isinstance(record, Open):
                        by_conn[record.conn] = IndexedConnection(record, digests)
                    elif isinstance(record, Close):
                        ic = by_conn[record.conn]
                        ic.close = record
                        ic._finish()  # complete: its build state goes now, not at the end
                    elif isinstance(record, Reject):
                        ic = by_conn[record.conn]
                        ic.reject = record
                        ic._finish()
                assert reader.header is not None
                header = reader.header
                warnings = list(reader.warnings)
            except BaseException:
                store.close()
                raise
            finally:
                reader.close()
            for ic in by_conn.values():
                if ic.close is None and ic.reject is None:  # still open when recording stopped
                    ic._finish()
                if ic.warning is not None:
                    warnings.append(ic.warning)
            if _identity(os.fstat(file.fileno())) != before:
                store.close()
                raise CassetteError(
                    p, "changed on disk while it was being read (is it still being written?); "
                    "load it again once it is finished"
                )
            fd = os.dup(file.fileno())
        finally:
            file.close()
        index = cls(
            header, list(by_conn.values()), path=str(p), warnings=warnings, fd=fd, exchanges=exchanges
        )
        index._audio = store
        index.identity = before
        return index

    # -- the file on disk -------------------------------------------------------------

    def changed_on_disk(self) -> str | None:
        """How the file at :attr:`path` differs from the one indexed, in words; ``None`` if
        it does not (or for an in-memory cassette). One ``stat`` call."""
        if self.identity is None or self.path is None:
            return None
        try:
            now = file_identity(self.path)
        except OSError as exc:
            return f"it can no longer be read ({exc.strerror or exc})"
        if now == self.identity:
            return None
        if now[:2] != self.identity[:2]:
            return "it was replaced by another file"
        if now[2] != self.identity[2]:
            return f"it was rewritten in place ({self.identity[2]:,} bytes, now {now[2]:,})"
        return "it was rewritten in place"

    @property
    def intact(self) -> bool:
        """Whether the version indexed can still be read: the file this index holds open
        has not been written to since (replacing the file by renaming leaves it intact)."""
        if self.identity is None or self._fd is None:
            return True
        return _identity(os.fstat(self._fd)) == self.identity

    def _check_intact(self) -> None:
        if not self.intact:
            raise CassetteChangedError(
                self.path or "the cassette",
                "changed on disk while being replayed (rewritten in place, or cut short): the "
                "rest of the version loaded is gone, so this connection ends here (new "
                "connections load the new version; replace a cassette by renaming a new file "
                "over it to let open connections finish)",
            )

    # -- reading payloads -------------------------------------------------------------

    def payloads(self, frames: Sequence[ServerFrame]) -> Iterator[tuple[ServerFrame, bytes]]:
        """Each frame with its payload bytes, reading the file in spans of frames near each other.

        A frame whose audio is in a file (format 2) keeps its JSON around the audio in
        memory (a few hundred bytes); its audio is read with that of the frames after it
        that lie end to end in the same file, and encoded to base64 as it is yielded.
        """
        i, n = 0, len(frames)
        fd = self._fd
        while i < n:
            first = frames[i]
            if first.data is not None:
                yield first, first.data
                i += 1
                continue
            if first.audio is not None:
                afd, begin, length, head, tail = first.audio
                end = begin + length
                j = i + 1
                while j < n:
                    r = frames[j].audio
                    if r is None or r[0] != afd or r[1] != end or end + r[2] - begin > READ_SPAN:
                        break
                    end += r[2]
                    j += 1
                audio = os.pread(afd, end - begin, begin)
                if len(audio) != end - begin:
                    raise OSError(f"{self.path}: an audio file changed on disk while being replayed")
                if j == i + 1:
                    yield first, b"".join((head, encode_audio(audio), tail))
                else:
                    view = memoryview(audio)
                    for k in range(i, j):
                        f = frames[k]
                        _fd, offset, length, head, tail = f.audio  # type: ignore[misc]
                        a = offset - begin
                        yield f, b"".join((head, encode_audio(view[a : a + length]), tail))
                i = j
                continue
            if fd is None:
                raise ValueError("the cassette index is closed")
            start = first.pos
            end = first.pos + first.length
            j = i + 1
            while j < n:
                f = frames[j]
                if f.data is not None or f.audio is not None or f.pos < end:
                    break
                stop = f.pos + f.length
                if stop - start > READ_SPAN:
                    break
                end = stop
                j += 1
            buf = os.pread(fd, end - start, start)
            # Checked after the read: bytes read before a change are the loaded version's.
            if len(buf) != end - start or (
                self.identity is not None and _changed(os.fstat(fd), self.identity)
            ):
                self._check_intact()
                raise OSError(f"{self.path}: cassette changed on disk while being replayed")
            if j == i + 1:
                yield first, buf
            else:
                for k in range(i, j):
                    f = frames[k]
                    off = f.pos - start
                    yield f, buf[off : off + f.length]
            i = j

    def close(self) -> None:
        """Release the file (payloads of the in-memory cassette stay readable)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._audio is not None:
            self._audio.close()
            self._audio = None

    def __del__(self) -> None:
        self.close()


def _raw_offset(line: bytes, raw: bytes) -> int:
    # The writer puts ``json`` last: ``...,"json":RAW}\n``. Check that, else search.
    end = len(line.rstrip(b"\r\n"))
    start = end - 1 - len(raw)
    if start > 0 and line[end - 1 : end] == b"}" and line[start : end - 1] == raw:
        return start
    found = line.find(raw)
    if found < 0:  # pragma: no cover - Raw always comes from this line
        raise ValueError("frame payload not found in its line")
    return found


def _index_frame(
    ic: IndexedConnection, frame: Frame, data: bytes | None, shared: dict[bytes, Any], line: int = 0
) -> None:
    if frame.dir == "server":
        raw = data if frame.json is not msgspec.UNSET else None
        ic._add_server(ServerFrame(frame.t, frame.is_text, None, data=data, line=line), raw)
        return
    if frame.json is not msgspec.UNSET:
        raw = bytes(frame.json)
        event = shared.get(raw)
        if event is None:
            event = _any_decoder.decode(raw)
            if deeper_than(event, MAX_EVENT_DEPTH):  # compared as text, as a live one is
                ic._add_client(frame.t, frame.payload(), None, line)
                return
            if isinstance(event, dict) and event.get("type") != ic.profile.audio_append and len(raw) < 4096:
                # The same event in many connections (session.update...) is one object:
                # events are only read once indexed (appends lose their audio: not shared).
                if len(shared) >= 4096:
                    shared.clear()
                shared[raw] = event
        ic._add_client(frame.t, None, event, line)
    else:
        payload = frame.payload()
        ic._add_client(frame.t, payload, None, line)
