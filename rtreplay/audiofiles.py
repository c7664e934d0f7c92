"""Audio out of line (cassette format 2): content-addressed files beside the cassette.

An hour of two-way audio is some 500 MB of base64 inside a JSON Lines cassette, and a
reviewer sees only noise in its diff. In format 2 the audio of each audio event is kept,
decoded, in a file of ``rtreplay-audio/`` beside the cassette, one file per connection and
direction (the frames' audio bytes end to end: raw PCM16 or G.711, as the session sent
it), named by its SHA-256: the same input audio sent by many tests in one directory is
stored once. The frame keeps its JSON with ``""`` where the audio was, and an
:class:`~rtreplay.cassette.AudioRef` (file, field, offset, length in audio bytes); a reader
puts the base64 of those bytes back between the quotes, so a replay sends the recorded
message byte for byte. Decoded audio takes 3/4 of the room its base64 text did.

Only canonical base64 (its alphabet, the padding it needs, no escapes, no line breaks:
what encoding its bytes again gives back exactly) of at least :data:`MIN_OUT_OF_LINE`
characters is moved out, and only when the message's bytes can be rebuilt exactly;
anything else stays inline. A cassette in which nothing moved out is written in format 1.

No compression on top: on real speech (``cassettes/audio-vad-real.jsonl``) zlib keeps 77%
of the PCM, bz2 and lzma about 67% at 2 to 8 MB/s, and a compressed file could no longer
be read frame by frame with ``pread``; git already deflates every blob it stores.
docs/performance.md has the figures.

Writing is ordered so that no crash leaves a cassette pointing at missing audio: each
audio file is written, synced and renamed into ``rtreplay-audio/`` (and that directory
synced) before the cassette is written beside its target, synced and renamed over it.
A crash in between leaves at worst an audio file no cassette refers to.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec
import pybase64

from .cassette import (
    AUDIO_FILES_FORMAT,
    FORMAT_VERSION,
    HTTP_FORMAT,
    AudioFile,
    AudioRef,
    Frame,
    Header,
    HttpExchange,
    Record,
)
from .errors import CassetteError, CassetteWriteError

__all__ = [
    "AUDIO_DIR",
    "AUDIO_FIELDS",
    "AUDIO_SUFFIX",
    "MIN_OUT_OF_LINE",
    "AudioMode",
    "AudioStore",
    "ConvertResult",
    "audio_position",
    "convert",
    "encode_audio",
    "splice_audio",
    "split_audio",
    "write_cassette",
]

AudioMode = Literal["inline", "files"]

#: The directory beside a cassette that holds its audio files.
AUDIO_DIR = "rtreplay-audio"

#: Event type -> the top-level field holding its base64 audio. The conversation endpoint's
#: client append and server deltas, GA and beta names (PROTOCOL.md 2.1, 2.2, 1.5), and the
#: translations endpoint's (CHANGES.md).
AUDIO_FIELDS: dict[str, str] = {
    "input_audio_buffer.append": "audio",
    "response.output_audio.delta": "delta",
    "response.audio.delta": "delta",
    "session.input_audio_buffer.append": "audio",
    "session.output_audio.delta": "delta",
}

#: Base64 shorter than this (in characters) stays inline: a reference would not be much shorter.
MIN_OUT_OF_LINE = 64

#: The name of an audio file: ``<sha256 of its bytes><AUDIO_SUFFIX>`` (headerless audio).
AUDIO_SUFFIX = ".raw"

_READ_CHUNK = 1 << 20


class _AudioView(msgspec.Struct):
    type: object = None
    audio: object = None
    delta: object = None


_view = msgspec.json.Decoder(_AudioView)
_positions: dict[str, re.Pattern[bytes]] = {}


def _position_re(field_name: str) -> re.Pattern[bytes]:
    pattern = _positions.get(field_name)
    if pattern is None:
        pattern = re.compile(b'"' + re.escape(field_name.encode()) + rb'"\s*:\s*""')
        _positions[field_name] = pattern
    return pattern


def audio_position(raw: bytes, field_name: str) -> int | None:
    """Where the base64 goes in a format-2 frame's JSON: the offset just inside the
    quotes of ``"field": ""``, or ``None`` unless there is exactly one such place."""
    found = list(_position_re(field_name).finditer(raw))
    if len(found) != 1:
        return None
    return found[0].end() - 1


def encode_audio(data: bytes | memoryview) -> bytes:
    """Audio bytes as the base64 text a message carries (standard alphabet, padded, one line).

    pybase64, not the stdlib: a replay encodes every audio delta it sends, and binascii's
    ~1 GB/s made that the largest cost of a format-2 replay (docs/performance.md).
    """
    return pybase64.b64encode(data)


def splice_audio(raw: bytes, field_name: str, audio: bytes | memoryview) -> bytes:
    """The message of a format-2 frame: its JSON with the base64 of ``audio`` (bytes) put back.

    Raises ``ValueError`` when the JSON has no single ``"field": ""`` to put it in.
    """
    at = audio_position(raw, field_name)
    if at is None:
        raise ValueError(f'the frame\'s JSON has no single "{field_name}": "" to put its audio in')
    return b"".join((raw[:at], encode_audio(audio), raw[at:]))


def split_audio(raw: bytes) -> tuple[bytes, str, bytes] | None:
    """A JSON message's audio taken out: ``(json without it, field, the decoded audio)``.

    ``None`` when the message is not an audio event, its audio is short or not canonical
    base64 (encoding the decoded bytes again must give the very same text), or the
    message could not be rebuilt byte for byte from the parts.
    """
    try:
        view = _view.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    field_name = AUDIO_FIELDS.get(view.type) if isinstance(view.type, str) else None
    if field_name is None:
        return None
    value = getattr(view, field_name)
    if not isinstance(value, str) or len(value) < MIN_OUT_OF_LINE or not value.isascii():
        return None
    b64 = value.encode()
    try:
        data = pybase64.b64decode(b64, validate=True)
    except ValueError:  # binascii.Error: not base64 at all
        return None
    if encode_audio(data) != b64:
        return None  # not base64, or not what encoding gives (a line break, bits in the padding)
    needle = b'"' + b64 + b'"'
    start = raw.find(needle)
    if start < 0 or raw.find(needle, start + 1) >= 0:
        return None
    stripped = raw[: start + 1] + raw[start + 1 + len(b64) :]
    if audio_position(stripped, field_name) != start + 1:
        return None
    return stripped, field_name, data


def _safe_relative(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts and "\\" not in path


class AudioStore:
    """The audio files a format-2 cassette declares, checked and opened for reading.

    ``base`` is the cassette's directory. :meth:`declare` checks a declaration (a safe
    relative path, the file there, of the declared size) and returns what is wrong in
    words, or ``None``; :meth:`read` returns a reference's audio bytes, :meth:`resolve`
    a frame with the base64 of its audio back in its JSON.
    """

    def __init__(self, base: Path, *, missing_hint: str | None = None) -> None:
        self.base = base
        # What a missing file's error advises (default: move the audio with the cassette).
        self.missing_hint = missing_hint or f"copy or move {AUDIO_DIR}/ together with the cassette"
        self.files: dict[str, AudioFile] = {}
        self._fds: dict[str, int] = {}

    def declare(self, record: AudioFile) -> str | None:
        if record.id in self.files:
            return f"audio file id {record.id!r} is declared twice"
        if not _safe_relative(record.path):
            return f"audio file path {record.path!r} must be relative to the cassette, without '..'"
        full = self.base / record.path
        try:
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return f"audio file {full} is missing ({self.missing_hint})"
        except OSError as exc:
            return f"audio file {full} cannot be read: {exc.strerror or exc}"
        size = os.fstat(fd).st_size
        if size != record.bytes:
            os.close(fd)
            return f"audio file {full} has {size:,} bytes, the cassette declares {record.bytes:,}"
        self.files[record.id] = record
        self._fds[record.id] = fd
        return None

    def check_ref(self, ref: AudioRef) -> str | None:
        declared = self.files.get(ref.file)
        if declared is None:
            return f"the frame's audio refers to file {ref.file!r}, which no audio record declared before it"
        if ref.offset < 0 or ref.length < 0 or ref.offset + ref.length > declared.bytes:
            return (
                f"the frame's audio ({ref.length:,} bytes at offset {ref.offset:,}) lies outside "
                f"file {ref.file!r} ({declared.bytes:,} bytes)"
            )
        return None

    def fd(self, file_id: str) -> int:
        return self._fds[file_id]

    def read(self, ref: AudioRef) -> bytes:
        data = os.pread(self._fds[ref.file], ref.length, ref.offset)
        if len(data) != ref.length:
            raise OSError(f"audio file {self.files[ref.file].path} changed on disk while being read")
        return data

    def resolve(self, frame: Frame) -> Frame:
        """The frame with its audio put back inline (``frame`` itself if it has none)."""
        ref = frame.audio
        if ref is msgspec.UNSET or frame.json is msgspec.UNSET:
            return frame
        raw = splice_audio(bytes(frame.json), ref.field, self.read(ref))
        return msgspec.structs.replace(frame, audio=msgspec.UNSET, json=msgspec.Raw(raw))

    def verify(self, file_id: str) -> str | None:
        """Whether a declared file's contents still have its SHA-256; what is wrong, or ``None``."""
        declared = self.files[file_id]
        digest = hashlib.sha256()
        fd = self._fds[file_id]
        offset = 0
        while chunk := os.pread(fd, _READ_CHUNK, offset):
            digest.update(chunk)
            offset += len(chunk)
        if digest.hexdigest() != declared.sha256:
            return (
                f"audio file {self.base / declared.path} is damaged: its SHA-256 is "
                f"{digest.hexdigest()[:16]}..., the cassette declares {declared.sha256[:16]}..."
            )
        return None

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


