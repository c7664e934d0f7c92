"""Client conformance: every real client, recorded through the Recorder, replayed by the ReplayServer.

For each client (driven by ``tests/conformance/clients.py`` with the lines of
``docs/clients.md``): a session is recorded through :class:`Recorder` against the scripted
upstream, then the new cassette is replayed to the same client, which must receive exactly
the events it received while recording. Each bundled cassette is replayed to the clients
whose frames it holds, and every GA bundled cassette to ``openai-agents``, whose strict
validation must not reject a single server event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rtreplay.codec import load
from rtreplay.recorder import Recorder
from rtreplay.server import ReplayServer
from rtreplay.validate import validate_cassette

from .clients import timeless
from .conformance import clients, plans
from .conformance.clients import API_KEY, Received, Target
from .conformance.tls import Certificate, make_certificate, openssl_missing
from .conftest import CASSETTES
from .upstream import ScriptedUpstream

Driver = Callable[[Target, plans.Plan], Awaitable[Received]]


def threaded(fn: Callable[[Target, plans.Plan], Received]) -> Driver:
    """A synchronous driver, run off the loop the servers share with the test."""
    return lambda target, plan: asyncio.to_thread(fn, target, plan)


def node(client: str) -> Driver:
    return lambda target, plan: asyncio.to_thread(clients.node, client, target, plan)


@dataclass(frozen=True)
class Case:
    id: str
    driver: Driver
    plan: plans.Plan
    node: bool = False
    tls: bool = False

    def __str__(self) -> str:
        return self.id


CASES = [
    Case("openai-async-text", clients.openai_async, plans.TEXT),
    Case("openai-async-tool", clients.openai_async, plans.TOOL),
    Case("openai-async-errors", clients.openai_async, plans.ERRORS),
    Case("openai-async-audio-vad", clients.openai_async, plans.audio_vad()),
    Case("openai-async-beta", clients.openai_async, plans.BETA_TEXT),
    Case("openai-sync-tool", threaded(clients.openai_sync), plans.TOOL),
    Case("openai-sync-beta", threaded(clients.openai_sync), plans.BETA_TEXT),
    Case("azure", threaded(clients.azure), plans.TEXT),
    Case("openai-agents-runner", lambda target, plan: clients.agents(target), plans.TEXT),
    Case("openai-agents-model-tool", clients.agents_model, plans.TOOL),
    Case("websocket-client", threaded(clients.websocket_client), plans.TOOL),
    Case("browser-subprotocols", clients.browser, plans.TEXT),
    Case("node-ws", node("ws"), plans.TOOL, node=True),
    Case("node-openai-wss", node("openai"), plans.TOOL, node=True, tls=True),
    Case("node-agents-realtime", node("agents"), plans.TEXT, node=True),
    Case("node-browser-websocket", node("browser"), plans.TEXT, node=True),
]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    missing = openssl_missing()
    if missing:
        pytest.skip(missing)
    return make_certificate(tmp_path_factory.mktemp("tls"))


def skip_without_node(case: Case) -> None:
    reason = clients.node_available() if case.node else None
    if reason:
        pytest.skip(reason)


async def record(case: Case, cassette: Path, cert: Certificate | None) -> tuple[Received, ScriptedUpstream]:
    ssl_context = cert.server_context() if cert else None
    upstream = ScriptedUpstream()
    async with upstream, Recorder(cassette, upstream=upstream.websocket_base_url, ssl_context=ssl_context) as recorder:
        received = await case.driver(Target(recorder, cert.cert if cert else None), case.plan)
    return received, upstream


async def replay(case: Case, cassette: Path, cert: Certificate | None) -> tuple[Received, ReplayServer]:
    server = ReplayServer(cassette, ssl_context=cert.server_context() if cert else None)
    async with server:
        received = await case.driver(Target(server, cert.cert if cert else None), case.plan)
    return received, server


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_recorded_session_replays_to_the_same_client_identically(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    skip_without_node(case)
    cert = request.getfixturevalue("certificate") if case.tls else None
    cassette = tmp_path / "session.jsonl"

    recorded, upstream = await record(case, cassette, cert)
    assert [len(conn) for conn in recorded] and all(recorded), "the client received nothing while recording"
    assert recorded[0][0]["type"] == "session.created"
    # What was recorded is a well-formed Realtime session, and holds no credential.
    assert validate_cassette(cassette) == []
    text = cassette.read_text()
    assert API_KEY not in text and "Bearer sk-test" not in text and "azure-test-key" not in text

    replayed, server = await replay(case, cassette, cert)
    server.check()  # every client event matched, every recorded one was sent
    assert timeless(replayed) == timeless(recorded)
    assert len(upstream.handshakes) == len(case.plan)


async def test_beta_clients_are_recorded_and_replayed_as_beta(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "openai-async-beta")
    recorded, upstream = await record(case, tmp_path / "beta.jsonl", None)
    assert upstream.handshakes[0].headers["openai-beta"] == "realtime=v1"
    assert load(tmp_path / "beta.jsonl").connections[0].open.protocol == "beta"
    assert "response.text.delta" in {e["type"] for e in recorded[0]}


async def test_azure_clients_reach_the_azure_path_with_an_api_key_header(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "azure")
    await record(case, tmp_path / "azure.jsonl", None)
    opened = load(tmp_path / "azure.jsonl").connections[0].open
    assert opened.path == "/openai/realtime"
    assert opened.query == {"api-version": "2025-04-01-preview", "deployment": "gpt-realtime"}
    assert opened.headers["api-key"] == "REDACTED"
    async with ReplayServer(tmp_path / "azure.jsonl") as server:
        await asyncio.to_thread(clients.azure, Target(server), case.plan)
    server.check()


async def test_browser_subprotocol_key_reaches_the_upstream_but_never_the_cassette(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "browser-subprotocols")
    _, upstream = await record(case, tmp_path / "browser.jsonl", None)
    assert f"openai-insecure-api-key.{API_KEY}" in upstream.handshakes[0].subprotocols
    opened = load(tmp_path / "browser.jsonl").connections[0].open
    assert opened.subprotocol == "realtime"
    assert API_KEY not in (tmp_path / "browser.jsonl").read_text()


# --------------------------------------------------------------------------- bundled cassettes


def recorded_server_events(name: str) -> list[list[dict[str, Any]]]:
    recorded = [[f.event() for f in conn.server_frames()] for conn in load(CASSETTES / name).connections]
    return timeless(recorded)  # type: ignore[no-any-return]


BUNDLED_CLIENTS: list[tuple[str, str, Driver]] = [
    *[(name, "openai-async", clients.openai_async) for name in plans.BUNDLED_FOR_PYTHON_SDK],
    ("beta-text", "openai-async-beta", clients.openai_async),
    ("beta-text", "openai-sync-beta", threaded(clients.openai_sync)),
    ("text-chat", "openai-sync", threaded(clients.openai_sync)),
    ("tool-call", "openai-sync", threaded(clients.openai_sync)),
    ("text-chat", "websocket-client", threaded(clients.websocket_client)),
    ("tool-call", "websocket-client", threaded(clients.websocket_client)),
    ("reconnect", "websocket-client", threaded(clients.websocket_client)),
    ("text-chat", "browser-subprotocols", clients.browser),
    ("text-chat", "node-ws", node("ws")),
    ("tool-call", "node-ws", node("ws")),
]


@pytest.mark.parametrize(("name", "client", "driver"), BUNDLED_CLIENTS, ids=[f"{n}-{c}" for n, c, _ in BUNDLED_CLIENTS])
async def test_a_bundled_cassette_replays_to_the_clients_it_was_written_for(name: str, client: str, driver: Driver) -> None:
    if client.startswith("node-") and clients.node_available():
        pytest.skip(clients.node_available() or "")
    async with ReplayServer(CASSETTES / f"{name}.jsonl") as server:
        received = await driver(Target(server), plans.bundled(name))
    server.check()
    assert timeless(received) == recorded_server_events(f"{name}.jsonl")


# interruption.jsonl is left out: the agents SDK truncates and cancels on speech_started
# by itself, an interruption the replay follows (tests/test_interruption.py), so what it
# receives is not what the recording holds.
GA_BUNDLED = sorted(
    p.name for p in CASSETTES.glob("*.jsonl")
    if all(c.open.protocol == "ga" for c in load(p).connections) and p.name != "interruption.jsonl"
)


@pytest.mark.parametrize("name", GA_BUNDLED)
async def test_every_ga_bundled_cassette_replays_to_openai_agents_without_a_validation_error(
    name: str
) -> None:
    # The agents model sends its own session.update on connect: match by type, as its
    # content is the SDK's default configuration, not the cassette's.
    async with ReplayServer(CASSETTES / name, match="type") as server:
        plan = plans.cassette_plan(CASSETTES / name)
        rejected: list[str] = []
        received = await clients.agents_model(
            Target(server), plan, skip_first_update=True, raw_socket=True, rejected=rejected
        )
    assert rejected == []
    # Every recorded server event reached the SDK's parser. The SDK also sends events of
    # its own that a cassette written for another client does not hold (it retrieves the
    # user's item after a transcription, truncates on speech_started): the replay answers
    # those with an rtreplay error event, left out here.
    ours = [[e for e in conn if e.get("error", {}).get("code") != "rtreplay_mismatch"] for conn in received]
    assert timeless(ours) == recorded_server_events(name), str(server.report)
    assert server.report.complete, str(server.report)


def test_there_is_a_bundled_cassette_for_every_kind_of_session() -> None:
    names = {p.stem for p in CASSETTES.glob("*.jsonl")}
    assert {"text-chat", "audio-vad-real", "tool-call", "errors-recoverable", "interruption",
            "transcription", "beta-text", "reconnect"} <= names
    assert load(CASSETTES / "beta-text.jsonl").connections[0].open.protocol == "beta"
    assert load(CASSETTES / "transcription.jsonl").connections[0].open.query == {"intent": "transcription"}
    assert len(load(CASSETTES / "reconnect.jsonl").connections) == 2
    interruption = [e["type"] for c in recorded_server_events("interruption.jsonl") for e in c]
    assert "conversation.item.truncated" in interruption
    cancelled = [e for c in recorded_server_events("interruption.jsonl") for e in c
                 if e["type"] == "response.done" and e["response"]["status"] == "cancelled"]
    assert cancelled and cancelled[0]["response"]["status_details"]["reason"] == "client_cancelled"
