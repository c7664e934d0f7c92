"""Drivers: each real client, pointed at a server as docs/clients.md shows, following a plan.

Every driver takes a :class:`Target` (where to connect) and a plan (``plans.py``), drives
the session with the client's own API, and returns what the client received: one list of
decoded server events per connection, in the order the client's API handed them out.
The lines that point each client at the server are read from ``docs/clients.md`` (its
``<!-- snippet: NAME -->`` blocks) and executed here, so the docs cannot drift.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..conftest import REPO, timeout
from .plans import Close, Plan, PlanError, PlanMachine, Send

Received = list[list[dict[str, Any]]]
CLIENTS_DOC = REPO / "docs" / "clients.md"
NODE_DIR = REPO / "tests" / "node"
API_KEY = "sk-conformance-test-0123456789abcdef"  # long enough for the redactor to hunt it


@dataclass
class Target:
    """Where a client connects: a started ReplayServer or Recorder, and the CA it needs."""

    service: Any
    ca_file: Path | None = None  # PEM to trust, when the service speaks TLS

    @property
    def host(self) -> str:
        return str(self.service.host)

    @property
    def port(self) -> int:
        return int(self.service.port)

    @property
    def websocket_base_url(self) -> str:
        return str(self.service.websocket_base_url)

    @property
    def url(self) -> str:
        return str(self.service.url)

    def realtime_url(self, query: dict[str, str]) -> str:
        return self.url + ("?" + urllib.parse.urlencode(query) if query else "")


_SNIPPET = re.compile(r"^<!-- snippet: ([\w-]+) -->\n```(\w+)\n(.*?)^```", re.S | re.M)


def doc_snippets() -> dict[str, tuple[str, str]]:
    """Every ``<!-- snippet: NAME -->`` block of docs/clients.md: NAME -> (language, code)."""
    text = CLIENTS_DOC.read_text()
    return {name: (lang, code) for name, lang, code in _SNIPPET.findall(text)}


def _compile(name: str) -> Any:
    lang, code = doc_snippets()[name]
    assert lang == "python", f"snippet {name} is {lang}"
    return compile(code, f"docs/clients.md#{name}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def snippet(name: str, **values: Any) -> dict[str, Any]:
    """Run the docs/clients.md snippet ``name`` with ``values`` in scope; return its names."""
    scope: dict[str, Any] = dict(values)
    exec(_compile(name), scope)
    return scope


async def async_snippet(name: str, **values: Any) -> dict[str, Any]:
    """Like :func:`snippet`, for a block that uses ``await`` at top level."""
    scope: dict[str, Any] = dict(values)
    result = eval(_compile(name), scope)
    if result is not None:
        await result
    return scope


def _connect_kwargs(query: dict[str, str]) -> dict[str, Any]:
    """``connect()`` arguments for a plan's query: ``model`` is a parameter, the rest extra."""
    extra = {k: v for k, v in query.items() if k != "model"}
    kwargs: dict[str, Any] = {"extra_query": extra} if extra else {}
    if "model" in query:
        kwargs["model"] = query["model"]
    return kwargs


def _sdk_send(conn: Any, event: dict[str, Any]) -> Any:
    """Send with the SDK's typed helper for the event (``conn.session.update(...)``...)."""
    kind = event.get("type")
    if not isinstance(kind, str):
        return conn.send(event)  # a deliberately malformed event: raw send
    fn = conn
    for part in kind.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            return conn.send(event)
    return fn(**{k: v for k, v in event.items() if k != "type"})


# --------------------------------------------------------------------------- following a plan
#
# One connection's plan over each kind of client API: a PlanMachine (or tests/faultclients.py's
# Watch, which also notes what the client saw) takes the received events and the end of the
# stream; these carry out its actions.


def _perform_sync(actions: list[Send | Close], send: Callable[[dict[str, Any]], Any]) -> bool:
    """Send the plan's events; True when the plan closes the connection."""
    for action in actions:
        if isinstance(action, Close):
            return True
        send(action.event)
    return False


async def _perform(actions: list[Send | Close], send: Callable[[dict[str, Any]], Awaitable[Any]]) -> bool:
    for action in actions:
        if isinstance(action, Close):
            return True
        await send(action.event)
    return False


