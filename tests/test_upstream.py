"""The scripted upstream behaves like the Realtime API as PROTOCOL.md describes it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from .upstream import Fault, Refusal, ScriptedUpstream, pcm16_silence, pcm16_tone

KEY = {"Authorization": "Bearer sk-test-upstream-0000"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


async def until(ws: ClientConnection, last: str) -> list[dict[str, Any]]:
    """Events received up to and including the first of type ``last``."""
    events = []
    while True:
        event = json.loads(await ws.recv())
        events.append(event)
        if event["type"] == last:
            return events


def user(text: str) -> str:
    return json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


async def test_ga_text_response_lifecycle() -> None:
    async with ScriptedUpstream() as up, connect(up.url + "?model=gpt-realtime", additional_headers=KEY) as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "session.created" and first["session"]["type"] == "realtime"
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}))
        await ws.send(user("Say hello"))
        await ws.send(json.dumps({"type": "response.create"}))
        types = [e["type"] for e in await until(ws, "rate_limits.updated")]
    assert types[:3] == ["session.updated", "conversation.item.added", "conversation.item.done"]
    assert types[3:8] == ["response.created", "response.output_item.added", "conversation.item.added",
                          "response.content_part.added", "response.output_text.delta"]
    assert types[-6:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "conversation.item.done", "response.done", "rate_limits.updated"]
    assert [e["type"] for e in up.events()] == ["session.update", "conversation.item.create", "response.create"]
    assert up.handshakes[0].query == {"model": "gpt-realtime"} and up.handshakes[0].protocol == "ga"


async def test_beta_names_and_audio() -> None:
    headers = {**KEY, "OpenAI-Beta": "realtime=v1"}
    async with ScriptedUpstream(audio_deltas=2) as up, connect(up.url, additional_headers=headers) as ws:
        await ws.recv()
        await ws.send(user("Hi"))
        await ws.send(json.dumps({"type": "response.create"}))
        events = await until(ws, "response.done")
    types = [e["type"] for e in events]
    assert types[0] == "conversation.item.created"
    assert types.count("response.audio.delta") == 2 and "response.audio_transcript.done" in types
    assert not any(t.startswith("response.output_") and "item" not in t for t in types)
    assert up.handshakes[0].protocol == "beta"
    assert len(next(e for e in events if e["type"] == "response.audio.delta")["delta"]) == 6400


async def test_function_call_then_answer_quotes_the_output() -> None:
    async with ScriptedUpstream() as up, connect(up.url, additional_headers=KEY) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["text"], "tools": [WEATHER]}}))
        await ws.send(user("What's the weather in San Francisco?"))
        await ws.send(json.dumps({"type": "response.create"}))
        events = await until(ws, "response.done")
        done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        assert done["name"] == "get_weather" and json.loads(done["arguments"]) == {"location": "San Francisco"}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": done["call_id"], "output": "foggy"}}))
        await ws.send(json.dumps({"type": "response.create"}))
        answer = await until(ws, "response.output_text.done")
    assert answer[-1]["text"] == "The tool said: foggy"


async def test_server_vad_turn() -> None:
    async with ScriptedUpstream() as up, connect(up.url, additional_headers=KEY) as ws:
        await ws.recv()
        for chunk in (pcm16_silence(100), pcm16_tone(400), pcm16_silence(300)):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}))
        events = await until(ws, "response.done")
    types = [e["type"] for e in events]
    assert types[:5] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                         "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    assert events[0]["audio_start_ms"] == 0 and events[1]["audio_end_ms"] == 800
    assert "response.output_audio.delta" in types


async def test_errors_leave_the_session_open() -> None:
    async with ScriptedUpstream() as up, connect(up.url, additional_headers=KEY) as ws:
        await ws.recv()
        await ws.send(json.dumps({"event_id": "c1", "response": {}}))
        await ws.send("not json")
        await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "c2"}))
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
        events = await until(ws, "session.updated")
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert [(e["code"], e["event_id"]) for e in errors] == [
        ("invalid_event", "c1"), ("invalid_json", None), ("input_audio_buffer_commit_empty", "c2")]


@pytest.mark.parametrize("status", [401, 404, 429, 500])
async def test_refusal(status: int) -> None:
    async with ScriptedUpstream(refuse=status) as up:
        with pytest.raises(InvalidStatus) as info:
            await connect(up.url, additional_headers=KEY)
    assert info.value.response.status_code == status
    assert json.loads(info.value.response.body)["error"]["message"]
    assert up.handshakes[0].refused == status


async def test_missing_key_and_unknown_model() -> None:
    async with ScriptedUpstream(models={"gpt-realtime"}, refuse=None) as up:
        with pytest.raises(InvalidStatus) as no_key:
            await connect(up.url)
        with pytest.raises(InvalidStatus) as bad_model:
            await connect(up.url + "?model=nope", additional_headers=KEY)
        up.refuse = Refusal(403, '{"error": "custom"}')
        with pytest.raises(InvalidStatus) as custom:
            await connect(up.url, additional_headers=KEY)
    assert no_key.value.response.status_code == 401
    assert bad_model.value.response.status_code == 404
    assert b"model_not_found" in bad_model.value.response.body
    assert custom.value.response.body == b'{"error": "custom"}'


async def test_faults_drop_and_close() -> None:
    async with ScriptedUpstream(fault=Fault("response.output_text.delta", "drop", conn=0)) as up:
        async with connect(up.url, additional_headers=KEY) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}}))
            with pytest.raises(ConnectionClosedError) as dropped:
                await until(ws, "response.done")
        assert dropped.value.rcvd is None  # no close frame: a drop
        up.fault = Fault("session.created", "close", code=1011, reason="boom")
        async with connect(up.url, additional_headers=KEY) as ws:
            with pytest.raises(ConnectionClosedError) as closed:
                await until(ws, "never")
        assert closed.value.rcvd is not None and (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, "boom")


def test_in_thread_and_wait_for_sync() -> None:
    from websockets.sync.client import connect as sync_connect

    with ScriptedUpstream().in_thread() as up, sync_connect(up.url, additional_headers=KEY) as ws:
        assert json.loads(ws.recv())["type"] == "session.created"
        ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        up.wait_for_sync("input_audio_buffer.clear")
        assert json.loads(ws.recv())["type"] == "input_audio_buffer.cleared"
