"""One lifecycle for rtreplay's servers (the replay mock and the recording proxy).

A service is started with ``async with service:`` or ``await service.start()``, stopped
with ``await service.close()`` (safe to call twice), and used from synchronous code with
``with service.in_thread():``, which runs it on an event loop of its own in a daemon
thread. Once started, ``host``, ``port``, ``websocket_base_url`` (what
``openai.OpenAI(websocket_base_url=...)`` takes) and ``url`` (the full ``/v1/realtime``
URL, what ``openai-agents`` takes) tell a client where to connect; ``base_url``
(``http://HOST:PORT/v1``, what ``openai.OpenAI(base_url=...)`` takes) is where a backend
asks for an ephemeral key (``POST /v1/realtime/client_secrets``) on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import TypeVar

S = TypeVar("S", bound="Service")

__all__ = ["Service", "check_port", "is_loopback"]


def check_port(port: object) -> int:
    """``port`` if it is a TCP port number (0 picks a free one); else :class:`ValueError`."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535 (0 picks a free one), not {port!r}")
    return port


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Service:
    """Base of ReplayServer and Recorder: start, stop, and the URLs to give a client."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = check_port(port)
        self.ssl_context = ssl_context
        self._started = False
        self._closed = False
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # -- what subclasses provide ------------------------------------------------------

    async def _start(self) -> int:
        """Start listening; return the bound port."""
        raise NotImplementedError

    async def _stop(self) -> None:
        """Stop listening, close every connection, finish any file."""
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------

    async def start(self: S) -> S:
        if not self._started:
            self.port = await self._start()
            self._started = True
        return self

    async def close(self) -> None:
        if self._started and not self._closed:
            self._closed = True
            await self._stop()

    async def __aenter__(self: S) -> S:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @contextlib.contextmanager
    def in_thread(self: S) -> Iterator[S]:
        """Run the service on its own event loop in a thread, for synchronous code."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name=f"rtreplay-{type(self).__name__}", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            loop.close()
            raise failure[0]
        self._thread_loop = loop
        try:
            yield self
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.close(), loop).result()
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()
                self._thread_loop = None

    # -- where to connect -------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl_context is not None else "ws"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def websocket_base_url(self) -> str:
        """``ws://HOST:PORT/v1``: what ``openai.OpenAI(websocket_base_url=...)`` takes."""
        return f"{self.scheme}://{self.netloc}/v1"

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/v1/realtime``: the full URL, for clients that take one."""
        return f"{self.websocket_base_url}/realtime"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: the HTTP base (``openai.OpenAI(base_url=...)``), where
        ``POST /v1/realtime/client_secrets`` mints an ephemeral key."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.netloc}/v1"
