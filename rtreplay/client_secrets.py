"""Ephemeral keys: the ``client_secrets`` HTTP calls, recorded with a placeholder and replayed
with fresh secrets. No I/O here.

A browser or phone app never holds an API key. Its backend asks for a short-lived secret,
``POST /v1/realtime/client_secrets`` (``/v1/realtime/translations/client_secrets`` for a
translation session), and gets ``{"value": "ek_...", "expires_at": <unix>, "session":
{...}}``; the app then connects with that value, in the ``openai-insecure-api-key.<value>``
subprotocol or as ``Authorization: Bearer <value>`` (openai/openai-openapi,
``RealtimeClientSecretCreateResponse`` and ``RealtimeTranslationClientSecretCreateResponse``;
PROTOCOL.md 1.3 and 1.4).

**Recording.** ``rtreplay record`` relays these calls to the API and records each as an
:class:`~rtreplay.cassette.HttpExchange`; :func:`with_placeholder` puts :data:`PLACEHOLDER`
where the secret was, so it never reaches the cassette (the redactor hunts for it too).

**Replay.** An :class:`HttpReplay` answers each call with the next recorded exchange of
the same method and endpoint: the recorded response, its time fields moved to replay time,
a fresh fake secret in place of the placeholder. It remembers what it issued, so that the
WebSocket handshake that follows is accepted (:meth:`HttpReplay.accepts`), and a key it
never issued (one cached from an earlier run) is refused as the API would refuse an expired
one. Every call is noted in the report.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .cassette import HttpExchange, HttpRequest, HttpResponse
from .match import diff
from .volatile import parse_wall_clock, shift_times

__all__ = [
    "CLIENT_SECRET_ENDPOINTS",
    "PLACEHOLDER",
    "HttpAnswer",
    "HttpReplay",
    "endpoint_of",
    "json_error",
    "with_placeholder",
]

#: What a recorded secret becomes in the cassette (the redactor's shape for an ``ek_`` key).
PLACEHOLDER = "ek_REDACTED"
#: The HTTP endpoints that mint ephemeral keys, by the path segments from ``realtime`` on.
CLIENT_SECRET_ENDPOINTS: tuple[tuple[str, ...], ...] = (
    ("realtime", "client_secrets"),
    ("realtime", "translations", "client_secrets"),
)
_decoder = msgspec.json.Decoder()


def endpoint_of(path: str) -> str | None:
    """The endpoint a request path names (``/realtime/client_secrets``...), whatever comes
    before its last ``realtime`` segment, or ``None`` when it is none of
    :data:`CLIENT_SECRET_ENDPOINTS`."""
    segments = [s for s in path.split("/") if s]
    if "realtime" not in segments:
        return None
    tail = tuple(segments[len(segments) - 1 - segments[::-1].index("realtime") :])
    return "/" + "/".join(tail) if tail in CLIENT_SECRET_ENDPOINTS else None


def _secret_slots(body: Any) -> list[tuple[dict[str, Any], str]]:
    """Where a client-secret response holds its secret: ``value`` (GA), or
    ``client_secret.value`` (the beta session objects)."""
    slots: list[tuple[dict[str, Any], str]] = []
    if isinstance(body, dict):
        if isinstance(body.get("value"), str):
            slots.append((body, "value"))
        inner = body.get("client_secret")
        if isinstance(inner, dict) and isinstance(inner.get("value"), str):
            slots.append((inner, "value"))
    return slots


def with_placeholder(body: bytes) -> tuple[bytes, list[str]]:
    """A client-secret response body with :data:`PLACEHOLDER` where its secrets were, and
    the secrets (to hunt for everywhere else). Other bodies come back unchanged."""
    try:
        value = _decoder.decode(body)
    except msgspec.DecodeError:
        return body, []
    found = []
    for holder, key in _secret_slots(value):
        found.append(holder[key])
        holder[key] = PLACEHOLDER
    if not found:
        return body, []
    return msgspec.json.encode(value), found


def json_error(status: int, code: str, message: str) -> HttpResponse:
    """An error response shaped like the API's (``{"error": {...}}``)."""
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return HttpResponse(
        status, {"content-type": "application/json"}, json=msgspec.Raw(msgspec.json.encode(body))
    )


