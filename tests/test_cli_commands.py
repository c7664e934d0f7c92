"""``rtreplay show``, ``diff``, ``audio``, ``redact``: on every bundled cassette, in pipes, on partial files."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import msgspec
import pytest

from rtreplay.cassette import Cassette, Close, Connection, Frame, Header, Open
from rtreplay.cli import _COMMANDS, main
from rtreplay.codec import load, save
from rtreplay.conversation import G711_ULAW, g711_to_pcm16

from .conftest import CASSETTES, timeout

SAMPLES = sorted(CASSETTES.glob("*.jsonl"))
AUDIO = ["audio-server-vad.jsonl", "audio-vad-real.jsonl", "interruption.jsonl", "transcription.jsonl"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtreplay", *args],
        capture_output=True, text=True, check=False, timeout=timeout(60),
        env={**os.environ, **(env or {})},
    )


# -- show ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_show_reads_every_bundled_cassette(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    cassette = load(path)
    for conn in cassette.connections:
        assert f"connection {conn.open.conn}: " in out
    assert "\033[" not in out, "plain when not on a terminal"
    assert main(["show", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [c["conn"] for c in doc["connections"]] == [c.open.conn for c in cassette.connections]
    assert all(c["entries"][-1]["kind"] == "end" for c in doc["connections"])


def test_show_tells_the_conversation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(CASSETTES / "transcription.jsonl")]) == 0
    out = capsys.readouterr().out
    assert 'user      audio 1.44 s (from 0.363 s, speech 0-1436 ms): "Meeting notes for Thursday."' in out
    assert main(["show", str(CASSETTES / "interruption.jsonl"), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)["connections"][0]["entries"]
    responses = [e for e in entries if e["kind"] == "response"]
    assert [(r["status"], r["reason"]) for r in responses] == [("cancelled", "client_cancelled"), ("completed", None)]
    assert responses[0]["latency"] == pytest.approx(0.388) and responses[0]["duration"] == pytest.approx(0.795)
    assert [e["kind"] for e in entries].count("truncate") == 1
    assert main(["show", str(CASSETTES / "errors-recoverable.jsonl"), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)["connections"][0]["entries"]
    errors = [(e["code"], e["culprit"]) for e in entries if e["kind"] == "error"]
    assert ("input_audio_buffer_commit_empty", "input_audio_buffer.commit") in errors


def test_show_colours_a_terminal_unless_no_color(tmp_path: Path) -> None:
    def on_a_terminal(extra_env: dict[str, str]) -> str:
        leader, follower = pty.openpty()
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        env.update(extra_env, TERM="xterm")
        process = subprocess.Popen(
            [sys.executable, "-m", "rtreplay", "show", str(CASSETTES / "text-response.jsonl")],
            stdout=follower, stderr=follower, env=env,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout(30))
        os.close(leader)
        return b"".join(chunks).decode()

    assert "\033[" in on_a_terminal({})
    assert "\033[" not in on_a_terminal({"NO_COLOR": "1"})
    assert "\033[" in run_cli("show", "--color", "always", str(CASSETTES / "text-response.jsonl")).stdout


def test_show_reads_what_a_killed_recorder_left(tmp_path: Path) -> None:
    data = (CASSETTES / "interruption.jsonl").read_bytes()
    partial = tmp_path / "interruption.jsonl.4242.partial"
    partial.write_bytes(data[: len(data) * 2 // 3])  # cut inside a line, before the close
    done = run_cli("show", str(partial))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("warning: ") == 1 and "cut short" in done.stderr
    assert "never closed: the recording stops here" in done.stdout
    assert "user      audio" in done.stdout
    for command in (["audio", str(partial), "--out", str(tmp_path / "a")], ["timeline", str(partial), "-o", str(tmp_path / "t.html")]):
        assert run_cli(*command).returncode == 0


def test_show_of_a_missing_connection_or_file_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(CASSETTES / "text-response.jsonl"), "--conn", "5"]) == 2
    assert "no connection 5" in capsys.readouterr().err
    assert main(["show", "nope.jsonl"]) == 2
    assert capsys.readouterr().err == "rtreplay show: error: nope.jsonl: no such cassette file\n"


@pytest.mark.parametrize("command", ["show", "audio", "timeline"])
def test_a_conn_the_cassette_lacks_is_one_line_and_exit_2_and_writes_nothing(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # timeline wrote an empty page and audio said "no audio", both with exit 0; show
    # ignored a missing --conn when another one existed.
    out = ["--out", str(tmp_path / "out")] if command != "show" else []
    args = [command, str(CASSETTES / "interruption.jsonl"), "--conn", "0", "--conn", "7", *out]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"rtreplay {command}: error: no connection 7 in {CASSETTES / 'interruption.jsonl'} (it has: 0)\n"
    )
    assert not list(tmp_path.iterdir())


# -- diff ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_a_cassette_says_the_same_as_itself_and_as_its_out_of_line_copy(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / path.name
    assert main(["convert", str(path), "--out", str(copy)]) == 0
    capsys.readouterr()
    assert main(["diff", str(path), str(copy)]) == 0
    assert capsys.readouterr().out.endswith("the same conversation\n")


def _rerecorded(tmp_path: Path) -> Path:
    """function-call.jsonl as a re-record would give it: new IDs and times, other words."""
    cassette = load(CASSETTES / "function-call.jsonl")
    conn = cassette.connections[0]
    frames = []
    for f in conn.frames:
        text = f.payload()
        assert isinstance(text, str)
        text = text.replace("resp_F", "resp_NEW").replace("call_9Q9eysr6LstYMEx6", "call_0000aaaa1111bbbb")
        text = text.replace("foggy", "misty")
        frames.append(Frame.from_message(f.conn, f.t * 1.3, f.dir, text))
    new = Cassette(Header(), [Connection(conn.open, frames, conn.close)])
    return save(new, tmp_path / "new.jsonl")


def test_diff_shows_what_was_said_differently_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = _rerecorded(tmp_path)
    old = CASSETTES / "function-call.jsonl"
    assert main(["diff", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    changed = [line for line in out.splitlines() if line[:1] in "-+" and not line.startswith(("---", "+++"))]
    assert changed == [
        "- turn  1  assistant: \"It's 61°F and foggy in San Francisco.\"",
        "+ turn  1  assistant: \"It's 61°F and misty in San Francisco.\"",
    ], "IDs, call IDs and times are not differences"
    assert out.endswith("2 lines differ, in 1 turn\n")
    assert main(["diff", "--json", str(old), str(new)]) == 1
    assert json.loads(capsys.readouterr().out)["same"] is False
    assert main(["diff", str(old), str(tmp_path / "missing.jsonl")]) == 2


def test_diff_compares_audio_by_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cassette = load(CASSETTES / "audio-vad-real.jsonl")
    conn = cassette.connections[0]
    appends = [i for i, f in enumerate(conn.frames) if '"input_audio_buffer.append"' in str(f.payload())]

    def with_audio(silence: bytes) -> Path:
        frames = list(conn.frames)
        for i in appends[:1]:  # the first chunk of the user's audio, other bytes or longer
            event = frames[i].event()
            assert isinstance(event, dict)
            import base64

            event["audio"] = base64.b64encode(silence).decode()
            frames[i] = Frame.from_message(0, frames[i].t, "client", json.dumps(event))
        return save(Cassette(Header(), [Connection(conn.open, frames, conn.close)]), tmp_path / f"{len(silence)}.jsonl")

    first = conn.frames[appends[0]].event()
    assert isinstance(first, dict)
    size = len(first["audio"]) * 3 // 4
    same_length = with_audio(b"\0" * size)
    longer = with_audio(b"\0" * (size + 48000 * 2))  # two more seconds
    assert main(["diff", str(CASSETTES / "audio-vad-real.jsonl"), str(same_length)]) == 0
    assert main(["diff", str(CASSETTES / "audio-vad-real.jsonl"), str(longer)]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("+ turn") and "user: audio" in line for line in out.splitlines()), out
    assert main(["diff", "--audio-tolerance", "3", str(CASSETTES / "audio-vad-real.jsonl"), str(longer)]) == 0


# -- audio -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_audio_writes_a_wav_per_turn_for_every_bundled_cassette(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "wav"
    assert main(["audio", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    files = sorted(out.glob("*.wav"))
    if path.name not in AUDIO:
        assert files == [] and "has no audio" in printed.err
        return
    assert files and len(printed.out.splitlines()) == len(files)
    for f in files:
        assert f.name.startswith("conn0-turn") and f.name.endswith(("-user.wav", "-assistant.wav"))
        with wave.open(str(f)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
            seconds = w.getnframes() / 24000
        assert f"{seconds:6.2f} s" in printed.out


def _g711_cassette(tmp_path: Path) -> Path:
    import base64

    user = bytes(range(256)) * 32  # 8,192 bytes: 1.024 s at 8 kHz
    said = bytes(range(255, -1, -1)) * 16
    events = [
        ("server", {"type": "session.created", "event_id": "e1", "session": {"id": "sess_1", "input_audio_format": "g711_ulaw", "output_audio_format": "g711_alaw"}}),
        ("client", {"type": "input_audio_buffer.append", "audio": base64.b64encode(user).decode()}),
        ("client", {"type": "input_audio_buffer.commit"}),
        ("server", {"type": "input_audio_buffer.committed", "event_id": "e2", "item_id": "item_u1"}),
        ("client", {"type": "response.create"}),
        ("server", {"type": "response.created", "event_id": "e3", "response": {"id": "resp_1", "status": "in_progress"}}),
        ("server", {"type": "response.audio.delta", "event_id": "e4", "response_id": "resp_1", "item_id": "item_a1", "delta": base64.b64encode(said).decode()}),
        ("server", {"type": "response.audio_transcript.done", "event_id": "e5", "response_id": "resp_1", "item_id": "item_a1", "transcript": "Hello."}),
        ("server", {"type": "response.done", "event_id": "e6", "response": {"id": "resp_1", "status": "completed"}}),
    ]
    frames = [Frame.from_message(0, 0.1 * i, d, json.dumps(e)) for i, (d, e) in enumerate(events)]
    conn = Connection(Open(0, protocol="beta"), frames, Close(0, 1.0, 1000, "", "client"))
    return save(Cassette(Header(), [conn]), tmp_path / "g711.jsonl")


def test_audio_keeps_g711_as_g711_or_decodes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _g711_cassette(tmp_path)
    assert main(["audio", str(path), "--out", str(tmp_path / "raw")]) == 0
    out = capsys.readouterr().out
    assert "conn0-turn01-user.wav    1.02 s  G.711 µ-law 8 kHz" in out
    assert 'conn0-turn01-assistant.wav    0.51 s  G.711 A-law 8 kHz  "Hello."' in out
    user = (tmp_path / "raw" / "conn0-turn01-user.wav").read_bytes()
    assert user[:4] == b"RIFF" and user[8:12] == b"WAVE"
    assert int.from_bytes(user[20:22], "little") == 7, "WAVE_FORMAT_MULAW"
    assert int.from_bytes(user[24:28], "little") == 8000
    assert user.endswith(bytes(range(256)) * 32)
    assert main(["audio", str(path), "--out", str(tmp_path / "pcm"), "--pcm"]) == 0
    with wave.open(str(tmp_path / "pcm" / "conn0-turn01-user.wav")) as w:
        assert (w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 8000, 8192)
        pcm = w.readframes(8192)
    assert pcm == g711_to_pcm16(bytes(range(256)) * 32, G711_ULAW)
    # ITU-T G.711: mu-law 0xFF and 0x7F are zero, 0x00 the most negative value
    table = g711_to_pcm16(bytes([0xFF, 0x7F, 0x00, 0x80]), G711_ULAW)
    assert [int.from_bytes(table[i : i + 2], "little", signed=True) for i in range(0, 8, 2)] == [0, 0, -32124, 32124]


# -- redact ----------------------------------------------------------------------------


def test_redact_applies_todays_rules_in_place_and_says_what_changed(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    text = (CASSETTES / "function-call.jsonl").read_text()
    leaked = text.replace('{\\"temp_f\\": 61', '{\\"temp_f\\": 61, \\"api_key\\": \\"sk-proj-abcdefghijklmnop123\\"', 1)
    assert leaked != text
    path.write_text(leaked)
    check = run_cli("redact", "--check", str(path))
    assert check.returncode == 1 and path.read_text() == leaked
    assert "would change 1 record" in check.stdout and "client event 'conversation.item.create'" in check.stdout
    done = run_cli("redact", str(path))
    assert done.returncode == 0, done.stderr
    assert "changed 1 record" in done.stdout
    assert "sk-proj-abcdefghijklmnop123" not in path.read_text()
    assert not list(tmp_path.glob("*.partial"))
    assert run_cli("redact", "--check", str(path)).returncode == 0
    custom = run_cli("redact", "--json-path", "item.content.*.text", str(path))
    assert custom.returncode == 0 and "line 6: connection 0, client event 'conversation.item.create'" in custom.stdout
    assert "San Francisco?" not in path.read_text().split('"conversation.item.create"')[1].split("\n")[0]


def test_redact_keeps_an_out_of_line_cassette_out_of_line(tmp_path: Path) -> None:
    path = tmp_path / "i.jsonl"
    assert main(["convert", str(CASSETTES / "interruption.jsonl"), "--out", str(path)]) == 0
    assert main(["redact", "--pattern", "Once upon", str(path)]) == 0
    assert path.read_text().startswith('{"kind":"header","format":2')
    assert "Once upon" not in path.read_text()
    assert main(["validate", str(path)]) == 0


@pytest.mark.parametrize("pattern", ["", "a*", "(acct-\\d+)?"])
def test_redact_refuses_a_pattern_that_matches_the_empty_string_and_changes_nothing(
    pattern: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Such a pattern matches between every two characters: the cassette, rewritten in
    # place, became REDACTED/REDACTEDvREDACTED1... with its keys and paths destroyed.
    path = tmp_path / "t.jsonl"
    path.write_bytes((CASSETTES / "text-response.jsonl").read_bytes())
    assert main(["redact", "--pattern", pattern, str(path)]) == 2
    assert "matches the empty string" in capsys.readouterr().err
    assert path.read_bytes() == (CASSETTES / "text-response.jsonl").read_bytes()


def test_redact_pattern_with_zero_width_matches_removes_only_what_it_matches(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes((CASSETTES / "text-response.jsonl").read_bytes())
    assert main(["redact", "--pattern", r"\bHello\b|\b", str(path)]) == 0
    text, before = path.read_text(), (CASSETTES / "text-response.jsonl").read_text()
    assert "Hello" not in text and "REDACTED there, friend!" in text
    assert text.count("REDACTED") == before.count("REDACTED") + before.count("Hello")


# -- every command ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [c[0] for c in _COMMANDS])
def test_every_subcommand_has_a_description_and_an_example(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    description = next(c[2] for c in _COMMANDS if c[0] == name)
    assert " ".join(description.split()[:6]) in " ".join(out.split())
    example = out.split("\nexample:\n  ", 1)[1]
    assert "rtreplay " in example.splitlines()[0]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cassette whose every command's output is far more than a pipe holds."""
    one = load(CASSETTES / "audio-server-vad.jsonl").connections[0]
    conns = []
    for k in range(400):
        frames = [msgspec.structs.replace(f, conn=k) for f in one.frames]
        assert one.close is not None
        conns.append(Connection(msgspec.structs.replace(one.open, conn=k), frames, msgspec.structs.replace(one.close, conn=k)))
    return save(Cassette(Header(), conns), tmp_path_factory.mktemp("big") / "big.jsonl")


