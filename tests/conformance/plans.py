"""What a client does in a conformance session, as data every driver (Python or Node) follows.

A *plan* is a list of connections, each ``{"query": {...}, "beta": bool, "steps": [...]}``.
A step is one of:

- ``{"send": EVENT}``: send this client event. A string value ``"${TYPE:dotted.path}"`` is
  replaced by that field of the last received event of ``TYPE`` (``call_id`` of a function
  call, ``item_id`` of the reply to truncate...), and ``"${played_ms}"`` by how many
  milliseconds of output audio were received so far (what a player would have played).
- ``{"until": TYPE}``: receive events until one of ``TYPE`` arrives.
- ``{"until_closed": true}``: receive until the server closes the connection.

After its steps, a connection is closed by the client (unless the server closed it). Every
driver records the events it *read*, in order, so a plan's last ``until`` is where the
comparison between a recording and its replay ends, whatever the server sent after it.

:class:`PlanMachine` runs a plan without I/O: drivers feed it received events and carry
out the actions it returns, so the plan logic is the same for every client.
``tests/node/driver.mjs`` is the same machine in JavaScript.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rtreplay.codec import load

from ..conftest import CASSETTES

Plan = list[dict[str, Any]]
_REF = re.compile(r"^\$\{([^}:]+)(?::([^}]*))?\}$")


class PlanError(AssertionError):
    """The session did not go as the plan expected (the message says where)."""


@dataclass
class Send:
    event: dict[str, Any]


@dataclass
class Close:
    pass


@dataclass
class PlanMachine:
    """One connection's plan, driven by received events; no I/O."""

    steps: list[dict[str, Any]]
    index: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    audio_bytes: int = 0
    finished: bool = False

    def start(self) -> list[Send | Close]:
        """The actions to take as soon as the connection is open."""
        return self._advance()

    @property
    def waiting_for_close(self) -> bool:
        return not self.finished and self.index < len(self.steps) and "until_closed" in self.steps[self.index]

    def receive(self, event: dict[str, Any]) -> list[Send | Close]:
        """Take one received event; return what to do next."""
        if self.finished:
            return []
        self.received.append(event)
        kind = event.get("type")
        if isinstance(kind, str):
            self.last[kind] = event
            if kind in ("response.output_audio.delta", "response.audio.delta"):
                self.audio_bytes += len(base64.b64decode(event.get("delta", "")))
        step = self.steps[self.index] if self.index < len(self.steps) else {}
        if step.get("until") == kind:
            self.index += 1
            return self._advance()
        return []

    def closed(self) -> None:
        """The server closed the connection."""
        if self.finished:
            return
        if self.waiting_for_close:
            self.index += 1
            if self.index < len(self.steps):
                raise PlanError(f"the server closed the connection before step {self.index}: {self.steps[self.index]}")
            self.finished = True
            return
        step = self.steps[self.index] if self.index < len(self.steps) else None
        seen = [e.get("type") for e in self.received[-5:]]
        raise PlanError(f"the connection closed while waiting for {step}; last events: {seen}")

    def _advance(self) -> list[Send | Close]:
        actions: list[Send | Close] = []
        while self.index < len(self.steps):
            step = self.steps[self.index]
            if "send" in step:
                actions.append(Send(self.resolve(step["send"])))
                self.index += 1
            else:
                return actions
        self.finished = True
        actions.append(Close())
        return actions

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, str):
            m = _REF.match(value)
            if m:
                return self._lookup(m.group(1), m.group(2))
        return value

    def _lookup(self, kind: str, path: str | None) -> Any:
        if kind == "played_ms":
            return self.audio_bytes // 48  # 24 kHz PCM16: 48 bytes a millisecond
        if kind not in self.last:
            raise PlanError(f"the plan refers to the last {kind!r} event, but none was received")
        value: Any = self.last[kind]
        for part in (path or "").split("."):
            if part:
                value = value[int(part)] if isinstance(value, list) else value[part]
        return value


# --------------------------------------------------------------------------- building plans


def send(event: dict[str, Any]) -> dict[str, Any]:
    return {"send": event}


def until(kind: str) -> dict[str, Any]:
    return {"until": kind}


def user_text(text: str) -> dict[str, Any]:
    return send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


def connection(steps: list[dict[str, Any]], *, query: dict[str, str] | None = None, beta: bool = False) -> dict[str, Any]:
    return {"query": {"model": "gpt-realtime"} if query is None else query, "beta": beta, "steps": steps}


# Plans for recording against the scripted upstream (tests/upstream.py) and replaying it.

TEXT = [connection([
    until("session.created"),
    send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"], "instructions": "Be brief."}}),
    until("session.updated"),
    user_text("Say hello in three words."),
    send({"type": "response.create"}),
    until("response.done"),
    until("rate_limits.updated"),
])]

