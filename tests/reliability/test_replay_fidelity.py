"""Promise 8: everything that was recorded replays, exactly, and what cannot be is refused
when the cassette is read.

Each kind of fault found in ``../shared/cases/replay-fidelity/`` (copied to ``cases/``) is
tried as it was reported, through the three ways a user replays (``ReplayServer(path)``,
a real ``rtreplay serve`` process, the pytest plugin), and then over a generated family:

- server frames of every kind (JSON, text that is not JSON, binary, small and large),
  served from a file, reach the client byte for byte and in order;
- recorded refusals (any status from 300 to 599, any sendable headers, any body) are
  answered with exactly that status, those headers and that body;
- every close a cassette can hold is replayed with its code and reason, or as a drop;
- every path the recorder accepts is served;
- IDs, ``event_id`` and ``response.metadata`` values the client chose come back in the
  server frames that echo them;
- what a replay cannot send (close codes, over-long reasons, refusal statuses that are
  not refusals, header names and values HTTP cannot carry) is a ``file:line`` error.

``RTREPLAY_FIDELITY_EXAMPLES`` (default 25; the ``slow`` test runs 300) sets the count
of generated cassettes per family.
"""

from __future__ import annotations

import asyncio
import json
import os
import string
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtreplay import Cassette, Close, Connection, Frame, Header, Open, Reject
from rtreplay.cli import main
from rtreplay.codec import SENDABLE_CLOSE_CODES, encode_records, load
from rtreplay.errors import CassetteFormatError
from rtreplay.recorder import DEFAULT_UPSTREAM, upstream_url
from rtreplay.server import ReplayServer

from ..conftest import timeout
from .support import SUPPRESSED_HEALTH_CHECKS, handshake_bytes, report_figure, start_cli

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ["pytester"]

CASES = Path(__file__).parent / "cases"
EXAMPLES = int(os.environ.get("RTREPLAY_FIDELITY_EXAMPLES", "25"))
SLOW_EXAMPLES = 300
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": False,
    "suppress_health_check": SUPPRESSED_HEALTH_CHECKS,
}
SESSION_UPDATE = '{"type":"session.update","session":{"type":"realtime"}}'


def write(path: Path, cassette: Cassette) -> Path:
    """The cassette's records as a file, byte for byte (no redaction, no checks)."""
    path.write_bytes(encode_records(cassette.records()))
    return path


# -- a client that plays a recorded connection ------------------------------------------


@dataclass
class Played:
    received: list[str | bytes]
    close_code: int | None  # None: the connection dropped with no close frame
    close_reason: str


async def play(url: str, conn: Connection, *, close: bool = True) -> Played:
    """Send the recorded client frames, each once the server frames recorded before it came.

    Every wait is bounded; a frame that never comes fails the test with what was awaited.
    """
    received: list[str | bytes] = []
    code: int | None = None
    reason = ""
    async with connect(url, max_size=None, open_timeout=timeout(10)) as ws:
        pending = 0
        for frame in conn.frames:
            if frame.dir == "server":
                pending += 1
                continue
            for _ in range(pending):
                received.append(await _recv(ws, len(received)))
            pending = 0
            await ws.send(frame.payload())
        for _ in range(pending):
            received.append(await _recv(ws, len(received)))
        if close and (conn.close is None or conn.close.by == "client"):
            await ws.close()
        try:
            extra = await asyncio.wait_for(ws.recv(), timeout(10))
            raise AssertionError(f"a server frame beyond the recording: {extra!r}")
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                code, reason = exc.rcvd.code, exc.rcvd.reason
        except asyncio.TimeoutError:
            raise AssertionError("the replay never closed the connection") from None
    return Played(received, code, reason)


async def _recv(ws: Any, n: int) -> str | bytes:
    try:
        message: str | bytes = await asyncio.wait_for(ws.recv(), timeout(10))
    except asyncio.TimeoutError:
        raise AssertionError(f"server frame {n + 1} never came") from None
    return message


