"""Shared test configuration.

``RTREPLAY_TEST_TIMEOUT_SCALE`` multiplies the timeouts tests wait with, so a slow machine
does not flake (no test asserts a duration).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CASSETTES = REPO / "cassettes"
TIMEOUT_SCALE = float(os.environ.get("RTREPLAY_TEST_TIMEOUT_SCALE", "1"))


def timeout(seconds: float) -> float:
    """A wait bound in seconds, scaled for slow machines."""
    return seconds * TIMEOUT_SCALE


@pytest.fixture
def cassettes_dir() -> Path:
    return CASSETTES
