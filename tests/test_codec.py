"""The cassette reader and writer: round trips, bad input, crashes, atomic replacement."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtreplay import (
    Cassette,
    CassetteError,
    CassetteFormatError,
    CassetteNotFoundError,
    CassetteReader,
    CassetteTruncatedWarning,
    CassetteVersionError,
    CassetteWriter,
    Close,
    Frame,
    Header,
    Open,
    Reject,
    codec,
    load,
)
from rtreplay.codec import decode_records, encode_records

from .conftest import CASSETTES, timeout

# -- strategies ------------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)
offsets = st.floats(0, 1e5, allow_nan=False).map(lambda t: round(t, 6))


@st.composite
def json_messages(draw: st.DrawFn) -> str:
    """JSON as clients and servers send it: compact, spaced, indented, ASCII-escaped or not."""
    value = draw(st.dictionaries(text, json_values, max_size=5) | json_values)
    style = draw(st.sampled_from(["compact", "spaced", "indented", "unicode"]))
    if style == "compact":
        return json.dumps(value, separators=(",", ":"))
    if style == "spaced":
        return json.dumps(value)
    if style == "indented":
        return json.dumps(value, indent=2)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


messages = json_messages() | text | st.binary(max_size=64)


@st.composite
def sessions(draw: st.DrawFn) -> list[object]:
    """Records of one to three connections, interleaved as concurrent ones are."""
    records: list[object] = [Header(created=draw(st.none() | st.just("2026-11-21T00:00:00Z")))]
    n = draw(st.integers(1, 3))
    pending: list[list[object]] = []
    for conn in range(n):
        own: list[object] = [
            Open(
                conn=conn,
                path=draw(st.sampled_from(["/v1/realtime", "/realtime", "/openai/realtime"])),
                query=draw(st.dictionaries(text, text, max_size=3)),
                protocol=draw(st.sampled_from(["ga", "beta"])),
                subprotocol=draw(st.none() | st.just("realtime")),
                headers=draw(st.dictionaries(text, text, max_size=3)),
            )
        ]
        if draw(st.booleans()) and conn == n - 1 and draw(st.booleans()):
            own.append(Reject(conn=conn, t=draw(offsets), status=401, body=draw(text)))
        else:
            for message in draw(st.lists(messages, max_size=6)):
                own.append(
                    Frame.from_message(
                        conn, draw(offsets), draw(st.sampled_from(["client", "server"])), message
                    )
                )
            if draw(st.booleans()):
                own.append(
                    Close(
                        conn=conn,
                        t=draw(offsets),
                        code=draw(st.none() | st.sampled_from([1000, 1001, 1006, 1008, 1011, 4000])),
                        reason=draw(text),
                        by=draw(st.sampled_from([None, "client", "server"])),
                    )
                )
        pending.append(own)
    # Interleave, keeping each connection's own order.
    while any(pending):
        choices = [p for p in pending if p]
        records.append(draw(st.sampled_from(choices)).pop(0))
    return records


# -- round trips -----------------------------------------------------------------------


@given(sessions())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_decode_of_encode_gives_back_the_records(records: list[object]) -> None:
    data = encode_records(records)  # type: ignore[arg-type]
    assert decode_records(data) == records
    assert data.count(b"\n") == len(records), "one record per line, never spanning lines"


@given(json_messages())
def test_json_frames_replay_semantically_identical_and_compact_ones_byte_identical(
    message: str,
) -> None:
    frame = decode_records(encode_records([Header(), Open(conn=0), Frame.from_message(0, 0.5, "server", message)]))[2]
    assert isinstance(frame, Frame)
    assert frame.json is not msgspec.UNSET, "a JSON frame is stored as JSON, not as a string"
    assert json.loads(frame.payload()) == json.loads(message)
    if "\n" not in message:
        assert frame.payload() == message.strip()


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_text_frames_that_are_not_json_survive_as_text(message: str) -> None:
    frame = Frame.from_message(0, 0.0, "client", message)
    back = decode_records(encode_records([Header(), Open(conn=0), frame]))[2]
    assert isinstance(back, Frame)
    assert back.payload() == message or json.loads(back.payload()) == json.loads(message)


def test_fifteen_mebibyte_payloads_round_trip_through_a_file(tmp_path: Path) -> None:
    audio = "A" * (15 * 1024 * 1024)
    event = json.dumps({"type": "input_audio_buffer.append", "audio": audio}, separators=(",", ":"))
    blob = os.urandom(15 * 1024 * 1024)
    path = tmp_path / "big.jsonl"
    with CassetteWriter(path) as writer:
        writer.write(Open(conn=0))
        writer.write(Frame.from_message(0, 0.1, "client", event))
        writer.write(Frame.from_message(0, 0.2, "server", blob))
        writer.write(Close(conn=0, t=0.3, by="client"))
    frames = load(path).connections[0].frames
    assert frames[0].payload() == event
    assert frames[1].payload() == blob


def test_every_sample_cassette_reads_back(tmp_path: Path) -> None:
    samples = sorted(CASSETTES.glob("*.jsonl"))
    assert len(samples) >= 4
    for sample in samples:
        cassette = load(sample)
        assert cassette.connections, sample
        assert not cassette.warnings, sample
        for conn in cassette.connections:
            assert conn.close is not None or conn.reject is not None, sample
            first = conn.frames[0].event() if conn.frames else None
            if conn.reject is None:
                assert isinstance(first, dict) and first["type"] in (
                    "session.created",
                    "transcription_session.created",
                ), sample
        # Writing it again gives a cassette with the same records.
        copy = tmp_path / sample.name
        with CassetteWriter(copy, header=cassette.header) as writer:
            writer.write_many(r for r in cassette.records() if not isinstance(r, Header))
        assert list(CassetteReader(copy)) == list(CassetteReader(sample))


def test_the_reader_streams_without_holding_the_file(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    with CassetteWriter(path) as writer:
        writer.write(Open(conn=0))
        for i in range(2000):
            writer.write(Frame.from_message(0, i / 1000, "server", '{"type":"x"}'), flush=False)
    with CassetteReader(path) as reader:
        it = iter(reader)
        next(it)
        next(it)
        assert reader.line == 2
        assert reader.offset > 0
        assert sum(1 for _ in it) == 2000


# -- bad input -------------------------------------------------------------------------


def write_lines(path: Path, *lines: str | bytes) -> Path:
    path.write_bytes(b"".join((ln.encode() if isinstance(ln, str) else ln) + b"\n" for ln in lines))
    return path


HEADER = '{"kind":"header","format":1,"rtreplay":"0.1.0"}'
OPEN = '{"kind":"open","conn":0,"path":"/v1/realtime"}'


# The words are rtreplay's own: none of them may come from msgspec's (or any dependency's)
# wording of an error, which changes between releases (msgspec 0.23 reworded invalid UTF-8).
MALFORMED = [
    ([HEADER, OPEN, '{"kind":"frame","conn":0,"t":0.1,"dir":"server","json":{"a":}'], 3,
     "not valid JSON at byte 61 of the line: after '...server\",\"json\":{\"a\":' comes '}'"),
    ([HEADER, OPEN, '{"kind":"frame","conn":0,"t":0.1,"dir":"ser'], 3, "not valid JSON at byte 40 of the line: after '...nn\":0,\"t\":0.1,\"dir\":' comes '\"ser'"),
    ([HEADER, OPEN, '{"kind":"close","conn":0,"t":NaN}'], 3, "NaN is not a JSON number"),
    ([HEADER, OPEN, '[{"kind":"close","conn":0,"t":1}]'], 3, "a record must be a JSON object, not an array"),
    ([HEADER, OPEN, '{"kind":"tape","conn":0}'], 3, "unknown record kind 'tape'"),
    ([HEADER, OPEN, '{"conn":0,"t":1}'], 3, "a record needs a 'kind'"),
    ([HEADER, OPEN, '{"kind":"frame","conn":0,"dir":"server","json":{}}'], 3, "invalid frame record: missing required field 't'"),
    ([HEADER, OPEN, '{"kind":"frame","conn":"0","t":0,"dir":"server","json":{}}'], 3,
     "invalid frame record: field 'conn' must be an integer, not a string \"0\""),
    ([HEADER, OPEN, '{"kind":"frame","conn":0,"t":0,"dir":"sideways","json":{}}'], 3,
     "field 'dir' must be one of 'client', 'server', not a string \"sideways\""),
    ([HEADER, OPEN, '{"kind":"close","conn":0,"t":1,"by":7}'], 3, "field 'by' must be one of 'client', 'server' or null, not a number 7"),
    ([HEADER, '{"kind":"open","conn":0,"headers":{"a":1}}'], 2, "field 'headers' must be an object of strings"),
    ([HEADER, OPEN, '{"kind":"frame","conn":0,"t":0,"dir":"server"}'], 3, "exactly one of 'json', 'text' or 'binary'"),
    ([HEADER, OPEN, '{"kind":"frame","conn":0,"t":0,"dir":"server","text":"a","json":1}'], 3, "exactly one"),
    ([HEADER, OPEN, '{"kind":"frame","conn":0,"t":-1,"dir":"server","json":{}}'], 3, "finite number of seconds"),
    ([HEADER, '{"kind":"frame","conn":3,"t":0,"dir":"server","json":{}}'], 2, "never opened"),
    ([HEADER, OPEN, '{"kind":"close","conn":0,"t":1}', '{"kind":"frame","conn":0,"t":2,"dir":"server","json":{}}'], 4, "after it was closed"),
    ([HEADER, OPEN, OPEN], 3, "opened a second time"),
    ([HEADER, OPEN, HEADER], 3, "a second header"),
    ([OPEN], 1, "first record must be a header"),
    (["hello world"], 1, "not an rtreplay cassette"),
    (['{"kind":"header","format":1,"rtreplay":2}'], 1, "invalid header record: field 'rtreplay' must be a string, not a number 2"),
    ([HEADER, OPEN, '{"kind":"frame","conn":0,"t":0,"dir":"server","binary":"!!!"}'], 3,
     "field 'binary' must be base64 text, not a string \"!!!\""),
    ([HEADER, OPEN, b'{"kind":"frame","conn":0,"t":0,"dir":"server","text":"\xff"}'], 3,
     "not valid UTF-8 text: byte 55 of the line (0xff) is not part of a UTF-8 character"),
    ([HEADER, OPEN, b'{"kind":"frame","conn":0,"t":0,"dir":"server","json":{"a":"\xe2\x82"}}'], 3,
     "not valid UTF-8 text: byte 60 of the line (0xe2)"),
]


def test_a_null_field_is_said_once(tmp_path: Path) -> None:
    """'must be a number, not null', not 'not null null' (a kind and the value, both null)."""
    path = write_lines(tmp_path / "bad.jsonl", HEADER, OPEN, '{"kind":"frame","conn":0,"t":null,"dir":"server","json":{}}')
    with pytest.raises(CassetteFormatError) as info:
        load(path)
    assert str(info.value) == f"{path}:3: invalid frame record: field 't' must be a number, not null"


@pytest.mark.parametrize(("lines", "line", "words"), MALFORMED)
def test_malformed_lines_name_the_file_and_line(
    tmp_path: Path, lines: list[str | bytes], line: int, words: str
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(CassetteFormatError) as info:
        load(path)
    err = info.value
    assert err.line == line
    assert str(err).startswith(f"{path}:{line}: ")
    assert words in str(err)


class _RewordedDecoder:
    """A decoder that fails as the real one does, but says something else entirely."""

    def __init__(self, real: msgspec.json.Decoder[Any]) -> None:
        self.real = real

    def decode(self, data: bytes) -> Any:
        try:
            return self.real.decode(data)
        except msgspec.DecodeError:
            raise msgspec.DecodeError("Ein ganz anderer Wortlaut") from None
        except msgspec.ValidationError:
            raise msgspec.ValidationError("Ein ganz anderer Wortlaut") from None


@pytest.mark.parametrize(("lines", "line", "words"), MALFORMED)
def test_the_messages_are_the_same_whatever_msgspec_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str | bytes], line: int, words: str
) -> None:
    monkeypatch.setattr(codec, "_decoder", _RewordedDecoder(codec._decoder))
    monkeypatch.setattr(codec, "_probe_decoder", _RewordedDecoder(codec._probe_decoder))
    path = write_lines(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(CassetteFormatError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert words in str(info.value)
    assert "Wortlaut" not in str(info.value)


def test_a_future_format_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "future.jsonl", '{"kind":"header","format":3,"rtreplay":"9.0.0","new":1}')
    with pytest.raises(CassetteVersionError) as info:
        load(path)
    message = str(info.value)
    assert "format 3" in message and "rtreplay 9.0.0" in message
    assert "install a newer rtreplay" in message
    assert info.value.line == 1


def test_missing_empty_and_directory_cassettes_are_never_treated_as_empty(tmp_path: Path) -> None:
    with pytest.raises(CassetteNotFoundError) as missing:
        load(tmp_path / "nope.jsonl")
    assert isinstance(missing.value, FileNotFoundError)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(CassetteFormatError, match="empty file"):
        load(tmp_path / "empty.jsonl")
    with pytest.raises(CassetteError, match="is a directory"):
        load(tmp_path)


def test_a_truncated_last_line_keeps_every_complete_record_and_warns(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "cut.jsonl", HEADER, OPEN, '{"kind":"frame","conn":0,"t":0.1,"dir":"server","json":{"type":"a"}}')
    path.write_bytes(path.read_bytes() + b'{"kind":"frame","conn":0,"t":0.2,"dir":"ser')
    with pytest.warns(CassetteTruncatedWarning, match=r"cut\.jsonl:4: last line is cut short"):
        cassette = load(path)
    assert len(cassette.connections[0].frames) == 1
    assert cassette.warnings and "cut short" in cassette.warnings[0]


def test_a_cut_line_in_the_middle_is_an_error_not_a_warning(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "mid.jsonl", HEADER, OPEN, '{"kind":"frame","conn":0,"t":0.2,"dir":"ser', '{"kind":"close","conn":0,"t":1}')
    with pytest.raises(CassetteFormatError) as info:
        load(path)
    assert info.value.line == 3


def _mutations(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    kind = rng.randrange(8)
    if kind == 0:  # flip bytes
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)
    if kind == 1:  # cut the file anywhere
        return data[: rng.randrange(len(data))]
    if kind == 2:  # cut one line short
        i = rng.randrange(len(lines))
        lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        return b"\n".join(lines)
    if kind in (3, 4):  # remove a field / change its type
        i = rng.randrange(len(lines))
        try:
            record = json.loads(lines[i])
        except ValueError:
            return data
        if isinstance(record, dict) and record:
            key = rng.choice(sorted(record))
            if kind == 3:
                del record[key]
            else:
                record[key] = rng.choice([None, "x", 1.5, -3, [], {}, True, "🙂", 2**70])
            lines[i] = json.dumps(record).encode()
        return b"\n".join(lines)
    if kind == 5:  # duplicate, drop or swap lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        op = rng.randrange(3)
        if op == 0:
            lines.insert(j, lines[i])
        elif op == 1:
            del lines[i]
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    if kind == 6:  # insert garbage bytes
        pos = rng.randrange(len(data))
        return data[:pos] + os.urandom(rng.randint(1, 20)) + data[pos:]
    # change a number or a kind in place
    i = rng.randrange(len(lines))
    lines[i] = lines[i].replace(b'"frame"', b'"fram"').replace(b":0,", b":9,")
    return b"\n".join(lines)


def test_fuzzed_cassettes_raise_only_cassette_errors_with_a_line_number(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    samples = [p.read_bytes() for p in sorted(CASSETTES.glob("*.jsonl"))]
    target = tmp_path / "fuzz.jsonl"
    outcomes = {"read": 0, "error": 0, "truncated": 0}
    for _ in range(3000):
        data = _mutations(rng, rng.choice(samples))
        for _ in range(rng.randrange(3)):
            data = _mutations(rng, data) if data else data
        target.write_bytes(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                load(target)
            except CassetteError as exc:
                outcomes["error"] += 1
                assert exc.line is not None and exc.line >= 1, repr(exc)
                assert str(exc).startswith(f"{target}:{exc.line}: "), str(exc)
            else:
                outcomes["read"] += 1
        if any(issubclass(w.category, CassetteTruncatedWarning) for w in caught):
            outcomes["truncated"] += 1
    # The corruptions must actually exercise both outcomes.
    assert outcomes["error"] > 1000 and outcomes["read"] > 50 and outcomes["truncated"] > 10, outcomes


# -- the writer --------------------------------------------------------------------------


def test_recording_over_a_cassette_replaces_it_only_when_finished(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with CassetteWriter(path) as writer:
        writer.write(Open(conn=0, query={"model": "old"}))
    before = path.read_bytes()
    writer = CassetteWriter(path)
    writer.write(Open(conn=0, query={"model": "new"}))
    assert path.read_bytes() == before, "the old cassette is untouched while recording"
    assert writer.partial_path.exists() and writer.partial_path.parent == path.parent
    writer.close()
    assert load(path).connections[0].open.query == {"model": "new"}
    assert not writer.partial_path.exists()


def test_short_writes_are_finished_byte_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write the system takes only part of (a full pipe, a signal) is finished, in order."""

    def session(path: Path) -> bytes:
        with CassetteWriter(path, header=Header(created="2026-01-01T00:00:00Z")) as writer:
            writer.write(Open(conn=0, query={"model": "m"}))
            writer.write_messages(0, "server", [(0.1, b'{"type":"a"}', True), (0.2, b"\x00bin", False)] * 700)
            writer.write_messages(0, "client", [(0.3, "caf\u00e9 not json".encode(), True)])
        return path.read_bytes()

    expected = session(tmp_path / "whole.jsonl")
    calls = 0

    def stingy(fd: int, buffers: list[bytes]) -> int:
        nonlocal calls
        calls += 1
        return os.write(fd, b"".join(buffers)[:7])

    monkeypatch.setattr("rtreplay.codec._writev", stingy)
    assert session(tmp_path / "short.jsonl") == expected
    assert calls > len(expected) // 7  # every byte went through the short writes
    assert len(load(tmp_path / "short.jsonl").connections[0].frames) == 1401


