"""Ephemeral keys: a backend's ``POST .../client_secrets``, then a browser-style connection
with the ``ek_`` key, recorded through ``rtreplay record`` and replayed offline."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import msgspec
import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from rtreplay.cassette import HttpExchange, HttpRequest, HttpResponse
from rtreplay.client_secrets import PLACEHOLDER, HttpReplay, endpoint_of, with_placeholder
from rtreplay.codec import load
from rtreplay.server import ReplayServer
from rtreplay.validate import validate_cassette

from .clients import timeless
from .conftest import timeout
from .reliability.support import start_cli
from .upstream import ScriptedUpstream

BACKEND_KEY = "sk-proj-backendONLY0123456789abcdefXYZ"
UPSTREAM_KEY = BACKEND_KEY  # the API accepts the backend's key, and the keys it mints


async def backend_mints_a_key(base_url: str, *, translation: bool = False) -> Any:
    """The app's backend: asks for an ephemeral key with its own API key."""
    client = openai.AsyncOpenAI(api_key=BACKEND_KEY, base_url=base_url, max_retries=0)
    try:
        if translation:
            return await client.realtime.translations.client_secrets.create(
                session={"model": "gpt-realtime-translate", "audio": {"output": {"language": "es"}}})
        return await client.realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": 600},
            session={"type": "realtime", "model": "gpt-realtime", "output_modalities": ["text"]})
    finally:
        await client.close()


async def browser_session(websocket_base_url: str, key: str) -> list[dict[str, Any]]:
    """The page: connects with the key in a subprotocol, as a browser must, and chats."""
    subprotocols: Any = ["realtime", f"openai-insecure-api-key.{key}"]
    async with connect(websocket_base_url + "/realtime?model=gpt-realtime", subprotocols=subprotocols) as ws:
        assert ws.subprotocol == "realtime"
        got = [json.loads(await ws.recv())]
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello!"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        while got[-1]["type"] != "response.done":
            got.append(json.loads(await ws.recv()))
        return got


async def flow(http_base: str, ws_base: str) -> tuple[Any, list[dict[str, Any]]]:
    secret = await backend_mints_a_key(http_base)
    return secret, await browser_session(ws_base, secret.value)


async def test_the_browser_flow_records_with_no_key_and_replays_offline(tmp_path: Path) -> None:
    cassette = tmp_path / "browser.jsonl"
    async with ScriptedUpstream(api_key=UPSTREAM_KEY) as up:
        rec = await start_cli("record", "--out", str(cassette), "--upstream", up.websocket_base_url, "--quiet",
                              env={"OPENAI_API_KEY": ""})
        http_base = rec.websocket_base_url.replace("ws://", "http://")
        try:
            live_secret, recorded = await flow(http_base, rec.websocket_base_url)
        finally:
            code, _, err = await rec.stop()
        assert code == 0, err
        assert up.issued == [live_secret.value]  # the key came from the upstream, through the proxy
        assert up.handshakes[0].subprotocols[1] == f"openai-insecure-api-key.{live_secret.value}"
    assert "its ephemeral key recorded as a placeholder" in err
    assert live_secret.value not in err and BACKEND_KEY not in err

    # No key of any kind on disk: the backend's, nor the ephemeral one.
    text = cassette.read_text()
    assert BACKEND_KEY not in text and live_secret.value not in text
    saved = load(cassette)
    assert saved.header.format == 2
    [exchange] = saved.exchanges
    assert (exchange.request.method, exchange.request.path, exchange.response.status) == (
        "POST", "/v1/realtime/client_secrets", 200)
    assert exchange.request.headers["authorization"] == "Bearer REDACTED"
    body = json.loads(exchange.response.body())
    assert body["value"] == PLACEHOLDER and body["session"]["model"] == "gpt-realtime"
    assert saved.connections[0].open.subprotocol == "realtime"
    assert validate_cassette(cassette) == []

    # Offline: rtreplay serve answers the backend with a fresh key, and accepts the page's.
    server = await start_cli("serve", str(cassette))
    try:
        http_base = server.websocket_base_url.replace("ws://", "http://")
        before = time.time()
        secret, replayed = await flow(http_base, server.websocket_base_url)
        assert secret.value.startswith("ek_") and secret.value not in (PLACEHOLDER, live_secret.value)
        # Its expiry is the recorded 600 s from now, not from when it was recorded.
        assert before + 600 - 5 <= secret.expires_at <= time.time() + 600 + 5
        assert timeless(replayed) == timeless(recorded)
    finally:
        code, _, err = await server.stop()
    assert code == 0, err
    assert "POST /v1/realtime/client_secrets: HTTP 200" in err
    assert secret.value not in err