def play(machine: PlanMachine, events: Iterable[Any], decode: Callable[[Any], dict[str, Any]],
         send: Callable[[dict[str, Any]], Any]) -> None:
    """Follow ``machine`` on a synchronous client: its first sends, then each of ``events``
    (the client's stream, ``decode`` making a server event of each), until the plan closes
    the connection (return: the caller's ``with`` closes it) or the stream ends
    (``machine.closed()``). An exception of the client's (a closed connection) propagates."""
    if _perform_sync(machine.start(), send):
        return
    for event in events:
        if _perform_sync(machine.receive(decode(event)), send):
            return
    machine.closed()


async def play_async(machine: PlanMachine, events: AsyncIterable[Any], decode: Callable[[Any], dict[str, Any]],
                     send: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
    """:func:`play` for an asyncio client (``async for`` over ``events``, ``await send``)."""
    if await _perform(machine.start(), send):
        return
    async for event in events:
        if await _perform(machine.receive(decode(event)), send):
            return
    machine.closed()


def to_dict(event: Any) -> dict[str, Any]:
    """The openai SDK's typed event as the dict it came as."""
    return event.to_dict()  # type: ignore[no-any-return]


def play_websocket_client(
    target: Target,
    machine: PlanMachine,
    on_close: Callable[[Any, Any], None],
    on_error: Callable[[BaseException], bool],
) -> None:
    """Run docs/clients.md's websocket-client ``WebSocketApp`` following ``machine``, until
    the app returns. ``on_close(code, reason)`` is told the close (a PlanError it raises is
    kept); ``on_error(error)`` says whether an error the app reports is a failure. The
    first error kept (a callback's, which the app would swallow) is raised at the end."""
    failures: list[BaseException] = []
    sockets: list[Any] = []

    def perform(ws: Any, actions: list[Send | Close]) -> None:
        if _perform_sync(actions, lambda event: ws.send(json.dumps(event))):
            ws.close()

    def opened(ws: Any) -> None:
        sockets.append(ws.sock)
        perform(ws, machine.start())

    def message(ws: Any, text: str) -> None:
        try:
            perform(ws, machine.receive(json.loads(text)))
        except BaseException as exc:  # the app swallows callback errors: keep them
            failures.append(exc)
            ws.close()

    def closed(ws: Any, code: Any, reason: Any) -> None:
        try:
            on_close(code, reason)
        except PlanError as exc:
            failures.append(exc)

    def errored(ws: Any, error: BaseException) -> None:
        if on_error(error):
            failures.append(error)

    snippet("websocket_client", server=target, on_open=opened, on_message=message,
            on_close=closed, on_error=errored)  # runs the app until it closes
    for sock in sockets:  # after a close by the server, websocket-client leaves its socket open
        if sock is not None:
            sock.shutdown()
    if failures:
        raise failures[0]


# --------------------------------------------------------------------------- openai (Python)


async def _run_async_sdk(realtime_for: Callable[[dict[str, Any]], Any], plan: Plan) -> Received:
    received: Received = []
    for spec in plan:
        machine = PlanMachine(spec["steps"])
        async with realtime_for(spec).connect(**_connect_kwargs(spec["query"])) as conn:
            await play_async(machine, conn, to_dict, functools.partial(_sdk_send, conn))
        received.append(machine.received)
    return received


async def openai_async(target: Target, plan: Plan) -> Received:
    """openai.AsyncOpenAI, ``client.realtime`` (GA) or ``client.beta.realtime`` (beta)."""
    client = snippet("openai_async", server=target)["client"]
    try:
        return await _run_async_sdk(lambda spec: client.beta.realtime if spec["beta"] else client.realtime, plan)
    finally:
        await client.close()


def _run_sync_sdk(realtime_for: Callable[[dict[str, Any]], Any], plan: Plan) -> Received:
    received: Received = []
    for spec in plan:
        machine = PlanMachine(spec["steps"])
        with realtime_for(spec).connect(**_connect_kwargs(spec["query"])) as conn:
            play(machine, conn, to_dict, functools.partial(_sdk_send, conn))
        received.append(machine.received)
    return received


def openai_sync(target: Target, plan: Plan) -> Received:
    """openai.OpenAI (synchronous), GA or beta."""
    client = snippet("openai_sync", server=target)["client"]
    with client:
        return _run_sync_sdk(lambda spec: client.beta.realtime if spec["beta"] else client.realtime, plan)


def azure(target: Target, plan: Plan) -> Received:
    """openai.AzureOpenAI: ``/openai/realtime?api-version=...&deployment=...`` and ``api-key``."""
    client = snippet("azure", server=target)["client"]
    with client:
        return _run_sync_sdk(lambda spec: client.realtime, plan)


# --------------------------------------------------------------------------- hand-written clients


def websocket_client(target: Target, plan: Plan) -> Received:
    """websocket-client's ``WebSocketApp``, synchronous, as the OpenAI connection guide writes it."""
    return [_websocket_client_connection(target, spec) for spec in plan]


def _websocket_client_connection(target: Target, spec: dict[str, Any]) -> list[dict[str, Any]]:
    assert spec["query"] == {"model": "gpt-realtime"} and not spec["beta"], "the snippet is GA, gpt-realtime"
    machine = PlanMachine(spec["steps"])

    def on_close(code: Any, reason: Any) -> None:
        if not machine.finished:
            machine.closed()

    def on_error(error: BaseException) -> bool:
        # A server's normal close reaches the app as an error too; on_close judges it.
        return type(error).__name__ != "WebSocketConnectionClosedException"

    play_websocket_client(target, machine, on_close, on_error)
    return machine.received


async def browser(target: Target, plan: Plan) -> Received:
    """What a browser does: no headers, the key in the ``openai-insecure-api-key.`` subprotocol."""
    received: Received = []
    for spec in plan:
        assert spec["query"] == {"model": "gpt-realtime"} and not spec["beta"], "the snippet is GA, gpt-realtime"
        machine = PlanMachine(spec["steps"])
        ws = (await async_snippet("browser", server=target, api_key=API_KEY))["ws"]
        async with ws:
            # A browser aborts unless the server picks one of the offered subprotocols.
            assert ws.subprotocol == "realtime", f"the server chose subprotocol {ws.subprotocol!r}"
            await play_async(machine, ws, json.loads, lambda event, ws=ws: ws.send(json.dumps(event)))
        received.append(machine.received)
    return received


# --------------------------------------------------------------------------- openai-agents


async def agents(target: Target, message: str = "Say hello in three words.") -> Received:
    """openai-agents: a RealtimeRunner session; returns the raw server events it got."""
    scope = snippet("agents", server=target)
    received: list[dict[str, Any]] = []
    async with await scope["runner"].run(model_config=scope["model_config"]) as session:
        events = aiter(session)
        sent = False
        while True:
            event = await asyncio.wait_for(anext(events), timeout(15))
            if event.type == "raw_model_event" and event.data.type == "raw_server_event":
                received.append(event.data.data)
                kind = event.data.data.get("type")
                # Talk once both of the SDK's own session.update were answered: it races
                # its second one (tracing) against whatever comes next otherwise.
                if kind == "session.updated" and not sent and sum(e.get("type") == kind for e in received) == 2:
                    sent = True
                    await session.send_message(message)
                if kind == "rate_limits.updated":
                    break
    return [received]


async def agents_model(
    target: Target,
    plan: Plan,
    *,
    skip_first_update: bool = False,
    raw_socket: bool = False,
    rejected: list[str] | None = None,
) -> Received:
    """openai-agents' OpenAIRealtimeWebSocketModel, sending a plan's events as raw messages.

    ``rejected`` collects the server events the SDK could not parse: it tells its listeners
    with an ``exception`` event, or an ``error`` event carrying the validation exception
    (an in-band Realtime ``error`` carries the API's error object instead). Read from the
    SDK's events, not from the wording of its log lines.

    The model sends its own ``session.update`` on connect; with ``skip_first_update`` it
    stands for the plan's first one (for a cassette that holds just one). With
    ``raw_socket``, the plan's events go straight onto the model's socket, past the SDK's
    own client logic (it defers a second ``response.create`` until the first is done, which
    a cassette of the racing pair cannot answer): for checking what the SDK makes of
    server events written for another client.
    """
    sink = rejected if rejected is not None else []
    return [await _agents_model_connection(target, spec, skip_first_update, raw_socket, sink) for spec in plan]


async def _agents_model_connection(
    target: Target, spec: dict[str, Any], skip_first_update: bool, raw_socket: bool, rejected: list[str]
) -> list[dict[str, Any]]:
    from agents.realtime.model_inputs import RealtimeModelSendRawMessage
    from agents.realtime.openai_realtime import OpenAIRealtimeWebSocketModel

    machine = PlanMachine(spec["steps"])
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    class Listener:
        async def on_event(self, event: Any) -> None:
            if event.type == "raw_server_event":
                queue.put_nowait(event.data)
            elif event.type == "exception" or (event.type == "error" and isinstance(event.error, Exception)):
                failure = getattr(event, "exception", None) or event.error
                rejected.append(f"{getattr(event, 'context', 'validation')}: {failure!r}"[:300])
            elif event.type == "connection_status" and event.status == "disconnected":
                queue.put_nowait(None)

    model = OpenAIRealtimeWebSocketModel()
    model.add_listener(Listener())
    await model.connect({
        "url": target.realtime_url(spec["query"]), "api_key": API_KEY,
        "initial_model_settings": {"tracing": None},
    })
    sent_update = not skip_first_update

    async def perform(actions: list[Send | Close]) -> bool:
        nonlocal sent_update
        for action in actions:
            if isinstance(action, Close):
                return True
            event = dict(action.event)
            if event.get("type") == "session.update" and not sent_update:
                sent_update = True  # the model sent its own on connect
                continue
            if raw_socket or not isinstance(event.get("type"), str):
                # The agents SDK cannot send an event without a type (errors.jsonl
                # records one on purpose); its socket can.
                await model._websocket.send(json.dumps(event))
                continue
            kind = event.pop("type")
            await model.send_event(RealtimeModelSendRawMessage(message={"type": kind, "other_data": event}))
        return False

    try:
        if not await perform(machine.start()):
            while True:
                item = await asyncio.wait_for(queue.get(), timeout(15))
                if item is None:
                    machine.closed()
                    break
                if await perform(machine.receive(item)):
                    break
    finally:
        await model.close()
    return machine.received


# --------------------------------------------------------------------------- Node clients


def node_available() -> str | None:
    """Why Node clients cannot run here, or ``None`` when they can.

    The first call installs the pinned Node packages (``npm ci``) when they are missing and
    npm is on the PATH, so the README's one test command needs no extra set-up step; a file
    lock keeps pytest-xdist workers from installing twice.
    """
    if (NODE_DIR / "node_modules").is_dir():
        return None
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "Node.js and npm are not installed: the Node clients cannot run"
    import fcntl

    with open(NODE_DIR / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (NODE_DIR / "node_modules").is_dir():
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR)],
                capture_output=True, text=True, timeout=timeout(600), check=False,
            )
            if done.returncode != 0:
                return f"`npm ci --prefix tests/node` failed: {done.stderr.strip()[-500:]}"
    return None