def test_a_long_recording_is_streamed_to_disk_and_reads_back_exactly(tmp_path: Path) -> None:
    """Past two 8 MiB windows, the writer sends older parts of the file to the disk and out
    of the page cache (Linux); what it wrote is unchanged by that."""
    delta = {"type": "response.output_audio.delta", "delta": "QUJD" * 1600}
    message = json.dumps(delta, separators=(",", ":")).encode()
    path = tmp_path / "long.jsonl"
    with CassetteWriter(path) as writer:
        writer.write(Open(conn=0))
        for batch in range(130):  # ~55 MB
            writer.write_messages(0, "server", [(batch / 10, message, True)] * 64)
        if sys.platform.startswith("linux"):
            assert writer._dropped >= 16 << 20 and writer._written_out > writer._dropped
    frames = load(path).connections
    assert len(frames) == 1
    payloads = [f.payload_bytes() for f in frames[0].frames]
    assert len(payloads) == 130 * 64 and set(payloads) == {message}


def test_an_exception_while_recording_keeps_the_old_cassette(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with CassetteWriter(path) as writer:
        writer.write(Open(conn=0, query={"model": "old"}))
    with pytest.raises(RuntimeError), CassetteWriter(path) as writer:
        writer.write(Open(conn=0, query={"model": "new"}))
        raise RuntimeError("the test failed")
    assert load(path).connections[0].open.query == {"model": "old"}
    assert list(tmp_path.iterdir()) == [path]


def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    from rtreplay import CassetteWriteError

    with pytest.raises(CassetteWriteError, match="cannot be written"):
        CassetteWriter(tmp_path / "file" / "c.jsonl")


_CHILD = textwrap.dedent(
    """
    import sys
    from rtreplay import CassetteWriter, Frame, Open
    w = CassetteWriter(sys.argv[1])
    w.write(Open(conn=0))
    i = 0
    while True:
        payload = '{"type":"response.output_audio.delta","delta":"%s","n":%d}' % ("QUJD" * (i % 50), i)
        w.write(Frame.from_message(0, i / 1000, "server", payload))
        print(i, flush=True)
        i += 1
    """
)


def test_a_writer_killed_at_random_moments_leaves_every_record_it_wrote(tmp_path: Path) -> None:
    rng = random.Random(7)
    for attempt in range(5):
        path = tmp_path / f"killed-{attempt}.jsonl"
        with subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stdout is not None
            target = rng.randint(20, 3000)
            reported = -1
            for line in proc.stdout:
                reported = int(line)
                if reported >= target:
                    break
            os.kill(proc.pid, signal.SIGKILL)
            for line in proc.stdout:  # what it printed before dying
                reported = int(line)
            proc.wait(timeout(10))
        partial = next(tmp_path.glob(f"killed-{attempt}.jsonl.*.partial"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CassetteTruncatedWarning)
            frames = load(partial).connections[0].frames
        numbers = [json.loads(f.payload())["n"] for f in frames]
        assert numbers == list(range(len(numbers))), "in order, none lost in between"
        assert len(numbers) >= reported + 1, (len(numbers), reported)


def test_streaming_memory_does_not_grow_with_the_audio(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "hour.jsonl"
    delta = '{"type":"response.output_audio.delta","delta":"' + "QUJD" * 16_000 + '"}'
    with CassetteWriter(path) as writer:
        writer.write(Open(conn=0))
        for i in range(600):  # ~38 MB of audio deltas
            writer.write(Frame.from_message(0, i / 100, "server", delta), flush=i % 50 == 0)
    assert path.stat().st_size > 35_000_000
    tracemalloc.start()
    try:
        with CassetteReader(path) as reader:
            count = sum(1 for _ in reader)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 602  # header, open, 600 frames
    assert peak < 2_000_000, f"peak {peak:,} bytes while streaming a {path.stat().st_size:,} byte cassette"


@pytest.mark.parametrize(
    ("end", "message"),
    [
        (Close(0, 1.0, 99999, "", "client"), "close code 99999 cannot be sent"),
        (Reject(0, 0.1, 200, {}, ""), "reject status 200 is not a refusal"),
    ],
)
def test_save_refuses_what_load_would_refuse_and_writes_nothing(tmp_path: Path, end: Any, message: str) -> None:
    """A cassette built in code (a script, an edit) with an end no replay can send is
    refused by save(), not written for load() and `rtreplay serve` to refuse later."""
    cassette = load(CASSETTES / "text-response.jsonl")
    conn = cassette.connections[0]
    if isinstance(end, Close):
        conn.close = end
    else:
        conn.frames, conn.close, conn.reject = [], None, end
    target = tmp_path / "built.jsonl"
    with pytest.raises(CassetteFormatError, match=rf"connection 0: {message}.*nothing was written"):
        codec.save(cassette, target)
    assert list(tmp_path.iterdir()) == []


def _edited(edit: str) -> Cassette:
    """text-response.jsonl with one thing load() refuses, as code could build it."""
    import dataclasses

    cassette = load(CASSETTES / "text-response.jsonl")
    conn = cassette.connections[0]
    frame = conn.frames[2]
    if edit == "negative time":
        conn.frames[2] = msgspec.structs.replace(frame, t=-1.0)
    elif edit == "two payloads":
        conn.frames[2] = msgspec.structs.replace(frame, text="hello")
    elif edit == "newline in raw json":
        conn.frames[2] = msgspec.structs.replace(frame, json=msgspec.Raw(b'{"type":\n"response.created"}'))
    elif edit == "no payload":
        conn.frames[2] = msgspec.structs.replace(frame, json=msgspec.UNSET)
    elif edit == "malformed raw json":
        conn.frames[2] = msgspec.structs.replace(frame, json=msgspec.Raw(b'{"type": response.created}'))
    elif edit == "two values in raw json":
        conn.frames[2] = msgspec.structs.replace(frame, json=msgspec.Raw(b'{"type":"response.created"} {}'))
    elif edit == "empty raw json":
        conn.frames[2] = msgspec.structs.replace(frame, json=msgspec.Raw(b""))
    elif edit == "time not a number":
        conn.frames[2] = msgspec.structs.replace(frame, t=math.nan)
    elif edit == "infinite time":
        conn.frames[2] = msgspec.structs.replace(frame, t=math.inf)
    elif edit == "same connection twice":
        cassette.connections.append(dataclasses.replace(conn))
    elif edit == "negative connection":
        conn.open = msgspec.structs.replace(conn.open, conn=-1)
        conn.frames = [msgspec.structs.replace(f, conn=-1) for f in conn.frames]
        conn.close = None
    return cassette


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        ("negative time", "record 5 (a server frame of connection 0, session.updated): time offset t=-1.0 is not a finite number of seconds >= 0"),
        ("two payloads", "record 5 (a server frame of connection 0, session.updated): a frame needs exactly one of 'json', 'text' or 'binary' (it has 2)"),
        ("newline in raw json", "record 5 (a server frame of connection 0, response.created): not valid JSON"),
        # What the redactor meets before the file is written (it decodes every JSON frame):
        # refused as load() would refuse it, not with the redactor's own exception.
        ("no payload", "record 5 (a server frame of connection 0): a frame needs exactly one of 'json', 'text' or 'binary' (it has 0)"),
        ("malformed raw json", "record 5 (a server frame of connection 0): its 'json' is not valid JSON at byte 10: after '{\"type\": ' comes 'response.created}'"),
        ("two values in raw json", "record 5 (a server frame of connection 0): its 'json' is not valid JSON at byte 29: after '...\"response.created\"} ' comes '{}'"),
        ("empty raw json", "record 5 (a server frame of connection 0): its 'json' is not valid JSON at byte 1: the value is empty"),
        ("time not a number", "record 5 (a server frame of connection 0, session.updated): time offset t=nan is not a finite number of seconds >= 0"),
        ("infinite time", "record 5 (a server frame of connection 0, session.updated): time offset t=inf is not a finite number of seconds >= 0"),
        ("same connection twice", "record 24 (open of connection 0): connection 0 is opened a second time"),
        ("negative connection", "record 2 (open of connection -1): connection number -1 is negative"),
    ],
)
def test_save_reads_back_what_it_wrote_and_refuses_what_load_would(tmp_path: Path, edit: str, said: str) -> None:
    """Every check of the reader runs on what save() wrote, before it is moved into place:
    nothing saved fails to load, and what fails names its record."""
    target = tmp_path / "sub" / "built.jsonl"
    with pytest.raises(CassetteFormatError) as caught:
        codec.save(_edited(edit), target)
    assert said in str(caught.value) and str(caught.value).startswith(f"{target}: ")
    assert str(caught.value).endswith("load() would refuse it, so nothing was written")
    assert list(tmp_path.iterdir()) == [], "no cassette, no partial file, no directory"
