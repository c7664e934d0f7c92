"""Drive a server under test with a cassette's recorded client: the thin websockets shell.

Every decision is the Sans-I/O :class:`~rtreplay.driver.Driver`'s; this module opens the
connections (as the recorded client did: path, query, subprotocol, headers, and the
user's key where the recording had a credential), feeds the driver what the server sends,
sleeps until its next deadline or the next message, and sends what is due::

    from rtreplay.drive import drive, drive_async

    report = drive("cassettes/function-call.jsonl", "ws://127.0.0.1:9000/v1/realtime")
    assert report.ok, report

    report = await drive_async(cassette, url, match="structure")  # in async code

The recorded connections are driven one after the other, as the recorded client opened
them. :class:`Drive` keeps, on request, what was exchanged (``rtreplay verify
--record-to`` writes it as a new cassette).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ._wsio import send_many, too_big
from .driver import (
    DEFAULT_TIMEOUT,
    ClientHandshake,
    Close,
    Driver,
    Script,
    Send,
    check_drive_options,
    client_handshake,
    scripts,
)
from .errors import DriveError
from .expect import ServerPolicy, resolve_server_policy
from .report import DriveReport

if TYPE_CHECKING:
    from .cassette import Cassette, Open

__all__ = [
    "Drive",
    "Exchange",
    "drive",
    "drive_async",
    "run_connection",
    "run_connection_blocking",
]

#: Largest server message accepted (audio deltas are far smaller; the API's own cap).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
T = TypeVar("T")


@dataclass
class Exchange:
    """What one driven connection exchanged, for a new recording: ``(t, direction,
    message)`` in order, ``t`` in seconds since the connection opened (``direction``
    ``"beyond"``: a server message past the recording's end); how it closed."""

    script: Script
    handshake: ClientHandshake
    messages: list[tuple[float, str, str | bytes]] = field(default_factory=list)
    refused: tuple[int, dict[str, str], str] | None = None
    close: tuple[float, int | None, str, str] | None = None  # t, code, reason, by


def _hint(handshake: ClientHandshake, status: int) -> str | None:
    if handshake.credential_missing and status in (401, 403):
        return (
            f"the recording sent a credential ({handshake.credential_missing}) and none was "
            f"given: set OPENAI_API_KEY, or pass api_key="
        )
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause):
        text += f" ({cause})"
    return text


