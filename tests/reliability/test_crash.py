"""Promise 2: a recorder killed at any moment loses nothing it forwarded.

A real ``rtreplay record`` process relays busy sessions (several at once, audio appends
streaming up while audio deltas stream down) and is killed with SIGKILL at a random
moment. Its partial cassette must then read back, and hold, for every connection, every
frame the client received and every frame the upstream received, in order: the proxy
writes a frame before it forwards it. Repeated for several kills at different moments.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from rtreplay.codec import load

from ..upstream import ScriptedUpstream, pcm16_silence
from .support import report_figure, start_cli

pytestmark = pytest.mark.timeout(120)

KILLS = int(os.environ.get("RTREPLAY_CRASH_KILLS", "4"))
SLOW_KILLS = 40
APPEND = json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm16_silence(100)).decode()})


@dataclass
class Session:
    n: int
    got: list[str | bytes] = field(default_factory=list)
    connected: bool = False


async def busy_session(url: str, session: Session, progress: asyncio.Event, counter: list[int]) -> None:
    """Audio up and responses down until the proxy dies."""
    try:
        ws: ClientConnection = await connect(
            f"{url}?{urllib.parse.urlencode({'model': 'gpt-realtime', 'session': session.n})}",
            additional_headers={"Authorization": f"Bearer sk-crash-test-{session.n:04d}-key"},
            max_size=None, max_queue=None, open_timeout=20,
        )
    except (OSError, InvalidHandshake):
        return  # the proxy died before this client got in
    session.connected = True

    async def up() -> None:
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        while True:
            await ws.send(APPEND)
            await asyncio.sleep(0)  # let the other direction run: both stream at once

    sender = asyncio.create_task(up())
    try:
        async for message in ws:
            session.got.append(message)
            counter[0] += 1
            progress.set()
            if isinstance(message, str) and '"response.done"' in message:
                await ws.send(json.dumps({"type": "response.create"}))
    except ConnectionClosed:
        pass
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        ws.transport.abort()


async def one_kill(tmp_path: Path, rng: random.Random, sessions: int, number: int) -> dict[str, int]:
    out = tmp_path / f"killed{number}.jsonl"
    async with ScriptedUpstream(audio_deltas=40, delay=0.0) as up:
        rec = await start_cli("record", "--out", str(out), "--upstream", up.websocket_base_url, "--quiet",
                              env={"OPENAI_API_KEY": ""})
        state = [Session(n) for n in range(sessions)]
        counter = [0]
        progress = asyncio.Event()
        # The moment: after a random number of frames reached the clients, all sessions busy.
        threshold = rng.randint(1, 60 * sessions)
        tasks = [asyncio.create_task(busy_session(rec.url, s, progress, counter)) for s in state]
        while counter[0] < threshold:
            progress.clear()
            await asyncio.wait_for(progress.wait(), 30)
        await rec.kill()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        # Every upstream connection has seen its end: what it received is final.
        await up.wait_until(lambda: up.open_connections == 0, timeout=30, what="every upstream connection to end")
        received: dict[str, list[str | bytes]] = {}
        for handshake in up.handshakes:
            key = handshake.query["session"]
            received[key] = [r.raw for r in up.received if r.conn == handshake.conn]
    assert not out.exists(), "a killed recorder left a finished-looking cassette"
    partial = out.with_name(f"{out.name}.{rec.pid}.partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the record being written when killed may be cut
        cassette = load(partial)
    by_session = {c.open.query["session"]: c for c in cassette.connections}
    frames = 0
    for s in state:
        key = str(s.n)
        if key not in received:
            assert not s.got
            continue
        if key not in by_session:
            # Killed between the upstream's handshake and the client's: nothing was relayed.
            assert not s.got and not received[key], f"session {s.n} relayed frames but was never recorded"
            continue
        conn = by_session[key]
        server = [f.payload() for f in conn.frames if f.dir == "server"]
        client = [f.payload() for f in conn.frames if f.dir == "client"]
        assert server[: len(s.got)] == s.got, f"session {s.n}: a frame the client saw is missing or out of order"
        assert client[: len(received[key])] == received[key], f"session {s.n}: a frame the upstream saw is missing"
        # Recorded but not seen: only what was in flight when the process died.
        assert len(server) - len(s.got) <= 256 and len(client) - len(received[key]) <= 256
        frames += len(s.got) + len(received[key])
    return {"frames": frames, "sessions": sum(s.connected for s in state)}


async def kill_many(tmp_path: Path, kills: int, sessions: int, seed: int) -> None:
    rng = random.Random(seed)
    checked = 0
    for number in range(kills):
        result = await one_kill(tmp_path, rng, sessions, number)
        checked += result["frames"]
        assert result["sessions"] > 0
    report_figure(f"crash: kills survived ({sessions} sessions each)", kills)
    report_figure(f"crash: frames checked over {kills} kills", checked)


async def test_sigkill_at_random_moments_loses_no_forwarded_frame(tmp_path: Path) -> None:
    await kill_many(tmp_path, KILLS, 6, 2026)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_sigkill_many_times(tmp_path: Path) -> None:
    await kill_many(tmp_path, SLOW_KILLS, 24, 42)
