"""Promise 9: no recording is ever lost silently.

- **One recorder per cassette.** Two recorders writing one cassette path (two ``rtreplay
  record`` processes, two ``Recorder`` objects in one process, two pytest-xdist workers
  whose tests name one cassette) would each report success while only the last file
  survived. The second one is refused at start, with a message naming the first; the first
  keeps every connection. A generated family starts recorders on shared paths in random
  orders.
- **A full disk** (a real tmpfs of a few hundred KiB, mounted for the test): the
  connection whose frames cannot be written is closed with 1011, new connections are
  refused with 503 (the upstream is not contacted) until writing works again, and then
  accepted; what was written is kept, whole records only, in the ``.partial`` file the
  error names. A generated family varies the free space and the sessions.
- **The file system moving under the recorder**: its directory removed mid-recording
  (made again, every frame kept), ``--out`` naming a directory (refused at once), ``--out``
  a symlink (followed, the link kept), SIGHUP (the cassette is finished, as on SIGTERM).
- **Stopping is prompt** while a handshake waits on a silent upstream.
- The plugin does not say "recorded" when a refused recording kept the old cassette.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtreplay.cassette import Close, Frame, Open
from rtreplay.codec import CassetteReader, load
from rtreplay.errors import RecordError
from rtreplay.recorder import Recorder

from ..conftest import timeout
from ..upstream import Refusal, ScriptedUpstream
from .support import SUPPRESSED_HEALTH_CHECKS, start_cli, wait_until

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ["pytester"]

SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": False,
    "suppress_health_check": SUPPRESSED_HEALTH_CHECKS,
}
KEY = "sk-proj-NothingLostTest0123456789abcdef"
TEXT_SESSION = {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
AUDIO_SESSION = {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}}


async def session(url: str, *, audio: bool = False) -> list[str | bytes]:
    """One conversation turn; returns what the client received (until the close)."""
    got: list[str | bytes] = []
    async with connect(url + "?model=gpt-realtime", additional_headers={"Authorization": f"Bearer {KEY}"},
                       open_timeout=timeout(10), max_size=None) as ws:
        await ws.send(json.dumps(AUDIO_SESSION if audio else TEXT_SESSION))
        await ws.send(json.dumps({"type": "response.create"}))
        try:
            while True:
                message = await asyncio.wait_for(ws.recv(), timeout(10))
                got.append(message)
                if isinstance(message, str) and '"response.done"' in message:
                    break
        except ConnectionClosed:
            return got
    return got


def records(path: Path) -> list[Any]:
    with CassetteReader(path) as reader:
        return list(reader)


def received_frames(path: Path, conn: int) -> list[str | bytes]:
    return [r.payload() for r in records(path) if isinstance(r, Frame) and r.conn == conn and r.dir == "server"]


def assert_kept(path: Path, conn: int, got: list[str | bytes]) -> None:
    """Every frame the client got is recorded, in order (and what came after it, if any)."""
    assert got, "the client got nothing"
    assert received_frames(path, conn)[: len(got)] == got


# -- one recorder per cassette ----------------------------------------------------------------


async def test_two_recorders_in_one_process_the_second_is_refused(tmp_path: Path) -> None:
    cassette = tmp_path / "shared.jsonl"
    async with ScriptedUpstream() as up:
        first = Recorder(cassette, upstream=up.websocket_base_url, api_key=KEY)
        async with first:
            second = Recorder(cassette, upstream=up.websocket_base_url, api_key=KEY)
            with pytest.raises(RecordError) as info:
                await second.start()
            assert f"{cassette} is being recorded by another recorder (this process)" in str(info.value)
            got = await session(first.url)
    assert first.written == cassette
    assert_kept(cassette, 0, got)
    assert b"\x00" not in cassette.read_bytes()
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.partial"))


async def test_two_rtreplay_record_processes_the_second_is_refused(tmp_path: Path) -> None:
    cassette = tmp_path / "shared.jsonl"
    async with ScriptedUpstream() as up:
        first = await start_cli("record", "--out", str(cassette), "--upstream", up.websocket_base_url)
        try:
            second = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "rtreplay", "record", "--out", str(cassette),
                "--upstream", up.websocket_base_url, "--port", "0",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(second.communicate(), timeout(30))
            got = await session(first.url)
        finally:
            code, _out, _err = await first.stop()
    assert second.returncode == 2, (out, err)
    [message] = [line for line in err.decode().splitlines() if "error:" in line]  # one line
    assert f"process {first.pid}" in message and "another recorder" in message
    assert code == 0
    assert_kept(cassette, 0, got)


XDIST_CONFTEST = '''
import os, time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def barrier(request):
    """Both tests reach their realtime_mock together."""
    (HERE / f"ready-{request.node.name}").touch()
    deadline = time.monotonic() + 60
    while len(list(HERE.glob("ready-*"))) < 2:
        assert time.monotonic() < deadline, "the other worker never came"
        time.sleep(0.01)


def pytest_runtest_logreport(report):
    if report.when == "setup" and report.failed or report.when == "call":
        (HERE / f"done-{report.nodeid.split('::')[-1]}").touch()
'''

XDIST_TESTS = '''
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

HERE = Path(__file__).parent


def wait_for_the_other(me):
    """Record only once the other test has tried (and been refused), so both overlap."""
    other = "test_b" if me == "test_a" else "test_a"
    deadline = time.monotonic() + 60
    while not (HERE / f"done-{other}").exists():
        assert time.monotonic() < deadline, "the other test never finished its setup"
        time.sleep(0.01)


def talk(realtime_mock):
    with connect(realtime_mock.url + "?model=gpt-realtime") as ws:
        ws.recv(10)
        ws.send('{"type": "response.create"}')
        while '"response.done"' not in ws.recv(10):
            pass


@pytest.mark.realtime("shared")
def test_a(realtime_mock):
    wait_for_the_other("test_a")
    talk(realtime_mock)


@pytest.mark.realtime("shared")
def test_b(realtime_mock):
    wait_for_the_other("test_b")
    talk(realtime_mock)
'''


def test_two_xdist_workers_recording_one_cassette(pytester: pytest.Pytester, upstream: ScriptedUpstream) -> None:
    pytester.makeini(
        "[pytest]\naddopts = -p no:hypothesispytest -p no:recording -p no:cacheprovider\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makeconftest(XDIST_CONFTEST)
    pytester.makepyfile(test_shared=XDIST_TESTS)
    result = pytester.runpytest_subprocess(
        "-n", "2", "--realtime-record-mode=all", f"--realtime-upstream={upstream.websocket_base_url}",
        timeout=timeout(120),
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*is being recorded by another recorder*run them in one worker*"])
    cassette = pytester.path / "cassettes" / "shared.jsonl"
    recorded = load(cassette)
    assert len(recorded.connections) == 1 and recorded.connections[0].close is not None
    assert not list(cassette.parent.glob("*.lock")) and not list(cassette.parent.glob("*.partial"))


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=2, max_size=6))
@settings(max_examples=15, **SETTINGS)
def test_recorders_on_shared_paths_never_share_a_cassette(tmp_path: Path, order: list[str]) -> None:
    """Recorders start in a generated order on a few paths: one per path records, the
    others are refused before they accept anything, and every recorded session is kept."""
    directory = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    directory.mkdir()

    async def run() -> None:
        async with ScriptedUpstream() as up:
            running: dict[str, Recorder] = {}
            sessions: dict[str, list[str | bytes]] = {}
            for name in order:
                recorder = Recorder(directory / f"{name}.jsonl", upstream=up.websocket_base_url, api_key=KEY)
                if name in running:
                    with pytest.raises(RecordError):
                        await recorder.start()
                    assert recorder.connections == 0
                    continue
                await recorder.start()
                running[name] = recorder
                sessions[name] = await session(recorder.url)
            for recorder in running.values():
                await recorder.close()
            for name, got in sessions.items():
                assert_kept(directory / f"{name}.jsonl", 0, got)

    asyncio.run(run())
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{n}.jsonl" for n in set(order))


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real 512 KiB tmpfs (needs root; CI runs as root)."""
    where = tmp_path_factory.mktemp("small-fs")
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path, leave: int) -> Path:
    """Fill the file system of ``directory`` but ``leave`` bytes."""
    filler = directory / "filler"
    filler.unlink(missing_ok=True)
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(0, free - leave))
    return filler


