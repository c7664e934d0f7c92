"""Faults injected into a replay: *what* goes wrong, *where* on a connection, as plain values.

A :class:`Fault` is a value: what happens (``error``, ``close``, ``drop``, ``stall``,
``refuse``, ``expire``), where (an :class:`At`: ``connect``, ``open``, ``before:TYPE#N``,
``after:TYPE#N``, ``t:SECONDS``) and on which live connection (``conn``, from 0 in order
of arrival; ``None``: every one). It is written as a string on the command line and in
markers, ``WHAT@WHERE[,conn=K]``::

    error:rate_limit_exceeded@after:response.created
    close:1011@after:response.output_audio.delta#3
    expire@after:response.done,conn=0
    refuse:429@connect

and :meth:`Fault.parse` reads it back (``str(fault)`` writes it: ``Fault.parse(str(f)) ==
f``). A fault changes the replay's schedule, never the cassette: :func:`apply_faults` is a
pure function from a recorded :class:`~rtreplay.timeline.Timeline` and faults to a new
timeline, which the player then follows (the faults at ``connect`` are the handshake's:
:func:`refusal` gives the HTTP answer of a ``refuse``).

**What.**

- ``error[:CODE]``: a Realtime ``error`` event (:func:`error_event`); the replay then
  goes on as recorded. Codes with a preset (:data:`ERROR_PRESETS`) get the API's type
  and message; any other code gets type ``invalid_request_error`` and a message saying
  rtreplay injected it. Without a code: ``server_error``.
- ``close[:CODE[:REASON]]``: the server closes the connection (default code 1011).
- ``drop``: the TCP connection ends with no close frame (clients see 1006).
- ``stall[:SECONDS]``: nothing more is sent for that long; without a number, never
  again (the connection stays open until the client gives up). The replay's own stall
  detection counts from the end of the injected stall.
- ``refuse[:STATUS[:RETRY_AFTER]]``, at ``connect`` only: the handshake is answered with
  that HTTP status (default 429) and the API's JSON error body; 429 and 503 carry
  ``Retry-After`` (default 1 second).
- ``expire``: the API's ``session_expired`` error, then close 1001 (CHANGES.md, "Session
  expiry"; the message is the one in ``cassettes/reconnect.jsonl``).

After ``close``, ``drop``, ``expire`` and a ``stall`` without a number the connection is
over: what the recording has after that point is reported as cut by the fault, not as
unplayed. A client that reconnects gets the next recorded connection.

**Where.** ``connect``: the handshake (``refuse``, ``drop``, ``stall`` only). ``open``:
right after the handshake, before any frame. ``before:TYPE#N`` / ``after:TYPE#N``: the
N-th recorded server event of that type on the connection (1-based, default 1), when
the replay sends it. ``t:SECONDS``: the recorded time on the connection: before the
first server event recorded at or after it (after the last one when none is).

Sources of the presets: the Realtime ``error`` event shape is the OpenAI API reference's
(PROTOCOL.md section 2.2); each preset names where its type and message come from.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, cast, get_args

from .protocol import Requirement
from .timeline import Cue, Ending, Mark, Timeline

if TYPE_CHECKING:
    from ._index import ServerFrame

__all__ = [
    "ERROR_PRESETS",
    "REFUSALS",
    "At",
    "ErrorPreset",
    "Fault",
    "FaultKind",
    "PlaceKind",
    "apply_faults",
    "error_event",
    "locate",
    "parse_faults",
    "refusal",
]

FaultKind = Literal["error", "close", "drop", "stall", "refuse", "expire"]
PlaceKind = Literal["connect", "open", "before", "after", "t"]

_KINDS: tuple[str, ...] = get_args(FaultKind)
_PLACES: tuple[str, ...] = get_args(PlaceKind)
#: What each kind of fault may do at ``connect`` (the handshake) and after it.
_AT_CONNECT = frozenset({"refuse", "drop", "stall"})
#: The faults that end the connection where they fire.
_ENDING = frozenset({"close", "drop", "expire"})

DEFAULT_CLOSE_CODE = 1011
DEFAULT_REFUSE_STATUS = 429
DEFAULT_RETRY_AFTER = 1.0
DEFAULT_ERROR_CODE = "server_error"
#: The reason of an ``expire``'s close. The API's own reason text is not published; the
#: code, 1001 (going away), is (CHANGES.md, "Session expiry").
EXPIRE_REASON = "session expired"

SYNTAX = (
    "WHAT@WHERE[,conn=K] where WHAT is error[:CODE], close[:CODE[:REASON]], drop, "
    "stall[:SECONDS], refuse[:STATUS[:RETRY_AFTER]] or expire, and WHERE is connect, "
    "open, before:TYPE[#N], after:TYPE[#N] or t:SECONDS"
)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number of seconds, not {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a number of seconds >= 0, not {text!r}")
    return value


def _seconds_text(value: float) -> str:
    return f"{value:g}" if float(f"{value:g}") == value else repr(value)


# -- where ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class At:
    """Where on a connection a fault fires (see the module docstring).

    ``place`` is ``"connect"``, ``"open"``, ``"before"``, ``"after"`` or ``"t"``;
    ``type`` the server event type for ``before``/``after``, ``n`` which one of that type
    (1-based); ``t`` the recorded time in seconds for ``"t"``. Build one from its string
    with :meth:`parse`, or directly: ``At("after", "response.created")``. Bad values
    raise :class:`ValueError`.
    """

    place: PlaceKind
    type: str | None = None
    n: int = 1
    t: float | None = None

    def __post_init__(self) -> None:
        if self.place not in _PLACES:
            raise ValueError(f"a fault's place is one of {', '.join(_PLACES)}, not {self.place!r}")
        if self.place in ("before", "after"):
            if not isinstance(self.type, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.type):
                raise ValueError(
                    f"{self.place}: needs a server event type such as response.created, "
                    f"not {self.type!r}"
                )
            if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
                raise ValueError(f"{self.place}:{self.type}#N counts from 1, not {self.n!r}")
        elif self.type is not None or self.n != 1:
            raise ValueError(f"{self.place} takes no event type")
        if self.place == "t":
            if isinstance(self.t, bool) or not isinstance(self.t, (int, float)):
                raise ValueError(f"t: needs a recorded time in seconds, not {self.t!r}")
            object.__setattr__(self, "t", _number(str(self.t), "t:SECONDS"))
        elif self.t is not None:
            raise ValueError(f"{self.place} takes no time")

    @classmethod
    def parse(cls, text: str) -> At:
        """Read ``connect``, ``open``, ``before:TYPE[#N]``, ``after:TYPE[#N]`` or ``t:SECONDS``."""
        text = text.strip()
        if text in ("connect", "open"):
            return cls(cast(PlaceKind, text))
        head, sep, rest = text.partition(":")
        if sep and head in ("before", "after"):
            kind, hash_, count = rest.partition("#")
            n = 1
            if hash_:
                if not count.isdigit():
                    raise ValueError(f"{text!r}: #N must be a whole number >= 1")
                n = int(count)
            return cls(cast(PlaceKind, head), kind, n)
        if sep and head == "t":
            return cls("t", t=_number(rest, f"{text!r}: t:SECONDS"))
        raise ValueError(
            f"{text!r} is not a place: use connect, open, before:TYPE[#N], after:TYPE[#N] "
            f"or t:SECONDS"
        )

    def __str__(self) -> str:
        if self.place in ("before", "after"):
            return f"{self.place}:{self.type}" + (f"#{self.n}" if self.n != 1 else "")
        if self.place == "t":
            assert self.t is not None
            return f"t:{_seconds_text(self.t)}"
        return self.place


# -- what ----------------------------------------------------------------------------------


@dataclass(frozen=True, init=False)
class Fault:
    """A fault to inject: ``what`` happens ``at`` a place, on connection ``conn`` or all.

    ``what``: ``"error"``, ``"close"``, ``"drop"``, ``"stall"``, ``"refuse"`` or
    ``"expire"``. ``at``: an :class:`At` or its string. ``code``: the Realtime error code
    of an ``error`` (a string), the close code of a ``close`` (an int, 1000-4999), the HTTP
    status of a ``refuse`` (an int, 400-599). ``reason``: a ``close``'s reason (at most
    123 bytes of UTF-8). ``seconds``: how long a ``stall`` lasts (``None``: forever), the
    ``Retry-After`` of a ``refuse``. ``conn``: the live connection it applies to (from 0,
    in order of arrival; ``None``: every one).

    Build it from its string with :meth:`parse` (``Fault.parse("close:1011@open")``) or
    directly (``Fault("close", "open", code=1011)``); ``str()`` gives the string back.
    A fault that cannot be (an ``error`` at ``connect``, a ``refuse`` anywhere else, a
    close code no server may send...) raises :class:`ValueError` saying why.
    """

    what: FaultKind
    at: At
    code: str | int | None
    reason: str | None
    seconds: float | None
    conn: int | None

    def __init__(
        self,
        what: FaultKind,
        at: At | str,
        *,
        code: str | int | None = None,
        reason: str | None = None,
        seconds: float | None = None,
        conn: int | None = None,
    ) -> None:
        if what not in _KINDS:
            raise ValueError(f"a fault is one of {', '.join(_KINDS)}, not {what!r}")
        if isinstance(at, str):
            at = At.parse(at)
        elif not isinstance(at, At):
            raise ValueError(f"a fault's place is an At or its string, not {at!r}")
        # What the string form cannot leave out is filled in, so str() and parse() agree.
        if what == "close" and reason is not None and code is None:
            code = DEFAULT_CLOSE_CODE
        if what == "refuse" and seconds is not None and code is None:
            code = DEFAULT_REFUSE_STATUS
        for name, value in (
            ("what", what), ("at", at), ("code", code), ("reason", reason),
            ("seconds", seconds), ("conn", conn),
        ):
            object.__setattr__(self, name, value)
        what, place = self.what, self.at.place
        if place == "connect" and what not in _AT_CONNECT:
            raise ValueError(
                f"{what}@connect: at the handshake there is no WebSocket yet; use {what}@open "
                f"(right after the handshake), or refuse, drop or stall at connect"
            )
        if what == "refuse" and place != "connect":
            raise ValueError(f"refuse@{self.at}: a refusal answers the handshake: use refuse@connect")
        if self.conn is not None and (
            isinstance(self.conn, bool) or not isinstance(self.conn, int) or self.conn < 0
        ):
            raise ValueError(f"conn is a connection number from 0, not {self.conn!r}")
        self._check_arguments()

    def _check_arguments(self) -> None:
        what, code, reason, seconds = self.what, self.code, self.reason, self.seconds
        if what == "error":
            if code is not None and (not isinstance(code, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", code)):
                raise ValueError(f"error:CODE takes an error code such as rate_limit_exceeded, not {code!r}")
        elif what == "close":
            if code is not None and (isinstance(code, bool) or not isinstance(code, int) or not _sendable_close(code)):
                raise ValueError(
                    f"close:CODE takes a close code a server may send (1000-1003, 1007-1014, "
                    f"3000-4999), not {code!r}"
                )
            if reason is not None and (not isinstance(reason, str) or len(reason.encode()) > 123):
                raise ValueError("a close reason is a string of at most 123 bytes of UTF-8")
        elif what == "refuse":
            if code is not None and (isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 599):
                raise ValueError(f"refuse:STATUS takes an HTTP error status (400-599), not {code!r}")
        elif code is not None:
            raise ValueError(f"{what} takes no code")
        if reason is not None and what != "close":
            raise ValueError(f"{what} takes no reason")
        if seconds is not None:
            if what not in ("stall", "refuse"):
                raise ValueError(f"{what} takes no seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise ValueError(f"{what}: seconds is a number, not {seconds!r}")
            object.__setattr__(self, "seconds", _number(str(seconds), f"{what}:SECONDS"))
            if what == "stall" and self.seconds == 0:
                raise ValueError("stall:0 stalls for nothing: give a number of seconds > 0, or none (forever)")

    # -- the string form ------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> Fault:
        """Read ``WHAT@WHERE[,conn=K]`` (see the module docstring).

        Raises :class:`ValueError` naming the string and what is wrong with it.
        """
        if not isinstance(text, str):
            raise ValueError(f"a fault is a string such as 'close:1011@open', not {text!r}")
        m = re.fullmatch(r"(?P<what>.+)@(?P<where>[^@,]+?)\s*(?:,\s*conn\s*=\s*(?P<conn>\S+)\s*)?", text, re.S)
        if m is None:
            raise ValueError(f"{text!r} is not a fault: write {SYNTAX}")
        try:
            conn = None
            if m["conn"] is not None:
                if not m["conn"].isdigit():
                    raise ValueError(f"conn=K takes a connection number from 0, not {m['conn']!r}")
                conn = int(m["conn"])
            head, _, args = m["what"].lstrip().partition(":")  # a reason keeps its spaces
            return cls._from_parts(head, args if _ else None, At.parse(m["where"]), conn)
        except ValueError as exc:
            raise ValueError(f"fault {text!r}: {exc}") from None

    @classmethod
    def _from_parts(cls, what: str, args: str | None, at: At, conn: int | None) -> Fault:
        if what not in _KINDS:
            raise ValueError(f"{what!r} is not a kind of fault: use {', '.join(_KINDS)}")
        kind = cast(FaultKind, what)
        if args is None:
            return cls(kind, at, conn=conn)
        if kind == "error":
            return cls(kind, at, code=args, conn=conn)
        if kind == "close":
            code, _, reason = args.partition(":")
            return cls(kind, at, code=_int(code, "close:CODE"), reason=reason if _ else None, conn=conn)
        if kind == "stall":
            return cls(kind, at, seconds=_number(args, "stall:SECONDS"), conn=conn)
        if kind == "refuse":
            status, _, retry = args.partition(":")
            seconds = _number(retry, "refuse:STATUS:RETRY_AFTER") if _ else None
            return cls(kind, at, code=_int(status, "refuse:STATUS"), seconds=seconds, conn=conn)
        raise ValueError(f"{kind} takes no arguments (got {kind}:{args})")

    def __str__(self) -> str:
        what: str = self.what
        if self.what == "close" and self.code is not None:
            what += f":{self.code}" + (f":{self.reason}" if self.reason is not None else "")
        elif self.what == "error" and self.code is not None:
            what += f":{self.code}"
        elif self.what == "stall" and self.seconds is not None:
            what += f":{_seconds_text(self.seconds)}"
        elif self.what == "refuse" and self.code is not None:
            what += f":{self.code}"
            if self.seconds is not None:
                what += f":{_seconds_text(self.seconds)}"
        conn = f",conn={self.conn}" if self.conn is not None else ""
        return f"{what}@{self.at}{conn}"

    # -- reading it ------------------------------------------------------------------------

    def applies_to(self, conn: int) -> bool:
        """Whether it applies to live connection ``conn``."""
        return self.conn is None or self.conn == conn

    @property
    def ends_connection(self) -> bool:
        """Whether the connection is over once it fired (close, drop, expire, endless stall)."""
        return self.what in _ENDING or (self.what == "stall" and self.seconds is None)

    @property
    def close_code(self) -> int:
        """The close code a ``close`` sends (1011 unless given), 1001 for ``expire``."""
        if self.what == "expire":
            return 1001
        return self.code if isinstance(self.code, int) else DEFAULT_CLOSE_CODE

    @property
    def status(self) -> int:
        """The HTTP status of a ``refuse`` (429 unless given)."""
        return self.code if isinstance(self.code, int) else DEFAULT_REFUSE_STATUS

    @property
    def error_code(self) -> str:
        """The Realtime error code of an ``error`` (``server_error`` unless given)."""
        return self.code if isinstance(self.code, str) else DEFAULT_ERROR_CODE


def _int(text: str, what: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{what} takes a whole number, not {text!r}")
    return int(text)


def _sendable_close(code: int) -> bool:
    # RFC 6455 section 7.4: 1004-1006 and 1015 are reserved and never sent in a close frame.
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_faults(faults: Iterable[Fault | str] | Fault | str | None) -> tuple[Fault, ...]:
    """Faults from :class:`Fault` values or their strings (one, or any iterable of them).

    Raises :class:`ValueError` for a string that is not a fault, or anything else.
    """
    if faults is None:
        return ()
    if isinstance(faults, (str, Fault)):
        faults = [faults]
    out: list[Fault] = []
    for f in faults:
        if isinstance(f, Fault):
            out.append(f)
        elif isinstance(f, str):
            out.append(Fault.parse(f))
        else:
            raise ValueError(f"a fault is a Fault or a string such as 'close:1011@open', not {f!r}")
    return tuple(out)


# -- what the API sends --------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorPreset:
    """The ``error`` object the API sends for one code, and where that is known from."""

    type: str
    code: str | None
    message: str
    source: str
    param: str | None = None


#: Realtime ``error`` events by the code ``error:CODE`` names.
ERROR_PRESETS: Mapping[str, ErrorPreset] = {
    "rate_limit_exceeded": ErrorPreset(
        "tokens",
        "rate_limit_exceeded",
        "Rate limit reached for gpt-realtime in organization org-rtreplay on tokens per min "
        "(TPM): Limit 40000, Used 39461, Requested 1200. Please try again in 987ms. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
        "the API's rate limit message as users of the Realtime API quote it "
        "(openai/openai-agents-js#1022) with the type and code of its 429 errors",
    ),
    "server_error": ErrorPreset(
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that! You can "
        "retry your request, or contact us through our help center at help.openai.com if the "
        "error persists. (Please include the session ID sess_rtreplay in your message.)",
        "the Realtime API's server error as users quote it (openai/openai-realtime-console#51); "
        "the type is the one the API reference names for server problems",
    ),
    "session_expired": ErrorPreset(
        "invalid_request_error",
        "session_expired",
        "Your session hit the maximum duration of 60 minutes.",
        "cassettes/reconnect.jsonl; CHANGES.md, 'Session expiry'",
    ),
    "invalid_request_error": ErrorPreset(
        "invalid_request_error",
        "invalid_event",
        "The 'type' field is missing.",
        "the API reference's own error example (PROTOCOL.md 2.2, examples/SOURCES.md)",
    ),
    "invalid_event": ErrorPreset(
        "invalid_request_error",
        "invalid_event",
        "The 'type' field is missing.",
        "the API reference's own error example (PROTOCOL.md 2.2, examples/SOURCES.md)",
    ),
    "conversation_already_has_active_response": ErrorPreset(
        "invalid_request_error",
        "conversation_already_has_active_response",
        "Conversation already has an active response in progress: resp_rtreplay. Wait until "
        "the response is finished before creating a new one.",
        "examples/SOURCES.md, S4",
    ),
    "response_cancel_not_active": ErrorPreset(
        "invalid_request_error",
        "response_cancel_not_active",
        "Cancellation failed: no active response found",
        "cassettes/errors-recoverable.jsonl",
    ),
    "input_audio_buffer_commit_empty": ErrorPreset(
        "invalid_request_error",
        "input_audio_buffer_commit_empty",
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
        "audio, but buffer only has 0.00ms of audio.",
        "cassettes/errors-recoverable.jsonl",
    ),
}


def error_body(code: str) -> dict[str, object]:
    """The ``error`` object of an ``error:CODE`` fault (a preset, or a made-up one)."""
    preset = ERROR_PRESETS.get(code)
    if preset is None:
        return {
            "type": "invalid_request_error",
            "code": code,
            "message": f"rtreplay injected an error with code {code!r} (a fault; no preset "
            f"for this code, so no API message)",
            "param": None,
            "event_id": None,
        }
    return {
        "type": preset.type,
        "code": preset.code,
        "message": preset.message,
        "param": preset.param,
        "event_id": None,
    }


def error_event(code: str, number: int = 1) -> bytes:
    """A Realtime ``error`` event for ``error:CODE``, as UTF-8 JSON.

    Its ``event_id`` is ``event_rtreplay_fault_<number>``, so a log tells it from the
    recording's events; ``error.event_id`` is ``null`` (no client event caused it).
    """
    event = {"type": "error", "event_id": f"event_rtreplay_fault_{number}", "error": error_body(code)}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


#: The JSON error body of a ``refuse:STATUS``, by status: what the API's front end answers
#: an HTTP request with (the WebSocket handshake is one): ``{"error": {...}}``. The shapes
#: are the REST API's error bodies as users quote them (429: openai/openai-agents-js#1022,
#: TheR1D/shell_gpt#653; 401 and 404: the openai SDKs' AuthenticationError and
#: NotFoundError tests); a status without a preset gets a generic one.
REFUSALS: Mapping[int, dict[str, object]] = {
    400: {"message": "Invalid request: missing required parameter 'model'.", "type": "invalid_request_error", "param": "model", "code": "missing_required_parameter"},
    401: {"message": "Incorrect API key provided: rtreplay*****-key. You can find your API key at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"},
    403: {"message": "Country, region, or territory not supported", "type": "request_forbidden", "param": None, "code": "unsupported_country_region_territory"},
    404: {"message": "The model `gpt-realtime` does not exist or you do not have access to it.", "type": "invalid_request_error", "param": None, "code": "model_not_found"},
    429: {"message": "Rate limit reached for gpt-realtime in organization org-rtreplay on requests per min (RPM): Limit 100, Used 100, Requested 1. Please try again in 600ms. Visit https://platform.openai.com/account/rate-limits to learn more.", "type": "requests", "param": None, "code": "rate_limit_exceeded"},
    500: {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": None, "code": None},
    503: {"message": "The server is overloaded or not ready yet.", "type": "server_error", "param": None, "code": None},
}


def refusal(status: int, retry_after: float | None = None) -> tuple[str, dict[str, str]]:
    """The body and headers of a ``refuse:STATUS`` (see :data:`REFUSALS`).

    429 and 503 carry ``Retry-After`` (``retry_after`` seconds, 1 by default; HTTP takes
    whole seconds, so it is rounded up).
    """
    body = REFUSALS.get(status)
    if body is None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        body = {"message": f"HTTP {status} (rtreplay injected this refusal)", "type": kind, "param": None, "code": None}
    headers = {"Content-Type": "application/json", "x-request-id": "req_rtreplay_fault"}
    if status in (429, 503) or retry_after is not None:
        seconds = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        headers["Retry-After"] = str(math.ceil(seconds))
    return json.dumps({"error": body}, indent=2) + "\n", headers


# -- where in a timeline ----------------------------------------------------------------------


def locate(frames: Iterable[ServerFrame], at: At) -> ServerFrame | None:
    """The recorded frame a ``before``/``after``/``t`` place names, among ``frames``.

    ``before``/``after``: the ``at.n``-th recorded frame of type ``at.type``; ``t``: the
    first recorded at or after ``at.t`` seconds. ``None`` when there is none (and for
    ``connect`` and ``open``, which name no frame).
    """
    if at.place in ("before", "after"):
        seen = 0
        for f in frames:
            if f.index >= 0 and f.type == at.type:
                seen += 1
                if seen == at.n:
                    return f
        return None
    if at.place == "t":
        assert at.t is not None
        for f in frames:
            if f.index >= 0 and f.t >= at.t:
                return f
    return None


def _fault_cue(template: Cue, fault: Fault, t: float, number: int) -> Cue:
    frames: list[ServerFrame] = []
    ending: Ending | None = None
    hold = 0.0
    if fault.what == "error":
        frames.append(_injected(t, error_event(fault.error_code, number)))
    elif fault.what == "expire":
        frames.append(_injected(t, error_event("session_expired", number)))
        ending = Ending(1001, EXPIRE_REASON, t=t)
    elif fault.what == "close":
        ending = Ending(fault.close_code, fault.reason or "", t=t)
    elif fault.what == "drop":
        ending = Ending(1006, "", abort=True, t=t)
    elif fault.what == "stall":
        hold = math.inf if fault.seconds is None else fault.seconds
    mark = Mark(t, str(fault), fault, hold, fault.ends_connection)
    return replace(template, frames=frames, ending=ending, mark=mark)


def _injected(t: float, data: bytes) -> ServerFrame:
    from ._index import ServerFrame

    return ServerFrame(t, True, "error", data=data)


def _is_injected(cue: Cue) -> bool:
    return cue.mark is not None and all(f.index < 0 for f in cue.frames)


def apply_faults(timeline: Timeline, faults: Sequence[Fault], *, conn: int = 0) -> Timeline:
    """A new timeline: ``timeline`` with the faults that apply to live connection ``conn``.

    Pure: ``timeline`` is not changed. Each fault becomes a cue carrying a
    :class:`~rtreplay.timeline.Mark` (its injected ``error`` event, its ending, its
    stall), released with the frame it is placed at; a fault that ends the connection
    drops every cue after it. Faults at ``connect`` (the handshake's) and faults whose
    place this connection's recording lacks (``after:response.done#3`` on a connection
    with two responses) are left out: find which were placed from the marks of the result.
    """
    out = timeline.copy()
    number = 0
    for fault in faults:
        if not fault.applies_to(conn) or fault.at.place == "connect":
            continue
        spot = _spot(out, fault.at)
        if spot is None:
            continue
        position, template, t = spot
        number += 1
        cue = _fault_cue(template, fault, t, number)
        out.cues.insert(position, cue)
        if cue.mark is not None and cue.mark.cut:
            del out.cues[position + 1 :]
    return out


_OPEN = Requirement(-1, True, "connect")


def _spot(timeline: Timeline, at: At) -> tuple[int, Cue, float] | None:
    """Where a fault's cue goes: (position, the cue whose requirement it takes, its time)."""
    if at.place == "open":
        return 0, Cue((), _OPEN, 0.0), 0.0
    frame = locate(timeline.frames(), at)
    if frame is None:
        if at.place != "t":
            return None
        recorded = [f for f in timeline.frames() if f.index >= 0]
        if not recorded:  # after everything there is (a fault placed before cut it all)
            return len(timeline.cues), Cue((), _OPEN, 0.0), at.t or 0.0
        last = recorded[-1]
        assert at.t is not None
        return _after(timeline, last.index, max(at.t, last.t))
    if at.place == "after":
        return _after(timeline, frame.index, frame.t)
    i = timeline.split(frame.index)
    t = at.t if at.place == "t" and at.t is not None else frame.t
    return i, timeline.cues[i], t


def _after(timeline: Timeline, index: int, t: float) -> tuple[int, Cue, float]:
    i = timeline.split_after(index)
    template = timeline.cues[i - 1]
    # After the faults already placed after this frame: they fire in the order given.
    cues = timeline.cues
    while i < len(cues) and _is_injected(cues[i]) and cues[i].requirement == template.requirement:
        i += 1
    return i, replace(template, ending=None, mark=None), t
