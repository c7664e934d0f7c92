"""Scripted sessions: a protocol-correct GA Realtime session written without recording.

A :class:`ScriptedSession` writes one connection of a cassette, step by step, the way the
Realtime API and the openai SDK would have said it: each method writes what the client
sends and what the server answers, with realistic IDs (a prefix and 21 base62 characters
whose first five follow wall time), timings, ``usage`` and ``rate_limits.updated``, text
and audio chunked as the API chunks them. :meth:`ScriptedSession.cassette` returns the
:class:`~rtreplay.cassette.Cassette`, which :class:`~rtreplay.server.ReplayServer`, the
pytest plugin and ``rtreplay`` (once saved with :func:`rtreplay.save`) take like any
recording::

    s = ScriptedSession(seed=1)
    s.update_session(output_modalities=["text"])
    s.user_text("What is the capital of Australia?")
    s.reply_text("Canberra.")
    cassette = s.cassette()

The steps:

- the greeting (``session.created``) is written when the session is made;
- :meth:`~ScriptedSession.update_session`: ``session.update``, answered by
  ``session.updated`` with the whole session;
- :meth:`~ScriptedSession.user_text`: a user message (``conversation.item.create``,
  ``conversation.item.added`` and ``.done``); :meth:`~ScriptedSession.user_audio`: the
  user's audio in 100 ms ``input_audio_buffer.append`` events, then, with server VAD
  (the GA default), ``speech_started``, ``speech_stopped``, ``committed`` and the user's
  item (and a response the server creates itself: script its reply next), or, with
  ``turn_detection: null``, the client's ``input_audio_buffer.commit``;
- :meth:`~ScriptedSession.reply_text`, :meth:`~ScriptedSession.reply_audio` (audio with
  its transcript, the two streams interleaved), :meth:`~ScriptedSession.reply_function_call`
  (arguments streamed in pieces; several calls make parallel tool calls), each a whole
  response (``response.create`` unless the server's VAD created it, ``response.created``
  ... ``response.done``, ``rate_limits.updated``); ``cancel_after=N`` has the client send
  ``response.cancel`` after N deltas, and the response end ``cancelled``;
- :meth:`~ScriptedSession.function_output`: the client's ``function_call_output`` item;
- :meth:`~ScriptedSession.error`: a client event the API refuses and its ``error``
  (``input_audio_buffer_commit_empty``, ``response_cancel_not_active``...), or an error the
  server sends on its own (``server_error``, ``rate_limit_exceeded``).

Client frames are what openai-python sends (``json.dumps`` with its default separators,
no ``event_id``); server frames are compact JSON with UTF-8 unescaped, as the API sends
them. Shapes and order follow PROTOCOL.md sections 2.2 and 2.5 and the recordings in
``cassettes/`` (a cancelled response ends as ``cassettes/interruption.jsonl`` shows).
Every session built passes ``rtreplay validate``. The same arguments and ``seed`` write the
same cassette. :attr:`ScriptedSession.script` holds the Python that wrote it, and
:attr:`ScriptedSession.responses` what each response said (for a test's assertions).
"""

from __future__ import annotations

import base64
import copy
import json
import math
import random
import sys
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .cassette import Cassette, Close, Connection, Frame, Header, Open
from .codec import _close_problem

__all__ = [
    "ERRORS",
    "SESSION_FIELDS",
    "ScriptedCassette",
    "ScriptedResponse",
    "ScriptedSession",
    "speech_like",
    "split_text",
]

RATE = 24_000  # GA audio/pcm: 24 kHz, 16-bit little-endian, mono (PROTOCOL.md 2.6)
BYTES_PER_MS = RATE * 2 // 1000
APPEND_MS = 100  # what a client appends per input_audio_buffer.append (PROTOCOL.md 2.6)
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Where a scripted session's wall clock starts unless told (2026-01-01 00:00 UTC).
EPOCH = 1_767_225_600.0
MODEL = "gpt-realtime"
INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. Act like a "
    "human, but remember that you aren't a human and that you can't do human things in the "
    "real world."
)

#: Errors the API answers a client event with, by code: (the client event, the error's type,
#: its message, the ``param``). PROTOCOL.md 2.2 ("codes seen in the wild") and
#: ``cassettes/errors.jsonl``.
ERRORS: Mapping[str, tuple[dict[str, Any] | None, str, str, str | None]] = {
    "input_audio_buffer_commit_empty": (
        {"type": "input_audio_buffer.commit"},
        "invalid_request_error",
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
        "audio, but buffer only has 0.00ms of audio.",
        None,
    ),
    "response_cancel_not_active": (
        {"type": "response.cancel"},
        "invalid_request_error",
        "Cancellation failed: no active response found",
        None,
    ),
    "unknown_parameter": (
        {"type": "session.update", "session": {"type": "realtime", "modalities": ["text"]}},
        "invalid_request_error",
        "Unknown parameter: 'session.modalities'.",
        "session.modalities",
    ),
    "invalid_event": (
        {"response": {}},
        "invalid_request_error",
        "The 'type' field is missing.",
        None,
    ),
    # No client event causes these: the server sends them on its own.
    "server_error": (
        None,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
        None,
    ),
    "rate_limit_exceeded": (
        None,
        "tokens",
        "Rate limit reached for gpt-realtime on tokens per min (TPM): Limit 40000, Used "
        "39461, Requested 1200. Please try again in 987ms.",
        None,
    ),
}