def clean(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


async def full_disk_run(directory: Path, leave: int, first_audio: bool) -> None:
    cassette = directory / "full.jsonl"
    async with ScriptedUpstream(audio_deltas=40, audio_delta_bytes=4_800) as up:
        recorder = Recorder(cassette, upstream=up.websocket_base_url, api_key=KEY, idle_timeout=None)
        await recorder.start()
        filler = fill(directory, leave)
        got: dict[int, list[str | bytes]] = {}
        # Sessions until one cannot be written whole: it is closed with 1011, not left hanging.
        for n in range(40):
            try:
                got[n] = await session(recorder.url, audio=first_audio or n > 0)
            except InvalidStatus as exc:
                assert exc.response.status_code == 503  # its open record could not be written
                break
            if recorder._write_error is not None:
                break
        else:
            raise AssertionError("the disk never filled up")
        # While the disk is full: refused with 503, and the upstream is not even contacted.
        contacted = len(up.handshakes)
        with pytest.raises(InvalidStatus) as info:
            await session(recorder.url)
        assert info.value.response.status_code == 503
        assert b"cannot write its cassette" in info.value.response.body
        assert len(up.handshakes) == contacted
        # Space again: accepted and recorded.
        filler.unlink()
        later = await session(recorder.url)
        with pytest.raises(RecordError) as stopped:
            await recorder.close()
    message = str(stopped.value)
    assert "No space left on device" in message and recorder.kept_partial is not None
    assert str(recorder.kept_partial) in message and not cassette.exists()
    kept = recorder.kept_partial
    # Whole records only (no warning about a cut line), and every session that completed.
    with CassetteReader(kept) as reader:
        recorded = list(reader)
        assert reader.warnings == []
    opens = [r for r in recorded if isinstance(r, Open)]
    assert [o.conn for o in opens] == list(range(len(opens)))
    for conn, frames in got.items():  # the one cut short too: what its client got was written
        assert_kept(kept, conn, frames)
    assert_kept(kept, opens[-1].conn, later)
    closes = {r.conn: r for r in recorded if isinstance(r, Close)}
    assert closes[opens[-1].conn].code == 1000


async def test_a_full_disk_keeps_what_was_written_and_refuses_until_it_can_write(small_fs: Path) -> None:
    clean(small_fs)
    await full_disk_run(small_fs, 60_000, first_audio=False)


@given(st.integers(2_000, 200_000), st.booleans())
@settings(max_examples=8, **SETTINGS)
def test_a_full_disk_at_any_moment(small_fs: Path, leave: int, first_audio: bool) -> None:
    clean(small_fs)
    asyncio.run(full_disk_run(small_fs, leave, first_audio))


# -- the file system moving under the recorder -------------------------------------------------


@given(st.integers(0, 2), st.integers(1, 3))
@settings(max_examples=6, **SETTINGS)
def test_the_cassette_directory_removed_mid_recording(tmp_path: Path, before: int, after: int) -> None:
    directory = tmp_path / f"d{len(list(tmp_path.iterdir()))}" / "cassettes"
    cassette = directory / "x.jsonl"

    async def run() -> list[list[str | bytes]]:
        got = []
        async with ScriptedUpstream() as up:
            async with Recorder(cassette, upstream=up.websocket_base_url, api_key=KEY) as recorder:
                for _ in range(before):
                    got.append(await session(recorder.url))
                shutil.rmtree(directory.parent)
                for _ in range(after):
                    got.append(await session(recorder.url))
        return got

    got = asyncio.run(run())
    for n, frames in enumerate(got):
        assert_kept(cassette, n, frames)
    assert not list(directory.glob("*.partial")) and not list(directory.glob("*.lock"))


def test_out_naming_a_directory_is_refused_at_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rtreplay", "record", "--out", str(tmp_path), "--port", "0"],
        capture_output=True, text=True, timeout=timeout(30),
    )
    assert done.returncode == 2
    assert f"{tmp_path} is a directory" in done.stderr and done.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("below", ["x.jsonl", "deeper/x.jsonl"])
