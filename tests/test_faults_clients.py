"""Each kind of fault, at several places, against real clients: what each client sees.

The expected session is worked out here from the recording alone (the recorded server
events with the fault applied where it names, as the API would have done it), and
compared with what the openai SDK (async and sync), websocket-client and Node's ``ws``
received, and how each says the connection ended.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rtreplay.codec import load
from rtreplay.faults import Fault
from rtreplay.server import ReplayServer

from .conformance.clients import Target
from .conformance.plans import send, until
from .conftest import CASSETTES
from .faultclients import DRIVERS, Seen, skip_reason

CASSETTE = CASSETTES / "text-chat.jsonl"
RECORDED = load(CASSETTE).connections[0]
SERVER = [(f.t, f.event()) for f in RECORDED.frames if f.dir == "server"]
CLIENT = [f.event() for f in RECORDED.frames if f.dir == "client"]
LAST = SERVER[-1][1]["type"]

#: error:CODE -> (error.type, error.code) the client must see: the API's, per preset.
ERRORS = {
    "rate_limit_exceeded": ("tokens", "rate_limit_exceeded"),
    "server_error": ("server_error", None),
    "session_expired": ("invalid_request_error", "session_expired"),
    "invalid_request_error": ("invalid_request_error", "invalid_event"),
    "my_own_code": ("invalid_request_error", "my_own_code"),
}

FAULTS = [
    "error:rate_limit_exceeded@after:response.created",
    "error:server_error@open",
    "error:session_expired@before:response.output_text.delta#3",
    "error:invalid_request_error@t:0.6",
    "error:my_own_code@after:response.done",
    "close:1011@after:response.output_text.delta#2",
    "close:4000:try again later@before:response.done",
    "close@t:0.5",
    "drop@after:response.content_part.added",
    "drop@open",
    "drop@before:response.output_text.done",
    "expire@after:response.done",
    "expire@before:response.created",
    "stall:0.4@after:response.created",
    "stall:0.3@before:response.done",
]


def position(fault: Fault) -> int:
    """Where in the recorded server events the fault goes: before event number N."""
    at = fault.at
    if at.place == "open":
        return 0
    if at.place == "t":
        return next((i for i, (t, _) in enumerate(SERVER) if at.t is not None and t >= at.t), len(SERVER))
    seen = 0
    for i, (_, event) in enumerate(SERVER):
        if event["type"] == at.type:
            seen += 1
            if seen == at.n:
                return i + (1 if at.place == "after" else 0)
    raise AssertionError(f"{fault} is not in the recording")


def expected(fault: Fault) -> tuple[list[str], tuple[int, str] | None]:
    """The event types the client receives and how the server ends the connection."""
    types = [e["type"] for _, e in SERVER]
    i = position(fault)
    if fault.what == "error":
        return [*types[:i], "error", *types[i:]], None
    if fault.what == "close":
        return types[:i], (fault.close_code, fault.reason or "")
    if fault.what == "drop":
        return types[:i], (1006, "")
    if fault.what == "expire":
        return [*types[:i], "error"], (1001, "session expired")
    return types, None  # a stall: everything, later


def plan(cut: bool) -> list[dict[str, Any]]:
    """Send the recorded client events at once, then read to the end or to the close."""
    steps = [send(e) for e in CLIENT]
    return [*steps, {"until_closed": True} if cut else until(LAST)]


def check_ending(seen: Seen, close: tuple[int, str] | None, client: str) -> None:
    if close is None:
        assert seen.close is None and not seen.ended, f"{client} saw the connection end: {seen.close}"
        return
    code, reason = close
    if client.startswith("openai") and code in (1000, 1001):
        # The openai SDK ends its event stream quietly on a normal close (1000, 1001).
        assert seen.ended and seen.close is None
    else:
        assert seen.close == (code, reason)


@pytest.mark.parametrize("client", sorted(DRIVERS))
@pytest.mark.parametrize("text", FAULTS)
async def test_each_client_sees_what_the_api_would_send(text: str, client: str) -> None:
    reason = skip_reason(client)
    if reason:
        pytest.skip(reason)
    fault = Fault.parse(text)
    types, close = expected(fault)
    async with ReplayServer(CASSETTE, faults=[fault]) as server:
        seen = await DRIVERS[client](Target(server), plan(cut=close is not None))
    assert seen.types == types, str(server.report)
    check_ending(seen, close, client)
    if fault.what in ("error", "expire"):
        error = seen.first("error")["error"]
        code = fault.error_code if fault.what == "error" else "session_expired"
        assert (error["type"], error.get("code")) == ERRORS[code]
        assert error["event_id"] is None and error["message"]
    if fault.what == "stall":
        # Nothing after the stall's place came before the stall was over.
        i = position(fault)
        if seen.times:
            assert seen.times[i] - seen.started >= (fault.seconds or 0)
    report = server.report
    assert report.ok and [f.fault for f in report.faults] == [text]
    if fault.ends_connection:
        [cut] = report.cut
        assert cut.cut_by == text and not report.unplayed
    else:
        assert report.complete


@pytest.mark.parametrize("client", sorted(DRIVERS))
@pytest.mark.parametrize(("text", "status"), [("refuse:429@connect", 429), ("refuse:503:3@connect", 503), ("refuse:401@connect", 401)])
async def test_a_refused_handshake_is_the_api_s_http_answer(text: str, status: int, client: str) -> None:
    reason = skip_reason(client)
    if reason:
        pytest.skip(reason)
    async with ReplayServer(CASSETTE, faults=[text]) as server:
        if client == "node-ws":
            with pytest.raises(AssertionError, match=f"Unexpected server response: {status}"):
                await DRIVERS[client](Target(server), plan(cut=False))
            return
        seen = await DRIVERS[client](Target(server), plan(cut=False))
    assert seen.refused is not None, seen
    got, headers, body = seen.refused
    assert got == status
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["message"] and "type" in error and "code" in error
    if status == 429:
        assert headers["retry-after"] == "1" and error["code"] == "rate_limit_exceeded"
    elif status == 503:
        assert headers["retry-after"] == "3"
    else:
        assert "retry-after" not in headers and error["code"] == "invalid_api_key"
    fired = server.report.faults
    assert [(f.fault, f.where) for f in fired] == [(text, "at the handshake")]
