"""A cassette read as a conversation: turns, transcripts, function calls, errors, timings.

What ``rtreplay show``, ``diff``, ``audio`` and ``timeline`` share. :func:`conversation`
reads a :class:`~rtreplay.cassette.Cassette` (any format, a partial one too) and returns,
per connection, its session settings and its :class:`Entry` list in time order:

- :class:`UserText` and :class:`UserAudio` (the client's audio cut into turns where the
  server's voice activity detection stopped, or where the client committed or cleared the
  buffer; with the transcript when the session transcribed it);
- :class:`Response` (one per ``response.created``: its messages' text, audio and transcript,
  its function calls, its status, and its timings);
- :class:`FunctionOutput`, :class:`SessionUpdate`, :class:`Cancel`, :class:`Truncate`,
  :class:`ErrorEvent`, :class:`OtherFrame`, and :class:`End` (how the connection ended).

Times are seconds since the connection opened, as the cassette records them. Audio is kept
as the bytes the session sent (PCM16 24 kHz, or G.711 at 8 kHz) with its
:class:`AudioFormat`. Event names are those of the GA protocol and of beta
(``OpenAI-Beta: realtime=v1``): PROTOCOL.md 1.5 and 2.1-2.6.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .cassette import Cassette, Connection, Frame

__all__ = [
    "PCM16",
    "AudioFormat",
    "Cancel",
    "ConversationConnection",
    "End",
    "Entry",
    "ErrorEvent",
    "FunctionCall",
    "FunctionOutput",
    "Message",
    "OtherFrame",
    "Response",
    "SessionUpdate",
    "Translation",
    "Truncate",
    "UserAudio",
    "UserText",
    "audio_data_uri",
    "conversation",
    "g711_to_pcm16",
    "mask_ids",
    "wav_bytes",
]


@dataclass(frozen=True)
class AudioFormat:
    """An audio format of the Realtime API: PCM16 (24 kHz) or G.711 µ-law / A-law (8 kHz).

    ``name`` is the beta name (``pcm16``, ``g711_ulaw``, ``g711_alaw``); GA's
    ``audio/pcm``, ``audio/pcmu`` and ``audio/pcma`` map to them (PROTOCOL.md 2.6).
    """

    name: str
    rate: int
    width: int  # bytes per sample as sent

    def duration(self, nbytes: int) -> float:
        """Seconds of audio in ``nbytes`` bytes."""
        return nbytes / (self.rate * self.width)

    def bytes_at(self, seconds: float) -> int:
        """The byte offset ``seconds`` into a stream (a whole sample)."""
        return int(seconds * self.rate) * self.width

    @property
    def label(self) -> str:
        return {"pcm16": "PCM16", "g711_ulaw": "G.711 µ-law", "g711_alaw": "G.711 A-law"}.get(
            self.name, self.name
        ) + f" {self.rate / 1000:g} kHz"


PCM16 = AudioFormat("pcm16", 24000, 2)
G711_ULAW = AudioFormat("g711_ulaw", 8000, 1)
G711_ALAW = AudioFormat("g711_alaw", 8000, 1)
_FORMATS = {
    "pcm16": PCM16,
    "audio/pcm": PCM16,
    "g711_ulaw": G711_ULAW,
    "audio/pcmu": G711_ULAW,
    "g711_alaw": G711_ALAW,
    "audio/pcma": G711_ALAW,
}


def _format_of(value: Any) -> AudioFormat | None:
    if isinstance(value, dict):
        value = value.get("type")
    return _FORMATS.get(value) if isinstance(value, str) else None


def _ulaw(u: int) -> int:
    u = ~u & 0xFF
    exponent = (u >> 4) & 7
    sample = (((u & 0x0F) << 3) + 0x84) << exponent
    sample -= 0x84
    return -sample if u & 0x80 else sample


def _alaw(a: int) -> int:
    a ^= 0x55
    exponent = (a >> 4) & 7
    mantissa = a & 0x0F
    sample = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return sample if a & 0x80 else -sample


_G711 = {
    name: [decode(b).to_bytes(2, "little", signed=True) for b in range(256)]
    for name, decode in (("g711_ulaw", _ulaw), ("g711_alaw", _alaw))
}


def g711_to_pcm16(data: bytes, fmt: AudioFormat) -> bytes:
    """G.711 bytes as 16-bit little-endian PCM samples (ITU-T G.711); PCM16 unchanged."""
    table = _G711.get(fmt.name)
    if table is None:
        return data
    return b"".join(map(table.__getitem__, data))


# -- entries -----------------------------------------------------------------------------


_ID = re.compile(r"\b(?:event|item|resp|sess|conv|call|fc|msg|evt)_[A-Za-z0-9]{4,}\b")


def mask_ids(text: str) -> str:
    """``text`` with Realtime IDs (``item_...``, ``resp_...``, ``call_...``) replaced by ``<id>``."""
    return _ID.sub("<id>", text)


@dataclass
class Entry:
    """One step of a conversation, at ``t`` seconds into its connection, in turn ``turn``."""

    t: float
    turn: int = 0

    kind = "entry"

    @property
    def at(self) -> float:
        """When the entry takes its place in the conversation (a user audio turn: its end)."""
        return self.t

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for name, value in self.__dict__.items():
            if isinstance(value, (bytes, bytearray)):
                continue
            if isinstance(value, AudioFormat):
                value = value.name
            elif isinstance(value, list):
                value = [v.to_json() if hasattr(v, "to_json") else v for v in value]
            out[name] = value
        return out


@dataclass
class SessionUpdate(Entry):
    """The client's ``session.update`` (or beta ``transcription_session.update``)."""

    session: Any = None
    kind = "session.update"


