"""Shared test configuration.

``RTREPLAY_TEST_TIMEOUT_SCALE`` multiplies the timeouts tests wait with, so a slow machine
does not flake (no test asserts a duration).

The ``slow`` tests (thousands of sessions, tens of kills, 256 connections, fresh virtual
environments) run only when asked for: ``pytest -m slow`` (or any ``-m`` expression naming
``slow``). Otherwise they are reported as skipped, with the command that runs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .upstream import ScriptedUpstream

REPO = Path(__file__).resolve().parent.parent
CASSETTES = REPO / "cassettes"
TIMEOUT_SCALE = float(os.environ.get("RTREPLAY_TEST_TIMEOUT_SCALE", "1"))
#: The OPENAI_API_KEY of recording tests: the scripted upstream takes any key, and no
#: cassette may ever hold it.
RECORDING_KEY = "sk-proj-rtreplayTEST0123456789abcdefABCDEF"


def pytest_configure(config: pytest.Config) -> None:
    if sys.version_info < (3, 11):
        # CPython 3.10's asyncio leaves an SSL transport it closed marked open when the
        # peer ended the connection first, and warns about it when it is collected
        # (python/cpython#90476, fixed by 3.11's new sslproto). The websockets client of
        # the TLS tests meets it; nothing is left open.
        config.addinivalue_line(
            "filterwarnings", "ignore:unclosed transport <asyncio.sslproto._SSLProtocolTransport:ResourceWarning"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest -m slow`")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test as on a developer's machine: with ``CI`` or ``BUILD_NUMBER`` set,
    pytest writes each failure's whole message into the short summary too, so the
    pytester runs' output (what the plugin tests read) would depend on where they run."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)


def timeout(seconds: float) -> float:
    """A wait bound in seconds, scaled for slow machines."""
    return seconds * TIMEOUT_SCALE


@pytest.fixture
def cassettes_dir() -> Path:
    return CASSETTES


@pytest.fixture(name="upstream")
def threaded_upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedUpstream]:
    """The scripted Realtime upstream in a thread of its own, for tests that record
    through the pytest plugin, with ``OPENAI_API_KEY`` set to :data:`RECORDING_KEY`.
    (Modules whose tests are async define their own ``upstream``.)"""
    monkeypatch.setenv("OPENAI_API_KEY", RECORDING_KEY)
    monkeypatch.delenv("RTREPLAY_UPSTREAM", raising=False)
    with ScriptedUpstream().in_thread() as up:
        yield up
