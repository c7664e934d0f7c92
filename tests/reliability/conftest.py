"""The ``slow`` tests (thousands of sessions, tens of kills, 256 connections) run only when
asked for: ``pytest -m slow`` (or any ``-m`` expression naming ``slow``). Otherwise they
are reported as skipped, with the command that runs them.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest -m slow tests/reliability`")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
