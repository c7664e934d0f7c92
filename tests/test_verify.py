"""``rtreplay verify``: a recording checked against the live API (here the scripted one,
changed as the API may change): drift is reported, wording never is; nothing is written
unless asked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtreplay.cli import main
from rtreplay.codec import load
from rtreplay.driver import scripts
from rtreplay.verify import compare, verify

from .conftest import CASSETTES, timeout
from .upstream import Drift, ScriptedUpstream

KEY = "sk-verify-test-0123456789abcdef"


@pytest.fixture
async def baseline(tmp_path: Path) -> Path:
    """A cassette recorded from today's (scripted) API: the bundled function-call session's
    client re-recorded there with ``record_to``."""
    path = tmp_path / "baseline.jsonl"
    async with ScriptedUpstream() as api:
        report = await verify(CASSETTES / "function-call.jsonl", api.websocket_base_url, api_key=KEY,
                              speed=0, timeout=timeout(5), record_to=path)
    assert report.written == path
    return path


async def drift_against(cassette: Path, **api: object) -> list[str]:
    async with ScriptedUpstream(**api) as up:  # type: ignore[arg-type]
        report = await verify(cassette, up.websocket_base_url, api_key=KEY, speed=0, timeout=timeout(2))
    return [str(d) for d in report.drift]


async def test_the_re_recording_is_a_cassette_that_replays_and_holds_no_key(baseline: Path) -> None:
    text = baseline.read_text()
    assert KEY not in text
    cassette = load(baseline)
    (conn,) = cassette.connections
    assert conn.open.headers["authorization"] == "Bearer REDACTED"
    assert [f.dir for f in conn.frames].count("client") == 5
    assert conn.close is not None and conn.close.by == "client"
    assert len(scripts(baseline)[0].expectations) > 20


async def test_a_re_chunked_re_worded_session_is_no_drift(baseline: Path) -> None:
    assert await drift_against(baseline, text="Entirely other words, and more of them this time.", words_per_delta=3) == []


async def test_an_added_field_is_drift(baseline: Path) -> None:
    assert await drift_against(baseline, drift=Drift(add_fields={"response.done": {"service_tier": "default"}})) == [
        "response.done: field added: service_tier (string)"
    ]


# Slow: the session waits out its timeout twice for the dropped events (4 s). A type that
# disappeared is drift in the default run too: test_nothing_is_written_unless_asked here, and
# test_driving_doc's run of the documented example (which drops conversation.item.done).
@pytest.mark.slow
async def test_a_removed_event_type_is_drift(baseline: Path) -> None:
    assert await drift_against(baseline, drift=Drift(drop_types=frozenset({"conversation.item.done"}))) == [
        "disappeared: conversation.item.done (recorded 4 times, not sent now)"
    ]


async def test_a_renamed_event_is_drift(baseline: Path) -> None:
    renamed = Drift(rename_types={"response.output_text.delta": "response.text.delta"})
    assert await drift_against(baseline, drift=renamed) == [
        "renamed: response.output_text.delta -> response.text.delta (the same fields under a new name)"
    ]


async def test_a_refused_handshake_is_drift(baseline: Path) -> None:
    (only,) = await drift_against(baseline, refuse=403)
    assert only.startswith("refusal: the server refused the connection with HTTP 403")


def test_fields_that_change_type_are_drift_and_nullable_ones_are_not() -> None:
    recorded = [{"type": "x", "a": 1, "b": None, "c": {"d": "s"}}, {"type": "x", "a": 2, "b": "t", "c": {"d": "u"}}]
    live = [{"type": "x", "a": "one", "b": None, "c": {"d": "v"}}]
    assert [str(d) for d in compare(recorded, live)] == ["x: field type: a number -> string"]


def test_nothing_is_written_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    cassette = tmp_path / "c.jsonl"
    cassette.write_bytes((CASSETTES / "text-response.jsonl").read_bytes())
    before = cassette.read_bytes()
    with ScriptedUpstream(drift=Drift(drop_types=frozenset({"rate_limits.updated"}))).in_thread() as api:
        status = main(["verify", str(cassette), "--upstream", api.websocket_base_url, "--speed", "0", "--timeout", "1"])
    out = capsys.readouterr().out
    assert status == 1
    assert "disappeared: rate_limits.updated (recorded 1 times, not sent now)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]
    assert cassette.read_bytes() == before


def test_the_command_writes_a_new_cassette_when_asked_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    new = tmp_path / "new.jsonl"
    with ScriptedUpstream().in_thread() as api:
        status = main(["verify", str(CASSETTES / "text-response.jsonl"), "--upstream", api.websocket_base_url,
                       "--speed", "0", "--record-to", str(new), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["written"] == str(new) and new.exists()
    # The scripted API's shapes are not the bundled cassette's (no obfuscation, fewer usage details).
    assert status == 1 and any(d["kind"] == "field removed" for d in doc["drift"])
    assert KEY not in new.read_text()


def test_an_endpoint_that_cannot_be_reached_is_not_drift_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedUpstream().in_thread() as api:
        base = api.websocket_base_url  # a port nothing listens on once it stops
    status = main(["verify", str(CASSETTES / "text-response.jsonl"), "--upstream", base])
    out = capsys.readouterr().out
    assert status == 2
    assert ": could not verify: cannot connect: " in out and "difference" not in out
    assert main(["verify", str(CASSETTES / "text-response.jsonl"), "--upstream", base, "--timeout", "0"]) == 2
    assert "timeout must be a number of seconds > 0" in capsys.readouterr().err