@dataclass
class UserText(Entry):
    """A message the client added (``conversation.item.create``): text, or audio it carried."""

    role: str = "user"
    text: str = ""
    item_id: str | None = None
    audio: bytes = b""
    format: AudioFormat | None = None
    duration: float | None = None
    kind = "user.text"


@dataclass
class UserAudio(Entry):
    """A turn of the client's streamed audio (``input_audio_buffer.append``).

    ``end`` is when the turn was cut (speech stopped, commit, or clear); ``speech`` the
    server's voice activity detection (ms from the session's first audio) when it ran;
    ``status``: ``committed``, ``cleared`` or ``pending`` (never committed).
    """

    end: float = 0.0
    format: AudioFormat = PCM16
    audio: bytes = b""
    duration: float = 0.0
    item_id: str | None = None
    transcript: str | None = None
    transcript_error: str | None = None
    speech: tuple[int | None, int | None] | None = None
    status: str = "pending"
    kind = "user.audio"

    @property
    def at(self) -> float:
        return self.end


@dataclass
class Message:
    """An assistant message of a response: its text, or its audio and transcript."""

    item_id: str | None = None
    text: str = ""
    transcript: str = ""
    audio: bytes = b""
    format: AudioFormat = PCM16
    duration: float = 0.0
    status: str | None = None
    kind = "message"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "item_id": self.item_id,
            "text": self.text,
            "transcript": self.transcript,
            "audio_bytes": len(self.audio),
            "format": self.format.name,
            "duration": round(self.duration, 3),
            "status": self.status,
        }


@dataclass
class FunctionCall:
    """A function call the model made: name, arguments (a JSON string), call ID."""

    name: str = ""
    call_id: str | None = None
    arguments: str = ""
    item_id: str | None = None
    kind = "function_call"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "call_id": self.call_id, "arguments": self.arguments}


@dataclass
class Response(Entry):
    """One model response (``response.created`` to ``response.done``).

    ``trigger`` is what caused it (``response.create`` from the client, or the server's
    ``input_audio_buffer.committed`` when voice activity detection created it) at
    ``trigger_t``; ``first_delta`` the time of its first delta of any kind; ``done`` of
    ``response.done`` (``None`` in a recording cut short). :attr:`latency` is from the
    trigger to the first delta, :attr:`duration` from ``response.created`` to ``response.done``.
    """

    id: str | None = None
    trigger: str | None = None
    trigger_t: float | None = None
    first_delta: float | None = None
    done: float | None = None
    status: str | None = None
    reason: str | None = None
    outputs: list[Message | FunctionCall] = field(default_factory=list)
    usage: Any = None
    kind = "response"

    @property
    def latency(self) -> float | None:
        if self.first_delta is None:
            return None
        return self.first_delta - (self.trigger_t if self.trigger_t is not None else self.t)

    @property
    def duration(self) -> float | None:
        return None if self.done is None else self.done - self.t

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["latency"] = None if self.latency is None else round(self.latency, 6)
        out["duration"] = None if self.duration is None else round(self.duration, 6)
        return out


@dataclass
class Translation(Entry):
    """What a translation session (``/v1/realtime/translations``) said back: the translated
    transcript and audio, and the source transcript, of one stretch of the client's audio."""

    text: str = ""
    source: str = ""
    audio: bytes = b""
    format: AudioFormat = field(default_factory=lambda: PCM16)
    duration: float = 0.0
    end: float = 0.0  # its last delta
    kind = "translation"

    @property
    def at(self) -> float:
        """Its place: once it is complete (the last delta), after the speech it translates."""
        return self.end


@dataclass
class FunctionOutput(Entry):
    """The client's answer to a function call (a ``function_call_output`` item)."""

    call_id: str | None = None
    name: str | None = None
    output: str = ""
    kind = "function_call_output"


