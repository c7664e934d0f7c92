"""Promise 1: a key never reaches a cassette, wherever it hides, recorded through the real proxy.

Hypothesis builds sessions in which one key is presented as a credential (a header, a
subprotocol, a query parameter, the proxy's own key, or not at all) and then hidden in
every place a key can hide: handshake headers and query parameters echoed back by the
upstream, ``client_secret`` values, nested secret fields, tool arguments, free text and
binary frames in both directions, a close reason, a refusal body. Each session is
recorded by a real :class:`~rtreplay.recorder.Recorder` between a real client socket and
an upstream that sends every secret back; the key's bytes must then appear nowhere in
the cassette, nor in any payload decoded from it, and the recording must be complete.

The law has one documented limit: a key nobody presented as a credential and that has no
key shape (``sk-...``, ``ek_...``) can only be recognised by the name of the field that
holds it, so such keys are hidden only in secret-named fields.

``RTREPLAY_SECRETS_EXAMPLES`` (default 50; the ``slow`` test runs 2,000) sets the count.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import string
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from rtreplay.cassette import Close, Frame, Open, Reject
from rtreplay.codec import CassetteReader
from rtreplay.recorder import Recorder

from ..conftest import timeout
from .support import report_figure

PAD = "pad " * 700  # makes an event larger than 2 KB
FAST_EXAMPLES = int(os.environ.get("RTREPLAY_SECRETS_EXAMPLES", "50"))
SLOW_EXAMPLES = 2000
TRIED = {"sessions": 0}

# -- keys -------------------------------------------------------------------------------

_URLSAFE = string.ascii_letters + string.digits + "-_"
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Key:
    value: str
    shaped: bool  # looks like an OpenAI key (sk-..., ek_...) wherever it appears


keys = st.one_of(
    st.text(_URLSAFE, min_size=20, max_size=60).map(lambda s: Key("sk-proj-" + s, True)),
    st.text(_ALNUM, min_size=20, max_size=48).map(lambda s: Key("sk-" + s, True)),
    st.text(_ALNUM, min_size=16, max_size=40).map(lambda s: Key("ek_" + s, True)),
    # An Azure key: 32 hex digits. A JWT-like or opaque token: no recognisable shape.
    st.text("0123456789abcdef", min_size=32, max_size=32).map(lambda s: Key("az" + s, False)),
    st.text(_URLSAFE + ".~", min_size=10, max_size=60).map(lambda s: Key("tok" + s, False)),
)

# How the key is presented to the proxy: as a credential it learns, or not at all.
PRESENTED = ("authorization", "api-key", "x-api-key", "subprotocol", "query-api-key",
             "query-key", "query-client_secret", "proxy-key", "none")

# Places a key hides in frames. Field-named places are recognisable whatever the key.
FIELD_PLACES = (
    "server-client_secret",       # session.created / client secret minting response
    "server-nested-password",     # a secret-named field deep inside an event
    "client-nested-api_key",      # session.update metadata holding a key
    "server-tool-arguments",      # a tool call whose arguments name an api_key
    "client-tool-output",         # a function_call_output whose JSON output holds a token
)
FREE_PLACES = (
    "client-text",                # a user message quoting the key
    "client-plain",               # a text frame that is not JSON
    "client-binary",              # a binary frame holding the key's bytes
    "client-tool-description",    # a tool declared with the key in its description
    "server-error",               # an error echoing the key
    "server-delta",               # a transcript delta spelling the key
    "server-binary",              # a binary frame from the upstream
    "server-tool-arguments-free",  # tool arguments with the key under an ordinary name
    "handshake-echo",             # the upstream repeats the handshake it received
    "custom-header",              # the key in a header with an ordinary name
    "close-reason",               # the upstream closes with the key in its reason
    "refusal-body",               # the upstream refuses the handshake, quoting the key
)


@dataclass(frozen=True)
class Session:
    key: Key
    presented: str
    places: tuple[str, ...]
    audio_frames: int
    # Large events take the redactor's fast path for audio-sized frames: pad some to it.
    padded: bool = False

    @property
    def known(self) -> bool:
        """Whether the proxy can know the key for what it is (presented, or key-shaped)."""
        return self.presented != "none" or self.key.shaped


@st.composite
def sessions(draw: st.DrawFn) -> Session:
    key = draw(keys)
    presented = draw(st.sampled_from(PRESENTED))
    known = presented != "none" or key.shaped
    pool = FIELD_PLACES + (FREE_PLACES if known else ())
    places = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8, unique=True))
    return Session(key, presented, tuple(sorted(places)), draw(st.integers(0, 3)), draw(st.booleans()))


# -- an upstream that sends every secret back -------------------------------------------


class LeakyUpstream:
    """A Realtime-like upstream that repeats the secrets it is shown and adds its own."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.received: list[str | bytes] = []
        self.handshake: dict[str, Any] = {}
        self.server: Server | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def __aenter__(self) -> LeakyUpstream:
        self.server = await serve(
            self.handle, "127.0.0.1", 0, process_request=self.process_request,
            select_subprotocol=lambda _c, offered: Subprotocol("realtime") if "realtime" in offered else None,
            max_size=None,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parsed = urllib.parse.urlsplit(request.path)
        self.handshake = {
            "path": parsed.path,
            "query": parsed.query,
            "headers": dict(request.headers.raw_items()),
        }
        if "refusal-body" in self.session.places:
            body = json.dumps({"error": {"message": f"Incorrect API key provided: {self.session.key.value}.",
                                         "type": "invalid_request_error", "code": "invalid_api_key"}}).encode()
            headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body)),
                               "x-request-id": f"req={self.session.key.value}"})
            return Response(401, "Unauthorized", headers, body)
        return None

    def frames(self) -> list[str | bytes]:
        """What the upstream sends unprompted after its session.created."""
        k, places = self.session.key.value, self.session.places
        out: list[str | bytes] = []

        def dumps(event: dict[str, Any]) -> str:
            return json.dumps({**event, "pad": PAD} if self.session.padded else event)
        if "handshake-echo" in places:
            out.append(dumps({"type": "debug.handshake", "event_id": "e_hs", **self.handshake}))
        if "server-client_secret" in places:
            out.append(dumps({"type": "realtime.client_secret", "event_id": "e_cs",
                                   "client_secret": {"value": k, "expires_at": 1767233035}}))
        if "server-nested-password" in places:
            out.append(dumps({"type": "x.nested", "event_id": "e_np",
                                   "a": [{"b": {"c": [1, {"password": k}]}}]}))
        if "server-tool-arguments" in places:
            out.append(dumps({"type": "response.function_call_arguments.done", "event_id": "e_ta",
                                   "name": "login", "arguments": json.dumps({"user": "ann", "api_key": k})}))
        if "server-tool-arguments-free" in places:
            out.append(dumps({"type": "response.function_call_arguments.done", "event_id": "e_tf",
                                   "name": "store", "arguments": json.dumps({"note": f"remember {k} please"})}))
        if "server-error" in places:
            out.append(dumps({"type": "error", "event_id": "e_er", "error": {
                "type": "invalid_request_error", "code": "invalid_api_key",
                "message": f"Incorrect API key provided: {k}. You can find your API key at ..."}}))
        if "server-delta" in places:
            out.append(dumps({"type": "response.output_audio_transcript.delta", "event_id": "e_dl",
                                   "delta": f"your key is {k}"}))
        if "server-binary" in places:
            out.append(b"\x00\x01key=" + k.encode() + b"\xff")
        for n in range(self.session.audio_frames):
            out.append(dumps({"type": "response.output_audio.delta", "event_id": f"e_au{n}",
                                   "delta": "AAAA" * 500}))
        return out

    async def handle(self, ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "session.created", "event_id": "e_0", "session": {"id": "sess_1"}}))
        for frame in self.frames():
            await ws.send(frame)
        try:
            async for message in ws:
                self.received.append(message)
                if message == '{"type":"bye"}':
                    break
                # Echo each client message back, as a misbehaving upstream might.
                if isinstance(message, bytes):
                    await ws.send(message)
                else:
                    await ws.send(json.dumps({"type": "debug.echo", "of": message}))
        except ConnectionClosed:
            return
        if "close-reason" in self.session.places:
            await ws.close(4001, f"bad key {self.session.key.value}")
        else:
            await ws.close(1000, "bye")