def server_payloads(conn: Connection) -> list[str | bytes]:
    return [f.payload() for f in conn.server_frames()]


def assert_replayed(server: ReplayServer) -> None:
    report = server.report
    assert report.ok and report.complete, str(report)
    assert "every client event matched" in str(report)


# -- the reported inputs -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["minimal-text-frame.jsonl", "minimal-binary-frame.jsonl"])
async def test_text_and_binary_server_frames_replay_from_a_file(name: str) -> None:
    cassette = load(CASES / name)
    conn = cassette.connections[0]
    async with ReplayServer(CASES / name) as server:
        played = await play(server.url + "?model=gpt-realtime", conn)
    assert played.received == server_payloads(conn)
    assert [type(m) for m in played.received] == [str, bytes if "binary" in name else str, str]
    assert_replayed(server)


@pytest.mark.parametrize("name", ["minimal-text-frame.jsonl", "minimal-binary-frame.jsonl"])
async def test_text_and_binary_server_frames_through_rtreplay_serve(name: str) -> None:
    conn = load(CASES / name).connections[0]
    served = await start_cli("serve", str(CASES / name))
    try:
        played = await play(served.url + "?model=gpt-realtime", conn)
    finally:
        code, _out, err = await served.stop()
    assert played.received == server_payloads(conn)
    assert code == 0
    assert "sending failed" not in err and "every client event matched" in err, err


async def test_a_recorded_refusal_with_its_headers_replays_as_recorded() -> None:
    [conn] = load(CASES / "minimal-reject.jsonl").connections
    assert conn.reject is not None
    async with ReplayServer(CASES / "minimal-reject.jsonl") as server:
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url + "?model=gpt-realtime", open_timeout=timeout(10)):
                pass
    response = info.value.response
    assert response.status_code == 403
    assert response.headers["x-request-id"] == "req_1"
    assert response.body.decode() == conn.reject.body
    assert server.report.ok, str(server.report)


async def test_a_recorded_refusal_through_rtreplay_serve() -> None:
    served = await start_cli("serve", str(CASES / "minimal-reject.jsonl"))
    try:
        with pytest.raises(InvalidStatus) as info:
            async with connect(served.url + "?model=gpt-realtime", open_timeout=timeout(10)):
                pass
    finally:
        code, _out, err = await served.stop()
    assert info.value.response.status_code == 403
    assert code == 0 and "HTTP 500" not in err and "Traceback" not in err, err


async def test_the_azure_deployment_path_that_was_recorded_is_served() -> None:
    [conn] = load(CASES / "azure-deployments-path.jsonl").connections
    query = urllib.parse.urlencode(conn.open.query)
    async with ReplayServer(CASES / "azure-deployments-path.jsonl") as server:
        played = await play(f"ws://{server.netloc}{conn.open.path}?{query}", conn)
    assert played.received == server_payloads(conn)
    assert_replayed(server)


async def test_rtreplay_serve_lists_recorded_connections_nobody_connected_to() -> None:
    served = await start_cli("serve", str(CASES / "azure-deployments-path.jsonl"))
    code, _out, err = await served.stop()
    assert code == 0
    assert "recorded connection 0 was never connected to" in err, err


async def test_a_frame_that_cannot_be_sent_closes_with_1011_and_fails_the_report(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonl", load(CASES / "minimal-text-frame.jsonl"))
    async with ReplayServer(path) as server:
        async with connect(server.url, open_timeout=timeout(10)) as ws:
            await asyncio.wait_for(ws.recv(), timeout(10))
            # The payloads are read from the file when due: cut it short under the server.
            os.truncate(path, 200)
            await ws.send(SESSION_UPDATE)
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), timeout(10))
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    report = server.report
    assert not report.ok
    [failure] = report.failures
    assert "could not be sent" in failure.message and "changed on disk" in failure.message
    assert "every client event matched" not in str(report)
    assert "failure" in str(report)


