"""``rtreplay serve``: the real process, and ``main()`` called directly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from rtreplay._service import is_loopback as _is_loopback
from rtreplay.cli import main

from . import clients
from .conftest import CASSETTES, REPO, timeout

TEXT = CASSETTES / "text-response.jsonl"


class Served:
    """A running ``rtreplay serve`` process and the URL it printed."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtreplay", "serve", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        found = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if "openai SDK:" in line:  # the last of the start lines
                    found.set()
            found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not found.wait(timeout(20)) or not any(
            line.startswith("websocket_base_url") for line in self.lines
        ):
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"rtreplay serve did not start: {''.join(self.lines)}{err}")
        line = next(line for line in self.lines if line.startswith("websocket_base_url: "))
        self.base_url = line.split(": ", 1)[1].strip()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=timeout(20))
        self._reader.join(timeout(5))
        return self.proc.returncode, err

    def kill(self) -> None:
        """Kill it if it still runs (what a test's ``finally`` does after a failure)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served(str(TEXT), "--port", "0")
    try:
        yield s
    finally:
        s.kill()


def test_serve_prints_the_url_replays_and_stops_on_sigterm(served: Served) -> None:
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/v1", served.base_url)
    assert served.base_url != "ws://127.0.0.1:0/v1"
    hint = next(line for line in served.lines if "openai SDK" in line)
    assert f'websocket_base_url="{served.base_url}"' in hint
    plan = clients.script(TEXT)
    got = clients.websocket_client(served.base_url + "/realtime", plan)
    assert got == clients.server_events(TEXT)
    code, err = served.stop(signal.SIGTERM)
    assert code == 0, err
    assert "conn 0: /v1/realtime?model=gpt-realtime from 127.0.0.1:" in err
    assert "every client event matched the recording" in err
    assert "Traceback" not in err


def test_ctrl_c_closes_cleanly_and_shows_the_mismatches(served: Served) -> None:
    with connect(served.base_url + "/realtime?model=gpt-realtime") as ws:
        ws.recv()
        ws.send('{"type":"input_audio_buffer.clear"}')
        assert json.loads(ws.recv())["type"] == "error"
    code, err = served.stop(signal.SIGINT)
    assert code == 0, err
    assert (
        "mismatch: connection 0 (recorded connection 0), turn 1, client event 1 of 3: expected session.update, got input_audio_buffer.clear"
        in err
    )
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_a_stalled_client_is_cut_and_the_log_says_why(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    served = Served(str(TEXT), "--port", "0", "--stall-timeout", "1", "--report", str(report))
    try:
        with connect(served.base_url + "/realtime?model=gpt-realtime") as ws:
            ws.recv()  # session.created
            ws.send(json.dumps(clients.client_events(TEXT)[0]))  # session.update
            assert json.loads(ws.recv())["type"] == "session.updated"
            # ...and waits for an answer it never asked for: the stall ends the wait.
            error = json.loads(ws.recv(timeout=timeout(10)))
            assert error["error"]["code"] == "rtreplay_stall"
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=timeout(10))
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        code, err = served.stop(signal.SIGTERM)
    finally:
        served.kill()
    assert code == 0, err
    [line] = [x for x in err.splitlines() if "stall:" in x and "conn 0:" in x]
    assert (
        "conn 0: connection 0 (recorded connection 0), turn 1, client event 2 of 3: stall: the "
        "replay holds conversation.item.added (server event 3 of 17, " in line
    )
    assert "until the client sends conversation.item.create" in line
    assert "silent for the stall timeout, 1 s (last sent: session.update)" in line
    assert "conn 0: closed by the replay (code 1008)" in err
    assert "mismatch 1 of 1 (stall)" in err  # the report at exit
    [stall] = json.loads(report.read_text())["stalls"]
    assert stall["kind"] == "stall" and stall["held"].startswith("conversation.item.added (server event 3 of 17")
    assert stall["last_received"] == "session.update"


def test_missing_cassette_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "no/such.jsonl", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "rtreplay serve: error: no/such.jsonl: no such cassette file\n"


def test_unreadable_cassette_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("this is not a cassette\n")
    assert main(["serve", str(bad), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"rtreplay serve: error: {bad}:1: not an rtreplay cassette"
    )


def test_port_in_use_is_one_line_and_exit_2(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    port = served.base_url.rsplit(":", 1)[1].split("/")[0]
    assert main(["serve", str(TEXT), "--port", port]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rtreplay serve: error: cannot listen on 127.0.0.1:{port}:")
    assert err.count("\n") == 1


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", str(TEXT), "--speed", "-1"])
    assert info.value.code == 2
    # A speed is a factor of the recorded pace, not seconds.
    assert "argument --speed: is a factor >= 0 (0: each frame as soon as it is due, 1: the recorded pace" in capsys.readouterr().err
    assert main(["serve", str(TEXT), "--tls-cert", "x.pem"]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_port_that_is_not_a_port_is_a_usage_error_not_a_traceback(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", str(TEXT), "--port", port])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port:" in err and "Traceback" not in err


def test_serve_options_reach_the_server(tmp_path: Path) -> None:
    s = Served(
        str(CASSETTES / "function-call.jsonl"),
        "--port",
        "0",
        "--repeat",
        "--match",
        "type",
        "--strict",
        "--speed",
        "0",
    )
    try:
        for _ in range(2):  # --repeat
            with connect(s.base_url + "/realtime") as ws:
                ws.recv()
                ws.send('{"type":"session.update","session":{"type":"realtime"}}')  # --match type
                assert json.loads(ws.recv())["type"] == "session.updated"
                ws.send('{"type":"input_audio_buffer.clear"}')  # --strict
                with pytest.raises(ConnectionClosed) as info:
                    ws.recv()
                assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    finally:
        code, err = s.stop()
    assert code == 0, err


def test_loopback_check() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.5")


def test_cli_doc_serve_section_matches_the_command(served: Served) -> None:
    import argparse

    from rtreplay.server import add_serve_arguments

    from .docs import code_blocks

    usage, start, log = [b for b in code_blocks("cli.md", "text") if not b.startswith("examples:")][:3]
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    options = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    documented = set(re.findall(r"--[a-z-]+", usage))
    assert documented == options - {"--help"}
    # The start lines, with this run's port in place of 8765.
    port = served.base_url.rsplit(":", 1)[1].split("/")[0]
    expected = start.replace("8765", port).replace("cassettes/text-response.jsonl", str(TEXT))
    assert "".join(served.lines[:3]) == expected
    pattern = re.sub(r"10:42:0\d", r"\\d\\d:\\d\\d:\\d\\d", re.escape(log)).replace("50412", r"\d+")
    with connect(served.base_url + "/realtime?model=gpt-realtime") as ws:
        ws.recv()
        ws.send('{"type":"input_audio_buffer.clear"}')
        ws.recv()
    _, err = served.stop()
    assert re.match(pattern, err), err


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=timeout(60),
    )  # fmt: skip
    return cert, key


def test_serve_over_tls(tmp_path: Path) -> None:
    import ssl

    cert, key = _certificate(tmp_path)
    s = Served(str(TEXT), "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert s.base_url.startswith("wss://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        with connect(s.base_url + "/realtime?model=gpt-realtime", ssl=context) as ws:
            assert json.loads(ws.recv())["type"] == "session.created"
    finally:
        code, err = s.stop()
    assert code == 0, err


def test_bad_certificate_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert main(["serve", str(TEXT), "--port", "0", "--tls-cert", str(junk), "--tls-key", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rtreplay serve: error: cannot load the TLS certificate {junk}:")
    assert err.count("\n") == 1


def test_a_report_that_cannot_be_written_is_refused_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It was found out only when the server stopped, after the whole run.
    missing = tmp_path / "no-such-dir" / "report.json"
    assert main(["serve", str(TEXT), "--port", "0", "--report", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"rtreplay serve: error: cannot write the report to {missing}: "
        f"its directory {missing.parent} does not exist\n"
    )
    assert main(["serve", str(TEXT), "--port", "0", "--report", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_serve_writes_its_report_as_json_and_fails_a_node_style_suite(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    served = Served(str(TEXT), "--port", "0", "--report", str(report), "--fail-on-mismatch")
    try:
        with connect(served.base_url + "/realtime?model=gpt-realtime") as ws:
            ws.recv()
            ws.send('{"type":"session.update","session":{"type":"realtime","output_modalities":["audio"]}}')
            assert json.loads(ws.recv())["type"] == "error"
        code, err = served.stop(signal.SIGTERM)
    finally:
        served.kill()
    assert code == 1, err
    assert "rtreplay serve: failing: 1 mismatch, 1 connection(s) not played to the end" in err
    doc = json.loads(report.read_text())
    assert doc["ok"] is False and doc["complete"] is False
    (mismatch,) = doc["mismatches"]
    assert mismatch["kind"] == "content" and mismatch["differences"][0]["path"] == "session.output_modalities[0]"
    assert doc["loosening"] == (
        '@pytest.mark.realtime(match=MatchPolicy.default(ignore={"session.update": '
        '["session.output_modalities[0]", "session.instructions"]}))  # from rtreplay import MatchPolicy'
    )
    assert doc["unplayed"][0]["missing_client_events"] == 2


def test_serve_with_a_clean_replay_exits_0_and_says_so_in_its_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    served = Served(str(TEXT), "--port", "0", "--report", str(report), "--fail-on-mismatch")
    try:
        plan = clients.script(TEXT)
        assert clients.websocket_client(served.base_url + "/realtime", plan) == clients.server_events(TEXT)
        code, err = served.stop(signal.SIGTERM)
    finally:
        served.kill()
    assert code == 0, err
    doc = json.loads(report.read_text())
    assert (doc["ok"], doc["complete"], doc["mismatches"], doc["unplayed"]) == (True, True, [], [])


def test_a_cassette_with_no_connection_is_said_to_have_nothing_to_replay(tmp_path: Path) -> None:
    # It said "every one was replayed ... replay with --repeat", which cannot help.
    empty = tmp_path / "empty.jsonl"
    empty.write_text(TEXT.read_text().splitlines(keepends=True)[0])
    served = Served(str(empty), "--port", "0")
    try:
        with pytest.raises(InvalidStatus) as refused:
            connect(served.base_url + "/realtime?model=gpt-realtime", open_timeout=timeout(10))
        assert refused.value.response.status_code == 404
        assert b"recorded no WebSocket connection, so there is nothing to replay" in refused.value.response.body
    finally:
        code, err = served.stop()
    assert code == 0, err
    assert f"rtreplay serve: warning: {empty} recorded no WebSocket connection: every client will be refused" in err
    assert "--repeat" not in err


def _play_then_wait(base_url: str) -> tuple[list[dict[str, object]], ConnectionClosedError]:
    """Play text-response's conversation, then wait for more instead of closing."""
    events = clients.client_events(TEXT)
    got: list[dict[str, object]] = []
    with connect(base_url + "/realtime?model=gpt-realtime") as ws:
        got.append(json.loads(ws.recv(timeout=timeout(10))))  # session.created
        for event in events:
            ws.send(json.dumps(event))
        with pytest.raises(ConnectionClosedError) as info:
            while True:  # a second response.done, which the recording does not have
                got.append(json.loads(ws.recv(timeout=timeout(20))))
    return got, info.value