# -- writing ---------------------------------------------------------------------------


@dataclass
class _Spool:
    """One stream's audio being written to a temporary file in the store."""

    id: str
    path: Path
    fd: int
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    size: int = 0

    def append(self, data: bytes) -> int:
        offset = self.size
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.digest.update(data)
        self.size += len(data)
        return offset


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`write_cassette` wrote: the cassette, its format, and the audio files."""

    path: Path
    format: int
    audio_files: tuple[Path, ...]
    frames_out_of_line: int
    cassette_bytes: int


def _write_atomically(
    path: Path, chunks: Iterable[bytes], header: Callable[[], bytes | None] | None = None
) -> int:
    """Write ``chunks`` beside ``path``, then move them over it. ``header``, called once
    everything is written, may give a first line to write over the first one (of the same
    length): the format the records turned out to need."""
    from .codec import _fsync_dir

    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    size = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise CassetteWriteError(path, f"cannot be written: {exc.strerror or exc}") from None
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
                size += n
        first = header() if header is not None else None
        if first is not None:
            os.pwrite(fd, first, 0)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(partial, path)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        partial.unlink(missing_ok=True)
        raise CassetteWriteError(path, f"cannot be written: {exc.strerror or exc}") from None
    except BaseException:
        if fd >= 0:
            os.close(fd)
        partial.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return size


def write_cassette(
    records: Iterable[Record], path: str | os.PathLike[str], *, audio: AudioMode = "files"
) -> ConvertResult:
    """Write records (audio inline, as a reader yields them) as a cassette at ``path``, atomically.

    ``audio="files"``: audio events keep their audio in ``rtreplay-audio/`` beside ``path``
    (format 2; format 1 if no frame had any); ``"inline"``: everything in the one file
    (format 1). The records are written as they are: redact them first (the writer and
    the recorder do). Raises :class:`~rtreplay.errors.CassetteWriteError`.
    """
    from .codec import encode_record

    target = Path(path)
    if audio == "inline":
        return _write_inline(records, target)
    store = target.parent / AUDIO_DIR
    spools: dict[tuple[int, str], _Spool] = {}
    header: Header | None = None
    body: list[bytes] = []
    moved = 0
    http = False  # an HttpExchange record needs format 2 too
    try:
        for record in records:
            if isinstance(record, Header):
                header = record
                continue
            if isinstance(record, AudioFile):
                continue
            if isinstance(record, HttpExchange):
                http = True
            if isinstance(record, Frame):
                if record.audio is not msgspec.UNSET:
                    raise ValueError("write_cassette() takes frames with their audio inline")
                if audio == "files" and record.json is not msgspec.UNSET:
                    parts = split_audio(bytes(record.json))
                    if parts is not None:
                        stripped, field_name, data = parts
                        key = (record.conn, record.dir)
                        spool = spools.get(key)
                        if spool is None:
                            spool = _open_spool(store, f"c{record.conn}-{record.dir}")
                            spools[key] = spool
                        offset = spool.append(data)
                        record = msgspec.structs.replace(
                            record,
                            json=msgspec.Raw(stripped),
                            audio=AudioRef(spool.id, field_name, offset, len(data)),
                        )
                        moved += 1
            body.append(encode_record(record))
        declarations, files = _finish_spools(store, spools)
    except BaseException:
        for spool in spools.values():
            if spool.fd >= 0:
                os.close(spool.fd)
            spool.path.unlink(missing_ok=True)
        raise
    if header is None:
        header = Header()
    version = AUDIO_FILES_FORMAT if declarations or http else FORMAT_VERSION
    head = Header(version, header.rtreplay, header.created)
    lines = [encode_record(head), *(encode_record(d) for d in declarations)]
    size = _write_atomically(target, [b"".join(lines), *body])
    return ConvertResult(target, version, tuple(files), moved, size)


def _write_inline(records: Iterable[Record], target: Path) -> ConvertResult:
    from .codec import encode_record

    written: list[Header] = []
    http: list[bool] = []

    def lines() -> Iterator[bytes]:
        first = True
        for record in records:
            if first:
                header = record if isinstance(record, Header) else Header()
                written.append(Header(FORMAT_VERSION, header.rtreplay, header.created))
                yield encode_record(written[0])
                first = False
                if isinstance(record, Header):
                    continue
            if isinstance(record, (Header, AudioFile)):
                continue
            if isinstance(record, Frame) and record.audio is not msgspec.UNSET:
                raise ValueError("write_cassette() takes frames with their audio inline")
            if isinstance(record, HttpExchange) and not http:
                http.append(True)
            yield encode_record(record)

    def header() -> bytes | None:
        # HTTP exchanges need format 2: say so in the header (a line of the same length).
        if not http or not written:
            return None
        return encode_record(msgspec.structs.replace(written[0], format=HTTP_FORMAT))

    size = _write_atomically(target, lines(), header)
    return ConvertResult(target, HTTP_FORMAT if http else FORMAT_VERSION, (), 0, size)


def _open_spool(store: Path, stream: str) -> _Spool:
    try:
        store.mkdir(parents=True, exist_ok=True)
        path = store / f".{stream}.{os.getpid()}.partial"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise CassetteWriteError(store, f"cannot write audio files: {exc.strerror or exc}") from None
    return _Spool(stream, path, fd)


def _finish_spools(
    store: Path, spools: dict[tuple[int, str], _Spool]
) -> tuple[list[AudioFile], list[Path]]:
    """Sync each stream, give it its content's name, and sync the directory: the audio is
    on the disk before any cassette refers to it."""
    from .codec import _fsync_dir

    declarations: list[AudioFile] = []
    files: list[Path] = []
    for spool in spools.values():
        try:
            os.fsync(spool.fd)
        finally:
            os.close(spool.fd)
            spool.fd = -1
        hexdigest = spool.digest.hexdigest()
        final = store / f"{hexdigest}{AUDIO_SUFFIX}"
        try:
            if final.exists() and final.stat().st_size == spool.size:
                spool.path.unlink()  # the same audio is already stored
            else:
                os.replace(spool.path, final)
        except OSError as exc:
            raise CassetteWriteError(final, f"cannot be written: {exc.strerror or exc}") from None
        declarations.append(AudioFile(spool.id, f"{AUDIO_DIR}/{final.name}", hexdigest, spool.size))
        files.append(final)
    if spools:
        _fsync_dir(store)
    return declarations, files


def read_inline(path: str | os.PathLike[str]) -> Iterator[Record]:
    """A cassette's records with every frame's audio inline, whatever its format; a
    damaged audio file (its SHA-256 differs) is a :class:`CassetteFormatError`."""
    from .codec import CassetteReader

    with CassetteReader(path, verify_audio=True) as reader:
        yield from reader


def convert(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str] | None = None,
    *,
    audio: AudioMode = "files",
) -> ConvertResult:
    """Rewrite a cassette with its audio out of line (``"files"``) or inline (``"inline"``).

    ``target`` defaults to ``source`` (replaced atomically). The replay of the result is
    byte for byte the replay of the source. Raises
    :class:`~rtreplay.errors.CassetteError` for an unreadable source, one of whose audio
    files is damaged included.
    """
    src = Path(source)
    dst = Path(target) if target is not None else src
    if not src.exists():
        from .errors import CassetteNotFoundError

        raise CassetteNotFoundError(src)
    if dst.is_dir():
        raise CassetteError(dst, "is a directory, not a cassette file")
    # Streamed: the target is written beside itself and renamed only once the source has
    # been read to the end, so the target may be the source.
    return write_cassette(read_inline(src), dst, audio=audio)
