"""Reading and writing cassette files, one record per line.

The reader streams: it holds one line at a time, so a cassette of an hour of audio costs
only what the caller keeps. Every malformed input raises a :class:`CassetteError` naming
the file and line. A last line cut short (what a crash mid-write leaves) is not fatal: it
is reported as a :class:`CassetteTruncatedWarning` and in ``reader.warnings``.

The writer appends whole lines to a file beside the target, flushing each batch with one
``write`` call, so a process killed at any moment leaves a readable file holding every
record it wrote. ``close()`` checks that no live credential reached the file, then moves
it over the target atomically; an existing cassette is never damaged.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import itertools
import json
import math
import os
import re
import sys
import typing
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import msgspec

from .audiofiles import AudioMode, AudioStore, audio_position, convert
from .cassette import (
    AUDIO_FILES_FORMAT,
    FORMAT_VERSION,
    FORMAT_VERSIONS,
    HTTP_FORMAT,
    AudioFile,
    Cassette,
    Close,
    Connection,
    Direction,
    Frame,
    Header,
    HttpExchange,
    Open,
    Record,
    Reject,
    utc_timestamp,
)
from .errors import (
    CassetteError,
    CassetteFormatError,
    CassetteNotFoundError,
    CassetteTruncatedWarning,
    CassetteVersionError,
    CassetteWriteError,
    EventHookError,
    SecretLeakError,
)
from .redact import Redactor

__all__ = [
    "DEFAULT_MAX_LINE",
    "MAX_LINE_ENV",
    "CassetteReader",
    "CassetteWriter",
    "Recovered",
    "decode_records",
    "encode_record",
    "encode_records",
    "iter_lines",
    "leftover_partials",
    "load",
    "make_directories",
    "max_line_bytes",
    "partial_note",
    "recover",
    "remove_made_directories",
    "save",
]

# The longest line any reader takes in, so that a file without newlines (a binary file,
# /dev/zero, a 2 GB line) fails at once instead of being read into memory whole. The
# longest line rtreplay writes is a 16 MiB message (the WebSocket size limit of its
# server and recorder) as a ``text`` record, every byte escaped in the worst case to
# \u00XX: 6 x 16 MiB plus the record around it. Real lines are far shorter: an audio
# delta is some tens of KB, a session.update with long instructions under 1 MB.
DEFAULT_MAX_LINE = 128 << 20
MAX_LINE_ENV = "RTREPLAY_MAX_LINE_BYTES"


def max_line_bytes() -> int:
    """The longest cassette line readers accept, in bytes (newline excluded).

    :data:`DEFAULT_MAX_LINE` (128 MiB) unless the ``RTREPLAY_MAX_LINE_BYTES`` environment
    variable says otherwise (a positive whole number of bytes; another value is ignored,
    and the error a long line raises says so).
    """
    text = os.environ.get(MAX_LINE_ENV)
    if text:
        try:
            value = int(text)
        except ValueError:
            return DEFAULT_MAX_LINE
        if value > 0:
            return value
    return DEFAULT_MAX_LINE


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


def iter_lines(file: IO[bytes], path: str | Path, limit: int | None = None) -> Iterator[bytes]:
    """The lines of a binary file, each with its newline, none longer than ``limit`` bytes.

    ``limit`` defaults to :func:`max_line_bytes`. A longer line raises
    :class:`CassetteFormatError` naming ``path``, the line and the bound, after reading at
    most ``limit + 1`` bytes of it: a file with no newline is never read whole.
    """
    bound = max_line_bytes() if limit is None else limit
    readline = file.readline
    number = 0
    while True:
        line = readline(bound + 1)
        if not line:
            return
        number += 1
        if len(line) > bound and not line.endswith(b"\n"):
            setting = os.environ.get(MAX_LINE_ENV)
            ignored = (
                f" ({MAX_LINE_ENV}={setting!r} is not a positive number of bytes: ignored)"
                if setting and limit is None and bound == DEFAULT_MAX_LINE and setting != str(bound)
                else ""
            )
            raise CassetteFormatError(
                path,
                f"line is longer than {_mib(bound)}, the longest a cassette line may be "
                f"(no newline in the first {bound + 1} bytes: is this a cassette?); if it is, "
                f"raise the bound with the environment variable {MAX_LINE_ENV}=<bytes>{ignored}",
                number,
            )
        yield line

# writev() takes at most IOV_MAX (1024 on Linux and macOS) buffers per call.
_IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Record)

# Write-out of a growing cassette in windows of this size (see CassetteWriter._stream_out).
_STREAM_WINDOW = 8 << 20
_sync_file_range: Any = None  # libc's, looked up on first use; False where there is none
_SYNC_FILE_RANGE_WRITE = 2


def _start_write_out(fd: int, offset: int, length: int) -> bool:
    """Start writing a range of a file to the disk without waiting (Linux ``sync_file_range``).

    ``False`` where there is no such call, or the file system refuses it.
    """
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = False
        if sys.platform.startswith("linux") and hasattr(os, "posix_fadvise"):
            import ctypes

            try:
                function = ctypes.CDLL(None, use_errno=True).sync_file_range
            except (AttributeError, OSError):  # pragma: no cover - a libc without it
                pass
            else:
                function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
                function.restype = ctypes.c_int
                _sync_file_range = function
    return bool(_sync_file_range) and _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0


def _writev(fd: int, buffers: list[bytes]) -> int:
    if hasattr(os, "writev"):
        return os.writev(fd, buffers)
    return os.write(fd, b"".join(buffers))  # pragma: no cover - Windows has no writev


class _HeaderProbe(msgspec.Struct):
    """Just enough of a first line to check the version before trusting its shape."""

    kind: object = None
    format: object = None
    rtreplay: object = None


_probe_decoder = msgspec.json.Decoder(_HeaderProbe)


def encode_record(record: Record) -> bytes:
    """One record as one line of the file, newline included."""
    return _encoder.encode(record) + b"\n"


def encode_records(records: Iterable[Record]) -> bytes:
    """Records as the bytes of a cassette file."""
    buf = bytearray()
    for record in records:
        _encoder.encode_into(record, buf, len(buf))
        buf += b"\n"
    return bytes(buf)


def decode_records(data: bytes, name: str = "<bytes>") -> list[Record]:
    """The records in the bytes of a cassette file (checked as the reader checks them)."""
    with CassetteReader(io.BytesIO(data), name=name) as reader:
        return list(reader)


# RecursionError: msgspec refuses JSON nested deeper than the interpreter's recursion limit.
_DecodeFailure = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)
# The record kinds by their tag, for describing a line that msgspec refused.
_RECORD_KINDS: dict[str, type[msgspec.Struct]] = {
    str(cls.__struct_config__.tag): cls for cls in (Header, AudioFile, Open, Frame, Close, Reject, HttpExchange)
}
_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _describe(line: bytes, expected: str | None = None) -> str:
    """What is wrong with a line the decoder refused, found out here, not read from its message.

    Dependencies reword their errors from one release to the next (msgspec 0.23 did), so
    rtreplay's own message (which byte, which field, what was expected) is built from the
    line itself. ``expected`` names the one record kind the line must be (the header).
    """
    value, problem = _json_value(line.rstrip(b"\r\n"), " of the line")
    if problem is not None:
        return problem
    if not isinstance(value, dict):
        return f"a record must be a JSON object, not {_json_kind(value)}"
    kind = value.get("kind")
    if expected is not None and kind is None:
        kind = expected
    if not isinstance(kind, str):
        return "a record needs a 'kind' (one of " + ", ".join(map(repr, _RECORD_KINDS)) + ")"
    cls = _RECORD_KINDS.get(kind)
    if cls is None:
        return f"unknown record kind {kind!r} (known: " + ", ".join(map(repr, _RECORD_KINDS)) + ")"
    for field in msgspec.structs.fields(cls):
        if field.encode_name not in value:
            if field.required:
                return f"invalid {kind} record: missing required field '{field.encode_name}'"
            continue
        given = value[field.encode_name]
        try:
            msgspec.json.decode(msgspec.json.encode(given), type=field.type)
        except RecursionError:
            return f"invalid {kind} record: field '{field.encode_name}' is nested too deeply"
        except (msgspec.MsgspecError, OverflowError, TypeError):
            return (
                f"invalid {kind} record: field '{field.encode_name}' must be "
                f"{_describe_type(field.type)}, not {_json_kind(given)}"
                + ("" if given is None else f" {_short(given)}")
            )
    return f"invalid {kind} record: a value is out of range"


class _NotJSON(Exception):
    pass


def _refuse_constant(name: str) -> None:
    raise _NotJSON(name)


def _json_value(data: bytes, of: str = "") -> tuple[Any, str | None]:
    """``data`` read as one JSON value by the standard library, to say what the decoder
    refused (its message is never read): ``(value, None)``, or ``(None, what is wrong)``
    with the byte it is at; ``of`` says what the byte counts in (``" of the line"``)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, (
            f"not valid UTF-8 text: byte {exc.start + 1}{of} "
            f"(0x{data[exc.start]:02x}) is not part of a UTF-8 character"
        )
    try:
        return json.loads(text, parse_constant=_refuse_constant), None
    except json.JSONDecodeError as exc:
        at = len(text[: exc.pos].encode()) + 1
        return None, f"not valid JSON at byte {at}{of}: {_near(text, exc.pos)}"
    except _NotJSON as exc:
        return None, f"not valid JSON: {exc.args[0]} is not a JSON number"
    except RecursionError:
        return None, "not valid JSON for a cassette: nested too deeply"


