"""rtreplay.scripted: sessions written without recording validate and replay to real clients."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from rtreplay import load, save
from rtreplay.cli import main as cli
from rtreplay.scripted import ERRORS, ScriptedCassette, ScriptedSession, split_text
from rtreplay.server import ReplayServer
from rtreplay.validate import validate_records

from . import reference


def errors(cassette: ScriptedCassette) -> list[str]:
    return [str(p) for p in validate_records((None, r) for r in cassette.records()) if p.severity == "error"]


def kinds(cassette: ScriptedCassette, direction: str = "server") -> list[str]:
    return [json.loads(f.payload())["type"] for f in cassette.connections[0].frames if f.dir == direction]


def every_step() -> ScriptedCassette:
    s = ScriptedSession(seed=3, session={"audio": {"input": {"transcription": {"model": "whisper-1"}}}})
    s.update_session(output_modalities=["audio"], tools=[{"type": "function", "name": "get_weather"}])
    s.user_text("What is the weather in Paris?")
    call = s.reply_function_call("get_weather", {"city": "Paris"})
    s.function_output(call, {"temperature_c": 14, "sky": "light rain"})
    s.reply_audio("Take an umbrella: it's 14°C with light rain.", 1.2)
    s.user_audio(0.8, transcript="And tomorrow?")
    s.reply_audio("Sunny tomorrow.", cancel_after=1)
    s.error("response_cancel_not_active")
    s.error("server_error")
    s.user_text("Thanks!")
    s.reply_text("You're welcome.", deltas=["You", "'re ", "welcome."])
    return s.cassette()


def test_a_session_with_every_step_validates_and_says_what_it_holds(tmp_path: Path) -> None:
    c = every_step()
    assert errors(c) == []
    path = tmp_path / "scripted.jsonl"
    save(c, path)
    assert cli(["validate", str(path)]) == 0
    assert [r.status for r in c.responses] == ["completed", "completed", "cancelled", "completed"]
    assert c.responses[0].calls[0][1:] == ("get_weather", '{"city":"Paris"}')
    assert c.responses[2].transcript == "".join(split_text("Sunny tomorrow.")[:1])
    assert c.responses[3].text == "You're welcome."
    assert c.errors == ["response_cancel_not_active", "server_error"]
    server = kinds(c)
    assert server[0] == "session.created"
    assert "input_audio_buffer.speech_started" in server and "input_audio_buffer.committed" in server
    assert "conversation.item.input_audio_transcription.completed" in server
    assert server.count("response.done") == 4 and server.count("rate_limits.updated") == 4
    # The server's VAD created the third response: the client sent no response.create for it.
    assert kinds(c, "client").count("response.create") == 3
    assert "response.cancel" in kinds(c, "client")


def test_the_openai_sdk_reads_a_scripted_session_as_scripted() -> None:
    c = every_step()

    async def run() -> list[reference.Collected]:
        async with ReplayServer(c) as server:
            got: list[reference.Collected] = await reference.openai_sdk(server, c)
        server.check()
        return got

    [got] = asyncio.run(run())
    assert [status for status, _, _ in got.responses] == [r.status for r in c.responses]
    audio = [v for k, v in got.streams.items() if k[0] == "response.output_audio.delta"]
    assert audio == [r.audio for r in c.responses if r.audio]
    assert got.calls == [("get_weather", c.responses[0].calls[0][0], '{"city":"Paris"}')]
    assert got.errors == ["response_cancel_not_active", None]


def test_the_same_seed_and_steps_write_the_same_cassette() -> None:
    assert every_step().connections == every_step().connections
    other = ScriptedSession(seed=4)
    other.user_text("hi")
    first = ScriptedSession(seed=3)
    first.user_text("hi")
    assert other.cassette().connections != first.cassette().connections


def test_without_turn_detection_the_client_commits_and_asks() -> None:
    s = ScriptedSession(session={"audio": {"input": {"turn_detection": None}}})
    s.user_audio(0.5)
    s.reply_text("Heard you.")
    c = s.cassette()
    assert errors(c) == []
    client = kinds(c, "client")
    assert client[-2:] == ["input_audio_buffer.commit", "response.create"]
    assert "input_audio_buffer.speech_started" not in kinds(c)


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_every_preset_error_validates(code: str) -> None:
    s = ScriptedSession()
    s.error(code)
    c = s.cassette()
    assert errors(c) == []
    events = [json.loads(f.payload()) for f in c.connections[0].frames if f.dir == "server"]
    [error] = [e for e in events if e["type"] == "error"]
    assert error["error"]["code"] == (None if code == "server_error" else code)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (lambda s: s.reply_text("a", deltas=["b"]), "add up to"),
        (lambda s: s.reply_text("abc", cancel_after=5), "cancel_after"),
        (lambda s: s.function_output("call_nope", "{}"), "no function call"),
        (lambda s: s.user_audio(b"\x00"), "whole 16-bit samples"),
        (lambda s: s.user_audio(-1), "number of seconds"),
        (lambda s: s.close(by="nobody"), "'client' or 'server'"),
        (lambda s: s.close(code=99999), "close code 99999 cannot be sent"),
        (lambda s: s.close(code=1000, reason="x" * 200), "close reason is 200 bytes"),
        (lambda s: s.reply_audio("hi", 0.5, audio_deltas=[10]), "audio_deltas"),
    ],
)
def test_a_step_the_protocol_does_not_allow_is_refused(step: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        step(ScriptedSession())


def test_nothing_follows_a_close_and_a_vad_turn_wants_its_reply() -> None:
    s = ScriptedSession()
    s.user_audio(0.3)
    with pytest.raises(ValueError, match="script its reply"):
        s.user_text("too early")
    s.reply_text("ok")
    s.close(by="server", code=1011, reason="bye")
    with pytest.raises(ValueError, match="closed"):
        s.user_text("after the end")
    close = s.cassette().connections[0].close
    assert close is not None and (close.by, close.code) == ("server", 1011)


def test_the_script_is_the_python_that_wrote_it(tmp_path: Path) -> None:
    c = every_step()
    namespace: dict[str, Any] = {"ScriptedSession": ScriptedSession}
    *steps, last = c.script.splitlines()
    exec("\n".join(steps), namespace)
    again = eval(last, namespace)
    assert again.connections == c.connections
    assert repr(c) == c.script
    save(c, tmp_path / "x.jsonl")
    assert load(tmp_path / "x.jsonl").connections[0].frames == c.connections[0].frames


def test_a_session_field_the_api_lacks_is_refused_by_name() -> None:
    s = ScriptedSession(seed=1)
    before = list(s.cassette().records())
    with pytest.raises(ValueError, match=r"update_session: session has no field 'output_modality' \(did you mean 'output_modalities'\?\)") as caught:
        s.update_session(output_modality=["text"])
    assert "output_modalities, model, instructions, audio" in str(caught.value)
    with pytest.raises(ValueError, match=r"session.audio.input.turn_detection has no field 'silence_duration'"):
        s.update_session({"audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration": 300}}}})
    with pytest.raises(ValueError, match=r"session.audio has no field 'voice' \(the GA session has it as session.audio.output.voice\).*: input, output"):
        s.update_session(audio={"voice": "ash"})
    with pytest.raises(ValueError, match=r"ScriptedSession\(session=...\): session has no field 'instruction'"):
        ScriptedSession(session={"instruction": "Be brief."})
    # Code written for the beta API (flat fields) is told where GA keeps each one, and a
    # field put at the wrong depth where it belongs.
    beta = {
        "voice": "session has no field 'voice' (beta's name: the GA session has it as session.audio.output.voice)",
        "modalities": "(beta's name: the GA session has it as session.output_modalities)",
        "input_audio_format": "(beta's name: the GA session has it as session.audio.input.format, an object such as",
        "turn_detection": "(beta's name: the GA session has it as session.audio.input.turn_detection)",
        "max_response_output_tokens": "(beta's name: the GA session has it as session.max_output_tokens)",
        "temperature": "(a beta session field, which the GA session does not have)",
    }
    for name, said in beta.items():
        with pytest.raises(ValueError) as caught:
            s.update_session(**{name: None})
        assert said in str(caught.value), str(caught.value)
    with pytest.raises(ValueError, match=r"session.audio has no field 'format' \(the GA session has it as session.audio.input.format or session.audio.output.format\)"):
        s.update_session(audio={"format": {"type": "audio/pcm", "rate": 24000}})
    assert list(s.cassette().records()) == before, "a refused update writes nothing"
    # Every field the schema has is taken, at every depth; a null turn detection too.
    s.update_session(
        output_modalities=["text"], instructions="Be brief.", tools=[], tool_choice="auto", max_output_tokens=200,
        tracing=None, truncation="auto", prompt=None, include=None, parallel_tool_calls=True,
        audio={"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}, "noise_reduction": None},
               "output": {"voice": "ash", "speed": 1.1}},
    )
    s.update_session({"audio": {"input": {"turn_detection": None}}})
    assert errors(s.cassette()) == []


@pytest.mark.skipif(not (Path(__file__).parents[2] / "shared" / "realtime").is_dir(), reason="shared/realtime is not beside the repo")
def test_the_session_fields_are_the_published_schemas() -> None:
    from rtreplay.scripted import SESSION_FIELDS

    schema = json.loads((Path(__file__).parents[2] / "shared" / "realtime" / "events.schema.json").read_text())
    defs = schema["$defs"]
    assert set(SESSION_FIELDS) == set(defs["RealtimeSessionCreateRequestGA"]["properties"])
    audio = defs["RealtimeSessionCreateRequestGA"]["properties"]["audio"]["properties"]
    assert set(SESSION_FIELDS["audio"]["input"]) == set(audio["input"]["properties"])
    assert set(SESSION_FIELDS["audio"]["output"]) == set(audio["output"]["properties"])
    # The beta names update_session explains are beta's, and where it sends them GA has.
    from rtreplay.scripted import _BETA_SESSION_FIELDS, _places

    beta = json.loads((Path(__file__).parents[2] / "shared" / "realtime" / "events-beta.schema.json").read_text())
    assert set(_BETA_SESSION_FIELDS) <= set(beta["$defs"]["RealtimeSessionCreateRequest"]["properties"])
    ga_places = {place for _, place in _places(SESSION_FIELDS)}
    assert {p for p in _BETA_SESSION_FIELDS.values() if p is not None} <= ga_places
