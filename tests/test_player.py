"""The replay player with plain values: messages and clock values in, actions out."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtreplay import Cassette, Close, Connection, Frame, Header, Open, load
from rtreplay._index import CassetteIndex, IndexedConnection, ServerFrame
from rtreplay.match import MatchPolicy
from rtreplay.player import (
    Action,
    CloseConnection,
    Player,
    Send,
    SendError,
)
from rtreplay.report import ReplayReport
from rtreplay.timeline import Ending, Timeline

from .clients import FIRST_ANSWER, timeless
from .conftest import CASSETTES

# -- building recordings -------------------------------------------------------------------


def S(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return "server", {"type": kind, "event_id": f"event_{kind}_{len(fields)}", **fields}


def C(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return "client", {"type": kind, **fields}


def audio(n: int, byte: int = 0) -> str:
    return base64.b64encode(bytes([byte]) * n).decode()


def recording(
    *steps: tuple[str, Any], close: Close | None = None
) -> tuple[CassetteIndex, IndexedConnection]:
    frames = []
    for i, (direction, event) in enumerate(steps):
        message = event if isinstance(event, (str, bytes)) else json.dumps(event)
        frames.append(Frame.from_message(0, i * 0.1, direction, message))  # type: ignore[arg-type]
    cassette = Cassette(Header(), [Connection(Open(0), frames, close)])
    index = CassetteIndex.from_cassette(cassette)
    return index, index.connections[0]


class Run:
    """A player, a clock, and everything the player asked to send, decoded."""

    def __init__(self, index: CassetteIndex, conn: IndexedConnection, **options: Any) -> None:
        self.index = index
        self.report = ReplayReport("test", index.connections)
        self.player = Player(conn, report=self.report, source=index, **options)
        self.now = 0.0
        self.actions: list[Action] = []
        self.out: list[Any] = []
        self.player.connect(0.0)
        self.poll(0.0)

    def poll(self, now: float | None = None) -> list[Any]:
        """Advance the clock to ``now`` and collect what is due."""
        if now is not None:
            self.now = now
        new: list[Any] = []
        for a in self.player.poll(self.now):
            self.actions.append(a)
            if isinstance(a, Send):
                for data, text in a.messages():
                    try:
                        new.append(json.loads(data) if text else data)
                    except ValueError:
                        new.append(data.decode())
            elif isinstance(a, SendError):
                new.append(json.loads(a.message))
            else:
                new.append(a)
        self.out.extend(new)
        return new

    def send(self, event: Any, now: float | None = None) -> list[Any]:
        """The client sends ``event`` at ``now`` (default: a millisecond later)."""
        self.now = self.now + 0.001 if now is None else now
        message = event if isinstance(event, (str, bytes)) else json.dumps(event)
        self.player.receive(message, self.now)
        return self.poll()

    def wait(self) -> list[Any]:
        """Let the clock run to the player's next deadline, and collect what is due."""
        deadline = self.player.next_deadline()
        assert deadline is not None, "the player has nothing left to do on its own"
        return self.poll(max(self.now, deadline))

    def types(self, items: list[Any] | None = None) -> list[str]:
        items = self.out if items is None else items
        return [i["type"] if isinstance(i, dict) else type(i).__name__ for i in items]


TEXT = (
    S("session.created", session={"id": "sess_1"}),
    C("session.update", session={"type": "realtime", "instructions": "Be brief."}),
    S("session.updated", session={"id": "sess_1"}),
    C(
        "conversation.item.create",
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    ),
    C("response.create"),
    S("conversation.item.added", item={"id": "item_U1"}),
    S("response.created", response={"id": "resp_1"}),
    S("response.output_text.delta", response_id="resp_1", item_id="item_A1", delta="Hello"),
    S("response.done", response={"id": "resp_1"}),
)


def test_frames_before_the_first_client_event_go_out_on_connect() -> None:
    run = Run(*recording(*TEXT))
    assert run.types() == ["session.created"]


def test_a_replay_of_the_recording_gets_every_server_frame_in_order() -> None:
    run = Run(*recording(*TEXT))
    run.send(TEXT[1][1])
    assert run.types()[-1] == "session.updated"
    run.send(TEXT[3][1])
    # The item's answer goes out at once; the response waits for response.create.
    assert run.types()[-1] == "conversation.item.added"
    run.send(TEXT[4][1])
    assert run.types() == [e["type"] for d, e in TEXT if d == "server"]
    assert run.report.ok and run.report.complete


def test_key_order_spacing_and_event_id_do_not_matter() -> None:
    run = Run(*recording(*TEXT))
    run.send(
        '{"session": {"instructions": "Be brief.", "type": "realtime"}, "event_id": "evt_42", "type": "session.update"}'
    )
    assert run.report.ok
    assert run.types()[-1] == "session.updated"


def test_content_mismatch_answers_with_an_error_event_and_counts_the_step() -> None:
    run = Run(*recording(*TEXT))
    new = run.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "instructions": "Be long."},
            "event_id": "evt_9",
        }
    )
    assert run.types(new) == ["error", "session.updated"]
    error = new[0]["error"]
    assert error["code"] == "rtreplay_mismatch" and error["event_id"] == "evt_9"
    assert error["param"] == "session.instructions"
    [m] = run.report.mismatches
    assert m.kind == "content" and m.index == 0 and m.turn == 1
    assert str(m.differences[0]) == 'session.instructions: expected "Be brief.", got "Be long."'


def test_unexpected_event_is_not_consumed() -> None:
    run = Run(*recording(*TEXT))
    new = run.send({"type": "input_audio_buffer.clear"})
    assert run.types(new) == ["error"]
    assert "expected session.update, got input_audio_buffer.clear" in new[0]["error"]["message"]
    run.send(TEXT[1][1])
    assert run.types()[-1] == "session.updated"
    assert [m.kind for m in run.report.mismatches] == ["unexpected"]


def test_text_that_is_not_json_and_binary_frames() -> None:
    index, conn = recording(
        S("session.created"),
        ("client", "ping?"),
        ("server", "pong!"),
        ("client", b"\x00\x01"),
        ("server", b"\x02"),
    )
    run = Run(index, conn)
    assert run.send("ping?") == ["pong!"]
    assert run.types(run.send(b"\x00\x01")) == ["bytes"]
    assert run.report.ok
    run2 = Run(*recording(S("session.created"), ("client", "ping?"), ("server", "pong!")))
    assert run2.send({"type": "x"})[0]["error"]["message"].endswith("expected text frame, got x")
    new = run2.send("pong?")  # a text frame of other content: that step, with an error
    assert new[0]["type"] == "error" and new[1:] == ["pong!"]
    assert [m.kind for m in run2.report.mismatches] == ["unexpected", "content"]


# -- IDs ------------------------------------------------------------------------------------------

FUNCTION_CALL = load(CASSETTES / "function-call.jsonl")


def _client_events(cassette: Cassette) -> list[Any]:
    return [f.event() for f in cassette.connections[0].frames if f.dir == "client"]


def test_function_call_round_trip_echoes_the_call_id_handed_out() -> None:
    index = CassetteIndex.from_cassette(FUNCTION_CALL)
    run = Run(index, index.connections[0])
    for event in _client_events(FUNCTION_CALL):
        run.send(event)
    assert run.report.ok and run.report.complete


