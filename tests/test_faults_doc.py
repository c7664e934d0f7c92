"""docs/faults.md is real: its pytest recipes pass, its command and its Python run, its tables are complete."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import typing
from pathlib import Path
from typing import Any

import pytest

from rtreplay.faults import ERROR_PRESETS, FaultKind, PlaceKind
from rtreplay.latency import Latency

from .conftest import CASSETTES, REPO, timeout

pytest_plugins = ["pytester"]

DOC = REPO / "docs" / "faults.md"
INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:recording -p no:cacheprovider
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""
_FILE = re.compile(r"^```python file=(\S+)\n(.*?)^```", re.S | re.M)
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(DOC.read_text()) if lang == language]


def section(title: str) -> str:
    return DOC.read_text().split(f"## {title}\n")[1].split("\n## ")[0]


def project(pytester: pytest.Pytester, source: str | None = None) -> Path:
    """A project with the docs' test file (or ``source``) and the bundled cassettes it names."""
    pytester.makeini(INI)
    [(path, body)] = _FILE.findall(DOC.read_text())
    target = pytester.path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source if source is not None else body)
    (target.parent / "cassettes").mkdir(exist_ok=True)
    for name in ("text-chat", "reconnect"):
        shutil.copyfile(CASSETTES / f"{name}.jsonl", target.parent / "cassettes" / f"{name}.jsonl")
    return target


def test_every_pytest_recipe_passes(pytester: pytest.Pytester) -> None:
    path = project(pytester)
    tests = [n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.AsyncFunctionDef) and n.name.startswith("test_")]
    assert len(tests) == 7
    result = pytester.runpytest(str(path.relative_to(pytester.path)), "-p", "no:randomly")
    result.assert_outcomes(passed=len(tests))


def test_a_test_that_met_a_fault_and_failed_says_so_first(pytester: pytest.Pytester) -> None:
    [(_, body)] = _FILE.findall(DOC.read_text())
    # The last recipe, without the app's own handling: the test fails on the client's bound.
    failing = body.replace("        with pytest.raises(asyncio.TimeoutError):\n            while True:\n", "        if True:\n            while True:\n")
    assert failing != body
    path = project(pytester, failing)
    result = pytester.runpytest(str(path.relative_to(pytester.path)), "-k", "gives_up")
    result.assert_outcomes(failed=1)
    [documented] = [b for b in blocks("text") if b.startswith("rtreplay: this replay injected faults")]
    output = result.stdout.str()
    for line in filter(None, documented.splitlines()):
        pattern = re.escape(line).replace(r"0\.001\ s", r"\d+\.\d{3}\ s")
        assert re.search(pattern, output), f"documented line not in the output:\n{line}\n---\n{output}"


def test_a_fault_that_never_fired_fails_the_test(pytester: pytest.Pytester) -> None:
    path = project(pytester, '''
import pytest


@pytest.mark.realtime("text-chat", faults=["close:1011@after:response.done"], allow_unplayed=True)
def test_never_gets_there(realtime_openai):
    with realtime_openai.realtime.connect(model="gpt-realtime") as conn:
        for event in conn:
            break
''')
    result = pytester.runpytest(str(path.relative_to(pytester.path)))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "rtreplay: an injected fault never fired, so the client never met it.",
        "injected faults that never fired:",
        "  close:1011@after:response.done",
        "*If its place may legitimately never be reached (a fault hypothesis drew): @pytest.mark.realtime(allow_unfired=True)",
    ])


def test_allow_unfired_lets_a_fault_that_never_fired_pass(pytester: pytest.Pytester) -> None:
    """The opt-out, from the marker, the ini file and realtime_replay(...); one the opt-out
    leaves on still fails."""
    path = project(pytester, '''
import os

import pytest

from rtreplay.strategies import variant

FAULTS = ["close:1011@after:response.done"]
CHAT = os.path.join(os.path.dirname(__file__), "cassettes", "text-chat.jsonl")


def stop_early(base_url):
    from openai import OpenAI

    with OpenAI(api_key="sk-test", websocket_base_url=base_url).realtime.connect(model="gpt-realtime") as conn:
        for event in conn:
            break


@pytest.mark.realtime("text-chat", faults=FAULTS, allow_unplayed=True, allow_unfired=True)
def test_marker(realtime_mock):
    stop_early(realtime_mock.websocket_base_url)


def test_replay(realtime_replay):
    v = variant(CHAT, faults=FAULTS)
    with realtime_replay(v, allow_unplayed=True, allow_unfired=True) as mock:
        stop_early(mock.websocket_base_url)


def test_replay_without(realtime_replay):
    v = variant(CHAT, faults=FAULTS)
    with realtime_replay(v, allow_unplayed=True) as mock:
        stop_early(mock.websocket_base_url)
''')
    result = pytester.runpytest(str(path.relative_to(pytester.path)))
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*rtreplay: an injected fault never fired, so the client never met it.",
        "*If its place may legitimately never be reached (a fault hypothesis drew): realtime_replay(..., allow_unfired=True)",
    ])
    pytester.makeini(INI + "realtime_allow_unfired = true\n")
    result = pytester.runpytest(str(path.relative_to(pytester.path)))
    result.assert_outcomes(passed=3)