def _node_command() -> list[str]:
    """``node``, with the flag that enables its built-in WebSocket before Node 22."""
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
    major = int(version.strip().lstrip("v").split(".")[0])
    return ["node", "--experimental-websocket"] if major < 22 else ["node"]


def node(client: str, target: Target, plan: Plan, closes: list[Any] | None = None) -> Received:
    """Run ``tests/node/driver.mjs`` for ``client`` (ws, openai, browser or agents) on a plan.

    ``closes``, if given, gets how each connection ended: ``{"code", "reason"}`` when the
    server closed it first (1006: dropped), ``None`` when the client closed it.
    """
    server = {"url": target.url, "host": target.host, "port": target.port, "apiKey": API_KEY,
              "caFile": str(target.ca_file) if target.ca_file else None}
    proc = subprocess.run(
        [*_node_command(), str(NODE_DIR / "driver.mjs")],
        input=json.dumps({"client": client, "server": server, "plan": plan}),
        capture_output=True, text=True, timeout=timeout(60), cwd=NODE_DIR,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    if proc.returncode != 0:
        raise AssertionError(f"node driver {client!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    if closes is not None:
        closes.extend(result.get("closes", []))
    return result["received"]  # type: ignore[no-any-return]


def run_sync(fn: Callable[..., Received], *args: Any) -> Any:
    """Run a synchronous driver off the event loop (the servers may share the test's loop)."""
    return asyncio.to_thread(fn, *args)