def test_wrong_call_id_is_an_id_mismatch() -> None:
    index = CassetteIndex.from_cassette(FUNCTION_CALL)
    run = Run(index, index.connections[0])
    events = _client_events(FUNCTION_CALL)
    for event in events[:3]:
        run.send(event)
    output = json.loads(json.dumps(events[3]))
    output["item"]["call_id"] = "call_somethingElse"
    new = run.send(output)
    assert run.types(new)[0] == "error"
    [m] = run.report.mismatches
    assert m.kind == "id"
    assert (
        "expected 'call_9Q9eysr6LstYMEx6', the ID the replay handed out, got 'call_somethingElse'"
        in str(m)
    )


# -- parallel tool calls ----------------------------------------------------------------------------

PARALLEL = load(CASSETTES / "parallel-tools.jsonl")


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=str)
def test_parallel_tool_outputs_replay_in_any_order(order: tuple[int, ...]) -> None:
    index = CassetteIndex.from_cassette(PARALLEL)
    run = Run(index, index.connections[0])
    events = _client_events(PARALLEL)
    outputs = [e for e in events if e.get("item", {}).get("type") == "function_call_output"]
    assert len(outputs) == 3
    first, last = events[: events.index(outputs[0])], events[events.index(outputs[-1]) + 1 :]
    for event in first:
        run.send(event)
    for k in order:
        run.send(outputs[k])
    for event in last:
        run.send(event)
    assert run.report.ok and run.report.complete, str(run.report)
    assert run.report.reorderings == []  # tool outputs come back in any order: nothing to note
    recorded = [f.event() for f in PARALLEL.connections[0].frames if f.dir == "server"]
    assert timeless(run.out) == timeless(recorded)


def test_the_next_response_waits_for_every_tool_output() -> None:
    calls = [{"type": "function_call", "call_id": f"call_{n}", "id": f"item_F{n}"} for n in range(2)]
    index, conn = recording(
        S("session.created"),
        C("response.create"),
        S("response.created", response={"id": "resp_1"}),
        S("response.output_item.done", response_id="resp_1", item=calls[0]),
        S("response.output_item.done", response_id="resp_1", item=calls[1]),
        S("response.done", response={"id": "resp_1", "output": calls}),
        C("conversation.item.create", item={"type": "function_call_output", "call_id": "call_0", "output": "a"}),
        C("conversation.item.create", item={"type": "function_call_output", "call_id": "call_1", "output": "b"}),
        C("response.create"),
        S("response.created", response={"id": "resp_2"}),
        S("response.done", response={"id": "resp_2"}),
    )
    created = [f for f in conn.server if f.type == "response.created"][-1]
    assert (created.requirement.after, created.requirement.also) == (3, (1, 2))
    run = Run(index, conn)
    run.send({"type": "response.create"})
    assert run.types()[-1] == "response.done"
    run.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "call_1", "output": "b"}})
    run.send({"type": "response.create"})  # before the other output: accepted, held
    assert run.types()[-1] == "response.done" and run.report.ok
    # The client never sends the other output: the replay says what it waits for.
    run.wait()
    [stall] = run.report.mismatches
    assert stall.kind == "stall" and "response.created" in stall.message
    assert "conversation.item.create (client event 2 of 4" in stall.message
    assert str(stall).count("call_0") >= 1  # the awaited event is shown


def test_the_next_response_goes_out_once_the_last_output_arrives() -> None:
    calls = [{"type": "function_call", "call_id": f"call_{n}", "id": f"item_F{n}"} for n in range(2)]
    index, conn = recording(
        S("session.created"),
        C("response.create"),
        S("response.created", response={"id": "resp_1"}),
        S("response.done", response={"id": "resp_1", "output": calls}),
        C("conversation.item.create", item={"type": "function_call_output", "call_id": "call_0", "output": "a"}),
        C("conversation.item.create", item={"type": "function_call_output", "call_id": "call_1", "output": "b"}),
        C("response.create"),
        S("response.created", response={"id": "resp_2"}),
    )
    run = Run(index, conn)
    run.send({"type": "response.create"})
    run.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "call_1", "output": "b"}})
    assert run.send({"type": "response.create"}) == []
    new = run.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "call_0", "output": "a"}})
    assert run.types(new) == ["response.created"]
    assert run.report.ok and run.report.complete


INTERRUPTED = (
    S("session.created"),
    C("response.create"),
    S("response.created", response={"id": "resp_1"}),
    S("response.output_item.added", response_id="resp_1", item={"id": "item_A1"}),
    S("response.done", response={"id": "resp_1"}),
    C("conversation.item.truncate", item_id="item_A1", content_index=0, audio_end_ms=1500),
    S("conversation.item.truncated", item_id="item_A1"),
    C(
        "conversation.item.create",
        item={"id": "msg_client_1", "type": "message", "role": "user", "content": []},
    ),
    S("conversation.item.added", item={"id": "msg_client_1"}),
    C("conversation.item.delete", item_id="msg_client_1"),
    S("conversation.item.deleted", item_id="msg_client_1"),
)


def test_truncate_echoes_the_item_id_handed_out() -> None:
    run = Run(*recording(*INTERRUPTED))
    run.send(C("response.create")[1])
    run.send(
        C("conversation.item.truncate", item_id="item_A1", content_index=0, audio_end_ms=1500)[1]
    )
    assert run.report.ok
    run2 = Run(*recording(*INTERRUPTED))
    run2.send(C("response.create")[1])
    run2.send(
        C("conversation.item.truncate", item_id="item_ZZ", content_index=0, audio_end_ms=1500)[1]
    )
    assert [m.kind for m in run2.report.mismatches] == ["id"]


def test_ids_the_client_chooses_are_mapped_consistently() -> None:
    def play(created: str, deleted: str) -> Run:
        run = Run(*recording(*INTERRUPTED))
        run.send(C("response.create")[1])
        run.send(
            C("conversation.item.truncate", item_id="item_A1", content_index=0, audio_end_ms=1500)[
                1
            ]
        )
        run.send(
            C(
                "conversation.item.create",
                item={"id": created, "type": "message", "role": "user", "content": []},
            )[1]
        )
        run.send(C("conversation.item.delete", item_id=deleted)[1])
        return run

    assert play("msg_run_2", "msg_run_2").report.ok  # a new ID each run: mapped
    bad = play("msg_run_2", "msg_run_3")
    [m] = bad.report.mismatches
    assert m.kind == "id"
    assert (
        "expected 'msg_run_2' (the ID the client used for recorded 'msg_client_1' before)" in str(m)
    )


# -- audio ------------------------------------------------------------------------------------------


def vad_recording(chunks: list[int]) -> tuple[CassetteIndex, IndexedConnection]:
    steps: list[tuple[str, Any]] = [S("session.created")]
    for i, n in enumerate(chunks):
        steps.append(C("input_audio_buffer.append", audio=audio(n, i % 256)))
        if i == 1:
            steps.append(S("input_audio_buffer.speech_started", item_id="item_U1"))
    steps += [C("input_audio_buffer.commit"), S("input_audio_buffer.committed", item_id="item_U1")]
    return recording(*steps)


