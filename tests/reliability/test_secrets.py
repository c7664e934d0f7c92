"""Promise 1: a key never reaches a cassette, wherever it hides, recorded through the real proxy.

Hypothesis builds sessions in which one key is presented as a credential (a header, a
subprotocol, a query parameter, the proxy's own key, or not at all) and then hidden in
every place a key can hide: handshake headers and query parameters echoed back by the
upstream, ``client_secret`` values, nested secret fields, tool arguments, free text and
binary frames in both directions, a close reason, a refusal body. Each session is
recorded by a real :class:`~rtreplay.recorder.Recorder` between a real client socket and
an upstream that sends every secret back; the key's bytes must then appear nowhere in
the cassette, nor in any payload decoded from it, and the recording must be complete.

A presented key is also hidden in other encodings (:data:`ENCODINGS`): base64, standard
and URL-safe, inside a larger blob at each of the three alignments; hexadecimal, lower and
upper case; upper and lower case; HTML character references, decimal, hexadecimal or on
every other character. The law then also decodes what it reads back, in every way (every
run of base64 characters at every offset, every run of hex digits, case folded, HTML
references decoded), and the key's bytes must appear in none of it, nor in a log line.

A presented key is also put in audio, its bytes inside the PCM at any offset (so its
base64 at each alignment), whole or split across two messages; the audio each connection
sends either way, decoded and joined, must not hold it, nor (with ``audio_files``, cassette
format 2) any file of ``rtreplay-audio/``. And in a ``client_secrets`` call the recorder
relays: its request and the upstream's answer quote the key.

The law has two documented limits: a key nobody presented as a credential and that has no
key shape (``sk-...``, ``ek_...``) can only be recognised by the name of the field that
holds it, so such keys are hidden only in secret-named fields; and a key nobody presented
is hidden in no other encoding than JSON and percent escapes (its shape does not survive
base64, hex or audio bytes).

``RTREPLAY_SECRETS_EXAMPLES`` (default 50; the ``slow`` test runs 2,000) sets the count.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
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

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from rtreplay.cassette import Close, Frame, HttpExchange, Open, Reject
from rtreplay.codec import CassetteReader
from rtreplay.recorder import Recorder

from ..conftest import timeout
from ..encodings import ENCODINGS, encode, leaked
from ..upstream import _with_posts
from .support import SUPPRESSED_HEALTH_CHECKS, handshake_bytes, report_figure

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
             "query-key", "query-client_secret", "query-subscription-key", "proxy-key",
             "cookie-first", "cookie-last", "ocp-apim-subscription-key", "upstream-userinfo",
             "none")

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
    # Encodings and splits:
    "server-delta-split",         # the key streamed across 2-5 transcript deltas of one item
    "server-args-delta-split",    # ... across tool-argument deltas, under an ordinary name
    "server-after-escape",        # right after a JSON escape: "...\n<key>", "\t<key>"
    "server-u-escaped",           # the key written with \u escapes in the JSON text
    "client-after-percent20",     # right after a percent-encoded space: "%20<key>"
    "client-percent-encoded",     # every character of the key percent-encoded
    "path-segment",               # the key in the request path, which the proxy logs
    "refusal-reason",             # a 503 whose reason phrase and long body quote the key
    "failed-subprotocol",         # the upstream picks a subprotocol holding the key (502)
    # Audio and HTTP:
    "server-audio-key",           # the key's bytes inside output audio (its base64 at any alignment)
    "client-audio-key",           # ... inside input audio
    "client-audio-split",         # ... split across two consecutive input audio messages
    "http-exchange",              # a client_secrets call whose request and answer quote the key
)
# Places where the key is in audio bytes: only a presented key is found there.
AUDIO_PLACES = ("server-audio-key", "client-audio-key", "client-audio-split")
# Places where the upstream does not accept the session.
REFUSING = ("refusal-body", "refusal-reason", "failed-subprotocol")

@dataclass(frozen=True)
class Session:
    key: Key
    presented: str
    places: tuple[str, ...]
    audio_frames: int
    # Large events take the redactor's fast path for audio-sized frames: pad some to it.
    padded: bool = False
    pieces: int = 3  # how many deltas a split key is streamed in
    encoding: str = "plain"  # how the key is written where it hides (ENCODINGS)
    audio_at: int = 0  # where the key's bytes start in audio (its base64 alignment: modulo 3)
    audio_files: bool = False  # the recorder keeps audio in rtreplay-audio/ (format 2)

    @property
    def known(self) -> bool:
        """Whether the proxy can know the key for what it is (presented, or key-shaped)."""
        return self.presented != "none" or self.key.shaped

    @property
    def shown(self) -> str:
        """The key as written where it hides."""
        return encode(self.key.value, self.encoding)


@st.composite
def sessions(draw: st.DrawFn) -> Session:
    key = draw(keys)
    presented = draw(st.sampled_from(PRESENTED))
    known = presented != "none" or key.shaped
    pool = FIELD_PLACES + (FREE_PLACES if known else ())
    if presented == "none":  # a key's shape does not survive in audio bytes (the documented limit)
        pool = tuple(p for p in pool if p not in AUDIO_PLACES)
    places = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8, unique=True))
    refusing = [p for p in places if p in REFUSING]
    places = [p for p in places if p not in REFUSING] + refusing[:1]  # one way to be refused
    if "failed-subprotocol" in places:  # (nothing is recorded then, not even an HTTP call)
        places = [p for p in places if p != "http-exchange"]
    encoding = draw(st.sampled_from(ENCODINGS)) if presented != "none" else "plain"
    return Session(key, presented, tuple(sorted(places)), draw(st.integers(0, 3)), draw(st.booleans()),
                   draw(st.integers(2, 5)), encoding, draw(st.integers(0, 400)), draw(st.booleans()))


PCM = bytes(range(256)) * 8


def audio_with_key(session: Session) -> bytes:
    """Audio whose bytes hold the key's, from byte ``audio_at`` on."""
    return PCM[: session.audio_at] + session.key.value.encode() + PCM[session.audio_at :]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


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
            process_response=self.process_response, create_connection=_with_posts(self.answer_post),
            select_subprotocol=lambda _c, offered: Subprotocol("realtime") if "realtime" in offered else None,
            max_size=None,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def answer_post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """A client_secrets call: the ephemeral key, and the request's key quoted back."""
        k = self.session.shown
        return 200, {"value": "ek_68af1f0d0c7c8191a8d2c3b4e5f60718", "expires_at": 1767233035,
                     "session": {"type": "realtime", "instructions": f"use {k}"}, "note": f"you sent {k}",
                     "echo": body.decode("utf-8", "replace")}

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parsed = urllib.parse.urlsplit(request.path)
        self.handshake = {
            "path": parsed.path,
            "query": parsed.query,
            "headers": dict(request.headers.raw_items()),
        }
        k = self.session.shown
        if "refusal-body" in self.session.places:
            body = json.dumps({"error": {"message": f"Incorrect API key provided: {k}.",
                                         "type": "invalid_request_error", "code": "invalid_api_key"}}).encode()
            headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body)),
                               "x-request-id": f"req={k}"})
            return Response(401, "Unauthorized", headers, body)
        if "refusal-reason" in self.session.places:
            # The proxy logs the first 200 characters of a body: the key straddles that cut.
            body = ("x" * (199 - len(k) // 2) + " " + k + " trailing").encode()
            headers = Headers({"Content-Type": "text/plain", "Content-Length": str(len(body))})
            return Response(503, f"Overloaded {k}", headers, body)
        return None

    def process_response(self, connection: ServerConnection, request: Request, response: Response) -> Response | None:
        if "failed-subprotocol" in self.session.places and response.status_code == 101:
            response.headers["Sec-WebSocket-Protocol"] = f"x-{self.session.key.value}"
        return None

    def frames(self) -> list[str | bytes]:
        """What the upstream sends unprompted after its session.created."""
        k, places = self.session.shown, self.session.places
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
        if "server-delta-split" in places:
            for n, piece in enumerate(split(k, self.session.pieces)):
                out.append(dumps({"type": "response.output_audio_transcript.delta", "event_id": f"e_sp{n}",
                                  "response_id": "resp_1", "item_id": "item_1", "output_index": 0,
                                  "content_index": 0, "delta": ("my key is " if n == 0 else "") + piece}))
        if "server-args-delta-split" in places:
            text = json.dumps({"note": k})
            for n, piece in enumerate(split(text, self.session.pieces + 2)):
                out.append(dumps({"type": "response.function_call_arguments.delta", "event_id": f"e_ad{n}",
                                  "response_id": "resp_1", "item_id": "item_2", "output_index": 1,
                                  "call_id": "call_1", "delta": piece}))
        if "server-after-escape" in places:
            out.append(dumps({"type": "response.output_text.done", "event_id": "e_ae",
                              "text": f"first\n{k}\tthen\t{k}\r\n"}))
        if "server-u-escaped" in places:
            escaped = "".join(f"\\u{ord(c):04x}" for c in k)
            out.append('{"type":"response.output_text.done","event_id":"e_ue","text":"key ' + escaped + '"}')
        for n in range(self.session.audio_frames):
            out.append(dumps({"type": "response.output_audio.delta", "event_id": f"e_au{n}",
                                   "delta": "AAAA" * 500}))
        if "server-audio-key" in places:
            out.append(json.dumps({"type": "response.output_audio.delta", "event_id": "e_ak", "response_id": "resp_1",
                                   "item_id": "item_3", "output_index": 2, "content_index": 0,
                                   "delta": b64(audio_with_key(self.session))}))
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
            reason = f"bad key {self.session.shown}"
            if len(reason.encode()) > 123:  # a close reason holds 123 bytes: the key as it is
                reason = f"bad key {self.session.key.value}"
            await ws.close(4001, reason)
        else:
            await ws.close(1000, "bye")


def client_frames(session: Session) -> list[str | bytes]:
    k, places = session.shown, session.places
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
    if "client-after-percent20" in places:
        out.append(dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"url?q=a%20{k}"}]}}))
    if "client-percent-encoded" in places:
        encoded = "".join(f"%{b:02X}" for b in k.encode())
        out.append(dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"see {encoded}"}]}}))
    for _ in range(session.audio_frames):
        out.append(dumps({"type": "input_audio_buffer.append", "audio": "AAAA" * 500}))
    if "client-audio-key" in places:
        out.append(json.dumps({"type": "input_audio_buffer.append", "audio": b64(audio_with_key(session))}))
    if "client-audio-split" in places:
        audio = audio_with_key(session)
        cut = session.audio_at + 1 + len(session.key.value) * session.pieces // 7  # inside the key
        out.append(json.dumps({"type": "input_audio_buffer.append", "audio": b64(audio[:cut])}))
        out.append(json.dumps({"type": "input_audio_buffer.append", "audio": b64(audio[cut:])}))
    out.append('{"type":"bye"}')
    return out


