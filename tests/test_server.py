"""ReplayServer against real clients over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import msgspec
import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtreplay import Cassette, Close, Connection, Frame, Header, Open, Reject, load
from rtreplay.errors import CassetteNotFoundError, MismatchError
from rtreplay.match import MatchPolicy
from rtreplay.server import ReplayServer

from . import clients
from .conftest import CASSETTES, timeout

SAMPLES = sorted(p.name for p in CASSETTES.glob("*.jsonl"))
pytestmark = pytest.mark.timeout(60)


def sample(name: str) -> Path:
    return CASSETTES / name


def assert_clean(server: ReplayServer) -> None:
    assert server.report.ok, str(server.report)
    assert server.report.complete, str(server.report)


# -- every sample cassette, every Python client ----------------------------------------


def _replay_each_connection(name: str, run: Any) -> None:
    """Play every recorded connection of the cassette in turn through ``run(plan, conn)``."""
    path = sample(name)
    for conn in range(clients.connection_count(path)):
        plan = clients.script(path, conn)
        if plan.rejected:
            continue
        assert run(plan) == clients.server_events(path, conn), f"connection {conn}"


async def _areplay_each_connection(name: str, run: Any) -> None:
    path = sample(name)
    for conn in range(clients.connection_count(path)):
        plan = clients.script(path, conn)
        if plan.rejected:
            continue
        assert await run(plan) == clients.server_events(path, conn), f"connection {conn}"


@pytest.mark.parametrize("name", SAMPLES)
async def test_openai_async_receives_exactly_the_recording(name: str) -> None:
    async with ReplayServer(sample(name)) as server:
        await _areplay_each_connection(
            name, lambda plan: clients.openai_async(server.websocket_base_url, plan)
        )
    assert_clean(server)


@pytest.mark.parametrize("name", SAMPLES)
def test_openai_sync_receives_exactly_the_recording(name: str) -> None:
    with ReplayServer(sample(name)).in_thread() as server:
        _replay_each_connection(
            name, lambda plan: clients.openai_sync(server.websocket_base_url, plan)
        )
    assert_clean(server)


@pytest.mark.parametrize("name", SAMPLES)
def test_websocket_client_receives_exactly_the_recording(name: str) -> None:
    with ReplayServer(sample(name)).in_thread() as server:
        _replay_each_connection(name, lambda plan: clients.websocket_client(server.url, plan))
    assert_clean(server)


@pytest.mark.parametrize("name", SAMPLES)
async def test_websockets_client_receives_exactly_the_recording(name: str) -> None:
    async with ReplayServer(sample(name)) as server:
        await _areplay_each_connection(name, lambda plan: clients.websockets_raw(server.url, plan))
    assert_clean(server)


async def test_frames_go_out_byte_for_byte_as_text() -> None:
    name = sample("text-response.jsonl")
    recorded = [
        f.payload() for f in clients._cassette(name).connections[0].frames if f.dir == "server"
    ]
    plan = clients.script(name)
    raw: list[Any] = []
    async with ReplayServer(name, shift_times=False) as server, connect(server.url + "?model=gpt-realtime") as ws:
        for step in plan.steps:
            if step.send is not None:
                await ws.send(step.send)
            else:
                raw.append(await ws.recv())
    assert raw == recorded
    assert all(isinstance(m, str) for m in raw)


async def test_in_memory_cassette_replays_like_its_file() -> None:
    from rtreplay import load

    cassette = load(sample("function-call.jsonl"))
    plan = clients.script(cassette)
    async with ReplayServer(cassette) as server:
        got = await clients.websockets_raw(server.url, plan)
    assert got == clients.server_events(cassette)
    assert_clean(server)


# -- openai-agents -----------------------------------------------------------------------


def _agents_cassette(base_name: str, runs: list[list[str]]) -> Cassette:
    """A sample cassette's server side, with its client side as openai-agents sends it.

    ``runs[0]`` (what agents sends on connect and for ``send_message``) takes the place of
    the sample's first two runs of client events; ``runs[k]`` of its run ``k + 1``.
    """
    from rtreplay import load

    base = load(sample(base_name)).connections[0]
    frames: list[Frame] = []
    run, previous_was_client, t = -1, False, 0.0
    for f in base.frames:
        if f.dir == "client":
            if not previous_was_client:
                run += 1
                for message in runs[0] if run == 0 else [] if run == 1 else runs[run - 1]:
                    t += 0.001
                    frames.append(Frame.from_message(0, t, "client", message))
            previous_was_client = True
        else:
            previous_was_client = False
            t += 0.001
            frames.append(Frame(0, t, "server", json=f.json))
    return Cassette(Header(), [Connection(base.open, frames, Close(0, t + 1, 1000, "", "client"))])


def get_weather(location: str) -> str:
    """Get the current weather for a city."""
    return '{"temp_f": 61, "sky": "fog"}'


# What openai-agents 0.24 sends, by type (its content is captured in the test below):
# on connect a full session.update; send_message's item; a tracing session.update once
# session.created arrived; response.create; then a tool's output and response.create.
AGENTS_CASES = {
    "text-response.jsonl": (
        "Say hello in three words.",
        [["session.update", "conversation.item.create", "session.update", "response.create"]],
    ),
    "function-call.jsonl": (
        "What's the weather in San Francisco?",
        [
            ["session.update", "conversation.item.create", "session.update", "response.create"],
            ["conversation.item.create", "response.create"],
        ],
    ),
}


async def _run_agents(
    cassette: Cassette, message: str, **options: Any
) -> tuple[list[Any], ReplayServer]:
    from agents import function_tool

    expected = len(clients.server_events(cassette))
    async with ReplayServer(cassette, **options) as server:
        got = await clients.openai_agents(
            server.url + "?model=gpt-realtime",
            message,
            expected,
            tools=[function_tool(get_weather)],
        )
    return got, server


@pytest.mark.parametrize("name", sorted(AGENTS_CASES))
async def test_openai_agents_replays_with_type_only_matching(name: str) -> None:
    """The sample cassettes were written from the openai SDK's side; openai-agents sends its
    own session.update frames, so a cassette with its event types is replayed by type."""
    message, types = AGENTS_CASES[name]
    cassette = _agents_cassette(name, [[json.dumps({"type": t}) for t in run] for run in types])
    got, server = await _run_agents(cassette, message, match="type")
    assert got == clients.server_events(cassette)
    assert_clean(server)


@pytest.mark.parametrize("name", sorted(AGENTS_CASES))
async def test_openai_agents_replays_its_own_recording_with_default_matching(name: str) -> None:
    """Capture what openai-agents really sends, make that the recording, and replay it with
    the default (content) policy. The agents SDK races its second session.update against
    its response.create: whichever order comes, the player accepts it (noted as a
    reordering), and a function call's call_id goes round trip."""
    message, types = AGENTS_CASES[name]
    placeholder = _agents_cassette(name, [[json.dumps({"type": t}) for t in run] for run in types])
    _, capture = await _run_agents(placeholder, message, match="type")
    sent = [r.raw for r in capture.received]
    assert all(isinstance(m, str) for m in sent)
    runs, i = [], 0
    for run in types:
        runs.append([str(m) for m in sent[i : i + len(run)]])
        i += len(run)
    recorded = _agents_cassette(name, runs)
    for _ in range(2):
        got, server = await _run_agents(recorded, message)
        assert got == clients.server_events(recorded)
        assert_clean(server)
    _, server = await _run_agents(recorded, "Something else.")
    assert not server.report.ok
    assert "conversation.item.create differs from the recording: item.content[0].text" in str(
        server.report
    )


