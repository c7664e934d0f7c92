"""Promise 5: when the upstream fails, the client sees what the API would have shown it,
the proxy stays up for the next connection, and the cassette says what happened.

One recorder lives through every fault in turn; each faulty session is compared with the
same session run straight against the upstream (what the client would have seen without
the proxy), and a healthy session follows each fault through the same proxy.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtreplay.cassette import Reject
from rtreplay.codec import load
from rtreplay.recorder import Recorder

from ..conftest import timeout
from ..upstream import Fault, Refusal, ScriptedUpstream

pytestmark = pytest.mark.timeout(60)

IDLE = 1.0  # the recorder's idle timeout: a stalled upstream is given up after this


@dataclass
class Outcome:
    """What a client noticed of one session."""

    status: int | None = None  # HTTP status when the handshake was refused
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    close: tuple[int | None, str] | None = None  # what the client's close frame said; None: dropped


async def session(base_url: str) -> Outcome:
    out = Outcome()
    try:
        ws = await connect(f"{base_url}/realtime?model=gpt-realtime",
                           additional_headers={"Authorization": "Bearer sk-fault-test-key-0001"},
                           max_size=None, max_queue=None, open_timeout=timeout(10))
    except InvalidStatus as exc:
        response = exc.response
        out.status = response.status_code
        out.body = bytes(response.body or b"").decode()
        out.headers = {k.lower(): v for k, v in response.headers.raw_items()
                       if k.lower() in ("retry-after", "content-type", "x-request-id")}
        return out
    try:
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        async for message in ws:
            event = json.loads(message)
            out.events.append(event["type"])
            if event["type"] == "rate_limits.updated":  # the last event of a response
                await ws.close()
    except ConnectionClosed:
        pass
    rcvd = ws.protocol.close_rcvd
    out.close = (rcvd.code, rcvd.reason) if rcvd is not None else None
    return out


@dataclass
class Scenario:
    name: str
    setup: Callable[[ScriptedUpstream], None]
    direct: bool = True  # can the same session be run straight against the upstream?


def refuse(status: int) -> Callable[[ScriptedUpstream], None]:
    def setup(up: ScriptedUpstream) -> None:
        headers = {"Retry-After": "7", "x-request-id": "req_fault"} if status == 429 else {"x-request-id": "req_fault"}
        up.refuse = Refusal(status, headers=headers)
    return setup


def fault(f: Fault) -> Callable[[ScriptedUpstream], None]:
    def setup(up: ScriptedUpstream) -> None:
        up.fault = f
    return setup


SCENARIOS = [
    Scenario("401", refuse(401)),
    Scenario("404", refuse(404)),
    Scenario("429", refuse(429)),
    Scenario("500", refuse(500)),
    Scenario("drop-mid-response", fault(Fault("response.output_audio.delta", "drop", occurrence=2))),
    Scenario("close-1011", fault(Fault("response.output_audio.delta", "close", code=1011, reason="upstream fault"))),
    Scenario("stall", fault(Fault("response.output_audio.delta", "stall")), direct=False),
]


def reset(up: ScriptedUpstream) -> None:
    up.refuse = None
    up.fault = None


def _dead_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_every_fault_in_turn_through_one_proxy(tmp_path: Path) -> None:
    cassette = tmp_path / "faults.jsonl"
    expected_closes: list[tuple[str, object]] = []
    async with ScriptedUpstream(audio_deltas=5) as up:
        healthy_direct = await session(up.websocket_base_url)
        assert healthy_direct.events[-2:] == ["response.done", "rate_limits.updated"]
        async with Recorder(cassette, upstream=up.websocket_base_url, idle_timeout=IDLE, open_timeout=5) as rec:
            # Nothing listening upstream: the client gets 502, and nothing is recorded.
            good_upstream = rec.upstream
            rec.upstream = f"ws://127.0.0.1:{_dead_port()}/v1"
            unreachable = await session(rec.websocket_base_url)
            rec.upstream = good_upstream
            assert unreachable.status == 502 and "cannot reach the upstream" in unreachable.body
            assert (await session(rec.websocket_base_url)).events == healthy_direct.events
            expected_closes.append(("healthy", 1000))

            for scenario in SCENARIOS:
                scenario.setup(up)
                direct = await session(up.websocket_base_url) if scenario.direct else None
                proxied = await session(rec.websocket_base_url)
                reset(up)
                if direct is not None:
                    assert proxied == direct, f"{scenario.name}: the client saw something else through the proxy"
                if scenario.name == "stall":
                    # The API would have kept the client waiting; the proxy gives up after the
                    # idle timeout with 1011, and says so.
                    assert proxied.close == (1011, f"rtreplay: idle for {IDLE:g} s"), proxied
                    expected_closes.append((scenario.name, 1011))
                elif proxied.status is not None:
                    expected_closes.append((scenario.name, proxied.status))
                else:
                    expected_closes.append((scenario.name, 1006 if proxied.close is None else proxied.close[0]))
                # The proxy is still up, and records the next session whole.
                after = await session(rec.websocket_base_url)
                assert after.events == healthy_direct.events, f"after {scenario.name}"
                expected_closes.append(("healthy", 1000))
    recorded = load(cassette)
    assert len(recorded.connections) == len(expected_closes)
    for conn, (name, what) in zip(recorded.connections, expected_closes, strict=True):
        if isinstance(what, int) and what >= 400 and what < 600:
            assert conn.reject is not None and conn.reject.status == what, name
            assert isinstance(conn.reject, Reject) and conn.reject.body, name
            assert not conn.frames
            if what == 429:
                assert conn.reject.headers.get("retry-after") == "7"
        else:
            assert conn.close is not None, name
            assert conn.close.code == what, (name, conn.close)
            if name == "close-1011":
                assert conn.close.by == "server" and conn.close.reason == "upstream fault"
            if name == "drop-mid-response":
                assert conn.close.by is None
            assert conn.frames, name