def split(text: str, pieces: int) -> list[str]:
    """``text`` in ``pieces`` consecutive parts, none of which holds it whole."""
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


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
    elif p == "cookie-first":
        headers["Cookie"] = f"session={k}; theme=dark"
    elif p == "cookie-last":
        headers["Cookie"] = f"theme=dark; session={k}"
    elif p == "ocp-apim-subscription-key":
        headers["Ocp-Apim-Subscription-Key"] = k
    if "custom-header" in session.places:
        headers["X-Debug-Note"] = f"key={session.shown}"
    got: list[str | bytes] = []
    status = None
    async with LeakyUpstream(session) as up:
        base = up.base
        if p == "upstream-userinfo":
            base = base.replace("ws://", f"ws://user:{urllib.parse.quote(k, safe='')}@")
        recorder = Recorder(cassette, upstream=base, api_key=k if p == "proxy-key" else "",
                            idle_timeout=None, audio="files" if session.audio_files else "inline")
        async with recorder:
            url = f"{recorder.url}?{urllib.parse.urlencode(query)}"
            # (A key whose base64 holds a "/", or written with JSON escapes, is no path
            # segment: the proxy reads a backslash as a slash, as lenient servers do.)
            if "path-segment" in session.places and "/" not in session.shown and "\\" not in session.shown:
                shown = urllib.parse.quote(session.shown, safe="")
                url = url.replace("/v1/realtime", f"/v1/{shown}/realtime")
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
            # (After the session: a key the proxy learns only later, from a subprotocol, is
            # no live credential yet; one written before is caught by the last check.)
            if "http-exchange" in session.places:
                body = json.dumps({"session": {"type": "realtime", "instructions": f"remember {session.shown}"}})
                status_line = await post(recorder.url.replace("ws://", "http://") + "/realtime/client_secrets"
                                         + f"?{urllib.parse.urlencode(query)}", headers, body.encode())
                assert status_line.startswith(b"HTTP/1.1 200"), status_line
            # While the recorder still runs: its partial file holds no key either.
            for partial in directory.glob("*.partial"):
                leak = leaked(k, partial.read_bytes())
                assert leak is None, f"the key is in {partial} ({leak})"
    return cassette, got, status


