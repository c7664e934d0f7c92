"""The recording proxy, end to end: real SDKs and sockets through Recorder to a scripted upstream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.frames import Frame as WsFrame

from rtreplay.cassette import Cassette, Close, Frame, Open
from rtreplay.codec import CassetteReader, load
from rtreplay.errors import UpstreamError
from rtreplay.recorder import Recorder, upstream_url

from . import clients
from .conftest import CASSETTES, timeout
from .docs import code_blocks
from .upstream import Fault, ScriptedUpstream

CLIENT_KEY = "sk-live-client-key-4f9a8b7c6d5e"
PROXY_KEY = "sk-proxy-own-key-1a2b3c4d5e6f"
TEXT = {"type": "realtime", "output_modalities": ["text"]}


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream() as up:
        yield up


@pytest.fixture
def cassette(tmp_path: Path) -> Path:
    return tmp_path / "session.jsonl"


def sdk(base_url: str, key: str = CLIENT_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, websocket_base_url=base_url)


async def sdk_text_session(base_url: str, text: str = "Say hello", key: str = CLIENT_KEY) -> list[Any]:
    """A text exchange through the official SDK; the server events it received."""
    client = sdk(base_url, key)
    events: list[Any] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session=TEXT)  # type: ignore[arg-type]
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        )
        await conn.response.create()
        async for event in conn:
            events.append(event)
            if event.type == "rate_limits.updated":  # the last event of a response
                break
    await client.close()
    return events


def frames(cassette: Cassette, conn: int, direction: str) -> list[str | bytes]:
    return [f.payload() for f in cassette.connections[conn].frames if f.dir == direction]


async def test_sdk_session_is_recorded_as_both_ends_saw_it(upstream: ScriptedUpstream, cassette: Path) -> None:
    async with Recorder(cassette, upstream=upstream.websocket_base_url, api_key=PROXY_KEY) as rec:
        events = await sdk_text_session(rec.websocket_base_url)
    assert rec.connections == 1
    recorded = load(cassette)
    [conn] = recorded.connections
    assert conn.open.path == "/v1/realtime" and conn.open.query == {"model": "gpt-realtime"}
    assert conn.open.protocol == "ga" and conn.open.subprotocol is None
    assert conn.open.headers["authorization"] == "Bearer REDACTED"
    assert conn.open.headers["user-agent"].startswith("AsyncOpenAI/Python")
    assert not any(h.startswith("x-stainless") for h in conn.open.headers)
    # Every frame, each way, byte for byte and in order.
    assert frames(recorded, 0, "client") == [r.raw for r in upstream.received]
    server = [json.loads(f) for f in frames(recorded, 0, "server")]
    assert [e["type"] for e in server] == [e.type for e in events]
    assert server[0]["type"] == "session.created" and server[-1]["type"] == "rate_limits.updated"
    assert conn.close == Close(0, conn.close.t, 1000, "", "client")
    times = [f.t for f in conn.frames]
    assert times == sorted(times) and conn.close.t >= times[-1]
    # The client's own key went upstream; the proxy's key was not needed.
    assert upstream.handshakes[0].headers["authorization"] == f"Bearer {CLIENT_KEY}"
    data = cassette.read_bytes()
    assert CLIENT_KEY.encode() not in data and PROXY_KEY.encode() not in data


async def test_received_holds_what_the_clients_sent(upstream: ScriptedUpstream, cassette: Path) -> None:
    """``Recorder.received`` is ``ReplayServer.received`` for a recording: same shape."""
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        await sdk_text_session(rec.websocket_base_url)
        async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            await ws.recv()
            await ws.send(b"\x00\x01")
            await ws.send("not json")
    recorded = load(cassette)
    received = list(rec.received)
    assert [r.type for r in received[:3]] == ["session.update", "conversation.item.create", "response.create"]
    assert [r.raw for r in received] == frames(recorded, 0, "client") + frames(recorded, 1, "client")
    assert [r.conn for r in received] == [0, 0, 0, 1, 1]
    assert received[3].event is None and received[4].event is None


async def test_received_keeps_audio_appends_within_its_budget(upstream: ScriptedUpstream, cassette: Path) -> None:
    append = json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA" * 1000})
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        rec.received_audio_budget = 10_000
        async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            await ws.recv()
            for _ in range(4):
                await ws.send(append)
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            while json.loads(await ws.recv())["type"] != "input_audio_buffer.cleared":
                pass
    kept = [(r.type, r.raw is not None, r.elided) for r in rec.received]
    assert kept == [("input_audio_buffer.append", True, 0)] * 2 + [
        ("input_audio_buffer.append", False, len(append))
    ] * 2 + [("input_audio_buffer.clear", True, 0)]
    assert len(frames(load(cassette), 0, "client")) == 5  # the cassette keeps everything


async def test_received_can_be_turned_off(upstream: ScriptedUpstream, cassette: Path) -> None:
    async with Recorder(cassette, upstream=upstream.websocket_base_url, keep_received=False) as rec:
        await sdk_text_session(rec.websocket_base_url)
    assert rec.received == []
    assert len(frames(load(cassette), 0, "client")) == 3


async def test_cassette_replays_with_no_key(upstream: ScriptedUpstream, cassette: Path) -> None:
    from rtreplay.server import ReplayServer

    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        live = await sdk_text_session(rec.websocket_base_url)
    async with ReplayServer(cassette) as replay:
        client = openai.AsyncOpenAI(api_key="no-key-at-all", websocket_base_url=replay.websocket_base_url)
        replayed = await clients.openai_async(replay.websocket_base_url, clients.script(cassette))
        await client.close()
    assert [e["type"] for e in replayed] == [e.type for e in live]
    assert replay.report.ok, str(replay.report)


async def test_proxy_key_is_used_only_when_the_client_sends_none(upstream: ScriptedUpstream, cassette: Path) -> None:
    async with Recorder(cassette, upstream=upstream.websocket_base_url, api_key=PROXY_KEY) as rec:
        async with connect(rec.url + "?model=gpt-realtime") as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            # A key inside a frame is redacted too.
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"my key is {PROXY_KEY}"}]}}))
            await ws.recv()
    assert upstream.handshakes[0].headers["authorization"] == f"Bearer {PROXY_KEY}"
    recorded = load(cassette)
    assert "authorization" not in recorded.connections[0].open.headers  # the client sent none
    assert PROXY_KEY.encode() not in cassette.read_bytes()
    assert "my key is REDACTED" in str(frames(recorded, 0, "client")[0])


async def test_beta_protocol_and_subprotocols(upstream: ScriptedUpstream, cassette: Path) -> None:
    browser = ["realtime", f"openai-insecure-api-key.{CLIENT_KEY}", "openai-beta.realtime-v1"]
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        async with connect(rec.url + "?model=gpt-4o-realtime-preview", subprotocols=browser) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == "realtime"  # what the upstream chose, passed back
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
            events = [json.loads(await ws.recv()) for _ in range(2)]
    assert events[1]["type"] == "conversation.item.created"  # beta names, decided upstream
    assert upstream.handshakes[0].subprotocols == browser
    opened = load(cassette).connections[0].open
    assert opened.protocol == "beta" and opened.subprotocol == "realtime"
    assert CLIENT_KEY.encode() not in cassette.read_bytes()


async def test_sdk_beta_client(upstream: ScriptedUpstream, cassette: Path) -> None:
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        client = sdk(rec.websocket_base_url)
        async with client.beta.realtime.connect(model="gpt-4o-realtime-preview") as conn:
            await conn.session.update(session={"modalities": ["text"]})
            event = await conn.recv()
            assert event.type == "session.created"
            assert (await conn.recv()).type == "session.updated"
        await client.close()
    opened = load(cassette).connections[0].open
    assert opened.protocol == "beta" and opened.headers["openai-beta"] == "realtime=v1"


async def test_the_beta_sunset_is_recorded_and_explained(
    upstream: ScriptedUpstream, cassette: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from rtreplay.server import ReplayServer

    upstream.beta_disabled = True  # what the API does to a beta client since its sunset
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "OpenAI-Beta": "realtime=v1"}
    with caplog.at_level("WARNING", logger="rtreplay.recorder"):
        async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
            async with connect(rec.url + "?model=gpt-4o-realtime-preview", additional_headers=headers) as ws:
                error = json.loads(await ws.recv())
                await ws.wait_closed()
    assert error["error"]["code"] == "beta_api_shape_disabled" and ws.close_code == 4000
    assert "beta sessions can no longer be recorded" in caplog.text and "rtreplay migrate" in caplog.text
    # The refusal itself replays, to the beta client that gets it.
    async with ReplayServer(cassette) as server:
        async with connect(server.url + "?model=gpt-4o-realtime-preview", additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["error"]["code"] == "beta_api_shape_disabled"
            await ws.wait_closed()
        assert ws.close_code == 4000


async def test_connections_sequential_and_concurrent_share_one_cassette(
    upstream: ScriptedUpstream, cassette: Path
) -> None:
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        await sdk_text_session(rec.websocket_base_url, "first")
        await asyncio.gather(*(sdk_text_session(rec.websocket_base_url, f"concurrent {i}") for i in range(3)))
    recorded = load(cassette)
    assert [c.index for c in recorded.connections] == [0, 1, 2, 3] and rec.connections == 4
    said = [json.loads(frames(recorded, c.index, "client")[1])["item"]["content"][0]["text"] for c in recorded.connections]
    assert said[0] == "first" and sorted(said[1:]) == ["concurrent 0", "concurrent 1", "concurrent 2"]
    for conn in recorded.connections:
        assert conn.close is not None and conn.close.code == 1000
        assert json.loads(frames(recorded, conn.index, "server")[-1])["type"] == "rate_limits.updated"


async def test_binary_stays_binary_and_large_frames_pass(upstream: ScriptedUpstream, cassette: Path) -> None:
    big = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (4 * 1024 * 1024)})
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}, max_size=None) as ws:
            await ws.recv()
            await ws.send(b"\x00\x01binary")
            assert json.loads(await ws.recv())["type"] == "error"
            await ws.send(big)
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            assert json.loads(await ws.recv())["type"] == "input_audio_buffer.cleared"
    assert [r.raw for r in upstream.received] == [b"\x00\x01binary", big, '{"type": "input_audio_buffer.clear"}']
    recorded = frames(load(cassette), 0, "client")
    assert recorded[0] == b"\x00\x01binary" and recorded[1] == big


class _FrameLog:
    """Keeps the data frames a connection receives, as websockets parsed them."""

    frames: ClassVar[list[tuple[str, bytes, bool]]]

    def process_event(self, event: Any) -> None:
        if isinstance(event, WsFrame) and event.opcode.name in ("TEXT", "BINARY", "CONT"):
            self.frames.append((event.opcode.name, bytes(event.data), event.fin))
        super().process_event(event)  # type: ignore[misc]


class _LoggedServer(_FrameLog, ServerConnection):
    frames: ClassVar[list[tuple[str, bytes, bool]]] = []


class _LoggedClient(_FrameLog, ClientConnection):
    frames: ClassVar[list[tuple[str, bytes, bool]]] = []


async def test_fragmented_messages_pass_as_fragments_and_are_recorded_whole(cassette: Path) -> None:
    """A message sent in fragments arrives in fragments, and the cassette holds it whole."""
    _LoggedServer.frames, _LoggedClient.frames = [], []

    async def handler(ws: ServerConnection) -> None:
        await ws.send(['{"type":"server.', 'fragmented"}'])
        assert await ws.recv() == '{"type":"client.fragmented"}'
        await ws.close()

    async with serve(handler, "127.0.0.1", 0, create_connection=_LoggedServer, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with Recorder(cassette, upstream=f"ws://127.0.0.1:{port}/v1") as rec:
            async with connect(
                rec.url, additional_headers={"Authorization": "Bearer x"}, create_connection=_LoggedClient
            ) as ws:
                assert await ws.recv() == '{"type":"server.fragmented"}'
                await ws.send(['{"type":"client.', 'fragmented"}'])
                await ws.wait_closed()
    for got, whole in ((_LoggedClient.frames, b'{"type":"server.fragmented"}'), (_LoggedServer.frames, b'{"type":"client.fragmented"}')):
        assert len(got) > 1 and got[0][0] == "TEXT" and not got[0][2] and got[-1][2], got
        assert b"".join(data for _op, data, _fin in got) == whole
    recorded = load(cassette)
    assert frames(recorded, 0, "server") == ['{"type":"server.fragmented"}']
    assert frames(recorded, 0, "client") == ['{"type":"client.fragmented"}']


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_empty_and_boundary_sized_messages_pass_both_ways(cassette: Path, compression: str | None) -> None:
    """Each length encoding of a frame header (7-bit, 16-bit, 64-bit), and empty messages,
    on plain hops (framed by the recorder) and compressed ones (framed by websockets)."""
    sizes = [0, 1, 125, 126, 65535, 65536, 200_000]
    messages: list[str | bytes] = [m for n in sizes for m in ("x" * n, b"\x01" * n)]

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=compression) as server:
        port = server.sockets[0].getsockname()[1]
        async with Recorder(cassette, upstream=f"ws://127.0.0.1:{port}/v1") as rec:
            headers = {"Authorization": "Bearer x"}
            async with connect(rec.url, additional_headers=headers, compression=compression) as ws:
                assert bool(ws.protocol.extensions) == (compression is not None)
                for message in messages:
                    await ws.send(message)
                    assert await ws.recv() == message
    recorded = load(cassette)
    assert frames(recorded, 0, "client") == messages
    assert frames(recorded, 0, "server") == messages


async def test_a_wss_upstream_with_a_private_ca_and_a_slow_client(tmp_path: Path, cassette: Path) -> None:
    """The API is wss://: TLS on the upstream hop, with flow control through it (the
    client stops reading now and then, so the proxy stops reading the upstream)."""
    from .conformance.tls import make_certificate, openssl_missing

    if missing := openssl_missing():
        pytest.skip(missing)
    cert = make_certificate(tmp_path)
    count, pad = 200, "A" * 64_000

    async def firehose(ws: ServerConnection) -> None:
        assert json.loads(await ws.recv())["type"] == "response.create"
        for n in range(count):
            await ws.send(json.dumps({"type": "response.output_audio.delta", "n": n, "delta": pad}))
        await ws.close()

    async with serve(firehose, "127.0.0.1", 0, ssl=cert.server_context(), compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        upstream = f"wss://127.0.0.1:{port}/v1"
        async with Recorder(cassette, upstream=upstream, upstream_ssl=cert.client_context()) as rec:
            got: list[int] = []
            async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}, max_queue=1) as ws:
                await ws.send(json.dumps({"type": "response.create"}))
                async for message in ws:
                    got.append(json.loads(message)["n"])
                    if len(got) % 40 == 0:
                        await asyncio.sleep(0.05)  # a slow reader, so that back-pressure builds up
    assert got == list(range(count))
    recorded = load(cassette)
    assert [json.loads(f)["n"] for f in frames(recorded, 0, "server")] == got
    close = recorded.connections[0].close
    assert close is not None and (close.code, close.by) == (1000, "server")


async def test_text_that_is_not_utf8_is_refused_with_1007(upstream: ScriptedUpstream, cassette: Path) -> None:
    """As websockets (and the API) would: close 1007; the bad message goes nowhere."""
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            await ws.send(b'{"type": "conversation.item.create", "x": "\xff\xfe"}', text=True)
            closed = await read_until_closed(ws, [])
        await upstream.wait_until(lambda: 0 in upstream.closes, timeout=timeout(10))
    assert closed.rcvd is not None and closed.rcvd.code == 1007
    assert [r.raw for r in upstream.received] == ['{"type": "input_audio_buffer.clear"}']
    assert upstream.closes[0][0] == 1007
    conn = load(cassette).connections[0]
    assert frames(load(cassette), 0, "client") == ['{"type": "input_audio_buffer.clear"}']
    assert conn.close is not None and conn.close.code == 1007


async def test_compression_only_when_the_client_offers_it(upstream: ScriptedUpstream, cassette: Path) -> None:
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        headers = {"Authorization": "Bearer x"}
        async with connect(rec.url, additional_headers=headers, compression=None) as plain:
            await plain.recv()
            assert plain.protocol.extensions == []
        async with connect(rec.url, additional_headers=headers) as deflating:  # websockets offers deflate
            await deflating.recv()
            assert [e.name for e in deflating.protocol.extensions] == ["permessage-deflate"]
    assert "sec-websocket-extensions" not in upstream.handshakes[0].headers
    assert "permessage-deflate" in upstream.handshakes[1].headers["sec-websocket-extensions"]


# -- refusals and unreachable upstreams --------------------------------------------------


@pytest.mark.parametrize(("status", "model"), [(401, "gpt-realtime"), (404, "no-such-model")])
async def test_upstream_refusal_reaches_the_client_and_the_cassette(
    status: int, model: str, cassette: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with ScriptedUpstream(api_key="sk-the-right-key-000000", models={"gpt-realtime"}) as up:
        async with Recorder(cassette, upstream=up.websocket_base_url) as rec:
            client = sdk(rec.websocket_base_url, key=CLIENT_KEY)
            with pytest.raises(InvalidStatus) as info:
                key = CLIENT_KEY if status == 401 else "sk-the-right-key-000000"
                client = sdk(rec.websocket_base_url, key=key)
                async with client.realtime.connect(model=model):
                    pass
            await client.close()
    response = info.value.response
    assert response.status_code == status
    body = json.loads(response.body)
    assert body["error"]["code"] == ("invalid_api_key" if status == 401 else "model_not_found")
    [conn] = load(cassette).connections
    assert conn.reject is not None and conn.reject.status == status and conn.frames == []
    assert json.loads(conn.reject.body) == body
    assert conn.reject.headers["content-type"] == "application/json"
    assert conn.open.query == {"model": model}
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert f"HTTP {status}" in line and "/v1/realtime?model=" in line
    assert CLIENT_KEY.encode() not in cassette.read_bytes()


async def test_unreachable_upstream_gives_502_and_writes_nothing(
    cassette: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A port nobody listens on: bind one, then close it.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with Recorder(cassette, upstream=f"ws://127.0.0.1:{port}/v1") as rec:
        with pytest.raises(InvalidStatus) as info:
            await connect(rec.url + "?model=gpt-realtime", additional_headers={"Authorization": "Bearer x"})
    assert info.value.response.status_code == 502
    assert b"cannot reach the upstream" in info.value.response.body
    assert rec.connections == 0 and not cassette.exists()
    assert not list(cassette.parent.glob("*.partial"))
    assert any("answered 502" in r.getMessage() for r in caplog.records)
    [error] = rec.upstream_errors
    assert error.status == 502 and error.url == f"ws://127.0.0.1:{port}/v1/realtime"
    with pytest.raises(UpstreamError, match="answered 502"):
        rec.check()


async def test_upstream_that_does_not_answer_gives_504(cassette: Path) -> None:
    accepted = asyncio.Event()
    writers = []

    def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Recorder(cassette, upstream=f"ws://127.0.0.1:{port}/v1", open_timeout=0.3) as rec:
            with pytest.raises(InvalidStatus) as info:
                await connect(rec.url, additional_headers={"Authorization": "Bearer x"})
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
    assert info.value.response.status_code == 504
    assert [e.status for e in rec.upstream_errors] == [504]


async def test_not_a_realtime_path_gives_404(upstream: ScriptedUpstream, cassette: Path) -> None:
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{rec.port}/v1/chat", additional_headers={"Authorization": "Bearer x"})
    assert info.value.response.status_code == 404
    assert upstream.handshakes == []


def test_path_tails_map_onto_the_upstream_base() -> None:
    assert upstream_url("ws://127.0.0.1:9/v1", "/v1/realtime", "model=x") == "ws://127.0.0.1:9/v1/realtime?model=x"
    azure = "api-version=2025-04-01-preview&deployment=gpt-realtime"
    assert upstream_url("wss://res.openai.azure.com/openai", "/openai/realtime", azure) == (
        f"wss://res.openai.azure.com/openai/realtime?{azure}"
    )
    assert upstream_url("wss://api.openai.com/v1/", "/realtime", "") == "wss://api.openai.com/v1/realtime"
    assert upstream_url("wss://h/openai/v1", "/anything/realtime", "model=d") == "wss://h/openai/v1/realtime?model=d"
    assert upstream_url("wss://h/v1", "/v1/chat/completions", "") is None


def test_bad_upstream_url_is_refused() -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        Recorder("x.jsonl", upstream="https://api.openai.com/v1")


@pytest.mark.parametrize(
    "options",
    [{"port": 70000}, {"port": -1}, {"port": True}, {"open_timeout": float("nan")},
     {"open_timeout": 0}, {"idle_timeout": -3}, {"idle_timeout": float("inf")}],
)
def test_bad_ports_and_timeouts_are_value_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        Recorder("x.jsonl", upstream="ws://127.0.0.1:9/v1", **options)


# -- how connections end ------------------------------------------------------------------


async def read_until_closed(ws: ClientConnection, received: list[Any]) -> ConnectionClosed:
    try:
        while True:
            received.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return exc


async def ask_for_text(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}}))


async def test_upstream_dropping_mid_response(cassette: Path) -> None:
    fault = Fault("response.output_text.delta", "drop", occurrence=2)
    async with ScriptedUpstream(fault=fault) as up, Recorder(cassette, upstream=up.websocket_base_url) as rec:
        received: list[Any] = []
        async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            await ask_for_text(ws)
            closed = await read_until_closed(ws, received)
    assert isinstance(closed, ConnectionClosedError) and closed.rcvd is None  # dropped, as the API's was
    assert received[-1]["type"] == "response.output_text.delta"
    conn = load(cassette).connections[0]
    assert [json.loads(f) for f in frames(load(cassette), 0, "server")] == received
    assert conn.close is not None and (conn.close.code, conn.close.by) == (1006, None)
    assert "upstream dropped" in conn.close.reason


async def test_upstream_closing_with_1011(cassette: Path) -> None:
    fault = Fault("response.created", "close", code=1011, reason="server had an error")
    async with ScriptedUpstream(fault=fault) as up, Recorder(cassette, upstream=up.websocket_base_url) as rec:
        received: list[Any] = []
        async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            await ask_for_text(ws)
            closed = await read_until_closed(ws, received)
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (1011, "server had an error")
    close = load(cassette).connections[0].close
    assert close is not None and (close.code, close.reason, close.by) == (1011, "server had an error", "server")


async def test_client_dropping_mid_response(cassette: Path) -> None:
    async with ScriptedUpstream(delay=0.02) as up, Recorder(cassette, upstream=up.websocket_base_url) as rec:
        received: list[Any] = []
        ws = await connect(rec.url, additional_headers={"Authorization": "Bearer x"})
        await ask_for_text(ws)
        while not received or received[-1]["type"] != "response.output_text.delta":
            received.append(json.loads(await ws.recv()))
        ws.transport.abort()  # vanish: no close frame
        await ws.wait_closed()
        await up.wait_until(lambda: 0 in up.closes, what="the proxy closing the upstream", timeout=timeout(10))
    assert up.closes[0] == (1001, "client went away")
    conn = load(cassette).connections[0]
    assert conn.close is not None and (conn.close.code, conn.close.by) == (1006, None)
    assert "client dropped" in conn.close.reason
    # Everything the client saw is there; what the upstream sent after the drop reached no one.
    server = [json.loads(f) for f in frames(load(cassette), 0, "server")]
    assert server[: len(received)] == received
    assert "response.done" not in [e["type"] for e in server]


async def test_client_close_code_and_reason_reach_the_upstream(upstream: ScriptedUpstream, cassette: Path) -> None:
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            await ws.recv()
            await ws.close(4000, "done here")
        await upstream.wait_until(lambda: 0 in upstream.closes, timeout=timeout(10))
    assert upstream.closes[0] == (4000, "done here")
    close = load(cassette).connections[0].close
    assert close is not None and (close.code, close.reason, close.by) == (4000, "done here", "client")


async def test_stalled_upstream_is_closed_after_the_idle_timeout(cassette: Path) -> None:
    fault = Fault("response.created", "stall")
    async with ScriptedUpstream(fault=fault) as up, Recorder(
        cassette, upstream=up.websocket_base_url, idle_timeout=0.3
    ) as rec, connect(rec.url, additional_headers={"Authorization": "Bearer x"}) as ws:
        await ask_for_text(ws)
        closed = await asyncio.wait_for(read_until_closed(ws, []), timeout(10))
    assert closed.rcvd is not None and closed.rcvd.code == 1011 and "idle" in closed.rcvd.reason
    close = load(cassette).connections[0].close
    assert close is not None and (close.code, close.by) == (1011, "server")


async def test_close_ends_live_connections_politely(upstream: ScriptedUpstream, cassette: Path) -> None:
    rec = await Recorder(cassette, upstream=upstream.websocket_base_url).start()
    async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}) as ws:
        await ws.recv()
        await rec.close()
        closed = await read_until_closed(ws, [])
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    await upstream.wait_until(lambda: 0 in upstream.closes, timeout=timeout(10))
    assert upstream.closes[0][0] == 1001
    close = load(cassette).connections[0].close
    assert close is not None and (close.code, close.by) == (1001, "server")
    await rec.close()  # twice is fine


# -- what is written when -----------------------------------------------------------------


async def test_discard_keeps_the_existing_cassette(upstream: ScriptedUpstream, cassette: Path) -> None:
    cassette.write_bytes((CASSETTES / "text-response.jsonl").read_bytes())
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        await sdk_text_session(rec.websocket_base_url)
        rec.discard()
    assert cassette.read_bytes() == (CASSETTES / "text-response.jsonl").read_bytes()
    assert not list(cassette.parent.glob("*.partial"))


async def test_nothing_recorded_leaves_an_existing_cassette_alone(
    upstream: ScriptedUpstream, cassette: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cassette.write_text("precious\n")
    async with Recorder(cassette, upstream=upstream.websocket_base_url):
        pass
    assert cassette.read_text() == "precious\n"
    assert any("no connection was recorded" in r.getMessage() for r in caplog.records)


async def test_a_recording_that_writes_nothing_leaves_no_directory_it_made(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """`rtreplay record --out new/dir/x.jsonl` stopped before any connection, or a discarded
    recording: no empty new/dir/ is left behind (tmp_path itself, there before, stays)."""
    async with Recorder(tmp_path / "new" / "dir" / "x.jsonl", upstream=upstream.websocket_base_url):
        pass
    async with Recorder(tmp_path / "new" / "dir" / "y.jsonl", upstream=upstream.websocket_base_url) as rec:
        await sdk_text_session(rec.websocket_base_url)
        rec.discard()
    assert list(tmp_path.iterdir()) == []
    async with Recorder(tmp_path / "new" / "dir" / "z.jsonl", upstream=upstream.websocket_base_url) as rec:
        await sdk_text_session(rec.websocket_base_url)
    assert [p.name for p in (tmp_path / "new" / "dir").iterdir()] == ["z.jsonl"]


async def test_a_directory_taken_away_by_another_recorder_is_made_again(
    upstream: ScriptedUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two recorders of two cassettes in one new directory (pytest-xdist workers): the one
    that writes nothing takes the empty directory away, possibly between the other's mkdir
    and its lock file's creation. The other makes it again and records under its lock."""
    import rtreplay.recorder as recorder_module

    real = recorder_module.make_directories

    def made_then_taken_away(directory: Path) -> list[Path]:
        made = real(directory)
        directory.rmdir()  # what the other recorder's stop() does to the empty directory
        return made

    monkeypatch.setattr(recorder_module, "make_directories", made_then_taken_away)
    target = tmp_path / "new" / "x.jsonl"
    async with Recorder(target, upstream=upstream.websocket_base_url) as rec:
        assert target.with_name("x.jsonl.lock").exists()  # recording under its lock
        await sdk_text_session(rec.websocket_base_url)
    assert [p.name for p in target.parent.iterdir()] == ["x.jsonl"]


