"""A correct reference client: what an app that gets the Realtime protocol right collects.

It plays a cassette's client side (each recorded client event once every server event
recorded before it has arrived, so it never sends early nor waits for something that
comes later) and collects what an app reads out of the server's events, keyed so that
nothing depends on how the content was cut or where independent events came:

- every streamed content (:data:`rtreplay.protocol.STREAMS`), concatenated, per stream
  (audio decoded to bytes), and what each ``*.done`` event says;
- each response's status and output (from ``response.done``), the function calls (from
  ``response.output_item.done``), the errors (codes, in order), the rate limits (in order);
- how each connection ended.

``openai_sdk`` reads the events through the openai SDK's parsed event objects
(``AsyncOpenAI(...).realtime.connect()``, ``client.beta.realtime`` for beta,
``realtime.translations`` for the translation endpoint); ``raw_websockets`` through a bare
``websockets`` client (what the SDK cannot reach: Azure Voice Live's path).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rtreplay._service import Service
from rtreplay.cassette import Cassette, Connection
from rtreplay.protocol import STREAMS

from .conftest import timeout

Get = Callable[[str], Any]


@dataclass
class Collected:
    """What an app collected on one connection."""

    streams: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    done: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    responses: list[Any] = field(default_factory=list)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    rate_limits: list[Any] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # every other event type, in order
    closed: Any = None

    def feed(self, kind: str, get: Get) -> None:
        stream = STREAMS.get(kind)
        if stream is not None:
            key = (kind, *(get(k) for k in stream.key))
            piece = get(stream.field) or ""
            if stream.content == "audio":
                data = base64.b64decode(piece)
                self.streams[key] = self.streams.get(key, b"") + data
            else:
                self.streams[key] = self.streams.get(key, "") + piece
            return
        ends = [s for s in STREAMS.values() if s.done == kind]
        if ends:
            key = (kind, *(get(k) for k in ends[0].key))
            self.done[key] = get(ends[0].done_field) if ends[0].done_field else True
            return
        if kind == "response.done":
            response = _plain(get("response"))
            self.responses.append((response.get("status"), response.get("status_details"), response.get("output")))
        elif kind == "response.output_item.done":
            item = _plain(get("item"))
            if item.get("type") == "function_call":
                self.calls.append((item.get("name"), item.get("call_id"), item.get("arguments")))
            self.other.append(kind)
        elif kind == "error":
            self.errors.append(_plain(get("error")).get("code"))
        elif kind == "rate_limits.updated":
            self.rate_limits.append(_plain(get("rate_limits")))
        else:
            self.other.append(kind)


def _plain(value: Any) -> Any:
    """An SDK model (or a list of them) as plain JSON data."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value if value is not None else {}


def _steps(connection: Connection) -> list[tuple[str | None, int]]:
    """(client message to send, server frames to have received first) per client frame."""
    out = []
    servers = 0
    for frame in connection.frames:
        if frame.dir == "server":
            servers += 1
        else:
            payload = frame.payload()
            out.append((payload if isinstance(payload, str) else None, servers))
    return out


def _server_count(connection: Connection) -> int:
    return sum(1 for f in connection.frames if f.dir == "server")


async def openai_sdk(server: Service, cassette: Cassette) -> list[Collected]:
    """Play ``cassette``'s client side through the openai SDK; what it collected per connection.

    A cassette that recorded how its ephemeral key was made gets one first, as a backend
    would (``client.realtime.client_secrets.create``), and connects with it."""
    from openai import AsyncOpenAI
    from websockets.exceptions import ConnectionClosed

    key = "sk-test"
    for exchange in cassette.exchanges:
        assert exchange.request.path.endswith("/client_secrets"), exchange.request.path
        async with AsyncOpenAI(api_key="sk-backend", base_url=server.base_url) as backend:
            secret = await backend.realtime.client_secrets.create(**json.loads(exchange.request.body()))
        key = secret.value
    client = AsyncOpenAI(api_key=key, websocket_base_url=server.websocket_base_url)
    out: list[Collected] = []
    try:
        for connection in cassette.connections:
            query = dict(connection.open.query)
            model = query.pop("model", None)
            args: dict[str, Any] = {"extra_query": query}
            if model is not None:
                args["model"] = model
            if connection.open.path.endswith("/translations"):
                realtime: Any = client.realtime.translations
            else:
                realtime = client.beta.realtime if connection.open.protocol == "beta" else client.realtime
            got = Collected()
            out.append(got)

            async def play(conn: Any, got: Collected = got, connection: Connection = connection) -> None:
                async def receive() -> None:
                    raw = await conn.recv_bytes()
                    event = conn.parse_event(raw)
                    kind = getattr(event, "type", None) or json.loads(raw).get("type")
                    got.feed(kind, lambda name: getattr(event, name, None))

                received = 0
                for message, before in _steps(connection):
                    while received < before:
                        await receive()
                        received += 1
                    assert message is not None
                    await conn.send(json.loads(message))
                while received < _server_count(connection):
                    await receive()
                    received += 1
                if connection.close is not None and connection.close.by == "server":
                    try:
                        extra = await conn.recv_bytes()
                    except ConnectionClosed as closed:
                        got.closed = closed.rcvd.code if closed.rcvd is not None else 1006
                    else:
                        raise AssertionError(f"expected the server to close, got {extra[:200]!r}")

            async def run(realtime: Any = realtime, args: dict[str, Any] = args, play: Any = play) -> None:
                async with realtime.connect(**args) as conn:
                    await play(conn)

            await asyncio.wait_for(run(), timeout(20))
    finally:
        await client.close()
    return out


async def raw_websockets(server: Service, cassette: Cassette) -> list[Collected]:
    """Play ``cassette``'s client side through a bare ``websockets`` client."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    root = server.websocket_base_url.removesuffix("/v1")
    out: list[Collected] = []
    for connection in cassette.connections:
        query = "&".join(f"{k}={v}" for k, v in connection.open.query.items())
        url = root + connection.open.path + (f"?{query}" if query else "")
        headers = {"Authorization": "Bearer sk-test"}
        if connection.open.protocol == "beta":
            headers["OpenAI-Beta"] = "realtime=v1"
        got = Collected()
        out.append(got)

        async def run(url: str = url, headers: dict[str, str] = headers, got: Collected = got, connection: Connection = connection) -> None:
            async with connect(url, additional_headers=headers, max_size=None) as ws:
                async def receive() -> None:
                    event = json.loads(await ws.recv())
                    got.feed(event.get("type"), event.get)

                received = 0
                for message, before in _steps(connection):
                    while received < before:
                        await receive()
                        received += 1
                    assert message is not None
                    await ws.send(message)
                while received < _server_count(connection):
                    await receive()
                    received += 1
                if connection.close is not None and connection.close.by == "server":
                    try:
                        extra = await ws.recv()
                    except ConnectionClosed:
                        got.closed = ws.close_code
                    else:
                        raise AssertionError(f"expected the server to close, got {str(extra)[:200]!r}")

        await asyncio.wait_for(run(), timeout(20))
    return out


def sdk_reaches(cassette: Cassette) -> bool:
    """Whether the openai SDK can open every connection of ``cassette`` (it builds
    ``/v1/realtime``, and ``/v1/realtime/translations`` in the releases that have
    ``realtime.translations``: the lowest openai rtreplay supports has not)."""
    import openai

    paths = {"/v1/realtime"}
    if hasattr(openai.AsyncOpenAI(api_key="x").realtime, "translations"):
        paths.add("/v1/realtime/translations")
    return all(c.open.path in paths for c in cassette.connections)
