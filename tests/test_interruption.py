"""Interruptions follow the client: a response cut short where the client says, ended as the API ends it.

The player with plain values first (cancel, truncate, clear, speech; with and without an
interruption in the recording), then real clients on the bundled interruption cassette
and on cassettes without one, cancelling earlier than recorded: no delta of the
cancelled response after the cancel reached the server, and the response ends cancelled
with the content the client actually received.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from rtreplay.interruption import Sent, synthesise
from rtreplay.latency import Latency, apply_latency
from rtreplay.player import Send
from rtreplay.server import ReplayServer

from .conformance import clients
from .conformance.clients import Target
from .conformance.plans import _appends, _mic, _mic_split, send, until
from .conftest import CASSETTES, timeout
from .faultclients import DRIVERS, Seen, skip_reason
from .test_player import C, Run, S, recording

# -- a text response, five deltas ----------------------------------------------------------

RESPONSE = [
    S("response.created", response={"id": "resp_1", "object": "realtime.response", "status": "in_progress", "output": []}),
    S("response.output_item.added", response_id="resp_1", output_index=0,
      item={"id": "item_A", "type": "message", "status": "in_progress", "role": "assistant", "content": []}),
    S("conversation.item.added", previous_item_id="item_U",
      item={"id": "item_A", "type": "message", "status": "in_progress", "role": "assistant", "content": []}),
    S("response.content_part.added", response_id="resp_1", item_id="item_A", output_index=0, content_index=0,
      part={"type": "text", "text": ""}),
    *[S("response.output_text.delta", response_id="resp_1", item_id="item_A", output_index=0,
        content_index=0, delta=word) for word in ("One ", "two ", "three ", "four ", "five.")],
]


def done_events(text: str, status: str = "completed", details: Any = None) -> list[tuple[str, dict[str, Any]]]:
    item = {"id": "item_A", "type": "message", "status": "completed" if status == "completed" else "incomplete",
            "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    at = {"response_id": "resp_1", "item_id": "item_A", "output_index": 0, "content_index": 0}
    return [
        S("response.output_text.done", **at, text=text),
        S("response.content_part.done", **at, part={"type": "text", "text": text}),
        S("response.output_item.done", response_id="resp_1", output_index=0, item=item),
        S("conversation.item.done", previous_item_id="item_U", item=item),
        S("response.done", response={"id": "resp_1", "object": "realtime.response", "status": status,
                                     "status_details": details, "output": [item], "usage": {"total_tokens": 9}}),
        S("rate_limits.updated", rate_limits=[]),
    ]


START = [S("session.created", session={"id": "sess_1"}), C("response.create")]
UNINTERRUPTED = [*START, *RESPONSE, *done_events("One two three four five.")]
CANCELLED = [*START, *RESPONSE, C("response.cancel"),
             *done_events("One two three four five.", "cancelled", {"type": "cancelled", "reason": "client_cancelled"})]


def paced(steps: list[Any], **options: Any) -> Run:
    """A run where each delta comes 1 s after the one before (latency ``rate=1``)."""
    index, conn = recording(*steps)
    timeline = apply_latency(conn.timeline, Latency(rate=1.0), conn=0)
    return Run(index, conn, timeline=timeline, **options)


def until_deltas(run: Run, n: int) -> None:
    while sum(t == "response.output_text.delta" for t in run.types()) < n:
        run.wait()


def ending(run: Run) -> list[Any]:
    """Everything due from now on, the clock run out. (A client that then says nothing
    while the recording goes on with its close is a stall, which test_player covers: the
    stall clock is set aside here, or running the clock out would end in one.)"""
    run.player.stall_timeout = None
    while run.player.next_deadline() is not None:
        run.wait()
    return run.out


def check_cancelled(out: list[Any], text: str, reason: str = "client_cancelled") -> None:
    types = [e["type"] for e in out if isinstance(e, dict) and e["type"] != "conversation.item.truncated"]
    after = types[types.index("response.output_text.delta") :]
    assert after.count("response.output_text.delta") == len(text.split())
    assert after[after.index("response.output_text.done") :] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "conversation.item.done", "response.done", "rate_limits.updated",
    ]
    by_type = {e["type"]: e for e in out if isinstance(e, dict)}
    assert by_type["response.output_text.done"]["text"] == text
    assert by_type["response.content_part.done"]["part"] == {"type": "text", "text": text}
    item = by_type["response.output_item.done"]["item"]
    assert item["status"] == "incomplete" and item["content"] == [{"type": "output_text", "text": text}]
    assert by_type["conversation.item.done"]["item"] == item
    response = by_type["response.done"]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": reason}
    assert response["output"] == [item] and response["id"] == "resp_1"


@pytest.mark.parametrize("steps", [UNINTERRUPTED, CANCELLED], ids=["recording-without", "recording-with-a-later-cancel"])
def test_a_cancel_earlier_than_recorded_stops_the_deltas_and_ends_the_response_cancelled(steps: list[Any]) -> None:
    run = paced(steps)
    run.send(C("response.create")[1])
    until_deltas(run, 2)
    run.send({"type": "response.cancel"})
    check_cancelled(ending(run), "One two ")
    report = run.report
    assert report.ok and report.complete, str(report)
    [i] = report.interruptions
    assert (i.by, i.response_id, i.sent_deltas, i.recorded) == ("response.cancel", "resp_1", 2, steps is CANCELLED)
    assert i.synthesised[-1] == "response.done"
    assert "interruptions followed:" in str(report)


def test_a_cancel_where_the_recording_has_it_plays_the_recording_unchanged() -> None:
    run = paced(CANCELLED)
    run.send(C("response.create")[1])
    until_deltas(run, 5)
    run.send({"type": "response.cancel"})
    ending(run)
    recorded = [e for d, e in CANCELLED if d == "server"]
    assert run.out == recorded
    assert run.report.ok and run.report.complete and not run.report.interruptions


def test_nothing_is_synthesised_without_pacing_when_the_response_is_already_done() -> None:
    run = Run(*recording(*UNINTERRUPTED))
    run.send(C("response.create")[1])
    new = run.send({"type": "response.cancel"})
    assert [e["type"] for e in new] == ["error"]
    assert new[0]["error"]["code"] == "response_cancel_not_active"  # what the API answers
    assert run.report.ok and run.report.complete


def test_a_cancel_of_a_response_id_never_handed_out_is_a_mismatch() -> None:
    run = Run(*recording(*UNINTERRUPTED))
    run.send({"type": "response.cancel", "response_id": "resp_unknown"})
    assert [m.kind for m in run.report.mismatches] == ["unexpected"]


def test_a_truncate_of_the_item_being_played_interrupts_it_and_is_answered() -> None:
    run = paced(UNINTERRUPTED)
    run.send(C("response.create")[1])
    until_deltas(run, 3)
    run.send({"type": "conversation.item.truncate", "item_id": "item_A", "content_index": 0, "audio_end_ms": 120})
    out = ending(run)
    check_cancelled(out, "One two three ")
    truncated = out[-1] if out[-1]["type"] == "conversation.item.truncated" else next(
        e for e in out if e["type"] == "conversation.item.truncated")
    assert (truncated["item_id"], truncated["content_index"], truncated["audio_end_ms"]) == ("item_A", 0, 120)
    assert run.report.ok


def test_a_clear_of_the_output_audio_interrupts_and_is_answered_first() -> None:
    run = paced(UNINTERRUPTED)
    run.send(C("response.create")[1])
    until_deltas(run, 1)
    run.send({"type": "output_audio_buffer.clear"})
    out = ending(run)
    check_cancelled(out, "One ")
    types = [e["type"] for e in out]
    assert types.index("output_audio_buffer.cleared") == types.index("response.output_text.delta") + 1
    assert next(e for e in out if e["type"] == "output_audio_buffer.cleared")["response_id"] == "resp_1"


def test_a_truncate_at_another_audio_end_ms_than_recorded_is_no_mismatch() -> None:
    steps = [*UNINTERRUPTED,
             C("conversation.item.truncate", item_id="item_A", content_index=0, audio_end_ms=350),
             S("conversation.item.truncated", item_id="item_A", content_index=0, audio_end_ms=350)]
    run = Run(*recording(*steps))
    run.send(C("response.create")[1])
    new = run.send({"type": "conversation.item.truncate", "item_id": "item_A", "content_index": 0, "audio_end_ms": 1234})
    assert new[-1]["type"] == "conversation.item.truncated" and new[-1]["audio_end_ms"] == 1234
    assert run.report.ok and run.report.complete


def test_frames_a_writer_still_held_are_withdrawn_and_left_out_of_the_ending() -> None:
    index, conn = recording(*UNINTERRUPTED)
    run = Run(index, conn)
    run.player.receive(json.dumps(C("response.create")[1]), 0.001)
    actions = run.player.poll(0.001)  # everything, handed to a writer that has not written it
    held = [f for a in actions if isinstance(a, Send) for f in a.frames]
    written, pending = held[:6], held[6:]  # response.created... up to the second delta

    class Writer:  # a writer that wrote 6 of the frames it holds
        frames, written = held, 6

    run.player.holding = Writer()
    run.player.receive('{"type":"response.cancel"}', 0.002)
    assert run.player.interruptions == 1
    kept = run.player.withdraw(pending)
    assert [f.type for f in kept] == ["rate_limits.updated"]
    made = [json.loads(d) for a in run.player.poll(0.002) if isinstance(a, Send) for d, _ in a.messages()]
    assert made[0]["text"] == "One two " and made[-1]["response"]["status"] == "cancelled"
    assert [f.type for f in written][-1] == "response.output_text.delta"
    assert run.report.ok and not run.report.unplayed


# -- server VAD: speech during a response --------------------------------------------------------


def chunk(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 4800).decode()  # 100 ms of PCM16


VAD = [
    S("session.created", session={"id": "sess_1", "audio": {"input": {"turn_detection": {"type": "server_vad"}}}}),
    C("input_audio_buffer.append", audio=chunk(1)),
    S("input_audio_buffer.speech_started", audio_start_ms=0, item_id="item_U"),
    C("input_audio_buffer.append", audio=chunk(2)),
    S("input_audio_buffer.speech_stopped", audio_end_ms=200, item_id="item_U"),
    S("input_audio_buffer.committed", item_id="item_U"),
    *RESPONSE,
    *done_events("One two three four five."),
    C("input_audio_buffer.append", audio=chunk(3)),
    S("input_audio_buffer.speech_started", audio_start_ms=200, item_id="item_U2"),
]


def test_speech_over_a_response_with_server_vad_cancels_it_turn_detected() -> None:
    run = paced(VAD)
    run.send(VAD[1][1])
    run.send(VAD[3][1])
    until_deltas(run, 2)
    run.send(VAD[-2][1])  # the user speaks again while the response plays
    out = ending(run)
    types = [e["type"] for e in out]
    i = types.index("input_audio_buffer.speech_started", types.index("response.created"))
    assert types[i + 1 : i + 2] == ["response.output_text.done"]
    check_cancelled(out, "One two ", reason="turn_detected")
    [interruption] = run.report.interruptions
    assert interruption.by == "speech" and interruption.reason == "turn_detected"


def test_speech_over_a_response_without_interrupt_response_does_not_cancel() -> None:
    steps = list(VAD)
    steps[0] = S("session.created", session={"audio": {"input": {"turn_detection": {"type": "server_vad", "interrupt_response": False}}}})
    run = paced(steps)
    run.send(steps[1][1])
    run.send(steps[3][1])
    until_deltas(run, 2)
    run.send(steps[-2][1])
    out = ending(run)
    assert [e["type"] for e in out].count("response.output_text.delta") == 5
    assert not run.report.interruptions


# -- what is synthesised --------------------------------------------------------------------------


def test_synthesise_builds_the_api_s_ending_from_what_was_sent_in_the_session_s_names() -> None:
    sent = Sent("resp_9")
    for event in [
        {"type": "response.created", "response": {"id": "resp_9", "status": "in_progress"}},
        {"type": "response.output_item.added", "response_id": "resp_9", "output_index": 0,
         "item": {"id": "item_9", "type": "message", "role": "assistant", "content": []}},
        {"type": "conversation.item.created", "item": {"id": "item_9"}},
        {"type": "response.content_part.added", "item_id": "item_9", "content_index": 0, "part": {"type": "audio"}},
        {"type": "response.audio_transcript.delta", "item_id": "item_9", "content_index": 0, "delta": "Hel"},
        {"type": "response.audio.delta", "item_id": "item_9", "content_index": 0, "audio_bytes": 4800},
        {"type": "response.output_item.added", "response_id": "resp_9", "output_index": 1,
         "item": {"id": "call_9", "type": "function_call", "call_id": "c1", "name": "f", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "item_id": "call_9", "delta": '{"a":'},
    ]:
        sent.add(event)
    numbers = iter(range(1, 100))
    made = synthesise(sent, [], "client_cancelled", protocol="beta", number=lambda: next(numbers))
    assert [e["type"] for e in made] == [
        "response.audio.done", "response.audio_transcript.done", "response.content_part.done",
        "response.output_item.done", "response.function_call_arguments.done", "response.output_item.done",
        "response.done",
    ]
    assert made[1]["transcript"] == "Hel" and made[4]["arguments"] == '{"a":'
    assert made[3]["item"]["content"] == [{"type": "audio", "transcript": "Hel"}]
    response = made[-1]["response"]
    assert response["status"] == "cancelled" and [o["id"] for o in response["output"]] == ["item_9", "call_9"]
    assert made[0]["event_id"] == "event_rtreplay_1"


# -- real clients ----------------------------------------------------------------------------------


def _recorded_deltas_before_cancel(name: str) -> int:
    """How many deltas of the interrupted response the recording has before its cancel."""
    from rtreplay.codec import load

    count = 0
    for frame in load(CASSETTES / name).connections[0].frames:
        event = frame.event()
        if frame.dir == "client" and event.get("type") == "response.cancel":
            return count
        if frame.dir == "server" and event.get("type", "").endswith(".delta") and event["type"].startswith("response."):
            count += 1
    return count


def interruption_plan(whole: bool) -> list[dict[str, Any]]:
    """cassettes/interruption.jsonl's client, cancelling at the first audio delta (the
    recording cancelled after three, and ten deltas), then truncating what it played; with
    ``whole``, on to the recording's next response (paced too: it takes seconds)."""
    first, second = _mic_split("interruption", "response.output_audio.delta")
    return [
        until("session.created"),
        send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {
            "type": "server_vad", "silence_duration_ms": 500, "interrupt_response": False}}}}}),
        until("session.updated"),
        *_appends(first),
        until("response.output_audio.delta"),
        send({"type": "response.cancel"}),
        until("response.done"),
        *_appends(second),
        send({"type": "conversation.item.truncate", "audio_end_ms": "${played_ms}", "content_index": 0,
              "item_id": "${response.output_item.added:item.id}"}),
        until("conversation.item.truncated"),
        *([until("response.done"), until("rate_limits.updated")] if whole else []),
    ]


