"""Promise 7: nothing listens beyond this machine unless asked, and no cassette lands
outside the directory it was given.

The servers' sockets are checked where the kernel says they are bound (``/proc/net/tcp``),
for the library and for the commands. The pytest plugin is run for real (``pytester``),
recording tests whose ids and marker values try every way out of the cassette directory;
then every file under the project and its parent is compared with before.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtreplay.cli import build_parser
from rtreplay.recorder import Recorder
from rtreplay.server import ReplayServer

from ..conftest import CASSETTES
from ..upstream import ScriptedUpstream
from .support import start_cli

pytest_plugins = ["pytester"]


def listening_addresses(port: int) -> set[str]:
    """The local IPv4/IPv6 addresses the kernel has a listening socket on ``port`` for."""
    found: set[str] = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, _, hexport = local.partition(":")
            if state != "0A" or int(hexport, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if size == 4:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


async def test_library_servers_bind_loopback_by_default(tmp_path: Path) -> None:
    async with (
        ScriptedUpstream() as up,
        ReplayServer(CASSETTES / "text-response.jsonl") as server,
        Recorder(tmp_path / "x.jsonl", upstream=up.websocket_base_url) as rec,
    ):
        for service in (server, rec, up):
            assert service.host == "127.0.0.1"
            assert listening_addresses(service.port) == {"127.0.0.1"}, type(service).__name__
        rec.discard()


def test_command_defaults_are_loopback() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "c.jsonl"]).host == "127.0.0.1"
    assert parser.parse_args(["record", "--out", "c.jsonl"]).host == "127.0.0.1"


async def test_commands_listen_on_loopback_and_warn_otherwise(tmp_path: Path) -> None:
    serve = await start_cli("serve", str(CASSETTES / "text-response.jsonl"))
    record = await start_cli("record", "--out", str(tmp_path / "r.jsonl"), "--upstream", "ws://127.0.0.1:9/v1", "--quiet")
    try:
        for proc in (serve, record):
            assert listening_addresses(proc.port) == {"127.0.0.1"}
    finally:
        _, _, serve_err = await serve.stop()
        _, _, record_err = await record.stop()
    assert "warning: listening on" not in serve_err
    assert "reachable from other machines" not in record_err
    # Asked for every interface, each says so on stderr (bound for an instant, on port 0).
    for args in (("serve", str(CASSETTES / "text-response.jsonl")),
                 ("record", "--out", str(tmp_path / "w.jsonl"), "--upstream", "ws://127.0.0.1:9/v1", "--quiet")):
        proc = await start_cli(*args, "--host", "0.0.0.0")
        _, _, err = await proc.stop()
        assert "reachable from other machines" in err, (args[0], err)


# -- cassette names from hostile test ids ------------------------------------------------------

HOSTILE_TESTS = '''
import pytest
from websockets.sync.client import connect

ESCAPE = {escape!r}


def talk(mock):
    with connect(mock.url + "?model=gpt-realtime", additional_headers={{"Authorization": "Bearer sk-exposure-000000"}}) as ws:
        ws.recv()
        ws.send('{{"type": "response.create"}}')
        while '"response.done"' not in ws.recv():
            pass


@pytest.mark.parametrize("x", [
    pytest.param(1, id="../../escape-id"),
    pytest.param(2, id="/tmp/" + ESCAPE + "-abs-id"),
    pytest.param(3, id="..\\\\..\\\\win-escape"),
    pytest.param(4, id="nul\\x00byte"),
    pytest.param(5, id=".."),
    pytest.param(6, id="x" * 600),
    pytest.param(7, id="sub/../../../dots"),
])
def test_ids(realtime_mock, x):
    talk(realtime_mock)


@pytest.mark.parametrize("cassette", [
    "../outside",
    "/tmp/" + ESCAPE + "-abs-marker",
    "sub/../../../outside-too",
    "..",
    ".",
    "a/" + "../" * 20 + "tmp/" + ESCAPE + "-deep",
    "nul\\x00byte",
    "y" * 5000,
])
def test_markers(request, cassette):
    request.applymarker(pytest.mark.realtime(cassette=cassette))
    mock = request.getfixturevalue("realtime_mock")
    talk(mock)
'''


def snapshot(*roots: Path) -> set[Path]:
    out: set[Path] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            out.update(Path(dirpath, f) for f in filenames)
            out.update(Path(dirpath, d) for d in dirnames)
    return out


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedUpstream]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-exposure-env-key-000000")
    monkeypatch.delenv("RTREPLAY_UPSTREAM", raising=False)
    with ScriptedUpstream(require_auth=False).in_thread() as up:
        yield up


def test_hostile_test_ids_and_marker_values_stay_in_the_cassette_directory(
    pytester: pytest.Pytester, upstream: ScriptedUpstream
) -> None:
    escape = f"rtreplay-escape-{uuid.uuid4().hex[:8]}"
    pytester.makeini("[pytest]\naddopts = -p no:hypothesispytest -p no:recording -p no:cacheprovider\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_hostile=HOSTILE_TESTS.format(escape=escape))
    outside = pytester.path.parent
    before = snapshot(outside)
    tmp_before = set(Path("/tmp").iterdir())
    run = pytester.inline_run("--realtime-record", f"--realtime-upstream={upstream.websocket_base_url}")
    cassettes = pytester.path / "cassettes"
    created = snapshot(outside) - before
    escaped = [p for p in created if not p.is_relative_to(cassettes) and p.name not in ("cassettes",)]
    assert not escaped, f"files written outside {cassettes}: {escaped}"
    assert not [p for p in set(Path("/tmp").iterdir()) - tmp_before if escape in p.name]
    reports = [r for r in run.getreports("pytest_runtest_logreport") if r.when == "call" or r.failed]
    # Every hostile id recorded, each to its own file in the module's directory.
    ids = [r for r in reports if "::test_ids[" in r.nodeid]
    assert len(ids) == 7 and all(r.passed for r in ids), [(r.nodeid, r.longreprtext) for r in ids if not r.passed]
    files = sorted(p for p in (cassettes / "test_hostile").iterdir())
    assert len(files) == 7 and all(p.suffix == ".jsonl" and len(p.name) <= 120 for p in files), files
    # Every hostile marker value refused with one clear line (none a crash from deep inside).
    markers = [r for r in reports if "::test_markers[" in r.nodeid]
    assert len(markers) == 8 and all(r.failed for r in markers), [r.nodeid for r in markers]
    for report in markers:
        text = report.longreprtext
        assert text.startswith("rtreplay: @pytest.mark.realtime: cassette="), (report.nodeid, text)
        assert "Traceback" not in text and "Error:" not in text, (report.nodeid, text)
    assert sum("outside the cassette directory" in r.longreprtext for r in markers) == 6
    assert not list(pytester.path.rglob("*.partial"))
