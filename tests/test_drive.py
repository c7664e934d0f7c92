"""``rtreplay drive`` over real sockets: every bundled cassette's client against the scripted
upstream (a fake of the API), its turns reproduced with no mismatch at type strictness;
servers that refuse, vanish, stay silent; the command's output and exit status; the
pytest fixture.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from rtreplay.cassette import Close, Frame, Header, Open
from rtreplay.cli import main
from rtreplay.codec import CassetteWriter, load
from rtreplay.drive import Drive, drive
from rtreplay.driver import scripts

from .conftest import CASSETTES, timeout
from .upstream import Expiry, ScriptedUpstream

KEY = "sk-drive-test-0123456789abcdef"

#: How the fake API must behave to say what each recording says (everything else: defaults).
UPSTREAM: dict[str, dict[str, Any]] = {
    # Two response.create back to back: the second must find the first still going.
    "errors.jsonl": {"delay": 0.05},
    "errors-recoverable.jsonl": {"delay": 0.05},
    # The user speaks while the answer still plays (barge-in), then cancels it.
    "interruption.jsonl": {"delay": 0.1, "audio_deltas": 12},
    # This imported sample's audio is a 10-byte placeholder: its pauses are the turns.
    "audio-server-vad.jsonl": {"vad": "pauses"},
    # The first session hits its maximum duration; the client reconnects.
    "reconnect.jsonl": {"expiry": Expiry(0.6, code=1000, conn=0)},
}
ALL = sorted(p.name for p in CASSETTES.glob("*.jsonl"))


def test_every_bundled_cassette_has_its_fake_api() -> None:
    assert set(UPSTREAM) <= set(ALL)
    assert len(ALL) >= 13


@pytest.mark.parametrize("name", ALL)
async def test_drive_reproduces_every_bundled_cassettes_turns(name: str) -> None:
    # Audio twice as fast as real time: the fake's voice activity detection hears the same
    # turns (by loudness, or by the placeholder's pauses) in half the test's time.
    async with ScriptedUpstream(**UPSTREAM.get(name, {})) as api:
        report = await Drive(CASSETTES / name, api.url, api_key=KEY, audio_speed=2, timeout=timeout(5)).run()
    assert report.ok, report
    recorded = scripts(CASSETTES / name)
    assert len(report.connections) == len(recorded)
    for progress, script in zip(report.connections, recorded, strict=True):
        assert progress.clients_sent == len(script.steps)
        assert progress.matched == progress.expected_total == len(script.expectations)
    turns = {e.turn for s in recorded for e in s.expectations}
    assert {m.turn for m in report.mismatches} <= turns
    responses = sum(1 for s in recorded for e in s.expectations if e.type == "response.done")
    assert len(report.responses) >= responses


async def test_a_server_that_drops_an_event_type_fails_with_the_event_named() -> None:
    from .upstream import Drift

    async with ScriptedUpstream(drift=Drift(drop_types=frozenset({"conversation.item.done"}))) as api:
        report = await Drive(CASSETTES / "text-response.jsonl", api.url, api_key=KEY, speed=0, timeout=timeout(2)).run()
    kinds = {m.kind for m in report.mismatches}
    assert kinds == {"missing"}
    assert all("conversation.item.done" in m.message for m in report.mismatches)
    text = str(report)
    assert "mismatch 1 of 2 (missing): connection 0 (recorded connection 0), turn 1, server event" in text
    assert "cassettes/text-response.jsonl:" in text


async def test_a_server_that_never_answers_is_reported_within_the_timeout() -> None:
    async def silent(ws: Any) -> None:
        await ws.wait_closed()

    from websockets.asyncio.server import serve

    async with serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        report = await asyncio.wait_for(
            Drive(CASSETTES / "text-response.jsonl", f"ws://127.0.0.1:{port}", timeout=0.5).run(), timeout(10)
        )
    (m,) = report.mismatches
    assert m.kind == "timeout"
    assert "the server sent nothing for 0.5 s while the driver waited for session.created" in m.message


async def test_a_refusal_names_the_credential_the_recording_had() -> None:
    async with ScriptedUpstream() as api:  # the API wants a key
        report = await Drive(CASSETTES / "text-response.jsonl", api.url).run()
    (m,) = report.mismatches
    assert m.kind == "refused"
    assert "HTTP 401" in m.message and "set OPENAI_API_KEY" in m.message


def test_the_command_says_what_matched_and_exits_0(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with ScriptedUpstream().in_thread() as api:
        status = main(["drive", str(CASSETTES / "function-call.jsonl"), "--url", api.url, "--speed", "0",
                       "--report", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "every recorded server event came as recorded" in out
    assert "5/5 client events sent; 26/26 recorded server events matched" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ok"] is True and data["connections"][0]["responses"][0]["first_delta_s"] >= 0


def test_the_command_exits_1_on_a_mismatch_and_2_when_nothing_answers(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from .upstream import Drift

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with ScriptedUpstream(drift=Drift(rename_types={"response.output_text.done": "response.text.done"})).in_thread() as api:
        status = main(["drive", str(CASSETTES / "text-response.jsonl"), "--url", api.url, "--speed", "0", "--timeout", "1"])
    out = capsys.readouterr().out
    assert status == 1
    assert "(unexpected)" in out and "response.text.done" in out
    with ScriptedUpstream().in_thread() as api:
        port = api.port
    status = main(["drive", str(CASSETTES / "text-response.jsonl"), "--url", f"ws://127.0.0.1:{port}"])
    out = capsys.readouterr().out
    assert status == 2
    assert "(unreachable)" in out and "cannot connect" in out


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drive", str(CASSETTES / "text-response.jsonl"), "--url", "127.0.0.1:9"]) == 2
    assert "not a WebSocket URL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["drive", str(CASSETTES / "text-response.jsonl"), "--url", "ws://x", "--concurrency", "0"])
    assert exc.value.code == 2
    assert main(["drive", "no/such.jsonl", "--url", "ws://127.0.0.1:9"]) == 2


def test_the_client_frames_go_out_as_recorded_with_the_servers_ids(tmp_path: Path) -> None:
    """What the server receives is the recorded client side, byte for byte where no ID was
    echoed, with this server's call_id where the recording's was."""
    with ScriptedUpstream().in_thread() as api:
        report = drive(CASSETTES / "function-call.jsonl", api.url, api_key=KEY, speed=0)
        received = [r.raw for r in api.received]
    assert report.ok, report
    recorded = [f.payload() for f in load(CASSETTES / "function-call.jsonl").connections[0].client_frames()]
    assert received[:3] == recorded[:3]
    output = json.loads(received[3])
    assert output["item"]["call_id"].startswith("call_0x")  # the scripted API's, not the recording's
    assert json.loads(recorded[3])["item"]["call_id"] != output["item"]["call_id"]


def test_a_non_json_server_frame_is_compared_as_a_frame(tmp_path: Path) -> None:
    """A recorded text frame that is not JSON matches the same frame from the server."""
    path = tmp_path / "raw.jsonl"
    with CassetteWriter(path, header=Header(created="2026-01-01T00:00:00Z")) as w:
        w.write(Open(0))
        w.write(Frame.from_message(0, 0.0, "server", "hello, not json"))
        w.write(Frame.from_message(0, 0.1, "client", json.dumps({"type": "session.update", "session": {}})))
        w.write(Close(0, 0.2, 1000, "", "client"))

    async def server(ws: Any) -> None:
        await ws.send("hello, not json")
        await ws.recv()
        await ws.wait_closed()

    async def run() -> Any:
        from websockets.asyncio.server import serve

        async with serve(server, "127.0.0.1", 0) as s:
            return await Drive(path, f"ws://127.0.0.1:{s.sockets[0].getsockname()[1]}", match="exact", speed=0).run()

    report = asyncio.run(run())
    assert report.ok, report


async def test_a_cassette_with_its_audio_in_files_drives_the_same(tmp_path: Path) -> None:
    """Format 2 (audio out of line, ``rtreplay convert --audio files``) sends the same audio."""
    path = tmp_path / "audio-vad-real.jsonl"
    shutil.copyfile(CASSETTES / "audio-vad-real.jsonl", path)
    assert main(["convert", "--audio", "files", str(path)]) == 0
    assert (tmp_path / "rtreplay-audio").is_dir()
    async with ScriptedUpstream() as api:
        report = await Drive(path, api.url, api_key=KEY, audio_speed=4, timeout=timeout(5)).run()
        received = [r.raw for r in api.received]
    assert report.ok, report
    recorded = [f.payload() for f in load(CASSETTES / "audio-vad-real.jsonl").connections[0].client_frames()]
    assert received == recorded