def uninterrupted_plan(name: str) -> list[dict[str, Any]]:
    if name == "text-chat":
        head = [send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"], "instructions": "You are a concise assistant. Answer in one sentence."}}),
                send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is the capital of Australia?"}]}}),
                send({"type": "response.create"})]
        return [until("session.created"), *head, until("response.output_text.delta"), until("response.output_text.delta"),
                send({"type": "response.cancel"}), until("response.done"), until("rate_limits.updated")]
    return [
        until("session.created"),
        send({"type": "session.update", "session": {"type": "realtime", "instructions": "You are a friendly voice assistant. Keep answers short.",
              "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}, "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}}),
        until("session.updated"),
        *_appends(list(_mic(name))),
        until("response.output_audio.delta"),
        send({"type": "response.cancel"}),
        until("response.done"),
    ]


def response_events(seen: Seen, response_id: str) -> list[dict[str, Any]]:
    return [e for e in seen.events if e.get("response_id") == response_id
            or (isinstance(e.get("response"), dict) and e["response"].get("id") == response_id)]


def check_client_saw_a_cancel(seen: Seen, server: ReplayServer, recorded_deltas: int) -> None:
    report = server.report
    assert report.ok, str(report)
    [interruption] = [i for i in report.interruptions if i.response_id is not None]
    events = response_events(seen, interruption.response_id)  # type: ignore[arg-type]
    deltas = [e for e in events if e["type"].endswith(".delta")]
    # Every delta the client got was sent before the server had its cancel; none after.
    assert len(deltas) == interruption.sent_deltas < recorded_deltas
    types = [e["type"] for e in events]
    assert types.index("response.done") > max(i for i, t in enumerate(types) if t.endswith(".delta"))
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
    said = "".join(e.get("delta", "") for e in deltas if not e["type"].endswith("output_audio.delta"))
    item = done["output"][0]
    content = item["content"][0]
    assert content.get("transcript", content.get("text")) == said
    assert item["status"] == "incomplete"