def split_text(text: str) -> list[str]:
    """``text`` in the token-sized pieces the API streams it in: a word with its leading
    space, long words cut into pieces of five characters (what the recordings show)."""
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        piece = word if i == 0 else " " + word
        while len(piece) > 7:
            out.append(piece[:5])
            piece = piece[5:]
        if piece:
            out.append(piece)
    return out or [text]


def speech_like(seconds: float, seed: int = 0) -> bytes:
    """``seconds`` of speech-like 24 kHz PCM16 (a voiced tone with syllable envelopes).

    Deterministic for a ``seed``; cheap (a second costs a few milliseconds).
    """
    n = max(0, int(seconds * RATE))
    rng = random.Random(seed)
    f0 = rng.uniform(110.0, 220.0)
    syllable = int(RATE * rng.uniform(0.16, 0.24))
    step = 2 * math.pi * f0 / RATE
    samples = array(
        "h",
        (
            int(
                7000
                * math.sin(math.pi * (i % syllable) / syllable)
                * (math.sin(step * i) + 0.4 * math.sin(2 * step * i) + 0.2 * math.sin(3 * step * i))
                / 1.6
            )
            for i in range(n)
        ),
    )
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ScriptedResponse:
    """What one scripted response said: its ID, ``status`` (``completed`` or
    ``cancelled``), the ``text`` of a text reply, the ``transcript`` and ``audio`` (PCM16
    bytes) of an audio reply (what was sent before a cancel), and its function ``calls``
    as ``(call_id, name, arguments)`` with the arguments a JSON string."""

    id: str
    status: str = "completed"
    text: str | None = None
    transcript: str | None = None
    audio: bytes | None = None
    calls: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(repr=False)
class ScriptedCassette(Cassette):
    """A cassette a :class:`ScriptedSession` wrote: a :class:`~rtreplay.cassette.Cassette`
    (save it, replay it, validate it) that also knows the ``script`` that wrote it (Python,
    which its ``repr`` shows), the ``responses`` it holds and the ``errors`` (codes) the
    server sent."""

    script: str = ""
    responses: list[ScriptedResponse] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return self.script or "ScriptedCassette()"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # hypothesis (and IPython) print a dataclass field by field, unless told this way.
        p.text(repr(self))


class _Ids:
    """Realtime-shaped IDs: prefix + 21 base62 characters, the first five following wall time."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def token(self, n: int) -> str:
        return "".join(self.rng.choice(_BASE62) for _ in range(n))

    def new(self, prefix: str, wall: float) -> str:
        stamp = max(0, int(wall) - 1_700_000_000)
        head = ""
        for _ in range(5):
            stamp, digit = divmod(stamp, 62)
            head = _BASE62[digit] + head
        return f"{prefix}_{head}{self.token(16)}"

    def call_id(self) -> str:
        return "call_" + self.token(16)


class _Name(str):
    """A variable of the script (written as is, not quoted)."""


def _code(value: Any) -> str:
    """A Python literal for an argument of the script (bytes by their length only)."""
    if isinstance(value, _Name):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return repr(value)


#: The fields a GA ``session.update`` may set, nested where the schema fixes an object's
#: fields (a value ``None``: any value). From ``RealtimeSessionCreateRequestGA`` in the
#: official event schemas (shared/realtime/events.schema.json) and PROTOCOL.md section 1
#: ("session config", GA): ``turn_detection`` takes the fields of both its kinds
#: (``server_vad`` and ``semantic_vad``).
SESSION_FIELDS: Mapping[str, Any] = {
    "type": None,
    "output_modalities": None,
    "model": None,
    "instructions": None,
    "audio": {
        "input": {
            "format": None,
            "transcription": None,
            "noise_reduction": None,
            "turn_detection": {
                "type": None,
                "threshold": None,
                "prefix_padding_ms": None,
                "silence_duration_ms": None,
                "create_response": None,
                "interrupt_response": None,
                "idle_timeout_ms": None,
                "eagerness": None,
            },
        },
        "output": {"format": None, "voice": None, "speed": None},
    },
    "include": None,
    "tracing": None,
    "tools": None,
    "tool_choice": None,
    "parallel_tool_calls": None,
    "reasoning": None,
    "max_output_tokens": None,
    "truncation": None,
    "prompt": None,
}
#: What the server's session object adds (``RealtimeSessionCreateResponseGA``): a
#: ``ScriptedSession(session=...)`` may override these too.
_SESSION_OBJECT_FIELDS: Mapping[str, Any] = {**SESSION_FIELDS, "id": None, "object": None, "expires_at": None}


#: The beta session's fields (``RealtimeSessionCreateRequest`` in the beta event schemas,
#: shared/realtime/events-beta.schema.json; PROTOCOL.md section 1.5) that GA moved or
#: renamed, and where GA has them (``None``: GA dropped it). Code written for the beta API
#: meets these first.
_BETA_SESSION_FIELDS: Mapping[str, str | None] = {
    "modalities": "output_modalities",
    "voice": "audio.output.voice",
    "input_audio_format": "audio.input.format",
    "output_audio_format": "audio.output.format",
    "input_audio_transcription": "audio.input.transcription",
    "input_audio_noise_reduction": "audio.input.noise_reduction",
    "turn_detection": "audio.input.turn_detection",
    "max_response_output_tokens": "max_output_tokens",
    "temperature": None,
}


def _places(known: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every field of ``known`` at any depth: (its name, its dotted place)."""
    for name, nested in known.items():
        yield name, prefix + name
        if nested is not None:
            yield from _places(nested, f"{prefix}{name}.")