# -- mismatches ----------------------------------------------------------------------------


async def test_mismatch_sends_a_realtime_error_event_and_keeps_a_report() -> None:
    name = sample("text-response.jsonl")
    async with ReplayServer(name) as server, connect(server.url + "?model=gpt-realtime") as ws:
        created = json.loads(await ws.recv())
        assert created["type"] == "session.created"
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "instructions": "Be long."},
                }
            )
        )
        error = json.loads(await ws.recv())
        assert error["type"] == "error"
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["code"] == "rtreplay_mismatch"
        assert "session.instructions" in error["error"]["message"]
        # The step still counts: the recorded answer follows and the session goes on.
        assert json.loads(await ws.recv())["type"] == "session.updated"
    report = server.report
    assert not report.ok and not report.complete
    text = str(report)
    assert "connection 0 (recorded connection 0), turn 1, client event 1 of 3" in text
    assert 'session.instructions: expected "Be brief.", got "Be long."' in text
    assert "conversation.item.create, response.create" in text  # unplayed
    with pytest.raises(MismatchError) as info:
        server.check()
    assert str(info.value) == text


async def test_strict_mode_closes_with_1008() -> None:
    name = sample("text-response.jsonl")
    async with (
        ReplayServer(name, strict=True) as server,
        connect(server.url + "?model=gpt-realtime") as ws,
    ):
        await ws.recv()
        await ws.send('{"type":"input_audio_buffer.clear"}')
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert "expected session.update, got input_audio_buffer.clear" in info.value.rcvd.reason
    assert server.report.mismatches[0].kind == "unexpected"


async def test_event_after_the_end_gets_an_error() -> None:
    name = sample("text-response.jsonl")
    plan = clients.script(name)
    async with ReplayServer(name) as server, connect(plan.url(server.url)) as ws:
        for step in plan.steps:
            if step.send is not None:
                await ws.send(step.send)
            else:
                await ws.recv()
        await ws.send('{"type":"response.create"}')
        error = json.loads(await ws.recv())
    assert error["type"] == "error"
    assert "after the recording's last client event" in error["error"]["message"]
    assert [m.kind for m in server.report.mismatches] == ["after_end"]


async def test_mismatches_are_logged_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rtreplay.server")
    name = sample("text-response.jsonl")
    async with ReplayServer(name) as server, connect(server.url + "?model=gpt-realtime") as ws:
        await ws.recv()
        await ws.send('{"type":"input_audio_buffer.clear"}')
        await ws.recv()
    await asyncio.sleep(0)
    lines = [r.getMessage() for r in caplog.records if r.name == "rtreplay.server"]
    assert any(
        line.startswith("conn 0: /v1/realtime?model=gpt-realtime from 127.0.0.1:") for line in lines
    )
    assert any("mismatch: connection 0" in line and "got input_audio_buffer.clear" in line for line in lines)
    assert any(line.startswith("conn 0: closed by the client (code 1000)") for line in lines)
    assert all("\n" not in line for line in lines)


