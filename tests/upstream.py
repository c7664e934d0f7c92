"""A scripted, Realtime-like upstream server for tests: the API, without the network.

It listens on 127.0.0.1 (port 0 by default) and answers like the real Realtime API in
``shared/realtime/PROTOCOL.md``, deterministically:

- ``session.created`` first, unprompted; ``session.update`` -> ``session.updated``;
- ``conversation.item.create`` -> ``conversation.item.added`` + ``conversation.item.done``
  (beta: ``conversation.item.created``);
- ``response.create`` -> the whole response lifecycle: text deltas, or audio + transcript
  deltas when the output modalities include audio, or a function call when a tool is
  declared and the user's last message names it (``get_weather`` is asked for by any text
  containing "weather"), one call per place named (``in Paris, Tokyo and Lima``: three,
  parallel tool calls); after a ``function_call_output`` the answer quotes the output;
- ``input_audio_buffer.append`` with server VAD on (the default, as in the API): loud PCM16
  starts speech, 200 ms of silence stops it, then commit, user item, and a response;
  with ``turn_detection: null``: ``commit``/``clear`` by hand;
- errors that leave the session open (missing or unknown ``type``, invalid JSON, a second
  ``response.create`` while one is active, an empty commit, a cancel with nothing active);
- GA or beta event names per connection, from ``OpenAI-Beta: realtime=v1`` (or the
  ``openai-beta.realtime-v1`` subprotocol);
- scripted faults: :class:`Refusal` (the handshake answered with an HTTP status and body)
  and :class:`Fault` (drop the TCP connection, stall, or close with a code, right after the
  n-th server event of a type); :class:`Expiry` (the session's maximum duration:
  ``session_expired``, then the close);
- input transcription when the session asks for it (deltas of ``transcript``, then
  ``completed``); transcription sessions (``session.type: "transcription"``) never respond;
- ``response.cancel`` finishes the open content part and item (``.done`` events) before a
  ``cancelled`` ``response.done``, as the API does;
- GA ``session.update`` refuses parameters the GA session does not have
  (``unknown_parameter``, as the API answers a beta-shaped update);
- ``vad="pauses"`` for cassettes whose audio is a placeholder: any append is speech, and an
  append after a pause of ``silence_duration_ms`` ends the turn;
- :class:`Drift`: the API changing under a cassette (a field added to an event type, an
  event type no longer sent, an event renamed), and ``text``/``words_per_delta``: the same
  session said in other words and other pieces.
- the other endpoints: ``/v1/realtime/translations`` (live translation: translated
  transcript and audio per 200 ms frame of loud input audio, whatever the chunking;
  ``session.close`` -> ``session.closed`` and a close), Azure Voice Live's
  ``/voice-live/realtime`` (the conversation script with the beta event names, its
  ``input_audio_sampling_rate`` honoured, ``azure_semantic_vad``, word timestamps), and any
  other ``.../realtime/<name>`` path (a made-up future endpoint: each client event ``T`` is
  answered by ``T.ack``);
- ``POST /v1/realtime/client_secrets`` and ``/v1/realtime/translations/client_secrets``:
  a fresh ``ek_`` key, which the WebSocket handshake then accepts in place of the API key
  (``issued`` keeps them; ``secrets`` counts the calls).

Everything it saw is kept: ``handshakes`` (path, query, headers, subprotocols, protocol
of each connection) and ``received`` (every client message). Waiting is event-driven::

    async with ScriptedUpstream() as up:
        client = openai.AsyncOpenAI(api_key="sk-test", websocket_base_url=up.websocket_base_url)
        ...
        await up.wait_for("response.create")

    with ScriptedUpstream().in_thread() as up:      # from synchronous code
        ...
        up.wait_for_sync("session.update")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import http
import json
import re
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from rtreplay._service import Service

__all__ = [
    "Drift",
    "Expiry",
    "Fault",
    "Handshake",
    "Received",
    "Refusal",
    "ScriptedUpstream",
    "pcm16_silence",
    "pcm16_tone",
]

Protocol = Literal["ga", "beta"]
MAX_SIZE = 16 * 1024 * 1024
SAMPLE_RATE = 24_000  # the API's only PCM rate
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000
SPEECH_AMPLITUDE = 1_000  # a PCM16 chunk with a sample this loud is "speech"


def pcm16_tone(ms: int, amplitude: int = 8_000) -> bytes:
    """``ms`` milliseconds of a loud square wave (24 kHz PCM16): VAD hears speech."""
    period = [amplitude] * 24 + [-amplitude] * 24
    samples = (period * (ms * SAMPLE_RATE // 1000 // len(period) + 1))[: ms * SAMPLE_RATE // 1000]
    return struct.pack(f"<{len(samples)}h", *samples)


def pcm16_silence(ms: int) -> bytes:
    """``ms`` milliseconds of silence (24 kHz PCM16): VAD hears the end of a turn."""
    return bytes(ms * BYTES_PER_MS)


@dataclass(frozen=True)
class Handshake:
    """One client's opening handshake as the upstream saw it."""

    conn: int
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    subprotocols: list[str]
    protocol: Protocol
    refused: int | None = None  # the HTTP status it was refused with, if it was


@dataclass(frozen=True)
class Received:
    """One client message: the connection, the raw message, its decoded JSON object."""

    conn: int
    raw: str | bytes
    event: dict[str, Any] | None

    @property
    def type(self) -> str | None:
        value = self.event.get("type") if self.event is not None else None
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Refusal:
    """Answer the handshake with this HTTP status (and body) instead of upgrading.

    ``body`` defaults to the JSON error the real API sends for that status.
    """

    status: int
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """Misbehave right after sending the ``occurrence``-th server event of type ``after``.

    ``action``: ``"drop"`` aborts the TCP connection (no close frame), ``"stall"`` keeps the
    connection open but sends nothing more, ``"close"`` closes with ``code`` and ``reason``.
    ``conn`` limits the fault to one connection (``None``: every connection).
    """

    after: str
    action: Literal["drop", "stall", "close"]
    occurrence: int = 1
    code: int = 1011
    reason: str = "upstream fault"
    conn: int | None = None


