"""Examples per second of a property test over ``replays()``, beside the plain replay cycle.

    python bench/strategybench.py CASSETTE CLIENT N

CLIENT is ``openai`` (the openai SDK's ``AsyncOpenAI().realtime.connect()``) or ``raw`` (a
bare ``websockets`` client). Each example of the property test draws a variant of CASSETTE
with ``rtreplay.strategies.replays()``, serves it with a fresh ``ReplayServer``, plays the
recorded client side through CLIENT, collects every server event and checks the replay;
the plain cycle does the same with the recording itself, N times in a loop. Prints two
numbers: examples per second of the property test, then of the plain cycle.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from rtreplay import Cassette, Connection, ReplayServer, load
from rtreplay.strategies import replays


async def _play(connection: Connection, send: Callable[[Any], Awaitable[Any]],
                recv: Callable[[], Awaitable[Any]], decode: Callable[[Any], Any]) -> int:
    """Play one recorded connection's client side through a client: before each client
    frame, receive (``recv``) and ``decode`` every server event recorded before it, then
    ``send`` the frame's payload; at the end, receive the rest. Returns the number of
    server events received."""
    servers = got = 0
    for frame in connection.frames:
        if frame.dir == "server":
            servers += 1
            continue
        while got < servers:
            decode(await recv())
            got += 1
        await send(frame.payload())
    while got < servers:
        decode(await recv())
        got += 1
    return got


async def _openai(server: ReplayServer, cassette: Cassette) -> int:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="sk-bench", websocket_base_url=server.websocket_base_url)
    got = 0
    try:
        for connection in cassette.connections:
            async with client.realtime.connect(model=connection.open.query.get("model", "gpt-realtime")) as conn:
                got += await _play(connection, lambda p: conn.send(json.loads(p)),
                                   conn.recv_bytes, conn.parse_event)
    finally:
        await client.close()
    return got


async def _raw(server: ReplayServer, cassette: Cassette) -> int:
    from websockets.asyncio.client import connect

    got = 0
    for connection in cassette.connections:
        model = connection.open.query.get("model", "gpt-realtime")
        async with connect(f"{server.url}?model={model}", additional_headers={"Authorization": "Bearer sk-bench"}) as ws:
            got += await _play(connection, ws.send, ws.recv, json.loads)
    return got


CLIENTS = {"openai": _openai, "raw": _raw}


def replay(cassette: Cassette, client: Any) -> None:
    async def run() -> int:
        async with ReplayServer(cassette) as server:
            got: int = await client(server, cassette)
        server.check()
        return got

    got = asyncio.run(run())
    assert got == sum(f.dir == "server" for c in cassette.connections for f in c.frames)


def main(argv: list[str]) -> None:
    path, which, n = argv[0], argv[1], int(argv[2])
    client = CLIENTS[which]
    recording = load(path)
    replay(recording, client)  # warm-up: imports, the first server
    done = 0

    @settings(
        max_examples=n,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(replays(path))
    def property_test(variant: Cassette) -> None:
        nonlocal done
        replay(variant, client)
        done += 1

    t = time.perf_counter()
    property_test()
    strategy = done / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(n):
        replay(recording, client)
    plain = n / (time.perf_counter() - t)
    print(f"{strategy:.3f} {plain:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
