"""``rtreplay drive --concurrency N --repeat M``: many sessions at once, each checked, and the
latency a user would feel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtreplay.cli import main
from rtreplay.loadtest import load, percentile
from rtreplay.server import ReplayServer

from .conftest import CASSETTES


async def test_sessions_at_once_are_each_checked_and_timed() -> None:
    async with ReplayServer(CASSETTES / "function-call.jsonl", repeat=True) as server:
        report = await load(CASSETTES / "function-call.jsonl", server.url, concurrency=4, repeat=2, speed=0)
    assert report.ok, report
    assert report.sessions == 8 and report.failed == 0
    assert len(report.connect) == len(report.first_event) == 8
    assert len(report.first_delta) == len(report.response) == 16  # two responses a session
    latency = report.latency()
    assert 0 <= latency["first_delta"]["p50"] <= latency["first_delta"]["p99"] <= latency["first_delta"]["max"]
    assert report.throughput()["sessions_per_s"] > 0
    assert report.client_events == 8 * 5


async def test_a_server_that_answers_otherwise_fails_every_session_and_shows_the_first() -> None:
    async with ReplayServer(CASSETTES / "function-call.jsonl", repeat=True, stall_timeout=0.3) as server:
        report = await load(CASSETTES / "text-response.jsonl", server.url, concurrency=2, repeat=1, speed=0, timeout=1)
    assert not report.ok and report.failed == 2
    assert report.first_failure is not None and "mismatch 1 of" in str(report)
    assert report.mismatches


def test_percentiles_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 90, 99, 100)] == [50, 90, 99, 100]
    assert percentile([3.0], 99) == 3.0


def test_the_command_prints_the_latency_table_and_writes_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with ReplayServer(CASSETTES / "text-response.jsonl", repeat=True).in_thread() as server:
        status = main(["drive", str(CASSETTES / "text-response.jsonl"), "--url", server.url, "--speed", "0",
                       "--concurrency", "3", "--repeat", "2", "--report", str(tmp_path / "load.json")])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "6 sessions (3 at once x 2)" in out and "6 as recorded, 0 with mismatches" in out
    assert "first delta of a response" in out and "throughput:" in out
    doc = json.loads((tmp_path / "load.json").read_text())
    assert doc["sessions"] == 6 and doc["latency_ms"]["first_event"]["count"] == 6