def test_audio_rechunked_differently_releases_frames_by_amount() -> None:
    run = Run(*vad_recording([1000, 1000, 1000, 1000]))
    assert run.send(C("input_audio_buffer.append", audio=audio(1500))[1]) == []
    # 2,000 bytes were recorded before speech_started: 3,000 arrived now.
    assert run.types(run.send(C("input_audio_buffer.append", audio=audio(1500))[1])) == [
        "input_audio_buffer.speech_started"
    ]
    assert run.send(C("input_audio_buffer.append", audio=audio(1000))[1]) == []
    assert run.types(run.send(C("input_audio_buffer.commit")[1])) == [
        "input_audio_buffer.committed"
    ]
    assert run.report.ok and run.report.complete


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 900), min_size=1, max_size=8), st.data())
def test_any_rechunking_of_the_audio_replays_the_same_frames(
    recorded: list[int], data: st.DataObject
) -> None:
    total = sum(recorded)
    cuts = sorted(
        data.draw(st.sets(st.integers(1, total - 1), max_size=10)) if total > 1 else set()
    )
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    index, conn = vad_recording(recorded)
    run = Run(index, conn, policy=MatchPolicy.exact(audio="length"))
    for n in sizes:
        run.send(C("input_audio_buffer.append", audio=audio(n))[1])
    run.send(C("input_audio_buffer.commit")[1])
    expected = (
        ["session.created"]
        + (["input_audio_buffer.speech_started"] if len(recorded) > 1 else [])
        + ["input_audio_buffer.committed"]
    )
    assert run.types() == expected
    assert run.report.ok and run.report.complete


def test_too_little_audio_is_reported_at_the_commit() -> None:
    run = Run(*vad_recording([1000, 1000, 1000]), audio_tolerance=0)
    run.send(C("input_audio_buffer.append", audio=audio(1200))[1])
    new = run.send(C("input_audio_buffer.commit")[1])
    assert run.types(new) == [
        "error",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.committed",
    ]
    [m] = run.report.mismatches
    assert m.kind == "audio"
    assert m.message == (
        "expected 62 ms of audio before input_audio_buffer.commit, got 25 ms "
        "(3,000 and 1,200 bytes; beyond the 0.0 ms audio tolerance)"
    )
    assert run.report.complete  # the missing appends are part of that mismatch


def test_audio_content_is_compared_when_asked() -> None:
    index, conn = vad_recording([1000, 1000])
    same = Run(index, conn, policy=MatchPolicy.default(audio="content"))
    same.send(
        C(
            "input_audio_buffer.append",
            audio=base64.b64encode(bytes(1000) + bytes([1]) * 1000).decode(),
        )[1]
    )
    same.send(C("input_audio_buffer.commit")[1])
    assert same.report.ok
    other = Run(index, conn, policy=MatchPolicy.exact())
    other.send(C("input_audio_buffer.append", audio=audio(2000, 7))[1])
    other.send(C("input_audio_buffer.commit")[1])
    [m] = other.report.mismatches
    assert (
        m.kind == "audio" and "differs from the recording's (2,000 bytes, same length)" in m.message
    )
    loose = Run(index, conn, policy=MatchPolicy.type_only())
    loose.send(C("input_audio_buffer.append", audio=audio(10))[1])
    loose.send(C("input_audio_buffer.commit")[1])
    assert loose.report.ok


def test_server_frames_interleaved_with_a_client_stream() -> None:
    index = CassetteIndex.from_cassette(load(CASSETTES / "audio-server-vad.jsonl"))
    run = Run(index, index.connections[0])
    run.send(
        C(
            "session.update",
            session={
                "type": "realtime",
                "instructions": "You are a polite AI assistant on a phone call. Keep answers short.",
            },
        )[1]
    )
    before = len(run.out)
    run.send(C("input_audio_buffer.append", audio="AAAAAAAAAAAAAA==")[1])
    assert len(run.out) == before
    new = run.send(C("input_audio_buffer.append", audio="AAAAAAAAAAAAAA==")[1])
    assert run.types(new) == ["input_audio_buffer.speech_started"]
    new = run.send(C("input_audio_buffer.append", audio="AAAAAAAAAAAAAA==")[1])
    assert run.types(new)[:2] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
    ]
    assert run.types(new)[-1] == "rate_limits.updated"
    assert run.report.ok and run.report.complete


# -- order ------------------------------------------------------------------------------------------

AGENTS = (
    S("session.created"),
    C("session.update", session={"type": "realtime", "instructions": "be brief"}),
    C("conversation.item.create", item={"type": "message", "role": "user", "content": []}),
    C("session.update", session={"type": "realtime", "tracing": "auto"}),
    C("response.create", event_id="agents_py_response_create_1"),
    S("session.updated"),
    S("response.created", response={"id": "resp_1"}),
    S("response.done", response={"id": "resp_1"}),
)


def test_the_openai_agents_race_is_accepted_and_noted() -> None:
    run = Run(*recording(*AGENTS))
    run.send(AGENTS[1][1])
    run.send(AGENTS[3][1])  # the tracing update overtook the message and response.create
    run.send(AGENTS[2][1])
    assert run.types() == ["session.created", "session.updated"]  # the answer to the first
    run.send(AGENTS[4][1])
    assert run.types() == [
        "session.created",
        "session.updated",
        "response.created",
        "response.done",
    ]
    assert run.report.ok and run.report.complete
    [r] = run.report.reorderings
    assert (
        str(r)
        == "connection 0: session.update (client event 3) arrived before conversation.item.create; accepted"
    )
    assert "accepted reorderings:" in str(run.report)


def test_no_reordering_across_turns() -> None:
    def ask(text: str) -> dict[str, Any]:
        return C(
            "conversation.item.create",
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        )[1]

    index, conn = recording(
        S("session.created"),
        ("client", ask("one")),
        C("response.create"),
        S("response.done"),
        ("client", ask("two")),
        C("response.create"),
        S("response.done"),
    )
    run = Run(index, conn)
    run.send(ask("two"))
    [m] = run.report.mismatches
    assert m.kind == "content" and m.turn == 1


def test_no_reordering_of_an_event_that_echoes_an_id_not_yet_sent() -> None:
    index, conn = recording(
        S("session.created"),
        C("response.create"),
        S("response.created", response={"id": "resp_1"}),
        C("response.cancel", response_id="resp_1"),
        S("response.done", response={"id": "resp_1"}),
    )
    run = Run(index, conn)
    new = run.send(C("response.cancel", response_id="resp_1")[1])
    assert run.types(new) == ["error"]
    assert run.report.mismatches[0].kind == "unexpected"
    assert not run.report.reorderings


# -- the end ----------------------------------------------------------------------------------------


def test_events_after_the_end_get_an_error_and_audio_runs_one_report() -> None:
    run = Run(*recording(S("session.created"), C("response.create"), S("response.done")))
    run.send(C("response.create")[1])
    new = run.send(C("response.create")[1])
    assert run.types(new) == ["error"]
    # 0.5 s of 24 kHz audio: beyond the tolerance, so an after_end, once per run.
    for _ in range(3):
        run.send(C("input_audio_buffer.append", audio=audio(12_000))[1])
    assert [m.kind for m in run.report.mismatches] == ["after_end", "after_end"]
    assert "got input_audio_buffer.append after the recording's last client event" in str(
        run.report
    )