# -- the handshake -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/realtime?model=gpt-realtime",
        "/realtime?model=gpt-realtime",
        "/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-realtime",
        "/openai/v1/realtime?model=gpt-realtime",
    ],
)
async def test_accepts_every_realtime_path(path: str) -> None:
    async with ReplayServer(sample("text-response.jsonl"), match="type") as server:
        async with connect(f"ws://{server.netloc}{path}") as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"


async def test_wrong_path_is_404_with_a_one_line_body() -> None:
    async with ReplayServer(sample("text-response.jsonl")) as server:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://{server.netloc}/v2/chat"):
                pass
    response = info.value.response
    assert response.status_code == 404
    body = response.body.decode()
    assert body.count("\n") == 1 and "no Realtime endpoint at /v2/chat" in body
    assert server.report.connections == []


async def test_azure_client_reaches_the_replay() -> None:
    from openai import AsyncAzureOpenAI

    name = sample("text-response.jsonl")
    async with ReplayServer(name, match="type") as server:
        client = AsyncAzureOpenAI(
            api_key="k",
            api_version="2025-04-01-preview",
            azure_endpoint="http://127.0.0.1",
            websocket_base_url=f"ws://{server.netloc}/openai",
        )
        async with client.realtime.connect(model="gpt-realtime") as conn:
            assert (await conn.recv()).type == "session.created"
        await client.close()


async def test_connection_beyond_the_recording_is_refused_clearly() -> None:
    name = sample("text-response.jsonl")
    async with ReplayServer(name, match="type") as server:
        async with connect(server.url) as ws:
            await ws.recv()
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url):
                pass
    assert info.value.response.status_code == 409
    assert b"recorded 1 connection and every one was replayed" in info.value.response.body
    assert [m.kind for m in server.report.mismatches] == ["no_connection"]


async def test_repeat_serves_the_connection_to_every_client() -> None:
    name = sample("function-call.jsonl")
    plan = clients.script(name)
    async with ReplayServer(name, repeat=True) as server:
        for _ in range(3):
            assert await clients.websockets_raw(server.url, plan) == clients.server_events(name)
    assert_clean(server)


def _two_connection_cassette() -> Cassette:
    conns = []
    for n, model in enumerate(["model-a", "model-b"]):
        frames = [
            Frame.from_message(
                n,
                0.0,
                "server",
                json.dumps(
                    {"type": "session.created", "event_id": f"e{n}", "session": {"model": model}}
                ),
            ),
            Frame.from_message(n, 0.1, "client", '{"type":"response.create"}'),
            Frame.from_message(
                n, 0.2, "server", json.dumps({"type": "response.done", "event_id": f"d{n}"})
            ),
        ]
        conns.append(
            Connection(Open(n, query={"model": model}), frames, Close(n, 0.3, 1000, "", "client"))
        )
    return Cassette(Header(), conns)


async def test_connection_chosen_by_its_handshake() -> None:
    cassette = _two_connection_cassette()
    async with (
        ReplayServer(cassette) as server,
        connect(server.url + "?model=model-b") as b,
        connect(server.url + "?model=model-a") as a,
    ):
        assert json.loads(await b.recv())["session"]["model"] == "model-b"
        assert json.loads(await a.recv())["session"]["model"] == "model-a"
        await a.send('{"type":"response.create"}')
        await b.send('{"type":"response.create"}')
        assert json.loads(await a.recv())["event_id"] == "d0"
        assert json.loads(await b.recv())["event_id"] == "d1"
    assert_clean(server)


async def test_handshake_difference_is_reported() -> None:
    async with ReplayServer(sample("text-response.jsonl")) as server:
        async with connect(server.url + "?model=gpt-4o-realtime-preview") as ws:
            await ws.recv()
    m = server.report.mismatches[0]
    assert m.kind == "handshake"
    assert "model: recorded 'gpt-realtime', got 'gpt-4o-realtime-preview'" in m.message


async def test_recorded_rejection_is_replayed_as_http() -> None:
    body = '{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}'
    cassette = Cassette(
        Header(),
        [
            Connection(
                Open(0), reject=Reject(0, 0.05, 401, {"content-type": "application/json"}, body)
            )
        ],
    )
    async with ReplayServer(cassette) as server:
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url):
                pass
    response = info.value.response
    assert response.status_code == 401
    assert response.body.decode() == body
    assert response.headers["Content-Type"] == "application/json"
    assert server.report.ok and server.report.complete


async def test_beta_client_against_ga_cassette_is_refused() -> None:
    async with ReplayServer(sample("text-response.jsonl")) as server:
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url, additional_headers={"OpenAI-Beta": "realtime=v1"}):
                pass
    assert info.value.response.status_code == 400
    assert b"recorded the GA protocol" in info.value.response.body


