"""A small Realtime relay, as teams write them, for the sandwich tests (and docs/driving.md).

It accepts Realtime clients on ``/v1/realtime``, opens its own connection to its upstream
(``upstream`` is a ``websocket_base_url`` such as ``ws://127.0.0.1:8765/v1``) with its own
key, and forwards every message both ways, closes included. ``drop`` names server event
types it never passes on to the client: the deliberate bug the sandwich must catch.

Run it alone: ``python tests/relay.py --upstream ws://127.0.0.1:8765/v1 --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Collection

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from rtreplay._service import Service

__all__ = ["Relay"]

#: The relay's own key for its upstream (a replay accepts any; never a real one).
RELAY_KEY = "sk-relay-own-key-0123456789"


class Relay(Service):
    """Forward Realtime sessions to ``upstream``; ``drop``: server event types never passed on."""

    def __init__(
        self, upstream: str, *, drop: Collection[str] = (), host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host=host, port=port)
        self.upstream = upstream.rstrip("/")
        self.drop = frozenset(drop)
        self.dropped = 0
        self._server: Server | None = None

    async def _start(self) -> int:
        self._server = await serve(self._handle, self.host, self.port, max_size=None)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, client: ServerConnection) -> None:
        assert client.request is not None
        query = client.request.path.partition("?")[2]
        url = f"{self.upstream}/realtime" + (f"?{query}" if query else "")
        try:
            upstream = await connect(
                url, additional_headers={"Authorization": f"Bearer {RELAY_KEY}"}, max_size=None
            )
        except (OSError, ConnectionClosed) as exc:
            await client.close(1011, f"relay: upstream unreachable: {exc}"[:120])
            return
        async with upstream:
            up = asyncio.create_task(self._pipe(client, upstream, up=True))
            down = asyncio.create_task(self._pipe(upstream, client, up=False))
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            for source, target in ((client, upstream), (upstream, client)):
                if source.close_code is not None and target.close_code is None:
                    with contextlib.suppress(ConnectionClosed):
                        await target.close(source.close_code, source.close_reason or "")
            await asyncio.wait([up, down])

    async def _pipe(
        self, source: ServerConnection | ClientConnection, target: ServerConnection | ClientConnection, *, up: bool
    ) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in source:
                if not up and self.drop and isinstance(message, str):
                    kind = json.loads(message).get("type")
                    if kind in self.drop:
                        self.dropped += 1
                        continue
                await target.send(message)


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--drop", action="append", default=[])
    args = parser.parse_args()
    relay = Relay(args.upstream, drop=args.drop, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with relay:
        print(f"relay: ws://127.0.0.1:{relay.port}/v1/realtime -> {relay.upstream}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main())