def _near(text: str, pos: int) -> str:
    start = max(0, pos - 20)
    before = ("..." if start else "") + text[start:pos]
    after = text[pos : pos + 20] + ("..." if pos + 20 < len(text) else "")
    return f"after {before!r}" + (f" comes {after!r}" if after.strip() else " the line ends")


def _json_kind(value: object) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list, str)):
        return _JSON_KINDS[type(value)]
    return "a number"


def _short(value: object) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _describe_type(kind: object) -> str:
    """A record field's type in words: what the format allows there."""
    args = [a for a in typing.get_args(kind) if a is not msgspec.UnsetType]
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is dict:
        return "an object of strings"
    if args and origin is not None:  # a union
        return " or ".join(_describe_type(a) for a in args)
    names: dict[object, str] = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bytes: "base64 text",
        type(None): "null",
    }
    return names.get(kind) or str(getattr(kind, "__name__", kind))

_BOM = b"\xef\xbb\xbf"

# Close codes a WebSocket endpoint may send (RFC 6455 7.4, what websockets accepts), and
# the two a cassette records for "no code": 1005 (a close frame without one, replayed as
# 1000) and 1006 (no close frame at all: the replay drops the connection).
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
_RECORDED_CLOSE_CODES = SENDABLE_CLOSE_CODES | {1005, 1006}
MAX_CLOSE_REASON = 123  # bytes of UTF-8 in a close frame (RFC 6455 5.5: 125 minus the code)
# What an HTTP header may hold (RFC 9110 5.1, 5.5): a token for its name, no control
# character but tab in its value.
_HEADER_NAME = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _close_problem(close: Close) -> str | None:
    code = close.code
    if code is not None and code not in _RECORDED_CLOSE_CODES and not 3000 <= code <= 4999:
        return (
            f"close code {code} cannot be sent on a WebSocket (RFC 6455 7.4: 1000-1003, "
            "1007-1014, 3000-4999; 1005 and 1006 for no code and a dropped connection)"
        )
    if code not in (None, 1006) and len(close.reason.encode()) > MAX_CLOSE_REASON:
        return (
            f"close reason is {len(close.reason.encode())} bytes; a close frame holds at most "
            f"{MAX_CLOSE_REASON} bytes of reason"
        )
    return None