def test_recorded_server_close_comes_after_the_last_frame() -> None:
    close = Close(0, 0.5, 1011, "bye", "server")
    run = Run(
        *recording(S("session.created"), C("response.create"), S("response.done"), close=close)
    )
    new = run.send(C("response.create")[1], now=3.0)
    assert run.types(new) == ["response.done", "CloseConnection"]
    assert new[-1] == CloseConnection(1011, "bye")
    assert run.player.next_deadline() is None


def test_client_close_or_no_close_keeps_the_connection_open() -> None:
    for close in (Close(0, 0.5, 1000, "", "client"), None):
        run = Run(
            *recording(S("session.created"), C("response.create"), S("response.done"), close=close)
        )
        assert run.types(run.send(C("response.create")[1])) == ["response.done"]


def test_recorded_drop_is_an_abort() -> None:
    run = Run(*recording(S("session.created"), close=Close(0, 0.5, 1006, "", None)))
    assert run.out[-1] == CloseConnection(1006, "", abort=True)


def test_strict_mode_closes_with_1008_and_then_ignores_the_client() -> None:
    run = Run(*recording(*TEXT), strict=True)
    new = run.send({"type": "input_audio_buffer.clear"})
    assert isinstance(new[0], CloseConnection) and new[0].code == 1008
    assert new[0].reason.startswith("rtreplay mismatch: expected session.update")
    assert len(new[0].reason.encode()) <= 123
    assert run.send(TEXT[1][1]) == []
    assert run.player.next_deadline() is None


def test_unplayed_lists_what_the_client_never_sent() -> None:
    index, conn = vad_recording([10, 10, 10])
    run = Run(index, conn)
    run.player.disconnect()
    [u] = run.report.unplayed
    assert u.missing == 4 and u.frames == 2
    assert str(u) == (
        "connection 0 (recorded connection 0): 4 client events never received: "
        "input_audio_buffer.append x3 (30 bytes of audio), input_audio_buffer.commit; "
        "2 server frames never sent"
    )
    assert not run.report.complete


def test_connections_never_opened_are_unplayed() -> None:
    index, _ = recording(*TEXT)
    report = ReplayReport("c.jsonl", index.connections)
    assert [str(u) for u in report.unplayed] == [
        "recorded connection 0 was never connected to (3 client events, 6 server frames)"
    ]


# -- pacing -----------------------------------------------------------------------------------------


def test_pacing_is_measured_from_the_triggering_event() -> None:
    _index, conn = recording(
        S("session.created"), C("response.create"), S("response.created"), S("response.done")
    )
    player = Player(conn, speed=2.0)
    player.connect(100.0)
    [first] = player.poll(100.0)
    assert isinstance(first, Send) and [f.type for f in first.frames] == ["session.created"]
    player.receive('{"type":"response.create"}', 250.0)
    # Recorded 0.1 s and 0.2 s after response.create; at twice the speed.
    assert player.poll(250.0) == []
    assert player.next_deadline() == 250.05
    [send] = player.poll(250.05)
    assert isinstance(send, Send) and [f.type for f in send.frames] == ["response.created"]
    assert player.next_deadline() == 250.1
    [send] = player.poll(260.0)
    assert isinstance(send, Send) and [f.type for f in send.frames] == ["response.done"]
    instant = Player(conn)
    instant.connect(0.0)
    instant.poll(0.0)
    instant.receive('{"type":"response.create"}', 7.0)
    assert instant.next_deadline() == 7.0
    sent = instant.poll(7.0)
    assert [f.type for a in sent if isinstance(a, Send) for f in a.frames] == [
        "response.created",
        "response.done",
    ]


# -- the report ---------------------------------------------------------------------------------------


def test_report_says_where_what_and_the_difference_with_masked_fields_hidden() -> None:
    run = Run(*recording(*TEXT))
    run.send(TEXT[1][1])
    run.send(
        {
            "type": "conversation.item.create",
            "event_id": "evt_secret_run_id",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello"}],
            },
        }
    )
    text = str(run.report)
    assert text.startswith(
        "rtreplay: replay of test: 1 mismatch, 1 connection(s) not played to the end"
    )
    assert (
        "mismatch 1 of 1 (content): connection 0 (recorded connection 0), turn 1, client event 2 of 3"
        in text
    )
    assert "after: session.update; last server event sent: session.updated" in text
    assert 'item.content[0].text: expected "hi", got "hello"' in text
    assert "evt_secret_run_id" not in text  # event_id is masked, so not shown
    assert "1 client events never received: response.create" in text


def test_a_user_rule_decides_for_its_type() -> None:
    def tools_named(expected: Any, got: Any) -> bool | str | None:
        if got["session"].get("instructions") == "anything goes":
            return True
        if "tools" in got["session"]:
            return "tools are not allowed here"
        return None

    policy = MatchPolicy.default().with_rule("session.update", tools_named)
    for session, kinds in [
        ({"type": "realtime", "instructions": "anything goes"}, []),
        ({"type": "realtime", "instructions": "Be brief.", "tools": []}, ["rule"]),
        ({"type": "realtime", "instructions": "Be brief."}, []),
        ({"type": "realtime", "instructions": "Be long."}, ["content"]),
    ]:
        run = Run(*recording(*TEXT), policy=policy)
        run.send({"type": "session.update", "session": session})
        assert [m.kind for m in run.report.mismatches] == kinds
        if kinds == ["rule"]:
            assert run.report.mismatches[0].message == "tools are not allowed here"


def test_json_that_is_not_an_event_does_not_use_up_a_step() -> None:
    run = Run(*recording(*TEXT))
    for junk in ("[1, 2]", "42", '"session.update"', "null"):
        new = run.send(junk)
        assert run.types(new) == ["error"], junk
    assert {m.kind for m in run.report.mismatches} == {"unexpected"}
    run.send(TEXT[1][1])
    assert run.types()[-1] == "session.updated"


# -- release by cause ---------------------------------------------------------------------------

SENT_AT_ONCE = (
    S("session.created"),
    C("session.update", session={"type": "realtime", "instructions": "Be brief."}),
    C("conversation.item.create", item={"type": "message", "role": "user", "content": []}),
    C("response.create"),
    S("session.updated", session={"id": "sess_1"}),
    S("conversation.item.added", item={"id": "item_U1"}),
    S("conversation.item.done", item={"id": "item_U1"}),
    S("response.created", response={"id": "resp_1"}),
    S("response.output_text.delta", response_id="resp_1", delta="Hi"),
    S("response.done", response={"id": "resp_1"}),
    S("rate_limits.updated"),
)