def test_a_bad_fault_in_a_marker_fails_the_test_saying_why(pytester: pytest.Pytester) -> None:
    path = project(pytester, '''
import pytest


@pytest.mark.realtime("text-chat", faults=["error@connect"])
def test_bad(realtime_mock):
    pass


@pytest.mark.realtime("text-chat", latency="ttft=-1")
def test_bad_latency(realtime_mock):
    pass
''')
    result = pytester.runpytest(str(path.relative_to(pytester.path)))
    result.assert_outcomes(errors=2)  # realtime_mock itself fails: the test never ran
    result.stdout.fnmatch_lines([
        "*rtreplay: @pytest.mark.realtime: fault 'error@connect': error@connect: at the handshake there is no WebSocket yet*",
        "*rtreplay: @pytest.mark.realtime: latency ttft is a number of seconds >= 0, not -1.0 (in 'ttft=-1')",
    ])


def _documented_command() -> list[str]:
    [console] = blocks("console")
    words = shlex.split(console.replace("\\\n", " "))
    assert words[:2] == ["rtreplay", "serve"]
    return words[2:]


def test_the_command_line_recipe_injects_and_logs_what_the_docs_show() -> None:
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect

    args = _documented_command()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtreplay", "serve", *args], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines: list[str] = []
        started = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if "openai SDK:" in line:
                    started.set()
            started.set()

        threading.Thread(target=read, daemon=True).start()
        assert started.wait(timeout(20)), lines
        base = next(line for line in lines if line.startswith("websocket_base_url: ")).split(": ", 1)[1]
        with pytest.raises(ConnectionClosedError) as closed:
            with connect(f"{base}/realtime?model=gpt-realtime") as ws:
                from rtreplay.codec import load

                for frame in load(CASSETTES / "text-chat.jsonl").connections[0].client_frames():
                    ws.send(frame.payload())  # type: ignore[arg-type]
                while True:
                    ws.recv(timeout(10))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=timeout(20))
    [start] = [b for b in blocks("text") if b.startswith("  injecting fault")]
    [fired] = [b for b in blocks("text") if b.startswith("conn 0: injected fault")]
    for line in start.splitlines():
        assert line in lines
    logged = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in err.splitlines()]
    for line in fired.splitlines():
        pattern = re.escape(line).replace(r"0\.003\ s", r"\d+\.\d{3}\ s").replace(r"0\.904\ s", r"\d+\.\d{3}\ s")
        assert any(re.fullmatch(pattern, got) for got in logged), f"{line}\n---\n{err}"


def test_a_fault_no_connection_can_take_stops_serve_with_the_counts() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rtreplay", "serve", str(CASSETTES / "text-chat.jsonl"), "--port", "0",
         "--fault", "close@after:response.done#5"],
        capture_output=True, text=True, timeout=timeout(30), check=False,
    )
    assert done.returncode == 2
    assert "can never fire" in done.stderr and "connection 0 has 1" in done.stderr


async def test_the_python_recipe_runs() -> None:
    [code] = [b for b in blocks("python") if "ReplayServer(" in b]

    async def run_the_app(base_url: str) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosedError

        from rtreplay.codec import load

        try:
            async with connect(f"{base_url}/realtime?model=gpt-realtime") as ws:
                for frame in load(CASSETTES / "text-chat.jsonl").connections[0].client_frames():
                    await ws.send(frame.payload())  # type: ignore[arg-type]
                async for _ in ws:
                    pass
        except ConnectionClosedError:
            pass

    scope: dict[str, Any] = {"run_the_app": run_the_app}
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        result = eval(compile(code, "docs/faults.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), scope)
        if result is not None:
            await result
    finally:
        os.chdir(cwd)
    assert scope["report"].cut


def test_the_reference_tables_name_every_kind_place_preset_and_field() -> None:
    what = section("Faults: what and where")
    assert set(re.findall(r"^\| `(\w+)", what.split("| what |")[1].split("\n\n")[0], re.M)) == set(typing.get_args(FaultKind))
    assert set(re.findall(r"^\| `(\w+)", what.split("| where |")[1].split("\n\n")[0], re.M)) == set(typing.get_args(PlaceKind))
    codes = what.split("| code |")[1].split("\n\n")[0]
    assert set(re.findall(r"`(\w+)`", codes)) >= set(ERROR_PRESETS)
    latency = section("Latency").split("| field |")[1].split("\n\n")[0]
    assert set(re.findall(r"^\| `(\w+)`", latency, re.M)) == {f.name for f in dataclasses.fields(Latency)}
    readme = (REPO / "README.md").read_text()
    assert "(docs/faults.md)" in readme