CASES = [
    ("interruption", "interruption.jsonl"),
    ("text-chat", "text-chat.jsonl"),
    ("audio-vad-real", "audio-vad-real.jsonl"),
]


@pytest.mark.parametrize("client", sorted(DRIVERS))
@pytest.mark.parametrize(("name", "path"), CASES, ids=[c[0] for c in CASES])
async def test_a_client_cancelling_earlier_than_recorded_gets_no_delta_after_its_cancel(name: str, path: str, client: str) -> None:
    reason = skip_reason(client)
    if reason:
        pytest.skip(reason)
    whole = client == "openai-async"  # one client goes on to the next response
    steps = interruption_plan(whole) if name == "interruption" else uninterrupted_plan(name)
    # Deltas 150 ms apart: the client's cancel lands well before the next one is due.
    async with ReplayServer(CASSETTES / path, latency="rate=6.67") as server:
        seen = await DRIVERS[client](Target(server), steps)
    if name == "interruption":
        check_client_saw_a_cancel(seen, server, _recorded_deltas_before_cancel(path))
        truncated = seen.first("conversation.item.truncated")
        audio = sum(len(base64.b64decode(e["delta"])) for e in response_events(seen, server.report.interruptions[0].response_id or "")
                    if e["type"] == "response.output_audio.delta")
        assert truncated["audio_end_ms"] == audio // 48  # what the client played, not the recorded 350
        if whole:  # matching went on with what the recording did next
            assert seen.types[-3:] == ["conversation.item.done", "response.done", "rate_limits.updated"]
            assert server.report.complete, str(server.report)
    else:  # the recording has no interruption: it had every delta of the response
        check_client_saw_a_cancel(seen, server, _recorded_deltas_before_cancel(path))