def test_an_answer_goes_out_once_its_cause_arrived_whatever_was_recorded_after_it() -> None:
    # Recorded from a client that sent all three at once; replayed to one that waits for
    # each answer (docs/pytest.md's advice): no deadlock.
    run = Run(*recording(*SENT_AT_ONCE))
    assert run.types(run.send(SENT_AT_ONCE[1][1])) == ["session.updated"]
    assert run.types(run.send(SENT_AT_ONCE[2][1])) == [
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert run.types(run.send(SENT_AT_ONCE[3][1])) == [
        "response.created",
        "response.output_text.delta",
        "response.done",
        "rate_limits.updated",
    ]
    assert run.report.ok and run.report.complete


def test_the_recorded_order_of_server_events_is_kept() -> None:
    # The response's cause arrives first; it still waits for the frames recorded before it.
    run = Run(*recording(*SENT_AT_ONCE))
    assert run.send(SENT_AT_ONCE[3][1]) == []  # response.create first: an accepted reordering
    assert run.types(run.send(SENT_AT_ONCE[1][1])) == ["session.updated"]
    assert run.types(run.send(SENT_AT_ONCE[2][1])) == [
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_text.delta",
        "response.done",
        "rate_limits.updated",
    ]
    assert run.report.ok and run.report.complete and len(run.report.reorderings) == 1


# A client that sends each event, then reads until its answer (or an error) came: the
# first answer, or the one that completes it (the item done, the whole response).
WHOLE_ANSWER = {
    **FIRST_ANSWER,
    "conversation.item.create": {"conversation.item.done", "conversation.item.created"},
    "response.create": {"response.done"},
}


def careful_client(
    index: CassetteIndex, conn: IndexedConnection, cassette: Cassette, answers: dict[str, set[str]]
) -> Run:
    run = Run(index, conn)
    seen = 0
    [recorded] = [c for c in cassette.connections if c.open.conn == conn.number]
    for frame in recorded.frames:
        if frame.dir != "client":
            continue
        event = frame.event()
        run.send(frame.payload())
        wanted = answers.get(event.get("type") if isinstance(event, dict) else "", set())
        if not wanted:
            continue
        types = run.types()
        found = next(
            (k for k in range(seen, len(types)) if types[k] in wanted | {"error"}), None
        )
        assert found is not None, (
            f"{frame.payload()[:60]}: the replay never answered; it holds "
            f"{run.player.next_deadline()=}, sent {types[seen:]}"
        )
        seen = found + 1
    return run


# errors-recoverable's client asked for a second response while the first ran, to record
# the error: waiting for the first response to finish would be another conversation.
CAREFUL = [
    pytest.param(path, whole, id=f"{path.stem}-{'whole' if whole else 'first'} answer")
    for path in sorted([*CASSETTES.glob("*.jsonl"), *CASSETTES.glob("endpoints/*.jsonl")])
    for whole in (False, True)
    if not (whole and path.stem == "errors-recoverable")
]


@pytest.mark.parametrize(("path", "whole"), CAREFUL)
def test_a_client_that_waits_for_every_answer_replays_every_sample(path: Path, whole: bool) -> None:
    cassette = load(path)
    index = CassetteIndex.from_cassette(cassette)
    for conn in index.connections:
        if conn.reject is not None:
            continue
        run = careful_client(index, conn, cassette, WHOLE_ANSWER if whole else FIRST_ANSWER)
        assert run.report.ok, str(run.report)
        recorded = [json.loads(f.payload()) for c in cassette.connections if c.open.conn == conn.number for f in c.frames if f.dir == "server"]
        assert timeless([e for e in run.out if isinstance(e, dict)]) == timeless(recorded)


# -- stalls -----------------------------------------------------------------------------------------


def test_a_client_waiting_for_what_the_replay_holds_is_a_stall() -> None:
    run = Run(*recording(*TEXT), stall_timeout=5)
    run.send(TEXT[1][1], now=1.0)
    # The client now waits for the answer without asking: the replay holds the item's
    # answer until conversation.item.create comes.
    assert run.player.next_deadline() == 6.0
    assert run.poll(5.9) == []
    new = run.poll(6.0)
    assert run.types(new) == ["error", "CloseConnection"]
    assert new[0]["error"]["code"] == "rtreplay_stall"
    close = new[1]
    assert close.code == 1008 and "stall" in close.reason and len(close.reason.encode()) <= 123
    [m] = run.report.mismatches
    assert m.kind == "stall" and m.index == 1 and m.last_received == "session.update"
    assert m.held == "conversation.item.added (server event 3 of 6)"  # in memory: no line
    assert "until the client sends conversation.item.create (client event 2 of 3" in m.message
    assert "the client has been silent for the stall timeout, 5 s (last sent: session.update)" in m.message
    text = str(m)
    assert "holds:    conversation.item.added" in text
    assert 'awaits:   {"type": "conversation.item.create"' in text
    assert "last received from the client: session.update" in text
    assert close.mismatch is m
    # The connection is over: nothing more to do, nothing more accepted.
    assert run.player.next_deadline() is None
    run.send(TEXT[3][1])
    assert len(run.report.mismatches) == 1


@pytest.mark.parametrize("off", [None, 0])
def test_a_stall_timeout_of_none_or_0_never_stalls(off: float | None) -> None:
    run = Run(*recording(*TEXT), stall_timeout=off)
    run.send(TEXT[1][1], now=1.0)
    assert run.player.next_deadline() is None


def test_no_stall_while_a_frame_is_only_paced() -> None:
    index, conn = recording(S("session.created"), C("response.create"), S("response.created"))
    conn.server[1].t = 30.0  # recorded 30 s after response.create
    paced = Run(index, conn, speed=1.0, stall_timeout=5)
    paced.send(C("response.create")[1], now=1.0)
    assert paced.player.next_deadline() == pytest.approx(1.0 + 30.0 - 0.1)
    assert paced.types(paced.wait()) == ["response.created"]
    assert paced.report.ok


# Until hardening-2, a client that had been sent every recorded server event could idle
# forever ("nothing is held"): a test waiting for a second response.done hung. Now waiting
# for more than the recording has is a stall too.


def closed_by_client(*steps: tuple[str, Any]) -> tuple[CassetteIndex, IndexedConnection]:
    return recording(*steps, close=Close(0, len(steps) * 0.1, 1000, "", "client"))


def test_a_client_waiting_after_the_recording_ends_with_its_close_is_a_stall() -> None:
    run = Run(*closed_by_client(*TEXT), stall_timeout=5)
    run.send(TEXT[1][1], now=1.0)
    run.send(TEXT[3][1], now=1.1)
    run.send(TEXT[4][1], now=1.2)  # the last answer goes out now
    assert run.types()[-1] == "response.done"
    # The recorded client closed here; this one waits (for a second response.done, say).
    assert run.player.next_deadline() == pytest.approx(6.2)
    assert run.poll(6.1) == []
    new = run.poll(6.2)
    assert run.types(new) == ["error", "CloseConnection"]
    assert new[0]["error"]["code"] == "rtreplay_stall"
    close = new[1]
    assert close.code == 1008 and len(close.reason.encode()) <= 123
    assert close.reason == (
        "rtreplay stall: every recorded server event was sent; the recorded client closed here"
    )
    [m] = run.report.mismatches
    assert m.kind == "stall" and m.index is None and m.expected is None
    assert m.held == "nothing: every recorded server event was sent"
    assert m.awaits == "the client to close the connection, as the recorded client did (code 1000)"
    assert m.message == (
        "stall: the replay has no recorded server event left to send: the recording has the "
        "client close the connection next (code 1000), and the client has been silent for "
        "the stall timeout, 5 s (last sent: response.create)"
    )
    assert "awaits:   the client to close the connection" in str(m)
    assert run.report.stalls == [m] and run.report.complete
    assert run.player.next_deadline() is None


def test_a_client_that_closes_when_the_recording_did_never_stalls() -> None:
    run = Run(*closed_by_client(*TEXT), stall_timeout=5)
    for step in (TEXT[1], TEXT[3], TEXT[4]):
        run.send(step[1])
    run.player.disconnect(run.now + 4.9)
    assert run.player.next_deadline() is None
    assert run.poll(100.0) == [] and run.report.ok and run.report.complete


def test_recorded_client_events_no_server_event_waits_for_are_awaited_too() -> None:
    run = Run(*closed_by_client(*TEXT, C("response.cancel")), stall_timeout=5)
    for step in (TEXT[1], TEXT[3], TEXT[4]):
        run.send(step[1])
    assert run.player.next_deadline() == pytest.approx(run.now + 5)
    new = run.wait()
    assert new[1].reason == (
        "rtreplay stall: every recorded server event was sent; the recording has response.cancel next"
    )
    [m] = run.report.mismatches
    assert m.index == 3 and m.expected == {"type": "response.cancel"} and m.awaits is None
    assert "the recording has the client send response.cancel next (client event 4 of 4" in m.message
    assert "which no recorded server event waits for" in m.message
    assert 'awaits:   {"type": "response.cancel"}' in str(m)


def test_a_recording_with_no_close_ends_there() -> None:
    run = Run(*recording(*TEXT), stall_timeout=5)  # the recorder stopped with it open
    for step in (TEXT[1], TEXT[3], TEXT[4]):
        run.send(step[1])
    run.wait()
    [m] = run.report.mismatches
    assert "the recording ends there, with the connection still open" in m.message
    assert m.awaits == "nothing: the recording ends there"


def test_a_client_asking_for_more_than_the_recording_has_stalls_after_its_mismatch() -> None:
    run = Run(*closed_by_client(*TEXT), stall_timeout=5)
    for step in (TEXT[1], TEXT[3], TEXT[4]):
        run.send(step[1], now=1.0)
    run.send(C("response.create")[1], now=2.0)  # a second question: after_end, told at once
    assert run.types()[-1] == "error"
    assert run.player.next_deadline() == 6.0  # a mismatch moves nothing on
    run.wait()
    after_end, stall = run.report.mismatches
    assert after_end.kind == "after_end" and stall.kind == "stall"
    assert (
        "for the stall timeout, 5 s, the client has sent nothing that moves the replay on "
        "(1 message, none of them a recorded client event) (last sent: response.create)"
    ) in stall.message


def test_only_messages_that_move_the_replay_on_restart_the_stall_clock() -> None:
    run = Run(*recording(*TEXT), stall_timeout=5)
    run.send(TEXT[1][1], now=1.0)
    for t in (2.0, 3.0, 4.0, 5.0):  # a heartbeat: unexpected, each answered with an error
        run.send({"type": "heartbeat"}, now=t)
        assert run.player.next_deadline() == 6.0
    new = run.poll(6.0)
    assert run.types(new) == ["error", "CloseConnection"]
    stall = run.report.mismatches[-1]
    assert stall.kind == "stall" and stall.index == 1
    assert "(4 messages, none of them a recorded client event) (last sent: heartbeat)" in stall.message
    # The expected event with other content counts as that step: the replay moves on.
    other = Run(*recording(*TEXT), stall_timeout=5)
    other.send(TEXT[1][1], now=1.0)
    item = json.loads(json.dumps(TEXT[3][1]))
    item["item"]["content"][0]["text"] = "bye"
    other.send(item, now=4.0)
    assert other.report.mismatches[0].kind == "content"
    assert other.player.next_deadline() == 9.0


def test_strict_replays_also_stall() -> None:
    run = Run(*recording(*TEXT), stall_timeout=2, strict=True)
    run.send(TEXT[1][1], now=1.0)
    assert run.types(run.wait()) == ["error", "CloseConnection"]


def test_the_recorded_close_held_for_the_client_can_stall() -> None:
    index, conn = recording(
        S("session.created"), C("response.create"), close=Close(0, 0.5, 1000, "", "server")
    )
    run = Run(index, conn, stall_timeout=1)
    run.wait()
    [m] = run.report.mismatches
    assert m.kind == "stall" and m.held == "the recorded close (code 1000)"
    assert m.last_received is None and "(last sent: nothing)" in m.message


# -- tolerant audio ---------------------------------------------------------------------------------

MS = 48  # bytes per millisecond of 24 kHz pcm16


def wav_recording(ms: int, chunk_ms: int = 100) -> tuple[CassetteIndex, IndexedConnection]:
    """Server VAD where the client sent a whole file at once: every VAD event (and the
    response) was recorded after the last append."""
    return recording(*wav_recording_steps(ms, chunk_ms))


def wav_recording_steps(ms: int, chunk_ms: int = 100) -> list[tuple[str, Any]]:
    steps: list[tuple[str, Any]] = [S("session.created")]
    for k in range(0, ms, chunk_ms):
        steps.append(C("input_audio_buffer.append", audio=audio(min(chunk_ms, ms - k) * MS)))
    steps += [
        S("input_audio_buffer.speech_started", item_id="item_U1", audio_start_ms=300),
        S("input_audio_buffer.speech_stopped", item_id="item_U1", audio_end_ms=ms - 500),
        S("input_audio_buffer.committed", item_id="item_U1"),
        S("conversation.item.added", item={"id": "item_U1"}),
        S("response.created", response={"id": "resp_1"}),
        S("response.done", response={"id": "resp_1"}),
    ]
    return steps


VAD_EVENTS = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "response.created",
    "response.done",
]