@dataclass(frozen=True)
class Expiry:
    """End connection ``conn`` (``None``: every one) ``after`` seconds as the API ends a
    session at its maximum duration: an ``error`` ``session_expired``, then a close with
    ``code`` (CHANGES.md: 1001)."""

    after: float
    code: int = 1001
    conn: int | None = None


@dataclass(frozen=True)
class Drift:
    """The API as it may change under a cassette: ``add_fields`` adds fields to events of a
    type (``"*"``: every type), ``drop_types`` are no longer sent, ``rename_types`` go out
    under a new name."""

    add_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    drop_types: frozenset[str] = frozenset()
    rename_types: dict[str, str] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event["type"]
        if kind in self.drop_types:
            return None
        extra = {**self.add_fields.get("*", {}), **self.add_fields.get(kind, {})}
        if extra:
            event = {**event, **extra}
        if kind in self.rename_types:
            event = {**event, "type": self.rename_types[kind]}
        return event


#: Fields of a GA session object (the API refuses others in session.update).
GA_SESSION_FIELDS = frozenset({
    "type", "object", "id", "model", "output_modalities", "instructions", "audio", "include",
    "tracing", "tools", "tool_choice", "temperature", "max_output_tokens", "truncation",
    "prompt", "expires_at", "reasoning", "parallel_tool_calls",
})


