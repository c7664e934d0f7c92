"""Every error rtreplay raises, in one tree.

::

    RtreplayError
    ├── CassetteError                 a cassette file cannot be used (carries path and line)
    │   ├── CassetteNotFoundError     (also FileNotFoundError) no file at that path
    │   ├── CassetteFormatError       (also ValueError) bad JSON, unknown record kind,
    │   │                             missing field, wrong type, records out of order
    │   ├── CassetteVersionError      written by a newer rtreplay in a format this one cannot read
    │   ├── CassetteChangedError      (also OSError) the file changed on disk under a replay reading it
    │   └── CassetteWriteError        (also OSError) the file cannot be written or replaced
    ├── SecretLeakError               a live credential would have reached the disk
    ├── ReplayError                   the mock server cannot serve what was asked
    │   └── MismatchError             client events did not match the recording (carries the report)
    ├── DriveError                    a driven server did not answer as recorded (carries the report)
    └── RecordError                   the recording proxy failed
        ├── UpstreamError             the upstream Realtime API could not be reached (502, 504)
        └── EventHookError            a Redactor's event_hook raised, or returned no event

Warnings: ``CassetteTruncatedWarning`` (a ``UserWarning``) is issued when a cassette's last
line was cut short, which is what a process killed while writing leaves behind; every
complete record before it is still read.

Exceptions carry their facts as attributes and build their message in ``__str__``, so a
caller can both show them and act on them. Where a builtin base fits, its fields are
honoured too: a :class:`CassetteNotFoundError` has ``errno`` (``ENOENT``), ``strerror`` and
``filename`` like any ``FileNotFoundError``.

A bad argument (an option out of range, a malformed URL) is a mistake in the calling code,
not a failure of a cassette or a connection: it raises :class:`ValueError` (or
:class:`TypeError`), never an :class:`RtreplayError`, from every class and function.
"""

from __future__ import annotations

import errno as _errno
import os
from pathlib import Path
from typing import Any

__all__ = [
    "CassetteChangedError",
    "CassetteError",
    "CassetteFormatError",
    "CassetteNotFoundError",
    "CassetteTruncatedWarning",
    "CassetteVersionError",
    "CassetteWriteError",
    "DriveError",
    "EventHookError",
    "MismatchError",
    "RecordError",
    "ReplayError",
    "RtreplayError",
    "SecretLeakError",
    "UpstreamError",
]


class RtreplayError(Exception):
    """Root of every error raised by rtreplay."""


class CassetteError(RtreplayError):
    """A cassette file cannot be used.

    ``path`` is the file, ``line`` the 1-based line number where the problem is (``None``
    when it concerns the whole file), ``problem`` what is wrong in words.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        super().__init__(path, problem, line)
        self.path = Path(path)
        self.problem = problem
        self.line = line

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else f"{self.path}"
        return f"{where}: {self.problem}"


class CassetteNotFoundError(CassetteError, FileNotFoundError):
    """There is no cassette at this path (``errno`` is ``ENOENT``, ``filename`` the path)."""

    def __init__(self, path: str | Path, problem: str = "no such cassette file") -> None:
        CassetteError.__init__(self, path, problem)
        # OSError took the arguments for (errno, strerror, filename): set its fields right.
        self.errno = _errno.ENOENT
        self.strerror = os.strerror(_errno.ENOENT)
        self.filename = os.fspath(path)


class CassetteFormatError(CassetteError, ValueError):
    """A line of the cassette is not a valid record of the format."""


class CassetteVersionError(CassetteError):
    """The cassette was written in a format version this rtreplay cannot read."""

    def __init__(self, path: str | Path, found: object, writer: str | None, supported: int) -> None:
        self.found = found
        self.writer = writer
        self.supported = supported
        from ._version import __version__

        formats = f"1 to {supported}" if supported > 2 else "1 and 2" if supported == 2 else "1"
        if isinstance(found, int) and not isinstance(found, bool) and found > supported:
            by = f"written by rtreplay {writer}" if writer else "its header does not say which rtreplay wrote it"
            problem = (
                f"the cassette is in format {found} ({by}), newer than this rtreplay "
                f"({__version__}) can read (it reads cassette formats {formats}): install a newer "
                "rtreplay (pip install -U rtreplay), or re-record the cassette with this one"
            )
        else:
            by = f" (written by rtreplay {writer})" if writer else ""
            problem = (
                f'the header\'s "format" is {found!r}{by}, not a cassette format: this rtreplay '
                f"({__version__}) reads cassette formats {formats}"
            )
        super().__init__(path, problem, line=1)


class CassetteChangedError(CassetteError, OSError):
    """The cassette file was rewritten in place (or cut short) while a replay read it.

    A replay reads server frames from the file as they fall due, at offsets found when it
    loaded the file; once the bytes there changed, what is left of the loaded version is
    gone. (A cassette replaced by renaming, as rtreplay's own writer does, is not this
    error: the replay keeps reading the version it opened.) ``filename``: the path.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        CassetteError.__init__(self, path, problem)
        self.errno = None
        self.strerror = problem
        self.filename = os.fspath(path)