async def test_beta_cassette_replays_to_the_beta_sdk_client() -> None:
    events = [
        (
            "server",
            {
                "type": "session.created",
                "event_id": "event_1",
                "session": {"id": "sess_1", "modalities": ["text"]},
            },
        ),
        ("client", {"type": "session.update", "session": {"modalities": ["text"]}}),
        (
            "server",
            {
                "type": "session.updated",
                "event_id": "event_2",
                "session": {"id": "sess_1", "modalities": ["text"]},
            },
        ),
    ]
    frames = [Frame.from_message(0, i / 10, d, json.dumps(e)) for i, (d, e) in enumerate(events)]
    cassette = Cassette(
        Header(),
        [
            Connection(
                Open(0, protocol="beta", query={"model": "gpt-4o-realtime-preview"}),
                frames,
                Close(0, 1, 1000, "", "client"),
            )
        ],
    )
    plan = clients.script(cassette)
    async with ReplayServer(cassette) as server:
        got = await clients.openai_async(server.websocket_base_url, plan)
        with pytest.raises(InvalidStatus):
            async with connect(server.url):
                pass  # GA: no connection of that protocol left to give
    assert got == [e for d, e in events if d == "server"]


async def test_realtime_subprotocol_is_selected() -> None:
    async with ReplayServer(sample("text-response.jsonl"), match="type") as server:
        async with connect(
            server.url,
            subprotocols=["realtime", "openai-insecure-api-key.sk-test-0000"],  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol == "realtime"


async def test_require_auth() -> None:
    async with ReplayServer(
        sample("text-response.jsonl"), require_auth=True, repeat=True, match="type"
    ) as server:
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url):
                pass
        assert info.value.response.status_code == 401
        async with connect(server.url, additional_headers={"api-key": "anything"}) as ws:
            await ws.recv()
        async with connect(
            server.url, subprotocols=["realtime", "openai-insecure-api-key.sk-whatever-0000"]
        ) as ws:  # type: ignore[list-item]
            await ws.recv()


async def test_no_compression_even_when_offered() -> None:
    async with ReplayServer(sample("text-response.jsonl"), match="type") as server:
        async with connect(server.url, compression="deflate") as ws:
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_large_client_message_and_pings() -> None:
    big = json.dumps(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "x" * (15 * 1024 * 1024)}],
            },
        }
    )
    async with ReplayServer(sample("text-response.jsonl"), match="type") as server:
        async with connect(server.url, max_size=None) as ws:
            await ws.recv()
            await ws.send('{"type":"session.update","session":{"type":"realtime"}}')
            await ws.recv()
            await ws.send(big)
            pong = await ws.ping()
            await asyncio.wait_for(pong, timeout(10))
    assert len(server.received[-1].raw) == len(big)
    assert server.received[-1].type == "conversation.item.create"


# -- recorded closes ----------------------------------------------------------------------------


def _closing_cassette(code: int | None, by: str | None) -> Cassette:
    frames = [
        Frame.from_message(0, 0.0, "server", '{"type":"session.created","event_id":"e1"}'),
        Frame.from_message(0, 0.1, "client", '{"type":"response.create"}'),
        Frame.from_message(0, 0.2, "server", '{"type":"response.created","event_id":"e2"}'),
    ]
    return Cassette(
        Header(), [Connection(Open(0), frames, Close(0, 0.3, code, "session expired", by))]
    )  # type: ignore[arg-type]


async def test_server_close_is_replayed_with_its_code() -> None:
    async with ReplayServer(_closing_cassette(1011, "server")) as server, connect(server.url) as ws:
        await ws.recv()
        await ws.send('{"type":"response.create"}')
        assert json.loads(await ws.recv())["type"] == "response.created"
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1011, "session expired")


async def test_dropped_connection_is_replayed_as_a_drop() -> None:
    async with ReplayServer(_closing_cassette(1006, None)) as server, connect(server.url) as ws:
        await ws.recv()
        await ws.send('{"type":"response.create"}')
        await ws.recv()
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is None  # no close frame: the TCP connection just ended


# -- pacing ---------------------------------------------------------------------------------


async def test_recorded_pacing_is_measured_from_the_triggering_event() -> None:
    frames = [
        Frame.from_message(0, 0.0, "server", '{"type":"session.created","event_id":"e1"}'),
        Frame.from_message(0, 5.0, "client", '{"type":"response.create"}'),
        Frame.from_message(0, 5.4, "server", '{"type":"response.created","event_id":"e2"}'),
    ]
    cassette = Cassette(Header(), [Connection(Open(0), frames, Close(0, 6, 1000, "", "client"))])
    loop = asyncio.get_running_loop()
    async with ReplayServer(cassette, speed=2.0) as server, connect(server.url) as ws:
        await ws.recv()
        sent = loop.time()
        await ws.send('{"type":"response.create"}')
        await ws.recv()
        # 0.4 s after the client event, at twice the speed: not before 0.2 s (and the
        # 5 s the client took in the recording do not count).
        assert loop.time() - sent >= 0.19
    assert_clean(server)


# -- many clients at once -------------------------------------------------------------------


async def test_100_concurrent_clients_each_get_the_whole_session() -> None:
    name = sample("function-call.jsonl")
    plan = clients.script(name)
    async with ReplayServer(name, repeat=True) as server:
        results = await asyncio.gather(
            *(clients.websockets_raw(server.url, plan) for _ in range(100))
        )
    expected = clients.server_events(name)
    assert all(r == expected for r in results)
    assert len(server.report.connections) == 100
    assert_clean(server)