def send_audio(run: Run, ms: int, chunk_ms: int = 40) -> list[Any]:
    new: list[Any] = []
    for k in range(0, ms, chunk_ms):
        new += run.send(C("input_audio_buffer.append", audio=audio(min(chunk_ms, ms - k) * MS))[1])
    return new


def test_audio_a_little_short_is_complete_once_the_client_goes_quiet() -> None:
    run = Run(*wav_recording(2000))
    assert send_audio(run, 1900) == []  # 100 ms of trailing silence less
    deadline = run.player.next_deadline()
    assert deadline == pytest.approx(run.now + 0.25)  # a quarter second of quiet
    assert run.poll(deadline - 0.01) == []
    assert run.types(run.poll(deadline)) == VAD_EVENTS
    assert run.report.ok and run.report.complete
    [note] = run.report.audio
    assert (note.expected_ms, note.got_ms) == (2000, 1900)
    assert str(note) == (
        "connection 0 (recorded connection 0), turn 1: 100 ms less audio than recorded before "
        "input_audio_buffer.speech_started (server event 2 of 7) (1,900 ms sent, 2,000 ms "
        "recorded); accepted, within the 250 ms audio tolerance"
    )
    assert "audio accepted within the tolerance:" in str(run.report)


def test_audio_reaching_the_tolerance_tells_a_sleeping_shell_to_look_again() -> None:
    # A shell sleeps until next_deadline() and wakes early only when `pending` says so.
    # While the audio is far short, the deadline is the stall's; audio that comes within
    # the tolerance brings it forward to a short pause, so `pending` must say so, or the
    # frames wait for the whole stall timeout (10 s by default) instead of a pause.
    run = Run(*wav_recording(2000), stall_timeout=60)
    send_audio(run, 1000)
    assert run.player.next_deadline() == pytest.approx(run.now + 60)  # the shell sleeps
    append = json.dumps(C("input_audio_buffer.append", audio=audio(100 * MS))[1])
    for _ in range(9):  # 1,900 ms in all: 100 ms short, without a poll in between
        run.now += 0.001
        run.player.receive(append, run.now)
    assert run.player.pending
    assert run.player.next_deadline() == pytest.approx(run.now + 0.25)
    assert run.types(run.wait()) == VAD_EVENTS
    assert not run.player.pending