async def post(url: str, headers: dict[str, str], body: bytes) -> bytes:
    """POST ``body`` to ``url`` over a plain socket; the response's status line."""
    parts = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = [f"POST {parts.path}?{parts.query} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", *(f"{n}: {v}" for n, v in headers.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout(10))
    writer.close()
    return response.split(b"\r\n", 1)[0]


def assert_no_key(session: Session, cassette: Path) -> None:
    key = session.key.value
    k = key.encode()
    data = cassette.read_bytes()
    leak = leaked(key, data)
    assert leak is None, f"the key is in {cassette} ({leak}):\n{data.decode(errors='replace')}"
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
            elif isinstance(record, HttpExchange):
                seen.append(msgspec.json.encode(record))
                for part in (record.request, record.response):
                    if part.json is not msgspec.UNSET:
                        seen.append(json.dumps(json.loads(bytes(part.json)), ensure_ascii=False).encode())
                    seen.append(json.dumps(dict(part.headers), ensure_ascii=False).encode())
    for blob in seen:
        leak = leaked(key, blob)
        assert leak is None, f"the key is in a decoded payload of {cassette} ({leak}): {blob[:300]!r}"
        # Percent-decoded too (twice: a key may be encoded twice over).
        once = urllib.parse.unquote_to_bytes(blob)
        for decoded in (once, urllib.parse.unquote_to_bytes(once)):
            assert k not in decoded, f"the key is percent-encoded in {cassette}: {blob[:300]!r}"
    # Deltas of one item joined, as a client shows them: the key is not spelt there either.
    joined: dict[tuple[Any, ...], str] = {}
    with CassetteReader(cassette) as reader:
        for record in reader:
            event = record.event() if isinstance(record, Frame) else None
            if isinstance(event, dict) and isinstance(event.get("delta"), str):
                item = (record.conn, event.get("type"), event.get("item_id"), event.get("content_index"))
                joined[item] = joined.get(item, "") + event["delta"]
    for item, text in joined.items():
        leak = leaked(key, text.encode())
        assert leak is None, f"joined deltas of {item} spell the key ({leak}): {text!r}"
    # The audio of each connection and direction, decoded and joined, as a player hears it.
    audio: dict[tuple[int, str], bytes] = {}
    with CassetteReader(cassette) as reader:
        for record in reader:
            event = record.event() if isinstance(record, Frame) else None
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                name = "delta" if event["type"].endswith("audio.delta") else "audio" if event["type"].endswith(".append") else ""
                if isinstance(event.get(name), str):
                    with contextlib.suppress(ValueError):
                        stream = (record.conn, record.dir)
                        audio[stream] = audio.get(stream, b"") + base64.b64decode(event[name], validate=True)
    for stream, pcm in audio.items():
        assert k not in pcm, f"the audio of {stream} holds the key's bytes"
    # Format 2: the audio files beside the cassette hold decoded audio: the key's bytes
    # must not be there either, in any encoding.
    for path in (cassette.parent / "rtreplay-audio").glob("*.raw"):
        leak = leaked(key, path.read_bytes())
        assert leak is None, f"the key is in {path} ({leak})"


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
        leak = leaked(session.key.value, line.encode())
        assert leak is None, f"the key is in a log line ({leak}): {line}"
    assert not list(directory.glob("*.partial")), "a partial file was left behind"
    if "failed-subprotocol" in session.places:
        assert status == 502 and not cassette.exists()  # nothing was relayed: nothing recorded
        return
    assert cassette.exists(), "the recording was discarded"
    assert_no_key(session, cassette)
    with CassetteReader(cassette) as reader:
        records = list(reader)
    if "http-exchange" in session.places:
        [exchange] = [r for r in records if isinstance(r, HttpExchange)]
        assert exchange.response.status == 200
        records = [r for r in records if not isinstance(r, HttpExchange)]
    if "refusal-body" in session.places or "refusal-reason" in session.places:
        assert status == (401 if "refusal-body" in session.places else 503)
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
            "suppress_health_check": SUPPRESSED_HEALTH_CHECKS}


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


