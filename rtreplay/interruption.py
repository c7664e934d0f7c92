"""Interruptions that follow the client: what the API sends when a response is cut short.

A client may interrupt a response at a moment the recording did not: it sends
``response.cancel``, ``conversation.item.truncate`` for the item being played, or
``output_audio_buffer.clear``, or (with server VAD and ``interrupt_response``) the user
speaks over it. The API then stops the response where it is and ends it. The replay does
the same (:class:`~rtreplay.player.Player` decides when; this module says what): it
leaves out the rest of the response's recorded frames and sends, for what the client
actually received, the events the API ends a cancelled response with
(:func:`synthesise`):

- per content part begun and not finished: ``response.output_audio.done`` and
  ``response.output_audio_transcript.done`` (audio) or ``response.output_text.done``
  (text), then ``response.content_part.done``; per function call begun,
  ``response.function_call_arguments.done`` with the arguments sent so far;
- per output item begun and not finished: ``response.output_item.done`` with status
  ``incomplete``, then ``conversation.item.done`` (GA);
- ``response.done`` with status ``cancelled`` and ``status_details`` ``{"type":
  "cancelled", "reason": "client_cancelled"}`` (``"turn_detected"`` for speech).

Each is built from the recording's own event of that kind for that response when it has
one (same fields, same IDs, its ``event_id``), with the text, transcript and arguments
replaced by those the client received; otherwise in the shape the recordings show (beta
names for a beta session). ``response.done`` takes the recorded ``response.created``'s
response object (or the recorded ``response.done``'s, with its usage). A truncate is
answered with ``conversation.item.truncated`` carrying the client's ``audio_end_ms``, a
clear with ``output_audio_buffer.cleared``, a cancel when nothing plays with the API's
``response_cancel_not_active`` error.

Sources: the order and shapes are those of ``cassettes/interruption.jsonl`` (a recorded
``client_cancelled`` interruption) and PROTOCOL.md 2.5 (server VAD: ``speech_started``
then ``response.done`` cancelled with ``turn_detected``); ``status_details.reason`` values
from the API reference (PROTOCOL.md 2.5, CHANGES.md).
"""

from __future__ import annotations

import copy
import json
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from .faults import error_body
from .protocol import audio_length

if TYPE_CHECKING:
    from ._index import IndexedConnection, ServerFrame

__all__ = [
    "CANCEL",
    "CLEAR",
    "INTERRUPTING",
    "SPEECH_STARTED",
    "TRUNCATE",
    "ResponseSpan",
    "Sent",
    "cancel_not_active",
    "cleared",
    "response_spans",
    "speech_frames",
    "synthesise",
    "truncated",
    "vad_interrupts",
]

CANCEL = "response.cancel"
TRUNCATE = "conversation.item.truncate"
CLEAR = "output_audio_buffer.clear"
#: The client events that may interrupt a response.
INTERRUPTING = frozenset({CANCEL, TRUNCATE, CLEAR})
SPEECH_STARTED = "input_audio_buffer.speech_started"
_CREATED, _DONE = "response.created", "response.done"

TEXT_DELTAS = frozenset({"response.output_text.delta", "response.text.delta"})
TRANSCRIPT_DELTAS = frozenset(
    {"response.output_audio_transcript.delta", "response.audio_transcript.delta"}
)
AUDIO_DELTAS = frozenset({"response.output_audio.delta", "response.audio.delta"})
ARGUMENT_DELTAS = frozenset({"response.function_call_arguments.delta"})

#: Event and content type names of the two protocols (PROTOCOL.md 1.5).
_NAMES = {
    "ga": {
        "text": "response.output_text.done",
        "audio": "response.output_audio.done",
        "transcript": "response.output_audio_transcript.done",
        "audio_content": "output_audio",
        "text_content": "output_text",
    },
    "beta": {
        "text": "response.text.done",
        "audio": "response.audio.done",
        "transcript": "response.audio_transcript.done",
        "audio_content": "audio",
        "text_content": "text",
    },
}

Read = Callable[[Sequence["ServerFrame"]], Iterator[tuple["ServerFrame", bytes]]]

_decode = msgspec.json.Decoder()


class _Audio(msgspec.Struct):
    """An audio delta without its audio decoded: the base64 text is kept raw."""

    type: str
    item_id: str | None = None
    content_index: int = 0
    response_id: str | None = None
    delta: msgspec.Raw = msgspec.Raw(b'""')


