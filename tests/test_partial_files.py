"""A recording that was interrupted leaves ``<cassette>.<pid>.partial``: users are told.

A real ``rtreplay record`` is killed mid-session; then ``serve``, ``validate``, a new
``record`` and the pytest plugin each say the partial file is there and what to do, and
``rtreplay recover`` makes it the cassette (checked, atomically), which then replays.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtreplay.cli import main
from rtreplay.codec import leftover_partials, load, recover, save
from rtreplay.errors import CassetteError, CassetteWriteError

from .conftest import CASSETTES, REPO, timeout
from .docs import code_blocks
from .test_cli_record import record_cli  # noqa: F401 - the fixture
from .test_plugin import project, put_cassette  # noqa: F401 - the fixture
from .upstream import ScriptedUpstream

pytest_plugins = ["pytester"]


async def interrupted_recording(out: Path, record_cli: Any) -> Path:  # noqa: F811
    """Kill a real ``rtreplay record`` mid-response; its partial file."""
    async with ScriptedUpstream(delay=0.005, audio_deltas=200) as up:
        rec = await record_cli(out, up.websocket_base_url)
        async with connect(rec.websocket_base_url + "/realtime?model=gpt-realtime", max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            await ws.send(json.dumps({"type": "response.create"}))
            for _ in range(20):
                await ws.recv()
            rec.proc.kill()
            try:
                while True:
                    await ws.recv()
            except ConnectionClosed:
                pass
        await rec.proc.wait()
    [partial] = out.parent.glob(out.name + ".*.partial")
    return partial


def rtreplay(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtreplay", *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout(60)
    )


async def test_an_interrupted_recording_is_pointed_at_and_recovered(tmp_path: Path, record_cli: Any) -> None:  # noqa: F811
    out = tmp_path / "hello.jsonl"
    partial = await interrupted_recording(out, record_cli)
    assert not out.exists()
    pid = int(partial.name.split(".")[-2])
    hint = f"{partial} was left by an interrupted recording (process {pid} is gone)"

    for argv in (["serve", str(out), "--port", "0"], ["validate", str(out)], ["show", str(out)]):
        done = await asyncio.to_thread(rtreplay, *argv)
        if argv[0] == "serve":  # what docs/cli.md shows
            [documented] = [b for b in code_blocks("cli.md", "text") if "was left by an interrupted recording" in b]
            shown = documented.replace("cassettes/hello.jsonl", str(out)).replace("4242", str(pid))
            assert done.stderr == shown, (done.stderr, shown)
        assert done.returncode == 2, done.stderr
        assert f"{out}: no such cassette file\n" in done.stderr, done.stderr
        assert f"  note: {hint}" in done.stderr and f"`rtreplay recover {out}`" in done.stderr, done.stderr

    done = await asyncio.to_thread(rtreplay, "recover", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out}: recovered from {partial} (")
    assert not partial.exists() and leftover_partials(out) == []
    cassette = load(out)  # whole lines only: a line cut by the kill was dropped
    [conn] = cassette.connections
    assert conn.close is None and len(list(conn.server_frames())) >= 20
    assert (await asyncio.to_thread(rtreplay, "validate", str(out))).returncode == 0


async def test_a_partial_beside_an_existing_cassette_is_said_by_serve_validate_and_record(
    tmp_path: Path, record_cli: Any  # noqa: F811
) -> None:
    out = tmp_path / "hello.jsonl"
    partial = await interrupted_recording(out, record_cli)
    shutil.copyfile(CASSETTES / "text-response.jsonl", out)
    pid = int(partial.name.split(".")[-2])
    hint = f"{partial} was left by an interrupted recording (process {pid} is gone)"

    done = await asyncio.to_thread(rtreplay, "validate", str(out))
    assert done.returncode == 0 and f"{out}: warning: {hint}" in done.stderr, done.stderr

    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtreplay", "serve", str(out), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
    )
    assert serve.stdout is not None
    await asyncio.wait_for(serve.stdout.readline(), timeout(30))
    serve.terminate()
    _, err = await asyncio.wait_for(serve.communicate(), timeout(30))
    assert f"rtreplay serve: warning: {hint}" in err.decode(), err.decode()

    # A new recording of the same cassette says so too, and leaves the partial file alone.
    async with ScriptedUpstream() as up:
        rec = await record_cli(out, up.websocket_base_url)
        _, _, stderr = await rec.stop()
    assert f"{partial} was left by an interrupted recording (process {pid} is gone) and is left alone" in stderr
    assert partial.exists()

    # An existing cassette is never replaced silently.
    done = await asyncio.to_thread(rtreplay, "recover", str(out))
    assert done.returncode == 2 and "pass --replace" in done.stderr, done.stderr
    assert partial.exists()
    assert (await asyncio.to_thread(rtreplay, "recover", str(out), "--replace")).returncode == 0
    assert not partial.exists()


def test_recover_refuses_a_partial_still_being_written(tmp_path: Path) -> None:
    out = tmp_path / "live.jsonl"
    mine = tmp_path / f"live.jsonl.{os.getpid()}.partial"  # this process: alive
    shutil.copyfile(CASSETTES / "text-response.jsonl", mine)
    with pytest.raises(CassetteError, match="no partial file of an interrupted recording beside it; being recorded now"):
        recover(out)
    assert main(["recover", str(out), "--partial", str(mine)]) == 2
    assert mine.exists() and not out.exists()


def test_writing_a_whole_cassette_onto_a_directory_leaves_no_partial_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """recover and save() have every record at hand: a write that fails must not leave a
    partial file of their own, which would pass for an interrupted recording."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    target = tmp_path / "dd.jsonl"
    target.mkdir()
    partial = tmp_path / f"dd.jsonl.{int(gone.stdout)}.partial"
    shutil.copyfile(CASSETTES / "text-response.jsonl", partial)
    assert main(["recover", str(target), "--replace"]) == 2
    assert f"{target}: is a directory: name a cassette file in it" in capsys.readouterr().err
    with pytest.raises(CassetteWriteError, match="is a directory: name a cassette file in it"):
        save(load(CASSETTES / "text-response.jsonl"), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dd.jsonl", partial.name]
    assert leftover_partials(target) == [(partial, int(gone.stdout), False)]


def test_the_plugin_names_the_partial_of_a_missing_cassette(project: pytest.Pytester) -> None:  # noqa: F811
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)  # a process that has ended
    partial = put_cassette(project, f"cassettes/test_p/test_one.jsonl.{pid}.partial")
    put_cassette(project, "cassettes/test_p/test_two.jsonl")
    put_cassette(project, f"cassettes/test_p/test_two.jsonl.{pid}.partial")
    project.makepyfile(
        test_p="""
        from talk import talk

        def test_one(realtime_mock):
            talk(realtime_mock.client())

        def test_two(realtime_mock):
            talk(realtime_mock.client())
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    assert f"  but: {partial} was left by an interrupted recording (process {pid} is gone)" in out, out
    assert "rtreplay recover" in out
    # And the run's summary lists both partial files.
    summary = out.split("rtreplay ==")[-1]
    assert f"cassettes/test_p/test_one.jsonl.{pid}.partial" in summary and f"cassettes/test_p/test_two.jsonl.{pid}.partial" in summary, summary


def _gone_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_recover_keeps_what_comes_before_a_damaged_middle_line_only_when_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged line in the middle: by default recover refuses and names it (file:line,
    what), since the records after it would be dropped; --truncate keeps every record
    before it, says what it dropped, and keeps the partial file whole."""
    lines = (CASSETTES / "reconnect.jsonl").read_bytes().splitlines(keepends=True)
    lines[6] = b'{"kind": "frame", "conn": 0, "t": 0.5, "dir": "server", "json": {"type": "resp\n'
    out, pid = tmp_path / "two.jsonl", _gone_pid()
    partial = tmp_path / f"two.jsonl.{pid}.partial"
    partial.write_bytes(b"".join(lines))

    assert main(["recover", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rtreplay recover: error: {partial}:7: not valid JSON")
    assert "record(s) follow it (connection(s) 0, 1; connection(s) 0, 1 closed after it)" in err and "--truncate" in err
    assert not out.exists() and partial.read_bytes() == b"".join(lines), "nothing written, nothing lost"

    assert main(["recover", str(out), "--truncate"]) == 0
    printed = capsys.readouterr()
    damaged = tmp_path / f"two.jsonl.{pid}.damaged"
    assert printed.out == f"{out}: recovered from {partial} (6 records before its damaged line; kept whole as {damaged})\n"
    assert printed.err.startswith(f"rtreplay recover: warning: {partial}:7: not valid JSON")
    assert f"; dropped lines 7-{len(lines)}: " in printed.err
    assert damaged.read_bytes() == b"".join(lines) and not partial.exists()
    assert leftover_partials(out) == [], "the kept file is not taken for another interrupted recording"
    [kept] = load(out).connections
    assert kept.frames == load(CASSETTES / "reconnect.jsonl").connections[0].frames[:4] and kept.close is None


def test_recover_drops_a_damaged_last_line_saying_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing follows the damaged line: there is nothing more to lose, so recover goes on
    (no --truncate needed) and says what it dropped."""
    data = (CASSETTES / "text-chat.jsonl").read_bytes()
    whole = data.count(b"\n")
    out, pid = tmp_path / "chat.jsonl", _gone_pid()
    partial = tmp_path / f"chat.jsonl.{pid}.partial"
    partial.write_bytes(data + b'{"kind": "close", "conn": 7, "t": 9.0, "code": 1000}\n')
    done = recover(out)
    assert done.records == whole and done.damaged == tmp_path / f"chat.jsonl.{pid}.damaged"
    assert done.dropped == f"{partial}:{whole + 1}: close record for connection 7, which was never opened; dropped line {whole + 1}"
    assert load(out).connections == load(CASSETTES / "text-chat.jsonl").connections


def test_recover_never_replaces_the_damaged_file_an_earlier_recovery_kept(tmp_path: Path) -> None:
    """Process IDs come round again: a damaged partial file of a later recorder with the
    pid of an earlier one is kept beside the earlier one's .damaged file, not over it."""
    data = (CASSETTES / "text-chat.jsonl").read_bytes()
    out, pid = tmp_path / "chat.jsonl", _gone_pid()
    earlier = tmp_path / f"chat.jsonl.{pid}.damaged"
    earlier.write_bytes(b"what an earlier recovery kept\n")
    for n in (2, 3):
        partial = tmp_path / f"chat.jsonl.{pid}.partial"
        partial.write_bytes(data + b"{not a record\n")
        done = recover(out, replace=True)
        assert done.damaged == tmp_path / f"chat.jsonl.{pid}.damaged.{n}", done.damaged
        assert done.damaged.read_bytes() == data + b"{not a record\n" and not partial.exists()
    assert earlier.read_bytes() == b"what an earlier recovery kept\n"
    assert leftover_partials(out) == []


def test_the_damaged_line_docs_cli_md_shows_is_what_recover_says(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [documented] = [b for b in code_blocks("cli.md", "text") if "record(s) follow it" in b]
    lines = (CASSETTES / "text-chat.jsonl").read_bytes().splitlines(keepends=True)
    lines[10] = b'{"kind":"frame","conn":0,"t":0.5,"dir":"server","json":{"type":"resp\n'
    pid = _gone_pid()  # (4242 in the docs, which may be a running process here)
    partial = tmp_path / "cassettes" / f"hello.jsonl.{pid}.partial"
    partial.parent.mkdir()
    partial.write_bytes(b"".join(lines))
    assert main(["recover", str(tmp_path / "cassettes" / "hello.jsonl"), "--partial", str(partial)]) == 2
    said = capsys.readouterr().err.replace(f"{tmp_path}/", "").replace(f".{pid}.partial", ".4242.partial")
    assert said == documented