def test_out_under_a_file_names_the_file_at_once(tmp_path: Path, below: str) -> None:
    (tmp_path / "notes").write_text("a file, not a directory\n")
    out = tmp_path / "notes" / below
    done = subprocess.run(
        [sys.executable, "-m", "rtreplay", "record", "--out", str(out), "--port", "0"],
        capture_output=True, text=True, timeout=timeout(30),
    )
    assert done.returncode == 2
    assert f"because {tmp_path / 'notes'} is a file, not a directory" in done.stderr
    assert (tmp_path / "notes").read_text() == "a file, not a directory\n"


async def test_out_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real" / "x.jsonl"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    async with ScriptedUpstream() as up:
        async with Recorder(link, upstream=up.websocket_base_url, api_key=KEY) as recorder:
            got = await session(recorder.url)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert_kept(real, 0, got)


async def test_sighup_finishes_the_cassette(tmp_path: Path) -> None:
    cassette = tmp_path / "hup.jsonl"
    async with ScriptedUpstream() as up:
        proc = await start_cli("record", "--out", str(cassette), "--upstream", up.websocket_base_url)
        got = await session(proc.url)
        code, _out, err = await proc.stop(signal.SIGHUP)
    assert code == 0
    assert "SIGHUP: finishing the cassette" in err and "wrote" in err
    assert_kept(cassette, 0, got)