PLUGIN_TESTS = '''
import pytest
from websockets.sync.client import connect
from websockets.exceptions import InvalidStatus

UPDATE = '{"type":"session.update","session":{"type":"realtime"}}'


@pytest.mark.realtime("minimal-text-frame")
def test_text(realtime_mock):
    with connect(realtime_mock.url + "?model=gpt-realtime") as ws:
        assert ws.recv(10) == '{"type":"session.created"}'
        ws.send(UPDATE)
        assert ws.recv(10) == "not json {"
        assert ws.recv(10) == '{"type":"session.updated"}'


@pytest.mark.realtime("minimal-binary-frame")
def test_binary(realtime_mock):
    with connect(realtime_mock.url + "?model=gpt-realtime") as ws:
        ws.recv(10)
        ws.send(UPDATE)
        assert ws.recv(10) == bytes([0, 1, 2, 255])
        assert ws.recv(10) == '{"type":"session.updated"}'


@pytest.mark.realtime("minimal-reject")
def test_reject(realtime_mock):
    with pytest.raises(InvalidStatus) as info:
        connect(realtime_mock.url + "?model=gpt-realtime")
    assert info.value.response.status_code == 403
    assert info.value.response.headers["x-request-id"] == "req_1"


@pytest.mark.realtime("azure-deployments-path")
def test_azure(realtime_mock):
    base = realtime_mock.websocket_base_url.rsplit("/v1", 1)[0]
    url = base + ("/openai/deployments/my-realtime-deployment/realtime"
                  "?model=gpt-realtime&api-version=2024-10-01-preview&deployment=gpt-realtime")
    with connect(url) as ws:
        ws.recv(10)
        ws.send('{"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}')
        ws.recv(10)
'''


