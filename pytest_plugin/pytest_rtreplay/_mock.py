"""What the ``realtime_mock`` fixture yields: a replay server or a recording proxy for one test.

rtreplay itself (websockets, msgspec) is imported only when a mock starts, so that merely
installing the plugin costs a test session nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ._config import RealtimeSettings

if TYPE_CHECKING:
    from rtreplay.recorder import Recorder
    from rtreplay.server import ReplayReport, ReplayServer

__all__ = ["RealtimeMock"]

# What the replaying client presents: a key that is obviously not one, so that a replay
# never needs, and can never leak, a real credential.
REPLAY_API_KEY = "rtreplay-replay-key"


class _Quiet(logging.Filter):
    """Keeps a test's captured log to what the failure text does not already say.

    The mock's own mismatch lines are dropped: the failure text gives the whole report.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # rtreplay.server._MISMATCH_MARK, not imported: the plugin stays cheap.
        return not getattr(record, "rtreplay_mismatch", False)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """While a mock runs: websockets' INFO lines off (unless the user set a level), and _Quiet."""
    quiet = _Quiet()
    chatty = [logging.getLogger(f"rtreplay.{side}.websockets") for side in ("server", "recorder")]
    saved = [log.level for log in chatty]
    for log in chatty:
        if log.level in (logging.NOTSET, logging.INFO):
            log.setLevel(logging.WARNING)
    server = logging.getLogger("rtreplay.server")
    server.addFilter(quiet)
    try:
        yield
    finally:
        server.removeFilter(quiet)
        for log, level in zip(chatty, saved, strict=True):
            log.setLevel(level)


