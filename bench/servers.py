"""Every server the bench measures, each run in a process of its own.

``python bench/servers.py KIND ARGS...`` starts one server on 127.0.0.1, port 0, prints
``PORT <n>`` once it listens, and stops cleanly when its standard input closes (so a
bench that dies takes its servers with it). Separate processes keep each server's event
loop, garbage and peak memory its own, and let client and server use both cores.

Kinds:
  send CASSETTE        bare websockets server: on connect, sends the cassette's server
                       frames pre-encoded from a list, then closes (the replay reference)
  send-batched CASSETTE  the same, writing frames in batches as ReplayServer does (the
                       most websockets can send: the physical limit)
  sink                 counts what a client sends until {"type":"bench.done"}, answers
                       {"type":"bench.ok"} (client->server throughput)
  echo                 sends every message back (round-trip latency)
  answer CASSETTE      bare echo-style Realtime server: the cassette's server frames recorded
                       before the first client message on connect, then those recorded
                       after the k-th client message when it arrives, pre-encoded (what
                       `rtreplay drive` and a bare client are measured against)
  relay UPSTREAM       minimal bare relay: forwards frames both ways, records nothing
  replay CASSETTE      rtreplay.ReplayServer, instant mode (add --repeat, --keep-times, --fresh-ids)
  record CASSETTE UPSTREAM   rtreplay.Recorder to UPSTREAM (ws://.../v1)
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import msgspec
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

DONE = b'{"type":"bench.done"}'
DONE_TEXT = DONE.decode()
OPTS: dict[str, Any] = {"compression": None, "max_size": None}


class _Line(msgspec.Struct):
    kind: str
    dir: str | None = None
    json: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


def answer_groups(path: str) -> list[list[bytes]]:
    """The server payloads of connection 0 grouped by the client message they follow."""
    decoder = msgspec.json.Decoder(_Line)
    groups: list[list[bytes]] = [[]]
    with open(path, "rb") as f:
        for r in map(decoder.decode, f):
            if r.kind != "frame" or r.json is msgspec.UNSET:
                continue
            if r.dir == "client":
                groups.append([])
            else:
                groups[-1].append(bytes(r.json))
    return groups


def server_payloads(path: str) -> list[bytes]:
    decoder = msgspec.json.Decoder(_Line)
    with open(path, "rb") as f:
        return [
            bytes(r.json)
            for r in map(decoder.decode, f)
            if r.kind == "frame" and r.dir == "server" and r.json is not msgspec.UNSET
        ]


async def bare(kind: str, args: list[str], stop: asyncio.Event) -> None:
    payloads = server_payloads(args[0]) if kind in ("send", "send-batched") else []
    groups = answer_groups(args[0]) if kind == "answer" else []

    async def write(ws: ServerConnection, frames: list[bytes]) -> None:
        if frames:
            async with ws.send_context():  # type: ignore[attr-defined]
                for q in frames:
                    ws.protocol.send_text(q)

    async def answer(ws: ServerConnection) -> None:
        await write(ws, groups[0])
        k = 1
        async for _ in ws:
            if k < len(groups):
                await write(ws, groups[k])
            k += 1

    async def send(ws: ServerConnection) -> None:
        for p in payloads:
            await ws.send(p, text=True)
        await ws.close()

    async def send_batched(ws: ServerConnection) -> None:
        # The most websockets can do: frames written 256 (or 32 KB) at a time, with one
        # flow-control wait per batch, through the context its own send() uses.
        context = ws.send_context  # type: ignore[attr-defined]
        for i in range(0, len(payloads), 256):
            batch, size = [], 0
            for p in payloads[i : i + 256]:
                batch.append(p)
                size += len(p)
                if size >= 32 * 1024:
                    async with context():
                        for q in batch:
                            ws.protocol.send_text(q)
                    batch, size = [], 0
            if batch:
                async with context():
                    for q in batch:
                        ws.protocol.send_text(q)
        await ws.close()

    async def sink(ws: ServerConnection) -> None:
        count = 0
        async for message in ws:
            if message == DONE_TEXT:
                await ws.send(f'{{"type":"bench.ok","count":{count}}}')
                break
            count += 1
        await ws.wait_closed()

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    handler = {"send": send, "send-batched": send_batched, "sink": sink, "echo": echo, "answer": answer}[kind]
    async with serve(handler, "127.0.0.1", 0, **OPTS) as server:
        announce(server)
        await stop.wait()


async def relay(upstream: str, stop: asyncio.Event) -> None:
    """What a user writes to put a proxy between client and server: nothing more."""

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        target = upstream.rstrip("/") + path.removeprefix("/v1")
        async with connect(target, **OPTS) as up:

            async def pump(src: Any, dst: Any) -> None:
                try:
                    async for message in src:
                        await dst.send(message)
                except ConnectionClosed:
                    pass
                finally:
                    await dst.close()

            await asyncio.gather(pump(ws, up), pump(up, ws))

    async with serve(handler, "127.0.0.1", 0, **OPTS) as server:
        announce(server)
        await stop.wait()


async def replay(args: list[str], stop: asyncio.Event) -> None:
    from rtreplay.server import ReplayServer

    async with ReplayServer(
        args[0], repeat="--repeat" in args, shift_times="--keep-times" not in args, fresh_ids="--fresh-ids" in args
    ) as server:
        print(f"PORT {server.port}", flush=True)
        await stop.wait()


async def record(args: list[str], stop: asyncio.Event) -> None:
    from rtreplay.recorder import Recorder

    async with Recorder(args[0], upstream=args[1], api_key="sk-bench-upstream-key-0000") as server:
        print(f"PORT {server.port}", flush=True)
        await stop.wait()


def announce(server: Any) -> None:
    port = next(iter(server.sockets)).getsockname()[1]
    print(f"PORT {port}", flush=True)


async def main(argv: list[str]) -> None:
    kind, args = argv[0], argv[1:]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    if kind in ("send", "send-batched", "sink", "echo", "answer"):
        await bare(kind, args, stop)
    elif kind == "relay":
        await relay(args[0], stop)
    elif kind == "replay":
        await replay(args, stop)
    elif kind == "record":
        await record(args, stop)
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
