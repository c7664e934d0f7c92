"""A cassette that changes on disk under ``rtreplay serve`` (or a ``ReplayServer``).

Re-recorded by another process (a new file renamed over it), copied over in place, cut
short: the replay never mixes two versions and never sends a frame read from the wrong
offsets. The next client gets the new version, loaded again with a log line that says so;
a connection already open finishes on the version it began with when that version still
exists (a rename), and is closed with 1011 saying why when it does not (in place).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from rtreplay.server import ReplayServer

from . import clients
from .conftest import CASSETTES, timeout
from .docs import code_blocks
from .test_cli_serve import Served

TEXT = CASSETTES / "text-response.jsonl"
CALL = CASSETTES / "function-call.jsonl"


def replace_by_rename(source: Path, target: Path) -> None:
    """What a re-recording does: a new file written beside the target, renamed over it."""
    partial = target.with_name(target.name + ".new")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def rewrite_in_place(source: Path, target: Path) -> None:
    """What ``cp new.jsonl x.jsonl`` does: the same file, truncated and written again."""
    with open(target, "r+b") as f:
        f.truncate(0)
        f.write(source.read_bytes())


def play(base_url: str, source: Path) -> list[object]:
    return clients.websocket_client(base_url + "/realtime", clients.script(source))


def first_event(base_url: str) -> dict[str, object]:
    """Connect and read the first server event."""
    with connect(base_url + "/realtime?model=gpt-realtime", open_timeout=timeout(20)) as ws:
        event: dict[str, object] = json.loads(ws.recv(timeout(20)))
    return event


@pytest.mark.parametrize("change", [replace_by_rename, rewrite_in_place])
def test_serve_loads_a_cassette_rewritten_on_disk_and_says_so(tmp_path: Path, change: object) -> None:
    cassette = tmp_path / "x.jsonl"
    shutil.copyfile(TEXT, cassette)
    served = Served(str(cassette), "--port", "0")
    try:
        assert play(served.base_url, TEXT) == clients.server_events(TEXT)
        change(CALL, cassette)  # type: ignore[operator]
        # The next client gets the new version from its first recorded connection, whole.
        assert play(served.base_url, CALL) == clients.server_events(CALL)
        # The new version's one connection is used: a third client is refused, as by any cassette.
        with pytest.raises(InvalidStatus) as refused:
            first_event(served.base_url)
        assert refused.value.response.status_code == 409
    finally:
        code, err = served.stop(signal.SIGTERM)
    assert code == 0, err
    assert f"{cassette} changed on disk" in err and "loaded again, 1 connection" in err, err
    assert "Traceback" not in err
    if change is replace_by_rename:  # the line docs/cli.md shows
        [documented] = [b for b in code_blocks("cli.md", "text") if "changed on disk" in b]
        line = next(line for line in err.splitlines() if "changed on disk" in line)
        assert line[9:] == documented.strip()[9:].replace("cassettes/text-response.jsonl", str(cassette))


@contextlib.contextmanager
def _open_mid_replay(base_url: str, source: Path):  # type: ignore[no-untyped-def]
    """A client that has read its first server event and sent nothing yet: the replay holds
    the rest of the recording for it, to be read from the file once the client speaks."""
    plan = clients.script(source)
    with connect(plan.url(base_url + "/realtime"), open_timeout=timeout(20)) as ws:
        assert plan.steps[0].send is None
        ws.recv(timeout(20))
        yield ws, plan


def _finish(ws, plan) -> list[object]:  # type: ignore[no-untyped-def]
    received = []
    for step in plan.steps[1:]:
        if step.send is not None:
            ws.send(step.send)
        else:
            received.append(json.loads(ws.recv(timeout(20))))
    return clients.timeless(received)


def test_an_open_connection_finishes_on_its_version_when_the_file_is_renamed_over(tmp_path: Path) -> None:
    cassette = tmp_path / "x.jsonl"
    shutil.copyfile(TEXT, cassette)
    with ReplayServer(cassette).in_thread() as server:
        with _open_mid_replay(server.websocket_base_url, TEXT) as (ws, plan):
            replace_by_rename(CALL, cassette)
            # A new client loads the new version; the open one goes on reading the old.
            assert play(server.websocket_base_url, CALL) == clients.server_events(CALL)
            assert _finish(ws, plan) == clients.server_events(TEXT)[1:]
    assert not server.report.failures, server.report.failures
    assert any("changed on disk (it was replaced by another file): loaded again" in w for w in server.report.warnings)


def test_an_open_connection_rewritten_in_place_is_closed_with_1011_never_fed_garbage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cassette = tmp_path / "x.jsonl"
    shutil.copyfile(TEXT, cassette)
    caplog.set_level(logging.INFO, "rtreplay")
    with ReplayServer(cassette).in_thread() as server:
        with _open_mid_replay(server.websocket_base_url, TEXT) as (ws, plan):
            rewrite_in_place(CALL, cassette)
            received: list[object] = []
            with pytest.raises(ConnectionClosed) as closed:
                received = _finish(ws, plan)
            # Every frame that arrived is one of the old version's, whole.
            for message in received:
                assert message in clients.server_events(TEXT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        assert "cassette changed on disk" in closed.value.rcvd.reason
        assert play(server.websocket_base_url, CALL) == clients.server_events(CALL)
    [failure] = server.report.failures
    assert "changed on disk while being replayed (rewritten in place, or cut short)" in failure.message
    assert "rewritten in place" in caplog.text
    # The replay closed it: its log line must not blame the client, who only echoed the 1011.
    assert "conn 0: closed by the replay (code 1011)" in caplog.text, caplog.text


def test_a_cassette_cut_short_in_place_is_refused_until_it_is_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cassette = tmp_path / "x.jsonl"
    shutil.copyfile(TEXT, cassette)
    data = CALL.read_bytes()
    with ReplayServer(cassette).in_thread() as server:
        url = server.websocket_base_url
        with open(cassette, "r+b") as f:  # half of a new version: being copied in place
            f.truncate(0)
            f.write(data[: len(data) // 2])
        with pytest.raises(InvalidStatus) as refused:
            first_event(url)
        assert refused.value.response.status_code == 503
        body = refused.value.response.body.decode()
        assert f"{cassette}" in body and "still being written, or cut short" in body
        with open(cassette, "ab") as f:
            f.write(data[len(data) // 2 :])
        assert play(url, CALL) == clients.server_events(CALL)


def test_a_new_version_that_cannot_be_read_leaves_the_loaded_one_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cassette = tmp_path / "x.jsonl"
    shutil.copyfile(TEXT, cassette)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(TEXT.read_bytes().replace(b'"kind":"frame"', b'"kind":"frme"', 1))
    caplog.set_level(logging.INFO, "rtreplay")
    with ReplayServer(cassette).in_thread() as server:
        replace_by_rename(bad, cassette)
        assert play(server.websocket_base_url, TEXT) == clients.server_events(TEXT)
        with pytest.raises(InvalidStatus):  # its one connection is used: a second handshake
            first_event(server.websocket_base_url)
    said = [r.getMessage() for r in caplog.records if "changed on disk" in r.getMessage()]
    assert len(said) == 1, said  # said once, not at every handshake
    assert "line 3: unknown record kind 'frme'" in said[0] and "still serving the version loaded before" in said[0]


async def test_a_key_minted_after_a_reload_opens_the_new_versions_connection(tmp_path: Path) -> None:
    """The client secret comes from the version the connection then gets: the HTTP call
    loads a changed cassette too, so the key it mints is one the new version issued."""
    from .test_client_secrets import flow

    cassette = tmp_path / "browser.jsonl"
    shutil.copyfile(CASSETTES / "endpoints" / "ephemeral-key.jsonl", cassette)
    async with ReplayServer(cassette, match="type") as server:  # (the flow says other words)
        _, first = await flow(server.base_url, server.websocket_base_url)
        replace_by_rename(CASSETTES / "endpoints" / "ephemeral-key.jsonl", cassette)  # re-recorded
        _, again = await flow(server.base_url, server.websocket_base_url)
    assert [e["type"] for e in again] == [e["type"] for e in first]
    # (The flow's session differs from this recording's: only its HTTP body mismatches.)
    assert {m.kind for m in server.report.mismatches} == {"http"}, str(server.report)
    assert any("loaded again" in w for w in server.report.warnings)
