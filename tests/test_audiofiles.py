"""Cassette format 2: audio out of line, replayed byte for byte, written in a crash-safe order."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from rtreplay import audiofiles
from rtreplay._index import CassetteIndex
from rtreplay.audiofiles import AUDIO_DIR, convert, splice_audio, split_audio
from rtreplay.cassette import Header
from rtreplay.cli import main
from rtreplay.codec import CassetteReader, CassetteWriter, load, save
from rtreplay.errors import CassetteFormatError
from rtreplay.server import ReplayServer
from rtreplay.validate import validate_cassette

from . import clients
from .conftest import CASSETTES, timeout

AUDIO_CASSETTES = ["audio-server-vad.jsonl", "audio-vad-real.jsonl", "interruption.jsonl", "transcription.jsonl"]
pytestmark = pytest.mark.timeout(60)


async def _replay_raw(path: Path, plan_source: Path) -> list[Any]:
    """What a plain websockets client receives, message by message, replaying ``path``."""
    plan = clients.script(plan_source)
    got: list[Any] = []
    query = "&".join(f"{k}={v}" for k, v in plan.query.items())
    # Times kept as recorded: byte for byte, with nothing moved to replay time.
    async with ReplayServer(path, shift_times=False) as server:
        async with connect(f"{server.url}?{query}", max_size=None, open_timeout=timeout(10)) as ws:
            for step in plan.steps:
                if step.send is not None:
                    await ws.send(step.send)
                else:
                    got.append(await ws.recv(decode=False))
    assert server.report.ok, str(server.report)
    assert server.report.complete, str(server.report)
    return got


@pytest.mark.parametrize("name", AUDIO_CASSETTES)
async def test_every_audio_cassette_replays_byte_for_byte_after_converting_both_ways(
    name: str, tmp_path: Path
) -> None:
    original = CASSETTES / name
    files = tmp_path / "files" / name
    back = tmp_path / "back" / name
    convert(original, files, audio="files")
    convert(files, back, audio="inline")
    assert back.read_bytes() == original.read_bytes(), "files -> inline gives back the very same file"
    recorded = [f.payload_bytes() for f in load(original).connections[0].frames if f.dir == "server"]
    for path in (original, files, back):
        assert await _replay_raw(path, original) == recorded, path


@pytest.mark.parametrize("name", ["audio-vad-real.jsonl", "interruption.jsonl", "transcription.jsonl"])
def test_out_of_line_cassettes_are_small_readable_lines(name: str, tmp_path: Path) -> None:
    result = convert(CASSETTES / name, tmp_path / name, audio="files")
    assert result.format == 2 and result.frames_out_of_line > 0
    text = (tmp_path / name).read_text()
    assert len(text) < (CASSETTES / name).stat().st_size / 5
    for line in text.splitlines()[1:]:
        record = json.loads(line)
        assert len(line) < 3000, "no base64 audio left in the lines"
        if record["kind"] == "frame" and "audio" in record:
            event = record["json"]
            assert event[record["audio"]["field"]] == "", "the JSON keeps an empty string where the audio was"
    stored = {p.name for p in (tmp_path / AUDIO_DIR).iterdir()}
    assert all(len(n) == len("0" * 64 + ".raw") for n in stored)


def test_the_audio_files_hold_the_decoded_audio_three_quarters_of_its_base64(tmp_path: Path) -> None:
    name = "audio-vad-real.jsonl"
    result = convert(CASSETTES / name, tmp_path / name, audio="files")
    streams: dict[str, bytearray] = {}
    text = frames = 0
    for frame in load(CASSETTES / name).connections[0].frames:
        event = frame.event()
        field = audiofiles.AUDIO_FIELDS.get(event.get("type", "")) if isinstance(event, dict) else None
        if field is not None:
            streams.setdefault(frame.dir, bytearray()).extend(base64.b64decode(event[field], validate=True))
            text += len(event[field])
            frames += 1
    stored = {p.read_bytes() for p in result.audio_files}
    assert stored == {bytes(b) for b in streams.values()}, "each file is one direction's audio, end to end"
    assert 0 <= text * 3 // 4 - sum(len(b) for b in stored) <= 2 * frames  # padding aside


@given(audio=st.binary(min_size=48, max_size=3000), field=st.sampled_from(["delta", "audio"]))
def test_any_audio_comes_back_as_the_very_same_base64(audio: bytes, field: str) -> None:
    kind = "response.output_audio.delta" if field == "delta" else "input_audio_buffer.append"
    message = json.dumps({"type": kind, field: base64.b64encode(audio).decode(), "event_id": "e"}).encode()
    parts = split_audio(message)
    assert parts is not None
    stripped, got_field, data = parts
    assert (got_field, data) == (field, audio)
    assert splice_audio(stripped, field, data) == message


@pytest.mark.parametrize("name", ["audio-vad-real.jsonl", "interruption.jsonl"])
def test_the_replay_index_of_format_2_is_that_of_format_1(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = convert(CASSETTES / name, tmp_path / name, audio="files").path

    def audio_of(index: CassetteIndex) -> list[tuple[int, int, int, bytes]]:
        return [
            (c.index, c.audio_len, c.audio_end, c.audio_digest)
            for ic in index.connections
            for c in ic.clients
        ] + [(-1, ic.audio_total, 0, ic.tail_audio_digest) for ic in index.connections]

    assert audio_of(CassetteIndex.load(path)) == audio_of(CassetteIndex.load(CASSETTES / name))
    # Unless audio content is compared, a client's audio is not even read: its length is
    # in the reference.
    reads: list[object] = []
    real_read = audiofiles.AudioStore.read
    monkeypatch.setattr(audiofiles.AudioStore, "read", lambda self, ref: reads.append(ref) or real_read(self, ref))
    lean = CassetteIndex.load(path, digests=False)
    assert reads == []
    assert [c.audio_end for ic in lean.connections for c in ic.clients] == [
        c.audio_end for ic in CassetteIndex.load(CASSETTES / name).connections for c in ic.clients
    ]


def test_the_same_audio_is_stored_once_for_many_cassettes(tmp_path: Path) -> None:
    convert(CASSETTES / "interruption.jsonl", tmp_path / "a.jsonl", audio="files")
    first = sorted((tmp_path / AUDIO_DIR).iterdir())
    convert(CASSETTES / "interruption.jsonl", tmp_path / "b.jsonl", audio="files")
    assert sorted((tmp_path / AUDIO_DIR).iterdir()) == first
    assert validate_cassette(tmp_path / "a.jsonl") == [] and validate_cassette(tmp_path / "b.jsonl") == []


def test_a_cassette_without_audio_events_stays_format_1(tmp_path: Path) -> None:
    result = convert(CASSETTES / "function-call.jsonl", tmp_path / "f.jsonl", audio="files")
    assert result.format == 1 and result.audio_files == ()
    assert (tmp_path / "f.jsonl").read_bytes() == (CASSETTES / "function-call.jsonl").read_bytes()
    assert not (tmp_path / AUDIO_DIR).exists() or not any((tmp_path / AUDIO_DIR).iterdir())


@pytest.mark.parametrize(
    "message",
    [
        b'{"type":"input_audio_buffer.append","audio":"' + b"QUJD" * 40 + b'"}',
        b'{"type": "response.output_audio.delta", "delta": "' + b"AAEC" * 30 + b'", "obfuscation": "x"}',
        b'{"delta":"' + b"AAEC" * 30 + b'","type":"response.audio.delta","event_id":"e"}',
    ],
)
def test_a_message_is_rebuilt_exactly_from_its_parts(message: bytes) -> None:
    parts = split_audio(message)
    assert parts is not None
    stripped, field, data = parts
    assert len(stripped) < len(message) and field in ("audio", "delta")
    assert splice_audio(stripped, field, data) == message


@pytest.mark.parametrize(
    "message",
    [
        b'{"type":"input_audio_buffer.append","audio":"QUJD"}',  # too short to be worth it
        b'{"type":"input_audio_buffer.append","audio":"' + b"QUJD" * 40 + b'\\n"}',  # an escape
        b'{"type":"input_audio_buffer.append","audio":"' + b"Q" * 160 + b'","x":{"audio":""}}',  # two places
        b'{"type":"conversation.item.create","audio":"' + b"QUJD" * 40 + b'"}',  # not an audio event
        b'{"type":"input_audio_buffer.append","audio":"' + b"QUJD" * 40 + b'QR=="}',  # bits in the padding
        b'{"type":"input_audio_buffer.append","audio":"' + b"QUJD" * 40 + b'QQ"}',  # padding left out
        b'{"type":"input_audio_buffer.append","audio":"' + b"QUJD" * 40 + b'Q#=="}',  # not the alphabet
    ],
)
def test_audio_that_could_not_be_rebuilt_exactly_stays_inline(message: bytes) -> None:
    assert split_audio(message) is None


def test_audio_is_on_disk_before_the_cassette_that_refers_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src: Any, dst: Any) -> None:
        steps.append(f"rename {Path(dst).name}")
        real_replace(src, dst)

    def fsync(fd: int) -> None:
        steps.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    convert(CASSETTES / "interruption.jsonl", tmp_path / "i.jsonl", audio="files")
    cassette_at = steps.index("rename i.jsonl")
    audio_renames = [i for i, s in enumerate(steps) if s.endswith(".raw")]
    assert len(audio_renames) == 2 and max(audio_renames) < cassette_at
    # each audio file synced before its rename, the directory after them, the cassette before its own
    assert steps[audio_renames[0] - 1] == "fsync" and steps[max(audio_renames) + 1] == "fsync"
    assert steps[cassette_at - 1] == "fsync"


def test_a_crash_before_the_cassette_is_written_leaves_the_old_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "i.jsonl"
    shutil.copy(CASSETTES / "text-response.jsonl", target)
    before = target.read_bytes()

    def crash(path: Path, chunks: Any) -> int:
        raise KeyboardInterrupt  # the process dies after the audio, before the cassette

    monkeypatch.setattr(audiofiles, "_write_atomically", crash)
    with pytest.raises(KeyboardInterrupt):
        convert(CASSETTES / "interruption.jsonl", target, audio="files")
    assert target.read_bytes() == before
    assert not [p for p in tmp_path.rglob("*.partial")], "no temporary file left behind"


def test_the_writer_can_finish_a_recording_with_its_audio_in_files(tmp_path: Path) -> None:
    cassette = load(CASSETTES / "transcription.jsonl")
    path = save(cassette, tmp_path / "t.jsonl", audio="files")
    with CassetteReader(path) as reader:
        records = list(reader)
    assert isinstance(records[0], Header) and records[0].format == 2
    assert load(path).connections[0].frames == cassette.connections[0].frames
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ValueError, match="inline"):
        CassetteWriter(tmp_path / "x.jsonl", audio="zip")  # type: ignore[arg-type]


def _v2(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "a.jsonl"
    convert(CASSETTES / "interruption.jsonl", path, audio="files")
    return path, path.read_text().splitlines(keepends=True)


def test_a_missing_audio_file_names_the_cassette_line_and_the_file(tmp_path: Path) -> None:
    path, lines = _v2(tmp_path)
    declared = json.loads(lines[1])
    (tmp_path / declared["path"]).unlink()
    with pytest.raises(CassetteFormatError) as info:
        load(path)
    assert info.value.line == 2
    assert declared["path"].split("/")[1] in str(info.value) and "missing" in str(info.value)
    assert main(["validate", str(path)]) == 2
    assert main(["show", str(path)]) == 2


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda r: {**r, "path": "../../etc/passwd"}, "must be relative"),
        (lambda r: {**r, "bytes": r["bytes"] + 1}, "declares"),
    ],
)
def test_bad_audio_declarations_are_refused(tmp_path: Path, edit: Any, words: str) -> None:
    path, lines = _v2(tmp_path)
    lines[1] = json.dumps(edit(json.loads(lines[1]))) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(CassetteFormatError, match=words):
        load(path)


def test_a_reference_outside_its_file_or_in_a_format_1_cassette_is_refused(tmp_path: Path) -> None:
    path, lines = _v2(tmp_path)
    at = next(i for i, line in enumerate(lines) if '"audio":{"file"' in line)
    record = json.loads(lines[at])
    record["audio"]["offset"] = 10**9
    bad = [*lines]
    bad[at] = json.dumps(record) + "\n"
    path.write_text("".join(bad))
    with pytest.raises(CassetteFormatError, match="lies outside"):
        load(path)
    one = [lines[0].replace('"format":2', '"format":1'), *lines[1:]]
    path.write_text("".join(one))
    with pytest.raises(CassetteFormatError, match="format 1"):
        load(path)


def test_validate_finds_a_damaged_audio_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, lines = _v2(tmp_path)
    audio = tmp_path / json.loads(lines[1])["path"]
    data = bytearray(audio.read_bytes())
    data[100] ^= 0xFF
    audio.write_bytes(bytes(data))
    assert main(["validate", str(path)]) == 1
    assert "is damaged" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [["convert", "--audio", "inline"], ["convert", "--audio", "files"], ["redact", "--pattern", "weather"]],
    ids=["convert-inline", "convert-files", "redact"],
)
def test_a_rewrite_refuses_a_damaged_audio_file_instead_of_baking_it_in(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rewritten, the damaged bytes became the cassette's (inline, or a new file named by
    # their own hash), and validate said "ok": the damage could no longer be found.
    path, lines = _v2(tmp_path)
    audio = tmp_path / json.loads(lines[1])["path"]
    data = bytearray(audio.read_bytes())
    data[100] ^= 0xFF
    audio.write_bytes(bytes(data))
    before = path.read_bytes()
    assert main([*command, str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: audio file" in err and "is damaged" in err
    assert path.read_bytes() == before
    assert main(["validate", str(path)]) == 1


def test_rtreplay_convert_reports_what_it_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "i.jsonl"
    shutil.copy(CASSETTES / "interruption.jsonl", target)
    assert main(["convert", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"{target}: format 2, {(CASSETTES / 'interruption.jsonl').stat().st_size:,} -> " in out and "audio of 54 frames in 2 file(s)" in out
    assert main(["convert", "--audio", "inline", str(target)]) == 0
    assert target.read_bytes() == (CASSETTES / "interruption.jsonl").read_bytes()
    assert main(["convert", str(target), str(target), "--out", str(tmp_path / "x")]) == 2


def test_a_recording_can_be_written_with_its_audio_in_files(upstream: Any, tmp_path: Path) -> None:
    from websockets.sync.client import connect as sync_connect

    from rtreplay.recorder import Recorder

    path = tmp_path / "rec.jsonl"
    append = json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA" * 1600})
    with Recorder(path, upstream=upstream.websocket_base_url, audio="files").in_thread() as rec:
        with sync_connect(rec.url + "?model=gpt-realtime", open_timeout=timeout(10)) as ws:
            ws.recv(timeout=timeout(10))
            for _ in range(3):
                ws.send(append)
            ws.send(json.dumps({"type": "response.create"}))
            while json.loads(ws.recv(timeout=timeout(10)))["type"] != "response.done":
                pass
    assert path.read_text().startswith('{"kind":"header","format":2')
    assert validate_cassette(path) == []
    assert not list(tmp_path.glob("*.partial")) and not list((tmp_path / AUDIO_DIR).glob(".*"))
    frames = load(path).connections[0].frames
    assert [f.payload() for f in frames if f.dir == "client"][:3] == [append] * 3
    assert any('"response.output_audio.delta"' in str(f.payload()) for f in frames)