# Places where an encoded key cannot go: the subprotocol must stay a token.
_UNENCODED = ("failed-subprotocol",)


@pytest.mark.parametrize("encoding", ENCODINGS[1:])
@pytest.mark.parametrize("key", [Key("sk-proj-Encoded_key-0123456789abcdef", True),
                                 Key("az0123456789abcdef0123456789abcdef", False)], ids=["sk", "azure"])
def test_each_encoding_of_a_presented_key_in_every_free_place(tmp_path: Path, key: Key, encoding: str) -> None:
    places = tuple(p for p in FREE_PLACES if p not in REFUSING)
    check(Session(key, "authorization", places, 1, padded=True, encoding=encoding), tmp_path)
    for refusing in REFUSING:
        if refusing not in _UNENCODED:
            check(Session(key, "api-key", (refusing,), 0, encoding=encoding), tmp_path)


@pytest.mark.parametrize("place", ["server-audio-key", "client-audio-key", "client-audio-split"])
@pytest.mark.parametrize("audio_at", [0, 1, 2, 255])
def test_a_key_in_audio_reaches_neither_the_cassette_nor_its_audio_files(
    tmp_path: Path, place: str, audio_at: int
) -> None:
    """Format 2 keeps decoded audio beside the cassette: the key's own bytes. They are
    zeroed before (at every base64 alignment, and split across two messages)."""
    key = Key("sk-proj-InTheAudio_0123456789abcdef", True)
    check(Session(key, "api-key", (place,), 1, audio_at=audio_at, audio_files=True), tmp_path)
    assert list((tmp_path / "rtreplay-audio").glob("*.raw")), "no audio went to the audio files"


