"""Drive a cassette's recorded client events through real clients; return what they receive.

Each driver follows the recording: it sends a recorded client event when its turn comes
and, for each recorded server frame, receives one event, so the client reacts at the
moments the recorded client did (a function's output goes out after the function call
arrived). When the recording's server closed the connection, the driver then waits for
that close; otherwise it closes the connection itself, as the recorded client did.

``ScriptStep`` lists come from :func:`script`; each driver returns the server events it
received, decoded, to compare with :func:`server_events`. Both sides pass through
:func:`timeless`: a replay moves time fields to replay time (``rtreplay.volatile``), which
``tests/test_volatile.py`` checks on its own.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtreplay.cassette import Cassette
from rtreplay.codec import load
from rtreplay.protocol import TIME_FIELDS

from .conftest import timeout


@dataclass(frozen=True)
class ScriptStep:
    """Send ``message`` (a client event's text), or receive one server event."""

    send: str | None = None


@dataclass(frozen=True)
class Script:
    steps: list[ScriptStep]
    server_closes: bool  # the recording ends with the server closing
    model: str | None
    query: dict[str, str]
    beta: bool
    rejected: bool  # the recorded handshake was refused

    @property
    def extra_query(self) -> dict[str, str]:
        return {k: v for k, v in self.query.items() if k != "model"}

    def url(self, base: str) -> str:
        if not self.query:
            return base
        return base + "?" + "&".join(f"{k}={v}" for k, v in self.query.items())

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Authorization": "Bearer sk-test"}
        if self.beta:
            headers["OpenAI-Beta"] = "realtime=v1"
        return headers

    @property
    def expected(self) -> int:
        return sum(1 for s in self.steps if s.send is None)


TIME = "<time>"


def timeless(value: Any) -> Any:
    """``value`` with every time field (``expires_at``...) holding a unix time replaced by
    ``"<time>"``: what stays the same between a recording and its replay."""
    if isinstance(value, dict):
        return {
            k: TIME
            if k in TIME_FIELDS and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1e9
            else timeless(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def _cassette(source: str | Path | Cassette) -> Cassette:
    return source if isinstance(source, Cassette) else load(source)


def script(source: str | Path | Cassette, conn: int = 0) -> Script:
    """The steps a client goes through to replay recorded connection ``conn``."""
    connection = _cassette(source).connections[conn]
    steps = [
        ScriptStep(send=f.payload() if f.dir == "client" else None)  # type: ignore[arg-type]
        for f in connection.frames
    ]
    close = connection.close
    closes = close is not None and close.by == "server"
    query = dict(connection.open.query)
    return Script(
        steps,
        closes,
        query.get("model"),
        query,
        connection.open.protocol == "beta",
        connection.reject is not None,
    )


def connection_count(source: str | Path | Cassette) -> int:
    return len(_cassette(source).connections)


def server_events(source: str | Path | Cassette, conn: int = 0) -> list[Any]:
    """The recorded server events of connection ``conn``, decoded."""
    connection = _cassette(source).connections[conn]
    return timeless([f.event() for f in connection.frames if f.dir == "server"])


def client_events(source: str | Path | Cassette, conn: int = 0) -> list[Any]:
    connection = _cassette(source).connections[conn]
    return [f.event() for f in connection.frames if f.dir == "client"]


# -- openai (async and sync), websocket_base_url -------------------------------------


def _connect_args(plan: Script) -> dict[str, Any]:
    args: dict[str, Any] = {"extra_query": plan.extra_query}
    if plan.model is not None:
        args["model"] = plan.model
    return args


async def openai_async(base_url: str, plan: Script) -> list[Any]:
    """Replay through ``AsyncOpenAI(websocket_base_url=...).realtime.connect()``
    (``client.beta.realtime`` for a beta recording)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="sk-test", websocket_base_url=base_url)
    realtime: Any = client.beta.realtime if plan.beta else client.realtime
    received: list[Any] = []

    async def run() -> None:
        async with realtime.connect(**_connect_args(plan)) as conn:
            for step in plan.steps:
                if step.send is not None:
                    await conn.send(json.loads(step.send))
                else:
                    raw = await conn.recv_bytes()
                    # The SDK must be able to parse what the replay sends.
                    assert conn.parse_event(raw).type == json.loads(raw).get("type")
                    received.append(json.loads(raw))
            if plan.server_closes:
                await _wait_closed_async(conn)

    await asyncio.wait_for(run(), timeout(20))
    await client.close()
    return timeless(received)


async def _wait_closed_async(conn: Any) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        extra = await conn.recv_bytes()
    except ConnectionClosed:
        return
    raise AssertionError(f"expected the replay to close, got {extra[:200]!r}")


def openai_sync(base_url: str, plan: Script) -> list[Any]:
    """Replay through the synchronous ``OpenAI(websocket_base_url=...).realtime.connect()``."""
    from openai import OpenAI
    from websockets.exceptions import ConnectionClosed

    received: list[Any] = []
    with OpenAI(api_key="sk-test", websocket_base_url=base_url) as client:
        realtime: Any = client.beta.realtime if plan.beta else client.realtime
        with realtime.connect(**_connect_args(plan)) as conn:
            for step in plan.steps:
                if step.send is not None:
                    conn.send(json.loads(step.send))
                else:
                    raw = conn.recv_bytes()
                    assert conn.parse_event(raw).type == json.loads(raw).get("type")
                    received.append(json.loads(raw))
            if plan.server_closes:
                try:
                    extra = conn.recv_bytes()
                except ConnectionClosed:
                    pass
                else:
                    raise AssertionError(f"expected the replay to close, got {extra[:200]!r}")
    return timeless(received)


# -- websocket-client: the synchronous script users write by hand --------------------


def websocket_client(url: str, plan: Script) -> list[Any]:
    """Replay with ``websocket.create_connection`` as a hand-written script would."""
    import websocket

    ws = websocket.create_connection(
        plan.url(url), header=[f"{k}: {v}" for k, v in plan.headers.items()], timeout=timeout(20)
    )
    received: list[Any] = []
    try:
        for step in plan.steps:
            if step.send is not None:
                ws.send(step.send)
            else:
                received.append(json.loads(ws.recv()))
        if plan.server_closes:
            opcode, data = ws.recv_data(control_frame=True)
            assert opcode == websocket.ABNF.OPCODE_CLOSE, (opcode, data[:200])
    finally:
        ws.close()
        # close() does nothing once the peer's close frame was read; shutdown() frees the socket.
        ws.shutdown()
    return timeless(received)


# -- websockets (asyncio client), raw ------------------------------------------------


async def websockets_raw(url: str, plan: Script, **connect_options: Any) -> list[Any]:
    """Replay with ``websockets.asyncio.client.connect``."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    received: list[Any] = []

    async def run() -> None:
        async with connect(plan.url(url), additional_headers=plan.headers, **connect_options) as ws:
            for step in plan.steps:
                if step.send is not None:
                    await ws.send(step.send)
                else:
                    received.append(json.loads(await ws.recv()))
            if plan.server_closes:
                try:
                    extra = await ws.recv()
                except ConnectionClosed:
                    return
                raise AssertionError(f"expected the replay to close, got {extra[:200]!r}")

    await asyncio.wait_for(run(), timeout(20))
    return timeless(received)


# -- openai-agents ---------------------------------------------------------------------


async def openai_agents(
    url: str, message: str, expected: int, *, tools: list[Any] | None = None
) -> list[Any]:
    """Run an openai-agents ``RealtimeSession`` that sends ``message``; return the raw
    server events its model layer received (copied when they arrive, before the SDK
    patches them in place), once ``expected`` of them arrived."""
    import copy

    from agents.realtime import RealtimeAgent, RealtimeRunner
    from agents.realtime.model import RealtimeModelListener
    from agents.realtime.model_events import RealtimeModelEvent
    from agents.realtime.openai_realtime import OpenAIRealtimeWebSocketModel

    received: list[Any] = []
    enough = asyncio.Event()

    class Capture(RealtimeModelListener):
        async def on_event(self, event: RealtimeModelEvent) -> None:
            if event.type == "raw_server_event":
                received.append(copy.deepcopy(event.data))
                if len(received) >= expected:
                    enough.set()

    model = OpenAIRealtimeWebSocketModel()
    model.add_listener(Capture())
    agent = RealtimeAgent(name="assistant", instructions="be brief", tools=tools or [])
    runner = RealtimeRunner(agent, model=model)

    async def run() -> None:
        session = await runner.run(model_config={"url": url, "api_key": "sk-test"})
        async with session:
            await session.send_message(message)
            await enough.wait()

    await asyncio.wait_for(run(), timeout(30))
    return timeless(received)


# -- a careful client: each event, then its answer ---------------------------------------

#: What a careful client reads until after sending each event: the event's first answer
#: (or an ``error``). Written from the API reference, independently of rtreplay's table.
FIRST_ANSWER = {
    "session.update": {"session.updated"},
    "transcription_session.update": {"transcription_session.updated"},
    "conversation.item.create": {"conversation.item.added", "conversation.item.created"},
    "conversation.item.truncate": {"conversation.item.truncated"},
    "conversation.item.delete": {"conversation.item.deleted"},
    "conversation.item.retrieve": {"conversation.item.retrieved"},
    "input_audio_buffer.commit": {"input_audio_buffer.committed"},
    "input_audio_buffer.clear": {"input_audio_buffer.cleared"},
    "response.create": {"response.created"},
    "response.cancel": {"response.done"},
    "session.close": {"session.closed"},  # the translation endpoint
}


async def careful(send: Any, recv: Any, source: str | Path | Cassette, conn: int = 0) -> list[Any]:
    """Send each recorded client event, then read until its answer came (``send(text)``,
    ``recv() -> dict``); finally read the rest of the recorded server events."""
    expected = len(server_events(source, conn))
    received: list[Any] = []
    for event in client_events(source, conn):
        await send(json.dumps(event))
        wanted = FIRST_ANSWER.get(event.get("type") if isinstance(event, dict) else "")
        while wanted:
            got = await recv()
            received.append(got)
            if got.get("type") in wanted | {"error"}:
                break
    while len(received) < expected:
        received.append(await recv())
    return timeless(received)


async def careful_openai_async(base_url: str, source: str | Path | Cassette, conn: int = 0) -> list[Any]:
    """:func:`careful` through ``AsyncOpenAI(...).realtime.connect()``."""
    from openai import AsyncOpenAI

    plan = script(source, conn)
    client = AsyncOpenAI(api_key="sk-test", websocket_base_url=base_url)
    realtime: Any = client.beta.realtime if plan.beta else client.realtime

    async def run() -> list[Any]:
        async with realtime.connect(**_connect_args(plan)) as c:
            async def recv() -> Any:
                return json.loads(await c.recv_bytes())

            return await careful(lambda text: c.send(json.loads(text)), recv, source, conn)

    try:
        return await asyncio.wait_for(run(), timeout(20))
    finally:
        await client.close()


async def careful_websockets(url: str, source: str | Path | Cassette, conn: int = 0) -> list[Any]:
    """:func:`careful` through ``websockets.asyncio.client.connect``."""
    from websockets.asyncio.client import connect

    plan = script(source, conn)

    async def run() -> list[Any]:
        async with connect(plan.url(url), additional_headers=plan.headers) as ws:
            async def recv() -> Any:
                return json.loads(await ws.recv())

            return await careful(ws.send, recv, source, conn)

    return await asyncio.wait_for(run(), timeout(20))
