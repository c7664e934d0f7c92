"""Plain HTTP beside the WebSocket handshakes, on the same port: the ``client_secrets`` calls.

websockets' server reads only ``GET`` requests (a WebSocket handshake); an app's backend
asks for an ephemeral key with ``POST /v1/realtime/client_secrets`` at the same base URL.
:func:`with_http` makes a connection class whose request line decides: a ``POST`` (or a
browser's ``OPTIONS`` preflight) to a ``client_secrets`` endpoint is read here, whole, and
answered by the service's handler with one response, after which the connection closes
(``Connection: close``); anything else goes to websockets untouched. Browsers get CORS headers, so a page may
fetch its key from the mock itself.

:func:`forward` makes the recorder's upstream call: stdlib ``http.client`` in a thread,
no proxy from the environment, no redirect followed, every wait bounded.
"""

from __future__ import annotations

import asyncio
import http
import http.client
import logging
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import msgspec
from websockets.asyncio.server import ServerConnection

from ._version import __version__
from .cassette import HttpRequest, HttpResponse, http_body
from .client_secrets import endpoint_of

__all__ = [
    "MAX_BODY",
    "HttpHandler",
    "HttpServerConnection",
    "UpstreamFailure",
    "forward",
    "http_url",
    "with_http",
]

logger = logging.getLogger("rtreplay.http")

#: Largest request body read (a client-secrets request is a session configuration: KBs).
MAX_BODY = 1 << 20
_MAX_HEAD = 64 * 1024
_HTTP_METHODS = (b"POST", b"OPTIONS")

HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class HttpServerConnection(ServerConnection):
    """A server connection that answers a ``POST`` or ``OPTIONS`` request itself (see the
    module docstring); its handler is set on the subclass :func:`with_http` makes."""

    # In a tuple, so that the function does not become a method of the class.
    http_handlers: ClassVar[tuple[HttpHandler, ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http_mode: str | None = None  # None: undecided; "http"; "ws"
        self._http_buffer = bytearray()
        self._http_decided: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._http_task: asyncio.Task[None] | None = None

    # -- deciding on the first bytes ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        mode = self._http_mode
        if mode == "ws":
            super().data_received(data)
            return
        self._http_buffer += data
        if mode == "http":
            self._http_progress()
            return
        buffer = self._http_buffer
        space = buffer.find(b" ")
        if space < 0 and len(buffer) < 16 and bytes(buffer).isalpha() and bytes(buffer).isupper():
            return  # still the method: wait for the rest of it
        line_end = buffer.find(b"\r\n")
        if (
            self.http_handlers
            and bytes(buffer[:space]) in _HTTP_METHODS
            and line_end < 0
            and len(buffer) < _MAX_HEAD
        ):
            return  # a method we answer: wait for its target, to know whether we do
        if self.http_handlers and bytes(buffer[:space]) in _HTTP_METHODS and self._http_target(
            bytes(buffer[space + 1 : line_end])
        ):
            self._decide("http")
            self._http_progress()
        else:
            self._decide("ws")
            held, self._http_buffer = bytes(buffer), bytearray()
            super().data_received(held)

    def _http_target(self, rest: bytes) -> bool:
        """Whether the request line's target (``rest``: target and version) is one the
        handler answers: any other request goes to websockets, which refuses it its way."""
        target = rest.rsplit(b" ", 1)[0].decode("latin-1")
        return endpoint_of(urllib.parse.urlsplit(target).path) is not None

    def _decide(self, mode: str) -> None:
        self._http_mode = mode
        if not self._http_decided.done():
            self._http_decided.set_result(mode == "http")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._http_mode is None:
            # Gone before its first line: websockets reports the handshake it never got.
            self._decide("ws")
            held, self._http_buffer = bytes(self._http_buffer), bytearray()
            if held:
                super().data_received(held)
        super().connection_lost(exc)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        waiter = asyncio.ensure_future(self._http_decided)
        waits: list[asyncio.Future[Any]] = [waiter, self.connection_lost_waiter]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done() and waiter.result():
            # An HTTP exchange: answered and closed by us; websockets then sees a connection
            # that never opened and lets it go, with nothing to log.
            await self.connection_lost_waiter
            return
        waiter.cancel()
        await super().handshake(*args, **kwargs)

    # -- an HTTP request ----------------------------------------------------------------

    def _http_progress(self) -> None:
        if self._http_task is not None:
            return
        buffer = self._http_buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                self._http_reply(HttpResponse(431, text="rtreplay: request headers too large\n"))
            return
        head = bytes(buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._http_reply(HttpResponse(400, text="rtreplay: a malformed request line\n"))
            return
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._http_reply(HttpResponse(400, text="rtreplay: a malformed header line\n"))
                return
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._http_reply(HttpResponse(411, text="rtreplay: send a Content-Length, not chunks\n"))
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._http_reply(HttpResponse(400, text="rtreplay: a bad Content-Length\n"))
            return
        if length > MAX_BODY:
            self._http_reply(HttpResponse(413, text=f"rtreplay: a body over {MAX_BODY:,} bytes\n"))
            return
        if len(buffer) < end + 4 + length:
            return  # the body is still coming
        body = bytes(buffer[end + 4 : end + 4 + length])
        url = urllib.parse.urlsplit(target)
        json, text = http_body(body)
        request = HttpRequest(
            method,
            url.path,
            dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
            headers,
            json=json,
            text=text,
        )
        self.transport.pause_reading()
        self._http_task = asyncio.get_running_loop().create_task(self._http_answer(request))

    async def _http_answer(self, request: HttpRequest) -> None:
        origin = request.headers.get("origin")
        if request.method == "OPTIONS":
            response = HttpResponse(204, _cors_preflight(request))
        else:
            handler = self.http_handlers[0]
            try:
                response = await handler(request)
            except Exception:  # a bug: answer it, do not leave the client waiting
                logger.exception("cannot answer %s %s", request.method, request.path)
                response = HttpResponse(500, text="rtreplay: internal error; see its log\n")
        if origin is not None:
            response = _with_headers(response, {"access-control-allow-origin": origin, "vary": "Origin"})
        self._http_reply(response)

    def _http_reply(self, response: HttpResponse) -> None:
        if self._http_task is None:  # answered while reading the request
            self._http_task = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        body = response.body()
        reason = _reason(response.status)
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        skip = {"content-length", "connection", "transfer-encoding", "server", "date"}
        for name, value in response.headers.items():
            if name.lower() not in skip:
                lines.append(f"{name}: {value}")
        if "content-type" not in {n.lower() for n in response.headers} and body:
            json = response.json is not msgspec.UNSET
            lines.append(f"content-type: {'application/json' if json else 'text/plain; charset=utf-8'}")
        lines += [f"content-length: {len(body)}", "connection: close", f"server: rtreplay/{__version__}"]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.transport.write(head + body)
        self.transport.close()


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _cors_preflight(request: HttpRequest) -> dict[str, str]:
    return {
        "access-control-allow-methods": "POST, OPTIONS",
        "access-control-allow-headers": request.headers.get(
            "access-control-request-headers", "authorization, content-type"
        ),
        "access-control-max-age": "600",
    }


def _with_headers(response: HttpResponse, extra: dict[str, str]) -> HttpResponse:
    return msgspec.structs.replace(response, headers={**response.headers, **extra})


def with_http(base: type[ServerConnection], handler: HttpHandler) -> type[ServerConnection]:
    """A connection class for ``serve(create_connection=...)``: ``base`` (a
    :class:`~websockets.asyncio.server.ServerConnection`), answering HTTP with ``handler``."""
    bases = (HttpServerConnection, base) if base is not ServerConnection else (HttpServerConnection,)
    return type(f"Http{base.__name__}", bases, {"http_handlers": (handler,)})


# -- the recorder's upstream call -----------------------------------------------------------


class UpstreamFailure(Exception):
    """The upstream could not be reached or did not answer: ``status`` is 502 or 504."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def http_url(ws_url: str) -> str:
    """The HTTP URL of a WebSocket URL (``wss://host/v1`` -> ``https://host/v1``)."""
    parts = urllib.parse.urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


async def forward(
    url: str,
    request: HttpRequest,
    headers: list[tuple[str, str]],
    *,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> tuple[HttpResponse, str]:
    """Send ``request`` (its body, with ``headers``) to ``url``; the response and its
    reason phrase. Raises :class:`UpstreamFailure` (502: unreachable, 504: no answer within
    ``timeout`` seconds)."""
    body = request.body()
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(_send, url, request.method, headers, body, timeout, context),
            timeout + 1,
        )
    except (asyncio.TimeoutError, TimeoutError):
        raise UpstreamFailure(504, f"no answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise UpstreamFailure(502, reason) from None


def _send(
    url: str,
    method: str,
    headers: list[tuple[str, str]],
    body: bytes,
    timeout: float,
    context: ssl.SSLContext | None,
) -> tuple[HttpResponse, str]:
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read(MAX_BODY + 1)[: MAX_BODY]
        json, text = http_body(data)
        # The body is read as it came: no content encoding was asked for, none is claimed.
        out = HttpResponse(
            response.status,
            {name.lower(): value for name, value in response.getheaders() if name.lower() != "content-encoding"},
            json=json,
            text=text,
        )
        return out, response.reason
    finally:
        connection.close()