async def test_100_recorded_connections_served_concurrently() -> None:
    conns = []
    for n in range(100):
        frames = [
            Frame.from_message(
                n, 0.0, "server", json.dumps({"type": "session.created", "event_id": f"c{n}"})
            ),
            Frame.from_message(
                n,
                0.1,
                "client",
                json.dumps(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": f"hi {n}"}],
                        },
                    }
                ),
            ),
            Frame.from_message(
                n,
                0.2,
                "server",
                json.dumps({"type": "conversation.item.added", "event_id": f"a{n}"}),
            ),
        ]
        conns.append(
            Connection(
                Open(n, query={"model": "gpt-realtime"}), frames, Close(n, 0.3, 1000, "", "server")
            )
        )
    cassette = Cassette(Header(), conns)

    async def one(ws_url: str) -> tuple[str, str]:
        async with connect(ws_url) as ws:
            created = json.loads(await ws.recv())["event_id"]
            n = created[1:]
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": f"hi {n}"}],
                        },
                    }
                )
            )
            added = json.loads(await ws.recv())["event_id"]
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return created, added

    async with ReplayServer(cassette) as server:
        results = await asyncio.gather(
            *(one(server.url + "?model=gpt-realtime") for _ in range(100))
        )
    assert sorted(int(c[1:]) for c, _ in results) == list(range(100))
    assert all(c[1:] == a[1:] for c, a in results)
    assert_clean(server)


# -- errors at construction and TLS -----------------------------------------------------------


def test_missing_cassette_fails_at_construction() -> None:
    with pytest.raises(CassetteNotFoundError):
        ReplayServer("no/such/cassette.jsonl")


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="speed"):
        ReplayServer(sample("text-response.jsonl"), speed=-1)
    with pytest.raises(ValueError, match="unknown match policy"):
        ReplayServer(sample("text-response.jsonl"), match="fuzzy")


def test_a_port_out_of_range_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="port must be a number from 0 to 65535"):
        ReplayServer(sample("text-response.jsonl"), port=65536)


async def test_custom_policy_object_is_used() -> None:
    policy = MatchPolicy.default(ignore={"session.update": ["session.instructions"]})
    async with ReplayServer(sample("text-response.jsonl"), match=policy) as server:
        async with connect(server.url + "?model=gpt-realtime") as ws:
            await ws.recv()
            await ws.send(
                '{"type":"session.update","session":{"type":"realtime","output_modalities":["text"],"instructions":"other"}}'
            )
            assert json.loads(await ws.recv())["type"] == "session.updated"
    assert server.report.ok


async def test_a_match_rule_that_raises_is_reported_and_the_replay_goes_on() -> None:
    def rule(expected: Any, got: Any) -> bool:
        return bool(got["session"]["nonexistent"])  # the user's bug

    policy = MatchPolicy.default().with_rule("session.update", rule)
    async with ReplayServer(sample("text-response.jsonl"), match=policy) as server:
        async with connect(server.url + "?model=gpt-realtime") as ws:
            await ws.recv()
            await ws.send('{"type":"session.update","session":{"type":"realtime"}}')
            error = json.loads(await asyncio.wait_for(ws.recv(), timeout(20)))
    assert error["type"] == "error"
    [m] = server.report.mismatches
    assert m.kind == "rule" and "raised KeyError: 'nonexistent' at " in m.message


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=timeout(60),
    )
    return cert, key


async def test_tls(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    async with ReplayServer(
        sample("text-response.jsonl"), ssl_context=server_ctx, match="type"
    ) as server:
        assert server.websocket_base_url.startswith("wss://127.0.0.1:")
        async with connect(server.url, ssl=client_ctx) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"


def test_received_events_decode_lazily() -> None:
    from rtreplay.server import ReceivedEvent

    assert ReceivedEvent(0, '{"type":"x"}').event == {"type": "x"}
    assert ReceivedEvent(0, "not json").event is None
    assert ReceivedEvent(0, b"\x00").event is None
    assert msgspec.json.decode(ReceivedEvent(1, '{"a":1}').raw) == {"a": 1}


# -- docs/replay.md: its examples run as written ---------------------------------------------


def _run_example(code: str) -> str:
    import subprocess
    import sys

    from .conftest import REPO

    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout(60)
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_replay_doc_examples_run() -> None:
    from .docs import code_blocks

    python = code_blocks("replay.md", "python")
    outputs = code_blocks("replay.md", "text")
    assert len(python) == 6 and len(outputs) == 3
    [times] = [code for code in python if "fresh_ids=True" in code]
    python.remove(times)
    for code in [*python[:2], times]:
        assert _run_example(code) == ""
    # The mismatch report, the stall report, the core driven by hand: each prints its block.
    for code, printed in zip(python[2:], outputs, strict=True):
        assert _run_example(code) == printed


async def test_replay_doc_error_event_is_what_the_client_gets() -> None:
    from .docs import code_blocks

    (documented,) = code_blocks("replay.md", "json")
    name = sample("text-response.jsonl")
    async with ReplayServer(name) as server, connect(server.url + "?model=gpt-realtime") as ws:
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "output_modalities": ["text"],
                        "instructions": "Be long.",
                    },
                }
            )
        )
        assert json.loads(await ws.recv()) == json.loads(documented)


