"""The sandwich: a relay recorded once between a real client and the API, then tested offline
with a replay on each side of it.

1. Record: the openai SDK -> the relay -> ``rtreplay record`` -> the (scripted) API.
2. Replay: ``rtreplay drive`` -> the relay -> ``rtreplay serve``, both from that cassette.
   A relay that forwards passes, even at ``exact`` strictness; one that drops an event is
   caught, the event named with its cassette line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from rtreplay.drive import Drive
from rtreplay.recorder import Recorder
from rtreplay.server import ReplayServer

from .relay import Relay
from .upstream import ScriptedUpstream

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


async def a_client_session(websocket_base_url: str) -> list[str]:
    """What an app does through the relay: a question, a tool call answered, a reply."""
    client = openai.AsyncOpenAI(api_key="sk-the-apps-own-key-000", websocket_base_url=websocket_base_url)
    seen: list[str] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "tools": [WEATHER]})
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Umbrella in Paris?"}]}
        )
        await conn.response.create()
        responses = 0
        async for event in conn:
            seen.append(event.type)
            if event.type == "response.output_item.done" and event.item.type == "function_call":
                await conn.conversation.item.create(
                    item={"type": "function_call_output", "call_id": event.item.call_id, "output": '{"sky": "rain"}'}
                )
            elif event.type == "response.done":
                responses += 1
                if responses == 1:
                    await conn.response.create()
                else:
                    break
    return seen


@pytest.fixture
async def recorded(tmp_path: Path) -> Path:
    """The cassette of one session recorded with the relay in the middle."""
    cassette = tmp_path / "relay.jsonl"
    async with ScriptedUpstream() as api:
        async with Recorder(cassette, upstream=api.websocket_base_url) as recorder:
            async with Relay(recorder.websocket_base_url) as relay:
                seen = await a_client_session(relay.websocket_base_url)
    assert "response.function_call_arguments.done" in seen  # the recording holds a tool call
    return cassette


async def sandwich(cassette: Path, **relay: Any) -> tuple[Any, Any]:
    async with ReplayServer(cassette) as replay:
        async with Relay(replay.websocket_base_url, **relay) as r:
            report = await Drive(cassette, r.url, match="exact", speed=0).run()
        return report, replay.report


async def test_a_relay_that_forwards_passes_the_sandwich_exactly(recorded: Path) -> None:
    driven, served = await sandwich(recorded)
    assert driven.ok, driven
    assert served.ok and served.complete, served
    (progress,) = driven.connections
    assert progress.matched == progress.expected_total
    assert progress.clients_sent == progress.clients_total == 5


async def test_a_relay_that_drops_an_event_is_caught(recorded: Path) -> None:
    driven, _ = await sandwich(recorded, drop={"response.function_call_arguments.done"})
    assert [m.kind for m in driven.mismatches] == ["missing"]
    (m,) = driven.mismatches
    assert "response.function_call_arguments.done" in m.message
    assert m.line > 0 and f"{recorded}:{m.line}" in str(driven)
    line = recorded.read_text().splitlines()[m.line - 1]
    assert '"response.function_call_arguments.done"' in line