def test_audio_a_little_long_releases_at_the_recorded_amount_and_the_rest_is_accepted() -> None:
    run = Run(*wav_recording(2000))
    new = send_audio(run, 2000)
    assert run.types(new) == VAD_EVENTS
    assert send_audio(run, 100) == []  # 100 ms more: no after_end
    run.player.disconnect(run.now)
    assert run.report.ok and run.report.complete
    [note] = run.report.audio
    assert note.where == "after the recording's last client event" and note.got_ms == 100


def test_audio_far_short_and_silent_is_an_audio_mismatch_in_ms_when_it_stalls() -> None:
    run = Run(*wav_recording(2000), stall_timeout=3)
    send_audio(run, 1000)
    sent_at = run.now
    assert run.player.next_deadline() == pytest.approx(sent_at + 3)  # no early release
    new = run.wait()
    assert run.types(new) == ["error", "CloseConnection"] and new[1].code == 1008
    [m] = run.report.mismatches
    assert m.kind == "audio" and m.index is not None
    assert "the client's audio stopped 1,000 ms short" in m.message
    assert "until 2,000 ms of audio have arrived" in m.message
    assert "1,000 ms have, beyond the 250 ms audio tolerance" in m.message
    assert m.held is not None and m.held.startswith("input_audio_buffer.speech_started")
    assert m.last_received == "input_audio_buffer.append"


def test_far_too_much_audio_after_the_recording_is_after_end() -> None:
    run = Run(*wav_recording(2000))
    send_audio(run, 2000)
    send_audio(run, 600)
    [m] = run.report.mismatches
    assert m.kind == "after_end" and "beyond the 250 ms audio tolerance" in m.message


def test_ignoring_audio_releases_whatever_the_amount() -> None:
    run = Run(*wav_recording(2000), policy=MatchPolicy.default(audio="ignore"))
    send_audio(run, 500)
    assert run.types(run.wait()) == VAD_EVENTS
    assert run.report.ok and run.report.complete and not run.report.audio