def _reject_problem(reject: Reject) -> str | None:
    if not 300 <= reject.status <= 599:
        return (
            f"reject status {reject.status} is not a refusal: a refused handshake is answered "
            "with an HTTP status from 300 to 599"
        )
    for name, value in reject.headers.items():
        if not _HEADER_NAME.fullmatch(name):
            return f"reject header name {name!r} is not a valid HTTP header name"
        if _HEADER_VALUE_BAD.search(value):
            return f"reject header {name!r} holds a control character, which HTTP cannot send"
    return None


class CassetteReader:
    """Iterates over a cassette's records, checking each one and the order they come in.

    Use as a context manager (or call ``close()``). After or during iteration, ``line`` and
    ``offset`` locate the last record read, ``header`` is the file's header and
    ``warnings`` lists what was tolerated (a truncated last line).

    Format 2: the audio files an :class:`~rtreplay.cassette.AudioFile` record declares are
    checked (there, of their size) as it is read; a frame's audio kept in one of them is
    put back inline unless ``resolve_audio`` is false (then ``audio`` holds
    :class:`~rtreplay.audiofiles.AudioStore`, to read it yourself). The ``AudioFile``
    records themselves are yielded too. ``verify_audio`` also checks each file's SHA-256
    as it is declared (reading it whole): what rewrites a cassette asks for it, so that a
    damaged file is not baked into a new cassette that then looks intact.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        *,
        name: str | None = None,
        resolve_audio: bool = True,
        verify_audio: bool = False,
    ):
        if isinstance(source, (str, os.PathLike)):
            self.path = Path(source)
            try:
                self._file: IO[bytes] = open(self.path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                raise CassetteNotFoundError(self.path) from None
            except IsADirectoryError:
                raise CassetteError(self.path, "is a directory, not a cassette file") from None
            except OSError as exc:
                raise CassetteError(self.path, f"cannot be read: {exc.strerror or exc}") from None
            except ValueError as exc:  # a NUL in the path
                raise CassetteError(self.path, f"cannot be read: {exc}") from None
            self._owned = True
        else:
            self.path = Path(name or str(getattr(source, "name", "<stream>")))
            self._file = source
            self._owned = False
        self.line = 0
        self.offset = 0
        self.length = 0
        self.header: Header | None = None
        self.warnings: list[str] = []
        self._open: dict[int, bool] = {}  # conn -> still open
        self.resolve_audio = resolve_audio
        self.verify_audio = verify_audio
        hint = None
        if not self._owned and self.path.parent == Path("."):
            # A stream has no directory: its audio is looked for under the current one.
            hint = (
                "read from standard input, a cassette's audio files are looked for in the current "
                "directory: run the command in the cassette's directory, or give its path instead of '-'"
                if str(self.path) == "<stdin>" else
                f"read from a stream named {str(self.path)!r}, a cassette's audio files are looked for "
                "in the current directory: name the stream with the cassette's path (name=...)"
            )
        self.audio = AudioStore(self.path.parent, missing_hint=hint)

    def __enter__(self) -> CassetteReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._file.close()
        if self.resolve_audio:
            self.audio.close()

    def _error(self, problem: str) -> CassetteFormatError:
        return CassetteFormatError(self.path, problem, self.line)

    def __iter__(self) -> Iterator[Record]:
        offset = 0
        try:
            # A real file is read line by line up to the bound; a source without readline
            # (the index's line tap) bounds its lines itself.
            lines = (
                iter_lines(self._file, self.path)
                if hasattr(self._file, "readline")
                else iter(self._file)
            )
            line = next(lines, None)
            while line is not None:
                following = next(lines, None)
                self.line += 1
                self.offset, self.length = offset, len(line)
                offset += len(line)
                last = following is None
                # isspace() stops at the first non-blank byte; strip() would copy the line.
                if not line.isspace():
                    record = self._decode(line, last)
                    if record is None:
                        return
                    if self.resolve_audio and type(record) is Frame and record.audio is not msgspec.UNSET:
                        record = self.audio.resolve(record)
                    yield record
                line = following
        except OSError as exc:
            raise CassetteError(self.path, f"cannot be read: {exc}", self.line) from None
        finally:
            # A reader used as ``list(CassetteReader(path))`` must not leak its file.
            self.close()
        if self.header is None:
            raise CassetteFormatError(self.path, "empty file: no header record", max(self.line, 1))

    def _decode(self, line: bytes, last: bool) -> Record | None:
        try:
            if self.header is None:
                return self._decode_header(line)
            record: Record = _decoder.decode(line)
            # msgspec does not check the bytes of a Raw ``json`` payload: a line must be
            # UTF-8 throughout, or replaying it sends invalid text (isascii() is ~free).
            if not line.isascii():
                line.decode()
        except _DecodeFailure:
            if last and not line.endswith(b"\n"):
                msg = f"{self.path}:{self.line}: last line is cut short ({_describe(line)}); it was skipped"
                self.warnings.append(msg)
                warnings.warn(msg, CassetteTruncatedWarning, stacklevel=4)
                return None
            raise self._error(_describe(line)) from None
        self._check(record)
        return record

    def _decode_header(self, line: bytes) -> Header:
        if line.startswith(_BOM):
            raise self._error(
                "the file starts with a UTF-8 byte order mark (bytes EF BB BF), which a "
                "cassette must not have: save it as UTF-8 without BOM (or remove its first 3 bytes)"
            )
        try:
            probe = _probe_decoder.decode(line)
        except _DecodeFailure:
            if line.lstrip().startswith(b"{"):
                raise self._error(f"header is {_describe(line, 'header')}") from None
            raise self._error("not an rtreplay cassette (the first line is not a JSON header)") from None
        if probe.kind != "header":
            raise self._error(
                "not an rtreplay cassette: the first record must be a header "
                '({"kind": "header", "format": 1, ...})'
            )
        if probe.format not in FORMAT_VERSIONS or isinstance(probe.format, bool):
            writer = probe.rtreplay if isinstance(probe.rtreplay, str) else None
            raise CassetteVersionError(self.path, probe.format, writer, max(FORMAT_VERSIONS))
        try:
            header = msgspec.json.decode(line, type=Header)
        except _DecodeFailure:
            raise self._error(_describe(line, "header")) from None
        self.header = header
        return header

    def _check(self, record: Record) -> None:
        if isinstance(record, Header):
            raise self._error("a second header record (two cassettes concatenated?)")
        if isinstance(record, AudioFile):
            assert self.header is not None
            if self.header.format < AUDIO_FILES_FORMAT:
                raise self._error(f"an audio record in a format {self.header.format} cassette (audio files need format 2)")
            problem = self.audio.declare(record)
            if problem is None and self.verify_audio:
                problem = self.audio.verify(record.id)
            if problem is not None:
                raise self._error(problem)
            return
        if isinstance(record, HttpExchange):
            assert self.header is not None
            if self.header.format < HTTP_FORMAT:
                raise self._error(
                    f"an http record in a format {self.header.format} cassette (HTTP exchanges "
                    f"need format {HTTP_FORMAT}: set the header's \"format\" to {HTTP_FORMAT})"
                )
            if record.n < 0:
                raise self._error(f"http exchange number {record.n} is negative")
            return
        conn = record.conn
        if conn < 0:
            raise self._error(f"connection number {conn} is negative")
        if isinstance(record, Open):
            if conn in self._open:
                raise self._error(f"connection {conn} is opened a second time")
            self._open[conn] = True
            return
        state = self._open.get(conn)
        if not state:
            kind = type(record).__name__.lower()
            if state is None:
                raise self._error(f"{kind} record for connection {conn}, which was never opened")
            raise self._error(f"{kind} record for connection {conn} after it was closed")
        if not math.isfinite(record.t) or record.t < 0:
            raise self._error(f"time offset t={record.t} is not a finite number of seconds >= 0")
        if isinstance(record, Frame):
            unset = msgspec.UNSET
            set_fields = (record.json is not unset) + (record.text is not unset) + (record.binary is not unset)
            if set_fields != 1:
                raise self._error(
                    f"a frame needs exactly one of 'json', 'text' or 'binary' (it has {set_fields})"
                )
            if record.audio is not unset:
                self._check_audio(record)
            return
        # Close or Reject end the connection; a replay must be able to send either.
        problem = _close_problem(record) if isinstance(record, Close) else _reject_problem(record)
        if problem is not None:
            raise self._error(problem)
        self._open[conn] = False


    def _check_audio(self, frame: Frame) -> None:
        assert self.header is not None and frame.audio is not msgspec.UNSET
        if self.header.format < AUDIO_FILES_FORMAT:
            raise self._error(f"a frame with its audio in a file, in a format {self.header.format} cassette (that needs format 2)")
        if frame.json is msgspec.UNSET:
            raise self._error("a frame's audio can be out of line only in a 'json' frame")
        problem = self.audio.check_ref(frame.audio)
        if problem is None and audio_position(bytes(frame.json), frame.audio.field) is None:
            problem = f'the frame\'s JSON has no single "{frame.audio.field}": "" to put its audio in'
        if problem is not None:
            raise self._error(problem)


def load(path: str | os.PathLike[str] | IO[bytes], *, name: str | None = None) -> Cassette:
    """Read a whole cassette into memory, connections in the order they were opened.

    ``path`` may also be an open binary stream (``sys.stdin.buffer``), read to its end and
    not closed; ``name`` is what errors call it (``<stdin>``; by default its ``name``).
    Raises :class:`~rtreplay.errors.CassetteError` (file and line) on a bad cassette.
    """
    by_conn: dict[int, Connection] = {}
    exchanges: list[HttpExchange] = []
    with CassetteReader(path, name=name) as reader:
        for record in reader:
            if isinstance(record, HttpExchange):
                exchanges.append(record)
            elif isinstance(record, Open):
                by_conn[record.conn] = Connection(record)
            elif isinstance(record, Frame):
                by_conn[record.conn].frames.append(record)
            elif isinstance(record, Close):
                by_conn[record.conn].close = record
            elif isinstance(record, Reject):
                by_conn[record.conn].reject = record
        assert reader.header is not None
        return Cassette(
            reader.header,
            list(by_conn.values()),
            os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(reader.path),
            reader.warnings,
            exchanges,
        )


def save(
    cassette: Cassette,
    path: str | os.PathLike[str],
    redactor: Redactor | None = None,
    *,
    audio: AudioMode = "inline",
) -> Path:
    """Write a whole cassette atomically (redacted like any recording).

    ``audio``: ``"inline"`` (format 1, one self-contained file) or ``"files"`` (format 2,
    audio in ``rtreplay-audio/`` beside it; see :mod:`rtreplay.audiofiles`).
    Raises :class:`~rtreplay.errors.CassetteFormatError` (and writes nothing) for anything
    :func:`load` would refuse: a cassette built in code (a script, an edit, a hypothesis
    example) must read back. The file written is read back with the reader's every check
    (:class:`CassetteReader`, what ``rtreplay validate`` runs before its schema checks:
    record order, connection numbers, times, one payload per frame, closes and refusals,
    audio references, one record a line) before it is moved into place. Events the
    Realtime schema does not know are not refused: they load, and ``rtreplay validate``
    reports them.
    """
    for conn in cassette.connections:
        for end in (conn.close, conn.reject):
            problem = (
                None if end is None
                else _close_problem(end) if isinstance(end, Close)
                else _reject_problem(end)
            )
            if problem is not None:
                raise CassetteFormatError(Path(path), f"connection {conn.open.conn}: {problem}; nothing was written")
    # What the redactor and the encoder meet before the file exists: a frame without one
    # payload, a 'json' that is not one JSON value (the redactor decodes it), a time JSON
    # cannot hold (NaN and infinity are written as null). The read-back checks the rest.
    for line, record in enumerate(cassette.records(), 1):
        problem = _unwritable(record)
        if problem is not None:
            raise CassetteFormatError(
                Path(path), f"{_which_record(cassette, line)}: {problem}; load() would refuse it, so nothing was written"
            )
    return _write_whole(
        path, cassette.header, (r for r in cassette.records() if not isinstance(r, Header)),
        redactor=redactor, audio=audio, check=cassette,
    )


def _unwritable(record: Record) -> str | None:
    """What in a record built in code would make writing it fail or write what the reader
    refuses, said as the reader says it; ``None`` if nothing."""
    t = getattr(record, "t", None)
    if isinstance(t, float) and not math.isfinite(t):
        return f"time offset t={t} is not a finite number of seconds >= 0"
    if not isinstance(record, Frame):
        return None
    unset = msgspec.UNSET
    payloads = (record.json is not unset) + (record.text is not unset) + (record.binary is not unset)
    if payloads != 1:
        return f"a frame needs exactly one of 'json', 'text' or 'binary' (it has {payloads})"
    if record.json is unset:
        return None
    raw = bytes(record.json)
    try:
        msgspec.json.decode(raw)
        return None
    except msgspec.DecodeError:
        pass
    if not raw.strip():
        return "its 'json' is not valid JSON at byte 1: the value is empty"
    _, problem = _json_value(raw)
    return f"its 'json' is {problem or 'not valid JSON'}"


def _which_record(cassette: Cassette, line: int) -> str:
    """Record ``line`` (1-based, the header first) of ``cassette``, in words."""
    for n, record in enumerate(cassette.records(), 1):
        if n != line:
            continue
        kind = type(record).__name__.lower()
        conn = getattr(record, "conn", None)
        if not isinstance(record, Frame):
            return f"record {n} ({kind}{f' of connection {conn}' if conn is not None else ''})"
        try:
            event = record.event()
        except Exception:  # the payload is what is wrong: say the frame without its type
            event = None
        what = event.get("type") if isinstance(event, dict) else None
        return f"record {n} (a {record.dir} frame of connection {conn}{f', {what}' if isinstance(what, str) else ''})"
    return f"record {line}"


def _write_whole(
    path: str | os.PathLike[str],
    header: Header,
    records: Iterable[Record],
    *,
    redactor: Redactor | None = None,
    audio: AudioMode = "inline",
    check: Cassette | None = None,
) -> Path:
    """Write a cassette whose records are all at hand, atomically. A failure leaves no
    partial file: the records still exist where they came from, and a partial file left
    behind would pass for an interrupted recording that `rtreplay recover` offers to keep.
    ``check``: the cassette written, whose file is read back with every check of the
    reader before it is moved into place (a refusal names its record in it)."""
    if Path(path).is_dir():
        raise CassetteWriteError(
            Path(path), f"is a directory: name a cassette file in it (for example {Path(path) / 'session.jsonl'})"
        )
    writer = CassetteWriter(path, header=header, redactor=redactor, audio=audio)
    try:
        writer.write_many(records)
        if check is not None:
            writer.flush()
            try:
                for _ in CassetteReader(writer.partial_path, resolve_audio=False):
                    pass  # (every line the writer wrote ends with its newline: none is cut short)
            except CassetteFormatError as exc:
                where = _which_record(check, exc.line) if exc.line is not None else "the cassette"
                raise CassetteFormatError(
                    Path(path), f"{where}: {exc.problem}; load() would refuse it, so nothing was written"
                ) from None
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def make_directories(directory: Path) -> list[Path]:
    """Make ``directory`` and its missing parents; return the ones this call made,
    outermost first, so that a recording that writes nothing can take them away again
    (:func:`remove_made_directories`). Raises :class:`OSError` as ``Path.mkdir`` does."""
    missing: list[Path] = []
    for part in (directory, *directory.parents):
        if part.exists():
            break
        missing.append(part)
    directory.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def remove_made_directories(made: Sequence[Path]) -> None:
    """Remove the directories :func:`make_directories` made, innermost first, while they
    are empty: one that something else filled meanwhile stays, and so do its parents."""
    for directory in reversed(made):
        try:
            directory.rmdir()
        except OSError:
            return


def _unmakeable_directory(directory: Path, exc: BaseException) -> str:
    """Why ``directory`` could not be made, naming the part of it that is a file if one is."""
    for part in (directory, *directory.parents):
        if part.exists() and not part.is_dir():
            return f"cannot be written: its directory cannot be made, because {part} is a file, not a directory"
    return f"cannot be written: its directory {directory} cannot be made: {getattr(exc, 'strerror', None) or exc}"


class CassetteWriter:
    """Writes a cassette beside its target and moves it into place when finished.

    Every record passes through the ``redactor`` first. ``write()`` flushes each record to
    the operating system at once; ``write_many()`` writes a batch with one system call.
    ``close()`` finishes the file (fsync, credential check, atomic rename); ``abort()``
    removes it and leaves any existing cassette as it was. As a context manager, an
    exception inside the block aborts.

    ``audio="files"`` finishes the cassette in format 2, its audio in files beside it
    (:func:`rtreplay.audiofiles.write_cassette`): the partial file is written as usual
    (self-contained, so a crash loses nothing), and ``close()`` moves its audio out.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        redactor: Redactor | None = None,
        header: Header | None = None,
        audio: AudioMode = "inline",
    ) -> None:
        if audio not in ("inline", "files"):
            raise ValueError(f"audio must be 'inline' or 'files', not {audio!r}")
        self.audio: AudioMode = audio
        self.path = Path(path)
        self.redactor = redactor if redactor is not None else Redactor()
        self.partial_path = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
        try:
            # Made here and left empty (abort()): taken away again.
            self._made = make_directories(self.path.parent)
        except (OSError, ValueError) as exc:
            raise CassetteWriteError(self.path, _unmakeable_directory(self.path.parent, exc)) from None
        try:
            # Read and write: a partial file whose directory was removed is copied back (_relink).
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
            self._fd: int | None = os.open(self.partial_path, flags, 0o644)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            raise CassetteWriteError(self.path, f"cannot be written: {getattr(exc, 'strerror', None) or exc}") from None
        # Encoded lines waiting for flush(), each followed by b"\n": written with one
        # writev, never joined (joining, or encoding into one growing bytearray, copies
        # every audio frame once more).
        self._pending: list[bytes] = []
        self.records_written = 0
        self.bytes_written = 0
        # Long recordings are streamed to the disk (Linux): see _stream_out().
        self._streaming = True
        #: Whether the partial file had to be written again (its directory was removed).
        self.relinked = False
        self._written_out = 0  # write-out started up to here
        self._dropped = 0  # and dropped from memory up to here
        if header is None:
            header = Header(created=utc_timestamp())
        self._header = Header(FORMAT_VERSION, header.rtreplay, header.created or utc_timestamp())
        self.write(self._header)

    def __enter__(self) -> CassetteWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _append(self, record: Record, *, proved_clean: bool = False, redacted: bool = False) -> None:
        """Buffer one record; ``redacted``: the redactor already rewrote it (redacting a
        frame twice would join its text delta to its stream twice)."""
        if type(record) is HttpExchange and self._header.format < HTTP_FORMAT:
            self._declare_format(HTTP_FORMAT)
        if not proved_clean and not redacted:
            record = self.redactor.record(record)
        line = _encoder.encode(record)
        if not proved_clean and self.redactor.find_secret(line) is not None:
            raise SecretLeakError(
                f"a {type(record).__name__.lower()} record of {self.path}",
                "the record was not written; add a redaction rule for it",
            )
        self._pending += (line, b"\n")
        self.records_written += 1

    def _declare_format(self, version: int) -> None:
        """Make the header say ``version``, in place: the first record this format needs is
        about to be written, and a reader must meet the version before the record (a
        reader of an older format then refuses the file with its version error). The new
        header line has the length of the old one, so it is written over it."""
        assert self._fd is not None
        self.flush()
        old = _encoder.encode(self._header)
        header = msgspec.structs.replace(self._header, format=version)
        new = _encoder.encode(header)
        if len(new) != len(old):  # pragma: no cover - a one-digit version for years to come
            raise CassetteWriteError(self.path, f"cannot declare format {version} in place")
        try:
            os.pwrite(self._fd, new, 0)
        except OSError as exc:
            raise CassetteWriteError(self.partial_path, f"write failed: {exc.strerror or exc}") from None
        self._header = header

    def write(self, record: Record, *, flush: bool = True) -> None:
        """Append one record (redacted), and flush it unless ``flush`` is false."""
        if self._fd is None:
            raise CassetteWriteError(self.path, "writer is already closed")
        self._append(record)
        if flush:
            self.flush()

    def write_many(self, records: Iterable[Record]) -> None:
        """Append several records and flush them with one system call."""
        if self._fd is None:
            raise CassetteWriteError(self.path, "writer is already closed")
        for record in records:
            self._append(record)
        self.flush()

    def write_messages(
        self, conn: int, direction: Direction, messages: Sequence[tuple[float, bytes, bool]]
    ) -> int:
        """Append ``(t, data, is_text)`` messages as they pass, and flush them with one system call.

        The recording proxy's path: each message is decoded once for both the JSON check
        and redaction (:meth:`Redactor.frame_from_message`), where ``write_many`` of
        ``Frame.from_message`` records would decode it twice. Returns how many messages
        were written: all of them, unless one marked as text is not UTF-8, where writing
        stops (what came before it is flushed; it and what follows are not written).
        Raises :class:`~rtreplay.errors.EventHookError` when the redactor's hook fails on
        a message, after writing those before it (their count in its ``recorded``).
        """
        if self._fd is None:
            raise CassetteWriteError(self.path, "writer is already closed")
        make = self.redactor.frame_from_message
        written = 0
        try:
            for t, data, text in messages:
                frame, clean = make(conn, t, direction, data, text)
                self._append(frame, proved_clean=clean, redacted=True)
                written += 1
        except UnicodeDecodeError:
            pass
        except EventHookError as exc:  # what came before it is written; it and the rest not
            exc.recorded = written
            self.flush()
            raise
        self.flush()
        return written

    def flush(self) -> None:
        """Hand everything buffered to the operating system (survives the process's death).

        If the write fails (a full disk, a file size limit), the file is cut back to the
        end of its last whole record and what was buffered is dropped: the file stays a
        readable cassette, and later records can still be written after it once writing
        works again. Raises :class:`CassetteWriteError` naming the partial file.
        """
        pending = self._pending
        if self._fd is None or not pending:
            return
        start = self.bytes_written
        # (pending holds whole records: a line, then b"\n", for each.)
        ends = list(itertools.accumulate(len(pending[i]) + 1 for i in range(0, len(pending), 2)))
        try:
            while pending:
                chunk = pending[:_IOV_MAX]
                n = _writev(self._fd, chunk)
                self.bytes_written += n
                if n == sum(map(len, chunk)):
                    del pending[:_IOV_MAX]
                    continue
                # A short write (a full disk, a signal): the rest of that chunk, byte-exact.
                rest = b"".join(chunk)[n:]
                del pending[:_IOV_MAX]
                pending.insert(0, rest)
        except OSError as exc:
            whole = bisect.bisect_right(ends, self.bytes_written - start)
            self.records_written -= len(ends) - whole
            pending.clear()
            problem = f"write failed: {exc.strerror or exc}"
            try:
                self.bytes_written = start + (ends[whole - 1] if whole else 0)
                os.ftruncate(self._fd, self.bytes_written)
                os.lseek(self._fd, self.bytes_written, os.SEEK_SET)
            except OSError as cut:  # cannot cut a half-written record off: write no more
                os.close(self._fd)
                self._fd = None
                problem += f", and its last record cannot be cut off ({cut.strerror or cut})"
            raise CassetteWriteError(self.partial_path, problem) from None
        if self._streaming and self.bytes_written - self._written_out >= 2 * _STREAM_WINDOW:
            self._stream_out()

    def _stream_out(self) -> None:
        """Keep a long recording from filling memory: send older parts to the disk.

        Whenever two windows (16 MiB) have been written since the last call, the write-out
        of all but the newest window starts (without waiting), and what the previous call
        sent out leaves the page cache. A cassette so holds some 32 MiB of memory however
        long the session. Growing the page cache instead cost ten times more per byte on a
        virtual machine that hands freed memory back to its host (docs/performance.md).
        """
        assert self._fd is not None
        end = self.bytes_written - _STREAM_WINDOW
        if not _start_write_out(self._fd, self._written_out, end - self._written_out):
            self._streaming = False  # not on this system
            return
        if self._written_out > self._dropped:
            with contextlib.suppress(OSError):
                os.posix_fadvise(self._fd, self._dropped, self._written_out - self._dropped, os.POSIX_FADV_DONTNEED)
            self._dropped = self._written_out
        self._written_out = end

    def check_writable(self) -> None:
        """Raise :class:`CassetteWriteError` if the file cannot be written to now (a full disk).

        It writes a blank line, which readers skip.
        """
        if self._fd is None:
            raise CassetteWriteError(self.path, "writer is already closed")
        self._pending += (b"", b"\n")  # a record of no bytes: just its newline
        self.records_written += 1
        self.flush()
        self.records_written -= 1

    def _relink(self) -> None:
        """Put the partial file back if it was removed while open (its directory deleted).

        The open file still holds every record: it is copied to a new partial file, in a
        directory made again if needed.
        """
        assert self._fd is not None
        if os.fstat(self._fd).st_nlink > 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.partial_path, flags, 0o644)
        offset = 0
        try:
            while offset < self.bytes_written:
                data = os.pread(self._fd, min(1 << 20, self.bytes_written - offset), offset)
                if not data:
                    break
                os.write(fd, data)
                offset += len(data)
        except OSError:
            os.close(fd)
            raise
        os.close(self._fd)
        self._fd = fd
        self.relinked = True

    def close_partial(self) -> Path:
        """Stop writing and keep the partial file, every whole record in it; return its path.

        What a recording that could not be finished keeps: an existing cassette stays as
        it was, and the partial file can be read or renamed. A partial file that holds a
        live credential is deleted all the same (:class:`SecretLeakError`).
        """
        if self._fd is not None:
            try:
                with contextlib.suppress(CassetteWriteError):
                    self.flush()
                with contextlib.suppress(OSError):
                    self._relink()
                    os.fsync(self._fd)
            finally:
                if self._fd is not None:
                    os.close(self._fd)
                self._fd = None
        if self.partial_path.exists() and self.redactor.file_contains_secret(self.partial_path):
            self.partial_path.unlink(missing_ok=True)
            raise SecretLeakError(str(self.partial_path), "the partial recording was deleted")
        return self.partial_path

    def close(self) -> Path:
        """Finish the cassette: flush, sync, check for live credentials, move into place.

        A partial file removed while it was written (its directory deleted) is written
        again from the open file first: nothing is lost.
        """
        if self._fd is None:
            return self.path
        try:
            self.flush()
            try:
                self._relink()
            except OSError as exc:
                raise CassetteWriteError(
                    self.partial_path, f"was removed while recording and cannot be written again: {exc.strerror or exc}"
                ) from None
            os.fsync(self._fd)
        finally:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None
        if self.redactor.file_contains_secret(self.partial_path):
            self.partial_path.unlink(missing_ok=True)
            raise SecretLeakError(str(self.path), "the recording was discarded")
        if self.audio == "files":
            try:
                convert(self.partial_path, self.path, audio="files")
            finally:
                self.partial_path.unlink(missing_ok=True)
            return self.path
        try:
            os.replace(self.partial_path, self.path)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise CassetteWriteError(self.path, f"cannot be moved into place: {exc}") from None
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the partial file, and the directories made for it if
        they are left empty; an existing cassette stays as it was."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.partial_path.unlink(missing_ok=True)
        remove_made_directories(self._made)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- partial files left by a recording -------------------------------------------------