_ERROR_BODIES = {
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def error_body(status: int, message: str | None = None) -> str:
    """The JSON body the API sends with an HTTP error status."""
    kind, code, default = _ERROR_BODIES.get(status, ("server_error", None, "Error."))
    return json.dumps({"error": {"message": message or default, "type": kind, "param": None, "code": code}})


class ScriptedUpstream(Service):
    """A Realtime-like WebSocket server with a fixed, deterministic script (see module doc).

    ``api_key``: accept only this key (else any credential). ``require_auth``: refuse a
    handshake without credential with 401, as the API does. ``refuse``: refuse every
    handshake (a status or a :class:`Refusal`). ``fault``: see :class:`Fault`. ``models``:
    the only models accepted (others get 404 ``model_not_found``). ``text``: what responses
    say. ``audio_deltas``/``audio_delta_bytes``: the shape of audio responses (4,800 PCM
    bytes make ~6.5 KB frames). ``delay``: seconds between the frames of a response.
    ``transcript``: what input transcription hears. ``words_per_delta``: how many words
    each text or transcript delta carries. ``vad``: ``"energy"`` (loud PCM16 is speech)
    or ``"pauses"`` (see the module docstring). ``expiry``: see :class:`Expiry`;
    ``drift``: see :class:`Drift`. Attributes may be changed between connections.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        require_auth: bool = True,
        refuse: Refusal | int | None = None,
        fault: Fault | None = None,
        models: Collection[str] | None = None,
        text: str = "Hello there, friend!",
        audio_deltas: int = 3,
        audio_delta_bytes: int = 4_800,
        delay: float = 0.0,
        ssl_context: Any = None,
        transcript: str = "Hello, can you hear me?",
        words_per_delta: int = 1,
        vad: Literal["energy", "pauses"] = "energy",
        expiry: Expiry | None = None,
        drift: Drift | None = None,
        beta_disabled: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context)
        #: Answer a beta client as the API does since the beta's sunset: an error
        #: (beta_api_shape_disabled), then close 4000, no session.
        self.beta_disabled = beta_disabled
        self.api_key = api_key
        self.require_auth = require_auth
        self.refuse = Refusal(refuse) if isinstance(refuse, int) else refuse
        self.fault = fault
        self.models = set(models) if models is not None else None
        self.text = text
        self.audio_deltas = audio_deltas
        self.audio_delta_bytes = audio_delta_bytes
        self.delay = delay
        self.transcript = transcript
        self.words_per_delta = words_per_delta
        self.vad = vad
        self.expiry = expiry
        self.drift = drift
        self.handshakes: list[Handshake] = []
        self.received: list[Received] = []
        self.issued: list[str] = []  # ephemeral keys handed out by client_secrets calls
        self.posts: list[tuple[str, dict[str, str], dict[str, Any]]] = []  # path, headers, body
        self.closes: dict[int, tuple[int | None, str]] = {}  # conn -> close code/reason seen
        self.open_connections = 0
        self._server: Server | None = None
        self._sockets: set[ServerConnection] = set()
        self._cond = threading.Condition()
        self._async_waiters: list[tuple[Callable[[], object], asyncio.AbstractEventLoop, asyncio.Future[object]]] = []

    # -- lifecycle ----------------------------------------------------------------------

    async def _start(self) -> int:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            create_connection=_with_posts(self._post),
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            max_size=MAX_SIZE,
            ssl=self.ssl_context,
        )
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    # -- what it saw ----------------------------------------------------------------------

    def events(self, type: str | None = None, conn: int | None = None) -> list[dict[str, Any]]:
        """Decoded client events received, optionally of one type or connection."""
        with self._cond:
            return [
                r.event
                for r in self.received
                if r.event is not None
                and (type is None or r.type == type)
                and (conn is None or r.conn == conn)
            ]

    def _count(self, type: str | None, conn: int | None) -> int:
        return sum(
            1 for r in self.received if (type is None or r.type == type) and (conn is None or r.conn == conn)
        )

    def wait_for_sync(self, type: str | None = None, count: int = 1, *, conn: int | None = None, timeout: float = 10.0) -> None:
        """Block until ``count`` client messages of ``type`` have arrived (thread mode)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._count(type, conn) >= count, timeout):
                raise TimeoutError(f"upstream received {self._count(type, conn)} of {count} {type or 'messages'}")

    async def wait_for(self, type: str | None = None, count: int = 1, *, conn: int | None = None, timeout: float = 10.0) -> None:
        """Wait until ``count`` client messages of ``type`` have arrived."""
        await self.wait_until(lambda: self._count(type, conn) >= count, timeout=timeout,
                              what=f"{count} {type or 'message'}(s)")

    async def wait_until(self, predicate: Callable[[], object], *, timeout: float = 10.0, what: str = "condition") -> None:
        """Wait until ``predicate()`` holds; it is checked whenever the upstream's state changes."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[object] = loop.create_future()
        with self._cond:
            if predicate():
                return
            self._async_waiters.append((predicate, loop, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the scripted upstream never saw {what}") from None
        finally:
            with self._cond:
                self._async_waiters = [w for w in self._async_waiters if w[2] is not fut]

    def _changed(self) -> None:
        """Wake whoever waits on the upstream's state (call with ``_cond`` held)."""
        self._cond.notify_all()
        for predicate, loop, fut in self._async_waiters:
            if predicate():
                loop.call_soon_threadsafe(_resolve, fut)

    # -- client secrets (HTTP) ---------------------------------------------------------------

    def _post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer ``POST .../client_secrets`` as the API does (an ``ek_`` key and a session)."""
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, json.loads(error_body(400, "We could not parse the JSON body of your request."))
        with self._cond:
            self.posts.append((path, headers, request))
            self._changed()
        keys = [headers.get("authorization", "").partition(" ")[2].strip()]
        if self.api_key is not None and self.api_key not in keys:
            return 401, json.loads(error_body(401))
        if self.require_auth and not any(keys):
            return 401, json.loads(error_body(401, "You didn't provide an API key."))
        translation = path.rstrip("/").endswith("/translations/client_secrets")
        if not (translation or path.rstrip("/").endswith("/realtime/client_secrets")):
            return 404, json.loads(error_body(404, f"Invalid URL (POST {path})"))
        config = request.get("session") if isinstance(request.get("session"), dict) else {}
        seconds = int((request.get("expires_after") or {}).get("seconds", 600))
        now = int(time.time())
        with self._cond:
            key = f"ek_{len(self.issued):04d}{'f00d' * 7}"
            self.issued.append(key)
        if translation:
            session: dict[str, Any] = {"id": f"sess_EK{len(self.issued)}", "type": "translation",
                                       "expires_at": now + seconds, "model": config.get("model", "gpt-realtime-translate"),
                                       "audio": config.get("audio", {"input": {"transcription": None, "noise_reduction": None},
                                                                    "output": {"language": "es"}})}
        else:
            session = {"type": "realtime", "object": "realtime.session", "id": f"sess_EK{len(self.issued)}",
                       "model": config.get("model", "gpt-realtime"), "expires_at": 0, **config}
        return 200, {"value": key, "expires_at": now + seconds, "session": session}

    # -- handshake ------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parsed = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        headers: dict[str, str] = {}
        for name, value in request.headers.raw_items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        beta = "realtime=v1" in headers.get("openai-beta", "") or "openai-beta.realtime-v1" in offered
        with self._cond:
            conn = len(self.handshakes)
        status, body = self._refusal(parsed.path, query, headers, offered)
        with self._cond:
            self.handshakes.append(
                Handshake(conn, parsed.path, query, headers, offered, "beta" if beta else "ga", status)
            )
            self._changed()
        if status is None:
            connection.rtreplay_conn = conn  # type: ignore[attr-defined]
            connection.rtreplay_protocol = "beta" if beta else "ga"  # type: ignore[attr-defined]
            connection.rtreplay_endpoint = _endpoint(parsed.path)  # type: ignore[attr-defined]
            return None
        extra = self.refuse.headers if self.refuse is not None else {}
        return _json_response(status, body or error_body(status), extra)

    def _refusal(
        self, path: str, query: dict[str, str], headers: dict[str, str], offered: list[str]
    ) -> tuple[int | None, str | None]:
        if self.refuse is not None:
            return self.refuse.status, self.refuse.body
        if _endpoint(path) is None:
            return 404, error_body(404, f"Invalid URL (GET {path})")
        keys = [v.partition(" ")[2].strip() for k, v in headers.items() if k == "authorization"]
        keys += [v for k, v in headers.items() if k == "api-key"]
        keys += [p[len("openai-insecure-api-key.") :] for p in offered if p.startswith("openai-insecure-api-key.")]
        if self.require_auth and not keys:
            return 401, error_body(401, "You didn't provide an API key.")
        ephemeral = [k for k in keys if k.startswith("ek_")]
        if ephemeral and not all(k in self.issued for k in ephemeral):
            return 401, error_body(401, "Invalid ephemeral key: it was never issued, or it expired.")
        if self.api_key is not None and self.api_key not in keys and not ephemeral:
            return 401, error_body(401)
        model = query.get("model")
        if self.models is not None and model is not None and model not in self.models:
            return 404, error_body(404, f"The model '{model}' does not exist or you do not have access to it.")
        return None, None

    # -- a session ------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn: int = ws.rtreplay_conn  # type: ignore[attr-defined]
        endpoint: str = ws.rtreplay_endpoint  # type: ignore[attr-defined]
        session: _Session | _TranslationSession | _EchoSession
        if endpoint == "translation":
            session = _TranslationSession(self, ws, conn)
        elif endpoint == "other":
            session = _EchoSession(self, ws, conn)
        else:
            session = _Session(self, ws, conn, ws.rtreplay_protocol, voice_live=endpoint == "voice-live")  # type: ignore[attr-defined]
        with self._cond:
            self.open_connections += 1
            self._changed()
        try:
            await session.run()
        finally:
            with self._cond:
                self.open_connections -= 1
                self.closes[conn] = (ws.close_code, ws.close_reason or "")
                self._changed()

    def _record(self, conn: int, raw: str | bytes) -> Received:
        event: dict[str, Any] | None = None
        if isinstance(raw, str):
            try:
                decoded = json.loads(raw)
            except (ValueError, RecursionError):  # nested too deep: invalid, as for the API
                decoded = None
            event = decoded if isinstance(decoded, dict) else None
        received = Received(conn, raw, event)
        with self._cond:
            self.received.append(received)
            self._changed()
        return received


def _endpoint(path: str) -> str | None:
    """Which script serves a path: ``conversation``, ``translation``, ``voice-live``,
    ``other`` (``.../realtime/<name>``), or ``None`` (404)."""
    segments = [s for s in path.split("/") if s]
    if "realtime" not in segments:
        return None
    tail = segments[segments.index("realtime") + 1 :]
    if not tail:
        return "voice-live" if "voice-live" in segments else "conversation"
    if tail == ["translations"]:
        return "translation"
    return "other" if len(tail) == 1 else None


class _PostingConnection(ServerConnection):
    """Answers ``POST`` requests itself (websockets reads only ``GET``): one JSON response,
    then the connection closes. Independent of rtreplay's own HTTP handling, on purpose."""

    answer: Callable[[str, dict[str, str], bytes], tuple[int, dict[str, Any]]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head: bytes | None = b""
        self._posted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            super().data_received(data)
            return
        self._head += data
        if not self._head.startswith(b"POST "[: len(self._head)]):
            held, self._head = self._head, None
            self._decided(False)
            super().data_received(held)
            return
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = self._head[:end].decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if len(self._head) < end + 4 + length:
            return
        body = self._head[end + 4 : end + 4 + length]
        path = urllib.parse.urlsplit(lines[0].split(" ")[1]).path
        status, answer = type(self).answer(path, headers, body)
        data_out = json.dumps(answer).encode()
        encoding = ""
        if "gzip" in headers.get("accept-encoding", ""):  # as the API does, when offered
            data_out, encoding = gzip.compress(data_out), "content-encoding: gzip\r\n"
        phrase = http.HTTPStatus(status).phrase
        self.transport.write(
            f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n{encoding}"
            f"content-length: {len(data_out)}\r\nx-request-id: req_upstream\r\nconnection: close\r\n\r\n".encode()
            + data_out
        )
        self.transport.close()
        self._decided(True)

    def _decided(self, post: bool) -> None:
        if not self._posted.done():
            self._posted.set_result(post)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        posted = asyncio.ensure_future(self._posted)
        await asyncio.wait([posted, self.connection_lost_waiter], return_when=asyncio.FIRST_COMPLETED)
        if posted.done() and posted.result():
            await self.connection_lost_waiter
            return
        posted.cancel()
        await super().handshake(*args, **kwargs)


def _with_posts(answer: Callable[[str, dict[str, str], bytes], tuple[int, dict[str, Any]]]) -> type[ServerConnection]:
    return type("_Posting", (_PostingConnection,), {"answer": staticmethod(answer)})


def _resolve(fut: asyncio.Future[object]) -> None:
    if not fut.done():
        fut.set_result(None)


def _select_subprotocol(connection: ServerConnection, subprotocols: Any) -> Any:
    # Browsers abort unless the server picks one of theirs; the API picks "realtime".
    return "realtime" if "realtime" in subprotocols else None


def _json_response(status: int, body: str, extra: dict[str, str]) -> Response:
    data = body.encode()
    headers = Headers()
    headers["Content-Type"] = "application/json"
    headers["Content-Length"] = str(len(data))
    headers["Connection"] = "close"
    for name, value in extra.items():
        headers[name] = value
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return Response(status, phrase, headers, data)


class _Stop(Exception):
    """The scripted fault ended the session's output."""


class _Session:
    """One connection's conversation state and the script that answers it."""

    def __init__(
        self, up: ScriptedUpstream, ws: ServerConnection, conn: int, protocol: Protocol, *, voice_live: bool = False
    ) -> None:
        self.up = up
        self.ws = ws
        self.conn = conn
        # Azure Voice Live speaks the conversation protocol with the beta event names.
        self.voice_live = voice_live
        self.beta = protocol == "beta" or voice_live
        self.fault = up.fault if up.fault is not None and up.fault.conn in (None, conn) else None
        self.sent_counts: dict[str, int] = {}
        self.stalled = False
        self.n = 0
        self.session: dict[str, Any] = self._initial_session()
        self.items: list[dict[str, Any]] = []
        self.active: asyncio.Task[None] | None = None
        self.active_id: str | None = None
        # audio input
        self.buffer_ms = 0
        self.cursor_ms = 0
        self.speech_item: str | None = None
        self.silence_ms = 0
        self.last_append: float | None = None
        self.partial: dict[str, Any] | None = None  # the content part being streamed
        self.expiry = up.expiry if up.expiry is not None and up.expiry.conn in (None, conn) else None

    def next_id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.conn}x{self.n:04d}"

    def _initial_session(self) -> dict[str, Any]:
        vad = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 200,
               "create_response": True, "interrupt_response": True}
        if self.voice_live:
            return {"id": f"sess_VL{self.conn}", "object": "realtime.session", "model": "gpt-realtime",
                    "modalities": ["text", "audio"], "instructions": "",
                    "voice": {"name": "en-US-Ava:DragonHDLatestNeural", "type": "azure-standard"},
                    "input_audio_format": "pcm16", "input_audio_sampling_rate": 24000, "output_audio_format": "pcm16",
                    "input_audio_noise_reduction": None, "input_audio_echo_cancellation": None,
                    "input_audio_transcription": None,
                    "turn_detection": {**vad, "type": "azure_semantic_vad"}, "tools": [], "tool_choice": "auto",
                    "temperature": 0.8, "max_response_output_tokens": "inf", "expires_at": int(time.time()) + 1800}
        if self.beta:
            return {"id": f"sess_UP{self.conn}", "object": "realtime.session", "model": "gpt-4o-realtime-preview",
                    "modalities": ["text", "audio"], "instructions": "", "voice": "alloy",
                    "input_audio_format": "pcm16", "output_audio_format": "pcm16",
                    "input_audio_transcription": None, "turn_detection": vad, "tools": [],
                    "tool_choice": "auto", "temperature": 0.8, "max_response_output_tokens": "inf"}
        return {"type": "realtime", "object": "realtime.session", "id": f"sess_UP{self.conn}",
                "model": "gpt-realtime", "output_modalities": ["audio"], "instructions": "",
                "tools": [], "tool_choice": "auto", "max_output_tokens": "inf", "tracing": None,
                "truncation": "auto", "prompt": None, "expires_at": int(time.time()) + 1800,
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                                    "noise_reduction": None, "turn_detection": vad},
                          "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0}},
                "include": None}

    @property
    def bytes_per_ms(self) -> int:
        """PCM16 bytes per millisecond of input: 24 kHz, or Voice Live's ``input_audio_sampling_rate``."""
        rate = self.session.get("input_audio_sampling_rate", SAMPLE_RATE) if self.voice_live else SAMPLE_RATE
        return int(rate) * 2 // 1000

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        if self.beta:
            value = self.session.get("turn_detection")
        else:
            value = self.session.get("audio", {}).get("input", {}).get("turn_detection")
        return value if isinstance(value, dict) else None

    # -- output ---------------------------------------------------------------------------

    async def emit(self, event: dict[str, Any]) -> None:
        """Send one server event, then apply the scripted fault if it is due."""
        if self.stalled:
            raise _Stop
        kind = event["type"]
        event = {"type": kind, "event_id": self.next_id("event"), **{k: v for k, v in event.items() if k != "type"}}
        drifted = self.up.drift.apply(event) if self.up.drift is not None else event
        if drifted is not None:
            await self.ws.send(json.dumps(drifted))
        self.sent_counts[kind] = self.sent_counts.get(kind, 0) + 1
        fault = self.fault
        if fault is not None and fault.after == kind and self.sent_counts[kind] == fault.occurrence:
            if fault.action == "drop":
                self.ws.transport.abort()
            elif fault.action == "close":
                await self.ws.close(fault.code, fault.reason)
            self.stalled = True
            raise _Stop

    async def error(self, code: str, message: str, event: dict[str, Any] | None = None,
                    param: str | None = None) -> None:
        client_id = event.get("event_id") if event else None
        await self.emit({"type": "error", "error": {"type": "invalid_request_error", "code": code,
                                                    "message": message, "param": param, "event_id": client_id}})

    # -- input ----------------------------------------------------------------------------

    async def expire(self, expiry: Expiry) -> None:
        await asyncio.sleep(expiry.after)
        with contextlib.suppress(_Stop, ConnectionClosed):
            await self.error("session_expired", "Your session hit the maximum duration of 60 minutes.")
            await self.ws.close(expiry.code, "")

    async def run(self) -> None:
        expiring = asyncio.create_task(self.expire(self.expiry)) if self.expiry is not None else None
        try:
            if self.beta and not self.voice_live and self.up.beta_disabled:
                await self.error("beta_api_shape_disabled", "The beta Realtime API shape is no longer "
                                 "supported; use the GA API (no OpenAI-Beta header).")
                await self.ws.close(4000, "beta api shape disabled")
                return
            await self.emit({"type": "session.created", "session": self.session})
            async for message in self.ws:
                received = self.up._record(self.conn, message)
                if self.stalled:
                    continue
                await self.dispatch(received)
        except (_Stop, ConnectionClosed):
            pass
        finally:
            if expiring is not None:
                expiring.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await expiring
            if self.stalled:
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.wait_closed()
            if self.active is not None:
                self.active.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Stop, ConnectionClosed):
                    await self.active

    async def dispatch(self, received: Received) -> None:
        event = received.event
        if event is None:
            what = "binary frames are not supported" if isinstance(received.raw, bytes) else "We could not parse the JSON body of your request."
            await self.error("invalid_json" if isinstance(received.raw, str) else "invalid_event", what)
            return
        kind = event.get("type")
        handler = {
            "session.update": self.on_session_update,
            "transcription_session.update": self.on_session_update,
            "conversation.item.create": self.on_item_create,
            "conversation.item.retrieve": self.on_item_retrieve,
            "conversation.item.delete": self.on_item_delete,
            "conversation.item.truncate": self.on_item_truncate,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
            "input_audio_buffer.append": self.on_append,
            "input_audio_buffer.commit": self.on_commit,
            "input_audio_buffer.clear": self.on_clear,
        }.get(kind) if isinstance(kind, str) else None
        if kind is None:
            await self.error("invalid_event", "The 'type' field is missing.", event)
        elif handler is None:
            await self.error("invalid_event", f"Invalid value: '{kind}'. Supported values are: 'session.update', "
                             "'input_audio_buffer.append', 'conversation.item.create', 'response.create', ...",
                             event, "type")
        else:
            await handler(event)

    async def on_session_update(self, event: dict[str, Any]) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            await self.error("missing_required_parameter", "Missing required parameter: 'session'.", event, "session")
            return
        if not self.beta and "type" not in update:
            await self.error("missing_required_parameter", "Missing required parameter: 'session.type'.",
                             event, "session.type")
            return
        unknown = [k for k in update if k not in GA_SESSION_FIELDS] if not self.beta else []
        if unknown:
            await self.error("unknown_parameter", f"Unknown parameter: 'session.{unknown[0]}'.",
                             event, f"session.{unknown[0]}")
            return
        _merge(self.session, update)
        await self.emit({"type": "session.updated", "session": self.session})

    async def add_item(self, item: dict[str, Any]) -> dict[str, Any]:
        item = {"id": item.get("id") or self.next_id("item"), "status": "completed", **item}
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        if self.beta:
            await self.emit({"type": "conversation.item.created", "previous_item_id": previous, "item": item})
        else:
            await self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
            await self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        return item

    async def on_item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict) or "type" not in item:
            await self.error("missing_required_parameter", "Missing required parameter: 'item.type'.", event, "item.type")
            return
        await self.add_item(dict(item))

    def find_item(self, item_id: object) -> dict[str, Any] | None:
        return next((i for i in self.items if i["id"] == item_id), None)

    async def on_item_retrieve(self, event: dict[str, Any]) -> None:
        item = self.find_item(event.get("item_id"))
        if item is None:
            await self.error("item_not_found", f"Item with item_id not found: {event.get('item_id')}", event)
        else:
            await self.emit({"type": "conversation.item.retrieved", "item": item})

    async def on_item_delete(self, event: dict[str, Any]) -> None:
        item = self.find_item(event.get("item_id"))
        if item is None:
            await self.error("item_not_found", f"Item with item_id not found: {event.get('item_id')}", event)
        else:
            self.items.remove(item)
            await self.emit({"type": "conversation.item.deleted", "item_id": item["id"]})

    async def on_item_truncate(self, event: dict[str, Any]) -> None:
        await self.emit({"type": "conversation.item.truncated", "item_id": event.get("item_id"),
                         "content_index": event.get("content_index", 0),
                         "audio_end_ms": event.get("audio_end_ms", 0)})

    # -- audio input ----------------------------------------------------------------------

    async def on_append(self, event: dict[str, Any]) -> None:
        try:
            pcm = base64.b64decode(event.get("audio", ""), validate=True)
        except ValueError:
            await self.error("invalid_value", "Invalid 'audio'. Expected base64-encoded audio.", event, "audio")
            return
        ms = len(pcm) // self.bytes_per_ms
        loud = any(abs(s) >= SPEECH_AMPLITUDE for (s,) in struct.iter_unpack("<h", pcm[: len(pcm) // 2 * 2]))
        now = asyncio.get_running_loop().time()
        paused = self.last_append is not None and now - self.last_append
        self.last_append = now
        if self.up.vad == "pauses":
            # A placeholder's bytes say nothing: every append is speech, and one that
            # follows a pause as long as the silence duration ends the turn.
            vad = self.turn_detection
            quiet = vad is not None and self.speech_item is not None and paused is not False and (
                paused * 1000 >= int(vad.get("silence_duration_ms", 200)))
            loud = not quiet
            if quiet:
                ms = max(ms, int(vad.get("silence_duration_ms", 200)) if vad else 0)
        start = self.cursor_ms
        self.cursor_ms += ms
        self.buffer_ms += ms
        vad = self.turn_detection
        if vad is None:
            return
        if loud:
            self.silence_ms = 0
            if self.speech_item is None:
                self.speech_item = self.next_id("item")
                padding = int(vad.get("prefix_padding_ms", 300))
                await self.emit({"type": "input_audio_buffer.speech_started",
                                 "audio_start_ms": max(0, start - padding), "item_id": self.speech_item})
        elif self.speech_item is not None:
            self.silence_ms += ms
            if self.silence_ms >= int(vad.get("silence_duration_ms", 200)):
                item_id, self.speech_item = self.speech_item, None
                await self.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": self.cursor_ms,
                                 "item_id": item_id})
                await self.commit(item_id)
                if vad.get("create_response", True) and self.session.get("type") != "transcription":
                    await self.on_response_create({"type": "response.create"})

    async def commit(self, item_id: str) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.buffer_ms = 0
        self.silence_ms = 0
        await self.emit({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        await self.add_item({"id": item_id, "type": "message", "role": "user",
                             "content": [{"type": "input_audio", "transcript": None}]})
        if self.transcribing:
            await self.transcribe(item_id)

    @property
    def transcribing(self) -> bool:
        if self.beta:
            return bool(self.session.get("input_audio_transcription"))
        return bool(self.session.get("audio", {}).get("input", {}).get("transcription"))

    def pieces(self, text: str) -> list[str]:
        words = re.findall(r"\S+\s*", text) or [text]
        n = max(1, self.up.words_per_delta)
        return ["".join(words[i:i + n]) for i in range(0, len(words), n)]

    async def transcribe(self, item_id: str) -> None:
        text = self.up.transcript
        for piece in self.pieces(text):
            await self.emit({"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id,
                             "content_index": 0, "delta": piece})
        await self.emit({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                         "content_index": 0, "transcript": text,
                         "usage": {"type": "tokens", "total_tokens": 24, "input_tokens": 16, "output_tokens": 8}})

    async def on_commit(self, event: dict[str, Any]) -> None:
        if self.buffer_ms < 100:
            await self.error("input_audio_buffer_commit_empty",
                             f"Error committing input audio buffer: buffer too small. Expected at least 100ms of "
                             f"audio, but buffer only has {self.buffer_ms}.00ms of audio.", event)
            return
        await self.commit(self.speech_item or self.next_id("item"))
        self.speech_item = None

    async def on_clear(self, event: dict[str, Any]) -> None:
        self.buffer_ms = 0
        self.speech_item = None
        await self.emit({"type": "input_audio_buffer.cleared"})

    # -- responses ------------------------------------------------------------------------

    async def on_response_create(self, event: dict[str, Any]) -> None:
        if self.active is not None and not self.active.done():
            await self.error("conversation_already_has_active_response",
                             f"Conversation already has an active response in progress: {self.active_id}. "
                             "Wait until the response is finished before creating a new one.", event)
            return
        self.active_id = self.next_id("resp")
        options = event.get("response") if isinstance(event.get("response"), dict) else {}
        self.active = asyncio.create_task(self.respond(self.active_id, options))
        # Frames of a response are sent by their own task so client events keep flowing,
        # but with no delay the whole response goes out before the next client event.
        if self.up.delay == 0:
            await self.active

    async def on_response_cancel(self, event: dict[str, Any]) -> None:
        if self.active is None or self.active.done():
            await self.error("response_cancel_not_active", "Cancellation failed: no active response found", event)
            return
        self.active.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.active
        output: list[Any] = []
        partial, self.partial = self.partial, None
        if partial is not None:
            # The API finishes what it was saying, cut short, before the cancelled response.done.
            where, item, audio, said = partial["where"], partial["item"], partial["audio"], partial["said"]
            if audio:
                names = (("response.audio_transcript", "response.audio") if self.beta
                         else ("response.output_audio_transcript", "response.output_audio"))
                await self.emit({"type": f"{names[1]}.done", **where})
                await self.emit({"type": f"{names[0]}.done", **where, "transcript": said})
                part = {"type": "audio", "transcript": said}
                content = {"type": "audio" if self.beta else "output_audio", "transcript": said}
            else:
                name = "response.text" if self.beta else "response.output_text"
                await self.emit({"type": f"{name}.done", **where, "text": said})
                part = {"type": "text", "text": said}
                content = {"type": "text" if self.beta else "output_text", "text": said}
            await self.emit({"type": "response.content_part.done", **where, "part": part})
            done = {**item, "status": "incomplete", "content": [content]}
            await self.finish_item(where["response_id"], done)
            output = [done]
        await self.emit({"type": "response.done", "response": self.response_object(
            self.active_id or "", "cancelled", output, {"type": "cancelled", "reason": "client_cancelled"})})
        await self.rate_limits()

    def modalities(self, options: dict[str, Any]) -> list[str]:
        key = "modalities" if self.beta else "output_modalities"
        value = options.get(key, self.session.get(key, ["audio"]))
        return list(value) if isinstance(value, list) else ["audio"]

    def response_object(self, resp_id: str, status: str, output: list[Any], details: Any = None,
                        options: dict[str, Any] | None = None) -> dict[str, Any]:
        mods = self.modalities(options or {})
        done = status != "in_progress"
        usage = ({"total_tokens": 151, "input_tokens": 72, "output_tokens": 79} if done else None)
        if self.beta:
            return {"object": "realtime.response", "id": resp_id, "status": status, "status_details": details,
                    "output": output, "conversation_id": f"conv_UP{self.conn}", "modalities": mods,
                    "voice": "alloy", "output_audio_format": "pcm16", "usage": usage, "metadata": None}
        return {"object": "realtime.response", "id": resp_id, "status": status, "status_details": details,
                "output": output, "conversation_id": f"conv_UP{self.conn}", "output_modalities": mods,
                "max_output_tokens": "inf",
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
                "usage": usage, "metadata": None}

    def wanted_tool(self, options: dict[str, Any]) -> dict[str, Any] | None:
        tools = options.get("tools", self.session.get("tools")) or []
        last = self.items[-1] if self.items else None
        if last is None or last.get("type") != "message" or last.get("role") != "user":
            return None
        text = " ".join(str(c.get("text", "")) for c in last.get("content", []) if isinstance(c, dict)).lower()
        for tool in tools:
            if not isinstance(tool, dict) or tool.get("type") != "function":
                continue
            words = [w for w in str(tool.get("name", "")).lower().split("_") if w not in _VERBS]
            if words and any(re.search(rf"\b{re.escape(w)}", text) for w in words):
                return tool
        # A question about a place goes to the first tool that takes an argument.
        original = " ".join(str(c.get("text", "")) for c in last.get("content", []) if isinstance(c, dict))
        if re.search(r"\bin [A-Z]\w+", original):
            for tool in tools:
                if isinstance(tool, dict) and tool.get("type") == "function" and (
                        tool.get("parameters") or {}).get("required"):
                    return tool
        return None

    def answer_text(self) -> str:
        last = self.items[-1] if self.items else None
        if last is not None and last.get("type") == "function_call_output":
            return f"The tool said: {last.get('output', '')}"
        return self.up.text

    async def pause(self) -> None:
        if self.up.delay:
            await asyncio.sleep(self.up.delay)

    async def respond(self, resp_id: str, options: dict[str, Any]) -> None:
        await self.emit({"type": "response.created",
                         "response": self.response_object(resp_id, "in_progress", [], options=options)})
        tool = self.wanted_tool(options)
        if tool is not None:
            # One call per place the user named (parallel tool calls: "in Paris, Tokyo and Lima").
            items = [await self.function_call(resp_id, tool, place, index)
                     for index, place in enumerate(self.places())]
        else:
            items = [await self.message(resp_id, options)]
        await self.pause()
        await self.emit({"type": "response.done",
                         "response": self.response_object(resp_id, "completed", items, options=options)})
        await self.rate_limits()

    async def rate_limits(self) -> None:
        await self.emit({"type": "rate_limits.updated", "rate_limits": [
            {"name": "tokens", "limit": 40000, "remaining": 38490, "reset_seconds": 2.265}]})

    async def start_item(self, resp_id: str, item: dict[str, Any], index: int = 0) -> None:
        previous = self.items[-1]["id"] if self.items else None
        await self.emit({"type": "response.output_item.added", "response_id": resp_id, "output_index": index,
                         "item": item})
        if self.beta:
            await self.emit({"type": "conversation.item.created", "previous_item_id": previous, "item": item})
        else:
            await self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": item})

    async def finish_item(self, resp_id: str, item: dict[str, Any], index: int = 0) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        await self.emit({"type": "response.output_item.done", "response_id": resp_id, "output_index": index,
                         "item": item})
        if not self.beta:
            await self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    def places(self) -> list[str]:
        """The places the user's last message asks about ("in Paris", "in Paris, Tokyo and Lima")."""
        last = self.items[-1]
        text = " ".join(str(c.get("text", "")) for c in last.get("content", []) if isinstance(c, dict))
        found = re.search(r"\bin ([A-Z]\w*(?: [A-Z]\w*)*(?:(?:, | and )[A-Z]\w*(?: [A-Z]\w*)*)*)", text)
        return re.split(r", | and ", found.group(1)) if found else ["somewhere"]

    async def function_call(self, resp_id: str, tool: dict[str, Any], place: str, index: int = 0) -> dict[str, Any]:
        item_id, call_id = self.next_id("item"), self.next_id("call")
        params = tool.get("parameters", {}) if isinstance(tool.get("parameters"), dict) else {}
        args = {name: place for name in params.get("required", [])}
        arguments = json.dumps(args)
        item = {"id": item_id, "type": "function_call", "status": "in_progress", "name": tool["name"],
                "call_id": call_id, "arguments": ""}
        await self.start_item(resp_id, item, index)
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            await self.pause()
            await self.emit({"type": "response.function_call_arguments.delta", "response_id": resp_id,
                             "item_id": item_id, "output_index": index, "call_id": call_id, "delta": part})
        await self.emit({"type": "response.function_call_arguments.done", "response_id": resp_id,
                         "item_id": item_id, "output_index": index, "call_id": call_id, "name": tool["name"],
                         "arguments": arguments})
        done = {**item, "status": "completed", "arguments": arguments}
        await self.finish_item(resp_id, done, index)
        return done

    async def message(self, resp_id: str, options: dict[str, Any]) -> dict[str, Any]:
        audio = "audio" in self.modalities(options)
        item_id = self.next_id("item")
        text = self.answer_text()
        words = self.pieces(text)
        item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        await self.start_item(resp_id, item)
        where = {"response_id": resp_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        await self.emit({"type": "response.content_part.added", **where, "part": part})
        self.partial = partial = {"where": where, "item": item, "audio": audio, "said": ""}
        if audio:
            names = (("response.audio_transcript", "response.audio") if self.beta
                     else ("response.output_audio_transcript", "response.output_audio"))
            chunk = base64.b64encode(pcm16_tone(self.up.audio_delta_bytes // BYTES_PER_MS)).decode()
            stamps = self.voice_live and "word" in (self.session.get("output_audio_timestamp_types") or [])
            for i in range(max(len(words), self.up.audio_deltas)):
                await self.pause()
                if i < len(words):
                    await self.emit({"type": f"{names[0]}.delta", **where, "delta": words[i]})
                    partial["said"] += words[i]
                    if stamps:
                        await self.emit({"type": "response.audio_timestamp.delta", **where, "audio_offset_ms": i * 300,
                                         "audio_duration_ms": 280, "text": words[i].strip(), "timestamp_type": "word"})
                if i < self.up.audio_deltas:
                    await self.emit({"type": f"{names[1]}.delta", **where, "delta": chunk})
            await self.emit({"type": f"{names[1]}.done", **where})
            if stamps:
                await self.emit({"type": "response.audio_timestamp.done", **where})
            await self.emit({"type": f"{names[0]}.done", **where, "transcript": text})
            final_part = {"type": "audio", "transcript": text}
            content = {"type": "audio" if self.beta else "output_audio", "transcript": text}
        else:
            name = "response.text" if self.beta else "response.output_text"
            for word in words:
                await self.pause()
                await self.emit({"type": f"{name}.delta", **where, "delta": word})
                partial["said"] += word
            await self.emit({"type": f"{name}.done", **where, "text": text})
            final_part = {"type": "text", "text": text}
            content = {"type": "text" if self.beta else "output_text", "text": text}
        self.partial = None
        await self.emit({"type": "response.content_part.done", **where, "part": final_part})
        done = {**item, "status": "completed", "content": [content]}
        await self.finish_item(resp_id, done)
        return done


_VERBS = frozenset({"get", "set", "fetch", "find", "do", "make", "lookup", "look", "up", "the", "a"})


def _merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class _TranslationSession:
    """A live translation session (``/v1/realtime/translations``, ``RealtimeTranslation*``).

    Translation works in 200 ms frames of input audio (the spec's advice: "Translation
    consumes 200 ms engine frames"): each complete loud frame yields the source transcript
    delta (when transcription is on), the translated transcript delta and 200 ms of
    translated audio, whatever the chunking of the appends. ``session.close`` flushes a
    partial frame, answers ``session.closed`` and closes with 1000.
    """

    FRAME_MS = 200
    WORDS = ("hello", "how", "are", "you", "today", "my", "friend")
    TRANSLATED = ("hola", "cómo", "estás", "tú", "hoy", "mi", "amigo")

    def __init__(self, up: ScriptedUpstream, ws: ServerConnection, conn: int) -> None:
        self.up = up
        self.ws = ws
        self.conn = conn
        self.n = 0
        self.pending = b""  # input audio not yet a whole frame
        self.frames = 0
        self.session: dict[str, Any] = {
            "id": f"sess_TR{conn}", "type": "translation", "model": "gpt-realtime-translate",
            "expires_at": int(time.time()) + 1800,
            "audio": {"input": {"transcription": None, "noise_reduction": None}, "output": {"language": "es"}},
        }

    async def emit(self, event: dict[str, Any]) -> None:
        self.n += 1
        await self.ws.send(json.dumps({"type": event.pop("type"), "event_id": f"event_TR{self.conn}x{self.n:04d}", **event}))

    async def run(self) -> None:
        try:
            await self.emit({"type": "session.created", "session": self.session})
            async for message in self.ws:
                received = self.up._record(self.conn, message)
                event = received.event or {}
                kind = event.get("type")
                if kind == "session.update" and isinstance(event.get("session"), dict):
                    _merge(self.session, event["session"])
                    await self.emit({"type": "session.updated", "session": self.session})
                elif kind == "session.input_audio_buffer.append":
                    self.pending += base64.b64decode(event.get("audio", ""))
                    await self.translate(flush=False)
                elif kind == "session.close":
                    await self.translate(flush=True)
                    await self.emit({"type": "session.closed"})
                    await self.ws.close(1000)
                    return
                else:
                    await self.emit({"type": "error", "error": {
                        "type": "invalid_request_error", "code": "invalid_event", "param": "type",
                        "message": f"Invalid value: '{kind}'. Supported values are: 'session.update', "
                                   "'session.input_audio_buffer.append' and 'session.close'.",
                        "event_id": event.get("event_id")}})
        except ConnectionClosed:
            pass

    async def translate(self, *, flush: bool) -> None:
        size = self.FRAME_MS * BYTES_PER_MS
        while len(self.pending) >= size or (flush and self.pending):
            frame, self.pending = self.pending[:size], self.pending[size:]
            self.frames += 1
            loud = any(abs(v) >= SPEECH_AMPLITUDE for (v,) in struct.iter_unpack("<h", frame[: len(frame) // 2 * 2]))
            if not loud:
                continue
            elapsed = self.frames * self.FRAME_MS
            word = self.frames % len(self.WORDS)
            if self.session["audio"]["input"].get("transcription"):
                await self.emit({"type": "session.input_transcript.delta", "delta": f" {self.WORDS[word]}", "elapsed_ms": elapsed})
            await self.emit({"type": "session.output_transcript.delta", "delta": f" {self.TRANSLATED[word]}", "elapsed_ms": elapsed})
            audio = base64.b64encode(pcm16_tone(self.FRAME_MS, 6_000)).decode()
            await self.emit({"type": "session.output_audio.delta", "delta": audio, "sample_rate": 24000,
                             "channels": 1, "format": "pcm16", "elapsed_ms": elapsed})


class _EchoSession:
    """A made-up future endpoint (``.../realtime/<name>``): a ``hello`` first, then each
    client event ``T`` answered by ``T.ack`` naming it."""

    def __init__(self, up: ScriptedUpstream, ws: ServerConnection, conn: int) -> None:
        self.up = up
        self.ws = ws
        self.conn = conn

    async def run(self) -> None:
        try:
            await self.ws.send(json.dumps({"type": "hello", "event_id": f"event_FX{self.conn}x0"}))
            n = 0
            async for message in self.ws:
                received = self.up._record(self.conn, message)
                kind = (received.event or {}).get("type", "unknown")
                n += 1
                await self.ws.send(json.dumps({"type": f"{kind}.ack", "event_id": f"event_FX{self.conn}x{n}", "n": n}))
        except ConnectionClosed:
            pass
