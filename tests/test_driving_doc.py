"""docs/driving.md is real: its commands run (ports and the upstream swapped for local ones),
its Python runs, its outputs are what the commands print.

The sandwich recipe is run step by step as a user would, each command in a process of its
own: the recorder in front of the (scripted) API, the relay, the app; then the replay,
the relay again, and ``rtreplay drive``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtreplay.server import ReplayServer

from .conftest import CASSETTES, REPO, timeout
from .docs import DOCS, code_blocks
from .upstream import Drift, ScriptedUpstream

pytest_plugins = ["pytester"]

PAGE = "driving.md"
_FILE = re.compile(r"^```(\w+) file=(\S+)\n(.*?)^```", re.S | re.M)
KEY = "sk-doc-test-0123456789abcdef"


def doc_file(name: str) -> str:
    return {path: body for _, path, body in _FILE.findall((DOCS / PAGE).read_text())}[name]


def consoles() -> list[list[str]]:
    """Each console block as its commands (``VAR=value`` prefixes dropped)."""
    out = []
    for body in code_blocks(PAGE, "console"):
        out.append([line for line in body.splitlines() if line.strip()])
    return out


def command(line: str, ports: dict[str, int]) -> list[str]:
    words = shlex.split(line, comments=True)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)
    text = " ".join(words)
    for fixed, port in ports.items():
        text = text.replace(f":{fixed}", f":{port}").replace(f"--port {fixed}", f"--port {port}")
    words = shlex.split(text)
    if words[0] == "rtreplay":
        return [sys.executable, "-m", "rtreplay", *words[1:]]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    return words


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout(30)
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # polling a port another process opens: nothing to wait on
    raise AssertionError(f"nothing listens on {port} after {timeout(30)} s: {proc.args}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in started:
        try:
            p.wait(timeout(15))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_the_sandwich_recipe_runs_as_written(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    record, replay = [block for block in consoles() if any("tests/relay.py" in line for line in block)]
    ports = {"8765": free_port(), "9000": free_port()}
    shutil.copytree(REPO / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("node", "__pycache__"))
    app = doc_file("app.py").replace(":9000", f":{ports['9000']}")
    (tmp_path / "app.py").write_text(app)
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(tmp_path)}
    with ScriptedUpstream().in_thread() as api:
        env["RTREPLAY_UPSTREAM"] = api.websocket_base_url  # the recorder's upstream: never the live API
        recorder_line, relay_line, app_line = record
        recorder = subprocess.Popen(command(recorder_line, ports), cwd=tmp_path, env=env)
        processes.append(recorder)
        wait_listening(ports["8765"], recorder)
        relay = subprocess.Popen(command(relay_line, ports), cwd=tmp_path, env=env)
        processes.append(relay)
        wait_listening(ports["9000"], relay)
        subprocess.run(command(app_line, ports), cwd=tmp_path, env=env, check=True, timeout=timeout(60))
        for p in (relay, recorder):  # Ctrl-C, as the page says
            p.send_signal(signal.SIGINT)
            p.wait(timeout(15))
    cassette = tmp_path / "cassettes" / "relay.jsonl"
    assert cassette.exists() and KEY not in cassette.read_text()
    offline = {k: v for k, v in env.items() if k not in ("OPENAI_API_KEY", "RTREPLAY_UPSTREAM")}
    serve_line, relay_line, drive_line = replay
    serve = subprocess.Popen(command(serve_line, ports), cwd=tmp_path, env=offline, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes.append(serve)
    wait_listening(ports["8765"], serve)
    relay = subprocess.Popen(command(relay_line, ports), cwd=tmp_path, env=offline)
    processes.append(relay)
    wait_listening(ports["9000"], relay)
    done = subprocess.run(command(drive_line, ports), cwd=tmp_path, env=offline, capture_output=True, text=True, timeout=timeout(60))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(exact strictness): every recorded server event came as recorded" in done.stdout
    buggy = [*command(relay_line, ports), "--drop", "response.output_text.done", "--port", str(free_port())]
    port = int(buggy[-1])
    relay2 = subprocess.Popen(buggy, cwd=tmp_path, env=offline)
    processes.append(relay2)
    wait_listening(port, relay2)
    caught = subprocess.run(
        command(drive_line.replace(":9000", f":{port}"), {"8765": ports["8765"]}), cwd=tmp_path, env=offline,
        capture_output=True, text=True, timeout=timeout(60),
    )
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "(missing)" in caught.stdout and "response.output_text.done" in caught.stdout


def test_the_python_examples_run() -> None:
    blocks = code_blocks(PAGE, "python")
    api = next(b for b in blocks if b.startswith("from rtreplay.drive import drive"))
    core = next(b for b in blocks if b.startswith("from rtreplay.driver import"))
    with ReplayServer(CASSETTES / "function-call.jsonl").in_thread() as server:
        exec(compile(api.replace("ws://127.0.0.1:9000/v1/realtime", server.url), "driving.md", "exec"), {})
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        namespace: dict[str, Any] = {}
        exec(compile(core, "driving.md", "exec"), namespace)
        assert namespace["driver"].next_deadline() == 10.0
    finally:
        os.chdir(cwd)


def test_the_fixture_example_runs(pytester: pytest.Pytester) -> None:
    block = next(b for b in code_blocks(PAGE, "python") if "def test_my_relay(" in b)
    pytester.makeconftest(
        "import pytest\nfrom rtreplay.server import ReplayServer\n\n\n"
        "@pytest.fixture\ndef my_relay():\n"
        "    with ReplayServer('cassettes/test_doc/test_my_relay.jsonl').in_thread() as s:\n"
        "        yield s\n"
    )
    for name in ("test_my_relay", "test_my_relay_async"):
        target = pytester.path / "cassettes" / "test_doc" / f"{name}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CASSETTES / "text-response.jsonl", target)
    shutil.copyfile(CASSETTES / "text-response.jsonl", pytester.path / "cassettes" / "other.jsonl")
    pytester.makepyfile(test_doc=block)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:recording")
    result.assert_outcomes(passed=2)


def test_verify_prints_the_drift_as_documented(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The page's example, against a scripted API changed in the three ways it shows."""
    import asyncio

    from rtreplay.cli import main
    from rtreplay.verify import verify

    (line,) = next(b for b in consoles() if any("rtreplay verify" in x for x in b))
    shown = next(b for b in code_blocks(PAGE, "text") if b.startswith("rtreplay: verify of"))
    baseline = tmp_path / "function-call.jsonl"
    with ScriptedUpstream().in_thread() as api:  # the cassette as today's (scripted) API says it
        asyncio.run(verify(CASSETTES / "function-call.jsonl", api.websocket_base_url, api_key=KEY, speed=0, record_to=baseline))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    drift = Drift(
        add_fields={"response.done": {"service_tier": "default"}},
        drop_types=frozenset({"conversation.item.done"}),
        rename_types={"response.output_text.delta": "response.text.delta"},
    )
    with ScriptedUpstream(drift=drift).in_thread() as api:
        argv = shlex.split(line)[2:]  # after OPENAI_API_KEY=... rtreplay
        argv[1] = str(baseline)
        # --timeout: the two conversation.item.done the session waits for never come.
        status = main([*argv, "--upstream", api.websocket_base_url, "--speed", "0", "--timeout", "1"])
    out = capsys.readouterr().out
    assert status == 1
    expected = shown.splitlines()
    assert out.splitlines()[1:] == expected[1:]
    assert out.startswith("rtreplay: verify of") and "3 differences from the recording" in out


def test_the_load_command_prints_the_documented_table(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from rtreplay.cli import main

    monkeypatch.chdir(REPO)
    (line,) = next(b for b in consoles() if any("--concurrency" in x for x in b))
    shown = next(b for b in code_blocks(PAGE, "text") if b.startswith("rtreplay: load of")).splitlines()
    with ReplayServer(CASSETTES / "function-call.jsonl", repeat=True).in_thread() as server:
        argv = shlex.split(line.replace("ws://127.0.0.1:9000/v1/realtime", server.url))[1:]
        assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("rtreplay: load of cassettes/function-call.jsonl against ws://127.0.0.1:")
    assert shown[0].endswith(": 200 as recorded, 0 with mismatches")
    assert out[0].endswith(": 200 as recorded, 0 with mismatches")
    assert "200 sessions (50 at once x 4)" in out[0]
    assert [row.split()[0] for row in out[2:8]] == [row.split()[0] for row in shown[2:8]]
    assert out[2] == shown[2]