def test_the_tolerance_is_in_seconds_of_the_recorded_format() -> None:
    steps: list[tuple[str, Any]] = [
        S("session.created"),
        C("session.update", session={"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}),
        S("session.updated"),
    ]
    steps += [C("input_audio_buffer.append", audio=audio(800)) for _ in range(10)]  # 1 s
    steps += [S("input_audio_buffer.speech_started", item_id="item_U1")]
    index, conn = recording(*steps)
    assert conn.input_format.name == "g711_ulaw"
    run = Run(index, conn, audio_tolerance=0.1)
    run.send(steps[1][1])
    run.send(C("input_audio_buffer.append", audio=audio(7200))[1])  # 900 ms: 100 ms short
    assert run.types(run.wait()) == ["input_audio_buffer.speech_started"]
    assert run.report.audio[0].got_ms == 900
    short = Run(index, conn, audio_tolerance=0.1, stall_timeout=1)
    short.send(steps[1][1])
    short.send(C("input_audio_buffer.append", audio=audio(7000))[1])  # 125 ms short
    short.wait()
    assert [m.kind for m in short.report.mismatches] == ["audio"]


def manual_recording(ms: int) -> tuple[CassetteIndex, IndexedConnection]:
    return recording(
        S("session.created"),
        C("input_audio_buffer.append", audio=audio(ms * MS)),
        C("input_audio_buffer.commit"),
        S("input_audio_buffer.committed", item_id="item_U1"),
    )


def test_a_commit_after_a_little_less_audio_is_noted_and_far_less_is_a_mismatch_in_ms() -> None:
    run = Run(*manual_recording(1000))
    run.send(C("input_audio_buffer.append", audio=audio(900 * MS))[1])
    assert run.types(run.send(C("input_audio_buffer.commit")[1])) == [
        "input_audio_buffer.committed"
    ]
    assert run.report.ok and run.report.audio[0].where == "before input_audio_buffer.commit"
    far = Run(*manual_recording(1000))
    far.send(C("input_audio_buffer.append", audio=audio(500 * MS))[1])
    far.send(C("input_audio_buffer.commit")[1])
    [m] = far.report.mismatches
    assert m.kind == "audio" and m.message.startswith(
        "expected 1,000 ms of audio before input_audio_buffer.commit, got 500 ms"
    )


def test_a_client_that_leaves_with_its_audio_a_little_short_played_everything() -> None:
    # Streamed in real time: the answer was recorded before the last appends (its cause is
    # the commit of the audio), so the client has it and may leave at once.
    steps: list[tuple[str, Any]] = [S("session.created")]
    steps += [C("input_audio_buffer.append", audio=audio(100 * MS)) for _ in range(10)]
    steps += [
        S("input_audio_buffer.committed", item_id="item_U1"),
        S("response.created", response={"id": "resp_1"}),
    ]
    steps += [C("input_audio_buffer.append", audio=audio(100 * MS)) for _ in range(2)]
    steps += [S("response.done", response={"id": "resp_1"})]
    index, conn = recording(*steps)
    run = Run(index, conn)
    new = send_audio(run, 1100, chunk_ms=100)
    assert run.types(new) == ["input_audio_buffer.committed", "response.created", "response.done"]
    run.player.disconnect(run.now)  # 100 ms of trailing audio never sent
    assert run.report.ok and run.report.complete
    assert run.report.audio[0].where == "at the end of the audio"
    far = Run(index, conn)
    send_audio(far, 900, chunk_ms=100)
    far.player.disconnect(far.now)
    [u] = far.report.unplayed  # 300 ms short: not complete
    assert u.missing == 3


# -- the timeline ----------------------------------------------------------------------------------


def test_the_timeline_groups_frames_by_what_they_wait_for() -> None:
    _, conn = recording(*SENT_AT_ONCE, close=Close(0, 2.0, 1000, "bye", "server"))
    timeline = Timeline.of(conn)
    assert [(c.requirement.after, c.requirement.every, len(c.frames)) for c in timeline] == [
        (-1, True, 1),
        (0, False, 1),
        (1, False, 2),
        (2, False, 4),
        (2, True, 0),
    ]
    assert timeline.cues[-1].ending == Ending(1000, "bye", t=2.0)
    assert [f.index for f in timeline.frames()] == list(range(8))


def test_a_cut_timeline_ends_the_connection_where_asked() -> None:
    index, conn = recording(*SENT_AT_ONCE)
    timeline = Timeline.of(conn)
    timeline.cut(5, Ending(1011, "fault"))  # after response.created's first delta
    run = Run(index, conn, timeline=timeline)
    for step in SENT_AT_ONCE[1:4]:
        run.send(step[1])
    assert run.types()[-2:] == ["response.created", "CloseConnection"]
    assert run.out[-1] == CloseConnection(1011, "fault")
    assert run.player.next_deadline() is None
    with pytest.raises(KeyError):
        timeline.cut(99, Ending(1000))


def test_a_delayed_or_inserted_frame_goes_out_when_the_timeline_says() -> None:
    index, conn = recording(*SENT_AT_ONCE)
    timeline = Timeline.of(conn)
    timeline.delay(1, 2.0)  # session.updated two seconds late
    injected = ServerFrame(0.0, True, "error", data=b'{"type":"error","error":{"code":"injected"}}')
    timeline.insert(4, [injected])  # before response.created
    run = Run(index, conn, timeline=timeline)
    assert run.send(SENT_AT_ONCE[1][1], now=1.0) == []
    assert run.player.next_deadline() == 3.0
    assert run.types(run.poll(3.0)) == ["session.updated"]
    run.send(SENT_AT_ONCE[2][1])
    new = run.send(SENT_AT_ONCE[3][1])
    assert run.types(new)[:2] == ["error", "response.created"]
    assert new[0]["error"]["code"] == "injected"
    assert run.report.ok and run.report.complete  # a made-up frame is not a recorded one
    with pytest.raises(ValueError, match="delay"):
        timeline.delay(2, -1)


# -- built from the public API ---------------------------------------------------------------------


def test_a_player_is_built_from_a_cassette_path_or_object() -> None:
    for source in (CASSETTES / "text-response.jsonl", load(CASSETTES / "text-response.jsonl")):
        player = Player.load(source, stall_timeout=None)
        player.connect(0.0)
        [send] = player.poll(0.0)
        assert isinstance(send, Send)
        [(data, text)] = list(send.messages())
        assert text and json.loads(data)["type"] == "session.created"
    with pytest.raises(ValueError, match="has no connection 3"):
        Player.load(CASSETTES / "text-response.jsonl", connection=3)


@pytest.mark.parametrize(
    ("option", "value"),
    [("speed", -1), ("stall_timeout", -2), ("audio_tolerance", float("nan")), ("stall_timeout", "5")],
)
def test_bad_options_are_value_errors_naming_the_option(option: str, value: Any) -> None:
    _, conn = recording(*TEXT)
    with pytest.raises(ValueError, match=option):
        Player(conn, **{option: value})


def test_one_append_far_past_the_recording_is_after_end() -> None:
    run = Run(*wav_recording(1000))
    run.send(C("input_audio_buffer.append", audio=audio(1500 * MS))[1])
    assert run.types()[-len(VAD_EVENTS) - 1 :] == ["error", *VAD_EVENTS]
    [m] = run.report.mismatches
    assert m.kind == "after_end" and "500 ms of audio more than recorded" in m.message


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(1, 300), min_size=1, max_size=8),
    st.integers(-249, 249),
    st.data(),
)
def test_any_amount_of_audio_within_the_tolerance_replays_the_recording(
    recorded_ms: list[int], extra_ms: int, data: st.DataObject
) -> None:
    """A recording whose voice events all follow the last append (a file sent at once)
    replays whole, however much audio within the tolerance the client sends, and in any
    chunks."""
    steps: list[tuple[str, Any]] = [S("session.created")]
    steps += [C("input_audio_buffer.append", audio=audio(ms * MS)) for ms in recorded_ms]
    steps += [
        S("input_audio_buffer.speech_stopped", item_id="item_U1"),
        S("input_audio_buffer.committed", item_id="item_U1"),
        S("response.created", response={"id": "resp_1"}),
        S("response.done", response={"id": "resp_1"}),
    ]
    run = Run(*recording(*steps))
    sent = max(0, sum(recorded_ms) + extra_ms) * MS
    cuts = sorted(data.draw(st.sets(st.integers(1, sent - 1), max_size=12))) if sent > 1 else []
    for a, b in zip([0, *cuts], [*cuts, sent], strict=True):
        if b > a:
            run.send(C("input_audio_buffer.append", audio=audio(b - a))[1])
    if run.types()[-1] == "session.created":  # short of the recording: released on silence
        assert extra_ms < 0
        run.wait()
    run.player.disconnect(run.now)
    assert run.types() == [
        "session.created",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        "response.done",
    ]
    assert run.report.ok and run.report.complete, str(run.report)
    if extra_ms:
        [note] = run.report.audio
        assert round(note.got_ms - note.expected_ms) == extra_ms or sent == 0


# -- a microphone left open and the stall clock --------------------------------------------------


def stream(run: Run, ms: int, chunk_ms: int = 40) -> None:
    """Audio in real time: one chunk every ``chunk_ms`` of the clock."""
    for _ in range(0, ms, chunk_ms):
        run.send(C("input_audio_buffer.append", audio=audio(chunk_ms * MS))[1], now=run.now + chunk_ms / 1000)


def test_audio_streamed_toward_what_the_held_frames_await_restarts_the_stall_clock() -> None:
    run = Run(*wav_recording(2000), stall_timeout=0.5)
    # 1.68 s of the clock, far past the stall timeout: each chunk brings the awaited audio
    # closer (and, 320 ms short, the held frames still wait for the rest).
    stream(run, 1680, chunk_ms=140)
    assert run.report.ok and run.player.next_deadline() == pytest.approx(run.now + 0.5)


def test_a_microphone_streaming_past_the_recordings_audio_still_stalls() -> None:
    # Server VAD: every server event goes out with the recorded audio; the recording's
    # client then closed. This client leaves its microphone streaming silence.
    run = Run(*closed_by_client(*wav_recording_steps(2000)), stall_timeout=2)
    stream(run, 2000)
    assert run.types()[-len(VAD_EVENTS) :] == VAD_EVENTS
    done_at = run.now
    stream(run, 1960)  # 1.96 s more, within the stall timeout: audio after the recording
    assert run.player.next_deadline() == pytest.approx(done_at + 2)
    stream(run, 80)
    assert run.types()[-2:] == ["error", "CloseConnection"]
    stall = run.report.mismatches[-1]
    assert stall.kind == "stall" and stall.held == "nothing: every recorded server event was sent"
    assert "the client has sent nothing that moves the replay on" in stall.message
    assert "audio beyond what the recording has there) (last sent: input_audio_buffer.append)" in stall.message
    assert run.report.mismatches[0].kind == "after_end"  # the extra audio, told once


def test_audio_past_what_the_recording_has_before_the_awaited_event_does_not_stall_late() -> None:
    run = Run(*manual_recording(1000), stall_timeout=2)
    stream(run, 1000)
    at = run.now
    stream(run, 1960)  # never commits: audio past the recorded 1,000 ms moves nothing on
    assert run.player.next_deadline() == pytest.approx(at + 2)
    stream(run, 80)
    [stall] = run.report.mismatches
    assert stall.kind == "stall" and "until the client sends input_audio_buffer.commit" in stall.message
    assert "(50 messages, audio beyond what the recording has there)" in stall.message