_audio_view = msgspec.json.Decoder(_Audio)


def decode(frame: ServerFrame, data: bytes) -> Any:
    """A server frame as the interruption needs it: audio deltas with their audio as a size."""
    if frame.type in AUDIO_DELTAS:
        try:
            view = _audio_view.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return {
            "type": view.type,
            "item_id": view.item_id,
            "content_index": view.content_index,
            "response_id": view.response_id,
            "audio_bytes": audio_length(bytes(view.delta)[1:-1].decode("ascii", "replace")),
        }
    try:
        return _decode.decode(data)
    except msgspec.DecodeError:
        return None


# -- what a recorded connection holds ---------------------------------------------------------


@dataclass
class ResponseSpan:
    """A recorded response: its ID, and the positions of its ``response.created`` and
    ``response.done`` among the connection's server frames (``done`` ``None`` when the
    recording ends first)."""

    id: str
    created: int
    done: int | None = None


_spans: weakref.WeakKeyDictionary[IndexedConnection, list[ResponseSpan]] = weakref.WeakKeyDictionary()
_speech: weakref.WeakKeyDictionary[IndexedConnection, list[int]] = weakref.WeakKeyDictionary()
_vad: weakref.WeakKeyDictionary[IndexedConnection, bool] = weakref.WeakKeyDictionary()


def response_spans(connection: IndexedConnection, read: Read) -> list[ResponseSpan]:
    """The recorded responses of a connection, in order (read once, then remembered)."""
    spans = _spans.get(connection)
    if spans is not None:
        return spans
    frames = [f for f in connection.server if f.type in (_CREATED, _DONE)]
    spans = []
    by_id: dict[str, ResponseSpan] = {}
    for frame, data in read(frames):
        event = decode(frame, data)
        response = event.get("response") if isinstance(event, dict) else None
        rid = response.get("id") if isinstance(response, dict) else None
        if not isinstance(rid, str):
            continue
        if frame.type == _CREATED:
            span = ResponseSpan(rid, frame.index)
            spans.append(span)
            by_id[rid] = span
        elif rid in by_id and by_id[rid].done is None:
            by_id[rid].done = frame.index
    _spans[connection] = spans
    return spans


def speech_frames(connection: IndexedConnection) -> list[int]:
    """The positions of the recorded ``input_audio_buffer.speech_started`` frames."""
    found = _speech.get(connection)
    if found is None:
        found = [f.index for f in connection.server if f.type == SPEECH_STARTED]
        _speech[connection] = found
    return found


def _turn_detection(session: Any) -> Any:
    """A session object's turn detection: GA ``audio.input.turn_detection``, beta
    ``turn_detection``; ``...`` when it says nothing about it."""
    if not isinstance(session, dict):
        return ...
    if "turn_detection" in session:
        return session["turn_detection"]
    audio = session.get("audio")
    audio_input = audio.get("input") if isinstance(audio, dict) else None
    if isinstance(audio_input, dict) and "turn_detection" in audio_input:
        return audio_input["turn_detection"]
    return ...


def vad_interrupts(connection: IndexedConnection, read: Read) -> bool:
    """Whether the recorded session's server VAD cancels a response the user speaks over.

    Its turn detection (the last one a client ``session.update`` set, else the server's
    ``session.created``) must be ``server_vad`` or ``semantic_vad`` with
    ``interrupt_response`` not ``false`` (the API's default is ``true``).
    """
    known = _vad.get(connection)
    if known is not None:
        return known
    setting: Any = ...
    for c in connection.clients:
        if c.type in ("session.update", "transcription_session.update") and isinstance(c.event, dict):
            found = _turn_detection(c.event.get("session"))
            if found is not ...:
                setting = found
    if setting is ...:
        created = [f for f in connection.server if f.type == "session.created"][:1]
        for frame, data in read(created):
            event = decode(frame, data)
            if isinstance(event, dict):
                setting = _turn_detection(event.get("session"))
    answer = (
        isinstance(setting, dict)
        and setting.get("type") in ("server_vad", "semantic_vad")
        and setting.get("interrupt_response") is not False
    )
    _vad[connection] = answer
    return answer


# -- what the client received of a response ------------------------------------------------------


@dataclass
class _Part:
    kind: str  # "audio" or "text"
    text: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    audio_bytes: int = 0


@dataclass
class _Item:
    output_index: int
    item: dict[str, Any]
    previous_item_id: Any = None
    in_conversation: bool = False
    parts: dict[int, _Part] = field(default_factory=dict)
    arguments: list[str] = field(default_factory=list)


