"""The loose schema check: bundled cassettes pass, broken events are named precisely."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtreplay.cassette import Close, Frame, Header, Open
from rtreplay.cli import main
from rtreplay.codec import CassetteWriter
from rtreplay.validate import check_event, event_schema, validate_cassette

from .conftest import CASSETTES, REPO

SHARED = REPO.parent / "shared" / "realtime"
BUNDLED = sorted(CASSETTES.glob("**/*.jsonl"))


def write(path: Path, frames: list[tuple[str, Any]], protocol: str = "ga") -> Path:
    """A one-connection cassette whose frames are (dir, event-or-raw-message) pairs."""
    with CassetteWriter(path, header=Header(created="2026-01-01T00:00:00Z")) as w:
        w.write(Open(conn=0, protocol=protocol))  # type: ignore[arg-type]
        for i, (direction, event) in enumerate(frames):
            message = event if isinstance(event, (str, bytes)) else json.dumps(event)
            w.write(Frame.from_message(0, i / 100, direction, message))  # type: ignore[arg-type]
        w.write(Close(0, 1.0))
    return path


CREATED = {"type": "session.created", "event_id": "event_1", "session": {"type": "realtime"}}


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_every_bundled_cassette_passes(path: Path) -> None:
    assert validate_cassette(path) == []


def test_cli_on_all_bundled_cassettes_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *map(str, BUNDLED)]) == 0
    out, err = capsys.readouterr()
    # The beta cassette replays, but validate says it cannot be re-recorded, and how to move on.
    [beta] = out.splitlines()
    assert beta.startswith(f"{CASSETTES / 'beta-text.jsonl'}:2: warning: connection 0: recorded with the beta protocol")
    assert "beta_api_shape_disabled" in beta and "cannot be re-recorded" in beta
    assert f"rtreplay migrate {CASSETTES / 'beta-text.jsonl'}" in beta
    assert err.count(": ok") == len(BUNDLED) - 1 and "beta-text.jsonl: 1 warning" in err


def test_broken_events_are_named_with_file_line_connection_and_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "broken.jsonl",
        [
            ("server", CREATED),
            ("client", {"type": "response.create"}),
            ("server", {"type": "response.text.delta", "event_id": "e2", "delta": "x"}),
            ("server", {"type": "response.output_text.delta", "event_id": "e3", "response_id": "r", "item_id": "i", "output_index": 0, "content_index": 0}),
            ("server", {"type": "session.update", "event_id": "e4", "session": {}}),
            ("client", {"type": "respons.create"}),
            ("client", {"response": {}}),
            ("server", "not json at all"),
            ("server", b"\x00\x01"),
            ("server", [1, 2]),
            ("server", {"type": "rate_limits.updated", "rate_limits": []}),
        ],
    )
    assert main(["validate", "--strict", str(path)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    # Line 1 is the header, 2 the open record, so frame i is on line i + 3.
    assert lines == [
        f"{path}:5: connection 0, server event 'response.text.delta': unknown GA server event type "
        "'response.text.delta': it is a beta event name; is the connection's protocol right "
        "(the open record says 'ga')?",
        f"{path}:6: connection 0, server event 'response.output_text.delta': missing required field 'delta' (GA schema)",
        f"{path}:7: connection 0, server event 'session.update': unknown GA server event type "
        "'session.update': it is a client event; was the frame's 'dir' recorded backwards?",
        f"{path}:8: connection 0, client event 'respons.create': unknown GA client event type "
        "'respons.create'; did you mean 'response.create'? (--strict: rtreplay's schema, "
        "openai/openai-openapi@f85dbe223d40, does not know it)",
        f"{path}:9: connection 0, client event (no type): no 'type' field",
        f"{path}:10: connection 0, server event (no type): a text frame that is not JSON: Realtime events are JSON objects",
        f"{path}:11: connection 0, server event (no type): a binary frame: the Realtime API sends only JSON text frames",
        f"{path}:12: connection 0, server event (no type): not a JSON object but a JSON list: every Realtime event is an object",
        f"{path}:13: connection 0, server event 'rate_limits.updated': missing required field 'event_id' (GA schema)",
    ]
    assert err.strip() == f"{path}: 9 problems"
    # Without --strict, the unknown type of a plausible shape is a warning.
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert f"{path}:8: warning: connection 0, client event 'respons.create': unknown GA client event type " in out
    assert "(a plausible shape: a newer API's event replays as recorded; --strict makes this an error)" in out
    assert err.strip() == f"{path}: 8 problems, 1 warning"


def test_new_event_types_are_warnings_and_strict_makes_them_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    future = {"type": "response.output_image.delta", "event_id": "e5", "response_id": "r", "delta": "AAAA"}
    path = write(tmp_path / "new.jsonl", [("server", CREATED), ("client", {"type": "response.create"}), ("server", future)])
    assert validate_cassette(path) == []
    [warning] = validate_cassette(path, warnings=True)
    assert warning.severity == "warning" and warning.line == 5
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "warning: connection 0, server event 'response.output_image.delta'" in out
    assert err.strip() == f"{path}: 1 warning"
    assert main(["validate", "--strict", str(path)]) == 1
    [problem] = validate_cassette(path, strict=True)
    assert problem.severity == "error" and "--strict" in problem.message
    # Not of a plausible shape: a server event without its event_id, a name that is no event name.
    odd = write(tmp_path / "odd.jsonl", [("server", CREATED), ("server", {"type": "response.output_image.delta"}),
                                         ("server", {"type": "Not An Event!", "event_id": "e"})])
    assert [p.line for p in validate_cassette(odd)] == [4, 5]


def test_each_endpoint_is_checked_against_its_own_events(tmp_path: Path) -> None:
    closed = {"type": "session.closed", "event_id": "e2"}
    delta = {"type": "session.output_transcript.delta", "event_id": "e3", "delta": " hola"}
    with CassetteWriter(tmp_path / "endpoints.jsonl", header=Header(created="2026-01-01T00:00:00Z")) as w:
        w.write(Open(conn=0, path="/v1/realtime/translations", query={"model": "gpt-realtime-translate"}))
        for i, (direction, event) in enumerate([("server", CREATED), ("client", {"type": "session.close"}),
                                                ("server", delta), ("server", closed),
                                                ("server", {"type": "response.done", "event_id": "e4", "response": {}})]):
            w.write(Frame.from_message(0, i / 100, direction, json.dumps(event)))  # type: ignore[arg-type]
        w.write(Close(0, 1.0))
        w.write(Open(conn=1, path="/voice-live/realtime", query={"api-version": "2025-10-01", "model": "gpt-realtime"}))
        stamp = {"type": "response.audio_timestamp.delta", "event_id": "e", "response_id": "r", "item_id": "i",
                 "output_index": 0, "content_index": 0, "audio_offset_ms": 0, "audio_duration_ms": 280,
                 "text": "Hello", "timestamp_type": "word"}
        w.write(Frame.from_message(1, 0.1, "server", json.dumps(stamp)))
        w.write(Frame.from_message(1, 0.2, "server", json.dumps({"type": "response.audio.delta", "event_id": "e"})))
        w.write(Close(1, 1.0))
        w.write(Open(conn=2, path="/v1/realtime/future"))
        w.write(Frame.from_message(2, 0.1, "server", json.dumps({"whatever": 1})))
        w.write(Close(2, 1.0))
    found = validate_cassette(tmp_path / "endpoints.jsonl", warnings=True)
    assert [(p.line, p.severity) for p in found] == [(7, "warning"), (11, "error"), (13, "warning")]
    assert "unknown translation server event type 'response.done'" in found[0].message
    assert found[1].message == (
        "missing required fields 'response_id', 'item_id', 'output_index', 'content_index', 'delta' (voice-live schema)"
    )
    assert str(found[2]).endswith("/v1/realtime/future is not an endpoint rtreplay knows: its events are not checked")


def test_a_bad_client_event_the_server_rejected_by_event_id_is_not_a_problem(tmp_path: Path) -> None:
    rejected = {"type": "error", "event_id": "e9", "error": {"type": "invalid_request_error", "code": "invalid_event",
                                                             "message": "The 'type' field is missing.", "param": None,
                                                             "event_id": "mine_1"}}
    excused = write(tmp_path / "ok.jsonl", [("server", CREATED), ("client", {"event_id": "mine_1"}), ("server", rejected)])
    assert validate_cassette(excused) == []
    # The same bad event with no error naming it is reported, once the connection ends.
    other = dict(rejected, error=dict(rejected["error"], event_id="someone_else"))
    reported = write(tmp_path / "bad.jsonl", [("server", CREATED), ("client", {"event_id": "mine_1"}), ("server", other)])
    [problem] = validate_cassette(reported)
    assert (problem.line, problem.direction, problem.message) == (4, "client", "no 'type' field")


def test_beta_connections_are_checked_against_the_beta_schema(tmp_path: Path) -> None:
    path = write(
        tmp_path / "beta.jsonl",
        [
            ("server", {"type": "response.text.delta", "event_id": "e", "response_id": "r", "item_id": "i",
                        "output_index": 0, "content_index": 0, "delta": "hi"}),
            ("server", {"type": "response.output_text.delta", "event_id": "e", "response_id": "r", "item_id": "i",
                        "output_index": 0, "content_index": 0, "delta": "hi"}),
        ],
        protocol="beta",
    )
    [problem] = validate_cassette(path)
    assert problem.line == 4
    assert "unknown BETA server event type 'response.output_text.delta': it is a GA event name" in problem.message


def test_unreadable_cassettes_exit_2_and_the_others_are_still_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("this is not a cassette\n")
    assert main(["validate", str(garbage), str(tmp_path / "missing.jsonl"), str(BUNDLED[0])]) == 2
    _, err = capsys.readouterr()
    assert f"rtreplay validate: error: {garbage}:1:" in err
    assert "missing.jsonl: no such cassette file" in err
    assert f"{BUNDLED[0]}: ok" in err


def test_a_cassette_cut_short_is_still_checked(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.jsonl", [("server", CREATED), ("server", {"type": "nope", "event_id": "e"})])
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 20])  # half of the close record
    [problem] = validate_cassette(path)
    assert problem.event_type == "nope"


def test_null_values_are_accepted_where_the_server_sends_them() -> None:
    # The real server sends null for fields the spec types as objects; only presence counts.
    done = {"type": "response.done", "event_id": "e", "response": None}
    added = {"type": "conversation.item.added", "event_id": "e", "previous_item_id": None, "item": {}}
    assert check_event(done, "server") == []
    assert check_event(added, "server") == []


@given(st.data())
def test_removing_any_required_field_is_reported_by_name(data: st.DataObject) -> None:
    protocol = data.draw(st.sampled_from(["ga", "beta"]))
    direction = data.draw(st.sampled_from(["client", "server"]))
    types = event_schema(protocol).types(direction)
    kind = data.draw(st.sampled_from(sorted(t for t, req in types.items() if req)))
    event = {"type": kind, **{name: None for name in types[kind]}}
    assert check_event(event, direction, protocol) == []
    dropped = data.draw(st.sampled_from(types[kind]))
    del event[dropped]
    [message] = check_event(event, direction, protocol)
    assert f"'{dropped}'" in message and "missing required field" in message


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/realtime (the published schemas) is not beside the repo")
@pytest.mark.parametrize("protocol,filename", [("ga", "events.schema.json"), ("beta", "events-beta.schema.json")])
def test_the_published_examples_of_every_event_pass(protocol: str, filename: str) -> None:
    schema = json.loads((SHARED / filename).read_text())
    checked = 0
    for direction in ("client", "server"):
        for kind, name in schema["x-event-types"][direction].items():
            for example in schema["$defs"][name].get("examples", []):
                if not isinstance(example, dict) or example.get("type") != kind:
                    continue  # the spec's own typo'd example (dtmf, leading space)
                assert check_event(example, direction, protocol) == [], (kind, example)  # type: ignore[arg-type]
                checked += 1
    assert checked > 30


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/realtime (the published schemas) is not beside the repo")
def test_the_shipped_schema_is_what_the_script_makes_from_the_published_one(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_schema.py"), "--shared", str(SHARED), "--out", str(tmp_path)],
        check=True, capture_output=True,
    )
    # The beta file is frozen; the GA events are the same from the extracted schema as from
    # the OpenAPI document the shipped file was made from (its source names that document).
    assert (tmp_path / "events-beta.json").read_text() == (REPO / "rtreplay" / "schema" / "events-beta.json").read_text()
    made, shipped = (json.loads((d / "events-ga.json").read_text()) for d in (tmp_path, REPO / "rtreplay" / "schema"))
    assert (made["client"], made["server"]) == (shipped["client"], shipped["server"]), (
        "rtreplay/schema/events-ga.json is stale: run python scripts/make_schema.py"
    )


def test_the_schema_script_reads_the_openapi_unions_and_the_translation_events(tmp_path: Path) -> None:
    """scripts/make_schema.py on a small OpenAPI document shaped like OpenAI's."""

    def event(kind: str, *required: str) -> dict[str, Any]:
        return {"type": "object", "properties": {"type": {"type": "string", "enum": [kind]}},
                "required": ["type", *required]}

    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    spec = {"info": {"title": "OpenAI API", "version": "9.9.9"}, "components": {"schemas": {
        "RealtimeClientEvent": {"anyOf": [ref("RealtimeClientEventSessionUpdate")]},
        "RealtimeServerEvent": {"anyOf": [ref("RealtimeServerEventError"), ref("RealtimeServerEventSessionCreated")]},
        "RealtimeClientEventSessionUpdate": event("session.update", "session"),
        "RealtimeClientEventTranscriptionSessionUpdate": event("transcription_session.update", "session"),
        "RealtimeServerEventError": event("error", "event_id", "error"),
        "RealtimeServerEventSessionCreated": event("session.created", "event_id", "session"),
        "RealtimeServerEventFutureThing": event("future.thing", "event_id"),
        "RealtimeTranslationClientEvent": {"anyOf": [ref("RealtimeTranslationClientEventSessionClose")]},
        "RealtimeTranslationServerEvent": {"anyOf": [ref("RealtimeServerEventError"), ref("RealtimeTranslationServerEventSessionClosed")]},
        "RealtimeTranslationClientEventSessionClose": event("session.close"),
        "RealtimeTranslationServerEventSessionClosed": event("session.closed", "event_id"),
    }}}
    (tmp_path / "openapi.json").write_text(json.dumps(spec))
    out = tmp_path / "schema"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_schema.py"), "--openapi", str(tmp_path / "openapi.json"),
                    "--commit", "abc123", "--out", str(out)], check=True, capture_output=True)
    ga = json.loads((out / "events-ga.json").read_text())
    assert ga["client"] == {"session.update": ["session"], "transcription_session.update": ["session"]}
    # Outside the unions: still a wire type (transcription_session.update, future.thing).
    assert ga["server"] == {"error": ["event_id", "error"], "future.thing": ["event_id"],
                            "session.created": ["event_id", "session"]}
    assert ga["source"]["commit"] == "abc123" and ga["source"]["api_version"] == "9.9.9"
    translation = json.loads((out / "events-translation.json").read_text())
    assert translation["client"] == {"session.close": []}
    assert translation["server"] == {"error": ["event_id", "error"], "session.closed": ["event_id"]}
    voice_live = json.loads((out / "events-voice-live.json").read_text())
    assert "response.audio_timestamp.delta" in voice_live["server"] and "response.audio.delta" in voice_live["server"]


def test_a_frame_earlier_than_the_one_before_it_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two frames swapped by hand: the cassette still replays (a warning, exit 0), but
    validate names the line, both times and the line of the later one before it."""
    lines = (CASSETTES / "text-chat.jsonl").read_text().splitlines()
    frames = [i for i, text in enumerate(lines) if '"kind":"frame"' in text]
    a, b = frames[3], frames[4]
    lines[a], lines[b] = lines[b], lines[a]
    path = tmp_path / "swapped.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert validate_cassette(path) == []
    [warning] = validate_cassette(path, warnings=True)
    assert warning.severity == "warning" and warning.line == b + 1 and warning.conn == 0
    assert "is earlier than the frame before it on this connection (t=" in warning.message
    assert f"line {a + 1})" in warning.message and "edited or made by hand" in warning.message
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"{path}:{b + 1}: warning: connection 0: a " in out
    assert err.strip() == f"{path}: 1 warning"