def _unknown_field_hint(name: str, known: Mapping[str, Any], where: str) -> str:
    """What a field the GA session lacks at ``where`` probably meant: beta's name for a GA
    field, a field GA has elsewhere (``voice`` is ``audio.output.voice``), or a typo."""
    if where == "session" and name in _BETA_SESSION_FIELDS:
        place = _BETA_SESSION_FIELDS[name]
        if place is None:
            return " (a beta session field, which the GA session does not have)"
        shape = ", an object such as {'type': 'audio/pcm', 'rate': 24000}" if place.endswith(".format") else ""
        return f" (beta's name: the GA session has it as session.{place}{shape})"
    elsewhere = [place for leaf, place in _places(SESSION_FIELDS) if leaf == name]
    if elsewhere:
        return f" (the GA session has it as {' or '.join('session.' + p for p in elsewhere)})"
    import difflib

    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_session_fields(fields: Mapping[str, Any], known: Mapping[str, Any], caller: str, where: str = "session") -> None:
    """Refuse a field the GA session does not have (a typo), naming it and the known ones."""
    for name, value in fields.items():
        if name not in known:
            hint = _unknown_field_hint(str(name), known, where)
            raise ValueError(
                f"{caller}: {where} has no field {name!r}{hint}; the GA session's fields there "
                f"are: {', '.join(known)} (RealtimeSessionCreateRequestGA in the Realtime API's "
                "event schema). To script the API refusing an unknown parameter, use "
                "error('unknown_parameter')"
            )
        nested = known[name]
        if nested is not None and isinstance(value, Mapping):
            _check_session_fields(value, nested, caller, f"{where}.{name}")