@dataclass
class Sent:
    """What the client received of one response, from its events in order (:meth:`add`)."""

    response_id: str
    response: dict[str, Any] | None = None  # the response object of response.created
    items: dict[str, _Item] = field(default_factory=dict)
    done: set[tuple[str, str | None, int | None]] = field(default_factory=set)
    deltas: int = 0

    def add(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if not isinstance(kind, str):
            return
        item_id = event.get("item_id")
        if kind == _CREATED and isinstance(event.get("response"), dict):
            self.response = event["response"]
        elif kind == "response.output_item.added" and isinstance(event.get("item"), dict):
            item = event["item"]
            if isinstance(item.get("id"), str):
                index = event.get("output_index")
                self.items[item["id"]] = _Item(index if isinstance(index, int) else len(self.items), item)
        elif kind in ("conversation.item.added", "conversation.item.created") and isinstance(event.get("item"), dict):
            entry = self.items.get(event["item"].get("id"))
            if entry is not None:
                entry.previous_item_id = event.get("previous_item_id")
                entry.in_conversation = kind == "conversation.item.added"
        elif kind == "response.content_part.added" and isinstance(item_id, str) and item_id in self.items:
            part = event.get("part")
            ptype = part.get("type") if isinstance(part, dict) else None
            index = event.get("content_index")
            self.items[item_id].parts[index if isinstance(index, int) else 0] = _Part(
                "audio" if ptype in ("audio", "output_audio") else "text"
            )
        elif kind.endswith(".delta"):
            self.deltas += 1
            entry = self.items.get(item_id) if isinstance(item_id, str) else None
            if entry is None:
                return
            if kind in ARGUMENT_DELTAS:
                entry.arguments.append(_text(event.get("delta")))
                return
            index = event.get("content_index")
            part = entry.parts.setdefault(index if isinstance(index, int) else 0, _Part("text"))
            if kind in TEXT_DELTAS:
                part.text.append(_text(event.get("delta")))
            elif kind in TRANSCRIPT_DELTAS:
                part.kind = "audio"
                part.transcript.append(_text(event.get("delta")))
            elif kind in AUDIO_DELTAS:
                part.kind = "audio"
                size = event.get("audio_bytes")
                part.audio_bytes += size if isinstance(size, int) else 0
        elif kind.endswith(".done"):
            index = event.get("content_index")
            if item_id is None and isinstance(event.get("item"), dict):
                item_id = event["item"].get("id")
            self.done.add((kind, item_id if isinstance(item_id, str) else None, index if isinstance(index, int) else None))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# -- what the API sends ------------------------------------------------------------------------------


def synthesise(
    sent: Sent,
    templates: Iterable[Any],
    reason: str,
    *,
    protocol: str = "ga",
    number: Callable[[], int],
) -> list[dict[str, Any]]:
    """The events that end an interrupted response, for what the client received of it.

    ``sent`` is what it received; ``templates`` the recording's events of that response
    it did not receive (decoded), whose shapes the synthesised events take; ``reason``
    ``"client_cancelled"`` or ``"turn_detected"``; ``protocol`` ``"ga"`` or ``"beta"``;
    ``number`` numbers the ``event_id`` of events made from scratch. Pure.
    """
    names = _NAMES["beta" if protocol == "beta" else "ga"]
    by_key: dict[tuple[str, str | None, int | None], dict[str, Any]] = {}
    recorded_done: dict[str, Any] | None = None
    for event in templates:
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            continue
        kind = event["type"]
        if kind == _DONE:
            recorded_done = event
            continue
        item_id = event.get("item_id")
        if item_id is None and isinstance(event.get("item"), dict):
            item_id = event["item"].get("id")
        index = event.get("content_index")
        by_key.setdefault((kind, item_id, index if isinstance(index, int) else None), event)
    rid = sent.response_id
    out: list[dict[str, Any]] = []

    def emit(
        kind: str,
        item_id: str | None,
        index: int | None,
        fields: dict[str, Any],
        patch: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any] | None:
        if (kind, item_id, index) in sent.done:
            return None
        template = by_key.get((kind, item_id, index))
        if template is not None:
            event = copy.deepcopy(template)
            if patch is not None:
                patch(event)
        else:
            event = {"type": kind, "event_id": f"event_rtreplay_{number()}", **fields}
        out.append(event)
        return event

    output: list[dict[str, Any]] = []
    for item_id, entry in sorted(sent.items.items(), key=lambda kv: kv[1].output_index):
        base = {"response_id": rid, "item_id": item_id, "output_index": entry.output_index}
        contents: list[dict[str, Any]] = []
        for index, part in sorted(entry.parts.items()):
            at = {**base, "content_index": index}
            transcript, text = "".join(part.transcript), "".join(part.text)
            if part.kind == "audio":
                emit(names["audio"], item_id, index, at)
                emit(names["transcript"], item_id, index, {**at, "transcript": transcript},
                     _setting("transcript", transcript))
                shown = {"type": "audio", "transcript": transcript}
                contents.append({"type": names["audio_content"], "transcript": transcript})
            else:
                emit(names["text"], item_id, index, {**at, "text": text}, _setting("text", text))
                shown = {"type": "text", "text": text}
                contents.append({"type": names["text_content"], "text": text})
            emit("response.content_part.done", item_id, index, {**at, "part": shown},
                 _merging("part", shown))
        item = dict(entry.item)
        finished = ("response.output_item.done", item_id, None) in sent.done
        item["status"] = "completed" if finished else "incomplete"
        if item.get("type") == "function_call":
            arguments = "".join(entry.arguments)
            item["arguments"] = arguments
            fields = {**base, "call_id": item.get("call_id"), "name": item.get("name"), "arguments": arguments}
            emit("response.function_call_arguments.done", item_id, None, fields,
                 _setting("arguments", arguments))
        elif contents or "content" in item:
            item["content"] = contents

        def patch_item(event: dict[str, Any], done: dict[str, Any] = item) -> None:
            recorded = event.get("item")
            if isinstance(recorded, dict):
                merged = {**recorded, **{k: v for k, v in done.items() if k in ("status", "content", "arguments")}}
                if isinstance(recorded.get("content"), list) and "content" in done:
                    merged["content"] = [
                        {**(old if isinstance(old, dict) else {}), **new}
                        for old, new in zip(recorded["content"], done["content"], strict=False)
                    ] or done["content"]
                event["item"] = merged
            else:
                event["item"] = done

        emitted = emit("response.output_item.done", item_id, None,
                       {"response_id": rid, "output_index": entry.output_index, "item": item}, patch_item)
        if protocol != "beta" and (entry.in_conversation or ("conversation.item.done", item_id, None) in by_key):
            emit("conversation.item.done", item_id, None,
                 {"previous_item_id": entry.previous_item_id, "item": item}, patch_item)
        output.append(emitted["item"] if emitted is not None and isinstance(emitted.get("item"), dict) else item)
    details = {"type": "cancelled", "reason": reason}
    if recorded_done is not None and isinstance(recorded_done.get("response"), dict):
        done = copy.deepcopy(recorded_done)
        response = done["response"]
    else:
        response = copy.deepcopy(sent.response) if sent.response is not None else {"id": rid, "object": "realtime.response"}
        done = {"type": _DONE, "event_id": f"event_rtreplay_{number()}", "response": response}
    response.update({"status": "cancelled", "status_details": details, "output": output})
    out.append(done)
    return out


def _setting(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def patch(event: dict[str, Any]) -> None:
        event[key] = value

    return patch


def _merging(key: str, value: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def patch(event: dict[str, Any]) -> None:
        old = event.get(key)
        event[key] = {**(old if isinstance(old, dict) else {}), **value}

    return patch


def truncated(event_id: str, item_id: Any, content_index: Any, audio_end_ms: Any) -> dict[str, Any]:
    """``conversation.item.truncated`` for a client's truncate (its own ``audio_end_ms``)."""
    return {
        "type": "conversation.item.truncated",
        "event_id": event_id,
        "item_id": item_id,
        "content_index": content_index,
        "audio_end_ms": audio_end_ms,
    }


def cleared(event_id: str, response_id: str | None) -> dict[str, Any]:
    """``output_audio_buffer.cleared`` for a client's ``output_audio_buffer.clear``."""
    return {"type": "output_audio_buffer.cleared", "event_id": event_id, "response_id": response_id}


def cancel_not_active(event_id: str, client_event_id: Any) -> dict[str, Any]:
    """The API's answer to a ``response.cancel`` when no response is in progress."""
    body = dict(error_body("response_cancel_not_active"))
    body["event_id"] = client_event_id if isinstance(client_event_id, str) else None
    return {"type": "error", "event_id": event_id, "error": body}


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