async def run_connection(
    driver: Driver,
    handshake: ClientHandshake,
    *,
    exchange: Exchange | None = None,
    open_timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Drive one connection to its end: open it, feed ``driver``, carry out its actions.

    Never raises for what the server does (a refusal, a drop, silence): the driver
    reports it. ``exchange`` collects what went each way.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    extra = [(k, v) for k, v in handshake.headers if k != "user-agent"]
    try:
        ws = await asyncio.wait_for(
            connect(
                handshake.url,
                additional_headers=extra,
                user_agent_header=handshake.user_agent,
                subprotocols=list(handshake.subprotocols) or None,  # type: ignore[arg-type]
                compression=None,
                max_size=MAX_MESSAGE_SIZE,
                open_timeout=None,
                close_timeout=open_timeout,
            ),
            open_timeout,
        )
    except InvalidStatus as exc:
        response = exc.response
        body = bytes(response.body or b"").decode("utf-8", "replace")
        driver.refused(response.status_code, body, _hint(handshake, response.status_code))
        if exchange is not None:
            exchange.refused = (response.status_code, dict(response.headers.raw_items()), body)
        return
    except asyncio.TimeoutError:
        driver.unreachable(f"{handshake.url}: no handshake within {open_timeout:g} s")
        return
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        driver.unreachable(f"{handshake.url}: {_reason(exc)}")
        return
    opened = loop.time()
    driver.connect(opened, opened - started)
    wake = asyncio.Event()
    gone = asyncio.Event()
    messages = exchange.messages if exchange is not None else None

    async def read() -> None:
        try:
            async for message in ws:
                now = loop.time()
                beyond = driver.beyond
                driver.receive(message, now)
                if messages is not None:
                    direction = "server" if driver.beyond == beyond else "beyond"
                    messages.append((now - opened, direction, message))
                wake.set()
        except ConnectionClosed:
            pass
        finally:
            gone.set()
            wake.set()

    reader = loop.create_task(read())
    closed_by_us = False
    try:
        while not gone.is_set():
            wake.clear()
            now = loop.time()
            for action in driver.poll(now):
                if type(action) is Send:
                    if messages is not None:
                        t = loop.time() - opened
                        messages.extend((t, "client", m) for m in action.messages)
                    try:
                        await send_many(ws, [(m, isinstance(m, str)) for m in action.messages])
                    except ConnectionClosed:
                        break
                elif type(action) is Close:
                    closed_by_us = True
                    await ws.close(action.code, action.reason)
            if closed_by_us:
                break
            deadline = driver.next_deadline()
            if wake.is_set() or gone.is_set() or (deadline is not None and deadline <= loop.time()):
                continue
            timer = loop.call_at(deadline, wake.set) if deadline is not None else None
            try:
                await wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()
    finally:
        if not closed_by_us and not gone.is_set():
            await ws.close()
        await asyncio.wait([reader])
        code = ws.close_code
        reason = ws.close_reason or ""
        big = too_big(ws, MAX_MESSAGE_SIZE)
        if big is not None:
            code, reason = 1009, "message too big"
        driver.disconnect(loop.time(), code, reason, failed=_sent_too_much(big))
        if exchange is not None:
            by = "client" if closed_by_us else "server"
            exchange.close = (loop.time() - opened, code, reason, by)


def _sent_too_much(big: str | None) -> str | None:
    if big is None:
        return None
    return f"the server sent {big} rtreplay drive takes (the limit is fixed)"


def run_connection_blocking(driver: Driver, handshake: ClientHandshake, *, open_timeout: float = DEFAULT_TIMEOUT) -> None:
    """:func:`run_connection` with websockets' synchronous client, for code without an event
    loop (a Locust user under gevent, a thread). The same driver, another thin shell."""
    import time

    from websockets.sync.client import connect as connect_sync

    started = time.monotonic()
    extra = [(k, v) for k, v in handshake.headers if k != "user-agent"]
    try:
        ws = connect_sync(
            handshake.url,
            additional_headers=extra,
            user_agent_header=handshake.user_agent,
            subprotocols=list(handshake.subprotocols) or None,  # type: ignore[arg-type]
            compression=None,
            max_size=MAX_MESSAGE_SIZE,
            open_timeout=open_timeout,
            close_timeout=open_timeout,
        )
    except InvalidStatus as exc:
        response = exc.response
        body = bytes(response.body or b"").decode("utf-8", "replace")
        driver.refused(response.status_code, body, _hint(handshake, response.status_code))
        return
    except TimeoutError:
        driver.unreachable(f"{handshake.url}: no handshake within {open_timeout:g} s")
        return
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        driver.unreachable(f"{handshake.url}: {_reason(exc)}")
        return
    opened = time.monotonic()
    driver.connect(opened, opened - started)
    closed_by_us = False
    try:
        while True:
            for action in driver.poll(time.monotonic()):
                if type(action) is Send:
                    for m in action.messages:
                        ws.send(m)
                elif type(action) is Close:
                    closed_by_us = True
                    ws.close(action.code, action.reason)
            if closed_by_us:
                break
            deadline = driver.next_deadline()
            wait = open_timeout if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                message = ws.recv(timeout=wait)
            except TimeoutError:
                continue
            driver.receive(message, time.monotonic())
    except ConnectionClosed:
        pass
    finally:
        ws.close()
        big = too_big(ws, MAX_MESSAGE_SIZE)
        if big is not None:
            driver.disconnect(time.monotonic(), 1009, "message too big", failed=_sent_too_much(big))
        else:
            driver.disconnect(time.monotonic(), ws.close_code, ws.close_reason or "")


class Drive:
    """Drive the server at ``url`` with every recorded connection of ``cassette``.

    ``cassette`` is a path or a :class:`~rtreplay.cassette.Cassette`. ``match``: the
    strictness ``"type"`` (the default), ``"structure"`` or ``"exact"``, or a
    :class:`~rtreplay.expect.ServerPolicy`. ``speed``, ``audio_speed``, ``timeout``: see
    :class:`~rtreplay.driver.Driver`. ``api_key`` is sent where the recording sent a
    credential (cassettes never hold one). ``keep_exchange``: keep what was exchanged
    (:attr:`exchanges`). ``url_for`` gives each recorded connection its own URL (from its
    :class:`~rtreplay.cassette.Open` record) instead of ``url``. Raises the cassette errors of :func:`rtreplay.load`, and
    :class:`ValueError` for bad options or a URL that is not ``ws://``/``wss://``.
    """

    def __init__(
        self,
        cassette: str | os.PathLike[str] | Cassette | Sequence[Script],
        url: str,
        *,
        match: str | ServerPolicy = "type",
        speed: float | None = 1.0,
        audio_speed: float | None = 1.0,
        timeout: float = DEFAULT_TIMEOUT,
        api_key: str | None = None,
        keep_exchange: bool = False,
        conn_offset: int = 0,
        url_for: Callable[[Open], str] | None = None,
    ) -> None:
        self.speed, self.audio_speed, self.timeout = check_drive_options(speed, audio_speed, timeout)
        self.policy = resolve_server_policy(match)
        if isinstance(cassette, (list, tuple)):
            self.scripts: list[Script] = list(cassette)
        else:
            self.scripts = scripts(cassette)  # type: ignore[arg-type]
        self.api_key = api_key
        self.url = url
        self.handshakes = [
            client_handshake(s.open, url_for(s.open) if url_for else url, api_key) for s in self.scripts
        ]
        source = self.scripts[0].source if self.scripts else None
        self.report = DriveReport(source, self.handshakes[0].url if self.handshakes else url, self.policy.name)
        for warning in self.scripts[0].warnings if self.scripts else ():
            self.report.add_note(f"the cassette: {warning}")
        self.keep_exchange = keep_exchange
        self.exchanges: list[Exchange] = []
        self.conn_offset = conn_offset

    def driver(self, i: int) -> Driver:
        """The driver of recorded connection ``i`` (its position in the cassette)."""
        return Driver(
            self.scripts[i],
            policy=self.policy,
            speed=self.speed,
            audio_speed=self.audio_speed,
            timeout=self.timeout,
            conn=self.conn_offset + i,
            report=self.report,
        )

    async def run(self) -> DriveReport:
        """Drive every recorded connection, one after the other; return the report."""
        for i, handshake in enumerate(self.handshakes):
            exchange = Exchange(self.scripts[i], handshake) if self.keep_exchange else None
            await run_connection(self.driver(i), handshake, exchange=exchange, open_timeout=self.timeout)
            if exchange is not None:
                self.exchanges.append(exchange)
        return self.report

    def run_blocking(self) -> DriveReport:
        """Every recorded connection with the synchronous shell (no event loop at all)."""
        for i, handshake in enumerate(self.handshakes):
            run_connection_blocking(self.driver(i), handshake, open_timeout=self.timeout)
        return self.report

    def run_sync(self) -> DriveReport:
        """:meth:`run` from synchronous code (in a thread of its own when a loop is running)."""
        return run_sync(self.run)

    def check(self) -> None:
        """Raise :class:`~rtreplay.errors.DriveError` if the drive found a mismatch."""
        if not self.report.ok:
            raise DriveError(self.report)


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to its end from synchronous code, even under a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(factory))
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(_awaited(factory)))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="rtreplay-drive")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def _awaited(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


async def drive_async(
    cassette: str | os.PathLike[str] | Cassette, url: str, **options: Any
) -> DriveReport:
    """Drive the server at ``url`` with ``cassette``'s recorded client; return the report.

    ``options`` are :class:`Drive`'s. Does not raise for mismatches: see ``report.ok``.
    """
    return await Drive(cassette, url, **options).run()


def drive(cassette: str | os.PathLike[str] | Cassette, url: str, **options: Any) -> DriveReport:
    """:func:`drive_async` from synchronous code."""
    return Drive(cassette, url, **options).run_sync()