async def test_refusals_alone_do_not_replace_an_existing_cassette(cassette: Path) -> None:
    cassette.write_text("precious\n")
    async with ScriptedUpstream(refuse=429) as up, Recorder(cassette, upstream=up.websocket_base_url) as rec:
        with pytest.raises(InvalidStatus):
            await connect(rec.url, additional_headers={"Authorization": "Bearer x"})
    assert cassette.read_text() == "precious\n"


async def test_every_forwarded_frame_is_on_disk_before_it_is_forwarded(
    upstream: ScriptedUpstream, cassette: Path
) -> None:
    """What a SIGKILL would leave: the partial file holds each frame the client has seen."""
    async with Recorder(cassette, upstream=upstream.websocket_base_url) as rec:
        partial = rec._writer.partial_path
        async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            await ask_for_text(ws)
            seen = 0
            while True:
                message = await ws.recv()
                seen += 1
                with CassetteReader(partial) as reader:
                    written = [r for r in reader if isinstance(r, Frame) and r.dir == "server"]
                assert len(written) >= seen and written[seen - 1].payload() == message
                if json.loads(message)["type"] == "rate_limits.updated":
                    break


async def test_slow_client_does_not_make_the_proxy_buffer_without_bound(cassette: Path) -> None:
    """A client that stops reading stops the upstream within a bounded amount of data."""
    chunk = json.dumps({"type": "response.output_audio.delta", "delta": "A" * 64_000})
    sent = 0
    blocked = asyncio.Event()

    async def firehose(ws: ServerConnection) -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionClosed):
            while sent < 4000:  # 256 MB if nothing pushed back
                try:
                    await asyncio.wait_for(ws.send(chunk), 1.0)
                except asyncio.TimeoutError:
                    blocked.set()
                    await ws.wait_closed()
                    return
                sent += 1

    async with serve(firehose, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with Recorder(cassette, upstream=f"ws://127.0.0.1:{port}/v1") as rec:
            async with connect(rec.url, additional_headers={"Authorization": "Bearer x"}, max_queue=1) as ws:
                await ws.recv()  # then never read again
                await asyncio.wait_for(blocked.wait(), timeout(30))
                assert sent * len(chunk) < 40 * 1024 * 1024, f"{sent} frames of 64 KB went out"
                ws.transport.abort()  # the client never reads again: do not wait for a closing handshake


@pytest.mark.parametrize("name", sorted(p.name for p in CASSETTES.glob("*.jsonl")))
async def test_round_trip_through_a_replay_server(name: str, tmp_path: Path) -> None:
    """Recording a replay gives back the same connections and frames, times aside (the
    replay moved them to replay time, and the offsets of frames differ)."""
    try:
        from rtreplay.server import ReplayServer
    except ImportError:  # pragma: no cover
        pytest.skip("rtreplay.server (the replay server) is not built yet")
    original = load(CASSETTES / name)
    out = tmp_path / name
    async with ReplayServer(original) as replay, Recorder(out, upstream=replay.websocket_base_url) as rec:
        for conn in original.connections:
            plan = clients.script(original, conn.index)
            if plan.rejected:
                with pytest.raises(InvalidStatus):
                    await connect(rec.url + "?" + "&".join(f"{k}={v}" for k, v in plan.query.items()),
                                  additional_headers=plan.headers)
            else:
                await clients.openai_async(rec.websocket_base_url, plan)
    again = load(out)
    assert len(again.connections) == len(original.connections)
    for old, new in zip(original.connections, again.connections, strict=True):
        assert (new.open.path, new.open.query, new.open.protocol) == (old.open.path, old.open.query, old.open.protocol)
        for direction in ("client", "server"):
            assert clients.timeless([json.loads(f) for f in frames(again, new.index, direction)]) == (
                clients.timeless([json.loads(f) for f in frames(original, old.index, direction)])
            ), direction
        if old.reject is not None:
            assert new.reject is not None and new.reject.status == old.reject.status
        elif old.close is not None:
            assert new.close is not None and (new.close.code, new.close.by) == (old.close.code, old.close.by)


def test_in_thread_for_synchronous_code(cassette: Path) -> None:
    from websockets.sync.client import connect as sync_connect

    with ScriptedUpstream().in_thread() as up, Recorder(cassette, upstream=up.websocket_base_url).in_thread() as rec:
        with sync_connect(rec.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            assert json.loads(ws.recv())["type"] == "session.created"
    assert isinstance(load(cassette).connections[0].open, Open)



# -- the redaction fast path the recorder relies on -----------------------------------------

def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    names = st.text(max_size=8) | st.sampled_from(["api_key", "Client_Secret", "token"])
    return st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=4)


# (A named function, not a lambda: Hypothesis checks that ``extend`` uses its argument by
# reading its source, which failed for a multi-line lambda in some pytest-xdist workers.)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.sampled_from(["sk-abcdefgh12345", "ek_ABCDEFGH1234", "x-y_z", "\"api_key\": \"v\""]),
    _containers,
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(event=st.dictionaries(st.text(max_size=8), _json_values, max_size=5), pad=st.integers(0, 3000))
def test_redaction_fast_path_agrees_with_the_full_rules(event: dict[str, Any], pad: int) -> None:
    """A JSON frame the quick check calls clean is one the full rules leave as it is."""
    from rtreplay.redact import Redactor

    event = {**event, "delta": "QUJD" * (pad // 4)}  # base64-like bulk, as in audio deltas
    message = json.dumps(event)
    redactor = Redactor(secrets=["sk-live-secret-000000000"])
    quick, clean = redactor.frame_from_message(0, 0.0, "server", message.encode(), True)
    if clean:
        assert quick.json is not msgspec.UNSET and bytes(quick.json) == message.encode()
        full = Redactor(secrets=["sk-live-secret-000000000"], json_paths=["no.such.path"])  # forces the full path
        frame = Frame.from_message(0, 0.0, "server", message)
        assert full.frame(frame).event() == frame.event()


# -- docs/recording.md ------------------------------------------------------------------------


@pytest.mark.parametrize("example", [0, 1], ids=["async", "in_thread"])
def test_the_python_examples_in_docs_recording_md_run(
    example: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = code_blocks("recording.md", "python")[example]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", PROXY_KEY)
    with ScriptedUpstream(api_key=PROXY_KEY).in_thread() as up:
        monkeypatch.setenv("RTREPLAY_UPSTREAM", up.websocket_base_url)
        exec(compile(code, f"docs/recording.md[{example}]", "exec"), {"__name__": "__main__"})
    assert "1 connection(s)" in capsys.readouterr().out
    [cassette] = (tmp_path / "cassettes").glob("*.jsonl")
    [conn] = load(cassette).connections
    assert conn.close is not None and conn.close.code == 1000
    assert PROXY_KEY.encode() not in cassette.read_bytes()
    assert [r.type for r in up.received] == ["session.update", "conversation.item.create", "response.create"]


# -- a redaction hook that fails ----------------------------------------------------------


def hook_failing_on_done(event: dict[str, Any], direction: str) -> dict[str, Any]:
    if event.get("type") == "response.done":
        raise KeyError("usage")
    return event


async def test_a_failing_event_hook_fails_the_recording_naming_it(upstream: ScriptedUpstream, cassette: Path) -> None:
    """The client's connection ends (1011) when the hook fails, and the recording is not
    written: the error names the hook, the connection and the event; what was recorded is
    kept in the partial file, without the event (never a cassette that looks whole)."""
    from rtreplay import EventHookError, RecordError, Redactor

    rec = Recorder(cassette, upstream=upstream.websocket_base_url, redactor=Redactor(event_hook=hook_failing_on_done))
    await rec.start()
    try:
        with pytest.raises(ConnectionClosedError) as closed:
            await sdk_text_session(rec.websocket_base_url)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        assert "event_hook" in closed.value.rcvd.reason
    finally:
        with pytest.raises(RecordError) as info:
            await rec.close()
    message = str(info.value)
    assert not isinstance(info.value, EventHookError)  # the recording's error, which quotes the hook's
    assert "the redaction event_hook tests.test_recorder.hook_failing_on_done raised KeyError: 'usage'" in message
    assert "'response.done'" in message and "connection 0" in message and "test_recorder.py:" in message
    assert not cassette.exists()
    assert rec.kept_partial is not None
    with CassetteReader(rec.kept_partial) as reader:
        kept = [r for r in reader if isinstance(r, Frame)]
    types = [json.loads(f.payload())["type"] for f in kept if f.dir == "server"]
    assert "response.done" not in types and "response.created" in types
