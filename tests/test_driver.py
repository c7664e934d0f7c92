"""The driver (the recorded client played to a server under test) with plain values: no sockets.

Each test builds a small recording in memory, feeds the driver what a server would send,
and reads what it asks to send, when, and what it reports.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtreplay.cassette import Cassette, Connection, Frame, Header, Open, Reject
from rtreplay.cassette import Close as CloseRecord
from rtreplay.driver import Close, Driver, Send, client_handshake, scripts
from rtreplay.expect import ServerPolicy, shape_differences

GA = {"authorization": "Bearer REDACTED", "user-agent": "AsyncOpenAI/Python 3.52.0"}


def cassette(*events: tuple[str, float, Any], close: CloseRecord | None = None, reject: Reject | None = None,
             headers: dict[str, str] | None = None, subprotocol: str | None = None) -> Cassette:
    """One connection: ``("c"|"s", t, event)`` in recorded order."""
    frames = [
        Frame.from_message(0, t, "client" if who == "c" else "server", json.dumps(e) if not isinstance(e, str) else e)
        for who, t, e in events
    ]
    conn = Connection(
        Open(0, "/v1/realtime", {"model": "gpt-realtime"}, headers=GA if headers is None else headers,
             subprotocol=subprotocol),
        frames,
        close if close is not None else CloseRecord(0, (events[-1][1] if events else 0) + 0.1, 1000, "", "client"),
        reject,
    )
    return Cassette(Header(), [conn], path="mem.jsonl")


def driver(c: Cassette, **options: Any) -> Driver:
    options.setdefault("speed", None)
    options.setdefault("audio_speed", None)
    return Driver(scripts(c)[0], **options)


def sent(actions: list[Any]) -> list[dict[str, Any]]:
    out = []
    for a in actions:
        if isinstance(a, Send):
            out.extend(json.loads(m) for m in a.messages)
    return out


def ev(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


def s(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "event_id": "event_live", **fields})


TEXT_TURN = [
    ("s", 0.0, ev("session.created", event_id="event_1", session={"id": "sess_1"})),
    ("c", 0.01, ev("response.create")),
    ("s", 0.05, ev("response.created", event_id="event_2", response={"id": "resp_R1", "status": "in_progress"})),
    ("s", 0.06, ev("response.output_text.delta", response_id="resp_R1", item_id="item_I1", output_index=0, content_index=0, delta="Hel")),
    ("s", 0.07, ev("response.output_text.delta", response_id="resp_R1", item_id="item_I1", output_index=0, content_index=0, delta="lo")),
    ("s", 0.08, ev("response.output_text.done", response_id="resp_R1", item_id="item_I1", output_index=0, content_index=0, text="Hello")),
    ("s", 0.09, ev("response.done", response={"id": "resp_R1", "status": "completed"})),
    ("s", 0.10, ev("rate_limits.updated", rate_limits=[])),
]


def answer(d: Driver, now: float, *messages: str) -> None:
    for m in messages:
        d.receive(m, now)


def test_a_client_event_waits_for_the_server_events_recorded_before_it() -> None:
    d = driver(cassette(*TEXT_TURN))
    d.connect(0.0)
    assert d.poll(0.0) == []  # response.create waits for session.created
    d.receive(s("session.created", session={"id": "sess_live"}), 0.1)
    assert sent(d.poll(0.1)) == [{"type": "response.create"}]


def test_the_recorded_pace_counts_from_the_server_event_it_followed() -> None:
    d = driver(cassette(*TEXT_TURN), speed=1.0)
    d.connect(0.0)
    d.receive(s("session.created", session={}), 2.0)
    assert d.poll(2.0) == []
    assert d.next_deadline() == pytest.approx(2.01)
    assert sent(d.poll(2.01)) == [{"type": "response.create"}]


def test_a_re_chunked_stream_and_reordered_independent_events_match_at_type_strictness() -> None:
    d = driver(cassette(*TEXT_TURN))
    d.connect(0.0)
    d.receive(s("session.created", session={}), 0.0)
    d.poll(0.0)
    answer(
        d, 0.1,
        s("response.created", response={"id": "resp_L", "status": "in_progress"}),
        s("rate_limits.updated", rate_limits=[]),  # early: independent of the response's events
        s("response.output_text.delta", response_id="resp_L", item_id="item_L", output_index=0, content_index=0, delta="Hi"),
        s("response.output_text.done", response_id="resp_L", item_id="item_L", output_index=0, content_index=0, text="Hi"),
        s("response.done", response={"id": "resp_L", "status": "completed"}),
    )
    assert [type(a) for a in d.poll(0.2)] == [Close]
    d.disconnect(0.3, 1000)
    assert d.report.ok, d.report
    assert d.progress.matched == d.progress.expected_total == 6


def test_at_exact_strictness_the_joined_text_of_a_stream_is_compared() -> None:
    def run(pieces: list[str]) -> Driver:
        d = driver(cassette(*TEXT_TURN), policy="exact")
        d.connect(0.0)
        d.receive(s("session.created", session={"id": "sess_other"}), 0.0)
        d.poll(0.0)
        answer(d, 0.1, s("response.created", response={"id": "resp_L", "status": "in_progress"}))
        for p in pieces:
            d.receive(s("response.output_text.delta", response_id="resp_L", item_id="item_L", output_index=0, content_index=0, delta=p), 0.1)
        answer(
            d, 0.1,
            s("response.output_text.done", response_id="resp_L", item_id="item_L", output_index=0, content_index=0, text="Hello"),
            s("response.done", response={"id": "resp_L", "status": "completed"}),
            s("rate_limits.updated", rate_limits=[{"remaining": 5}]),
        )
        d.poll(0.2)
        d.disconnect(0.3, 1000)
        return d

    assert run(["H", "el", "lo"]).report.ok  # other pieces, same text; IDs and rate limits masked
    bad = run(["Hel", "p"]).report
    assert [m.kind for m in bad.mismatches] == ["content"]
    assert "'Hello'" in str(bad) or '"Hello"' in str(bad)


def test_ids_this_server_hands_out_replace_the_recorded_ones_in_client_events() -> None:
    c = cassette(
        ("s", 0.0, ev("session.created", session={})),
        ("c", 0.01, ev("response.create")),
        ("s", 0.02, ev("response.created", response={"id": "resp_R1"})),
        ("s", 0.03, ev("response.output_item.added", response_id="resp_R1", item={"id": "item_F1", "type": "function_call", "call_id": "call_REC"})),
        ("s", 0.04, ev("response.done", response={"id": "resp_R1"})),
        ("c", 0.05, ev("conversation.item.create", item={"type": "function_call_output", "call_id": "call_REC", "output": "{}"})),
        ("c", 0.06, ev("conversation.item.truncate", item_id="item_F1", content_index=0, audio_end_ms=10)),
    )
    d = driver(c)
    d.connect(0.0)
    answer(d, 0.0, s("session.created", session={}))
    d.poll(0.0)
    answer(
        d, 0.1,
        s("response.created", response={"id": "resp_A"}),
        s("response.output_item.added", response_id="resp_A", item={"id": "item_B", "type": "function_call", "call_id": "call_LIVE"}),
        s("response.done", response={"id": "resp_A"}),
    )
    out = sent(d.poll(0.1))
    assert out[0]["item"]["call_id"] == "call_LIVE"
    assert out[1]["item_id"] == "item_B"


def test_an_event_missing_from_a_response_is_reported_when_the_response_ends() -> None:
    d = driver(cassette(*TEXT_TURN))
    d.connect(0.0)
    answer(d, 0.0, s("session.created", session={}))
    d.poll(0.0)
    answer(
        d, 0.1,
        s("response.created", response={"id": "resp_L"}),
        s("response.output_text.delta", response_id="resp_L", item_id="item_L", output_index=0, content_index=0, delta="Hello"),
        s("response.done", response={"id": "resp_L"}),  # no response.output_text.done
    )
    (m,) = d.report.mismatches
    assert m.kind == "missing"
    assert "response.output_text.done" in m.message and m.line == 0  # in-memory: no line
    assert m.index == 4 and m.turn == 1  # the fifth recorded server frame


def test_an_event_the_recording_lacks_is_unexpected_and_an_error_says_its_code() -> None:
    d = driver(cassette(*TEXT_TURN[:1]))
    d.connect(0.0)
    answer(d, 0.0, s("session.created", session={}),
           s("error", error={"type": "invalid_request_error", "code": "beta_api_shape_disabled", "message": "gone"}))
    (m,) = d.report.mismatches
    assert m.kind == "unexpected" and "'beta_api_shape_disabled': gone" in m.message


def test_a_silent_server_is_reported_naming_what_was_awaited_and_the_connection_closed() -> None:
    d = driver(cassette(*TEXT_TURN), timeout=2.0)
    d.connect(0.0)
    answer(d, 0.0, s("session.created", session={}))
    d.poll(0.0)  # response.create sent at 0
    assert d.next_deadline() == pytest.approx(2.0)
    assert d.poll(1.9) == []
    actions = d.poll(2.0)
    assert actions == [Close(1000, "rtreplay: the server under test stopped answering")]
    (m,) = d.report.mismatches
    assert m.kind == "timeout"
    assert "sent nothing for 2 s" in m.message and "response.created" in m.message and "--timeout" in m.message


def test_a_server_that_answers_but_never_sends_one_event_gets_it_reported_and_the_drive_goes_on() -> None:
    c = cassette(
        ("s", 0.0, ev("session.created", session={})),
        ("c", 0.01, ev("session.update", session={})),
        ("s", 0.02, ev("session.updated", session={})),
        ("s", 0.03, ev("conversation.created", conversation={})),
        ("c", 0.04, ev("response.create")),
    )
    d = driver(c, timeout=1.0)
    d.connect(0.0)
    answer(d, 0.0, s("session.created", session={}))
    d.poll(0.0)
    answer(d, 0.5, s("session.updated", session={}))
    assert d.poll(1.4) == []
    out = sent(d.poll(1.5))
    assert out == [{"type": "response.create"}]
    (m,) = d.report.mismatches
    assert m.kind == "missing" and "conversation.created" in m.message


def test_audio_appends_in_a_run_go_at_real_time_without_waiting_for_voice_activity_events() -> None:
    append = ev("input_audio_buffer.append", audio="AAAA")
    c = cassette(
        ("s", 0.0, ev("session.created", session={})),
        ("c", 0.1, append),
        ("c", 0.2, append),
        ("s", 0.25, ev("input_audio_buffer.speech_started", item_id="item_U", audio_start_ms=0)),
        ("c", 0.3, append),
        ("c", 0.4, ev("response.create")),
    )
    d = driver(c, audio_speed=1.0, speed=None)
    d.connect(0.0)
    answer(d, 0.0, s("session.created", session={}))
    assert d.next_deadline() == pytest.approx(0.1)
    assert len(sent(d.poll(0.1))) == 1
    assert len(sent(d.poll(0.2))) == 1
    assert len(sent(d.poll(0.3))) == 1  # speech_started has not come: the microphone goes on
    assert sent(d.poll(5.0)) == []  # response.create waits for it
    answer(d, 5.0, s("input_audio_buffer.speech_started", item_id="item_X", audio_start_ms=0))
    assert sent(d.poll(5.0)) == [{"type": "response.create"}]


def test_a_server_that_closes_early_is_reported_with_what_was_left() -> None:
    d = driver(cassette(*TEXT_TURN))
    d.connect(0.0)
    answer(d, 0.0, s("session.created", session={}))
    d.poll(0.0)
    d.disconnect(0.1, 1011, "boom")
    (m,) = d.report.mismatches
    assert m.kind == "closed"
    assert "code 1011, 'boom'" in m.message and "5 recorded server events still expected (response.created, response.output_text.delta x2," in m.message


def test_when_the_recorded_server_closed_the_driver_waits_for_this_one_to_close() -> None:
    c = cassette(*TEXT_TURN[:1], close=CloseRecord(0, 1.0, 1001, "", "server"))
    d = driver(c, timeout=3.0)
    d.connect(0.0)
    answer(d, 0.5, s("session.created", session={}))
    assert d.poll(0.6) == []
    d.disconnect(0.7, 1000)
    (m,) = d.report.mismatches
    assert m.kind == "close" and "code 1000, the recording's with 1001" in m.message


def test_a_refused_handshake_names_the_status_and_the_missing_credential() -> None:
    d = driver(cassette(*TEXT_TURN))
    d.refused(401, '{"error": {"message": "no key"}}', hint="set OPENAI_API_KEY")
    (m,) = d.report.mismatches
    assert m.kind == "refused" and "HTTP 401" in m.message and "set OPENAI_API_KEY" in m.message


def test_a_recorded_refusal_is_matched_by_the_same_status() -> None:
    d = driver(cassette(reject=Reject(0, 0.01, 403, {}, "forbidden")))
    d.refused(403, "forbidden")
    assert d.report.ok
    d2 = driver(cassette(reject=Reject(0, 0.01, 403, {}, "forbidden")))
    d2.connect(0.0)
    assert d2.poll(0.0) == [Close(1000, "")]
    assert d2.report.mismatches[0].kind == "handshake"


def test_the_recording_ending_mid_response_leaves_the_rest_of_it_uncompared() -> None:
    c = cassette(*TEXT_TURN[:3])  # the client hung up after response.created
    d = driver(c)
    d.connect(0.0)
    answer(d, 0.0, s("session.created", session={}))
    d.poll(0.0)
    answer(
        d, 0.1,
        s("response.created", response={"id": "resp_L"}),
        s("response.output_text.delta", response_id="resp_L", item_id="item_L", output_index=0, content_index=0, delta="x"),
        s("conversation.item.added", item={"id": "item_L"}),
    )
    assert d.report.ok, d.report
    assert [k for _, k in d.report.beyond] == ["response.output_text.delta", "conversation.item.added"]


def test_structure_strictness_names_fields_added_removed_and_retyped() -> None:
    differences = shape_differences(
        {"type": "x", "a": 1, "b": {"c": "s"}, "n": None},
        {"type": "x", "b": {"c": 2}, "d": True, "n": {"z": 1}},
    )
    assert [str(d) for d in differences] == [
        "a: field removed (was number)",
        "b.c: was string, now number",
        "d: field added (boolean)",
    ]
    assert ServerPolicy("type").compare({"type": "x", "a": 1}, {"type": "x"}) == []


def test_the_handshake_is_the_recorded_one_with_the_users_key() -> None:
    o = Open(0, "/v1/realtime", {"model": "gpt-realtime"}, headers={**GA, "openai-beta": "realtime=v1", "host": "x"})
    h = client_handshake(o, "ws://127.0.0.1:9/", "sk-mine")
    assert h.url == "ws://127.0.0.1:9/v1/realtime?model=gpt-realtime"
    assert dict(h.headers) == {"authorization": "Bearer sk-mine", "user-agent": GA["user-agent"], "openai-beta": "realtime=v1"}
    assert h.credential_missing is None
    relay = client_handshake(o, "ws://127.0.0.1:9/relay?model=other")
    assert relay.url == "ws://127.0.0.1:9/relay?model=other"
    assert "authorization" not in dict(relay.headers)
    assert relay.credential_missing == "the 'authorization' header"
    browser = client_handshake(Open(0, headers={}, subprotocol="realtime"), "wss://h:1", "ek_123")
    assert browser.subprotocols == ("realtime", "openai-insecure-api-key.ek_123")
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        client_handshake(o, "127.0.0.1:9")


@pytest.mark.parametrize(
    ("option", "value"), [("speed", -1), ("audio_speed", math.inf), ("timeout", 0), ("timeout", None)]
)
def test_bad_options_are_refused(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        Driver(scripts(cassette(*TEXT_TURN))[0], **{option: value})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=6),
    st.data(),
    st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789", min_size=4, max_size=12),
    st.booleans(),
)
def test_the_same_answer_in_any_pieces_with_fresh_ids_drives_clean_at_exact_strictness(
    recorded: list[str], data: st.DataObject, fresh: str, limits_first: bool
) -> None:
    """A server that says what the recording says, cut into other pieces, under IDs of its
    own, with its rate limits early or late, matches exactly; the client's echo of the
    call ID carries the server's."""
    text = "".join(recorded)
    where = {"response_id": "resp_R1", "item_id": "item_I1", "output_index": 0, "content_index": 0}
    steps: list[tuple[str, float, Any]] = [
        ("s", 0.0, ev("session.created", session={})),
        ("c", 0.01, ev("response.create")),
        ("s", 0.02, ev("response.created", response={"id": "resp_R1"})),
        ("s", 0.03, ev("response.output_item.added", response_id="resp_R1", item={"id": "item_I1", "type": "function_call", "call_id": "call_R"})),
    ]
    steps += [("s", 0.04, ev("response.function_call_arguments.delta", **where, call_id="call_R", delta=p)) for p in recorded]
    steps += [
        ("s", 0.05, ev("response.function_call_arguments.done", **where, call_id="call_R", arguments=text)),
        ("s", 0.06, ev("response.done", response={"id": "resp_R1"})),
        ("s", 0.07, ev("rate_limits.updated", rate_limits=[])),
        ("c", 0.08, ev("conversation.item.create", item={"type": "function_call_output", "call_id": "call_R", "output": "{}"})),
    ]
    d = driver(cassette(*steps), policy="exact")
    d.connect(0.0)
    answer(d, 0.0, s("session.created", session={}))
    d.poll(0.0)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(text) - 1), max_size=8))) if len(text) > 1 else []
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    live = {"response_id": f"resp_{fresh}", "item_id": f"item_{fresh}", "output_index": 0, "content_index": 0}
    out = [
        s("response.created", response={"id": f"resp_{fresh}"}),
        s("response.output_item.added", response_id=f"resp_{fresh}", item={"id": f"item_{fresh}", "type": "function_call", "call_id": f"call_{fresh}"}),
        *(s("response.function_call_arguments.delta", **live, call_id=f"call_{fresh}", delta=p) for p in pieces),
        s("response.function_call_arguments.done", **live, call_id=f"call_{fresh}", arguments=text),
        s("response.done", response={"id": f"resp_{fresh}"}),
    ]
    limits = s("rate_limits.updated", rate_limits=[])
    answer(d, 0.1, *([limits, *out] if limits_first else [*out, limits]))
    (echo,) = sent(d.poll(0.2))
    assert echo["item"]["call_id"] == f"call_{fresh}"
    d.poll(0.3)
    d.disconnect(0.4, 1000)
    assert d.report.ok, d.report


def test_structure_does_not_look_inside_volatile_fields() -> None:
    policy = ServerPolicy("structure")
    recorded = {"type": "response.done", "response": {"usage": {"input_token_details": {}}, "status": "completed"}}
    live = {"type": "response.done", "response": {"usage": {"total_tokens": 3}, "status": "completed"}}
    assert policy.compare(recorded, live) == []
    assert [str(d) for d in policy.compare(recorded, {"type": "response.done", "response": {"usage": "n/a", "status": "x"}})] == [
        "response.usage: was object, now string"
    ]