@dataclass
class ErrorEvent(Entry):
    """A server ``error`` event; ``culprit`` is the type of the client event it names."""

    code: str | None = None
    type: str | None = None
    message: str = ""
    culprit: str | None = None
    kind = "error"


@dataclass
class Cancel(Entry):
    """The client's ``response.cancel``."""

    response_id: str | None = None
    kind = "response.cancel"


@dataclass
class Truncate(Entry):
    """The client's ``conversation.item.truncate``: the assistant audio heard, in ms."""

    item_id: str | None = None
    audio_end_ms: int | None = None
    kind = "truncate"


@dataclass
class OtherFrame(Entry):
    """A client event with no place above, or a frame that is not a JSON event."""

    dir: str = "client"
    type: str | None = None
    detail: str = ""
    kind = "other"


@dataclass
class End(Entry):
    """How the connection ended: closed (code, by whom), refused, or never closed."""

    how: str = "closed"  # closed | refused | open
    code: int | None = None
    reason: str = ""
    by: str | None = None
    status: int | None = None
    kind = "end"


@dataclass
class ConversationConnection:
    """One connection read as a conversation."""

    conn: int
    target: str
    protocol: str
    session: dict[str, Any]
    entries: list[Entry]
    frames: int
    duration: float
    input_format: AudioFormat
    output_format: AudioFormat

    def responses(self) -> Iterator[Response]:
        return (e for e in self.entries if isinstance(e, Response))

    def to_json(self) -> dict[str, Any]:
        return {
            "conn": self.conn,
            "target": self.target,
            "protocol": self.protocol,
            "session": self.session,
            "input_format": self.input_format.name,
            "output_format": self.output_format.name,
            "frames": self.frames,
            "duration": round(self.duration, 6),
            "entries": [e.to_json() for e in self.entries],
        }


# -- reading -----------------------------------------------------------------------------

_TEXT_DELTA = ("response.output_text.delta", "response.text.delta")
_TEXT_DONE = ("response.output_text.done", "response.text.done")
_AUDIO_DELTA = ("response.output_audio.delta", "response.audio.delta")
_TRANSCRIPT_DELTA = ("response.output_audio_transcript.delta", "response.audio_transcript.delta")
_TRANSCRIPT_DONE = ("response.output_audio_transcript.done", "response.audio_transcript.done")
_SESSION_EVENTS = (
    "session.created",
    "session.updated",
    "transcription_session.created",
    "transcription_session.updated",
)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        return b""
    try:
        return binascii.a2b_base64(value)
    except (binascii.Error, ValueError):
        return b""


def _target(conn: Connection) -> str:
    query = "&".join(f"{k}={v}" for k, v in conn.open.query.items())
    return conn.open.path + (f"?{query}" if query else "")


def _formats(session: dict[str, Any], protocol: str) -> tuple[AudioFormat | None, AudioFormat | None]:
    rate = session.get("input_audio_sampling_rate")
    if isinstance(rate, int) and not isinstance(rate, bool) and rate > 0:
        # Azure Voice Live: PCM16 at 8, 16 or 24 kHz (``input_audio_format`` defaults to pcm16).
        given = _format_of(session.get("input_audio_format")) or PCM16
        fin = AudioFormat(given.name, rate, given.width) if given.width == 2 else given
        return fin, _format_of(session.get("output_audio_format"))
    if protocol == "beta" or "input_audio_format" in session or "output_audio_format" in session:
        return _format_of(session.get("input_audio_format")), _format_of(session.get("output_audio_format"))
    audio = _obj(session.get("audio"))
    i = _obj(audio.get("input"))
    o = _obj(audio.get("output"))
    return _format_of(i.get("format")), _format_of(o.get("format"))


