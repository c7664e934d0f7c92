"""Shared test configuration.

``RTREPLAY_TEST_TIMEOUT_SCALE`` multiplies the timeouts tests wait with, so a slow machine
does not flake (no test asserts a duration).
"""

from __future__ import annotations

import os
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