TOOL = [connection([
    until("session.created"),
    send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"], "tools": [
        {"type": "function", "name": "get_weather", "description": "Get the current weather for a city.",
         "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]}}),
    until("session.updated"),
    user_text("What's the weather in San Francisco?"),
    send({"type": "response.create"}),
    until("response.function_call_arguments.done"),
    until("rate_limits.updated"),
    send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "${response.function_call_arguments.done:call_id}",
        "output": '{"temp_f": 61, "sky": "fog"}'}}),
    send({"type": "response.create"}),
    until("response.done"),
    until("rate_limits.updated"),
])]

ERRORS = [connection([
    until("session.created"),
    send({"type": "response.cancel"}),
    until("error"),
    send({"type": "input_audio_buffer.commit", "event_id": "commit_1"}),
    until("error"),
    send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}),
    until("session.updated"),
    user_text("Still there?"),
    send({"type": "response.create"}),
    until("response.done"),
    until("rate_limits.updated"),
])]

BETA_TEXT = [connection([
    until("session.created"),
    send({"type": "session.update", "session": {"modalities": ["text"], "instructions": "Be brief."}}),
    until("session.updated"),
    user_text("Say hello in three words."),
    send({"type": "response.create"}),
    until("response.done"),
    until("rate_limits.updated"),
], query={"model": "gpt-4o-realtime-preview"}, beta=True)]


def _tone_chunks(loud: int, quiet: int) -> list[str]:
    """100 ms chunks the scripted upstream's VAD hears as speech, then as silence."""
    from ..upstream import pcm16_silence, pcm16_tone

    return [base64.b64encode(pcm16_tone(100)).decode()] * loud + [base64.b64encode(pcm16_silence(100)).decode()] * quiet


def audio_vad() -> Plan:
    return [connection([
        until("session.created"),
        send({"type": "session.update", "session": {"type": "realtime", "instructions": "Keep it short."}}),
        until("session.updated"),
        *[send({"type": "input_audio_buffer.append", "audio": a}) for a in _tone_chunks(5, 3)],
        until("input_audio_buffer.speech_stopped"),
        until("response.done"),
        until("rate_limits.updated"),
    ])]


# Plans whose client frames are those of the bundled cassettes (scripts/make_cassettes.py).


def _mic(name: str, conn: int = 0) -> Iterator[str]:
    """The microphone audio a bundled cassette recorded, 100 ms a chunk, in order."""
    for frame in load(CASSETTES / f"{name}.jsonl").connections[conn].client_frames():
        event = frame.event()
        if isinstance(event, dict) and event.get("type") == "input_audio_buffer.append":
            yield event["audio"]


def _mic_split(name: str, kind: str) -> tuple[list[str], list[str]]:
    """A cassette's microphone chunks before and after the first server event of ``kind``."""
    before: list[str] = []
    after: list[str] = []
    seen = False
    for frame in load(CASSETTES / f"{name}.jsonl").connections[0].frames:
        event = frame.event()
        if not isinstance(event, dict):
            continue
        if frame.dir == "server" and event.get("type") == kind:
            seen = True
        elif frame.dir == "client" and event.get("type") == "input_audio_buffer.append":
            (after if seen else before).append(event["audio"])
    return before, after


def _appends(chunks: list[str]) -> list[dict[str, Any]]:
    return [send({"type": "input_audio_buffer.append", "audio": a}) for a in chunks]