@pytest.mark.parametrize("presented", PRESENTED)
def test_each_way_of_presenting_the_key(tmp_path: Path, presented: str) -> None:
    shaped = presented == "none"
    key = Key("sk-proj-Presented0123456789abc" if shaped else "az0123456789abcdef0123456789abcdef", shaped)
    check(Session(key, presented, ("handshake-echo", "server-error", "client-text", "close-reason"), 0), tmp_path)


# -- credentials never leave for another place ----------------------------------------------


class Capture:
    """A WebSocket server that notes every handshake it gets and answers with ``answer``."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self.server: Server | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def __aenter__(self) -> Capture:
        async def handler(ws: ServerConnection) -> None:
            await ws.send('{"type":"session.created"}')
            await ws.wait_closed()

        def process_request(connection: ServerConnection, request: Request) -> Response | None:
            self.requests.append(request)
            return self.answer(connection, request) if self.answer is not None else None

        self.server = await serve(handler, "127.0.0.1", 0, process_request=process_request)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


REDIRECTS = (300, 301, 302, 303, 307, 308)


class connect_once(connect):
    """A client that shows a redirect instead of following it (the test must see it)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


async def record_redirect(tmp_path: Path, status: int, same_origin: bool, presented: str) -> None:
    key = "sk-proj-RedirectedKey0123456789abcdef"
    async with Capture() as elsewhere, Capture() as first:
        target = elsewhere.base if not same_origin else first.base.replace("/v1", "/v2")

        def redirect(connection: ServerConnection, request: Request) -> Response:
            location = f"{target}/realtime?model=gpt-realtime&api-key=leak"
            return Response(status, "Moved", Headers({"Location": location, "Content-Length": "0"}), b"")

        first.answer = redirect
        headers = {"Authorization": f"Bearer {key}"} if presented == "header" else {}
        recorder = Recorder(tmp_path / "r.jsonl", upstream=first.base,
                            api_key=key if presented == "proxy-key" else "", idle_timeout=None)
        async with recorder:
            with pytest.raises(InvalidStatus) as info:
                async with connect_once(recorder.url + "?model=gpt-realtime", additional_headers=headers,
                                        open_timeout=timeout(10)):
                    pass
        # The client hears of the redirect and decides; nobody else saw the key.
        assert info.value.response.status_code == status
        assert info.value.response.headers["Location"].startswith(target)
        assert len(first.requests) == 1
        for request in elsewhere.requests + first.requests[1:]:
            raise AssertionError(f"the proxy followed the redirect: {request.path} {request.headers}")
    [_, _open, reject] = load_records(tmp_path / "r.jsonl")
    assert isinstance(reject, Reject) and reject.status == status
    assert "api-key=REDACTED" in reject.headers["location"]


def load_records(path: Path) -> list[Any]:
    with CassetteReader(path) as reader:
        return list(reader)