# -- stopping is prompt -----------------------------------------------------------------------


@contextlib.contextmanager
def silent_upstream() -> Iterator[tuple[str, threading.Event]]:
    """A TCP server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                held.append(conn)
                accepted.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/v1", accepted
    finally:
        listener.close()
        for conn in held:
            conn.close()


async def test_stopping_while_a_handshake_waits_on_a_silent_upstream_is_prompt(tmp_path: Path) -> None:
    with silent_upstream() as (upstream, accepted):
        # An open timeout far beyond the test's own bound: only a prompt stop passes.
        proc = await start_cli("record", "--out", str(tmp_path / "s.jsonl"), "--upstream", upstream,
                               "--open-timeout", "3600")
        client = asyncio.create_task(session(proc.url))
        await wait_until(accepted.is_set, what="the recorder to contact the silent upstream")
        code, _out, err = await proc.stop(signal.SIGINT)
        with pytest.raises(InvalidStatus) as info:
            await asyncio.wait_for(client, timeout(10))
    assert code == 0
    assert info.value.response.status_code == 503
    assert "no connection was recorded" in err


# -- the plugin's summary -----------------------------------------------------------------------


def test_the_plugin_does_not_say_recorded_when_the_old_cassette_was_kept(
    pytester: pytest.Pytester, upstream: ScriptedUpstream
) -> None:
    pytester.makeini(
        "[pytest]\naddopts = -p no:hypothesispytest -p no:recording -p no:cacheprovider\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_refused='''
import pytest
from websockets.sync.client import connect
from websockets.exceptions import InvalidStatus


@pytest.mark.realtime("kept")
def test_refused(realtime_mock):
    with pytest.raises(InvalidStatus):
        connect(realtime_mock.url + "?model=gpt-realtime")
''')
    old = pytester.path / "cassettes" / "kept.jsonl"
    old.parent.mkdir()
    shutil.copy(Path(__file__).parents[2] / "cassettes" / "text-response.jsonl", old)
    before = old.read_bytes()
    upstream.refuse = Refusal(401)
    result = pytester.runpytest_subprocess(
        "--realtime-record-mode=all", f"--realtime-upstream={upstream.websocket_base_url}", timeout=timeout(60)
    )
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*recorded 1 cassette*")
    result.stdout.fnmatch_lines(["*left 1 cassette as it was: the upstream refused every connection*",
                                 "  cassettes/kept.jsonl"])
    assert old.read_bytes() == before