async def test_openai_agents_own_interruption_handling_is_followed() -> None:
    """openai-agents' ``RealtimeModelSendInterrupt``: it truncates the audio it played (and
    cancels when the session does not): the replay ends the response where it was."""
    import asyncio

    from agents.realtime.model_events import RealtimeModelAudioInterruptedEvent
    from agents.realtime.model_inputs import RealtimeModelSendInterrupt, RealtimeModelSendRawMessage
    from agents.realtime.openai_realtime import OpenAIRealtimeWebSocketModel

    raw: list[dict[str, Any]] = []
    other: list[Any] = []
    rejected: list[str] = []
    first_audio = asyncio.Event()
    finished = asyncio.Event()

    class Listener:
        async def on_event(self, event: Any) -> None:
            if event.type == "raw_server_event":
                raw.append(event.data)
                if event.data.get("type") == "response.output_audio.delta":
                    first_audio.set()
                if event.data.get("type") == "response.done":
                    finished.set()
            elif event.type == "exception" or (event.type == "error" and isinstance(event.error, Exception)):
                rejected.append(repr(event))
            else:
                other.append(event)

    async with ReplayServer(CASSETTES / "audio-vad-real.jsonl", match="type", latency="rate=6.67") as server:
        model = OpenAIRealtimeWebSocketModel()
        model.add_listener(Listener())
        await model.connect({"url": Target(server).realtime_url({"model": "gpt-realtime"}),
                             "api_key": clients.API_KEY, "initial_model_settings": {"tracing": None}})
        try:
            for audio in _mic("audio-vad-real"):
                await model.send_event(RealtimeModelSendRawMessage(message={"type": "input_audio_buffer.append", "other_data": {"audio": audio}}))
            await asyncio.wait_for(first_audio.wait(), timeout(15))
            await model.send_event(RealtimeModelSendInterrupt())
            await asyncio.wait_for(finished.wait(), timeout(15))
        finally:
            await model.close()
    assert rejected == []
    assert any(isinstance(e, RealtimeModelAudioInterruptedEvent) for e in other)
    done = next(e for e in raw if e.get("type") == "response.done")["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
    types = [e["type"] for e in raw]
    assert "response.output_audio.delta" not in types[types.index("response.done") :]
    truncate = [r.event for r in server.received if isinstance(r.event, dict) and r.event.get("type") == "conversation.item.truncate"]
    assert truncate, "the agents SDK truncated the audio it had played"
    [interruption] = [i for i in server.report.interruptions if i.response_id is not None]
    assert interruption.by == "conversation.item.truncate"
    assert not [m for m in server.report.mismatches if m.kind not in ("unexpected", "after_end")], str(server.report)


def test_with_fresh_ids_the_client_s_ids_interrupt_and_the_ending_carries_them() -> None:
    run = paced(UNINTERRUPTED, fresh_ids=True)
    run.send(C("response.create")[1])
    until_deltas(run, 2)
    created = next(e for e in run.out if e["type"] == "response.created")["response"]["id"]
    item = next(e for e in run.out if e["type"] == "response.output_item.added")["item"]["id"]
    assert created != "resp_1" and item != "item_A"  # this connection's own IDs
    run.send({"type": "response.cancel", "response_id": created})
    run.send({"type": "conversation.item.truncate", "item_id": item, "content_index": 0, "audio_end_ms": 5})
    out = ending(run)
    done = next(e for e in out if e["type"] == "response.done")["response"]
    assert done["id"] == created and done["status"] == "cancelled"
    assert done["output"][0]["id"] == item
    assert "resp_1" not in json.dumps(out) and "item_A" not in json.dumps(out)
    truncated = next(e for e in out if e["type"] == "conversation.item.truncated")
    assert truncated["item_id"] == item and truncated["audio_end_ms"] == 5
    assert run.report.ok, str(run.report)