class _Reader:
    """Reads one connection's frames into entries (see the module docstring)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.entries: list[Entry] = []
        self.session: dict[str, Any] = {}
        self.client_session: dict[str, Any] = {}
        self.input_format: AudioFormat | None = None
        self.output_format: AudioFormat | None = None
        # The client's audio stream, and where each append began (offset, time).
        self.stream = bytearray()
        self.append_offsets: list[int] = []
        self.append_times: list[float] = []
        self.cut = 0  # stream offset where the current turn began
        self.pending_turn: UserAudio | None = None  # cut, awaiting its item id
        self.turns_by_item: dict[str, UserAudio] = {}
        self.transcripts: dict[str, str] = {}
        self.speech: dict[str, list[int | None]] = {}
        self.responses: dict[str, Response] = {}
        self.messages: dict[str, Message] = {}
        self.calls: dict[str, FunctionCall] = {}  # by item id
        self.calls_by_id: dict[str, FunctionCall] = {}
        self.client_events: dict[str, str] = {}  # event_id -> type
        self.last_create: tuple[float, str] | None = None
        self.last_commit: tuple[float, str] | None = None
        self.current: Response | None = None
        self.translation: Translation | None = None  # what a translation session said

    @property
    def in_format(self) -> AudioFormat:
        return self.input_format or PCM16

    @property
    def out_format(self) -> AudioFormat:
        return self.output_format or PCM16

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)

    def read(self) -> ConversationConnection:
        conn = self.conn
        last_t = 0.0
        if conn.reject is None:
            for frame in conn.frames:
                last_t = max(last_t, frame.t)
                self.frame(frame)
            self.finish(last_t)
        if conn.reject is not None:
            r = conn.reject
            last_t = r.t
            self.add(End(r.t, how="refused", status=r.status, reason=r.body[:500]))
        elif conn.close is not None:
            c = conn.close
            last_t = max(last_t, c.t)
            self.add(End(c.t, how="closed", code=c.code, reason=c.reason, by=c.by))
        else:
            self.add(End(last_t, how="open"))
        self.entries.sort(key=lambda e: e.at)  # stable: same-time entries keep their order
        turn = 0
        for e in self.entries:  # turns in time order (audio turns are placed at their start)
            if isinstance(e, UserAudio) or (isinstance(e, UserText) and e.role == "user"):
                turn += 1
            e.turn = turn
        for m in self.messages.values():
            m.duration = m.format.duration(len(m.audio))
        session = self.session or self.client_session
        return ConversationConnection(
            conn.open.conn,
            _target(conn),
            conn.open.protocol,
            session,
            self.entries,
            len(conn.frames),
            last_t,
            self.in_format,
            self.out_format,
        )

    # -- frames -------------------------------------------------------------------------

    def frame(self, frame: Frame) -> None:
        if not frame.is_text:
            self.add(OtherFrame(frame.t, dir=frame.dir, detail=f"binary frame, {len(frame.payload_bytes()):,} bytes"))
            return
        try:
            event = frame.event()
        except ValueError:
            event = None
        if event is None:
            self.add(OtherFrame(frame.t, dir=frame.dir, detail=f"text frame: {str(frame.payload())[:200]}"))
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.add(OtherFrame(frame.t, dir=frame.dir, detail=f"JSON without a type: {_short(event)}"))
            return
        if frame.dir == "client":
            self.client(frame.t, event)
        else:
            self.server(frame.t, event)

    def client(self, t: float, event: dict[str, Any]) -> None:
        kind = event["type"]
        event_id = event.get("event_id")
        if isinstance(event_id, str):
            self.client_events[event_id] = kind
        if kind in ("input_audio_buffer.append", "session.input_audio_buffer.append"):
            data = _b64(event.get("audio"))
            self.append_offsets.append(len(self.stream))
            self.append_times.append(t)
            self.stream += data
        elif kind in ("input_audio_buffer.commit", "input_audio_buffer.clear"):
            status = "committed" if kind.endswith("commit") else "cleared"
            if self.cut_turn(t, len(self.stream), status) is None:
                self.add(OtherFrame(t, dir="client", type=kind, detail="no audio since the last turn"))
        elif kind in ("session.update", "transcription_session.update"):
            session = event.get("session", {})
            if isinstance(session, dict):
                self.client_session.update(session)
                fi, fo = _formats(session, self.conn.open.protocol)
                if not self.session:
                    self.input_format = fi or self.input_format
                    self.output_format = fo or self.output_format
            self.add(SessionUpdate(t, session=session))
        elif kind == "session.close":  # the translation endpoint: the end of the speech
            turn = self.cut_turn(t, len(self.stream), "closed")
            if turn is not None and self.translation is not None:
                turn.transcript = self.translation.source or turn.transcript
        elif kind == "conversation.item.create":
            self.item_create(t, event.get("item"))
        elif kind == "response.create":
            self.last_create = (t, kind)
        elif kind == "response.cancel":
            rid = event.get("response_id")
            self.add(Cancel(t, response_id=rid if isinstance(rid, str) else None))
        elif kind == "conversation.item.truncate":
            ms = event.get("audio_end_ms")
            iid = event.get("item_id")
            self.add(Truncate(t, item_id=iid if isinstance(iid, str) else None, audio_end_ms=ms if isinstance(ms, int) else None))
        else:
            self.add(OtherFrame(t, dir="client", type=kind, detail=_short({k: v for k, v in event.items() if k not in ("type", "event_id")})))

    def item_create(self, t: float, item: Any) -> None:
        if not isinstance(item, dict):
            self.add(OtherFrame(t, dir="client", type="conversation.item.create", detail=_short(item)))
            return
        itype = item.get("type")
        iid = item.get("id") if isinstance(item.get("id"), str) else None
        if itype == "function_call_output":
            call_id = item.get("call_id") if isinstance(item.get("call_id"), str) else None
            call = self.calls_by_id.get(call_id or "")
            output = item.get("output")
            self.add(
                FunctionOutput(
                    t,
                    call_id=call_id,
                    name=call.name if call else None,
                    output=output if isinstance(output, str) else json.dumps(output),
                )
            )
            return
        if itype == "message" or (itype is None and "role" in item):
            role = item.get("role") if isinstance(item.get("role"), str) else "user"
            texts: list[str] = []
            audio = b""
            for part in item.get("content") or []:
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif isinstance(part.get("transcript"), str):
                    texts.append(part["transcript"])
                if isinstance(part.get("audio"), str):
                    audio += _b64(part["audio"])
            entry = UserText(t, role=str(role), text="\n".join(texts), item_id=iid)
            if audio:
                entry.audio = audio
                entry.format = self.in_format
                entry.duration = self.in_format.duration(len(audio))
            self.add(entry)
            return
        self.add(OtherFrame(t, dir="client", type=f"conversation.item.create ({itype})", detail=_short(item)))

    def cut_turn(self, t: float, end: int, status: str, item_id: str | None = None,
                 speech: tuple[int | None, int | None] | None = None) -> UserAudio | None:
        end = max(self.cut, min(end, len(self.stream)))
        if end == self.cut:
            return None
        start = self.cut
        i = bisect.bisect_right(self.append_offsets, start) - 1
        begin = self.append_times[i] if i >= 0 else t
        data = bytes(self.stream[start:end])
        turn = UserAudio(begin, end=t, format=self.in_format, audio=data,
                         duration=self.in_format.duration(len(data)), item_id=item_id,
                         speech=speech, status=status)
        self.cut = end
        self.add(turn)
        if item_id:
            self.turns_by_item[item_id] = turn
            self.attach_transcript(item_id)
        else:
            self.pending_turn = turn
        return turn

    def attach_transcript(self, item_id: str) -> None:
        turn = self.turns_by_item.get(item_id)
        if turn is not None and item_id in self.transcripts:
            turn.transcript = self.transcripts[item_id]

    def server(self, t: float, event: dict[str, Any]) -> None:
        kind: str = event["type"]
        if kind in _SESSION_EVENTS:
            session = event.get("session")
            if isinstance(session, dict):
                self.session = session
                fi, fo = _formats(session, self.conn.open.protocol)
                self.input_format = fi or self.input_format
                self.output_format = fo or self.output_format
            return
        if kind == "input_audio_buffer.speech_started":
            iid = event.get("item_id")
            if isinstance(iid, str):
                self.speech[iid] = [event.get("audio_start_ms"), None]
            return
        if kind == "input_audio_buffer.speech_stopped":
            iid = event.get("item_id")
            ms = event.get("audio_end_ms")
            speech = self.speech.setdefault(iid if isinstance(iid, str) else "", [None, None])
            speech[1] = ms if isinstance(ms, int) else None
            end = self.in_format.bytes_at(ms / 1000) if isinstance(ms, (int, float)) else len(self.stream)
            self.cut_turn(t, end, "committed", iid if isinstance(iid, str) else None,
                          (speech[0], speech[1]))
            return
        if kind == "input_audio_buffer.committed":
            iid = event.get("item_id")
            self.last_commit = (t, kind)
            if not isinstance(iid, str) or iid in self.turns_by_item:
                return
            if self.pending_turn is not None:
                self.pending_turn.item_id = iid
                self.turns_by_item[iid] = self.pending_turn
                self.pending_turn = None
                self.attach_transcript(iid)
            else:
                self.cut_turn(t, len(self.stream), "committed", iid)
            return
        if kind == "input_audio_buffer.cleared":
            return
        if kind in ("session.input_transcript.delta", "session.output_transcript.delta", "session.output_audio.delta"):
            out = self.translation
            if out is None:
                out = self.translation = Translation(t, format=self.out_format)
                self.add(out)
            delta = event.get("delta")
            out.end = t
            if kind == "session.output_audio.delta":
                out.audio += _b64(delta)
                out.duration = out.format.duration(len(out.audio))
            elif isinstance(delta, str):
                if kind == "session.input_transcript.delta":
                    out.source += delta
                else:
                    out.text += delta
            return
        if kind == "session.closed":
            return
        if kind.startswith("conversation.item.input_audio_transcription."):
            iid = event.get("item_id")
            if not isinstance(iid, str):
                return
            if kind.endswith(".delta") and isinstance(event.get("delta"), str):
                self.transcripts[iid] = self.transcripts.get(iid, "") + event["delta"]
            elif kind.endswith(".completed") and isinstance(event.get("transcript"), str):
                self.transcripts[iid] = event["transcript"]
            elif kind.endswith(".failed"):
                turn = self.turns_by_item.get(iid)
                err = event.get("error")
                if turn is not None:
                    turn.transcript_error = str(err.get("message") if isinstance(err, dict) else err)
                return
            self.attach_transcript(iid)
            return
        if kind == "error":
            err = _obj(event.get("error"))
            culprit = err.get("event_id")
            self.add(
                ErrorEvent(
                    t,
                    code=err.get("code") if isinstance(err.get("code"), str) else None,
                    type=err.get("type") if isinstance(err.get("type"), str) else None,
                    message=str(err.get("message") or ""),
                    culprit=self.client_events.get(culprit) if isinstance(culprit, str) else None,
                )
            )
            return
        if kind.startswith("response."):
            self.response_event(t, kind, event)

    def response_event(self, t: float, kind: str, event: dict[str, Any]) -> None:
        if kind == "response.created":
            body = _obj(event.get("response"))
            rid = body.get("id") if isinstance(body.get("id"), str) else None
            trigger: tuple[float, str] | None = None
            if self.last_create is not None:
                trigger, self.last_create = self.last_create, None
            elif self.last_commit is not None:
                trigger, self.last_commit = self.last_commit, None
            created = Response(
                t,
                id=rid,
                trigger=trigger[1] if trigger else None,
                trigger_t=trigger[0] if trigger else None,
                status=body.get("status") if isinstance(body.get("status"), str) else None,
            )
            if rid:
                self.responses[rid] = created
            self.current = created
            self.add(created)
            return
        rid = event.get("response_id")
        response = self.responses.get(rid) if isinstance(rid, str) else self.current
        if kind == "response.done":
            body = _obj(event.get("response"))
            rid = body.get("id")
            found = self.responses.get(rid) if isinstance(rid, str) else self.current
            if found is None:  # a recording that began mid-response
                found = Response(t, id=rid if isinstance(rid, str) else None)
                self.add(found)
            response = found
            response.done = t
            response.status = body.get("status") if isinstance(body.get("status"), str) else response.status
            details = body.get("status_details")
            if isinstance(details, dict):
                reason = details.get("reason") or details.get("type")
                response.reason = reason if isinstance(reason, str) else None
            response.usage = body.get("usage")
            for item in body.get("output") or []:
                self.output_item(response, item, final=True)
            if response is self.current:
                self.current = None
            return
        if response is None:
            return
        if kind.endswith(".delta") and response.first_delta is None:
            response.first_delta = t
        if kind in ("response.output_item.added", "response.output_item.done"):
            self.output_item(response, event.get("item"), final=kind.endswith(".done"))
        elif kind in _TEXT_DELTA or kind in _TEXT_DONE:
            message = self.message(response, event.get("item_id"))
            if kind in _TEXT_DELTA and isinstance(event.get("delta"), str):
                message.text += event["delta"]
            elif isinstance(event.get("text"), str):
                message.text = event["text"]
        elif kind in _AUDIO_DELTA:
            message = self.message(response, event.get("item_id"))
            message.audio += _b64(event.get("delta"))
        elif kind in _TRANSCRIPT_DELTA or kind in _TRANSCRIPT_DONE:
            message = self.message(response, event.get("item_id"))
            if kind in _TRANSCRIPT_DELTA and isinstance(event.get("delta"), str):
                message.transcript += event["delta"]
            elif isinstance(event.get("transcript"), str):
                message.transcript = event["transcript"]
        elif kind.startswith("response.function_call_arguments."):
            iid = event.get("item_id")
            call = self.calls.get(iid) if isinstance(iid, str) else None
            if call is None:
                call = FunctionCall(item_id=iid if isinstance(iid, str) else None)
                response.outputs.append(call)
                if isinstance(iid, str):
                    self.calls[iid] = call
            if isinstance(event.get("call_id"), str):
                call.call_id = event["call_id"]
                self.calls_by_id[call.call_id] = call
            if isinstance(event.get("name"), str):
                call.name = event["name"]
            if kind.endswith(".delta") and isinstance(event.get("delta"), str):
                call.arguments += event["delta"]
            elif isinstance(event.get("arguments"), str):
                call.arguments = event["arguments"]

    def message(self, response: Response, item_id: Any) -> Message:
        key = item_id if isinstance(item_id, str) else f"?{id(response)}"
        message = self.messages.get(key)
        if message is None:
            message = Message(item_id=item_id if isinstance(item_id, str) else None, format=self.out_format)
            self.messages[key] = message
            response.outputs.append(message)
        return message

    def output_item(self, response: Response, item: Any, *, final: bool) -> None:
        if not isinstance(item, dict):
            return
        iid = item.get("id") if isinstance(item.get("id"), str) else None
        itype = item.get("type")
        if itype == "function_call":
            call = self.calls.get(iid or "")
            if call is None:
                call = FunctionCall(item_id=iid)
                response.outputs.append(call)
                if iid:
                    self.calls[iid] = call
            if isinstance(item.get("name"), str):
                call.name = item["name"]
            if isinstance(item.get("call_id"), str):
                call.call_id = item["call_id"]
                self.calls_by_id[call.call_id] = call
            if final and isinstance(item.get("arguments"), str) and item["arguments"]:
                call.arguments = item["arguments"]
        elif itype == "message":
            message = self.message(response, iid)
            if isinstance(item.get("status"), str):
                message.status = item["status"]
            if final:
                for part in item.get("content") or []:
                    if not isinstance(part, dict):
                        continue
                    if isinstance(part.get("text"), str) and not message.text:
                        message.text = part["text"]
                    if isinstance(part.get("transcript"), str) and not message.transcript:
                        message.transcript = part["transcript"]

    def finish(self, t: float) -> None:
        if len(self.stream) > self.cut:
            self.cut_turn(t, len(self.stream), "pending")


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def conversation(cassette: Cassette, conns: Iterable[int] | None = None) -> list[ConversationConnection]:
    """The cassette's connections read as conversations (only ``conns`` if given)."""
    wanted = None if conns is None else set(conns)
    return [
        _Reader(c).read() for c in cassette.connections if wanted is None or c.open.conn in wanted
    ]