def test_the_reported_cassettes_through_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\naddopts = -p no:hypothesispytest -p no:recording -p no:cacheprovider\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    cassettes = pytester.path / "cassettes"
    cassettes.mkdir()
    for case in CASES.glob("*.jsonl"):
        (cassettes / case.name).write_bytes(case.read_bytes())
    pytester.makepyfile(test_cases=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-q", timeout=timeout(120))
    result.assert_outcomes(passed=4)


# -- generated: server frames of every kind ------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
server_messages = st.one_of(
    _json_values.map(lambda v: json.dumps({"type": "x.event", "v": v}, ensure_ascii=False)),
    st.text(max_size=200),  # JSON or not: the writer decides, as for a live message
    st.binary(max_size=200),
    st.integers(40_000, 300_000).map(lambda n: os.urandom(n)),  # past the read span's batches
    st.integers(40_000, 120_000).map(lambda n: "t" * n),
)
closes = st.one_of(
    st.just(("client", 1000, "")),
    st.tuples(
        st.just("server"),
        st.sampled_from(sorted(SENDABLE_CLOSE_CODES | {1005})) | st.integers(3000, 4999),
        st.text(max_size=40).filter(lambda r: len(r.encode()) <= 123),
    ),
    st.just((None, 1006, "upstream dropped the connection without a close frame")),
)


@st.composite
def fidelity_cassettes(draw: st.DrawFn) -> Cassette:
    frames: list[Frame] = []
    t = 0.0
    for turn in range(draw(st.integers(0, 3)) + 1):
        for message in draw(st.lists(server_messages, max_size=5)):
            t += 0.001
            frames.append(Frame.from_message(0, t, "server", message))
        if turn:
            text = draw(st.text(max_size=40))
            event = {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": text}]}}
            t += 0.001
            frames.append(Frame.from_message(0, t, "client", json.dumps(event, ensure_ascii=False)))
    by, code, reason = draw(closes)
    return Cassette(Header(), [Connection(Open(0), frames, Close(0, t + 0.01, code, reason, by))])


def check_fidelity(cassette: Cassette, path: Path) -> None:
    write(path, cassette)
    [conn] = load(path).connections
    assert conn.close is not None

    async def run() -> Played:
        async with ReplayServer(path) as server:
            played = await play(server.url, conn)
        assert server.report.ok, str(server.report)
        return played

    played = asyncio.run(run())
    assert played.received == server_payloads(conn)
    assert [type(m) for m in played.received] == [type(p) for p in server_payloads(conn)]
    recorded = conn.close
    if recorded.by == "server":
        want = 1000 if recorded.code == 1005 else recorded.code
        assert (played.close_code, played.close_reason) == (want, recorded.reason)
    elif recorded.by is None:
        assert played.close_code is None  # dropped: no close frame, as recorded


@given(fidelity_cassettes())
@settings(max_examples=EXAMPLES, **SETTINGS)
def test_every_recorded_frame_and_close_replays_exactly(tmp_path: Path, cassette: Cassette) -> None:
    check_fidelity(cassette, tmp_path / "g.jsonl")


@pytest.mark.slow
@given(fidelity_cassettes())
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)
def test_every_recorded_frame_and_close_replays_exactly_many(tmp_path: Path, cassette: Cassette) -> None:
    check_fidelity(cassette, tmp_path / "g.jsonl")


# -- generated: refusals ---------------------------------------------------------------------

_TOKEN = string.ascii_letters + string.digits + "-!#$%&'*+.^_`|~"
header_names = st.text(_TOKEN, min_size=1, max_size=20).filter(
    lambda n: n.lower() not in ("content-length", "connection", "date", "transfer-encoding")
)
# Printable ASCII and any non-ASCII character; no control characters but tab, no edge blanks.
header_values = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f") | st.just("\t"),
    max_size=40,
).map(lambda v: v.strip(" \t"))
rejects = st.builds(
    lambda status, headers, body: Reject(0, 0.01, status, headers, body),
    st.integers(300, 599),
    st.dictionaries(header_names, header_values, max_size=5).map(
        lambda h: {k: v for k, v in h.items() if k.lower() not in {o.lower() for o in h if o != k}}
    ),
    st.text(max_size=200),
)