async def test_a_key_the_replay_did_not_issue_is_refused_and_reported(tmp_path: Path) -> None:
    cassette = tmp_path / "browser.jsonl"
    async with ScriptedUpstream(api_key=UPSTREAM_KEY) as up:
        async with _recorder(cassette, up) as rec:
            stale, _ = await flow(rec.base_url, rec.websocket_base_url)
    async with ReplayServer(cassette) as server:
        with pytest.raises(InvalidStatus) as info:
            await browser_session(server.websocket_base_url, stale.value)  # cached from another run
        secret = await backend_mints_a_key(server.base_url)
        await browser_session(server.websocket_base_url, secret.value)
    assert info.value.response.status_code == 401
    body = bytes(info.value.response.body or b"").decode()
    assert "an ephemeral key (ek_...) this replay did not issue" in body and stale.value not in body
    [refusal] = server.report.mismatches
    assert refusal.kind == "handshake" and "did not issue" in refusal.message
    assert server.report.complete, str(server.report)


def _recorder(cassette: Path, up: ScriptedUpstream) -> Any:
    from rtreplay.recorder import Recorder

    return Recorder(cassette, upstream=up.websocket_base_url)


async def test_translation_keys_and_calls_the_cassette_never_saw(tmp_path: Path) -> None:
    from .test_endpoints import needs_sdk_translations

    needs_sdk_translations()
    cassette = tmp_path / "translation-key.jsonl"
    async with ScriptedUpstream(api_key=UPSTREAM_KEY) as up, _recorder(cassette, up) as rec:
        recorded = await backend_mints_a_key(rec.base_url, translation=True)
        assert recorded.session.type == "translation"
    [exchange] = load(cassette).exchanges
    assert exchange.request.path == "/v1/realtime/translations/client_secrets"
    async with ReplayServer(cassette) as server:
        secret = await backend_mints_a_key(server.base_url, translation=True)
        assert secret.value.startswith("ek_") and secret.session.model == "gpt-realtime-translate"
        # A call the cassette never recorded: the API's error shape, and a mismatch.
        with pytest.raises(openai.NotFoundError) as info:
            await backend_mints_a_key(server.base_url)
        assert "the cassette recorded no POST /v1/realtime/client_secrets" in str(info.value)
        # A second translation key than the one recorded: a conflict, with what to do.
        with pytest.raises(openai.ConflictError) as conflict:
            await backend_mints_a_key(server.base_url, translation=True)
        assert "--repeat" in str(conflict.value)
    assert [m.kind for m in server.report.mismatches] == ["http", "http"]
    assert "HTTP request 1" in str(server.report)


async def test_a_browser_preflight_is_answered_for_the_page_origin(tmp_path: Path) -> None:
    import asyncio

    cassette = tmp_path / "k.jsonl"
    async with ScriptedUpstream(api_key=UPSTREAM_KEY) as up, _recorder(cassette, up) as rec:
        await backend_mints_a_key(rec.base_url)
    async with ReplayServer(cassette) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(
            b"OPTIONS /v1/realtime/client_secrets HTTP/1.1\r\nHost: x\r\nOrigin: http://app.test\r\n"
            b"Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n\r\n"
        )
        answer = (await asyncio.wait_for(reader.read(), timeout(10))).decode()
        writer.close()
    assert answer.startswith("HTTP/1.1 204 No Content\r\n")
    assert "access-control-allow-origin: http://app.test\r\n" in answer
    assert "access-control-allow-headers: authorization, content-type\r\n" in answer


# -- the Sans-I/O part ---------------------------------------------------------------------------------


def exchange(n: int, path: str = "/v1/realtime/client_secrets", **body: Any) -> HttpExchange:
    response = {"value": PLACEHOLDER, "expires_at": 1_800_000_600, "session": {"expires_at": 1_800_000_600}}
    return HttpExchange(
        n,
        HttpRequest("POST", path, json=msgspec.Raw(json.dumps(body or {"session": {"type": "realtime"}}).encode())),
        HttpResponse(200, {"content-type": "application/json"}, json=msgspec.Raw(json.dumps(response).encode())),
        started="2027-01-15T08:00:00.000Z",
    )


def post(path: str = "/v1/realtime/client_secrets", **body: Any) -> HttpRequest:
    return HttpRequest("POST", path, json=msgspec.Raw(json.dumps(body or {"session": {"type": "realtime"}}).encode()))


def test_each_call_gets_the_next_recorded_exchange_a_fresh_key_and_times_moved() -> None:
    replay = HttpReplay([exchange(0), exchange(1)], clock=lambda: 1_800_000_000 + 3600.0)
    first, second = replay.answer(post()), replay.answer(post())
    keys = [json.loads(a.response.body())["value"] for a in (first, second)]
    assert all(re.fullmatch(r"ek_[0-9a-f]{32}", k) for k in keys) and keys[0] != keys[1]
    assert replay.issued == set(keys) and replay.accepts(keys[0]) and not replay.accepts(PLACEHOLDER)
    # Recorded at 1,800,000,000 (2027-01-15T08:00Z) to expire 600 s later; replayed an hour on.
    body = json.loads(first.response.body())
    assert body["expires_at"] == body["session"]["expires_at"] == 1_800_000_000 + 3600 + 600
    assert (first.recorded, second.recorded) == (replay.exchanges[0], replay.exchanges[1])
    assert replay.served == [0, 1] and replay.unplayed == []
    assert replay.answer(post()).response.status == 409