def test_serve_repeat_closes_a_client_left_waiting_after_the_recording_and_replays_the_next(
    tmp_path: Path,
) -> None:
    # Used by hand: a client stays connected once the conversation is over. It used to
    # wait forever; the stall timeout closes it, and says why.
    report = tmp_path / "report.json"
    served = Served(str(TEXT), "--port", "0", "--repeat", "--stall-timeout", "1", "--report", str(report))
    try:
        got, closed = _play_then_wait(served.base_url)
        assert [e["type"] for e in got[-2:]] == ["rate_limits.updated", "error"]
        assert closed.rcvd is not None and closed.rcvd.code == 1008
        assert closed.rcvd.reason == (
            "rtreplay stall: every recorded server event was sent; the recorded client closed here"
        )
        # The next client gets the whole recording again, and closes as recorded.
        plan = clients.script(TEXT)
        assert clients.websocket_client(served.base_url + "/realtime", plan) == clients.server_events(TEXT)
        code, err = served.stop(signal.SIGTERM)
    finally:
        served.kill()
    assert code == 0, err
    from .docs import code_blocks

    (documented,) = code_blocks("replay.md", "log")
    [line] = [x for x in err.splitlines() if "stall:" in x and "conn 0:" in x]
    assert line.split(" ", 1)[1] == documented.strip().replace("10 s", "1 s")
    assert "conn 0: closed by the replay (code 1008)" in err
    assert "conn 1: closed by the client (code 1000): 3/3 client events matched" in err
    [stall] = json.loads(report.read_text())["stalls"]
    assert stall["held"] == "nothing: every recorded server event was sent"
    assert stall["awaits"] == "the client to close the connection, as the recorded client did (code 1000)"