async def test_received_keeps_audio_only_up_to_its_budget() -> None:
    name = sample("audio-server-vad.jsonl")
    plan = clients.script(name)
    async with ReplayServer(name) as server:
        server.received_audio_budget = 100  # bytes: the first append (63) fits, not the next
        assert await clients.websockets_raw(server.url, plan) == clients.server_events(name)
    appends = [r for r in server.received if r.type == "input_audio_buffer.append"]
    assert appends[0].raw is not None and appends[0].elided == 0
    assert all(r.raw is None and r.elided > 0 for r in appends[1:])
    assert appends[1].event == {"type": "input_audio_buffer.append", "audio": None}
    assert_clean(server)


async def test_a_handshake_that_is_not_http_is_one_log_line_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtreplay")
    async with ReplayServer(sample("text-response.jsonl")) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x16\x03\x01\x02\x00 a TLS hello to a ws:// port\r\n\r\n")
        await writer.drain()
        # websockets logs the failure (14-16 do; 17 says nothing) before it hangs up.
        assert await asyncio.wait_for(reader.read(), timeout(10)) == b""
        writer.close()
        await writer.wait_closed()
    assert all(r.exc_info is None for r in caplog.records), "no traceback in the log"
    failures = [r for r in caplog.records if "opening handshake failed" in r.getMessage()]
    assert len(failures) <= 1
    for record in failures:
        assert record.levelno == logging.WARNING
        assert "\n" not in record.getMessage()
        assert record.getMessage().startswith("a client's opening handshake failed, its connection was dropped: ")


# -- a replay never hangs ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
async def test_a_client_that_waits_for_each_answer_gets_the_whole_recording(name: str) -> None:
    """Recorded from clients that did not wait (``sent-at-once`` is the user's case: all
    three events, then session.updated), replayed to clients that do."""
    path = sample(name)
    async with ReplayServer(path) as server:
        for conn in range(clients.connection_count(path)):
            if clients.script(path, conn).rejected:
                continue
            expected = clients.server_events(path, conn)
            assert await clients.careful_websockets(server.url, path, conn) == expected
    async with ReplayServer(path) as server:
        for conn in range(clients.connection_count(path)):
            if clients.script(path, conn).rejected:
                continue
            expected = clients.server_events(path, conn)
            assert await clients.careful_openai_async(server.websocket_base_url, path, conn) == expected
    assert server.report.ok, str(server.report)


def test_the_sync_openai_sdk_waiting_for_session_updated_replays_a_recording_sent_at_once() -> None:
    from openai import OpenAI

    with ReplayServer(sample("sent-at-once.jsonl")).in_thread() as server:
        client = OpenAI(api_key="sk-test", websocket_base_url=server.websocket_base_url)
        with client.realtime.connect(model="gpt-realtime") as conn:
            conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "instructions": "Be brief."})
            while conn.recv().type != "session.updated":
                pass
            conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello in three words."}]}
            )
            conn.response.create()
            text = ""
            for event in conn:
                if event.type == "response.output_text.delta":
                    text += event.delta
                if event.type == "response.done":
                    break
        client.close()
    assert text == "Hello there, friend!"
    assert_clean(server)


def _vad_audio(name: str = "audio-vad-real.jsonl") -> tuple[dict[str, Any], list[str], list[Any]]:
    """A server-VAD recording: its session.update, its appends' audio, its server events."""
    events = clients.client_events(sample(name))
    update = events[0]
    chunks = [e["audio"] for e in events[1:]]
    return update, chunks, clients.server_events(sample(name))


def _sent_in_one_go() -> Cassette:
    """audio-vad-real as a client that sends a WAV file at once records it: every server
    event after the last append."""
    from rtreplay import load

    base = load(sample("audio-vad-real.jsonl")).connections[0]
    client = [f for f in base.frames if f.dir == "client"]
    server = [f for f in base.frames if f.dir == "server"]
    frames = [server[0], client[0], server[1]]  # created, session.update, session.updated
    t = 1.0
    for f in client[1:]:
        t += 0.001
        frames.append(Frame(0, round(t, 6), "client", json=f.json))
    for f in server[2:]:
        t += 0.01
        frames.append(Frame(0, round(t, 6), "server", json=f.json))
    return Cassette(Header(), [Connection(base.open, frames, Close(0, t + 0.5, 1000, "", "client"))])


def _rechunk(chunks: list[str], extra_ms: int) -> list[str]:
    """The recorded audio, with ``extra_ms`` of silence more (or, negative, less) at the end,
    in 100 ms appends."""
    import base64

    pcm = b"".join(base64.b64decode(c) for c in chunks)
    pcm = pcm + bytes(48 * extra_ms) if extra_ms >= 0 else pcm[: 48 * extra_ms]
    return [base64.b64encode(pcm[i : i + 4800]).decode() for i in range(0, len(pcm), 4800)]


async def _voice_turn(send: Any, recv: Any, update: dict[str, Any], chunks: list[str]) -> list[Any]:
    """Send the session update and every chunk without waiting, then read to response.done."""
    await send(json.dumps(update))
    for chunk in chunks:
        await send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
    received = []
    while not received or received[-1]["type"] != "response.done":
        received.append(await recv())
    return received


async def _voice_websockets(url: str, update: dict[str, Any], chunks: list[str]) -> list[Any]:
    async with connect(url + "?model=gpt-realtime") as ws:
        async def recv() -> Any:
            return json.loads(await ws.recv())

        return await asyncio.wait_for(_voice_turn(ws.send, recv, update, chunks), timeout(20))


