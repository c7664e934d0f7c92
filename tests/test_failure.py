"""The failure text and the JSON report, from a replay report built as plain data."""

from __future__ import annotations

import json

from rtreplay._index import CassetteIndex
from rtreplay.failure import NOTHING_CONNECTED, failure_text, loosening, report_json
from rtreplay.match import Difference
from rtreplay.report import AudioDifference, ConnectionProgress, Mismatch, ReplayReport

from .conftest import CASSETTES

RERECORD = "pytest --realtime-record-mode=all test_x.py::test_y"
STALL = Mismatch(
    "stall", 0, 0, 1, 1, 3, {"type": "conversation.item.create"}, None,
    "stall: the replay holds conversation.item.added until the client sends conversation.item.create",
    after=("session.update",), last_sent="session.updated",
    held="conversation.item.added (server event 3 of 17)", last_received="session.update",
)
CONTENT = Mismatch(
    "content", 0, 0, 1, 1, 3,
    {"type": "conversation.item.create", "item": {"text": "hello"}},
    {"type": "conversation.item.create", "item": {"text": "goodbye"}},
    'conversation.item.create differs from the recording: item.text: expected "hello", got "goodbye"',
    differences=(Difference("item.text", "hello", "goodbye"),),
)
AUDIO = AudioDifference(0, 0, 1, "before input_audio_buffer.commit", 1000, 900, 250)


def _report(*mismatches: Mismatch, played: list[bool] | None = None) -> ReplayReport:
    index = CassetteIndex.load(CASSETTES / "text-response.jsonl")
    [ic] = index.connections
    report = ReplayReport("x.jsonl", index.connections)
    matched = played if played is not None else [True, False, False]
    report.add_connection(ConnectionProgress(0, 0, ic.clients, ic.server_count, matched, sent=2))
    for m in mismatches:
        report.add_mismatch(m)
    return report


def _text(report: ReplayReport, **extra: object) -> str:
    return failure_text(report, headline="it failed.", cassette="x.jsonl", rerecord=RERECORD, **extra)  # type: ignore[arg-type]


def test_a_stall_says_what_was_held_and_awaited_then_the_advice_then_how_to_re_record() -> None:
    report = _report(STALL)
    report.add_audio(AUDIO)
    text = _text(report, advice=("If it legitimately needs longer: stall_timeout=30",))
    lines = text.splitlines()
    head = lines.index("mismatch 1 of 1 (stall): connection 0 (recorded connection 0), turn 1, client event 2 of 3")
    assert lines[head + 1 : head + 6] == [
        f"  {STALL.message}",
        "  after: session.update; last server event sent: session.updated",
        "  holds:    conversation.item.added (server event 3 of 17)",
        '  awaits:   {"type": "conversation.item.create"}',
        "  last received from the client: session.update",
    ]
    assert "  expected:" not in text  # a stall has no "got": the client sent nothing
    assert "audio accepted within the tolerance (not a failure):\n  connection 0" in text
    advice = lines.index("If it legitimately needs longer: stall_timeout=30")
    assert lines[advice + 1 : advice + 3] == ["If the new conversation is right, re-record this test:", f"    {RERECORD}"]
    assert loosening(report) is None and "loosen" not in text  # no match policy ends a stall


def test_a_content_mismatch_gives_each_difference_once_and_the_narrowest_loosening() -> None:
    text = _text(_report(CONTENT))
    assert text.count('item.text: expected "hello", got "goodbye"') == 1
    assert "  conversation.item.create differs from the recording in 1 field" in text
    assert text.endswith(
        "Or loosen matching just enough to accept what came:\n"
        '    @pytest.mark.realtime(match=MatchPolicy.default(ignore={"conversation.item.create": '
        '["item.text"]}))  # from rtreplay import MatchPolicy'
    )
    # The client raised the mock's error event: its message is not said again.
    shown = _text(_report(CONTENT), exception_text=f"RuntimeError: rtreplay: {CONTENT.summary}")
    assert "(the error above)" in shown and 'got "goodbye"' not in shown.split("expected:")[0]


def test_nothing_connected_asks_where_the_client_points() -> None:
    index = CassetteIndex.load(CASSETTES / "text-response.jsonl")
    text = _text(ReplayReport("x.jsonl", index.connections))
    assert NOTHING_CONNECTED in text and RERECORD in text


def test_the_json_report_holds_stalls_and_audio_differences() -> None:
    report = _report(STALL, CONTENT)
    report.add_audio(AUDIO)
    doc = json.loads(json.dumps(report_json(report)))
    assert (doc["ok"], doc["complete"], doc["cassette"]) == (False, False, "x.jsonl")
    assert [m["kind"] for m in doc["mismatches"]] == ["stall", "content"]
    [stall] = doc["stalls"]
    assert stall["held"] == "conversation.item.added (server event 3 of 17)"
    assert stall["last_received"] == "session.update" and stall["after"] == ["session.update"]
    [audio] = doc["audio"]
    assert (audio["expected_ms"], audio["got_ms"], audio["tolerance_ms"]) == (1000, 900, 250)
    assert audio["where"] == "before input_audio_buffer.commit" and "100 ms less audio" in audio["message"]
    assert doc["unplayed"][0]["missing_client_events"] == 2
    assert doc["loosening"] is None  # the stall: no policy would have helped