def bundled(name: str) -> Plan:
    """The plan that plays the client side of ``cassettes/<name>.jsonl``."""
    if name == "text-chat":
        return [connection([
            until("session.created"),
            send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"], "instructions": "You are a concise assistant. Answer in one sentence."}}),
            user_text("What is the capital of Australia?"),
            send({"type": "response.create"}),
            until("response.done"),
            until("rate_limits.updated"),
        ])]
    if name == "audio-vad-real":
        return [connection([
            until("session.created"),
            send({"type": "session.update", "session": {"type": "realtime", "instructions": "You are a friendly voice assistant. Keep answers short.",
                  "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}, "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}}),
            until("session.updated"),
            *_appends(list(_mic(name))),
            until("response.done"),
            until("rate_limits.updated"),
        ])]
    if name == "tool-call":
        return [connection([
            until("session.created"),
            send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"], "tools": [
                {"type": "function", "name": "get_weather", "description": "Get the current weather for a city.",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}], "tool_choice": "auto"}}),
            user_text("Do I need an umbrella in Paris today?"),
            send({"type": "response.create"}),
            until("response.function_call_arguments.done"),
            until("rate_limits.updated"),
            send({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "${response.function_call_arguments.done:call_id}",
                  "output": json.dumps({"city": "Paris", "sky": "light rain", "temp_c": 14})}}),
            send({"type": "response.create"}),
            until("response.done"),
            until("rate_limits.updated"),
        ])]
    if name == "errors-recoverable":
        return [connection([
            until("session.created"),
            send({"type": "session.update", "session": {"type": "realtime", "modalities": ["text"]}}),
            until("error"),
            send({"type": "input_audio_buffer.commit", "event_id": "commit_1"}),
            until("error"),
            send({"type": "response.cancel"}),
            until("error"),
            send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}),
            until("session.updated"),
            user_text("Give me a word that rhymes with moon."),
            send({"type": "response.create"}),
            send({"type": "response.create"}),
            until("response.done"),
            until("rate_limits.updated"),
        ])]
    if name == "interruption":
        first, second = _mic_split(name, "response.output_audio.delta")
        return [connection([
            until("session.created"),
            send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500, "interrupt_response": False}}}}}),
            until("session.updated"),
            *_appends(first),
            until("response.output_audio.delta"),
            # The user talks over the reply: the first 300 ms of speech, then barge-in.
            *_appends(second[:3]),
            until("input_audio_buffer.speech_started"),
            send({"type": "response.cancel"}),
            *_appends(second[3:]),
            until("response.done"),
            send({"type": "conversation.item.truncate", "audio_end_ms": "${played_ms}", "content_index": 0, "item_id": "${response.output_item.added:item.id}"}),
            until("conversation.item.truncated"),
            until("response.done"),
            until("rate_limits.updated"),
        ])]
    if name == "transcription":
        return [connection([
            until("session.created"),
            send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}}),
            until("session.updated"),
            *_appends(list(_mic(name))),
            until("conversation.item.input_audio_transcription.completed"),
            until("conversation.item.input_audio_transcription.completed"),
        ], query={"intent": "transcription"})]
    if name == "beta-text":
        return [connection([
            until("session.created"),
            send({"type": "session.update", "session": {"modalities": ["text"], "instructions": "Reply with a JSON object and nothing else."}}),
            until("session.updated"),
            user_text("Define the word 'pending'."),
            until("conversation.item.created"),
            send({"type": "response.create"}),
            until("response.done"),
            until("rate_limits.updated"),
        ], query={"model": "gpt-4o-realtime-preview-2025-06-03"}, beta=True)]
    if name == "reconnect":
        update = {"type": "realtime", "output_modalities": ["text"], "instructions": "You are a concise assistant."}
        question, answer = "Name a prime number between 20 and 30.", "23 is a prime number between 20 and 30."
        return [
            connection([
                until("session.created"),
                send({"type": "session.update", "session": update}),
                user_text(question),
                send({"type": "response.create"}),
                until("response.done"),
                until("error"),  # session_expired
                {"until_closed": True},
            ]),
            connection([
                until("session.created"),
                send({"type": "session.update", "session": update}),
                user_text(question),
                send({"type": "conversation.item.create", "item": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": answer}]}}),
                user_text("And the next one after that?"),
                send({"type": "response.create"}),
                until("response.done"),
                until("rate_limits.updated"),
            ]),
        ]
    if name == "text-response":  # the issue-2 sample, from the SDK probes
        return [connection([
            until("session.created"),
            send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"], "instructions": "Be brief."}}),
            until("session.updated"),
            user_text("Say hello in three words."),
            send({"type": "response.create"}),
            until("response.done"),
            until("rate_limits.updated"),
        ])]
    raise KeyError(name)


BUNDLED_FOR_PYTHON_SDK = ["text-chat", "audio-vad-real", "tool-call", "errors-recoverable", "interruption", "transcription", "reconnect", "text-response"]


def copy_plan(plan: Plan) -> Plan:
    return copy.deepcopy(plan)


def cassette_plan(path: Any) -> Plan:
    """A plan that plays a cassette's own client side back, whatever the client.

    Each recorded client event is sent as recorded (the replay hands out the recorded
    IDs, so echoed IDs line up) once every server event recorded before it has arrived.
    """
    plan: Plan = []
    for conn in load(path).connections:
        steps: list[dict[str, Any]] = []
        for frame in conn.frames:
            event = frame.event()
            if frame.dir == "client":
                steps.append(send(event if isinstance(event, dict) else {"raw": frame.payload()}))
            elif isinstance(event, dict):
                steps.append(until(event["type"]))
        if conn.close is not None and conn.close.by == "server":
            steps.append({"until_closed": True})
        query = dict(conn.open.query)
        plan.append({"query": query, "beta": conn.open.protocol == "beta", "steps": steps})
    return plan