@pytest.mark.parametrize(
    "args",
    [["show"], ["show", "--json"], ["inspect"], ["diff", str(CASSETTES / "text-chat.jsonl")], ["audio", "--out", "AUDIO"]],
    ids=lambda a: " ".join(a[:2]),
)
def test_every_command_stops_quietly_when_its_reader_goes_away(args: list[str], big: Path, tmp_path: Path) -> None:
    argv = [a.replace("AUDIO", str(tmp_path / "wav")) for a in args]
    argv.insert(2 if args[0] == "diff" else 1, str(big))
    if args[0] == "diff":
        argv[1], argv[2] = argv[2], argv[1]
    process = subprocess.Popen([sys.executable, "-m", "rtreplay", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()  # `| head -1`
    err = process.stderr.read().decode()
    process.stderr.close()
    process.wait(timeout(60))
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert process.returncode == 141


def test_python_dash_m_and_the_console_script_still_run(tmp_path: Path) -> None:
    done = run_cli("show", str(CASSETTES / "text-response.jsonl"))
    assert done.returncode == 0 and "assistant" in done.stdout
    script = shutil.which("rtreplay", path=str(Path(sys.executable).parent))
    assert script is not None
    done = subprocess.run([script, "inspect", str(CASSETTES / "errors.jsonl")], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "(not an event)" in done.stdout


# -- "-": a cassette from standard input -----------------------------------------------


def _piped(*args: str, data: bytes) -> subprocess.CompletedProcess[str]:
    process = subprocess.run(
        [sys.executable, "-m", "rtreplay", *args],
        input=data, capture_output=True, check=False, timeout=timeout(60),
    )
    return subprocess.CompletedProcess(process.args, process.returncode, process.stdout.decode(), process.stderr.decode())


def test_a_dash_reads_the_cassette_from_stdin_in_the_commands_that_only_read(tmp_path: Path) -> None:
    path = CASSETTES / "text-chat.jsonl"
    data = path.read_bytes()
    for command in (["show"], ["show", "--json"], ["inspect"], ["validate"]):
        from_file, from_stdin = run_cli(*command, str(path)), _piped(*command, "-", data=data)
        assert (from_stdin.returncode, from_file.returncode) == (0, 0), from_stdin.stderr
        # The same output, the cassette named <stdin>.
        assert from_stdin.stdout == from_file.stdout.replace(str(path), "<stdin>"), command
        assert from_stdin.stderr == from_file.stderr.replace(str(path), "<stdin>"), command
    other = _rerecorded(tmp_path)
    diff = _piped("diff", str(other), "-", data=data)
    assert diff.returncode == 1 and f"--- {other}\n+++ <stdin>\n" in diff.stdout
    page = tmp_path / "t.html"
    assert _piped("timeline", "-", "-o", str(page), data=data).returncode == 0 and page.exists()
    wavs = tmp_path / "wav"
    audio = _piped("audio", "-", "-o", str(wavs), data=(CASSETTES / "transcription.jsonl").read_bytes())
    assert audio.returncode == 0 and any(wavs.iterdir()), audio.stderr


def test_a_format_2_cassette_on_stdin_says_where_its_audio_was_looked_for(tmp_path: Path) -> None:
    """Read from standard input, a cassette's audio files are looked for in the current
    directory: run elsewhere, the error says so, not only 'move the audio with it'."""
    cassette = tmp_path / "f2" / "i.jsonl"
    assert run_cli("convert", str(CASSETTES / "interruption.jsonl"), "--out", str(cassette)).returncode == 0
    data = cassette.read_bytes()
    process = subprocess.run(
        [sys.executable, "-m", "rtreplay", "show", "-"], input=data, capture_output=True, check=False,
        timeout=timeout(60), cwd=tmp_path,
    )
    err = process.stderr.decode()
    assert process.returncode == 2 and err.startswith("rtreplay show: error: <stdin>:2: audio file rtreplay-audio/"), err
    assert "read from standard input, a cassette's audio files are looked for in the current directory" in err, err
    beside = subprocess.run(
        [sys.executable, "-m", "rtreplay", "show", "-"], input=data, capture_output=True, check=False,
        timeout=timeout(60), cwd=cassette.parent,
    )
    assert beside.returncode == 0, beside.stderr


def test_a_bad_cassette_on_stdin_is_named_with_its_line() -> None:
    lines = (CASSETTES / "text-chat.jsonl").read_bytes().splitlines(keepends=True)
    lines[3] = b'{"kind": "frame", broken\n'
    bad = b"".join(lines)
    for command in ("show", "inspect", "validate", "timeline", "audio"):
        extra = ["-o", "unused"] if command in ("timeline", "audio") else []
        result = _piped(command, "-", *extra, data=bad)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith(f"rtreplay {command}: error: <stdin>:4: not valid JSON"), result.stderr
    empty = _piped("show", "-", data=b"")
    assert (empty.returncode, empty.stderr) == (2, "rtreplay show: error: <stdin>:1: empty file: no header record\n")
    twice = _piped("diff", "-", "-", data=bad)
    assert twice.returncode == 2 and "'-' (standard input) can be given once" in twice.stderr
    # A command that needs a file says which ones read standard input.
    serve = _piped("serve", "-", data=bad)
    assert serve.returncode == 2 and "'-' reads a cassette from standard input in show, inspect" in serve.stderr
    # recover too, though what it misses is a partial file beside '-', not '-' itself.
    recover = _piped("recover", "-", data=bad)
    assert recover.returncode == 2 and "'-' reads a cassette from standard input in show, inspect" in recover.stderr
    assert "recover needs a file" in recover.stderr


@pytest.mark.parametrize("command", [["show", "-"], ["diff", str(CASSETTES / "text-chat.jsonl"), "-"]])
def test_a_dash_with_a_terminal_on_stdin_says_so_instead_of_waiting(command: list[str]) -> None:
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rtreplay", *command],
            stdin=follower, capture_output=True, text=True, check=False, timeout=timeout(60),
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 2
    assert result.stderr.startswith(f"rtreplay {command[0]}: error: <stdin>: is a terminal: '-' reads the cassette from standard input")
    # How to pipe one in, without naming another command than the one typed.
    assert "< cassette.jsonl" in result.stderr and "rtreplay show" not in result.stderr.replace("rtreplay show:", "")