async def _voice_openai(base_url: str, update: dict[str, Any], chunks: list[str]) -> list[Any]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="sk-test", websocket_base_url=base_url)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        async def recv() -> Any:
            return json.loads(await conn.recv_bytes())

        async def send(text: str) -> None:
            await conn.send(json.loads(text))

        result = await asyncio.wait_for(_voice_turn(send, recv, update, chunks), timeout(20))
    await client.close()
    return result


@pytest.mark.parametrize("client", ["websockets", "openai"])
@pytest.mark.parametrize("recording", ["streamed", "sent in one go"])
@pytest.mark.parametrize("extra_ms", [-100, 100])
async def test_voice_with_a_little_less_or_more_trailing_audio_replays(
    client: str, recording: str, extra_ms: int
) -> None:
    update, chunks, server_events = _vad_audio()
    cassette: Any = sample("audio-vad-real.jsonl") if recording == "streamed" else _sent_in_one_go()
    # The held frames go out after a short quiet, not at the stall timeout: with one far
    # beyond the clients' 20 s bound, waiting for it would fail the test.
    async with ReplayServer(cassette, stall_timeout=60) as server:
        if client == "websockets":
            got = await _voice_websockets(server.url, update, _rechunk(chunks, extra_ms))
        else:
            got = await _voice_openai(server.websocket_base_url, update, _rechunk(chunks, extra_ms))
    until_done = server_events[: [e["type"] for e in server_events].index("response.done") + 1]
    assert clients.timeless(got[: len(until_done)]) == until_done
    assert server.report.ok, str(server.report)
    assert server.report.complete, str(server.report)
    [note] = server.report.audio
    assert round(note.got_ms - note.expected_ms) == extra_ms


def _greeted_late() -> Cassette:
    """text-response as a client that sends before session.created arrives records it."""
    from rtreplay import load

    base = load(sample("text-response.jsonl")).connections[0]
    frames = list(base.frames)
    first_client = next(i for i, f in enumerate(frames) if f.dir == "client")
    created = frames.pop(0)
    assert created.json is not None and b"session.created" in bytes(created.json)
    frames.insert(first_client, created)
    return Cassette(Header(), [Connection(base.open, frames, base.close)])


async def test_a_client_that_waits_for_session_created_gets_it_whenever_it_was_recorded() -> None:
    async with ReplayServer(_greeted_late(), stall_timeout=3600) as server:
        async with connect(server.url + "?model=gpt-realtime") as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), timeout(20)))
    assert first["type"] == "session.created"


async def test_voice_with_a_second_of_audio_missing_fails_fast_with_both_amounts() -> None:
    update, chunks, _ = _vad_audio()
    async with ReplayServer(_sent_in_one_go(), stall_timeout=1) as server:
        with pytest.raises(ConnectionClosed) as info:
            await _voice_websockets(server.url, update, _rechunk(chunks, -1000))
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert "stall" in info.value.rcvd.reason
    [m] = server.report.mismatches
    assert m.kind == "audio"
    assert "the client's audio stopped 1,000 ms short" in m.message
    assert "until 2,428 ms of audio have arrived" in m.message and "1,428 ms have" in m.message


# -- clients that keep sending cannot keep a stalled replay alive ---------------------------------


async def _keep_sending(ws: Any, message: str, every: float) -> tuple[list[Any], ConnectionClosed]:
    """Send ``message`` every ``every`` seconds while reading, until the server closes."""
    got: list[Any] = []

    async def beat() -> None:
        while True:
            await ws.send(message)
            await asyncio.sleep(every)

    beating = asyncio.create_task(beat())
    try:
        while True:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout(20))))
    except ConnectionClosed as closed:
        return got, closed
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)


async def test_a_heartbeat_does_not_keep_a_stalled_replay_alive() -> None:
    async with ReplayServer(sample("text-response.jsonl"), stall_timeout=1) as server:
        async with connect(server.url + "?model=gpt-realtime") as ws:
            await ws.recv()  # session.created
            await ws.send(json.dumps(clients.client_events(sample("text-response.jsonl"))[0]))
            assert json.loads(await ws.recv())["type"] == "session.updated"
            # Forgets its question, and sends a heartbeat four times a second.
            got, closed = await _keep_sending(ws, '{"type":"heartbeat"}', 0.25)
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    assert closed.rcvd.reason == "rtreplay stall: waiting for conversation.item.create"
    assert {e["error"]["code"] for e in got[:-1]} == {"rtreplay_mismatch"}  # each heartbeat
    assert got[-1]["error"]["code"] == "rtreplay_stall"
    stall = server.report.mismatches[-1]
    assert stall.kind == "stall" and "until the client sends conversation.item.create" in stall.message
    assert "the client has sent nothing that moves the replay on" in stall.message
    assert "none of them a recorded client event) (last sent: heartbeat)" in stall.message


