"""Promise 4: a misbehaving client gets a clear answer and harms no other connection.

Every attack runs against the replay server and against the recording proxy while a
healthy session is open on the same server; the healthy session must then finish with
exactly what it should, and a fresh session after the attack too. No handler may fail
(no ERROR log line, which is what websockets logs for a crashed handler).

The answers, as ``docs/reliability.md`` lists them:

========================  ===========================================  =======================
client                    replay server                                recording proxy
========================  ===========================================  =======================
invalid JSON, binary,     ``error`` event (``rtreplay_mismatch``),     relayed; the upstream's
unknown type, bad audio   connection stays open                        ``error`` event comes back
frame over 16 MiB         close 1009                                   close 1009, recorded
wrong path                HTTP 404, one-line body                      HTTP 404, one-line body
no ``Upgrade`` header     HTTP 426                                     HTTP 426, upstream untouched
not HTTP at all           closed, no answer                            closed, no answer
vanishes mid-frame        connection dropped, nothing else             upstream closed, 1006 recorded
never reads               sending pauses; <= one frame + 64 KiB held   upstream paused; + one read
========================  ===========================================  =======================
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from rtreplay import Cassette, Close, Connection, Frame, Header, Open
from rtreplay.codec import load
from rtreplay.recorder import Recorder
from rtreplay.server import ReplayServer

from ..conftest import timeout
from ..upstream import ScriptedUpstream
from .support import handshake_bytes, masked_frame, read_http_response, report_figure, wait_until

pytestmark = pytest.mark.timeout(60)

AUDIO = base64.b64encode(bytes(range(256)) * 19).decode()  # ~6.5 KB frames, as the API sends
USER = {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                     "content": [{"type": "input_text", "text": "hi"}]}}


def replay_cassette(deltas: int, delta: str = AUDIO) -> Cassette:
    """One recorded connection: session.created, a user message, an audio response."""
    frames = [Frame.from_message(0, 0.0, "server", json.dumps({"type": "session.created", "event_id": "e0"})),
              Frame.from_message(0, 0.1, "client", json.dumps(USER))]
    for n in range(deltas):
        frames.append(Frame.from_message(0, 0.2, "server", json.dumps(
            {"type": "response.output_audio.delta", "event_id": f"d{n}", "delta": delta})))
    frames.append(Frame.from_message(0, 0.3, "server", json.dumps({"type": "response.done", "event_id": "done"})))
    return Cassette(Header(), [Connection(Open(0, query={"model": "gpt-realtime"}), frames,
                                          Close(0, 0.4, 1000, "", "client"))])


# -- the two servers under attack ----------------------------------------------------------


@dataclass
class Target:
    """A server under attack, and how a healthy session on it goes."""

    kind: str
    url: str
    recorder: Recorder | None = None
    upstream: ScriptedUpstream | None = None

    def connect(self, **options: Any) -> Any:
        return connect(self.url + "?model=gpt-realtime", additional_headers={"Authorization": "Bearer sk-test-client-0000"},
                       max_size=None, max_queue=None, **options)

    async def healthy_start(self) -> ClientConnection:
        ws = await self.connect()
        first = json.loads(await ws.recv())
        assert first["type"] == "session.created"
        return ws

    async def healthy_finish(self, ws: ClientConnection) -> list[str]:
        """The rest of a healthy session: a user message, a whole response."""
        if self.kind == "replay":
            await ws.send(json.dumps(USER))
        else:
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}}))
            await ws.send(json.dumps(USER))
            await ws.send(json.dumps({"type": "response.create"}))
        types = []
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), timeout(20)))
            types.append(event["type"])
            if event["type"] == "response.done":
                break
        await ws.close()
        return types

    async def healthy(self) -> list[str]:
        return await self.healthy_finish(await self.healthy_start())

    async def expect_error(self, ws: ClientConnection) -> dict[str, Any]:
        """The next error event (the recording proxy relays the upstream's own)."""
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), timeout(10)))
            if event["type"] == "error":
                return event  # type: ignore[no-any-return]