def test_a_different_body_is_answered_and_its_differences_named() -> None:
    replay = HttpReplay([exchange(0, session={"type": "realtime", "model": "gpt-realtime"})], shift_times=False)
    answer = replay.answer(post(session={"type": "realtime", "model": "gpt-realtime-mini"}))
    assert answer.response.status == 200
    assert answer.problem is not None and "session.model: expected \"gpt-realtime\", got \"gpt-realtime-mini\"" in answer.problem


def test_endpoints_are_recognised_whatever_the_base_path() -> None:
    assert endpoint_of("/v1/realtime/client_secrets") == "/realtime/client_secrets"
    assert endpoint_of("/openai/v1/realtime/client_secrets") == "/realtime/client_secrets"
    assert endpoint_of("/v1/realtime/translations/client_secrets") == "/realtime/translations/client_secrets"
    assert endpoint_of("/v1/realtime/calls") is None and endpoint_of("/v1/files") is None


def test_the_placeholder_replaces_every_form_of_the_secret() -> None:
    body, found = with_placeholder(b'{"value":"ek_abc","expires_at":1,"session":{"client_secret":{"value":"ek_def"}}}')
    assert found == ["ek_abc"]
    body, found = with_placeholder(b'{"client_secret":{"value":"ek_beta","expires_at":1}}')
    assert found == ["ek_beta"] and json.loads(body)["client_secret"]["value"] == PLACEHOLDER
    assert with_placeholder(b"not json") == (b"not json", [])


# -- a real browser ------------------------------------------------------------------------------------

PAGE = """<!doctype html><meta charset="utf-8"><title>ephemeral key</title>
<script>
// The page a test drives: it gets its ephemeral key (here straight from the server under
// test, which answers browsers with CORS headers), then connects with the key in a
// subprotocol, as a browser must, and asks one question.
async function talk(httpBase, wsBase, apiKey) {
  const answer = await fetch(httpBase + "/realtime/client_secrets", {
    method: "POST",
    headers: {"Authorization": "Bearer " + apiKey, "Content-Type": "application/json"},
    body: JSON.stringify({session: {type: "realtime", model: "gpt-realtime", output_modalities: ["text"]}}),
  });
  const secret = await answer.json();
  const ws = new WebSocket(wsBase + "/realtime?model=gpt-realtime", ["realtime", "openai-insecure-api-key." + secret.value]);
  const events = [];
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("no connection")); });
  const done = new Promise(ok => {
    ws.onmessage = m => { const e = JSON.parse(m.data); events.push(e); if (e.type === "response.done") ok(); };
  });
  ws.send(JSON.stringify({type: "conversation.item.create", item: {type: "message", role: "user",
    content: [{type: "input_text", text: "Hello from the page!"}]}}));
  ws.send(JSON.stringify({type: "response.create"}));
  await done;
  ws.close();
  return {key: secret.value, expires_at: secret.expires_at, subprotocol: ws.protocol, events};
}
</script>"""


def test_a_browser_page_records_the_key_flow_and_replays_it_offline(tmp_path: Path) -> None:
    import os

    from rtreplay.recorder import Recorder

    from .browser import chromium_path, open_page

    chromium = chromium_path()
    if chromium is None:
        assert not os.environ.get("RTREPLAY_REQUIRE_CHROMIUM"), "RTREPLAY_REQUIRE_CHROMIUM is set, and no chromium is on the PATH"
        pytest.skip("no Chromium: apt-get install -y chromium (or set RTREPLAY_CHROMIUM); .ci/run installs it")
    page = tmp_path / "page.html"
    page.write_text(PAGE)
    cassette = tmp_path / "page.jsonl"

    def talk(browser: Any, service: Any) -> dict[str, Any]:
        call = f"talk({json.dumps(service.base_url)}, {json.dumps(service.websocket_base_url)}, {json.dumps(BACKEND_KEY)})"
        result: dict[str, Any] = browser.evaluate(call, await_promise=True)
        return result

    with open_page(chromium, page.as_uri()) as browser:
        with ScriptedUpstream(api_key=UPSTREAM_KEY).in_thread() as up, \
                Recorder(cassette, upstream=up.websocket_base_url).in_thread() as rec:
            recorded = talk(browser, rec)
        assert recorded["key"] in up.issued and recorded["subprotocol"] == "realtime"
        text = cassette.read_text()
        assert BACKEND_KEY not in text and recorded["key"] not in text and PLACEHOLDER in text

        with ReplayServer(cassette).in_thread() as server:  # offline: no upstream at all
            replayed = talk(browser, server)
            errors = browser.errors()
    assert replayed["key"].startswith("ek_") and replayed["key"] != recorded["key"]
    assert replayed["expires_at"] > time.time()
    assert timeless(replayed["events"]) == timeless(recorded["events"])
    assert server.report.ok and server.report.complete, str(server.report)
    assert errors == []