async def test_a_microphone_left_streaming_after_the_recording_does_not_keep_it_alive() -> None:
    update, chunks, server_events = _vad_audio()
    async with ReplayServer(_sent_in_one_go(), stall_timeout=1) as server:
        async with connect(server.url + "?model=gpt-realtime") as ws:
            await ws.send(json.dumps(update))
            for chunk in chunks:
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            # ...and the microphone stays open: 100 ms of silence every 100 ms.
            silence = json.dumps({"type": "input_audio_buffer.append", "audio": _rechunk([], 100)[0]})
            got, closed = await _keep_sending(ws, silence, 0.1)
    assert clients.timeless(got[: len(server_events)]) == server_events  # the whole recording
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    assert closed.rcvd.reason == (
        "rtreplay stall: every recorded server event was sent; the recorded client closed here"
    )
    kinds = [m.kind for m in server.report.mismatches]
    assert kinds == ["after_end", "stall"]  # the audio past the tolerance, then the stall
    assert "audio beyond what the recording has there) (last sent: input_audio_buffer.append)" in (
        server.report.mismatches[-1].message
    )


# -- parallel tool calls -----------------------------------------------------------------------------


async def _until(ws: Any, got: list[Any], kind: str) -> None:
    while True:
        got.append(json.loads(await ws.recv()))
        if got[-1]["type"] == kind:
            return


async def test_parallel_tool_outputs_replay_in_every_order_to_a_raw_client() -> None:
    """A response with three function calls; the client answers them in each of the six
    orders, the way a client running its tools concurrently does."""
    import itertools

    cassette = sample("parallel-tools.jsonl")
    client_events = clients.client_events(cassette)
    outputs = [e for e in client_events if e.get("item", {}).get("type") == "function_call_output"]
    before = client_events[: client_events.index(outputs[0])]
    recorded = clients.server_events(cassette)
    async with ReplayServer(cassette, repeat=True) as server:
        for order in itertools.permutations(outputs):
            async with connect(server.url + "?model=gpt-realtime") as ws:
                got: list[Any] = []
                for event in before:
                    await ws.send(json.dumps(event))
                await _until(ws, got, "rate_limits.updated")
                # Each output echoes the call_id of a function call the client received.
                calls = {e["item"]["call_id"] for e in got if e["type"] == "response.output_item.done"}
                assert calls == {o["item"]["call_id"] for o in order}
                for output in order:
                    await ws.send(json.dumps(output))
                await ws.send(json.dumps({"type": "response.create"}))
                await asyncio.wait_for(_until(ws, got, "rate_limits.updated"), timeout(10))
            assert clients.timeless(got) == recorded
    assert server.report.ok and server.report.reorderings == [], str(server.report)
    assert len(server.report.connections) == 6


# -- time and IDs ---------------------------------------------------------------------------------------


async def test_times_move_to_replay_time_and_keep_their_offset_by_default() -> None:
    import time

    cassette = load(sample("text-chat.jsonl"))
    recorded = json.loads(next(cassette.connections[0].server_frames()).payload())
    started = msgspec.convert(cassette.connections[0].open.started, str)
    from rtreplay.volatile import parse_wall_clock

    offset = recorded["session"]["expires_at"] - (parse_wall_clock(started) or 0)
    for shift, check in ((True, lambda got: abs(got - (time.time() + offset)) < 5), (False, lambda got: got == recorded["session"]["expires_at"])):
        async with ReplayServer(cassette, shift_times=shift) as server, connect(server.url + "?model=gpt-realtime") as ws:
            got = json.loads(await ws.recv())
        assert check(got["session"]["expires_at"]), (shift, got["session"]["expires_at"])
        assert {k: v for k, v in got["session"].items() if k != "expires_at"} == {
            k: v for k, v in recorded["session"].items() if k != "expires_at"
        }


async def test_fresh_ids_differ_per_connection_and_a_stale_echo_is_reported() -> None:
    cassette = sample("interruption.jsonl")
    plan = clients.script(cassette)
    async with ReplayServer(cassette, fresh_ids=True, repeat=True) as server:
        first = await clients.websockets_raw(server.url, plan)  # echoes what the recording echoed
        assert server.report.mismatches, "the recorded IDs are stale on a replay with fresh IDs"
    stale = [m for m in server.report.mismatches if m.kind == "id"]
    assert stale and "the recording's ID" in str(stale[0])
    ids = {e["item_id"] for e in first if isinstance(e, dict) and "item_id" in e}
    recorded = {e["item_id"] for e in clients.server_events(cassette) if "item_id" in e}
    assert ids and not ids & recorded  # every item ID this connection saw is its own


async def test_fresh_ids_echoed_back_as_handed_out_match() -> None:
    cassette = sample("tool-call.jsonl")
    async with ReplayServer(cassette, fresh_ids=True) as server:
        client = openai.AsyncOpenAI(api_key="sk-test", websocket_base_url=server.websocket_base_url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            events = clients.client_events(cassette)
            await conn.send(events[0])
            await conn.send(events[1])
            await conn.send(events[2])
            call_id = None
            async for event in conn:
                if event.type == "response.function_call_arguments.done":
                    call_id = event.call_id
                if event.type == "rate_limits.updated":
                    break
            assert call_id is not None and call_id not in json.dumps(events)
            output = dict(events[3], item=dict(events[3]["item"], call_id=call_id))
            await conn.send(output)
            await conn.send(events[4])
            async for event in conn:
                if event.type == "rate_limits.updated":
                    break
        await client.close()
    assert server.report.ok and server.report.complete, str(server.report)