@given(st.sampled_from(REDIRECTS), st.booleans(), st.sampled_from(["header", "proxy-key"]))
@settings(max_examples=12, **SETTINGS)  # type: ignore[arg-type]
def test_a_redirect_is_passed_back_never_followed(
    tmp_path: Path, status: int, same_origin: bool, presented: str
) -> None:
    for old in tmp_path.glob("*.jsonl"):
        old.unlink()
    asyncio.run(record_redirect(tmp_path, status, same_origin, presented))


# Path tails a client may send after /realtime: dot segments, plain or percent-encoded,
# encoded slashes and backslashes.
_DOTS = st.sampled_from(["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", ".", "%2e", "..%2fchat", "x%5c..", "a\\..", "chat"])
tails = st.lists(_DOTS | st.sampled_from(["completions", "v1", "files", "calls", ""]), min_size=1, max_size=5)


def _resolved(path: str) -> str:
    """How a lenient upstream would read a path: percent-decoded, backslashes as slashes,
    dot segments resolved."""
    import posixpath

    decoded = urllib.parse.unquote(path).replace("\\", "/")
    return posixpath.normpath(decoded)


@given(tails)
@settings(max_examples=40, **SETTINGS)  # type: ignore[arg-type]
def test_no_path_leaves_the_realtime_endpoint(tmp_path: Path, tail: list[str]) -> None:
    path = "/v1/realtime/" + "/".join(tail)

    async def run() -> tuple[list[str], int | None]:
        async with Capture() as up:
            recorder = Recorder(tmp_path / f"d{next(_counter)}.jsonl", upstream=up.base,
                                api_key="sk-proj-TheProxysOwnKey0123456789", idle_timeout=None)
            async with recorder:
                reader, writer = await asyncio.open_connection(recorder.host, recorder.port)
                writer.write(handshake_bytes(path + "?model=gpt-realtime"))
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(10))
                writer.close()
            return [r.path for r in up.requests], int(head.split()[1])

    seen, status = asyncio.run(run())
    for forwarded in seen:
        resolved = _resolved(urllib.parse.urlsplit(forwarded).path)
        assert resolved == "/v1/realtime" or resolved.startswith("/v1/realtime/"), (path, forwarded)
    if not seen:
        assert status in (400, 404), (path, status)


async def test_rtreplay_serve_keeps_an_azure_client_s_api_key_out_of_its_output() -> None:
    from ..conftest import CASSETTES
    from .support import start_cli

    key = "0123456789abcdef0123456789abcdef"
    served = await start_cli("serve", str(CASSETTES / "text-response.jsonl"), "--match", "type")
    try:
        base = served.websocket_base_url.rsplit("/v1", 1)[0]
        for path in ("/openai/realtime", "/openai/nowhere"):
            url = f"{base}{path}?api-version=2025-04-01-preview&deployment=gpt-realtime&api-key={key}"
            try:
                async with connect(url, additional_headers={"api-key": key}, open_timeout=timeout(10)) as ws:
                    await ws.recv()
            except InvalidStatus:
                pass
        # The key percent-encoded, and in a path segment.
        quoted = "".join(f"%{b:02X}" for b in key.encode())
        with contextlib.suppress(InvalidStatus):
            async with connect(f"{base}/openai/{key}/x?key={quoted}", additional_headers={"api-key": key},
                               open_timeout=timeout(10)):
                pass
    finally:
        code, out, err = await served.stop()
    assert code == 0
    assert "api-key=REDACTED" in err, err
    assert key not in out + err and quoted not in out + err, err


async def test_rtreplay_record_keeps_upstream_userinfo_out_of_its_output(tmp_path: Path) -> None:
    from .support import start_cli

    password = "Pa55word-For-The-Gateway-0123"
    async with Capture() as up:
        upstream = up.base.replace("ws://", f"ws://gateway:{password}@")
        proc = await start_cli("record", "--out", str(tmp_path / "u.jsonl"), "--upstream", upstream,
                               env={"OPENAI_API_KEY": ""})
        try:
            async with connect(proc.url + "?model=gpt-realtime", open_timeout=timeout(10)) as ws:
                await ws.recv()
        finally:
            code, out, err = await proc.stop()
        [request] = up.requests
    assert code == 0
    assert request.headers["Authorization"].startswith("Basic ")  # it did reach the upstream
    assert password not in out + err, out + err
    assert password not in (tmp_path / "u.jsonl").read_text()
    assert request.headers["Authorization"].split()[1] not in (tmp_path / "u.jsonl").read_text()