_PARTIAL = re.compile(r"\.(\d+)\.partial")


def _running(pid: int) -> bool:
    """Whether a process of this id exists (ids are reused: a hint, not a proof)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # someone else's process: it exists
    return True


def leftover_partials(path: str | os.PathLike[str]) -> list[tuple[Path, int, bool]]:
    """The ``<name>.<pid>.partial`` files beside cassette ``path``, oldest first.

    Each as ``(partial file, the writer's process id, whether that process still runs)``:
    one whose process is gone is a recording that was interrupted (killed, crashed, the
    machine stopped) and holds every record written before; one whose process runs is a
    recording in progress. See :func:`recover`.
    """
    target = Path(path)
    found: list[tuple[float, Path, int]] = []
    try:
        entries = list(os.scandir(target.parent if str(target.parent) else "."))
    except OSError:
        return []
    prefix = target.name
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or not name.endswith(".partial"):
            continue
        match = _PARTIAL.fullmatch(name[len(prefix) :])
        if match is None:
            continue
        try:
            mtime = entry.stat().st_mtime
        except OSError:
            continue
        found.append((mtime, target.parent / name, int(match.group(1))))
    found.sort()
    return [(p, pid, _running(pid)) for _, p, pid in found]


def partial_note(path: str | os.PathLike[str]) -> str | None:
    """What to tell a user about the partial files beside cassette ``path``, or ``None``."""
    notes = []
    for partial, pid, running in leftover_partials(path):
        if running:
            notes.append(
                f"{partial} is being written by process {pid}: a recording in progress, which "
                f"becomes {Path(path).name} when it finishes"
            )
        else:
            notes.append(
                f"{partial} was left by an interrupted recording (process {pid} is gone), with "
                f"every record written before it stopped: `rtreplay recover {path}` checks it and "
                "makes it the cassette, or delete it"
            )
    return "; ".join(notes) or None


class Recovered(typing.NamedTuple):
    """What :func:`recover` did: the cassette written, the partial file it came from, the
    records kept; when a damaged line ended what could be kept, ``dropped`` says what was
    left out (``file:line: what``, then the lines and connections) and ``damaged`` is where
    the partial file was kept, whole (else it was removed)."""

    cassette: Path
    source: Path
    records: int
    dropped: str | None = None
    damaged: Path | None = None


def _after_damage(data: bytes, line: int) -> tuple[int, int, list[int], list[int]]:
    """What follows damaged line ``line`` (1-based) of ``data``: (its last line, the records
    that still decode after it, their connections, the connections they close)."""
    lines = data.splitlines()
    records, conns, closed = 0, set[int](), set[int]()
    for raw in lines[line:]:
        if raw.isspace() or not raw:
            continue
        try:
            record = _decoder.decode(raw)
        except _DecodeFailure:
            continue
        records += 1
        conn = getattr(record, "conn", None)
        if isinstance(conn, int):
            conns.add(conn)
            if isinstance(record, (Close, Reject)):
                closed.add(conn)
    return len(lines), records, sorted(conns), sorted(closed)


def _move_beside(source: Path, name: str) -> Path:
    """Move ``source`` to ``name`` beside it, or to ``name.2``, ``name.3``... when that is
    taken: a file an earlier recovery kept there (process IDs come round again) is never
    replaced. A hard link claims the name atomically; without one (a filesystem that has
    none) the name is claimed if free when looked at."""
    n = 1
    while True:
        kept = source.with_name(name if n == 1 else f"{name}.{n}")
        n += 1
        try:
            os.link(source, kept)
        except FileExistsError:
            continue
        except OSError:  # no hard links here
            if kept.exists():
                continue
            os.replace(source, kept)
            return kept
        source.unlink()
        return kept


def recover(
    path: str | os.PathLike[str],
    *,
    partial: str | os.PathLike[str] | None = None,
    replace: bool = False,
    truncate: bool = False,
) -> Recovered:
    """Make the partial file an interrupted recording left the cassette at ``path``.

    ``partial``: which one (default: the newest whose process is gone). Its records are read
    and checked as any cassette's (a last line cut short by the interruption is dropped),
    written to ``path`` atomically (redacted again), then the partial file is removed.

    A damaged line (not a record, or one out of order) ends what can be kept: every record
    before it is. The records after it cannot be trusted (which connection the damaged line
    belonged to is unknown, and a connection with a record missing would replay as if
    whole), so when any follows, recover refuses unless ``truncate`` (``--truncate``),
    naming the line, what is wrong with it and what would be dropped. Whenever a damaged
    line is dropped, the partial file is kept whole as ``<cassette>.<pid>.damaged`` (``.damaged.2``... if an earlier one has that name), and
    :attr:`Recovered.dropped` says what was left out.

    Raises :class:`CassetteError` when there is no partial file, when its process still
    runs, when it cannot be read (or its header is damaged: nothing to keep), when a
    damaged line has records after it and ``truncate`` is false, or when ``path`` exists and
    ``replace`` is false (an existing cassette is never replaced silently).
    """
    target = Path(path)
    if partial is None:
        left = [p for p, _, running in leftover_partials(target) if not running]
        if not left:
            running = [f"{p} (process {pid} runs)" for p, pid, _ in leftover_partials(target)]
            raise CassetteError(
                target,
                "no partial file of an interrupted recording beside it"
                + (f"; being recorded now: {', '.join(running)}" if running else ""),
            )
        source = left[-1]
    else:
        source = Path(partial)
        match = _PARTIAL.search(source.name)
        if match is not None and _running(int(match.group(1))):
            raise CassetteError(source, f"process {match.group(1)} is still writing it: let it finish")
    if target.exists() and not replace:
        raise CassetteError(
            target,
            f"exists: recovering {source.name} would replace it; pass --replace (replace=True) "
            "to do so, or recover to another path",
        )
    records: list[Record] = []
    damage: CassetteFormatError | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CassetteTruncatedWarning)
        reader = CassetteReader(source)
        try:
            records.extend(reader)
        except CassetteFormatError as exc:
            if reader.header is None or exc.line is None:
                raise  # a damaged header: nothing to keep
            damage = exc
    dropped: str | None = None
    if damage is not None:
        assert damage.line is not None
        try:
            last, after, conns, closed = _after_damage(source.read_bytes(), damage.line)
        except OSError as exc:
            raise CassetteError(source, f"cannot be read: {exc.strerror or exc}") from None
        lines = f"line {damage.line}" if last == damage.line else f"lines {damage.line}-{last}"
        dropped = f"{damage}; dropped {lines}"
        if after:
            which = ", ".join(map(str, conns))
            ended = f"; connection(s) {', '.join(map(str, closed))} closed after it" if closed else ""
            dropped += f": {after:,} record(s) after it, of connection(s) {which}{ended}"
            if not truncate:
                raise CassetteError(
                    source,
                    f"{damage.problem}, and {after:,} record(s) follow it (connection(s) {which}"
                    f"{ended}), which recovering would drop: pass --truncate (truncate=True) to "
                    f"keep the {len(records):,} record{'s' if len(records) != 1 else ''} before line {damage.line} (the partial "
                    "file is kept whole beside the cassette), or repair the line and recover again",
                    damage.line,
                )
    header = records[0]
    assert isinstance(header, Header)
    _write_whole(target, header, records[1:])
    kept: Path | None = None
    if damage is not None:
        match = _PARTIAL.search(source.name)
        kept = _move_beside(
            source, source.name[: match.start()] + f".{match.group(1)}.damaged" if match else f"{source.name}.damaged"
        )
    else:
        source.unlink(missing_ok=True)
    return Recovered(target, source, len(records), dropped, kept)
