"""``rtreplay record`` as a user runs it: a real subprocess, real signals, a real SDK."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtreplay.cassette import Frame
from rtreplay.cli import main
from rtreplay.codec import load

from .conftest import timeout
from .docs import DOCS
from .upstream import ScriptedUpstream

PROXY_KEY = "sk-proxy-env-key-9z8y7x6w5v"


class RecordProcess:
    """``python -m rtreplay record`` in a subprocess, with its URL read from its first line."""

    def __init__(self, proc: asyncio.subprocess.Process, first_line: str, base_url: str) -> None:
        self.proc = proc
        self.first_line = first_line
        self.websocket_base_url = base_url

    async def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout(30))
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def record_cli(tmp_path: Path) -> AsyncIterator[Any]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(out: Path, upstream: str, *extra: str) -> RecordProcess:
        env = {**os.environ, "OPENAI_API_KEY": PROXY_KEY}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rtreplay", "record", "--out", str(out), "--upstream", upstream,
            "--port", "0", *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout(30))).decode()
        match = re.search(r"websocket_base_url=(ws://127\.0\.0\.1:\d+/v1)", line)
        assert match, f"no URL in the first line: {line!r}"
        return RecordProcess(proc, line, match.group(1))

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def sdk_session(base_url: str) -> list[str]:
    client = openai.AsyncOpenAI(api_key="sk-client-own-key-000111222", websocket_base_url=base_url)
    types = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        )
        await conn.response.create()
        async for event in conn:
            types.append(event.type)
            if event.type == "rate_limits.updated":
                break
    await client.close()
    return types


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_record_until_a_signal_then_finish_the_cassette(
    sig: int, tmp_path: Path, record_cli: Any
) -> None:
    out = tmp_path / "cli.jsonl"
    async with ScriptedUpstream() as up:
        rec = await record_cli(out, up.websocket_base_url)
        types = await sdk_session(rec.websocket_base_url)
        # A connection still open when the signal comes is closed politely and kept.
        ws = await connect(rec.websocket_base_url + "/realtime?model=gpt-realtime", additional_headers={"Authorization": "Bearer sk-other-client-key-123"})
        await ws.recv()
        code, _stdout, stderr = await rec.stop(sig)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert code == 0, stderr
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    cassette = load(out)
    assert len(cassette.connections) == 2
    assert [json.loads(f.payload())["type"] for f in cassette.connections[0].server_frames()] == types
    assert cassette.connections[1].close is not None and cassette.connections[1].close.code == 1001
    assert "conn 0: /v1/realtime?model=gpt-realtime -> ws://127.0.0.1:" in stderr
    assert re.search(
        rf"conn 0 .*client->server 3 frames .*server->client {len(types)} frames .*closed by the client with code 1000",
        stderr,
    )
    assert "conn 1 /v1/realtime?model=gpt-realtime: " in stderr and "closed by the server with code 1001" in stderr
    assert f"wrote {out}: 2 connection(s)" in stderr
    assert not list(tmp_path.glob("*.partial"))
    data = out.read_bytes()
    assert b"sk-client-own-key" not in data and b"sk-other-client-key" not in data and PROXY_KEY.encode() not in data


async def test_sigkill_mid_session_leaves_a_readable_partial_with_every_frame(
    tmp_path: Path, record_cli: Any
) -> None:
    out = tmp_path / "killed.jsonl"
    async with ScriptedUpstream(delay=0.005, audio_deltas=400) as up:
        rec = await record_cli(out, up.websocket_base_url)
        seen: list[str] = []
        async with connect(rec.websocket_base_url + "/realtime?model=gpt-realtime", max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            await ws.send(json.dumps({"type": "response.create"}))
            while len(seen) < 40:  # mid-response, frames streaming both ways
                seen.append(str(await ws.recv()))
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA" * 200}))
            rec.proc.kill()
            try:
                while True:  # whatever was already on its way still arrives
                    seen.append(str(await ws.recv()))
            except ConnectionClosed:
                pass
        await rec.proc.wait()
    assert not out.exists(), "a killed recorder must not leave a finished-looking cassette"
    [partial] = tmp_path.glob("killed.jsonl.*.partial")
    assert partial.name == f"killed.jsonl.{rec.proc.pid}.partial"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a record cut by the kill is tolerated, and reported
        cassette = load(partial)
    [conn] = cassette.connections
    assert conn.close is None  # never closed: the proxy died
    recorded_server = [f.payload() for f in conn.frames if f.dir == "server"]
    recorded_client = [f.payload() for f in conn.frames if f.dir == "client"]
    assert recorded_server[: len(seen)] == seen, "every frame the client saw is in the partial cassette"
    assert recorded_client[: len(up.received)] == [r.raw for r in up.received], "and every frame the upstream saw"
    assert all(isinstance(f, Frame) for f in conn.frames)
    assert PROXY_KEY.encode() not in partial.read_bytes()


def test_bad_upstream_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--out", str(tmp_path / "x.jsonl"), "--upstream", "https://api.openai.com/v1"]) == 2
    assert "upstream must be a ws:// or wss:// URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--port", "99999", "port must be a number from 0 to 65535"),
        ("--port", "-5", "port must be a number from 0 to 65535"),
        ("--open-timeout", "nan", "open_timeout (--open-timeout) must be a number of seconds > 0, not nan"),
        ("--open-timeout", "-1", "open_timeout (--open-timeout) must be a number of seconds > 0"),
        ("--idle-timeout", "-3", "idle_timeout (--idle-timeout; never: None, or 0 on the command line)"),
        ("--idle-timeout", "nan", "must be a number of seconds > 0, not nan"),
    ],
)
def test_bad_ports_and_timeouts_are_one_line_errors_before_listening(
    option: str, value: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A port out of range was an OverflowError traceback; a negative idle timeout closed
    # every connection at once, and an open timeout of nan dropped every client unanswered.
    code = main(["record", "--out", str(tmp_path / "x.jsonl"), "--upstream", "ws://127.0.0.1:9/v1", option, value])
    assert code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_port_in_use_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["record", "--out", str(tmp_path / "x.jsonl"), "--upstream", "ws://127.0.0.1:9/v1", "--port", str(port)])
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _shape(line: str) -> str:
    """A log line with its URLs, cassette paths and numbers blotted out."""
    line = re.sub(r"wss?://[^ )]*", "URL", line)
    line = re.sub(r"\S*\.jsonl", "FILE", line)
    return re.sub(r"\d+(\.\d+)?", "N", line)


async def test_the_lines_in_docs_cli_md_are_what_it_prints(tmp_path: Path, record_cli: Any) -> None:
    page = (DOCS / "cli.md").read_text()
    section = page[page.index("## rtreplay record") :]
    section = section[: section.find("\n## ", 1) % (len(section) + 1)]
    blocks = re.findall(r"^```text\n(.*?)^```", section, re.S | re.M)
    first_line = blocks[1].strip()
    log_lines = blocks[2].strip().splitlines()
    out = tmp_path / "hello.jsonl"
    async with ScriptedUpstream() as up:
        rec = await record_cli(out, up.websocket_base_url)
        await sdk_session(rec.websocket_base_url)
        code, _stdout, stderr = await rec.stop(signal.SIGINT)
    assert code == 0
    assert _shape(rec.first_line.strip()) == _shape(first_line)
    printed = {_shape(line) for line in stderr.splitlines()}
    for line in log_lines:
        assert _shape(line) in printed, f"docs/cli.md shows a line rtreplay record does not print: {line}"


async def test_live_status_lines_on_a_terminal(tmp_path: Path) -> None:
    """On a TTY each open connection has a line redrawn in place; log lines scroll above it."""
    import io
    import logging

    from rtreplay.recorder import Recorder, _Status, logger

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    status = _Status(screen)
    logger.addHandler(status)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        async with ScriptedUpstream() as up, Recorder(tmp_path / "tty.jsonl", upstream=up.websocket_base_url) as rec:
            status.recorder = rec
            async with connect(rec.url + "?model=gpt-realtime", additional_headers={"Authorization": "Bearer x"}) as ws:
                await ws.recv()
                status.redraw()
                live = screen.getvalue().splitlines()[-1].rpartition("\x1b[J")[2]
                assert live.startswith("conn 0 /v1/realtime?model=gpt-realtime: client->server 0 frames 0 B, server->client 1 frames ")
            status.clear()
    finally:
        logger.removeHandler(status)
        logger.setLevel(level)
    text = screen.getvalue()
    erased = text.index(live + "\n\x1b[1F\x1b[J")  # the live line is erased before the next log line
    assert text.index("closed by the client with code 1000") > erased


HOOKS = '''
def drop_done(event, direction):
    if event.get("type") == "response.done":
        raise RuntimeError("no response.done wanted")
    return event
'''


async def test_an_event_hook_that_fails_ends_the_connection_and_fails_the_recording(
    tmp_path: Path, record_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "myhooks.py").write_text(HOOKS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    out = tmp_path / "hooked.jsonl"
    async with ScriptedUpstream() as up:
        rec = await record_cli(out, up.websocket_base_url, "--event-hook", "myhooks:drop_done")
        with pytest.raises(ConnectionClosed) as closed:
            await sdk_session(rec.websocket_base_url)
        code, _stdout, stderr = await rec.stop()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert code == 2, stderr
    said = "the redaction event_hook myhooks.drop_done raised RuntimeError: no response.done wanted"
    # At once, in the log, and again when it stops: not written, where the rest is.
    assert f"conn 0: {said}" in stderr and "closing the connection (1011)" in stderr
    assert "rtreplay record: error: the recording could not be written whole" in stderr
    assert "on the server event 'response.done'" in stderr and "connection 0" in stderr
    assert f"{out} not written" in stderr and ".partial: rename it to hooked.jsonl to use it" in stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("spec", "said"),
    [("nosuchmodule_xyz:f", "cannot import nosuchmodule_xyz: ModuleNotFoundError"),
     ("json:nosuchname", "json has no nosuchname"),
     ("json:__doc__", "__doc__ is a str, not a function"),
     ("json", "expected MODULE:FUNCTION")],
)
def test_an_event_hook_that_cannot_be_found_is_refused_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, said: str
) -> None:
    assert main(["record", "--out", str(tmp_path / "x.jsonl"), "--port", "0", "--event-hook", spec]) == 2
    err = capsys.readouterr().err
    assert f"rtreplay record: error: --event-hook {spec!r}: {said}" in err
    assert not list(tmp_path.iterdir())
