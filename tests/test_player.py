"""The replay player with plain values: messages and clock values in, actions out."""

from __future__ import annotations

import base64
import json
from typing import Any

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
    new = run.send({"type": "response.cancel"})
    assert run.types(new) == ["error"]
    assert "expected session.update, got response.cancel" in new[0]["error"]["message"]
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
    new = run.send({"type": "response.cancel"})
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
    [send] = instant.poll(7.0)
    assert isinstance(send, Send) and len(send.frames) == 2


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
