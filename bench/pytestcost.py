"""Per-test cost of ``realtime_mock``, measured by pytest itself, against a bare websockets cycle.

A throwaway pytest project gets a small cassette and N tests of each kind, interleaved:
``test_mock`` asks for ``realtime_mock`` (set up, load the cassette, connect, one exchange,
tear down); ``test_bare`` serves the same exchange with a bare ``websockets`` server
(serve, connect, one exchange, close). A test's cost is the sum of its setup, call and
teardown durations as pytest reports them; each pytest run gives the median per kind.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import workloads
from harness import REPO, median


class Unavailable(Exception):
    """The pieces this figure needs are not installed (yet)."""


PYTEST_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
addopts = -p no:cacheprovider -q
"""

CONFTEST = """\
import json
import os
from collections import defaultdict

durations = defaultdict(float)
outcomes = {}


def pytest_collection_modifyitems(items):
    # Alternate the two kinds so that neither runs only while the process is cold.
    mock = [i for i in items if i.originalname == "test_mock"]
    bare = [i for i in items if i.originalname == "test_bare"]
    items[:] = [x for pair in zip(mock, bare) for x in pair]


def pytest_runtest_logreport(report):
    durations[report.nodeid] += report.duration
    if report.failed:
        outcomes[report.nodeid] = report.longreprtext[-2000:]


def pytest_sessionfinish(session):
    with open(os.environ["BENCH_DURATIONS"], "w") as f:
        json.dump({"durations": durations, "failures": outcomes}, f)
"""

TESTS = """\
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

CREATED = {created!r}
UPDATE = {update!r}
UPDATED = {updated!r}
N = {n}


async def exchange(url):
    async with connect(url) as ws:
        assert "session.created" in await ws.recv()
        await ws.send(UPDATE)
        assert "session.updated" in await ws.recv()


@pytest.mark.parametrize("i", range(N))
@pytest.mark.realtime(cassette="exchange")
async def test_mock(realtime_mock, i):
    await exchange(realtime_mock.url + "?model=gpt-realtime")


@pytest.mark.parametrize("i", range(N))
async def test_bare(i):
    async def handler(ws):
        await ws.send(CREATED)
        await ws.recv()
        await ws.send(UPDATED)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        await exchange(f"ws://127.0.0.1:{{port}}/v1/realtime?model=gpt-realtime")
"""


def available() -> str | None:
    """Why the figure cannot be measured, or None."""
    for module in ("rtreplay.server", "pytest_rtreplay.plugin", "pytest_asyncio"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not importable yet"
    plugin = REPO / "pytest_plugin" / "pytest_rtreplay" / "plugin.py"
    if plugin.exists() and "def realtime_mock" not in plugin.read_text():
        return "the pytest plugin has no realtime_mock fixture yet"
    return None


def measure(root: Path, tests: int, runs: int, logs: Path) -> dict[str, list[float]]:
    why = available()
    if why:
        raise Unavailable(why)
    (root / "cassettes").mkdir(parents=True, exist_ok=True)
    workloads.write_exchange(root / "cassettes" / "exchange.jsonl")
    (root / "pytest.ini").write_text(PYTEST_INI)
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_cost.py").write_text(
        TESTS.format(
            created=workloads.SESSION_CREATED.decode(),
            update=workloads.SESSION_UPDATE.decode(),
            updated=workloads.SESSION_UPDATED.decode(),
            n=tests,
        )
    )
    out: dict[str, list[float]] = {"mock": [], "bare": []}
    for r in range(runs):
        result = root / f"durations-{r}.json"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "test_cost.py"],
            cwd=root,
            capture_output=True,
            text=True,
            env={**_env(), "BENCH_DURATIONS": str(result)},
            timeout=300,
        )
        (logs / f"pytest-cost-{r}.log").write_text(proc.stdout + proc.stderr)
        data = (
            json.loads(result.read_text()) if result.exists() else {"durations": {}, "failures": {}}
        )
        if proc.returncode != 0 or data["failures"]:
            first = next(iter(data["failures"].values()), proc.stdout[-2000:] + proc.stderr[-2000:])
            raise RuntimeError(f"the per-test cost tests failed (exit {proc.returncode}):\n{first}")
        for kind in out:
            values = [d for node, d in data["durations"].items() if f"::test_{kind}[" in node]
            out[kind].append(median(values))
    return out


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env