@pytest.fixture(params=["replay", "recorder"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    if request.param == "replay":
        async with ReplayServer(replay_cassette(20), repeat=True) as server:
            yield Target("replay", server.url)
    else:
        async with ScriptedUpstream(audio_deltas=20) as up:
            rec = Recorder(tmp_path / "attacked.jsonl", upstream=up.websocket_base_url, idle_timeout=None)
            async with rec:
                yield Target("recorder", rec.url, rec, up)
            # Whatever the attacks did, the cassette reads back and every connection ended.
            cassette = load(tmp_path / "attacked.jsonl")
            for conn in cassette.connections:
                assert conn.close is not None or conn.reject is not None, conn.open


@pytest.fixture
def no_crash(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.WARNING)
    yield
    # A request that is not HTTP is logged as a warning (rtreplay's one-line handshake
    # failure), not as an error.
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, "\n".join(f"{r.name}: {r.getMessage()}" for r in failures)


# -- the attacks -------------------------------------------------------------------------------


async def attack_event(target: Target, message: str | bytes) -> None:
    async with target.connect() as ws:
        await ws.recv()  # session.created
        await ws.send(message)
        # Audio is only compared when its turn ends, so an error may come for the next event:
        # either way the connection is still there to answer it.
        await ws.send(json.dumps({"type": "no.such.event"}))
        error = await target.expect_error(ws)
        if target.kind == "replay":
            assert error["error"]["code"] == "rtreplay_mismatch", error


async def attack_oversize(target: Target) -> None:
    # Not ``async with``: closing again a connection whose 16 MiB were cut short trips
    # websockets' client (its transport is gone); the server already closed it.
    ws = await target.connect()
    await ws.recv()
    await ws.send("x" * (16 * 1024 * 1024 + 1))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout(20))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value


async def raw_request(target: Target, data: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = target.url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await read_http_response(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def attack_wrong_path(target: Target) -> None:
    status, _, body = await raw_request(target, handshake_bytes("/v1/chat/completions?model=x"))
    assert status == 404
    assert body.count(b"\n") == 1 and b"/v1/chat/completions" in body, body


async def attack_no_upgrade(target: Target) -> None:
    connections = len(target.upstream.handshakes) if target.upstream else 0
    status, _, _ = await raw_request(target, b"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 426
    if target.upstream is not None:  # a plain HTTP request costs no upstream connection
        assert len(target.upstream.handshakes) == connections


async def attack_not_http(target: Target) -> None:
    """A TLS hello (a wss:// client pointed at ws://): websockets closes without an answer."""
    with pytest.raises(asyncio.IncompleteReadError):
        await raw_request(target, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")


def _rst(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed client's kernel does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def attack_vanish_mid_frame(target: Target) -> None:
    host, port = target.url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(handshake_bytes("/v1/realtime?model=gpt-realtime", headers={"Authorization": "Bearer sk-test-vanish-000"}))
    status, _, _ = await read_http_response(reader)
    assert status == 101
    opened = len(target.upstream.handshakes) if target.upstream else 0
    frame = masked_frame(json.dumps(USER).encode())
    writer.write(frame[: len(frame) // 2])
    await writer.drain()
    sock = writer.get_extra_info("socket")
    _rst(sock.dup() if hasattr(sock, "dup") else sock)
    writer.transport.abort()
    if target.upstream is not None:
        # The proxy closes the upstream connection the vanished client had.
        up = target.upstream
        await up.wait_until(lambda: opened - 1 in up.closes, what="the vanished client's upstream to close")


async def attack_vanish_mid_handshake(target: Target) -> None:
    host, port = target.url.split("//")[1].split("/")[0].split(":")
    sock = socket.create_connection((host, int(port)))
    request = handshake_bytes("/v1/realtime?model=gpt-realtime")
    sock.sendall(request[: len(request) // 2])
    _rst(sock)


ATTACKS: dict[str, Callable[[Target], Awaitable[None]]] = {
    "invalid-json": lambda t: attack_event(t, '{"type": "session.update", '),
    "binary-frame": lambda t: attack_event(t, b"\x00\x01\x02binary"),
    "unknown-type": lambda t: attack_event(t, json.dumps({"type": "no.such.event", "x": 1})),
    "no-type": lambda t: attack_event(t, json.dumps({"session": {}})),
    "json-not-an-object": lambda t: attack_event(t, "[1, 2, 3]"),
    "bad-audio": lambda t: attack_event(t, json.dumps({"type": "input_audio_buffer.append", "audio": "é€ not base64"})),
    "over-size-limit": attack_oversize,
    "wrong-path": attack_wrong_path,
    "no-upgrade": attack_no_upgrade,
    "not-http": attack_not_http,
    "vanish-mid-frame": attack_vanish_mid_frame,
    "vanish-mid-handshake": attack_vanish_mid_handshake,
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_bad_client_gets_its_answer_and_others_carry_on(target: Target, attack: str, no_crash: None) -> None:
    expected = await target.healthy()  # what a healthy session sees on this server
    during = await target.healthy_start()
    await ATTACKS[attack](target)
    assert await target.healthy_finish(during) == expected, "the session open during the attack"
    assert await target.healthy() == expected, "a session after the attack"


# -- a client that never reads ------------------------------------------------------------------


async def _read_frame(sock: socket.socket, buf: bytearray) -> bytes:
    """Read one unmasked server frame from a non-blocking raw socket."""
    loop = asyncio.get_running_loop()

    async def need(n: int) -> None:
        while len(buf) < n:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), timeout(20))
            if not chunk:
                raise EOFError("the server closed the connection")
            buf.extend(chunk)

    await need(2)
    n = buf[1] & 0x7F
    head = 2
    if n == 126:
        await need(4)
        n, head = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        await need(10)
        n, head = struct.unpack("!Q", buf[2:10])[0], 10
    await need(head + n)
    frame = bytes(buf[head : head + n])
    del buf[: head + n]
    return frame


BIG = "A" * 64_000  # 64 KB deltas: 300 of them are 19 MB, far beyond the socket buffers
STALLED_DELTAS = 300


@pytest.mark.parametrize("kind", ["replay", "recorder"])
async def test_a_client_that_never_reads_holds_bounded_memory(kind: str, tmp_path: Path, no_crash: None) -> None:
    """The server pauses instead of buffering; the healthy session meanwhile completes,
    and when the stalled client reads again it gets every frame, in order."""
    async with contextlib.AsyncExitStack() as stack:
        if kind == "replay":
            server = await stack.enter_async_context(ReplayServer(replay_cassette(STALLED_DELTAS, BIG), repeat=True))
            target = Target("replay", server.url)
            recorder = None
        else:
            up = await stack.enter_async_context(ScriptedUpstream(audio_deltas=STALLED_DELTAS, audio_delta_bytes=48_000))
            recorder = await stack.enter_async_context(
                Recorder(tmp_path / "stalled.jsonl", upstream=up.websocket_base_url, idle_timeout=None))
            target = Target("recorder", recorder.url, recorder, up)

        host, port = target.url.split("//")[1].split("/")[0].split(":")
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        stack.callback(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, int(port)))
        await loop.sock_sendall(sock, handshake_bytes("/v1/realtime?model=gpt-realtime", headers={"Authorization": "Bearer sk-test-stall-0000"}))
        response = b""
        while b"\r\n\r\n" not in response:
            response += await loop.sock_recv(sock, 1)  # byte by byte: no byte of a frame is taken
        assert response.startswith(b"HTTP/1.1 101"), response
        if kind == "recorder":
            await loop.sock_sendall(sock, masked_frame(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}}).encode()))
            await loop.sock_sendall(sock, masked_frame(json.dumps(USER).encode()))
            await loop.sock_sendall(sock, masked_frame(json.dumps({"type": "response.create"}).encode()))
        else:
            await loop.sock_sendall(sock, masked_frame(json.dumps(USER).encode()))
        # Now never read. Watch what the server holds for this client while it is stalled.
        held = [0]

        def holding() -> int:
            if kind == "replay":
                conns = [c for c in server._server.connections if c.request and "stall" in c.request.headers.get("Authorization", "")]  # type: ignore[union-attr]
                return sum(c.transport.get_write_buffer_size() for c in conns)
            assert recorder is not None
            total = 0
            for relay in recorder._relays:
                if "stall" in (relay.hops["client"].request.headers.get("Authorization", "") if relay.hops["client"].request else ""):  # type: ignore[union-attr]
                    total += relay.hops["client"].transport.get_write_buffer_size()
                    total += sum(len(f.data) for frames in relay.fragments.values() for f in frames)
            return total

        def stalled() -> bool:
            held[0] = max(held[0], holding())
            return held[0] > 0

        await wait_until(stalled, what="the server to hold data for the stalled client")
        # While it stays stalled, a healthy session runs start to finish on the same server.
        watching = True

        async def watch() -> None:
            while watching:
                held[0] = max(held[0], holding())
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        types = await target.healthy()
        assert types[-1] == "response.done" and types.count("response.output_audio.delta") == STALLED_DELTAS
        watching = False
        await watcher
        frame_size = len(BIG) + 200
        # The replay server: one frame plus websockets' write buffer. The recorder: what
        # one read from the upstream brings (asyncio reads at most 256 KiB) besides, since
        # it forwards a read whole before it stops reading.
        limit = frame_size + 64 * 1024 + (256 * 1024 + frame_size if kind == "recorder" else 0)
        assert held[0] <= limit, f"{held[0]:,} bytes held for a client that does not read"
        report_figure(f"never-reads held bytes ({kind})", held[0])
        # Read again: every frame arrives, in order, none lost or doubled.
        buf = bytearray()
        events: list[dict[str, Any]] = []
        while not events or events[-1]["type"] != "response.done":
            events.append(json.loads(await _read_frame(sock, buf)))
        sock.close()
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert len(deltas) == STALLED_DELTAS
    if kind == "replay":
        assert [e["event_id"] for e in events] == ["e0"] + [f"d{n}" for n in range(STALLED_DELTAS)] + ["done"]
    else:
        ids = [e["event_id"] for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "reordered or doubled"
        stalled_conn = next(c for c in load(tmp_path / "stalled.jsonl").connections
                            if "stall" in c.open.headers.get("authorization", "") or c.open.conn == 0)
        recorded = [json.loads(f.payload()) for f in stalled_conn.frames if f.dir == "server"]
        assert recorded[: len(events)] == events



@pytest.mark.parametrize("kind", ["replay", "recorder"])
async def test_closing_with_a_client_that_never_reads_does_not_hang(
    kind: str, tmp_path: Path, no_crash: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping the server (a fixture's teardown, Ctrl-C on a command) while a client has
    stopped reading ends within the close timeout, and the recorder still writes its cassette."""
    # The close timeout (5 s) shortened, so that the test does not wait it out.
    monkeypatch.setattr(f"rtreplay.{'server' if kind == 'replay' else 'recorder'}.CLOSE_TIMEOUT", 0.5)
    async with contextlib.AsyncExitStack() as stack:
        service: ReplayServer | Recorder
        if kind == "replay":
            service = ReplayServer(replay_cassette(STALLED_DELTAS, BIG))
        else:
            up = await stack.enter_async_context(ScriptedUpstream(audio_deltas=STALLED_DELTAS, audio_delta_bytes=48_000))
            service = Recorder(tmp_path / "stalled.jsonl", upstream=up.websocket_base_url, idle_timeout=None)
        await service.start()
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", service.port))
        await loop.sock_sendall(sock, handshake_bytes("/v1/realtime?model=gpt-realtime", headers={"Authorization": "Bearer sk-test-stall-0000"}))
        response = b""
        while b"\r\n\r\n" not in response:
            response += await loop.sock_recv(sock, 1)
        if kind == "recorder":
            await loop.sock_sendall(sock, masked_frame(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}}).encode()))
            await loop.sock_sendall(sock, masked_frame(json.dumps({"type": "response.create"}).encode()))
        else:
            await loop.sock_sendall(sock, masked_frame(json.dumps(USER).encode()))

        def stalled() -> bool:
            if isinstance(service, ReplayServer):
                assert service._server is not None
                return any(c.transport.get_write_buffer_size() > 0 for c in service._server.connections)
            return any(r.hops["client"].transport.get_write_buffer_size() > 0 for r in service._relays)

        try:
            await wait_until(stalled, what="the client's socket to fill up")
            started = loop.time()
            await asyncio.wait_for(service.close(), timeout(20))
            # (wait_for returns normally if the close swallowed its cancellation: time it.)
            assert loop.time() - started < timeout(10), "close() waited on the stalled client"
        finally:
            sock.close()
    if kind == "recorder":
        [conn] = load(tmp_path / "stalled.jsonl").connections
        assert conn.close is not None and conn.frames
