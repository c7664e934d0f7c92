"""rtreplay.strategies: the laws of replays() and sessions().

Every variant of every bundled cassette is a valid cassette (rtreplay's own validator), keeps
what a client reads out of it (the concatenated text, transcripts, arguments and audio
bytes, every ``*.done`` event, the client's side), and a correct client (the openai SDK, or
a bare websockets client where the SDK cannot go) collects the same from it over a real
socket. Shrinking ends at the recording. Generated sessions validate and say what they hold.

The default run draws a few examples per cassette; ``pytest -m slow`` draws many more.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from rtreplay import Cassette, load, save
from rtreplay.cli import main as cli
from rtreplay.protocol import REALTIME, STREAMS, profile_for
from rtreplay.server import ReplayServer
from rtreplay.strategies import Variant, replays, sessions, variant
from rtreplay.validate import validate_records

from . import reference
from .conftest import CASSETTES

BUNDLED = sorted(p.relative_to(CASSETTES).as_posix() for p in CASSETTES.rglob("*.jsonl"))
#: Examples per cassette in the default run, and behind the ``slow`` marker.
FEW, MANY = 6, 60
FAST = settings(max_examples=FEW, deadline=None, suppress_health_check=[HealthCheck.too_slow])
THOROUGH = settings(max_examples=MANY, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def errors(cassette: Cassette) -> list[str]:
    """What ``rtreplay validate`` finds wrong in ``cassette`` (its errors, not warnings)."""
    records = ((None, r) for r in cassette.records())
    return [str(p) for p in validate_records(records) if p.severity == "error"]


def _event(payload: Any) -> dict[str, Any]:
    event = json.loads(payload)
    assert isinstance(event, dict)
    return event


def reading(cassette: Cassette) -> list[dict[str, Any]]:
    """Per connection, what a client reads that no variant may change: the streams'
    concatenated content (audio as bytes), the ``*.done`` events and every other server
    event byte for byte (independent events as a multiset, the rest in order), the client's
    side in order, and how it ended."""
    out = []
    for conn in cassette.connections:
        profile = profile_for(conn.open.path, conn.open.query) or REALTIME
        streams: dict[tuple[Any, ...], Any] = {}
        ordered: list[str] = []
        independent: Counter[str] = Counter()
        client: list[str] = []
        for frame in conn.frames:
            payload = frame.payload()
            assert isinstance(payload, str)
            if frame.dir == "client":
                client.append(payload)
                continue
            event = _event(payload)
            stream = STREAMS.get(event["type"])
            if stream is not None and event["type"] not in profile.asynchronous:
                key = (event["type"], *(event.get(k) for k in stream.key))
                piece = event[stream.field]
                if stream.content == "audio":
                    streams[key] = streams.get(key, b"") + base64.b64decode(piece, validate=True)
                else:
                    streams[key] = streams.get(key, "") + piece
            elif event["type"] in profile.asynchronous:
                independent[payload] += 1
            else:
                ordered.append(payload)
        close = conn.close
        out.append(
            {
                "streams": streams,
                "server events in order (deltas aside)": ordered,
                "independent events": independent,
                "client": client,
                "close": None if close is None else (close.code, close.reason, close.by),
                "reject": conn.reject,
            }
        )
    return out


def changed(v: Variant, recording: Cassette) -> bool:
    return [c.frames for c in v.connections] != [c.frames for c in recording.connections]


# -- every variant validates and keeps what a client reads ------------------------------------------


@pytest.mark.parametrize("name", BUNDLED)
def test_every_variant_validates_and_keeps_what_a_client_reads(name: str) -> None:
    recording = load(CASSETTES / name)
    assert errors(recording) == []
    expected = reading(recording)
    seen: list[bool] = []

    @FAST
    @given(replays(CASSETTES / name))
    def law(v: Variant) -> None:
        assert errors(v) == []
        assert reading(v) == expected
        for conn in v.connections:
            times = [f.t for f in conn.frames]
            assert times == sorted(times) and all(t >= 0 for t in times)
            if conn.close is not None and times:
                assert conn.close.t >= times[-1]
        seen.append(changed(v, recording))

    law()
    if not any(seen):
        # The law holds on variants, not only on the recording itself: a changed one, found.
        found = find(replays(CASSETTES / name), lambda v: changed(v, recording), settings=settings(database=None))
        assert errors(found) == [] and reading(found) == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_many_variants_validate_and_keep_what_a_client_reads(name: str) -> None:
    recording = load(CASSETTES / name)
    expected = reading(recording)

    @THOROUGH
    @given(replays(CASSETTES / name))
    def law(v: Variant) -> None:
        assert errors(v) == []
        assert reading(v) == expected

    law()


def test_a_saved_variant_passes_rtreplay_validate_and_loads_back(tmp_path: Path) -> None:
    # The command a user runs, on the file a user keeps.
    v = variant(
        CASSETTES / "text-chat.jsonl",
        chunks={(0, 11): [[1, 2, 3, 65]]},
        jitter={0: (1.0, 7)},
    )
    path = tmp_path / "regression.jsonl"
    save(v, path)
    done = subprocess.run(
        [sys.executable, "-m", "rtreplay", "validate", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert reading(load(path)) == reading(v)
    assert [c.frames for c in load(path).connections] == [c.frames for c in v.connections]


def test_the_repr_of_a_variant_rebuilds_it() -> None:
    # What hypothesis prints for a falsifying example is code that gives the example back.
    @FAST
    @given(replays(CASSETTES / "audio-server-vad.jsonl"))
    def law(v: Variant) -> None:
        again = eval(repr(v), {"variant": variant})
        assert [c.frames for c in again.connections] == [c.frames for c in v.connections]
        assert again.faults == v.faults

    law()


def test_the_repr_of_a_variant_of_a_scripted_session_is_the_script_that_rebuilds_it() -> None:
    # It was variant(<scripted session>, ...): not code, so the note's advice could not be run.
    from rtreplay.scripted import ScriptedSession
    from rtreplay.strategies import _keep_note

    s = ScriptedSession(seed=1)
    s.user_text("Weather in Lima?")
    s.reply_text("Foggy and 61°F in Lima, with a chance of drizzle later.")

    @FAST
    @given(replays(s.cassette(), faults=["drop"]))
    def law(v: Variant) -> None:
        *script, last = repr(v).splitlines()
        assert last.startswith("variant(s.cassette()")
        names: dict[str, Any] = {"ScriptedSession": ScriptedSession, "variant": variant}
        exec("\n".join(script), names)
        again = eval(last, names)
        assert [c.frames for c in again.connections] == [c.frames for c in v.connections]
        assert again.faults == v.faults
        assert f"rtreplay.save({last}, 'tests/cassettes/regression.jsonl')" in _keep_note(v)

    law()


# -- a correct client collects the same from every variant --------------------------------------


def _client(cassette: Cassette) -> Callable[..., Any]:
    return reference.openai_sdk if reference.sdk_reaches(cassette) else reference.raw_websockets


async def _replay(cassette: Cassette, client: Callable[..., Any]) -> list[reference.Collected]:
    async with ReplayServer(cassette, faults=getattr(cassette, "faults", ())) as server:
        got: list[reference.Collected] = await client(server, cassette)
    server.check()  # the client sent what was recorded, and the replay played it all
    return got


@pytest.mark.parametrize("name", BUNDLED)
def test_a_correct_client_collects_the_same_from_every_variant(name: str) -> None:
    recording = load(CASSETTES / name)
    client = _client(recording)
    expected = asyncio.run(_replay(recording, client))
    assert any(c.streams or c.responses or c.errors for c in expected)

    @FAST
    @given(replays(CASSETTES / name))
    def law(v: Variant) -> None:
        assert asyncio.run(_replay(v, client)) == expected

    law()


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_a_correct_client_collects_the_same_from_many_variants(name: str) -> None:
    recording = load(CASSETTES / name)
    client = _client(recording)
    expected = asyncio.run(_replay(recording, client))

    @THOROUGH
    @given(replays(CASSETTES / name))
    def law(v: Variant) -> None:
        assert asyncio.run(_replay(v, client)) == expected

    law()


def test_a_raw_websockets_client_collects_the_same_as_the_sdk() -> None:
    # The two reference clients agree, so either one stands for "a correct client".
    recording = load(CASSETTES / "audio-server-vad.jsonl")
    sdk = asyncio.run(_replay(recording, reference.openai_sdk))
    raw = asyncio.run(_replay(recording, reference.raw_websockets))
    assert [c.streams for c in sdk] == [c.streams for c in raw]
    assert [len(c.responses) for c in sdk] == [len(c.responses) for c in raw]


# -- shrinking ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["text-chat.jsonl", "audio-server-vad.jsonl", "parallel-tools.jsonl"])
def test_shrinking_ends_at_the_recording(name: str) -> None:
    recording = load(CASSETTES / name)
    # A property that holds only for the recording: hypothesis finds it, as the simplest draw.
    found = find(
        replays(CASSETTES / name),
        lambda v: not changed(v, recording),
        settings=settings(database=None, max_examples=50),
    )
    assert not changed(found, recording) and found.changes == ()
    assert repr(found) == f"variant({str(CASSETTES / name)!r})"


def _server_events(v: Cassette) -> list[dict[str, Any]]:
    return [_event(f.payload()) for c in v.connections for f in c.frames if f.dir == "server"]


def test_shrinking_a_client_that_wants_whole_words_ends_at_one_recut() -> None:
    # A client that takes each text delta for a whole word (captions joined with spaces)
    # reads every recording right whose deltas happen to be words: the example hypothesis
    # reports re-cuts exactly one run of deltas, nothing else.
    def garbled(v: Variant) -> bool:
        events = _server_events(v)
        words = " ".join(e["delta"].strip() for e in events if e["type"] == "response.output_text.delta")
        [done] = [e["text"] for e in events if e["type"] == "response.output_text.done"]
        return words != done

    path = CASSETTES / "text-response.jsonl"
    assert not garbled(load(path))
    found = find(replays(path), garbled, settings=settings(database=None))
    assert len(found.changes) == 1 and "re-cut" in found.changes[0], found.changes
    assert "jitter" not in repr(found) and "moves" not in repr(found)


def test_shrinking_a_client_that_ends_at_rate_limits_ends_at_the_nearest_move() -> None:
    # A client that takes rate_limits.updated for the end of the reply (it comes last in
    # the recording) misses the text after it: the example hypothesis reports moves that
    # one event to the nearest place that breaks the client, before the last delta.
    def cut_short(v: Variant) -> bool:
        text = ""
        for e in _server_events(v):
            if e["type"] == "rate_limits.updated":
                break
            if e["type"] == "response.output_text.delta":
                text += e["delta"]
        return not text.endswith("people assume.")

    path = CASSETTES / "text-chat.jsonl"
    assert not cut_short(load(path))
    found = find(replays(path), cut_short, settings=settings(database=None))
    assert repr(found) == f"variant({str(path)!r}, moves={{(0, 32): 26}})"
    assert found.changes == ("connection 0: rate_limits.updated (frame 32) moved before frame 26 (response.output_text.delta)",)


# -- independent events and faults ------------------------------------------------------------------


def test_independent_events_move_only_where_their_cause_allows() -> None:
    path = CASSETTES / "transcription.jsonl"
    recording = load(path)
    orders: set[tuple[str, ...]] = set()

    @FAST
    @given(replays(path, rechunk=False, jitter=False))
    def law(v: Variant) -> None:
        assert errors(v) == []
        assert reading(v) == reading(recording)
        kinds = [_event(f.payload())["type"] for f in v.connections[0].frames if f.dir == "server"]
        orders.add(tuple(kinds))
        # A transcription's delta never follows its own completed event.
        for item in {_event(f.payload()).get("item_id") for f in v.connections[0].frames if f.dir == "server"}:
            mine = [
                _event(f.payload())["type"]
                for f in v.connections[0].frames
                if f.dir == "server" and _event(f.payload()).get("item_id") == item
                and "input_audio_transcription" in _event(f.payload())["type"]
            ]
            if "conversation.item.input_audio_transcription.completed" in mine:
                assert mine[-1] == "conversation.item.input_audio_transcription.completed"

    law()


def test_a_move_the_cause_table_forbids_is_refused() -> None:
    recording = load(CASSETTES / "text-chat.jsonl")
    [limits] = [
        i for i, f in enumerate(recording.connections[0].frames)
        if f.dir == "server" and _event(f.payload())["type"] == "rate_limits.updated"
    ][-1:]
    with pytest.raises(ValueError, match="may go before frames"):
        variant(CASSETTES / "text-chat.jsonl", moves={(0, limits): 0})


def test_bad_edits_are_refused_with_what_was_wrong() -> None:
    path = CASSETTES / "text-chat.jsonl"
    with pytest.raises(ValueError, match="no run of deltas starting at frame 1"):
        variant(path, chunks={(0, 1): [[3]]})
    with pytest.raises(ValueError, match="adding up to"):
        variant(path, chunks={(0, 11): [[1, 1]]})
    with pytest.raises(ValueError, match="no connection 5"):
        variant(path, chunks={(5, 11): [[1]]})
    with pytest.raises(ValueError, match="jitter amount"):
        variant(path, jitter={0: (2.0, 1)})
    with pytest.raises(ValueError, match="max_faults"):
        replays(path, max_faults=-1)
    # A placed fault the recording has no place for is refused when the strategy is made,
    # not reported by every example that draws it as if hypothesis had found something.
    with pytest.raises(ValueError, match=r"can never fire: .* has 1 nonexistent.event server event"):
        replays(path, faults=["drop@after:nonexistent.event"])
    with pytest.raises(ValueError, match=r"can never fire: .* has 9 response.created server events"):
        replays(path, faults=["drop", "close:1011@before:response.created#9"])


def test_variants_with_faults_fire_them_against_a_client() -> None:
    path = CASSETTES / "text-chat.jsonl"
    fired: list[str] = []

    @FAST
    @given(replays(path, faults=["error:server_error", "close:1011"], max_faults=1).filter(lambda v: bool(v.faults)))
    def law(v: Variant) -> None:
        assert errors(v) == []
        assert len(v.faults) == 1 and v.faults[0].what in ("error", "close")

        async def run() -> None:
            async with ReplayServer(v, faults=v.faults) as server:
                # The reference client plays the recording: a close ends it early.
                with contextlib.suppress(ConnectionClosed):
                    await reference.raw_websockets(server, v)
            assert [f.fault for f in server.report.faults] == [str(f) for f in v.faults]
            fired.append(str(v.faults[0]))

        asyncio.run(run())

    law()
    assert fired


# -- sessions() and the scripted builder ---------------------------------------------------------------


@FAST
@given(sessions())
def test_every_generated_session_validates_and_holds_what_it_says(s: Any) -> None:
    assert errors(s) == []
    got = asyncio.run(_replay(s, reference.openai_sdk))
    [collected] = got
    assert len(collected.responses) == len(s.responses)

    def streamed(kind: str, response_id: str) -> Any:
        pieces = [v for k, v in collected.streams.items() if k[0] == kind and k[1] == response_id]
        return b"".join(pieces) if kind == "response.output_audio.delta" else "".join(pieces)

    for r in s.responses:
        if r.text is not None:
            assert streamed("response.output_text.delta", r.id) == r.text
        if r.transcript is not None:
            assert streamed("response.output_audio_transcript.delta", r.id) == r.transcript
            assert streamed("response.output_audio.delta", r.id) == r.audio
    calls = [(name, call_id, arguments) for r in s.responses for call_id, name, arguments in r.calls]
    assert collected.calls == calls
    assert collected.errors == [e if e != "server_error" else None for e in s.errors]
    assert [status for status, _, _ in collected.responses] == [r.status for r in s.responses]


@FAST
@given(sessions(), st.data())
def test_variants_of_a_generated_session_replay_the_same(s: Any, data: st.DataObject) -> None:
    v = data.draw(replays(s))
    assert errors(v) == []
    assert reading(v) == reading(s)


def test_the_script_of_a_session_writes_it_again() -> None:
    from rtreplay.scripted import ScriptedSession

    @FAST
    @given(sessions(turns=(1, 4)))
    def law(s: Any) -> None:
        namespace: dict[str, Any] = {"ScriptedSession": ScriptedSession}
        *steps, last = s.script.splitlines()
        exec("\n".join(steps), namespace)
        again = eval(last, namespace)
        assert [c.frames for c in again.connections] == [c.frames for c in s.connections]

    law()


def test_sessions_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="kinds are some of"):
        sessions(kinds=["text", "poetry"])
    with pytest.raises(ValueError, match="turns is"):
        sessions(turns=(3, 1))
    with pytest.raises(ValueError, match="at least one tool"):
        sessions(kinds=["function"], tools={})
    # Plain values where strategies go are refused now, not when hypothesis draws them.
    with pytest.raises(TypeError, match="text is a strategy of str"):
        sessions(text="hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tools maps a function name to the strategy of its arguments"):
        sessions(tools={"get_weather": {"location": "Lima"}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="turns is"):
        sessions(turns=(1.5, 2))  # type: ignore[arg-type]


def test_a_saved_generated_session_passes_rtreplay_validate(tmp_path: Path) -> None:
    @settings(max_examples=3, deadline=None)
    @given(sessions(kinds=["audio", "vad", "error"]))
    def law(s: Any) -> None:
        path = tmp_path / "generated.jsonl"
        save(s, path)
        assert cli(["validate", str(path)]) == 0
        path.unlink()

    law()


def test_only_rtreplay_strategies_imports_hypothesis() -> None:
    # `import rtreplay` (and the plugin, and the scripted builder) stays cheap.
    code = (
        "import sys, rtreplay, rtreplay.scripted, rtreplay.server, pytest_rtreplay.plugin\n"
        "assert 'hypothesis' not in sys.modules, sorted(m for m in sys.modules if 'hypothesis' in m)\n"
        "import rtreplay.strategies as s\n"
        "assert 'hypothesis' in sys.modules and all(hasattr(s, n) for n in s.__all__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_missing_cassette_fails_when_the_strategy_is_made(tmp_path: Path) -> None:
    from rtreplay import CassetteNotFoundError

    with pytest.raises(CassetteNotFoundError, match=r"nope\.jsonl"):
        replays(tmp_path / "nope.jsonl")


def test_a_variant_of_a_scripted_session_keeps_its_responses_errors_and_script() -> None:
    from rtreplay.scripted import ScriptedSession

    s = ScriptedSession(seed=5)
    s.update_session(output_modalities=["text"])
    s.user_text("What is the capital of Australia?")
    s.reply_text("Canberra, not Sydney.")
    s.error("response_cancel_not_active")
    scripted = s.cassette()
    v = variant(scripted, jitter={0: (0.5, 1)}, faults=["drop@after:response.done"])
    assert [r.text for r in v.responses] == ["Canberra, not Sydney."] and v.responses == scripted.responses
    assert v.errors == ["response_cancel_not_active"] and v.script == scripted.script
    v.responses[0].text = "changed"
    assert scripted.responses[0].text == "Canberra, not Sydney.", "the variant has its own copy"
    again = variant(v)  # a variant of the variant keeps them too
    assert (again.responses[0].text, again.errors, again.script) == ("changed", v.errors, scripted.script)
    recorded = variant(CASSETTES / "text-chat.jsonl")
    assert (recorded.responses, recorded.errors, recorded.script) == ([], [], "")

    @settings(max_examples=5, deadline=None)
    @given(replays(scripted))
    def every(example: Variant) -> None:
        assert example.responses == scripted.responses and example.errors == scripted.errors

    every()
