"""Promise 6: many connections at once, with audio, lose, reorder and double nothing, in
bounded memory.

``N`` clients record at once through one real ``rtreplay record`` process (audio appends
up, audio deltas down); the cassette must then hold, for every connection, exactly what
its client and the upstream exchanged. Then ``N`` clients replay that cassette at once
from one real ``rtreplay serve`` process; each must get exactly the frames of one
recorded connection, and every recorded connection must go to exactly one client. The
peak resident memory of both processes is measured (``VmHWM``) and bounded.

The default suite runs 64 connections; the ``slow`` test runs 256.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import urllib.parse
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from rtreplay.codec import load

from ..conftest import timeout
from ..upstream import ScriptedUpstream, pcm16_silence
from .support import peak_rss_kib, report_figure, start_cli

CONNECTIONS = int(os.environ.get("RTREPLAY_LOAD_CONNECTIONS", "64"))
SLOW_CONNECTIONS = 256
APPENDS = 8  # 8 x 100 ms of audio up per connection (~6.4 KB frames)
DELTAS = 8  # and 8 audio deltas (~6.5 KB each) down
AUDIO = base64.b64encode(pcm16_silence(100)).decode()
# Resident memory allowed beyond an idle process, per connection: generous, but a server
# that kept every frame (~120 KB a connection here) would not fit.
PER_CONNECTION_KIB = 96
BASE_KIB = 80 * 1024


def script() -> list[str]:
    """What every client sends (the same for all, so any client can replay any connection)."""
    out = [json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}})]
    out += [json.dumps({"type": "input_audio_buffer.append", "audio": AUDIO, "n": n}) for n in range(APPENDS)]
    out.append(json.dumps({"type": "response.create"}))
    return out


async def client(url: str, n: int) -> list[str | bytes]:
    got: list[str | bytes] = []
    async with connect(f"{url}?{urllib.parse.urlencode({'model': 'gpt-realtime', 'session': n})}",
                       additional_headers={"Authorization": "Bearer sk-load-test-key-0001"},
                       max_size=None, open_timeout=timeout(60), close_timeout=timeout(30)) as ws:
        for message in script():
            await ws.send(message)
        async for message in ws:
            got.append(message)
            if isinstance(message, str) and '"rate_limits.updated"' in message:  # a response's last event
                break
    return got


_TIME = re.compile(r'("expires_at": )\d+')


def _timeless(messages: list[str | bytes]) -> list[str | bytes]:
    return [_TIME.sub(r"\1<time>", m) if isinstance(m, str) else m for m in messages]


async def run_load(tmp_path: Path, count: int) -> None:
    cassette = tmp_path / "load.jsonl"
    # -- record ---------------------------------------------------------------------------
    async with ScriptedUpstream(audio_deltas=DELTAS) as up:
        rec = await start_cli("record", "--out", str(cassette), "--upstream", up.websocket_base_url, "--quiet",
                              env={"OPENAI_API_KEY": ""})
        idle = peak_rss_kib(rec.pid)
        try:
            results = await asyncio.wait_for(asyncio.gather(*(client(rec.url, n) for n in range(count))), timeout(240))
            await up.wait_until(lambda: up.open_connections == 0, timeout=timeout(60), what="every upstream connection to end")
            record_peak = peak_rss_kib(rec.pid)
        finally:
            code, _, err = await rec.stop()
        assert code == 0, err
        upstream_got = {h.query["session"]: [r.raw for r in up.received if r.conn == h.conn] for h in up.handshakes}
    recorded = load(cassette)
    assert len(recorded.connections) == count
    sent = script()
    by_session = {c.open.query["session"]: c for c in recorded.connections}
    for n, got in enumerate(results):
        conn = by_session[str(n)]
        assert [f.payload() for f in conn.frames if f.dir == "server"] == got, f"recording {n}: server frames"
        assert [f.payload() for f in conn.frames if f.dir == "client"] == upstream_got[str(n)] == sent, f"recording {n}"
        assert conn.close is not None and conn.close.code == 1000 and conn.close.by == "client"
    assert all(got[-1].count("rate_limits.updated") for got in results)  # type: ignore[union-attr]
    recorded_frames = sum(len(c.frames) for c in recorded.connections)

    # -- replay ---------------------------------------------------------------------------
    server = await start_cli("serve", str(cassette))
    serve_idle = peak_rss_kib(server.pid)
    try:
        replays = await asyncio.wait_for(asyncio.gather(*(client(server.url, n) for n in range(count))), timeout(240))
        serve_peak = peak_rss_kib(server.pid)
    finally:
        code, _, err = await server.stop()
    assert code == 0, err
    assert "mismatch:" not in err and not re.search(r"\b[1-9]\d* mismatch", err), err
    # Each client got one whole recorded connection; together, every connection once.
    first_ids = {json.loads(c.frames[0].payload())["event_id"]: c for c in recorded.connections}  # type: ignore[arg-type]
    served = []
    for got in replays:
        conn = first_ids[json.loads(got[0])["event_id"]]
        recorded_server = [f.payload() for f in conn.frames if f.dir == "server"]
        # (The replay moves time fields to replay time: their digits aside, byte for byte.)
        assert _timeless(got) == _timeless(recorded_server), "a replayed frame lost, reordered or doubled"
        served.append(conn.open.conn)
    assert sorted(served) == list(range(count))

    for name, idle_kib, peak in (("record", idle, record_peak), ("serve", serve_idle, serve_peak)):
        report_figure(f"load {count}: rtreplay {name} peak RSS MiB (idle MiB)", [round(peak / 1024, 1), round(idle_kib / 1024, 1)])
        assert peak <= max(idle_kib, BASE_KIB) + PER_CONNECTION_KIB * count, f"rtreplay {name}: peak {peak} KiB"
    report_figure(f"load {count}: frames recorded and replayed", recorded_frames)


@pytest.mark.timeout(300)
async def test_concurrent_connections_record_and_replay_whole(tmp_path: Path) -> None:
    await run_load(tmp_path, CONNECTIONS)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_256_concurrent_connections(tmp_path: Path) -> None:
    await run_load(tmp_path, SLOW_CONNECTIONS)
