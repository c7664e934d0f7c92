"""Beta cassettes rewritten in the GA shapes, for teams moving their tests to a GA client.

The API no longer accepts beta clients (``OpenAI-Beta: realtime=v1`` gets an ``error``
with code ``beta_api_shape_disabled`` and close 4000), so a beta cassette replays but can
never be re-recorded. :func:`migrate_cassette` rewrites its beta connections as a GA
client would have recorded them (PROTOCOL.md 1.5, "GA vs beta differences"):

- event names: ``response.text.*`` -> ``response.output_text.*``, ``response.audio.*`` ->
  ``response.output_audio.*``, ``response.audio_transcript.*`` ->
  ``response.output_audio_transcript.*``, ``transcription_session.*`` -> ``session.*``;
  ``conversation.item.created`` -> ``conversation.item.added``, followed by the
  ``conversation.item.done`` GA sends once the item is complete (at once for an item
  created whole, after its ``response.output_item.done`` for one a response builds);
- session fields: ``type: "realtime"`` (``"transcription"``), ``modalities`` ->
  ``output_modalities`` (one of ``text`` or ``audio``), the flat audio fields
  (``input_audio_format``, ``voice``, ``turn_detection``...) -> ``audio.input`` and
  ``audio.output`` (formats as ``{"type": "audio/pcm", "rate": 24000}``),
  ``max_response_output_tokens`` -> ``max_output_tokens``; ``temperature`` and
  ``client_secret``, which GA sessions lack, dropped;
- responses likewise (``modalities``, ``voice``, ``output_audio_format``), and items: an
  assistant's ``text``/``audio`` content becomes ``output_text``/``output_audio``;
- the handshake: protocol ``ga``, no ``OpenAI-Beta`` header.

GA connections are left as they are. No I/O here: ``rtreplay migrate`` reads and writes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .cassette import Cassette, Connection, Frame

__all__ = ["Migration", "migrate_cassette", "migrate_event", "migrate_session"]

_RENAMED = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "transcription_session.update": "session.update",
    "transcription_session.created": "session.created",
    "transcription_session.updated": "session.updated",
    "conversation.item.created": "conversation.item.added",
}
_FORMATS = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
# Beta session fields -> where GA keeps them: (section, key) under ``audio``.
_AUDIO_FIELDS = {
    "input_audio_format": ("input", "format"),
    "input_audio_transcription": ("input", "transcription"),
    "input_audio_noise_reduction": ("input", "noise_reduction"),
    "turn_detection": ("input", "turn_detection"),
    "output_audio_format": ("output", "format"),
    "voice": ("output", "voice"),
    "speed": ("output", "speed"),
}
_DROPPED = ("temperature", "client_secret")
_encoder = msgspec.json.Encoder()


def _modalities(value: Any) -> Any:
    """GA takes one output modality: audio (its transcript comes with it) or text."""
    if isinstance(value, list):
        return ["audio"] if "audio" in value else ["text"] if "text" in value else value
    return value


def migrate_session(session: Any, kind: str = "realtime") -> Any:
    """A beta session object (or ``session.update`` payload) in the GA shape."""
    if not isinstance(session, dict):
        return session
    out: dict[str, Any] = {}
    if "type" not in session:
        out["type"] = kind
    audio: dict[str, dict[str, Any]] = {}
    for key, value in session.items():
        if key in _DROPPED:
            continue
        if key in _AUDIO_FIELDS:
            section, name = _AUDIO_FIELDS[key]
            if name == "format":
                value = _FORMATS.get(value, value) if isinstance(value, str) else value
            audio.setdefault(section, {})[name] = value
        elif key == "modalities":
            out["output_modalities"] = _modalities(value)
        elif key == "max_response_output_tokens":
            out["max_output_tokens"] = value
        elif key == "audio" and isinstance(value, dict):
            for section, fields in value.items():
                if isinstance(fields, dict):
                    audio.setdefault(section, {}).update(fields)
        else:
            out[key] = value
    if audio:
        out["audio"] = audio
    return out


def _response(response: Any) -> Any:
    """A beta response object (or ``response.create`` parameters) in the GA shape."""
    if not isinstance(response, dict):
        return response
    out: dict[str, Any] = {}
    audio: dict[str, Any] = {}
    for key, value in response.items():
        if key == "temperature":
            continue
        if key == "modalities":
            out["output_modalities"] = _modalities(value)
        elif key == "voice":
            audio["voice"] = value
        elif key == "output_audio_format":
            audio["format"] = _FORMATS.get(value, value) if isinstance(value, str) else value
        elif key == "max_response_output_tokens":
            out["max_output_tokens"] = value
        elif key in ("output", "input") and isinstance(value, list):
            out[key] = [_item(i) for i in value]
        else:
            out[key] = value
    if audio:
        out["audio"] = {"output": audio}
    return out


def _item(item: Any) -> Any:
    """A beta conversation item in the GA shape: no ``object``, an assistant's content as
    ``output_text``/``output_audio``."""
    if not isinstance(item, dict):
        return item
    out = {k: v for k, v in item.items() if k != "object"}
    content = out.get("content")
    if out.get("role") == "assistant" and isinstance(content, list):
        out["content"] = [_assistant_part(part) for part in content]
    return out


def _assistant_part(part: Any) -> Any:
    if isinstance(part, dict) and part.get("type") in ("text", "audio"):
        return {**part, "type": f"output_{part['type']}"}
    return part


def migrate_event(event: Any) -> Any:
    """One beta event (client or server) in the GA shape; not an event: unchanged.

    ``conversation.item.created`` becomes ``conversation.item.added``; the
    ``conversation.item.done`` that GA also sends is :func:`migrate_cassette`'s to add.
    """
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return event
    kind = event["type"]
    out = dict(event)
    out["type"] = _RENAMED.get(kind, kind)
    if "session" in out:
        out["session"] = migrate_session(
            out["session"], "transcription" if kind.startswith("transcription_session.") else "realtime"
        )
    if "response" in out:
        out["response"] = _response(out["response"])
    if "item" in out:
        out["item"] = _item(out["item"])
    return out


@dataclass
class Migration:
    """What :func:`migrate_cassette` did: the GA cassette, and counts for the user."""

    cassette: Cassette
    connections: int = 0  # beta connections migrated
    renamed: int = 0  # events whose type changed
    reshaped: int = 0  # events whose fields changed
    added: dict[str, int] = field(default_factory=dict)  # events GA sends that beta did not


def migrate_cassette(cassette: Cassette) -> Migration:
    """A copy of ``cassette`` with every beta connection in the GA shapes (see the module
    docstring); GA connections and the HTTP exchanges are kept as they are."""
    result = Migration(Cassette(copy.copy(cassette.header), [], cassette.path, list(cassette.warnings),
                                list(cassette.exchanges)))
    for conn in cassette.connections:
        if conn.open.protocol != "beta":
            result.cassette.connections.append(conn)
            continue
        result.connections += 1
        headers = {k: v for k, v in conn.open.headers.items() if k.lower() != "openai-beta"}
        opened = msgspec.structs.replace(conn.open, protocol="ga", headers=headers)
        frames = list(_frames(conn, result))
        result.cassette.connections.append(Connection(opened, frames, conn.close, conn.reject))
    return result


def _frames(conn: Connection, result: Migration) -> Iterator[Frame]:
    # Items a response is building: their conversation.item.done comes after their
    # response.output_item.done, as GA sends it.
    building: dict[str, dict[str, Any]] = {}
    for frame in conn.frames:
        event = frame.event() if frame.json is not msgspec.UNSET else None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            yield frame
            continue
        migrated = migrate_event(event)
        if migrated["type"] != event["type"]:
            result.renamed += 1
        elif migrated != event:
            result.reshaped += 1
        yield frame if migrated == event else _frame(frame, migrated)
        kind = event["type"]
        if kind == "conversation.item.created":
            item = migrated.get("item")
            if isinstance(item, dict) and item.get("status") == "in_progress" and isinstance(item.get("id"), str):
                building[item["id"]] = migrated
            else:
                yield _frame(frame, _done(migrated, item), result)
        elif kind == "response.output_item.done":
            item = migrated.get("item")
            item_id = item.get("id") if isinstance(item, dict) else None
            added = building.pop(item_id, None) if isinstance(item_id, str) else None
            if added is not None:
                yield _frame(frame, _done(added, item), result)


def _done(added: dict[str, Any], item: Any) -> dict[str, Any]:
    event_id = added.get("event_id")
    done: dict[str, Any] = {"type": "conversation.item.done"}
    if isinstance(event_id, str):
        done["event_id"] = f"{event_id}_done"
    if "previous_item_id" in added:
        done["previous_item_id"] = added["previous_item_id"]
    done["item"] = item
    return done


def _frame(frame: Frame, event: dict[str, Any], result: Migration | None = None) -> Frame:
    if result is not None:
        result.added[event["type"]] = result.added.get(event["type"], 0) + 1
    return Frame(frame.conn, frame.t, frame.dir, json=msgspec.Raw(_encoder.encode(event)))
