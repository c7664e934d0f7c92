"""The Locust user class: a local master and two workers on 127.0.0.1 play a cassette's
recorded client against a server, and Locust's statistics hold each session's result and
the latencies a user feels. The locustfile is docs/driving.md's. Slow: three Locust
processes start (gevent, Flask...)."""

from __future__ import annotations

import csv
import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rtreplay.server import ReplayServer

from .conftest import CASSETTES, timeout

pytestmark = pytest.mark.slow

def doc_locustfile() -> str:
    """The locustfile docs/driving.md shows."""
    from .test_driving_doc import doc_file

    return doc_file("locustfile.py")



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_locust(tmp_path: Path, cassette: Path, host: str, seconds: int = 4) -> dict[str, dict[str, str]]:
    # Not imported here: importing locust monkey-patches the whole process for gevent.
    if importlib.util.find_spec("locust") is None:
        pytest.skip("the Locust user needs rtreplay[locust]: pip install -e '.[locust]'")
    locustfile = tmp_path / "locustfile.py"
    text = doc_locustfile()
    assert 'cassette = "cassettes/function-call.jsonl"' in text
    locustfile.write_text(text.replace('"cassettes/function-call.jsonl"', repr(str(cassette))))
    port = free_port()
    locust = [sys.executable, "-m", "locust", "-f", str(locustfile)]
    log = open(tmp_path / "master.log", "w")  # noqa: SIM115 - closed below
    master = subprocess.Popen(
        [*locust, "--master", "--headless", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
         "--expect-workers", "2", "--expect-workers-max-wait", "30", "-u", "4", "-r", "4", "-t", f"{seconds}s",
         "--host", host, "--csv", str(tmp_path / "stats"), "--only-summary", "--stop-timeout", "5"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    workers = [
        subprocess.Popen([*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        master.wait(timeout(90))
    finally:
        for p in [master, *workers]:
            if p.poll() is None:
                p.terminate()
        for p in [master, *workers]:
            p.wait(timeout(30))
        log.close()
    out = (tmp_path / "master.log").read_text()
    with open(tmp_path / "stats_stats.csv") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    assert rows, out
    return rows


def test_a_master_and_two_workers_drive_sessions_that_match(tmp_path: Path) -> None:
    cassette = CASSETTES / "function-call.jsonl"
    with ReplayServer(cassette, repeat=True).in_thread() as server:
        rows = run_locust(tmp_path, cassette, server.url)
    sessions = rows["session"]
    assert int(sessions["Request Count"]) >= 4
    assert int(sessions["Failure Count"]) == 0
    for name in ("connect", "first server event", "first delta", "response"):
        assert int(rows[name]["Request Count"]) > 0, name


def test_sessions_that_do_not_match_are_locust_failures(tmp_path: Path) -> None:
    with ReplayServer(CASSETTES / "function-call.jsonl", repeat=True, stall_timeout=0.5).in_thread() as server:
        rows = run_locust(tmp_path, CASSETTES / "text-response.jsonl", server.url, seconds=3)
    sessions = rows["session"]
    assert int(sessions["Request Count"]) >= 1
    assert int(sessions["Failure Count"]) == int(sessions["Request Count"])