def client_frames(session: Session) -> list[str | bytes]:
    k, places = session.key.value, session.places
    out: list[str | bytes] = []

    def dumps(event: dict[str, Any]) -> str:
        return json.dumps({**event, "pad": PAD} if session.padded else event)
    if "client-nested-api_key" in places:
        out.append(dumps({"type": "session.update", "session": {
            "type": "realtime", "metadata": {"vendor": {"api_key": k}}}}))
    if "client-tool-description" in places:
        out.append(dumps({"type": "session.update", "session": {"type": "realtime", "tools": [
            {"type": "function", "name": "f", "description": f"call with {k}", "parameters": {}}]}}))
    if "client-text" in places:
        out.append(dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"my key: {k}!"}]}}))
    if "client-tool-output" in places:
        out.append(dumps({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": "call_1", "output": json.dumps({"access_token": k, "ok": True})}}))
    if "client-plain" in places:
        out.append(f"not json {k}")
    if "client-binary" in places:
        out.append(b"\x00" + k.encode() + b"\x00")
    for _ in range(session.audio_frames):
        out.append(dumps({"type": "input_audio_buffer.append", "audio": "AAAA" * 500}))
    out.append('{"type":"bye"}')
    return out


# -- one session through the real proxy -------------------------------------------------

_counter = itertools.count()


async def record_session(session: Session, directory: Path) -> tuple[Path, list[str | bytes], int | None]:
    """Record one session; return the cassette, what the client received, and the HTTP status if refused."""
    k = session.key.value
    cassette = directory / f"s{next(_counter)}.jsonl"
    headers: dict[str, str] = {}
    subprotocols = [Subprotocol("realtime")]
    query = {"model": "gpt-realtime"}
    p = session.presented
    if p == "authorization":
        headers["Authorization"] = f"Bearer {k}"
    elif p in ("api-key", "x-api-key"):
        headers[p] = k
    elif p == "subprotocol":
        subprotocols.append(Subprotocol(f"openai-insecure-api-key.{k}"))
    elif p.startswith("query-"):
        query[p[len("query-"):]] = k
    if "custom-header" in session.places:
        headers["X-Debug-Note"] = f"key={k}"
    got: list[str | bytes] = []
    status = None
    async with LeakyUpstream(session) as up:
        recorder = Recorder(cassette, upstream=up.base, api_key=k if p == "proxy-key" else "",
                            idle_timeout=None)
        async with recorder:
            url = f"{recorder.url}?{urllib.parse.urlencode(query)}"
            try:
                async with connect(url, additional_headers=headers, subprotocols=subprotocols,
                                   max_size=None, open_timeout=timeout(10)) as ws:
                    for frame in client_frames(session):
                        await ws.send(frame)
                    try:
                        async for message in ws:
                            got.append(message)
                    except ConnectionClosed:
                        pass
            except InvalidStatus as exc:
                status = exc.response.status_code
    return cassette, got, status


def assert_no_key(session: Session, cassette: Path) -> None:
    k = session.key.value.encode()
    data = cassette.read_bytes()
    assert k not in data, f"the key is in {cassette}:\n{data.decode(errors='replace')}"
    seen: list[bytes] = []
    with CassetteReader(cassette) as reader:
        for record in reader:
            if isinstance(record, Frame):
                seen.append(record.payload_bytes())
                event = record.event()
                if event is not None:
                    seen.append(json.dumps(event, ensure_ascii=False).encode())
                    seen.extend(_nested_json(event))
            elif isinstance(record, Open):
                seen.append(json.dumps([record.path, record.query, record.headers, record.subprotocol]).encode())
            elif isinstance(record, (Close, Reject)):
                seen.append(json.dumps(record.__struct_fields__ and [getattr(record, f) for f in record.__struct_fields__]).encode())
    for blob in seen:
        assert k not in blob, f"the key is in a decoded payload of {cassette}: {blob[:300]!r}"


def _nested_json(value: Any) -> Iterable[bytes]:
    """Strings inside an event that are themselves JSON (tool arguments and outputs), decoded."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _nested_json(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nested_json(item)
    elif isinstance(value, str) and value.startswith("{"):
        try:
            yield json.dumps(json.loads(value), ensure_ascii=False).encode()
        except ValueError:
            return


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def check(session: Session, directory: Path) -> None:
    TRIED["sessions"] += 1
    log = logging.getLogger("rtreplay")
    lines = _Lines()
    level = log.level
    log.addHandler(lines)
    log.setLevel(logging.DEBUG)
    try:
        cassette, got, status = asyncio.run(record_session(session, directory))
    finally:
        log.removeHandler(lines)
        log.setLevel(level)
    # What the proxy logs ends up in CI logs: the key stays out of them too.
    for line in lines.lines:
        assert session.key.value not in line, f"the key is in a log line: {line}"
    assert not list(directory.glob("*.partial")), "a partial file was left behind"
    assert cassette.exists(), "the recording was discarded"
    assert_no_key(session, cassette)
    with CassetteReader(cassette) as reader:
        records = list(reader)
    if "refusal-body" in session.places:
        assert status == 401
        assert [type(r).__name__ for r in records[1:]] == ["Open", "Reject"]
        return
    # Nothing was lost to redaction: every frame either way is in the cassette.
    frames = [r for r in records if isinstance(r, Frame)]
    sent = client_frames(session)
    assert len([f for f in frames if f.dir == "client"]) == len(sent)
    assert len([f for f in frames if f.dir == "server"]) == len(got)
    [close] = [r for r in records if isinstance(r, Close)]
    assert close.code == (4001 if "close-reason" in session.places else 1000)


SETTINGS = {"deadline": None, "derandomize": False,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}


@pytest.fixture
def count_sessions() -> Iterator[None]:
    before = TRIED["sessions"]
    yield
    report_figure("secrets: sessions recorded through the proxy", TRIED["sessions"] - before)


@pytest.mark.usefixtures("count_sessions")
@given(sessions())
@settings(max_examples=FAST_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
def test_no_key_reaches_the_cassette(tmp_path: Path, session: Session) -> None:
    check(session, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.usefixtures("count_sessions")
@given(sessions())
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
def test_no_key_reaches_the_cassette_many_sessions(tmp_path: Path, session: Session) -> None:
    check(session, tmp_path)


@pytest.mark.parametrize("place", FIELD_PLACES + FREE_PLACES)
def test_each_hiding_place_is_tried_with_an_opaque_presented_key(tmp_path: Path, place: str) -> None:
    """Every place, explicitly, so no place depends on what hypothesis happens to draw."""
    key = Key("tok.opaque-Value_0123456789", False)
    check(Session(key, "authorization", (place,), 1), tmp_path)


@pytest.mark.parametrize("presented", PRESENTED)
def test_each_way_of_presenting_the_key(tmp_path: Path, presented: str) -> None:
    shaped = presented == "none"
    key = Key("sk-proj-Presented0123456789abc" if shaped else "az0123456789abcdef0123456789abcdef", shaped)
    check(Session(key, presented, ("handshake-echo", "server-error", "client-text", "close-reason"), 0), tmp_path)
