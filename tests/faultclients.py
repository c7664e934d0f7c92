"""Real clients meeting injected faults and interruptions: what each one saw, close included.

Each driver runs one connection's plan (``tests/conformance/plans.py``: ``send``,
``until``, ``until_closed``) with a real client pointed at the server the way
docs/clients.md says, and returns a :class:`Seen`: the server events the client's API
handed out, when, and how the connection ended as that client reports it. A handshake
the server refused is reported as such, with its status, headers and body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conformance import clients
from .conformance.clients import Target
from .conformance.plans import Close, PlanMachine, Send


@dataclass
class Seen:
    """What one client saw of one connection."""

    events: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # time.monotonic() of each event
    close: tuple[int, str] | None = None  # how the server ended it (1006: dropped)
    ended: bool = False  # the client's API ended the stream as a normal close (1000/1001)
    refused: tuple[int, dict[str, str], str] | None = None  # status, headers, body
    started: float = 0.0  # time.monotonic() when the client began connecting

    @property
    def types(self) -> list[str]:
        return [e.get("type", "?") for e in self.events]

    def first(self, kind: str) -> dict[str, Any]:
        return next(e for e in self.events if e.get("type") == kind)


Driver = Callable[[Target, list[dict[str, Any]]], Awaitable[Seen]]


def _refusal(exc: InvalidStatus) -> tuple[int, dict[str, str], str]:
    response = exc.response
    body = bytes(response.body or b"").decode("utf-8", "replace")
    return response.status_code, {k.lower(): v for k, v in response.headers.raw_items()}, body


def _closed(exc: ConnectionClosed) -> tuple[int, str]:
    if exc.rcvd is None:
        return 1006, ""
    return exc.rcvd.code, exc.rcvd.reason


@dataclass
class Watch(PlanMachine):
    """A plan (:class:`PlanMachine`) that also notes in :attr:`seen` what the client saw:
    each event it handed out, and when; how the connection ended. The one updater of every
    driver here, and what ``clients.play``/``play_async``/``play_websocket_client`` follow."""

    seen: Seen = field(default_factory=lambda: Seen(started=time.monotonic()))

    def receive(self, event: dict[str, Any]) -> list[Send | Close]:
        self.seen.events.append(event)
        self.seen.times.append(time.monotonic())
        return super().receive(event)

    def closed(self) -> None:
        """The client's API ended the stream as a normal close."""
        self.seen.ended = True
        super().closed()

    def lost(self, close: tuple[int, str]) -> None:
        """The server ended the connection with ``close`` (1006: dropped), as the client
        reports it by an exception or a callback."""
        self.seen.close = close
        super().closed()

    @contextmanager
    def reporting(self) -> Iterator[None]:
        """Note a closed connection or a refused handshake that the websockets-based
        client raises (the openai SDK's), instead of raising it."""
        try:
            yield
        except ConnectionClosed as exc:  # reading, or sending once it was over
            self.lost(_closed(exc))
        except InvalidStatus as exc:
            self.seen.refused = _refusal(exc)


async def openai_async(target: Target, steps: list[dict[str, Any]]) -> Seen:
    """``AsyncOpenAI(...).realtime.connect()``; events through ``async for``."""
    client = clients.snippet("openai_async", server=target)["client"]
    watch = Watch(steps)
    try:
        with watch.reporting():
            async with client.realtime.connect(model="gpt-realtime") as conn:
                await clients.play_async(watch, conn, clients.to_dict, conn.send)
    finally:
        await client.close()
    return watch.seen


def _openai_sync(target: Target, steps: list[dict[str, Any]]) -> Seen:
    client = clients.snippet("openai_sync", server=target)["client"]
    watch = Watch(steps)
    with client, watch.reporting(), client.realtime.connect(model="gpt-realtime") as conn:
        clients.play(watch, conn, clients.to_dict, conn.send)
    return watch.seen


async def openai_sync(target: Target, steps: list[dict[str, Any]]) -> Seen:
    """``OpenAI(...).realtime.connect()``, synchronous, off the event loop."""
    return await asyncio.to_thread(_openai_sync, target, steps)


def _websocket_client(target: Target, steps: list[dict[str, Any]]) -> Seen:
    watch = Watch(steps)
    seen = watch.seen

    def on_close(code: Any, reason: Any) -> None:
        if not watch.finished and seen.refused is None:
            watch.lost((code, reason or "") if code is not None else (1006, ""))

    def on_error(error: BaseException) -> bool:
        if type(error).__name__ == "WebSocketBadStatusException":
            headers = {k.lower(): v for k, v in (getattr(error, "resp_headers", None) or {}).items()}
            body = getattr(error, "resp_body", b"") or b""
            seen.refused = (error.status_code, headers, body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body))  # type: ignore[attr-defined]
            return False
        # A connection the server ended reaches the app as an error too (a broken pipe
        # when it was dropped as the app sent): on_close judges it.
        return not (isinstance(error, OSError) or type(error).__name__ == "WebSocketConnectionClosedException")

    clients.play_websocket_client(target, watch, on_close, on_error)
    return seen


async def websocket_client(target: Target, steps: list[dict[str, Any]]) -> Seen:
    """websocket-client's ``WebSocketApp``, as docs/clients.md writes it."""
    return await asyncio.to_thread(_websocket_client, target, steps)


async def node_ws(target: Target, steps: list[dict[str, Any]]) -> Seen:
    """Node's ``ws`` package, through tests/node/driver.mjs."""
    closes: list[Any] = []
    started = time.monotonic()
    plan = [{"query": {"model": "gpt-realtime"}, "beta": False, "steps": steps}]
    [received] = await asyncio.to_thread(clients.node, "ws", target, plan, closes)
    seen = Seen(events=received, started=started)
    if closes and closes[0] is not None:
        seen.close = (closes[0]["code"], closes[0]["reason"])
    return seen


DRIVERS: dict[str, Driver] = {
    "openai-async": openai_async,
    "openai-sync": openai_sync,
    "websocket-client": websocket_client,
    "node-ws": node_ws,
}


def skip_reason(name: str) -> str | None:
    """Why a driver cannot run here (Node missing), or ``None``."""
    return clients.node_available() if name.startswith("node") else None