def wav_bytes(audio: bytes, fmt: AudioFormat, *, pcm: bool = False) -> bytes:
    """A WAV file holding ``audio``: PCM16, or G.711 as WAVE_FORMAT_MULAW/ALAW (7/6).

    ``pcm``: decode G.711 to 16-bit PCM at its 8 kHz (for players without G.711).
    """
    if pcm or fmt.width == 2:
        data = g711_to_pcm16(audio, fmt)
        channels, rate, bits, tag = 1, fmt.rate, 16, 1
        fmt_chunk = _chunk(b"fmt ", _le(tag, 2) + _le(channels, 2) + _le(rate, 4) + _le(rate * 2, 4) + _le(2, 2) + _le(bits, 2))
        return _riff(fmt_chunk + _chunk(b"data", data))
    tag = 7 if fmt.name == "g711_ulaw" else 6
    fmt_chunk = _chunk(b"fmt ", _le(tag, 2) + _le(1, 2) + _le(fmt.rate, 4) + _le(fmt.rate, 4) + _le(1, 2) + _le(8, 2) + _le(0, 2))
    fact = _chunk(b"fact", _le(len(audio), 4))
    return _riff(fmt_chunk + fact + _chunk(b"data", audio))


def _le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def _chunk(tag: bytes, body: bytes) -> bytes:
    pad = b"\0" if len(body) % 2 else b""
    return tag + _le(len(body), 4) + body + pad