@dataclass(frozen=True)
class HttpAnswer:
    """What an :class:`HttpReplay` answers one request: the ``response``, the recorded
    exchange it replays (``None``: none did), and what differed, in words."""

    response: HttpResponse
    recorded: HttpExchange | None
    problem: str | None = None
    differences: tuple[Any, ...] = ()


def fresh_secret() -> str:
    """A fake ephemeral key shaped like the API's (``ek_`` and 32 hex digits)."""
    return "ek_" + secrets.token_hex(16)


@dataclass
class HttpReplay:
    """Answers a replay's HTTP calls from the recorded exchanges (see the module docstring).

    ``exchanges`` are the cassette's, in order; ``repeat`` serves the same exchange again
    instead of refusing once all were used; ``shift_times`` moves time fields to replay
    time (``clock``: unix seconds). :attr:`served` holds the recorded exchanges answered,
    :attr:`issued` the secrets handed out.
    """

    exchanges: Sequence[HttpExchange]
    repeat: bool = False
    shift_times: bool = True
    clock: Callable[[], float] = time.time
    served: list[int] = field(default_factory=list)
    issued: set[str] = field(default_factory=set)

    def accepts(self, secret: str) -> bool:
        """Whether a WebSocket handshake may use this ephemeral key: one this replay issued."""
        return secret in self.issued

    @property
    def unplayed(self) -> list[HttpExchange]:
        """Recorded exchanges no request asked for."""
        return [e for e in self.exchanges if e.n not in self.served]

    def answer(self, request: HttpRequest) -> HttpAnswer:
        """The response to a live request, from the next recorded exchange that fits."""
        endpoint = endpoint_of(request.path)
        same = [
            e
            for e in self.exchanges
            if e.request.method == request.method
            and (endpoint_of(e.request.path) or e.request.path) == (endpoint or request.path)
        ]
        what = f"{request.method} {request.path}"
        if not same:
            recorded = ", ".join(sorted({f"{e.request.method} {e.request.path}" for e in self.exchanges}))
            problem = f"the cassette recorded no {what}" + (
                f" (it recorded {recorded})" if recorded else ""
            )
            return HttpAnswer(json_error(404, "rtreplay_not_recorded", f"rtreplay: {problem}; record it"), None, problem)
        pool = same if self.repeat else [e for e in same if e.n not in self.served]
        if not pool:
            problem = (
                f"every recorded {what} ({len(same)}) was replayed; record this one too, or "
                f"replay with repeat=True (--repeat)"
            )
            return HttpAnswer(json_error(409, "rtreplay_replayed", f"rtreplay: {problem}"), None, problem)
        exchange = pool[0]
        if exchange.n not in self.served:
            self.served.append(exchange.n)
        differences = tuple(self._differences(exchange.request, request))
        if not differences:
            return HttpAnswer(self._response(exchange), exchange)
        shown = "; ".join(str(d) for d in differences[:3])
        problem = f"{what} differs from recorded exchange {exchange.n}: {shown}"
        return HttpAnswer(self._response(exchange), exchange, problem, differences)

    def _differences(self, recorded: HttpRequest, got: HttpRequest) -> list[Any]:
        want, have = recorded.body(), got.body()
        try:
            return diff(_decoder.decode(want) if want else None, _decoder.decode(have) if have else None)
        except msgspec.DecodeError:
            return [] if want == have else diff(want.decode("utf-8", "replace"), have.decode("utf-8", "replace"))

    def _response(self, exchange: HttpExchange) -> HttpResponse:
        response = exchange.response
        if response.json is msgspec.UNSET:
            return response
        data = bytes(response.json)
        value = _decoder.decode(data)
        changed = False
        for holder, key in _secret_slots(value):
            secret = fresh_secret()
            self.issued.add(secret)
            holder[key] = secret
            changed = True
        if changed:
            data = msgspec.json.encode(value)
        recorded_at = parse_wall_clock(exchange.started)
        if self.shift_times and recorded_at is not None:
            data = shift_times(data, self.clock() - recorded_at)
        return msgspec.structs.replace(response, json=msgspec.Raw(data))
