"""Every Realtime endpoint records through ``rtreplay record`` and replays to real clients.

Live translation (``/v1/realtime/translations``), Azure Voice Live
(``/voice-live/realtime``) and an endpoint rtreplay does not know (``/v1/realtime/<name>``)
are recorded from the scripted upstream through the ``rtreplay record`` command, then
replayed (by ``rtreplay serve`` or a :class:`ReplayServer`) to clients that chunk their
audio differently from the recording.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import openai
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK

from rtreplay.codec import load
from rtreplay.protocol import GENERIC, TRANSLATION, VOICE_LIVE, profile_for
from rtreplay.server import ReplayServer
from rtreplay.validate import validate_cassette

from .clients import timeless
from .conftest import timeout
from .reliability.support import start_cli
from .upstream import ScriptedUpstream, pcm16_silence, pcm16_tone

KEY = "sk-proj-endpointsTEST0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def chunks(pcm: bytes, ms: int, bytes_per_ms: int = 48) -> list[str]:
    size = ms * bytes_per_ms
    return [base64.b64encode(pcm[i : i + size]).decode() for i in range(0, len(pcm), size)]


async def read_all(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every event until the server closes the connection."""
    got = []
    try:
        while True:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout(10))))
    except ConnectionClosedOK:
        return got


async def record(cassette: Path, upstream: str, client: Any) -> tuple[list[Any], str]:
    """Run ``client(websocket_base_url)`` through ``rtreplay record``; what it got, and
    what the command wrote on stderr."""
    rec = await start_cli("record", "--out", str(cassette), "--upstream", upstream, "--quiet",
                          env={"OPENAI_API_KEY": ""})
    try:
        got = await client(rec.websocket_base_url)
    finally:
        code, _, err = await rec.stop()
    assert code == 0, err
    return got, err


# -- live translation -------------------------------------------------------------------------------

SPEECH = pcm16_silence(100) + pcm16_tone(1300) + pcm16_silence(300)


async def translate_raw(base_url: str, chunk_ms: int) -> list[dict[str, Any]]:
    url = base_url + "/realtime/translations?model=gpt-realtime-translate"
    async with connect(url, additional_headers=HEADERS) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {
            "audio": {"input": {"transcription": {"model": "gpt-realtime-whisper"}}, "output": {"language": "es"}}}}))
        for audio in chunks(SPEECH, chunk_ms):
            await ws.send(json.dumps({"type": "session.input_audio_buffer.append", "audio": audio}))
        await ws.send(json.dumps({"type": "session.close"}))
        return await read_all(ws)


async def test_a_translation_session_records_and_replays_with_rechunked_audio(tmp_path: Path) -> None:
    cassette = tmp_path / "translation.jsonl"
    async with ScriptedUpstream() as up:
        recorded, _ = await record(cassette, up.websocket_base_url, lambda url: translate_raw(url, 100))
    types = [e["type"] for e in recorded]
    assert types[0] == "session.created" and types[-1] == "session.closed"
    assert {"session.input_transcript.delta", "session.output_transcript.delta", "session.output_audio.delta"} <= set(types)
    [conn] = load(cassette).connections
    assert conn.open.path == "/v1/realtime/translations" and conn.close is not None and conn.close.by == "server"
    assert profile_for(conn.open.path, conn.open.query) is TRANSLATION
    assert validate_cassette(cassette) == []  # the translation events are in the schema
    assert KEY not in cassette.read_text()

    server = await start_cli("serve", str(cassette), "--repeat")
    try:
        for chunk_ms in (40, 100, 330):  # the audio stream, chunked three other ways
            replayed = await translate_raw(server.websocket_base_url, chunk_ms)
            assert timeless(replayed) == timeless(recorded), f"{chunk_ms} ms chunks"
    finally:
        code, _, err = await server.stop()
    assert code == 0 and "mismatch" not in err.replace("0 mismatches", ""), err


def needs_sdk_translations() -> None:
    """Skip unless this openai has the translation client (``client.realtime.translations``,
    in recent releases only; rtreplay's own support needs no SDK)."""
    if not hasattr(openai.AsyncOpenAI(api_key="x").realtime, "translations"):
        pytest.skip(f"openai {openai.__version__} has no realtime.translations client yet")


async def test_a_translation_session_replays_to_the_openai_sdk(tmp_path: Path) -> None:
    needs_sdk_translations()
    cassette = tmp_path / "translation.jsonl"
    async with ScriptedUpstream() as up:
        recorded, _ = await record(cassette, up.websocket_base_url, lambda url: translate_raw(url, 100))
    async with ReplayServer(cassette) as server:
        client = openai.AsyncOpenAI(api_key="sk-test", websocket_base_url=server.websocket_base_url)
        got: list[dict[str, Any]] = []
        async with client.realtime.translations.connect(model="gpt-realtime-translate") as conn:
            await conn.session.update(session={
                "audio": {"input": {"transcription": {"model": "gpt-realtime-whisper"}}, "output": {"language": "es"}}})
            for audio in chunks(SPEECH, 250):
                await conn.session.input_audio_buffer.append(audio=audio)
            await conn.session.close()
            async for event in conn:
                got.append(event.model_dump(exclude_unset=True))
                if event.type == "session.closed":
                    break
        await client.close()
    server.check()
    assert timeless(got) == timeless(recorded)