def _riff(body: bytes) -> bytes:
    return b"RIFF" + _le(4 + len(body), 4) + b"WAVE" + body


def audio_data_uri(audio: bytes, fmt: AudioFormat) -> str:
    """A ``data:audio/wav;base64,...`` URI that a browser plays (G.711 decoded to PCM)."""
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(audio, fmt, pcm=True)).decode()


def session_settings(session: dict[str, Any], protocol: str = "ga") -> dict[str, Any]:
    """The settings of a session a reader cares about, GA or beta names alike.

    Keys, each present only when the session says: ``type``, ``model``, ``output``
    (modalities), ``voice``, ``input_format``, ``output_format``, ``turn_detection``
    (``"none"`` for manual commits), ``transcription`` (the model).
    """
    out: dict[str, Any] = {}
    audio = _obj(session.get("audio"))
    i = _obj(audio.get("input"))
    o = _obj(audio.get("output"))
    for key in ("type", "model"):
        if isinstance(session.get(key), str):
            out[key] = session[key]
    modalities = session.get("output_modalities", session.get("modalities"))
    if isinstance(modalities, list):
        out["output"] = "+".join(str(m) for m in modalities)
    voice = o.get("voice", session.get("voice"))
    if isinstance(voice, str):
        out["voice"] = voice
    fi, fo = _formats(session, protocol)
    if fi is not None:
        out["input_format"] = fi.label
    if fo is not None:
        out["output_format"] = fo.label
    sentinel = object()
    turn = i.get("turn_detection", session.get("turn_detection", sentinel))
    if turn is None:
        out["turn_detection"] = "none"
    elif isinstance(turn, dict) and isinstance(turn.get("type"), str):
        out["turn_detection"] = turn["type"]
    transcription = i.get("transcription", session.get("input_audio_transcription"))
    if isinstance(transcription, dict) and isinstance(transcription.get("model"), str):
        out["transcription"] = transcription["model"]
    return out