class ScriptedSession:
    """Writes one GA Realtime connection as the API and the openai SDK would have said it.

    ``seed`` makes the IDs and the small variations of timing and chunking (the same seed
    and steps write the same cassette); ``model`` goes in the handshake's query and the
    session; ``started`` is the wall-clock start (unix seconds); ``session`` overrides fields
    of the session object the greeting carries (``turn_detection`` lives in
    ``audio.input``: ``{"audio": {"input": {"turn_detection": None}}}`` turns server VAD
    off). Methods raise :class:`ValueError` for a step the protocol does not allow where it
    is asked (a reply to no question, a function output for an unknown call), and for a
    session field the GA session does not have (see :data:`SESSION_FIELDS`).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        model: str = MODEL,
        started: float = EPOCH,
        session: Mapping[str, Any] | None = None,
    ) -> None:
        if session:
            _check_session_fields(session, _SESSION_OBJECT_FIELDS, "ScriptedSession(session=...)")
        self.seed = seed
        self._rng = random.Random(seed)
        self._ids = _Ids(self._rng)
        self.model = model
        self.t = 0.0
        self._wall0 = started
        self._frames: list[Frame] = []
        self._close: Close | None = None
        self._last_item: str | None = None
        self._conversation = self._ids.new("conv", self._wall)
        self._tokens_left = 40_000
        self._vad_response = False  # the server's VAD created a response: its reply comes next
        self._pending_calls: dict[str, str] = {}  # call_id -> name, not yet answered
        self._call_names: dict[str, str] = {}  # call_id -> its variable in the script
        self._audio_seed = seed
        self._heard = 0  # ms of input audio the server has received
        self.responses: list[ScriptedResponse] = []
        self.errors: list[str] = []
        args = [f"seed={seed!r}"]
        if model != MODEL:
            args.append(f"model={model!r}")
        if started != EPOCH:
            args.append(f"started={started!r}")
        if session:
            args.append(f"session={dict(session)!r}")
        self._script = [f"s = ScriptedSession({', '.join(args)})"]
        self.session: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": self._ids.new("sess", self._wall),
            "model": model,
            "output_modalities": ["audio"],
            "instructions": INSTRUCTIONS,
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "expires_at": int(self._wall) + 3600,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": _server_vad(),
                },
                "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "marin", "speed": 1.0},
            },
            "include": None,
        }
        if session:
            _merge(self.session, dict(session))
        self._server("session.created", dt=0.21, session=copy.deepcopy(self.session))

    # -- what was written ---------------------------------------------------------------

    @property
    def script(self) -> str:
        """The Python that writes this session (what a generated session's ``repr`` shows)."""
        return "\n".join(self._script)

    def cassette(self) -> ScriptedCassette:
        """The cassette written so far, as a :class:`ScriptedCassette` (closed by the client
        unless :meth:`close` said otherwise)."""
        close = self._close or Close(0, round(self.t + 0.05, 6), 1000, "", "client")
        open_ = Open(
            conn=0,
            path="/v1/realtime",
            query={"model": self.model},
            protocol="ga",
            headers={"authorization": "Bearer REDACTED", "user-agent": "AsyncOpenAI/Python 3.52.0"},
            started=_iso(self._wall0),
        )
        return ScriptedCassette(
            header=Header(created=_iso(self._wall0).split(".")[0] + "Z"),
            connections=[Connection(open_, list(self._frames), close)],
            script="\n".join([*self._script, "s.cassette()"]),
            responses=copy.deepcopy(self.responses),
            errors=list(self.errors),
        )

    def close(self, *, by: str = "client", code: int = 1000, reason: str = "") -> None:
        """End the connection: the client closes it (the default), or the server does."""
        if by not in ("client", "server"):
            raise ValueError(f"by is 'client' or 'server', not {by!r}")
        close = Close(0, round(self.t + 0.05, 6), code, reason, by)  # type: ignore[arg-type]
        problem = _close_problem(close)
        if problem is not None:  # said here, not when the cassette is saved or loaded
            raise ValueError(problem)
        self._note("close", by=by, code=code, reason=reason)
        self.t += 0.05
        self._close = close

    # -- steps --------------------------------------------------------------------------

    def update_session(self, session: Mapping[str, Any] | None = None, /, **fields: Any) -> dict[str, Any]:
        """The client's ``session.update`` (``session`` or keyword fields, without
        ``type``, which is added), answered by ``session.updated`` with the whole session.
        Returns the session as it now is.

        Raises :class:`ValueError` for a field the GA session does not have, at any depth
        the schema fixes (``audio.input.turn_detection.silence_duration_ms``), naming it and
        the known fields: :data:`SESSION_FIELDS`, from ``RealtimeSessionCreateRequestGA``
        in the official event schemas and PROTOCOL.md section 1. (A session the API refuses
        is scripted with ``error("unknown_parameter")``.)
        """
        changes = {**(dict(session) if session else {}), **fields}
        _check_session_fields(changes, SESSION_FIELDS, "update_session")
        self._before_step()
        self._note("update_session", **changes)
        sent = {"type": "realtime", **{k: v for k, v in changes.items() if k != "type"}}
        self._client({"type": "session.update", "session": sent})
        _merge(self.session, {k: v for k, v in changes.items() if k != "type"})
        self._server("session.updated", dt=0.05, session=copy.deepcopy(self.session))
        return copy.deepcopy(self.session)

    def user_text(self, text: str) -> str:
        """A user message: ``conversation.item.create``, answered by the item added and done.
        Returns the item's ID."""
        self._before_step()
        self._note("user_text", text)
        content = [{"type": "input_text", "text": text}]
        self._client({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": content}})
        item_id = self._ids.new("item", self._wall)
        item = {"id": item_id, "type": "message", "status": "completed", "role": "user", "content": content}
        self._item_added_done(item, dt=0.04)
        return item_id

    def user_audio(self, audio: bytes | float = 1.0, *, transcript: str | None = None) -> str:
        """The user speaks: ``audio`` (PCM16 at 24 kHz, or a number of seconds of speech-like
        audio) in 100 ms appends. With server VAD the server hears the speech start and stop
        (after the session's ``silence_duration_ms`` of silence the client keeps sending),
        commits it and adds the user's item, then creates a response: script its reply
        next. Without turn detection the client commits the buffer itself. ``transcript``:
        what the session's input transcription says, when it has one. Returns the item's ID.
        """
        self._before_step()
        self._note("user_audio", audio, transcript=transcript)
        pcm = self._audio(audio)
        if not pcm:
            raise ValueError("user_audio needs some audio: give bytes or a number of seconds > 0")
        turn = self._input().get("turn_detection")
        vad = isinstance(turn, dict) and turn.get("type") in ("server_vad", "semantic_vad")
        item_id = self._ids.new("item", self._wall)
        heard = self._heard
        chunk = APPEND_MS * BYTES_PER_MS
        if vad:
            assert isinstance(turn, dict)
            silence = int(turn.get("silence_duration_ms") or 500)
            padding = int(turn.get("prefix_padding_ms") or 300)
            start_ms = heard
            pieces = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)]
            pieces += [bytes(chunk)] * math.ceil(silence / APPEND_MS)
            spoken_ms = len(pcm) // BYTES_PER_MS
            started = stopped = False
            for piece in pieces:
                self._client({"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()}, dt=APPEND_MS / 1000)
                self._heard += len(piece) // BYTES_PER_MS
                if not started:
                    started = True
                    self._server(
                        "input_audio_buffer.speech_started", dt=0.02,
                        audio_start_ms=max(0, start_ms + 60 - padding), item_id=item_id,
                    )
                if not stopped and self._heard >= start_ms + spoken_ms + silence:
                    stopped = True
                    self._server(
                        "input_audio_buffer.speech_stopped", dt=0.02,
                        audio_end_ms=start_ms + spoken_ms + 80, item_id=item_id,
                    )
            if not stopped:
                self._server("input_audio_buffer.speech_stopped", dt=0.02, audio_end_ms=self._heard, item_id=item_id)
            self._server("input_audio_buffer.committed", dt=0.01, previous_item_id=self._last_item, item_id=item_id)
        else:
            for i in range(0, len(pcm), chunk):
                piece = pcm[i : i + chunk]
                self._client({"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()}, dt=APPEND_MS / 1000)
                self._heard += len(piece) // BYTES_PER_MS
            self._client({"type": "input_audio_buffer.commit"})
            self._server("input_audio_buffer.committed", dt=0.03, previous_item_id=self._last_item, item_id=item_id)
        item = {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._item_added_done(item, dt=0.001)
        transcription = self._input().get("transcription")
        if transcript is not None and transcription:
            for said in split_text(transcript):
                self._server(
                    "conversation.item.input_audio_transcription.delta", dt=0.015,
                    item_id=item_id, content_index=0, delta=said, obfuscation=self._ids.token(max(3, 16 - len(said))),
                )
            audio_tokens = max(1, len(pcm) // BYTES_PER_MS // 100)
            out = max(1, len(transcript) // 4)
            self._server(
                "conversation.item.input_audio_transcription.completed", dt=0.01,
                item_id=item_id, content_index=0, transcript=transcript,
                usage={
                    "type": "tokens", "total_tokens": audio_tokens + out, "input_tokens": audio_tokens,
                    "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens}, "output_tokens": out,
                },
            )
        if vad and isinstance(turn, dict) and turn.get("create_response", True):
            self._vad_response = True
        return item_id

    def reply_text(self, text: str, *, deltas: Sequence[str] | None = None, cancel_after: int | None = None) -> str:
        """A text reply: a response whose one message streams ``text`` in ``deltas`` (token
        sized pieces by default; they must add up to ``text``). ``cancel_after=N``: the
        client cancels after N deltas and the response ends ``cancelled`` with what was sent.
        Returns the response's ID."""
        pieces = _pieces(text, deltas, "deltas")
        self._note("reply_text", text, deltas=None if deltas is None else list(deltas), cancel_after=cancel_after)
        _check_cancel(cancel_after, len(pieces))
        return self._respond(["text"], [("text", text, pieces)], cancel_after)

    def reply_audio(
        self,
        transcript: str,
        audio: bytes | float | None = None,
        *,
        deltas: Sequence[str] | None = None,
        audio_deltas: Sequence[int] | None = None,
        cancel_after: int | None = None,
    ) -> str:
        """An audio reply: a response whose message streams ``audio`` (PCM16 at 24 kHz, or
        seconds of speech-like audio; by default about a second per 15 characters) in
        ``response.output_audio.delta`` events of ``audio_deltas`` bytes (uneven sizes
        like the API's by default; multiples of 6 keep samples and base64 whole) and its
        ``transcript`` in ``deltas``, the two interleaved. ``cancel_after=N``: the client
        cancels after N transcript deltas. Returns the response's ID."""
        pieces = _pieces(transcript, deltas, "deltas")
        self._note(
            "reply_audio", transcript, audio,
            deltas=None if deltas is None else list(deltas),
            audio_deltas=None if audio_deltas is None else list(audio_deltas),
            cancel_after=cancel_after,
        )
        _check_cancel(cancel_after, len(pieces))
        pcm = self._audio(audio if audio is not None else max(0.4, len(transcript) / 15))
        sizes = list(audio_deltas) if audio_deltas is not None else self._audio_sizes(len(pcm))
        if sum(sizes) != len(pcm) or any(s <= 0 for s in sizes):
            raise ValueError(f"audio_deltas must be sizes > 0 adding up to the audio's {len(pcm)} bytes")
        chunks, pos = [], 0
        for size in sizes:
            chunks.append(pcm[pos : pos + size])
            pos += size
        return self._respond(["audio"], [("audio", transcript, pieces, chunks)], cancel_after)

    def reply_function_call(
        self, name: str, arguments: Mapping[str, Any] | str, *, deltas: Sequence[str] | None = None
    ) -> str:
        """A response that calls function ``name`` with ``arguments`` (a dict, or its JSON),
        streamed in ``deltas``. Returns the call's ``call_id`` (answer it with
        :meth:`function_output`)."""
        line = len(self._script)
        self._note("reply_function_call", name, arguments, deltas=None if deltas is None else list(deltas))
        [call_id] = self.reply_function_calls([(name, arguments, deltas)], _noted=True)
        self._script[line] = f"{self._call_names[call_id]} = {self._script[line]}"
        return call_id

    def reply_function_calls(
        self,
        calls: Sequence[tuple[str, Mapping[str, Any] | str] | tuple[str, Mapping[str, Any] | str, Sequence[str] | None]],
        *,
        _noted: bool = False,
    ) -> list[str]:
        """A response with several function calls (parallel tool calls), each
        ``(name, arguments)`` or ``(name, arguments, deltas)``. Returns their ``call_id``s."""
        if not calls:
            raise ValueError("reply_function_calls needs at least one (name, arguments)")
        outputs: list[tuple[Any, ...]] = []
        for call in calls:
            name, arguments = call[0], call[1]
            deltas = call[2] if len(call) > 2 else None
            text = arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
            pieces = _pieces(text, deltas, "deltas") if deltas is not None else _argument_pieces(text)
            outputs.append(("call", name, text, pieces))
        line = len(self._script)
        if not _noted:
            self._note("reply_function_calls", [tuple(c) for c in calls])
        self._respond(["text"], outputs, None)
        ids = [c for c, _, _ in self.responses[-1].calls]
        names = []
        for call_id in ids:
            self._call_names[call_id] = f"call_{len(self._call_names) + 1}"
            names.append(self._call_names[call_id])
        if not _noted:
            self._script[line] = f"{', '.join(names)} = {self._script[line]}"
        return ids

    def function_output(self, call_id: str, output: Mapping[str, Any] | str) -> str:
        """The client's answer to a function call: a ``function_call_output`` item
        (``output`` a string, or a dict sent as its JSON). Returns the item's ID."""
        self._before_step()
        if call_id not in self._pending_calls:
            raise ValueError(f"no function call {call_id!r} waits for its output in this session")
        self._note("function_output", _Name(self._call_names.get(call_id, repr(call_id))), output)
        del self._pending_calls[call_id]
        text = output if isinstance(output, str) else json.dumps(output)
        item = {"type": "function_call_output", "call_id": call_id, "output": text}
        self._client({"type": "conversation.item.create", "item": item}, dt=0.02)
        item_id = self._ids.new("item", self._wall)
        self._item_added_done({"id": item_id, **item}, dt=0.03)
        return item_id

    def error(self, code: str = "server_error", message: str | None = None, *, event_id: str | None = None) -> None:
        """An ``error``: for a code the API answers a client event with (:data:`ERRORS`:
        ``input_audio_buffer_commit_empty``, ``response_cancel_not_active``,
        ``unknown_parameter``, ``invalid_event``), that client event first, carrying
        ``event_id`` if given (which the error then names); for another code, an error the
        server sends on its own. ``message`` replaces the preset's."""
        self._before_step()
        self._note("error", code, message=message, event_id=event_id)
        client, kind, preset, param = ERRORS.get(code, (None, "invalid_request_error", f"An error occurred: {code}.", None))
        if client is not None:
            sent = copy.deepcopy(client)
            if event_id is None and "type" not in sent:
                # An event the API cannot even read: the error names it, or nothing could
                # tell which event it was (and rtreplay validate would flag it).
                event_id = f"event_client_{len(self.errors) + 1}"
            if event_id is not None:
                sent["event_id"] = event_id
            self._client(sent)
        error = {"type": kind, "code": code if kind != "server_error" else None, "message": message or preset,
                 "param": param, "event_id": event_id if client is not None else None}
        self._server("error", dt=0.03, error=error)
        self.errors.append(code)

    # -- the response -------------------------------------------------------------------

    def _respond(self, modalities: list[str], outputs: list[tuple[Any, ...]], cancel_after: int | None) -> str:
        self._before_step(reply=True)
        if not self._vad_response:
            self._client({"type": "response.create"})
        self._vad_response = False
        rid = self._ids.new("resp", self._wall)
        said = ScriptedResponse(rid)
        self.responses.append(said)
        self._server("response.created", dt=0.03, response=self._response_obj(rid, "in_progress", modalities, [], None))
        done_items: list[dict[str, Any]] = []
        cancelled = False
        text_out = audio_out = 0
        for index, output in enumerate(outputs):
            prev = self._last_item
            item_id = self._ids.new("item", self._wall)
            kind = output[0]
            if kind == "call":
                _, name, arguments, pieces = output
                call_id = self._ids.call_id()
                item = {"id": item_id, "type": "function_call", "status": "in_progress", "name": name, "call_id": call_id, "arguments": ""}
                self._output_item_added(rid, item, index, dt=0.3 if index == 0 else 0.02)
                common = {"response_id": rid, "item_id": item_id, "output_index": index, "call_id": call_id}
                for piece in pieces:
                    self._server("response.function_call_arguments.delta", dt=0.01, **common, delta=piece)
                self._server("response.function_call_arguments.done", dt=0.01, **common, name=name, arguments=arguments)
                done = dict(item, status="completed", arguments=arguments)
                self._output_item_done(rid, done, prev, index)
                done_items.append(done)
                said.calls.append((call_id, name, arguments))
                self._pending_calls[call_id] = name
                text_out += max(1, len(arguments) // 4)
                continue
            item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
            self._output_item_added(rid, item, index)
            common = {"response_id": rid, "item_id": item_id, "output_index": index, "content_index": 0}
            if kind == "text":
                _, _, pieces = output
                self._server("response.content_part.added", dt=0.001, **common, part={"type": "text", "text": ""})
                sent = ""
                for n, piece in enumerate(pieces):
                    if cancel_after is not None and n == cancel_after:
                        cancelled = True
                        break
                    self._server("response.output_text.delta", dt=self._rng.uniform(0.008, 0.03), **common, delta=piece, obfuscation=self._ids.token(max(3, 16 - len(piece))))
                    sent += piece
                if cancelled:
                    self._client({"type": "response.cancel"}, dt=0.005)
                self._server("response.output_text.done", dt=0.02, **common, text=sent)
                self._server("response.content_part.done", dt=0.001, **common, part={"type": "text", "text": sent})
                content = [{"type": "output_text", "text": sent}]
                said.text = sent
                text_out += max(1, len(sent) // 4)
            else:
                _, _, pieces, chunks = output
                self._server("response.content_part.added", dt=0.001, **common, part={"type": "audio", "transcript": ""})
                sent, heard = "", b""
                audio = iter(chunks)
                for n, piece in enumerate(pieces):
                    if cancel_after is not None and n == cancel_after:
                        cancelled = True
                        break
                    self._server("response.output_audio_transcript.delta", dt=0.004, **common, delta=piece, obfuscation=self._ids.token(max(3, 16 - len(piece))))
                    sent += piece
                    if n % 2 == 0:
                        chunk = next(audio, None)
                        if chunk is not None:
                            self._server("response.output_audio.delta", dt=0.02, **common, delta=base64.b64encode(chunk).decode())
                            heard += chunk
                if cancelled:
                    self._client({"type": "response.cancel"}, dt=0.005)
                else:
                    for chunk in audio:
                        self._server("response.output_audio.delta", dt=0.02, **common, delta=base64.b64encode(chunk).decode())
                        heard += chunk
                self._server("response.output_audio.done", dt=0.01, **common)
                self._server("response.output_audio_transcript.done", dt=0.001, **common, transcript=sent)
                self._server("response.content_part.done", dt=0.001, **common, part={"type": "audio", "transcript": sent})
                content = [{"type": "output_audio", "transcript": sent}]
                said.transcript, said.audio = sent, heard
                text_out += max(1, len(sent) // 4)
                audio_out += len(heard) // BYTES_PER_MS // 50
            status = "incomplete" if cancelled else "completed"
            done = dict(item, status=status, content=content)
            self._output_item_done(rid, done, prev, index)
            done_items.append(done)
            if cancelled:
                break
        status = "cancelled" if cancelled else "completed"
        details = {"type": "cancelled", "reason": "client_cancelled"} if cancelled else None
        usage = self._usage(text_out, audio_out)
        self._server("response.done", dt=0.001, response=self._response_obj(rid, status, modalities, done_items, usage, details))
        said.status = status
        self._tokens_left = max(1000, self._tokens_left - usage["total_tokens"])
        limits = [{"name": "tokens", "limit": 40000, "remaining": self._tokens_left, "reset_seconds": round(usage["total_tokens"] * 0.0015, 3)}]
        self._server("rate_limits.updated", dt=0.001, rate_limits=limits)
        return rid

    def _output_item_added(self, rid: str, item: dict[str, Any], index: int, dt: float = 0.25) -> None:
        self._server("response.output_item.added", dt=dt, response_id=rid, output_index=index, item=item)
        self._server("conversation.item.added", dt=0.001, previous_item_id=self._last_item, item=item)
        self._last_item = item["id"]

    def _output_item_done(self, rid: str, item: dict[str, Any], prev: str | None, index: int) -> None:
        self._server("response.output_item.done", dt=0.001, response_id=rid, output_index=index, item=item)
        self._server("conversation.item.done", dt=0.001, previous_item_id=prev, item=item)

    def _response_obj(
        self, rid: str, status: str, modalities: list[str], output: list[Any], usage: Any, details: Any = None
    ) -> dict[str, Any]:
        out = self.session.get("audio", {}).get("output", {})
        return {
            "object": "realtime.response", "id": rid, "status": status, "status_details": details,
            "output": output, "conversation_id": self._conversation, "output_modalities": modalities,
            "max_output_tokens": "inf",
            "audio": {"output": {"format": out.get("format", {"type": "audio/pcm", "rate": RATE}), "voice": out.get("voice", "marin")}},
            "usage": usage, "metadata": None,
        }

    def _usage(self, text_out: int, audio_out: int) -> dict[str, Any]:
        text_in = 40 + 12 * len(self.responses)
        cached = text_in // 128 * 64
        return {
            "total_tokens": text_in + text_out + audio_out,
            "input_tokens": text_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": text_in, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": cached,
                "cached_tokens_details": {"text_tokens": cached, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    # -- frames -------------------------------------------------------------------------

    @property
    def _wall(self) -> float:
        return self._wall0 + self.t

    def _server(self, kind: str, dt: float = 0.002, **fields: Any) -> None:
        self.t += dt
        event = {"type": kind, "event_id": self._ids.new("event", self._wall), **fields}
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        self._frames.append(Frame.from_message(0, self.t, "server", text))

    def _client(self, event: dict[str, Any], dt: float = 0.003) -> None:
        self.t += dt
        # Exactly what openai-python sends: json.dumps with its default separators.
        self._frames.append(Frame.from_message(0, self.t, "client", json.dumps(event)))

    def _item_added_done(self, item: dict[str, Any], dt: float) -> None:
        self._server("conversation.item.added", dt=dt, previous_item_id=self._last_item, item=item)
        self._server("conversation.item.done", dt=0.001, previous_item_id=self._last_item, item=item)
        self._last_item = item["id"]

    def _input(self) -> dict[str, Any]:
        audio = self.session.get("audio")
        value = audio.get("input") if isinstance(audio, dict) else None
        return value if isinstance(value, dict) else {}

    def _audio(self, audio: bytes | float) -> bytes:
        if isinstance(audio, (bytes, bytearray, memoryview)):
            data = bytes(audio)
            if len(data) % 2:
                raise ValueError("audio must be whole 16-bit samples (an even number of bytes)")
            return data
        if isinstance(audio, bool) or not isinstance(audio, (int, float)) or not 0 <= audio < 3600:
            raise ValueError(f"audio is PCM16 bytes or a number of seconds, not {audio!r}")
        self._audio_seed += 1
        return speech_like(float(audio), self._audio_seed)

    def _audio_sizes(self, total: int) -> list[int]:
        """Uneven audio delta sizes like the API's: 2400 bytes first, then 4800 to 9600."""
        sizes, pos, first = [], 0, True
        while pos < total:
            size = min(2400 if first else self._rng.choice((4800, 7200, 9600)), total - pos)
            first = False
            sizes.append(size)
            pos += size
        return sizes

    def _before_step(self, *, reply: bool = False) -> None:
        if self._close is not None:
            raise ValueError("the session is closed: nothing can follow close()")
        if self._vad_response and not reply:
            raise ValueError(
                "the server's VAD created a response after the user's audio: script its reply "
                "(reply_text, reply_audio, reply_function_call) next"
            )

    def _note(self, method: str, *args: Any, **kwargs: Any) -> None:
        parts = [_code(a) for a in args]
        parts += [f"{k}={_code(v)}" for k, v in kwargs.items() if v is not None]
        self._script.append(f"s.{method}({', '.join(parts)})")


def _server_vad() -> dict[str, Any]:
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 200,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def _merge(target: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """Apply a ``session.update``'s fields as the API does: nested objects field by field."""
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _pieces(text: str, deltas: Sequence[str] | None, what: str) -> list[str]:
    if deltas is None:
        return split_text(text)
    pieces = list(deltas)
    if "".join(pieces) != text or not pieces:
        raise ValueError(f"{what} must be at least one piece and add up to {text!r}, not {pieces!r}")
    return pieces


def _argument_pieces(text: str) -> list[str]:
    """Function arguments as the API streams them: a few characters at a time."""
    return [text[i : i + 6] for i in range(0, len(text), 6)] or [text]


def _check_cancel(cancel_after: int | None, pieces: int) -> None:
    if cancel_after is not None and not 0 <= cancel_after < pieces:
        raise ValueError(f"cancel_after counts deltas sent before the cancel: 0 to {pieces - 1}, not {cancel_after!r}")
