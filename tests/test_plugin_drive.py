"""The ``realtime_drive`` fixture, end to end in a pytester project: a server driven with the
test's own cassette passes; one that answers otherwise fails the test with the drive report."""

from __future__ import annotations

import shutil

import pytest

from .conftest import CASSETTES

pytest_plugins = ["pytester"]

INNER_OPTIONS = ("-p", "no:hypothesispytest", "-p", "no:recording", "-p", "no:cacheprovider")

TESTS = '''
import pathlib

from rtreplay.server import ReplayServer

HERE = pathlib.Path(__file__).parent


def test_relay(realtime_drive):
    # The server under test: here a replay of the same cassette (the identity sandwich).
    with ReplayServer(HERE / "cassettes" / "test_relay" / "test_relay.jsonl").in_thread() as server:
        report = realtime_drive(server.url, speed=0)
    assert report.connections[0].matched == 15


async def test_relay_async(realtime_drive):
    async with ReplayServer(HERE / "cassettes" / "test_relay" / "test_relay.jsonl") as server:
        await realtime_drive.run(server.url, cassette="cassettes/test_relay/test_relay.jsonl", speed=0)


def test_another_server(realtime_drive):
    with ReplayServer(HERE / "other.jsonl").in_thread() as server:
        realtime_drive(server.url, cassette="cassettes/test_relay/test_relay.jsonl", speed=0, timeout=1)


def test_no_cassette(realtime_drive):
    realtime_drive("ws://127.0.0.1:9")
'''


def test_the_fixture_passes_a_server_that_answers_as_recorded_and_fails_one_that_does_not(pytester: pytest.Pytester) -> None:
    target = pytester.path / "cassettes" / "test_relay" / "test_relay.jsonl"
    target.parent.mkdir(parents=True)
    shutil.copyfile(CASSETTES / "text-response.jsonl", target)
    shutil.copyfile(CASSETTES / "function-call.jsonl", pytester.path / "other.jsonl")
    pytester.makepyfile(test_relay=TESTS)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n")
    result = pytester.runpytest(*INNER_OPTIONS)
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "rtreplay: drive of" in out and "(missing)" in out
    assert "no cassette to drive with at" in out and "test_no_cassette.jsonl" in out