# -- Azure Voice Live ----------------------------------------------------------------------------------

RATE_16K = 32  # bytes per ms of 16 kHz PCM16


async def voice_live(base_url: str, chunk_ms: int, trailing_ms: int = 0) -> list[dict[str, Any]]:
    root = base_url.removesuffix("/v1")
    url = f"{root}/voice-live/realtime?api-version=2025-10-01&model=gpt-realtime"
    speech = pcm16_tone(800)[: 800 * RATE_16K] + bytes((400 + trailing_ms) * RATE_16K)
    async with connect(url, additional_headers={"api-key": "azure-voice-live-key-0123"}) as ws:
        got = [json.loads(await ws.recv())]
        await ws.send(json.dumps({"type": "session.update", "session": {
            "input_audio_sampling_rate": 16000, "output_audio_timestamp_types": ["word"],
            "turn_detection": {"type": "azure_semantic_vad", "silence_duration_ms": 200},
            "voice": {"name": "en-US-Ava:DragonHDLatestNeural", "type": "azure-standard"}}}))
        for audio in chunks(speech, chunk_ms, RATE_16K):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        while got[-1]["type"] != "response.done":
            got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout(10))))
        return got


async def test_a_voice_live_session_records_and_replays_at_its_own_sampling_rate(tmp_path: Path) -> None:
    cassette = tmp_path / "voice-live.jsonl"
    async with ScriptedUpstream(require_auth=False) as up:
        upstream = up.websocket_base_url.removesuffix("/v1") + "/voice-live"
        recorded, _ = await record(cassette, upstream, lambda url: voice_live(url, 100))
    types = [e["type"] for e in recorded]
    assert "response.audio.delta" in types and "response.audio_timestamp.delta" in types
    assert "input_audio_buffer.speech_started" in types
    [conn] = load(cassette).connections
    assert conn.open.path == "/voice-live/realtime" and conn.open.query["api-version"] == "2025-10-01"
    assert profile_for(conn.open.path, conn.open.query) is VOICE_LIVE
    assert "azure-voice-live-key-0123" not in cassette.read_text()

    # Replayed with the audio in other chunks, and 100 ms (of 16 kHz audio) short at the end.
    async with ReplayServer(cassette, repeat=True) as server:
        for chunk_ms in (60, 240):
            assert timeless(await voice_live(server.websocket_base_url, chunk_ms)) == timeless(recorded)
        replayed = await voice_live(server.websocket_base_url, 100, trailing_ms=-100)
    assert timeless(replayed) == timeless(recorded)
    assert server.report.ok, str(server.report)
    [note] = server.report.audio
    # Measured at the session's 16 kHz: 100 ms, not the 67 ms the same bytes hold at 24 kHz.
    assert round(note.expected_ms - note.got_ms) == 100, str(note)


# -- an endpoint rtreplay does not know -----------------------------------------------------------------


async def future_endpoint(base_url: str) -> list[dict[str, Any]]:
    async with connect(base_url + "/realtime/future?model=gpt-next", additional_headers=HEADERS) as ws:
        got = [json.loads(await ws.recv())]
        for kind in ("session.begin", "input.append", "session.end"):
            await ws.send(json.dumps({"type": kind, "data": kind.upper()}))
            got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout(10))))
        return got


async def test_an_unknown_realtime_endpoint_records_and_replays_in_order_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cassette = tmp_path / "future.jsonl"
    async with ScriptedUpstream() as up:
        recorded, err = await record(cassette, up.websocket_base_url, future_endpoint)
    assert [e["type"] for e in recorded] == ["hello", "session.begin.ack", "input.append.ack", "session.end.ack"]
    assert "/v1/realtime/future is not an endpoint rtreplay knows" in err
    [conn] = load(cassette).connections
    assert profile_for(conn.open.path, conn.open.query) is GENERIC

    with caplog.at_level("WARNING", logger="rtreplay.server"):
        async with ReplayServer(cassette) as server:
            replayed = await future_endpoint(server.websocket_base_url)
    assert replayed == recorded
    assert server.report.ok and server.report.complete, str(server.report)
    assert any("/v1/realtime/future is not an endpoint rtreplay knows" in w for w in server.report.warnings)
    assert "/v1/realtime/future is not an endpoint rtreplay knows" in caplog.text
    assert "/v1/realtime/future is not an endpoint rtreplay knows" in str(server.report)


async def test_a_client_at_another_endpoint_is_refused_naming_what_was_recorded(tmp_path: Path) -> None:
    from websockets.exceptions import InvalidStatus

    cassette = tmp_path / "translation.jsonl"
    async with ScriptedUpstream() as up:
        await record(cassette, up.websocket_base_url, lambda url: translate_raw(url, 100))
    async with ReplayServer(cassette) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(server.url + "?model=gpt-realtime", additional_headers=HEADERS)
    assert info.value.response.status_code == 404
    body = bytes(info.value.response.body or b"").decode()
    assert "no connection to /v1/realtime (the Realtime conversation endpoint)" in body
    assert "/v1/realtime/translations (the Realtime translation endpoint)" in body