class CassetteWriteError(CassetteError, OSError):
    """The cassette cannot be written, finished or moved into place (``filename``: the path)."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        CassetteError.__init__(self, path, problem, line)
        self.errno = None
        self.strerror = problem
        self.filename = os.fspath(path)


class SecretLeakError(RtreplayError):
    """A live credential was found in what was about to be written; nothing was kept."""

    def __init__(self, where: str, hint: str = "") -> None:
        super().__init__(where, hint)
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        msg = f"refusing to write a cassette: a live credential is still present in {self.where}"
        return f"{msg}; {self.hint}" if self.hint else msg


class ReplayError(RtreplayError):
    """The replay server cannot serve what was asked of it."""


class MismatchError(ReplayError):
    """Client events did not match the recording.

    ``report`` is the replay's mismatch report (its ``str`` is the readable text).
    """

    def __init__(self, report: Any) -> None:
        super().__init__(report)
        self.report = report

    def __str__(self) -> str:
        return str(self.report)


class DriveError(RtreplayError):
    """A server driven with a recorded client (``rtreplay drive``) did not answer as recorded.

    ``report`` is the drive's :class:`~rtreplay.report.DriveReport` (its ``str`` is the
    readable text).
    """

    def __init__(self, report: Any) -> None:
        super().__init__(report)
        self.report = report

    def __str__(self) -> str:
        return str(self.report)


class RecordError(RtreplayError):
    """The recording proxy failed."""


class UpstreamError(RecordError):
    """The upstream Realtime API could not be reached, or did not answer in time.

    ``status`` is the HTTP status the recording proxy gave the client (502 unreachable,
    504 no answer within ``open_timeout``); ``Recorder.upstream_errors`` lists them and
    ``Recorder.check()`` raises the first.
    """

    def __init__(self, url: str, status: int, reason: str) -> None:
        super().__init__(url, status, reason)
        self.url = url
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"upstream {self.url} answered {self.status}: {self.reason}"


class EventHookError(RecordError):
    """A :class:`~rtreplay.redact.Redactor`'s ``event_hook`` failed on an event: it raised,
    or returned something that is not a JSON event (``None``: a hook that forgot to return).

    The event is not written (nor, by the recorder, relayed): a cassette never holds an
    event the hook did not pass. ``hook`` names the hook, ``conn`` the connection (``None``
    outside a recording), ``direction`` (``"client"``/``"server"``), ``event_type`` and
    ``event_id`` the event (``None`` when it has none), ``problem`` what went wrong (redacted
    like a log line: the hook's message may quote the event), ``where`` the file and line
    of the hook where it raised. ``error`` is the hook's own exception, not chained, so that
    no traceback prints what it said unredacted.
    """

    def __init__(
        self,
        hook: str,
        problem: str,
        *,
        conn: int | None = None,
        direction: str | None = None,
        event_type: str | None = None,
        event_id: str | None = None,
        where: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(hook, problem)
        self.hook = hook
        self.problem = problem
        self.conn = conn
        self.direction = direction
        self.event_type = event_type
        self.event_id = event_id
        self.where = where
        self.error = error
        #: How many messages of the recorder's batch were written before this one.
        self.recorded = 0

    def __str__(self) -> str:
        event = f"{self.direction} event" if self.direction else "event"
        event += f" {self.event_type!r}" if self.event_type else " (no type)"
        facts = [f"event_id {self.event_id!r}"] if self.event_id else []
        if self.conn is not None:
            facts.append(f"connection {self.conn}")
        at = f" ({', '.join(facts)})" if facts else ""
        where = f" at {self.where}" if self.where else ""
        return (
            f"the redaction event_hook {self.hook} {self.problem}{where} on the {event}{at}; "
            "the event was not recorded. A hook is called as hook(event, direction) with every "
            "decoded JSON event and must return the event to keep (changed or not)"
        )


class CassetteTruncatedWarning(UserWarning):
    """The cassette's last line was cut short; every complete record before it was read."""
