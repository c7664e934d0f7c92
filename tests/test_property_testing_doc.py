"""docs/property-testing.md is real: the bug one replay misses is found by replays() and
shrunk to what the page shows, the kept example fails the buggy client, the fix makes every
test on the page pass, and its Python runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from .conftest import CASSETTES, REPO, timeout

pytest_plugins = ["pytester"]

DOC = REPO / "docs" / "property-testing.md"
INI = """
[pytest]
addopts = -p no:recording -p no:cacheprovider
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""
_FILE = re.compile(r"^```python (file|fix)=(\S+)\n(.*?)^```", re.S | re.M)
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def files(kind: str = "file") -> dict[str, str]:
    return {path: body for k, path, body in _FILE.findall(DOC.read_text()) if k == kind}


def blocks(language: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(DOC.read_text()) if lang == language]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """The page's project: its files, and the bundled cassette in tests/cassettes/."""
    pytester.makeini(INI)
    for path, body in files().items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    (pytester.path / "tests" / "cassettes").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CASSETTES / "function-call.jsonl", pytester.path / "tests" / "cassettes" / "function-call.jsonl")
    pytester.syspathinsert()
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest("-p", "no:randomly", *args)


def test_replays_finds_the_bug_one_replay_misses_and_shrinks_it_as_shown(project: pytest.Pytester) -> None:
    result = run(project, "tests/test_weather.py")
    result.assert_outcomes(passed=1, failed=1)  # the plain replay passes; the variants do not
    out = result.stdout.str()
    [shown] = blocks("text")
    for line in shown.splitlines():
        if line.strip() != "...":
            assert line in out, line


def test_the_kept_example_fails_the_buggy_client_and_the_fix_passes_every_test(project: pytest.Pytester) -> None:
    [keep] = [b for b in blocks("python") if "rtreplay.save(" in b]
    subprocess.run([sys.executable, "-c", keep], cwd=project.path, check=True, timeout=timeout(60))
    assert (project.path / "tests" / "cassettes" / "weather-two-deltas.jsonl").exists()
    run(project, "tests/test_weather_regressions.py").assert_outcomes(failed=1)

    [fixed] = files("fix").values()
    client = project.path / "weather.py"
    source = client.read_text()
    [buggy] = [line for line in source.splitlines() if "reply = event.delta" in line]
    client.write_text(source.replace(buggy, fixed.rstrip("\n")))
    run(project, "tests").assert_outcomes(passed=5)

    done = subprocess.run(
        [sys.executable, "replay_one.py"], cwd=project.path, capture_output=True, text=True, timeout=timeout(60)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "It's 61°F and foggy in San Francisco.\n"


def test_the_page_is_linked_where_the_other_pages_are() -> None:
    assert "[docs/property-testing.md](docs/property-testing.md)" in (REPO / "README.md").read_text()
