"""Real clients meeting injected faults and interruptions: what each one saw, close included.

Each driver runs one connection's plan (``tests/conformance/plans.py``: ``send``,
``until``, ``until_closed``) with a real client pointed at the server the way
docs/clients.md says, and returns a :class:`Seen`: the server events the client's API
handed out, when, and how the connection ended as that client reports it. A handshake
the server refused is reported as such, with its status, headers and body.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
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


async def openai_async(target: Target, steps: list[dict[str, Any]]) -> Seen:
    """``AsyncOpenAI(...).realtime.connect()``; events through ``async for``."""
    client = clients.snippet("openai_async", server=target)["client"]
    seen = Seen(started=time.monotonic())
    machine = PlanMachine(steps)
    try:
        async with client.realtime.connect(model="gpt-realtime") as conn:

            async def perform(actions: list[Send | Close]) -> bool:
                for action in actions:
                    if isinstance(action, Close):
                        return True
                    await conn.send(action.event)
                return False

            try:
                if not await perform(machine.start()):
                    async for event in conn:
                        seen.events.append(event.to_dict())
                        seen.times.append(time.monotonic())
                        if await perform(machine.receive(seen.events[-1])):
                            break
                    else:
                        seen.ended = True
                        machine.closed()
            except ConnectionClosed as exc:  # reading, or sending once it was over
                seen.close = _closed(exc)
                machine.closed()
    except InvalidStatus as exc:
        seen.refused = _refusal(exc)
    finally:
        await client.close()
    return seen


def _openai_sync(target: Target, steps: list[dict[str, Any]]) -> Seen:
    client = clients.snippet("openai_sync", server=target)["client"]
    seen = Seen(started=time.monotonic())
    machine = PlanMachine(steps)
    with client:
        try:
            with client.realtime.connect(model="gpt-realtime") as conn:

                def perform(actions: list[Send | Close]) -> bool:
                    for action in actions:
                        if isinstance(action, Close):
                            return True
                        conn.send(action.event)
                    return False

                try:
                    if not perform(machine.start()):
                        for event in conn:
                            seen.events.append(event.to_dict())
                            seen.times.append(time.monotonic())
                            if perform(machine.receive(seen.events[-1])):
                                break
                        else:
                            seen.ended = True
                            machine.closed()
                except ConnectionClosed as exc:  # reading, or sending once it was over
                    seen.close = _closed(exc)
                    machine.closed()
        except InvalidStatus as exc:
            seen.refused = _refusal(exc)
    return seen


async def openai_sync(target: Target, steps: list[dict[str, Any]]) -> Seen:
    """``OpenAI(...).realtime.connect()``, synchronous, off the event loop."""
    return await asyncio.to_thread(_openai_sync, target, steps)


def _websocket_client(target: Target, steps: list[dict[str, Any]]) -> Seen:
    seen = Seen(started=time.monotonic())
    machine = PlanMachine(steps)
    failures: list[BaseException] = []
    sockets: list[Any] = []

    def perform(ws: Any, actions: list[Send | Close]) -> None:
        for action in actions:
            if isinstance(action, Close):
                ws.close()
                return
            ws.send(json.dumps(action.event))

    def on_open(ws: Any) -> None:
        sockets.append(ws.sock)
        perform(ws, machine.start())

    def on_message(ws: Any, message: str) -> None:
        seen.events.append(json.loads(message))
        seen.times.append(time.monotonic())
        try:
            perform(ws, machine.receive(seen.events[-1]))
        except BaseException as exc:  # the app swallows callback errors: keep them
            failures.append(exc)
            ws.close()

    def on_close(ws: Any, code: Any, reason: Any) -> None:
        if machine.finished or seen.refused is not None:
            return
        seen.close = (code, reason or "") if code is not None else (1006, "")
        machine.closed()

    def on_error(ws: Any, error: BaseException) -> None:
        if type(error).__name__ == "WebSocketBadStatusException":
            headers = {k.lower(): v for k, v in (getattr(error, "resp_headers", None) or {}).items()}
            body = getattr(error, "resp_body", b"") or b""
            seen.refused = (error.status_code, headers, body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body))  # type: ignore[attr-defined]
        elif not (isinstance(error, OSError) or type(error).__name__ == "WebSocketConnectionClosedException"):
            # A connection the server ended reaches the app as an error too (a broken
            # pipe when it was dropped as the app sent): on_close judges it.
            failures.append(error)

    clients.snippet("websocket_client", server=target, on_open=on_open, on_message=on_message,
                    on_close=on_close, on_error=on_error)
    for sock in sockets:
        if sock is not None:
            sock.shutdown()
    if failures:
        raise failures[0]
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