class RealtimeMock:
    """One test's Realtime endpoint: a replay of its cassette, or a recording proxy.

    Point a client at :attr:`websocket_base_url` (the openai SDK's
    ``websocket_base_url=``) or :attr:`url` (``openai-agents``' ``model_config["url"]``,
    add your own ``?model=`` query), or take a ready client from :meth:`client` /
    :meth:`async_client`. When the test ends the plugin stops the server and fails the
    test if the client's events did not match the cassette.
    """

    def __init__(
        self,
        settings: RealtimeSettings,
        *,
        record_command: str,
        rerecord_command: str,
        display_path: str,
        keep_advice: str | None = None,
        sharing: Callable[[], list[tuple[str, str, str]]] | None = None,
        fixture: str = "realtime_mock",
    ) -> None:
        self.settings = settings
        # The fixture the test used, as its messages name it: realtime_mock is the mock
        # itself; realtime_replay yields one per `with realtime_replay(...) as mock:`.
        self._fixture = fixture
        self._name = fixture if fixture == "realtime_mock" else "mock"
        # The other tests that use this cassette, each with its record and re-record
        # commands ("" if it never records); asked only when a hint needs it.
        self._sharing = sharing
        self.cassette_path: Path = settings.cassette
        self.recording: bool = settings.source is None and (
            settings.record_mode == "all"
            or (settings.record_mode == "once" and not settings.cassette.exists())
        )
        # An in-memory cassette (a hypothesis example) is not re-recorded but kept: how.
        self._keep_advice = keep_advice
        self._record_command = record_command
        self._rerecord_command = rerecord_command
        self._display_path = display_path
        self._service: ReplayServer | Recorder | None = None
        self._running: contextlib.ExitStack | None = None
        self._missing: str | None = None
        self._finished = False
        self.recorded: Path | None = None  # set once a recording was written
        self.kept: Path | None = None  # set when a recording left the old cassette as it was

    def __repr__(self) -> str:
        mode = "recording" if self.recording else "replaying"
        where = self._service.websocket_base_url if self._service is not None else "not started"
        return f"<RealtimeMock {mode} {self._display_path} at {where}>"

    # -- what a test uses -----------------------------------------------------------------

    @property
    def service(self) -> ReplayServer | Recorder:
        """The running :class:`~rtreplay.server.ReplayServer` or :class:`~rtreplay.recorder.Recorder`."""
        if self._missing is not None:
            pytest.fail(self._missing, pytrace=False)
        assert self._service is not None, "the realtime mock is not running"
        return self._service

    @property
    def websocket_base_url(self) -> str:
        """``ws://127.0.0.1:PORT/v1``: give it to ``openai.OpenAI(websocket_base_url=...)``."""
        return self.service.websocket_base_url

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v1/realtime``: the full URL, for clients that take one."""
        return self.service.url

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: a backend's ``openai.OpenAI(base_url=...)``, where
        ``POST .../realtime/client_secrets`` mints an ephemeral key (recorded, or replayed)."""
        return self.service.base_url

    @property
    def received(self) -> list[Any]:
        """Every client message the mock received so far, in order (``.conn``, ``.event``, ``.raw``)."""
        received = getattr(self.service, "received", None)
        return list(received) if received is not None else []

    @property
    def report(self) -> ReplayReport | None:
        """The replay's live mismatch report (``None`` while recording)."""
        service = self.service
        if self.recording:
            return None
        report: ReplayReport = service.report  # type: ignore[union-attr]
        return report

    def _api_key(self, given: str | None) -> str:
        if given is not None:
            return given
        if not self.recording:
            return REPLAY_API_KEY
        key = self.settings.api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            pytest.fail(
                f"rtreplay: recording {self._display_path} needs an API key for "
                f"{self.settings.upstream}: set OPENAI_API_KEY, or give realtime_config an "
                f"'api_key', or pass api_key= to {self._name}.client()",
                pytrace=False,
            )
        return key

    def _openai_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs["api_key"] = self._api_key(kwargs.get("api_key"))
        kwargs.setdefault("websocket_base_url", self.websocket_base_url)
        # REST calls go to the mock too (which refuses them) rather than to the real API:
        # a replaying test must not reach the network by accident.
        service = self.service
        kwargs.setdefault(
            "base_url", f"{'https' if service.scheme == 'wss' else 'http'}://{service.netloc}/v1"
        )
        return kwargs

    def client(self, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` pointed at this mock; ``kwargs`` go to its constructor.

        While replaying it carries a placeholder key; while recording, the key from
        ``realtime_config["api_key"]`` or ``OPENAI_API_KEY``.
        """
        openai = _import_openai(f"{self._name}.client()")
        return openai.OpenAI(**self._openai_kwargs(kwargs))

    def async_client(self, **kwargs: Any) -> Any:
        """An ``openai.AsyncOpenAI`` pointed at this mock; see :meth:`client`."""
        openai = _import_openai(f"{self._name}.async_client()")
        return openai.AsyncOpenAI(**self._openai_kwargs(kwargs))

    # -- lifecycle, driven by the plugin --------------------------------------------------

    def _start(self) -> None:
        """Start the server on its own thread; a missing cassette is remembered, not raised."""
        from rtreplay.errors import CassetteError, RecordError

        settings = self.settings
        if not self.recording and settings.source is None and not settings.cassette.exists():
            self._missing = self._missing_text()
            return
        stack = contextlib.ExitStack()
        stack.enter_context(_quiet_logs())
        try:
            if self.recording:
                from rtreplay.recorder import Recorder

                self._service = Recorder(
                    settings.cassette,
                    upstream=settings.upstream,
                    api_key=settings.api_key,
                    redactor=settings.redactor,
                    audio="files" if settings.audio == "files" else "inline",
                )
            else:
                from rtreplay.server import ReplayServer

                self._service = ReplayServer(
                    settings.source if settings.source is not None else settings.cassette,
                    speed=settings.speed,
                    match=settings.match,
                    strict=settings.strict,
                    stall_timeout=settings.stall_timeout,
                    audio_tolerance=settings.audio_tolerance,
                    shift_times=settings.shift_times,
                    fresh_ids=settings.fresh_ids,
                    faults=settings.faults,
                    latency=settings.latency,
                )
                # The report names the cassette (and its lines) as the test's failure does.
                self._service.report.source = self._display_path
            # Its own thread and event loop: the same fixture then serves sync tests,
            # pytest-asyncio and anyio alike, and a test that blocks its own loop (a sync
            # client inside an async test) cannot starve the server.
            stack.enter_context(self._service.in_thread())
        except CassetteError as exc:
            stack.close()
            problem: str | None = f"cannot use the cassette of this test: {exc}"
        except ValueError as exc:  # an option the cassette cannot take: a fault it has no place for
            stack.close()
            problem = f"cannot {'record' if self.recording else 'replay'} the cassette of this test: {exc}"
        except RecordError as exc:  # e.g. another xdist worker records the same cassette now
            stack.close()
            problem = (
                f"cannot record the cassette of this test: {exc}. Tests that share a cassette "
                "record it one at a time: run them in one worker (pytest -n0, or xdist's "
                "--dist loadgroup with @pytest.mark.xdist_group)"
            )
        else:
            problem = None
        if problem is not None:  # outside the except block: no chained traceback
            pytest.fail(f"rtreplay: {problem}", pytrace=False)
        self._running = stack

    def _check_before_call(self) -> None:
        if self._missing is not None:
            pytest.fail(self._missing, pytrace=False)

    def _missing_text(self) -> str:
        from rtreplay.codec import partial_note

        note = partial_note(self.cassette_path)
        lines = [
            "rtreplay: this test has no cassette, and this run does not record.",
            f"  expected: {self._display_path}",
        ]
        if note:
            lines.append(f"  but: {note}")
        pinned = self._never_records()
        if pinned is None:
            lines += [
                "  record it (talks to the live API once, needs OPENAI_API_KEY):",
                f"    {self._record_command}",
            ]
            return "\n".join(lines)
        recorder = next((once for _, once, _ in self._others() if once), None)
        lines.append(f"  this test never records ({pinned}).")
        if recorder is not None:
            lines += [
                "  record its cassette with the test that records it (talks to the live API "
                "once, needs OPENAI_API_KEY):",
                f"    {recorder}",
            ]
        else:
            lines += [
                f"  remove {pinned.split(' in ')[0]} there, then record it (talks to the live "
                "API once, needs OPENAI_API_KEY):",
                f"    {self._record_command}",
            ]
        return "\n".join(lines)

    def _others(self) -> list[tuple[str, str, str]]:
        return self._sharing() if self._sharing is not None else []

    def _never_records(self) -> str | None:
        """Where ``record_mode="none"`` is pinned for this test (no command line records it)."""
        s = self.settings
        if s.record_mode != "none":
            return None
        source = s.sources.get("record_mode")
        if source == "marker":
            return 'record_mode="none" in its @pytest.mark.realtime'
        if source == "realtime_config":
            return 'record_mode="none" in the realtime_config fixture'
        return None

    def _rerecord_lines(self) -> list[str]:
        """How to re-record this test's cassette, when the plain command is not the answer:
        a cassette other tests share, or a test that never records."""
        pinned = self._never_records()
        others = self._others()
        if pinned is None and not others:
            return []
        names = ", ".join(u[0] for u in others[:3]) + (
            f" and {len(others) - 3} more" if len(others) > 3 else ""
        )
        own = (
            "drop cassette= from its marker"
            + (" (and record_mode=)" if pinned is not None else "")
            + ", then record it:"
        )
        if pinned is not None:
            recorder = next(((n, again) for n, _, again in others if again), None)
            lines = [f"This test never records ({pinned})."]
            if recorder is not None:
                lines += [
                    f"If the recorded conversation changed, re-record its cassette with "
                    f"{recorder[0]}, which records it:",
                    f"    {recorder[1]}",
                ]
                if self.settings.sources.get("cassette") == "marker":
                    lines += [f"If only this test's changed, give it a cassette of its own: {own}",
                              f"    {self._record_command}"]
            else:
                lines += [
                    f"If the new conversation is right, remove {pinned.split(' in ')[0]} there, "
                    "then re-record this test:",
                    f"    {self._rerecord_command}",
                ]
            return lines
        lines = [
            f"This test shares its cassette with {len(others)} other test"
            f"{'s' if len(others) != 1 else ''} ({names}): re-recording it from this test changes "
            "what they replay too.",
            "If the new conversation is right for them all, re-record this test:",
            f"    {self._rerecord_command}",
        ]
        if self.settings.sources.get("cassette") == "marker":
            lines += [f"Or give this test a cassette of its own: {own}", f"    {self._record_command}"]
        return lines

    @property
    def refusals(self) -> list[str]:
        """While recording: what the upstream answered each connection it refused."""
        if self.recording and self._service is not None:
            return list(self._service.refusals)  # type: ignore[union-attr]
        return []

    @property
    def upstream_errors(self) -> list[Any]:
        """While recording: each time the upstream could not be reached, an
        :class:`~rtreplay.errors.UpstreamError` (the proxy answered the client 502 when
        unreachable, 504 when no handshake came in time)."""
        if self.recording and self._service is not None:
            return list(self._service.upstream_errors)  # type: ignore[union-attr]
        return []

    def _finish(self, *, test_failed: bool, exception_text: str = "") -> str | None:
        """Stop the server; return the problem to fail the test with, if any.

        A recording of a failed test is thrown away, so a flaky live run never replaces a
        good cassette.
        """
        if self._finished:
            return None
        self._finished = True
        if self._running is None:
            return None
        # Checked before stopping, while pytest-recording's block is still in place.
        hint = self._blocked_hint() if test_failed else None
        text = self._stop(test_failed=test_failed, exception_text=exception_text)
        if hint is not None:
            return f"{hint}\n\n{text}" if text else hint
        return text

    def _blocked_hint(self) -> str | None:
        """Why the client may never have connected: pytest-recording blocks loopback too."""
        import socket

        network = sys.modules.get("pytest_recording.network")
        original = getattr(network, "_original_connect", None)
        if original is None or socket.socket.connect is original:
            return None
        if self.recording:
            connected = bool(getattr(self.service, "connections", 0))
        else:
            connected = bool(self.received)
        if connected:
            return None
        also = f" and the upstream's host ({self.settings.upstream})" if self.recording else ""
        return (
            f"rtreplay: {self._fixture} received no connection, and pytest-recording is blocking "
            "the network (--block-network or @pytest.mark.block_network), loopback included.\n"
            f"  allow the mock's address{also}: pytest --block-network --allowed-hosts=127.0.0.1"
        )

    def _stop(self, *, test_failed: bool, exception_text: str = "") -> str | None:
        assert self._running is not None
        from rtreplay.errors import RtreplayError

        service = self.service
        problem: str | None = None
        if self.recording:
            recorder: Recorder = service  # type: ignore[assignment]
            if test_failed:
                recorder.discard()
            elif recorder.connections == 0 and recorder.upstream_errors:
                recorder.discard()
                problem = (
                    f"rtreplay: recording finished with no connection: {recorder.upstream_errors[0]}"
                    f"\n  cassette: {self._display_path} (not written)"
                )
            elif recorder.connections == 0:
                recorder.discard()
                problem = (
                    "rtreplay: recording finished with no connection: the test never connected "
                    "to realtime_mock, so nothing was written.\n"
                    f"  cassette: {self._display_path}\n"
                    "  point the client at realtime_mock.websocket_base_url (openai SDK), "
                    "realtime_mock.url (openai-agents), or use realtime_mock.async_client()"
                )
        try:
            self._running.close()
        except RtreplayError as exc:
            what = "recording" if self.recording else "replay"
            return f"rtreplay: the {what} of {self._display_path} failed to finish: {exc}"
        if self.recording:
            if test_failed:
                kept = "was left as it was" if self.cassette_path.exists() else "was not written"
                errors = service.upstream_errors  # type: ignore[union-attr]
                cause = f"\n  the recording proxy answered the client: {errors[0]}" if errors else ""
                return (
                    f"rtreplay: the test failed while recording, so the recording was "
                    f"discarded; {self._display_path} {kept}.{cause}"
                )
            if problem is None:
                recorder_done: Recorder = service  # type: ignore[assignment]
                if recorder_done.written is not None:
                    self.recorded = self.cassette_path
                elif recorder_done.refused and self.cassette_path.exists():
                    self.kept = self.cassette_path
            return problem
        report = self.report
        assert report is not None
        from rtreplay.failure import failure_text

        def text(headline: str, **extra: Any) -> str:
            if self._keep_advice is not None:
                extra["advice"] = (*extra.get("advice", ()), self._keep_advice)
            if self.settings.source is not None:
                extra["rerecord_advice"] = False  # an in-memory cassette: nothing to re-record
            return failure_text(
                report,
                headline=headline,
                cassette=self._display_path,
                rerecord=self._rerecord_command,
                rerecord_lines=self._rerecord_lines(),
                exception_text=exception_text,
                fixture=self._fixture,
                **extra,
            )

        if report.stalls:
            # Whether the client then failed or not, the stall is the story: say it first.
            from rtreplay.report import NOTHING_HELD

            seconds = f"{self.settings.stall_timeout:g} s"
            longer = (
                "If it legitimately needs longer: @pytest.mark.realtime(stall_timeout=30), "
                "or realtime_stall_timeout in the ini file (0 turns it off)."
            )
            if all(m.held == NOTHING_HELD for m in report.stalls):
                return text(
                    "the replay stalled: it had sent every recorded server event, and for "
                    f"{seconds} the client waited for more instead of going on as recorded; "
                    "then it closed the connection (1008) so the test would not hang.",
                    advice=(
                        "If the client waits for more than the recording has (another answer), "
                        "the conversation changed: re-record. If it only keeps the connection "
                        "open, close it when done.",
                        longer,
                    ),
                )
            return text(
                "the replay stalled: it held server events for a client that, for "
                f"{seconds}, sent nothing that moved the replay on; then it closed the "
                "connection (1008) so the test would not hang.",
                advice=(
                    "If the client waits for an event the recording has after one it has not "
                    "sent, send it first.",
                    longer,
                ),
            )
        if test_failed:
            if report.faults:
                # The client met what the test injected: say so first, it is often why.
                return text(
                    "this replay injected faults, which the client met (listed below): "
                    "they may be why the test failed.",
                    rerecord_advice=False,
                )
            if not report.ok:
                return text("the client's events also did not match the cassette, which may be why the test failed.")
            if not report.complete:
                # Often why a test waits in vain: the replay holds back the server events
                # recorded after client events that never came.
                return text(
                    "when the test failed, the replay was still waiting for client events; "
                    "the server events recorded after them were not sent."
                )
            return text("the replay matched the cassette; the test failed on its own.")
        if not report.ok:
            return text(
                "the client's events did not match the cassette.",
                note="The mock sent the client an `error` event, which clients often swallow; "
                "so rtreplay fails the test here.",
            )
        if report.unfired and not self.settings.allow_unfired:
            how = "realtime_replay(..., allow_unfired=True)" if self._fixture != "realtime_mock" else "@pytest.mark.realtime(allow_unfired=True)"
            return text(
                "an injected fault never fired, so the client never met it.",
                rerecord_advice=False,
                advice=(
                    "The connection ended (or the client stopped) before the fault's place, or "
                    "no connection the client opened has it: see where each fault fires in "
                    "docs/faults.md.",
                    f"If its place may legitimately never be reached (a fault hypothesis drew): {how}",
                ),
            )
        if not report.complete and not self.settings.allow_unplayed:
            return text(
                "the test ended before the client sent every event recorded in the cassette.",
                allow_unplayed_hint=True,
            )
        return None


def _import_openai(what: str) -> Any:
    import importlib

    try:
        openai: Any = importlib.import_module("openai")
    except ImportError:
        openai = None
    if openai is None:  # failed outside the except block: no chained traceback
        pytest.fail(
            f"rtreplay: {what} needs the openai SDK: "
            "pip install 'openai[realtime]>=2.1'",
            pytrace=False,
        )
    return openai
