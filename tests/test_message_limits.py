"""A message over the 16 MiB WebSocket limit is named in the log, not a bare 1006 close.

websockets cuts such a connection itself (close 1009); the replay server and the recorder
then say which connection, who sent how much, the limit, and what to do: on the replay
server it is also a failure in the report, so the test that sent it fails and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtreplay import load
from rtreplay.recorder import Recorder
from rtreplay.server import MAX_MESSAGE_SIZE, ReplayServer

from .conftest import CASSETTES, timeout
from .upstream import ScriptedUpstream

OVER = MAX_MESSAGE_SIZE + 1
TOO_MUCH = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * OVER})


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream() as up:
        yield up


def _said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Wait (bounded) until the server's side of the connection ended and logged ``text``:
    the client sees the close before the server's handler has finished."""
    deadline = asyncio.get_running_loop().time() + timeout(10)
    while not _said(caplog, text):
        assert asyncio.get_running_loop().time() < deadline, f"never logged: {text!r}"
        await asyncio.sleep(0.01)


async def _send_too_much(url: str) -> None:
    ws = await connect(url, max_size=None, additional_headers={"Authorization": "Bearer sk-test"})
    await ws.recv()  # session.created
    await ws.send(TOO_MUCH)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_the_replay_server_names_a_message_over_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "rtreplay")
    async with ReplayServer(CASSETTES / "text-response.jsonl") as server:
        await _send_too_much(server.websocket_base_url + "/realtime?model=gpt-realtime")
        await _logged(caplog, "conn 0: closed")
    [line] = _said(caplog, "over the 16 MiB limit")
    assert line.startswith(f"conn 0: the client sent a message of {len(TOO_MUCH):,} bytes, over the 16 MiB limit (16,777,216 bytes)")
    assert "1009 (message too big)" in line and "smaller appends" in line
    [closed] = _said(caplog, "conn 0: closed")
    assert "closed by the replay (code 1009)" in closed, closed  # not "by the client (code 1006)"
    [failure] = server.report.failures
    assert "over the 16 MiB limit" in failure.message
    assert not server.report.ok


async def test_the_recorder_names_a_message_over_the_limit_from_the_client(
    upstream: ScriptedUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "rtreplay")
    cassette = tmp_path / "big.jsonl"
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        await _send_too_much(rec.websocket_base_url + "/realtime?model=gpt-realtime")
        await _logged(caplog, "client->server")
    [line] = _said(caplog, "over the 16 MiB limit")
    assert line.startswith("conn 0: the client sent a message") and "over the 16 MiB limit (16,777,216 bytes)" in line
    assert "of the recorder; both sides closed with 1009 (message too big), recorded" in line
    close = load(cassette).connections[0].close
    assert close is not None and close.code == 1009, close


async def test_the_recorder_names_a_message_over_the_limit_from_the_upstream(
    upstream: ScriptedUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "rtreplay")
    upstream.text = "x" * OVER  # one word: one text delta over the limit
    async with Recorder(tmp_path / "big.jsonl", upstream=upstream.websocket_base_url) as rec:
        ws = await connect(
            rec.websocket_base_url + "/realtime?model=gpt-realtime",
            max_size=None,
            additional_headers={"Authorization": "Bearer sk-test"},
        )
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
        await _logged(caplog, "client->server")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value
    [line] = _said(caplog, "over the 16 MiB limit")
    assert line.startswith("conn 0: the upstream sent a message") and "over the 16 MiB limit" in line, line
    assert "of the recorder; both sides closed with 1009 (message too big), recorded" in line


async def _too_big_server() -> Any:
    """A server under test that answers with one message over the limit."""
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        await ws.send(json.dumps({"type": "session.created", "session": {"instructions": "x" * OVER}}))
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    return await serve(handler, "127.0.0.1", 0, max_size=None)


DRIVE_SAID = "the server sent a message of {size:,} bytes, over the 16 MiB limit (16,777,216 bytes) rtreplay drive takes"


async def test_rtreplay_drive_names_a_server_message_over_the_limit() -> None:
    size = len(json.dumps({"type": "session.created", "session": {"instructions": "x" * OVER}}))
    async with await _too_big_server() as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rtreplay", "drive", str(CASSETTES / "text-response.jsonl"),
            "--url", f"ws://127.0.0.1:{port}/v1/realtime",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout(60))
    text = out.decode() + err.decode()
    assert proc.returncode == 1, text
    said = DRIVE_SAID.format(size=size)
    assert f"{said} (the limit is fixed); the driver closed the connection (code 1009, 'message too big')" in text, text
    assert f"closed by the driver (code 1009): {said}" in text
    assert "(code 1006)" not in text


async def test_the_blocking_drive_shell_names_it_too() -> None:
    from rtreplay.drive import Drive

    size = len(json.dumps({"type": "session.created", "session": {"instructions": "x" * OVER}}))
    async with await _too_big_server() as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        drive = Drive(CASSETTES / "text-response.jsonl", url=f"ws://127.0.0.1:{port}/v1/realtime")
        report = await asyncio.to_thread(drive.run_blocking)
    [mismatch] = report.mismatches
    assert mismatch.message.startswith(DRIVE_SAID.format(size=size)), mismatch.message


async def test_a_client_refusing_a_recorded_frame_as_too_big_is_told_apart(caplog: pytest.LogCaptureFixture) -> None:
    """openai-agents reads with max_size 8 MiB: a larger recorded frame makes the client
    close with 1009, which the log says is the client's own limit."""
    from rtreplay import Cassette, Close, Connection, Frame, Header, Open

    big = json.dumps({"type": "session.created", "session": {"instructions": "x" * (9 << 20)}})
    conn = Connection(
        Open(0, "/v1/realtime", {"model": "gpt-realtime"}, "ga", None, {}, None),
        [Frame.from_message(0, 0.0, "server", big)],
        Close(0, 1.0, 1000, "", "client"),
    )
    caplog.set_level(logging.INFO, "rtreplay")
    async with ReplayServer(Cassette(Header(), [conn])) as server:
        async with connect(server.websocket_base_url + "/realtime?model=gpt-realtime", max_size=8 << 20) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.sent is not None and closed.value.sent.code == 1009
        await _logged(caplog, "conn 0: closed")
    [line] = _said(caplog, "the client closed with 1009")
    assert "a recorded server frame is larger than the client accepts (its max_size" in line
