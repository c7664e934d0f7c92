"""The README's quickstart is what CI runs, and its examples work as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from rtreplay import load

from .conftest import CASSETTES, timeout

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(README) if lang == language]


def test_the_quickstart_is_two_commands_and_ci_runs_the_test_one() -> None:
    setup_and_serve, run_tests = blocks("console")[:2]
    assert setup_and_serve.count("\n") == 1 and run_tests.count("\n") == 1, "one line each"
    install, serve = setup_and_serve.strip().rsplit(" && ", 1)
    assert serve.startswith(".venv/bin/rtreplay serve cassettes/")
    assert (REPO / serve.split()[-1]).exists(), "the bundled cassette it serves exists"
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3 -m venv .venv" in ci and "pip install --quiet -e '.[test]'" in ci
    assert "pip install -e '.[test]'" in install
    assert run_tests.strip() in ci.splitlines(), ".ci/run runs the README's test command"


def test_the_copyable_test_is_the_one_the_plugin_suite_runs() -> None:
    quickstart = (REPO / "docs" / "quickstart_test.py").read_text()
    assert quickstart in blocks("python")


def test_the_client_snippet_gets_the_recorded_session_from_rtreplay_serve() -> None:
    snippet = next(b for b in blocks("python") if "websocket_base_url=" in b)
    with subprocess.Popen(
        [sys.executable, "-m", "rtreplay", "serve", str(CASSETTES / "text-response.jsonl"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            base = ""
            for line in server.stdout:
                if line.startswith("websocket_base_url: "):
                    base = line.split(": ", 1)[1].strip()
                    break
            assert base.startswith("ws://127.0.0.1:")
            code = snippet.replace("ws://127.0.0.1:8765/v1", base)
            client = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout(60), check=False
            )
        finally:
            server.terminate()
            server.communicate(timeout=timeout(10))
    assert client.returncode == 0, client.stderr
    recorded = [
        f.event()["type"]  # type: ignore[index]
        for f in load(CASSETTES / "text-response.jsonl").connections[0].frames
        if f.dir == "server"
    ]
    # It prints every server event up to and including response.done, as recorded.
    assert client.stdout.split() == recorded[: recorded.index("response.done") + 1]
