"""Beta cassettes migrated to the GA shapes replay to GA clients and validate clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from rtreplay.codec import load, save
from rtreplay.migrate import migrate_cassette, migrate_event, migrate_session
from rtreplay.server import ReplayServer
from rtreplay.validate import validate_cassette

from .clients import timeless
from .conftest import CASSETTES


def test_rtreplay_migrate_rewrites_in_place_and_says_what_it_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtreplay.cli import main

    path = tmp_path / "beta.jsonl"
    path.write_bytes(BETA.read_bytes())
    assert main(["migrate", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"{path}: 1 beta connection(s) now GA: 18 events renamed, 7 reshaped, 2 conversation.item.done "
        "added; validate: ok\n"
    )
    assert load(path).connections[0].open.protocol == "ga"
    assert main(["migrate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: every connection is GA already; nothing to migrate\n"
    out = tmp_path / "ga.jsonl"
    assert main(["migrate", str(BETA), "--out", str(out)]) == 0
    assert load(out).connections[0].open.protocol == "ga" and load(BETA).connections[0].open.protocol == "beta"

BETA = CASSETTES / "beta-text.jsonl"


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    path = tmp_path / "beta-text.jsonl"
    save(migrate_cassette(load(BETA)).cassette, path)
    return path


def test_the_bundled_beta_cassette_migrates_to_a_ga_cassette_that_validates(migrated: Path) -> None:
    [warning] = validate_cassette(BETA, warnings=True)
    assert warning.message.startswith("recorded with the beta protocol")
    assert validate_cassette(migrated, warnings=True) == []  # no problem, and no beta warning
    [conn] = load(migrated).connections
    assert conn.open.protocol == "ga" and "openai-beta" not in conn.open.headers
    types = [json.loads(f.payload())["type"] for f in conn.frames]
    assert "response.output_text.delta" in types and "response.text.delta" not in types
    # GA's item lifecycle: added, then done once the item is complete.
    assert types.count("conversation.item.added") == types.count("conversation.item.done") == 2
    assert types.index("conversation.item.done", types.index("response.output_item.done")) == (
        types.index("response.output_item.done") + 1
    )


async def test_the_migrated_cassette_replays_to_the_ga_openai_sdk(migrated: Path) -> None:
    recorded = [json.loads(f.payload()) for f in load(migrated).connections[0].server_frames()]  # type: ignore[arg-type]
    async with ReplayServer(migrated) as server:
        client = openai.AsyncOpenAI(api_key="sk-test", websocket_base_url=server.websocket_base_url)
        got: list[dict[str, Any]] = []
        async with client.realtime.connect(model="gpt-4o-realtime-preview-2025-06-03") as conn:
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                               "instructions": "Reply with a JSON object and nothing else."})
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Define the word 'pending'."}]})
            await conn.response.create()
            async for event in conn:
                got.append(event.model_dump(exclude_unset=True))
                if event.type == "rate_limits.updated":
                    break
        await client.close()
    server.check()
    assert timeless(got) == timeless(recorded)
    text = "".join(e["delta"] for e in got if e["type"] == "response.output_text.delta")
    assert json.loads(text) == {"word": "pending", "meaning": "awaiting a decision or completion"}


async def test_the_migrated_cassette_passes_the_strict_openai_agents_parser(migrated: Path) -> None:
    from .conformance import clients, plans
    from .conformance.clients import Target

    async with ReplayServer(migrated, match="type") as server:
        rejected: list[str] = []
        await clients.agents_model(Target(server), plans.cassette_plan(migrated), skip_first_update=True,
                                   raw_socket=True, rejected=rejected)
    assert rejected == []


def test_sessions_take_the_ga_shape() -> None:
    beta = {
        "id": "sess_1", "object": "realtime.session", "modalities": ["text", "audio"], "voice": "alloy",
        "input_audio_format": "g711_ulaw", "output_audio_format": "pcm16", "speed": 1.1,
        "input_audio_transcription": {"model": "whisper-1"}, "input_audio_noise_reduction": None,
        "turn_detection": {"type": "server_vad"}, "temperature": 0.8, "max_response_output_tokens": 400,
        "client_secret": None, "tools": [], "instructions": "Be brief.",
    }
    assert migrate_session(beta) == {
        "type": "realtime", "id": "sess_1", "object": "realtime.session", "output_modalities": ["audio"],
        "max_output_tokens": 400, "tools": [], "instructions": "Be brief.",
        "audio": {
            "input": {"format": {"type": "audio/pcmu"}, "transcription": {"model": "whisper-1"},
                      "noise_reduction": None, "turn_detection": {"type": "server_vad"}},
            "output": {"voice": "alloy", "format": {"type": "audio/pcm", "rate": 24000}, "speed": 1.1},
        },
    }
    update = migrate_event({"type": "transcription_session.update", "session": {"input_audio_format": "pcm16"}})
    assert update == {"type": "session.update",
                      "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}}}


def test_responses_and_items_take_the_ga_shape() -> None:
    create = migrate_event({"type": "response.create", "response": {"modalities": ["text"], "voice": "echo", "temperature": 1}})
    assert create == {"type": "response.create", "response": {"output_modalities": ["text"], "audio": {"output": {"voice": "echo"}}}}
    done = migrate_event({"type": "response.output_item.done", "item": {
        "object": "realtime.item", "role": "assistant", "content": [{"type": "audio", "transcript": "Hi"}]}})
    assert done["item"] == {"role": "assistant", "content": [{"type": "output_audio", "transcript": "Hi"}]}
    user = migrate_event({"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_text", "text": "x"}]}})
    assert user["item"]["content"] == [{"type": "input_text", "text": "x"}]
    assert migrate_event({"type": "response.audio_transcript.delta", "delta": "a"})["type"] == "response.output_audio_transcript.delta"


def test_ga_connections_are_left_as_they_are() -> None:
    ga = load(CASSETTES / "text-chat.jsonl")
    result = migrate_cassette(ga)
    assert result.connections == 0 and result.cassette.connections == ga.connections
