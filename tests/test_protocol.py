"""What rtreplay knows of the Realtime protocol: the cause table row by row, IDs, audio."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from rtreplay.protocol import (
    G711_ALAW,
    G711_ULAW,
    GENERIC,
    PCM16,
    PROFILES,
    REALTIME,
    TRANSLATION,
    VOICE_LIVE,
    CauseTracker,
    Requirement,
    audio_format,
    audio_length,
    echoed_ids,
    profile_for,
    profile_for_path,
    server_info,
)

from .conftest import CASSETTES


class Walk:
    """Feed a recorded connection to a cause tracker, one event at a time."""

    def __init__(self) -> None:
        self.tracker: CauseTracker = REALTIME.causes()
        self.clients = 0

    def client(self, kind: str, **fields: Any) -> int:
        index = self.clients
        self.tracker.client(index, {"type": kind, **fields})
        self.clients += 1
        return index

    def server(self, kind: str, **fields: Any) -> Requirement:
        return self.tracker.server(server_info(json.dumps({"type": kind, **fields})))


def answered(req: Requirement, index: int) -> bool:
    """``req`` waits for client event ``index`` alone: its cause."""
    return req.after == index and not req.every


# Every row of the cause table: the client event, its answer, the answer's fields.
ROWS = [
    ("session.update", "session.updated", {"session": {}}),
    ("transcription_session.update", "transcription_session.updated", {"session": {}}),
    ("conversation.item.create", "conversation.item.created", {"item": {"id": "item_1"}}),
    ("conversation.item.create", "conversation.item.added", {"item": {"id": "item_1"}}),
    ("conversation.item.create", "conversation.item.done", {"item": {"id": "item_1"}}),
    ("conversation.item.retrieve", "conversation.item.retrieved", {"item": {"id": "item_1"}}),
    ("conversation.item.truncate", "conversation.item.truncated", {"item_id": "item_1"}),
    ("conversation.item.delete", "conversation.item.deleted", {"item_id": "item_1"}),
    ("input_audio_buffer.commit", "input_audio_buffer.committed", {"item_id": "item_1"}),
    ("input_audio_buffer.clear", "input_audio_buffer.cleared", {}),
    ("output_audio_buffer.clear", "output_audio_buffer.cleared", {"response_id": "resp_1"}),
    ("response.create", "response.created", {"response": {"id": "resp_1"}}),
]


def test_the_table_has_a_test_row_for_every_answer() -> None:
    assert {(c, s) for c, s, _ in ROWS} == {
        (client, server) for server, clients in REALTIME.answers.items() for client in clients
    }


@pytest.mark.parametrize(("client", "server", "fields"), ROWS, ids=[f"{s}" for _, s, _ in ROWS])
def test_each_answer_waits_for_its_cause_not_for_what_was_sent_after_it(
    client: str, server: str, fields: dict[str, Any]
) -> None:
    walk = Walk()
    assert walk.server("session.created", session={}).after == -1
    cause = walk.client(client)
    walk.client("conversation.item.create", item={"type": "message"})  # sent right after
    walk.client("response.create")
    assert answered(walk.server(server, **fields), cause)


def test_answers_go_to_the_earliest_unanswered_event_of_their_type() -> None:
    walk = Walk()
    first = walk.client("session.update", session={})
    second = walk.client("session.update", session={})
    assert answered(walk.server("session.updated"), first)
    assert answered(walk.server("session.updated"), second)
    assert walk.server("session.updated").every  # a third has no cause left: its position


def test_events_of_a_response_follow_the_response_create() -> None:
    walk = Walk()
    create = walk.client("response.create")
    walk.client("session.update", session={})
    walk.server("response.created", response={"id": "resp_1"})
    for kind, fields in [
        ("response.output_item.added", {"response_id": "resp_1", "item": {"id": "item_A"}}),
        ("conversation.item.added", {"item": {"id": "item_A"}}),
        ("response.content_part.added", {"response_id": "resp_1", "item_id": "item_A"}),
        ("response.output_audio.delta", {"response_id": "resp_1", "item_id": "item_A"}),
        ("response.function_call_arguments.done", {"response_id": "resp_1", "call_id": "c"}),
        ("conversation.item.done", {"item": {"id": "item_A"}}),
        ("response.done", {"response": {"id": "resp_1"}}),
        ("rate_limits.updated", {}),
    ]:
        assert answered(walk.server(kind, **fields), create), kind


def test_a_cancelled_response_finishes_after_the_cancel() -> None:
    walk = Walk()
    create = walk.client("response.create")
    walk.server("response.created", response={"id": "resp_1"})
    walk.server("response.output_item.added", response_id="resp_1", item={"id": "item_A"})
    cancel = walk.client("response.cancel")  # names no response: the one in progress
    walk.client("input_audio_buffer.append", audio="AAAA")
    assert answered(walk.server("response.output_item.done", response_id="resp_1", item={"id": "item_A"}), cancel)
    assert answered(walk.server("conversation.item.done", item={"id": "item_A"}), cancel)
    assert answered(walk.server("response.done", response={"id": "resp_1", "status": "cancelled"}), cancel)
    # Later answers are not the cancel's: it was answered by that response.done.
    walk.client("response.create")
    assert answered(walk.server("response.created", response={"id": "resp_2"}), create + 3)


def test_a_server_vad_response_follows_the_audio_commit() -> None:
    walk = Walk()
    walk.client("session.update", session={})
    walk.server("session.updated")
    for _ in range(3):
        walk.client("input_audio_buffer.append", audio="AAAA")
    started = walk.server("input_audio_buffer.speech_started", item_id="item_U")
    assert started == Requirement(3, True)  # voice activity: the audio before it
    last = walk.client("input_audio_buffer.append", audio="AAAA")
    committed = walk.server("input_audio_buffer.committed", item_id="item_U")
    assert (committed.after, committed.every) == (last, True)
    walk.client("input_audio_buffer.append", audio="AAAA")  # trailing audio, recorded before
    for kind, fields in [
        ("conversation.item.added", {"item": {"id": "item_U"}}),
        ("response.created", {"response": {"id": "resp_1"}}),
        ("conversation.item.input_audio_transcription.completed", {"item_id": "item_U"}),
        ("response.done", {"response": {"id": "resp_1"}}),
    ]:
        req = walk.server(kind, **fields)
        assert (req.after, req.every) == (last, True), kind


def test_an_error_answers_the_event_it_names_or_else_the_earliest_unanswered() -> None:
    walk = Walk()
    update = walk.client("session.update", session={}, event_id="evt_u")
    create = walk.client("response.create", event_id="evt_r")
    assert answered(walk.server("error", error={"event_id": "evt_r"}), create)
    assert answered(walk.server("error", error={"event_id": None}), update)
    assert walk.server("error", error={}).every  # nothing left unanswered: its position


def test_events_nobody_causes_keep_their_position() -> None:
    walk = Walk()
    assert walk.server("session.created", session={}) == Requirement(-1, True, "connect")
    walk.client("session.update", session={})
    walk.client("response.create")
    for kind in ("input_audio_buffer.timeout_triggered", "some.future_event"):
        assert walk.server(kind) == Requirement(1, True), kind
    assert walk.tracker.server(server_info(b"not json")) == Requirement(1, True)


@pytest.mark.parametrize("greeting", ["session.created", "conversation.created"])
def test_the_greeting_goes_out_on_connect_even_when_recorded_after_client_events(
    greeting: str,
) -> None:
    # A client that does not wait for session.created (the sync SDK streaming audio at
    # once) is recorded sending first; the replay must still greet a client that waits.
    walk = Walk()
    walk.client("session.update", session={})
    walk.client("input_audio_buffer.append", audio="AAAA")
    assert walk.server(greeting, session={}) == Requirement(-1, True, "connect")


def test_server_info_reads_types_ids_and_formats_without_decoding_payloads() -> None:
    info = server_info(
        b'{"type":"response.output_item.added","response_id":"resp_1","output_index":0,'
        b'"item":{"id":"item_A","call_id":"call_1"}}'
    )
    assert info.type == "response.output_item.added"
    assert set(info.ids) == {"resp_1", "item_A", "call_1"}
    assert (info.response_id, info.item_id) == ("resp_1", "item_A")
    created = server_info(
        b'{"type":"session.created","session":{"audio":{"input":{"format":{"type":"audio/pcma"}}}}}'
    )
    assert REALTIME.audio_format(created.session) is G711_ALAW
    assert server_info(b"[1]").type is None


# -- IDs a client echoes ---------------------------------------------------------------------------


def test_echoed_ids_are_found_where_clients_put_them() -> None:
    assert echoed_ids({"type": "conversation.item.truncate", "item_id": "item_A"}) == ("item_A",)
    assert echoed_ids(
        {"type": "conversation.item.create", "previous_item_id": "i0", "item": {"type": "function_call_output", "call_id": "call_1"}}
    ) == ("i0", "call_1")
    assert echoed_ids(
        {"type": "response.create", "response": {"input": [{"type": "item_reference", "id": "i1"}]}}
    ) == ("i1",)
    assert echoed_ids({"type": "session.update"}) == ()
    assert echoed_ids("not an event") == ()


# -- audio ----------------------------------------------------------------------------------------------


def test_audio_arithmetic() -> None:
    assert PCM16.bytes_per_second == 48_000 and PCM16.ms(48_000) == 1000
    assert PCM16.size(0.25) == 12_000 and PCM16.size(0.1) == 4_800
    assert G711_ULAW.bytes_per_second == 8_000 and G711_ULAW.ms(800) == 100
    for n in range(0, 40):
        assert audio_length(base64.b64encode(bytes(n)).decode()) == n


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}}, PCM16),
        ({"audio": {"input": {"format": {"type": "audio/pcmu"}}}}, G711_ULAW),
        ({"input_audio_format": "g711_alaw"}, G711_ALAW),
        ({"input_audio_format": "pcm16"}, PCM16),
        ({"type": "realtime", "instructions": "no audio here"}, None),
        ({"audio": {"input": {"format": {"type": "audio/opus"}}}}, None),
        (None, None),
    ],
)
def test_the_input_format_of_a_session(session: Any, expected: Any) -> None:
    assert audio_format(session) is expected


# -- endpoints ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/realtime", "/v1/realtime/", "/realtime", "/openai/realtime", "/openai/v1/realtime"]
)
def test_the_realtime_endpoint_serves_openai_and_azure_paths(path: str) -> None:
    assert profile_for_path(path) is REALTIME


@pytest.mark.parametrize("path", ["/", "/v1", "/v2/realtime", "/v1/realtime/calls", "/v1/responses"])
def test_other_paths_have_no_profile(path: str) -> None:
    assert profile_for_path(path) is None


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/v1/realtime", {"model": "gpt-realtime"}, "conversation"),
        ("/openai/realtime", {"api-version": "2025-04-01-preview", "deployment": "gpt-realtime"}, "conversation"),
        ("/openai/v1/realtime", {"model": "my-deployment"}, "conversation"),
        ("/openai/deployments/my-deployment/realtime", {"api-version": "2025-04-01-preview"}, "conversation"),
        ("/v1/realtime", {"call_id": "rtc_123"}, "sideband"),
        ("/v1/realtime/translations", {"model": "gpt-realtime-translate"}, "translation"),
        ("/v1/realtime/translations/", {}, "translation"),
        ("/voice-live/realtime", {"api-version": "2025-10-01", "model": "gpt-realtime"}, "voice-live"),
        ("/v2/realtime", {}, "generic"),
        ("/v1/realtime/future", {"model": "x"}, "generic"),
        ("/api/realtime/ws", {}, "generic"),
    ],
)
def test_the_profile_is_chosen_from_the_path_and_query(path: str, query: dict[str, str], name: str) -> None:
    profile = profile_for(path, query)
    assert profile is not None and profile.name == name


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/responses", "/v1/chat/completions"])
def test_a_path_without_a_realtime_segment_is_no_endpoint(path: str) -> None:
    assert profile_for(path, {}) is None


def test_only_the_generic_profile_warns_and_it_names_the_endpoint() -> None:
    assert [p.name for p in (*PROFILES, GENERIC) if p.warning] == ["generic"]
    assert GENERIC.audio_append is None and not GENERIC.answers and not GENERIC.echoed_ids
    assert GENERIC.warning is not None and "/v9/realtime/x" in GENERIC.warning.format(path="/v9/realtime/x")


def test_a_generic_connection_keeps_the_recorded_order() -> None:
    tracker = GENERIC.causes()
    tracker.client(0, {"type": "session.update", "session": {}})
    tracker.client(1, {"type": "input_audio_buffer.append", "audio": "AAAA"})
    req = tracker.server(server_info(b'{"type":"session.updated","session":{}}'))
    assert (req.after, req.every) == (1, True)


def test_the_translation_profile() -> None:
    tracker = TRANSLATION.causes()
    tracker.client(0, {"type": "session.update", "session": {}})
    tracker.client(1, {"type": "session.input_audio_buffer.append", "audio": "AAAA"})
    tracker.client(2, {"type": "session.close"})
    assert answered(tracker.server(server_info(b'{"type":"session.updated","session":{}}')), 0)
    # Translated output comes from the audio: it keeps its position after the audio.
    delta = tracker.server(server_info(b'{"type":"session.output_audio.delta","delta":"AAAA"}'))
    assert (delta.after, delta.every) == (2, True)
    assert answered(tracker.server(server_info(b'{"type":"session.closed"}')), 2)
    assert TRANSLATION.audio_append == "session.input_audio_buffer.append"
    assert TRANSLATION.response_created is None and "response.create" not in str(TRANSLATION.answers)


def test_voice_live_audio_is_measured_at_its_sampling_rate() -> None:
    fmt = VOICE_LIVE.audio_format({"input_audio_sampling_rate": 16000})
    assert fmt is not None and fmt.bytes_per_second == 32_000 and fmt.ms(3_200) == 100
    assert VOICE_LIVE.audio_format({"input_audio_format": "pcm16"}) is PCM16
    assert VOICE_LIVE.audio_format({"input_audio_format": "g711_ulaw", "input_audio_sampling_rate": 8000}) is G711_ULAW
    assert REALTIME.audio_format({"input_audio_sampling_rate": 16000}) is None  # an Azure option only


def test_mcp_approval_echoes_the_request_id() -> None:
    approval = {"type": "conversation.item.create",
                "item": {"type": "mcp_approval_response", "approval_request_id": "mcpr_123", "approve": True}}
    assert echoed_ids(approval) == ("mcpr_123",)
    create = {"type": "response.create",
              "response": {"input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_9"}]}}
    assert echoed_ids(create) == ("mcpr_9",)


def test_an_answer_naming_the_item_a_client_created_answers_that_event() -> None:
    walk = Walk()
    first = walk.client("conversation.item.create", item={"type": "function_call_output", "call_id": "call_A"})
    second = walk.client("conversation.item.create", item={"type": "function_call_output", "call_id": "call_B"})
    # The server answered B first: its answer follows B, not the earliest create.
    assert answered(walk.server("conversation.item.added", item={"id": "item_2", "call_id": "call_B"}), second)
    assert answered(walk.server("conversation.item.added", item={"id": "item_1", "call_id": "call_A"}), first)


def test_a_copied_cause_tracker_goes_on_as_the_original_would() -> None:
    # rtreplay.strategies tries other orders from a copy: the copy must not share state.
    from rtreplay import load
    from rtreplay.protocol import ServerInfo

    for name in ("interruption.jsonl", "parallel-tools.jsonl", "transcription.jsonl"):
        frames = load(CASSETTES / name).connections[0].frames
        tracker = REALTIME.causes()
        half = len(frames) // 2
        clients = 0

        def feed(t: Any, frame: Any, clients: int) -> tuple[Any, int]:
            if frame.dir == "client":
                t.client(clients, frame.event())
                return None, clients + 1
            return t.server(server_info(frame.payload_bytes()) or ServerInfo()), clients

        for frame in frames[:half]:
            _, clients = feed(tracker, frame, clients)
        copy = tracker.copy()
        ours, theirs, c1, c2 = [], [], clients, clients
        for frame in frames[half:]:
            r, c1 = feed(copy, frame, c1)
            ours.append(r)
        for frame in frames[half:]:
            r, c2 = feed(tracker, frame, c2)
            theirs.append(r)
        assert ours == theirs