# -- comparing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One comparable line of a conversation: ``key`` is what must be equal (IDs masked, no
    times, audio as ``~``), ``durations`` what must be close (audio, in seconds)."""

    turn: int
    key: str
    shown: str
    durations: tuple[float, ...] = ()


def _canonical_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False)
    except ValueError:
        return text


def _audio_line(turn: int, who: str, duration: float, said: str | None, extra: str = "") -> Line:
    tail = f": {json.dumps(mask_ids(said), ensure_ascii=False)}" if said else ""
    return Line(turn, f"{who}: audio ~ s{extra}{tail}", f"{who}: audio {duration:.2f} s{extra}{tail}", (duration,))


def lines(c: ConversationConnection) -> list[Line]:
    """The connection as comparable lines: what was said, called and answered, in order."""
    out: list[Line] = []

    def add(turn: int, text: str) -> None:
        text = mask_ids(text)
        out.append(Line(turn, text, text))

    def q(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    for e in c.entries:
        n = e.turn
        if isinstance(e, SessionUpdate):
            session = e.session if isinstance(e.session, dict) else {"": e.session}
            for key in sorted(session):
                add(n, f"client: session.update {key} = {json.dumps(session[key], sort_keys=True, ensure_ascii=False)}")
        elif isinstance(e, UserText):
            who = e.role if e.role == "user" else f"{e.role} (added by the client)"
            if e.audio:
                out.append(_audio_line(n, who, e.duration or 0.0, e.text or None, " (item)"))
            else:
                add(n, f"{who}: {q(e.text)}")
        elif isinstance(e, UserAudio):
            extra = "" if e.status == "committed" else f" ({e.status})"
            out.append(_audio_line(n, "user", e.duration, e.transcript, extra))
        elif isinstance(e, Response):
            status = e.status or "unfinished"
            add(n, f"assistant: response {status}" + (f" ({e.reason})" if e.reason else ""))
            for o in e.outputs:
                if isinstance(o, FunctionCall):
                    add(n, f"assistant: call {o.name}({_canonical_json(o.arguments)})")
                else:
                    if o.audio or o.transcript:
                        out.append(_audio_line(n, "assistant", o.duration, o.transcript or None))
                    if o.text:
                        add(n, f"assistant: {q(o.text)}")
        elif isinstance(e, Translation):
            out.append(_audio_line(n, "translation", e.duration, e.text or None))
            if e.source:
                add(n, f"translation: source {q(e.source)}")
        elif isinstance(e, FunctionOutput):
            add(n, f"client: function output {e.name or '?'}: {_canonical_json(e.output)}")
        elif isinstance(e, ErrorEvent):
            add(n, f"error: {e.code or e.type}: {e.message}" + (f" (answering {e.culprit})" if e.culprit else ""))
        elif isinstance(e, Cancel):
            add(n, "client: response.cancel")
        elif isinstance(e, Truncate):
            ms = (e.audio_end_ms or 0) / 1000
            out.append(Line(n, "client: truncate, audio heard ~ s", f"client: truncate, audio heard {ms:.2f} s", (ms,)))
        elif isinstance(e, OtherFrame):
            add(n, f"{e.dir}: {e.type or ''} {e.detail}".rstrip())
        elif isinstance(e, End):
            if e.how == "refused":
                add(n, f"end: refused with HTTP {e.status}")
            elif e.how == "open":
                add(n, "end: never closed")
            else:
                add(n, f"end: closed by the {e.by or '?'} (code {e.code})")
    return out


@dataclass(frozen=True)
class Change:
    """One line of a comparison: ``" "`` the same, ``"-"`` only in A, ``"+"`` only in B."""

    sign: str
    line: Line


def compare_lines(a: list[Line], b: list[Line], tolerance: float = 0.1) -> list[Change]:
    """The lines of A and B aligned (difflib), durations equal within ``tolerance`` seconds."""
    import difflib

    out: list[Change] = []
    matcher = difflib.SequenceMatcher(None, [x.key for x in a], [x.key for x in b], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for la, lb in zip(a[i1:i2], b[j1:j2], strict=True):
                if all(abs(x - y) <= tolerance + 1e-9 for x, y in zip(la.durations, lb.durations, strict=False)):
                    out.append(Change(" ", lb))
                else:
                    out += [Change("-", la), Change("+", lb)]
        else:
            out += [Change("-", x) for x in a[i1:i2]]
            out += [Change("+", x) for x in b[j1:j2]]
    return out