async def raw_response(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(handshake_bytes("/v1/realtime?model=gpt-realtime"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout(10))  # the server closes after it
    writer.close()
    return data


def check_refusal(reject: Reject, path: Path) -> None:
    write(path, Cassette(Header(), [Connection(Open(0, query={"model": "gpt-realtime"}), reject=reject)]))

    async def run() -> bytes:
        async with ReplayServer(path) as server:
            data = await raw_response(server.host, server.port)
        assert server.report.ok, str(server.report)
        return data

    data = asyncio.run(run())
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {reject.status} ".encode()), lines[0]
    assert body == reject.body.encode()
    for name, value in reject.headers.items():
        assert f"{name}: {value}".encode() in lines[1:], (name, value, lines)
    assert f"Content-Length: {len(body)}".encode() in lines[1:]


@given(rejects)
@settings(max_examples=EXAMPLES, **SETTINGS)
def test_every_recorded_refusal_replays_exactly(tmp_path: Path, reject: Reject) -> None:
    check_refusal(reject, tmp_path / "r.jsonl")


# -- generated: what a replay cannot send is refused when read ------------------------------

_UNSENDABLE_CODES = st.one_of(
    st.integers(-(2**31), 999), st.sampled_from([1004, 1015, 1016, 2000, 2999]), st.integers(5000, 2**31)
)
bad_records = st.one_of(
    st.builds(lambda c: Close(0, 0.5, c, "", "server"), _UNSENDABLE_CODES),
    st.builds(
        lambda r, c: Close(0, 0.5, c, r, "server"),
        st.text(min_size=124, max_size=200),
        st.sampled_from(sorted(SENDABLE_CLOSE_CODES | {1005})),
    ),
    st.builds(lambda s: Reject(0, 0.5, s), st.integers(-(2**31), 299) | st.integers(600, 2**31)),
    st.builds(
        lambda n: Reject(0, 0.5, 403, {n: "x"}),
        st.text(min_size=1, max_size=10).filter(lambda n: any(ch not in _TOKEN for ch in n)),
    ),
    st.builds(
        lambda a, c, b: Reject(0, 0.5, 429, {"retry-after": a + c + b}),
        st.text(max_size=5),
        st.sampled_from([chr(c) for c in (*range(0, 9), *range(10, 32), 127)]),
        st.text(max_size=5),
    ),
)


@given(bad_records, st.integers(0, 5))
@settings(max_examples=EXAMPLES * 4, **SETTINGS)
def test_what_a_replay_cannot_send_is_a_file_line_error(
    tmp_path: Path, record: Close | Reject, frames: int
) -> None:
    filler = [Frame(0, 0.1, "server", text=f"f{n}") for n in range(frames)]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(encode_records([Header(), Open(0), *filler, record]))
    line = 3 + frames
    for attempt in (load, ReplayServer):
        with pytest.raises(CassetteFormatError) as info:
            attempt(path)
        assert info.value.line == line
        assert str(info.value).startswith(f"{path}:{line}: ") and "\n" not in str(info.value)


def test_rtreplay_serve_refuses_an_unsendable_close_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(encode_records([Header(), Open(0), Close(0, 0.5, 1004, "", "server")]))
    done = subprocess.run(
        [sys.executable, "-m", "rtreplay", "serve", str(path), "--port", "0"],
        capture_output=True, text=True, timeout=timeout(30),
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and f"{path}:3: close code 1004" in done.stderr


@pytest.mark.parametrize("status", [101, 100, 200, 204, 299])
def test_refusal_statuses_that_are_not_refusals(tmp_path: Path, status: int, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(encode_records([Header(), Open(0), Reject(0, 0.1, status)]))
    assert main(["serve", str(path), "--port", "0"]) == 2
    assert f"{path}:3: reject status {status} is not a refusal" in capsys.readouterr().err


# -- generated: every path the recorder takes is served ------------------------------------

_SEGMENT = st.text(string.ascii_letters + string.digits + "-_~", min_size=1, max_size=12)
segments = _SEGMENT | st.builds(lambda a, b: f"{a}%20{b}", _SEGMENT, _SEGMENT)


@given(st.lists(segments.filter(lambda s: s != "realtime"), max_size=4))
@settings(max_examples=EXAMPLES, **SETTINGS)
def test_every_path_the_recorder_accepts_is_served(tmp_path: Path, prefix: list[str]) -> None:
    path = "/" + "/".join([*prefix, "realtime"])
    assert upstream_url(DEFAULT_UPSTREAM, path) is not None  # the recorder relays it
    frames = [Frame(0, 0.0, "server", json=json.dumps({"type": "session.created"}).encode())]  # type: ignore[arg-type]
    cassette = Cassette(
        Header(),
        [Connection(Open(0, path=path), frames, Close(0, 0.1, 1000, "", "client")),
         Connection(Open(1, path="/v1/realtime"), [], Close(1, 0.1, 1000, "", "client"))],
    )
    write(tmp_path / "p.jsonl", cassette)
    conn = load(tmp_path / "p.jsonl").connections[0]

    async def run() -> None:
        async with ReplayServer(tmp_path / "p.jsonl") as server:
            played = await play(f"ws://{server.netloc}{path}?model=gpt-realtime", conn)
        assert played.received == server_payloads(conn)
        # The report names the recorded connection nobody connected to.
        assert "recorded connection 1 was never connected to" in str(server.report)

    asyncio.run(run())


# -- generated: the values the client chose come back ----------------------------------------

# Any text, but not one of the other strings of the session: a recorded ID stands for
# itself wherever it appears, so one equal to a role or a type would be ambiguous.
_OTHER_STRINGS = {"event_1", "event_2", "event_3", "event_4", "event_5", "resp_1", "item_srv", "hi",
                  "message", "user", "input_text", "completed", "note", "invalid_request_error"}
# Mapped rather than filtered: hypothesis 6.80 (the lowest declared) draws short equal
# strings so often that filtering for four distinct ones discarded a fifth of its examples.
ids = st.text(min_size=1, max_size=24).map(lambda s: s.replace(".", "_")).map(
    lambda s: s + "~" if s in _OTHER_STRINGS else s
)


def _distinct(values: list[str]) -> list[str]:
    """The values, each one already seen made different by a suffix naming its place."""
    out: list[str] = []
    for i, v in enumerate(values):
        while v in out:
            v = f"{v}~{i}"
        out.append(v)
    return out


@dataclass(frozen=True)
class Chosen:
    item: str
    event_id: str
    metadata: dict[str, str]


chosen = st.lists(ids, min_size=4, max_size=4).map(_distinct).map(
    lambda v: Chosen(v[0], v[1], {"request_id": v[2], "trace": v[3]})
)


def id_cassette(c: Chosen) -> Cassette:
    def frame(t: float, direction: str, event: dict[str, Any]) -> Frame:
        return Frame.from_message(0, t, direction, json.dumps(event, ensure_ascii=False))  # type: ignore[arg-type]

    item = {"id": c.item, "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    frames = [
        frame(0.0, "server", {"type": "session.created", "event_id": "event_1"}),
        frame(0.1, "client", {"type": "conversation.item.create", "event_id": c.event_id, "item": item}),
        frame(0.2, "server", {"type": "conversation.item.added", "event_id": "event_2", "previous_item_id": None,
                              "item": {**item, "status": "completed"}}),
        frame(0.2, "server", {"type": "error", "event_id": "event_3", "error": {
            "type": "invalid_request_error", "message": "note", "event_id": c.event_id}}),
        frame(0.3, "client", {"type": "response.create", "response": {"metadata": c.metadata}}),
        frame(0.4, "server", {"type": "response.created", "event_id": "event_4",
                              "response": {"id": "resp_1", "metadata": c.metadata}}),
        frame(0.5, "server", {"type": "response.done", "event_id": "event_5",
                              "response": {"id": "resp_1", "metadata": c.metadata, "output": [
                                  {"id": "item_srv", "previous": c.item}]}}),
    ]
    return Cassette(Header(), [Connection(Open(0), frames, Close(0, 0.6, 1000, "", "client"))])


def check_echo(recorded: Chosen, now: Chosen, path: Path) -> None:
    write(path, id_cassette(recorded))

    async def run() -> list[Any]:
        async with ReplayServer(path) as server:
            played = await play(server.url, id_cassette(now).connections[0])
        assert server.report.ok and server.report.complete, str(server.report)
        return [json.loads(m) for m in played.received]

    created, added, error, response_created, done = asyncio.run(run())
    assert added["item"]["id"] == now.item
    assert error["error"]["event_id"] == now.event_id
    assert response_created["response"]["metadata"] == now.metadata
    assert done["response"]["metadata"] == now.metadata
    assert done["response"]["output"][0]["previous"] == now.item
    # Nothing else changed: server-made IDs and the rest stay as recorded.
    assert (created["event_id"], response_created["response"]["id"]) == ("event_1", "resp_1")
    assert done["response"]["output"][0]["id"] == "item_srv"


@given(chosen, chosen)
@settings(max_examples=EXAMPLES, **SETTINGS)
def test_server_frames_echo_what_this_run_s_client_chose(tmp_path: Path, recorded: Chosen, now: Chosen) -> None:
    check_echo(recorded, now, tmp_path / "ids.jsonl")


def test_figures() -> None:
    report_figure("replay fidelity: generated cassettes per family (default suite)", EXAMPLES)
