"""Cassette-driven users for Locust, the distributed load tool (``pip install 'rtreplay[locust]'``).

When one machine cannot make enough load (``rtreplay drive --concurrency``), run the same
recorded clients under Locust's master and workers, on as many machines as needed. Each
Locust user plays a cassette's recorded client against the host, as ``rtreplay drive``
does, with the synchronous shell of the same Sans-I/O :class:`~rtreplay.driver.Driver`
(Locust users are gevent greenlets, not asyncio tasks). A locustfile::

    from locust import constant

    from rtreplay.locust import RealtimeUser


    class Caller(RealtimeUser):
        cassette = "cassettes/function-call.jsonl"
        wait_time = constant(1)

run with ``locust -f locustfile.py --host ws://127.0.0.1:9000``. Each session reports to
Locust's statistics, request type ``WS``: ``connect`` (the handshake), ``first server
event``, ``first delta`` (per response, from the client event that asked for it),
``response`` (per response, to ``response.done``) and ``session`` (the whole session,
a failure when the server did not answer as recorded, with the report's first mismatch).

Import this module only in a locustfile: importing ``locust`` patches the whole process
for gevent (sockets, threads, ``time.sleep``), which an asyncio program or a test run
does not survive.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from locust import User, task

from .drive import Drive
from .driver import DEFAULT_TIMEOUT, Script, scripts
from .errors import DriveError

__all__ = ["RealtimeUser"]

_SCRIPTS: dict[str, list[Script]] = {}


class RealtimeUser(User):  # type: ignore[misc, unused-ignore]  # User is Any without the extra
    """A Locust user that plays ``cassette``'s recorded client against the host, again and again.

    Set on a subclass: ``cassette`` (a path), ``match`` (``"type"``, ``"structure"``,
    ``"exact"``), ``speed``, ``audio_speed``, ``timeout`` (as for ``rtreplay drive``),
    ``api_key`` (default: the ``OPENAI_API_KEY`` environment variable). The host
    (``--host``) is the server's ``ws://`` URL. The cassette is read once per process.
    """

    abstract = True
    cassette: ClassVar[str] = ""
    match: ClassVar[str] = "type"
    speed: ClassVar[float | None] = 1.0
    audio_speed: ClassVar[float | None] = 1.0
    timeout: ClassVar[float] = DEFAULT_TIMEOUT
    api_key: ClassVar[str | None] = None

    def _scripts(self) -> list[Script]:
        path = os.fspath(self.cassette)
        if not path:
            raise ValueError(f"{type(self).__name__}.cassette is not set: name the cassette to play")
        if path not in _SCRIPTS:
            _SCRIPTS[path] = scripts(path)
        return _SCRIPTS[path]

    def _fire(self, name: str, seconds: float, exception: BaseException | None = None, length: int = 0) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=seconds * 1000,
            response_length=length,
            exception=exception,
            context={},
        )

    @task
    def session(self) -> None:
        """One session: the cassette's recorded client, driven and checked."""
        key = self.api_key if self.api_key is not None else os.environ.get("OPENAI_API_KEY")
        d = Drive(
            self._scripts(),
            self.host or "",
            match=self.match,
            speed=self.speed,
            audio_speed=self.audio_speed,
            timeout=self.timeout,
            api_key=key,
        )
        started = time.perf_counter()
        report = d.run_blocking()
        total = time.perf_counter() - started
        received = 0
        for p in report.connections:
            received += p.received
            if p.connect is not None:
                self._fire("connect", p.connect)
            if p.first_event is not None:
                self._fire("first server event", p.first_event)
            for r in p.responses:
                if r.first_delta is not None:
                    self._fire("first delta", r.first_delta)
                if r.duration is not None:
                    self._fire("response", r.duration)
        failure: Any = None if report.ok else DriveError(report.mismatches[0].summary)
        self._fire("session", total, failure, received)
