"""What rtreplay knows of the Realtime API, in one place: endpoints, causes, echoed IDs, audio.

Everything else in rtreplay treats events as opaque JSON; the facts it needs about the
protocol live here, grouped in a :class:`Profile` per endpoint, plain data that the
recorder, the replay and ``rtreplay validate`` read. :func:`profile_for` chooses one from a
request's path and query:

- :data:`REALTIME` (named ``conversation``): ``/v1/realtime`` (GA and beta), Azure
  OpenAI's ``/openai/realtime``, ``/openai/v1/realtime`` and
  ``/openai/deployments/<name>/realtime``;
- :data:`SIDEBAND`: the same paths with ``?call_id=``, a control socket attached to a SIP
  or WebRTC call (no audio travels on it; the call's audio events arrive unprompted);
- :data:`TRANSLATION`: ``/v1/realtime/translations``, live speech translation: client
  audio in ``session.input_audio_buffer.append``, ``session.close`` answered by
  ``session.closed``, translated transcript and audio streamed as the audio comes, no
  ``response.create``;
- :data:`VOICE_LIVE`: Azure Voice Live, ``/voice-live/realtime?api-version=...&model=...``:
  the conversation events (with the beta names) plus Azure's own (avatar, animation,
  word timestamps) and session options (``input_audio_sampling_rate``);
- :data:`GENERIC`: any other path with a ``realtime`` segment: recorded and replayed in
  recorded order (every server event waits for every client event recorded before it), no
  audio stream, and a warning naming the endpoint.

Sources: the OpenAI Realtime API reference and openai/openai-openapi (``RealtimeClientEvent*``,
``RealtimeServerEvent*``, ``RealtimeTranslation*``), Azure's VoiceLive 2025-10-01 spec
(Azure/azure-rest-api-specs, ``specification/ai/data-plane/VoiceLive``), and the recordings
in ``cassettes/``.

**Causes.** Most server events answer a client event: ``session.updated`` follows
``session.update``, ``response.created`` follows ``response.create``... A replay releases
a recorded server event once its *cause* has arrived rather than once every client event
recorded before it has, so a client that sends in a different (but legal) order still
gets its answers. :class:`CauseTracker` walks a recorded connection in order and gives
each server event a :class:`Requirement`:

- an **answer** (:attr:`Profile.answers`) needs the earliest client event of the types it
  answers that is still unanswered (the server handles client events in order);
- an ``error`` needs the client event whose ``event_id`` it names, or, naming none, the
  earliest client event still unanswered;
- an event of a response (``response_id``, or ``response.id``) follows that response's
  cause; an event of an item (``item_id``, ``item.id``) follows the event that
  introduced the item; once a ``response.cancel`` was recorded for a response, its
  remaining events follow the cancel;
- a ``response.created`` with no ``response.create`` to answer follows the last
  ``input_audio_buffer.committed`` (server VAD with ``create_response``);
- ``rate_limits.updated`` follows the response it reports on;
- parallel tool calls: the ``response.created`` that answers a ``response.create`` also
  waits for every ``function_call_output`` the client sent since the previous response
  (in any order: a client may send them back as its tools finish);
- an answer that names the item a client created (its ``item.id`` or ``item.call_id``)
  answers that client event;
- the greeting (``session.created``, beta ``conversation.created``,
  :attr:`Profile.on_connect`) needs nothing: the server sends it on connect, unprompted,
  though a client that does not wait for it may have been recorded sending first;
- everything else (voice activity events, which the audio causes, events nobody can tell
  apart) keeps today's rule: it needs **every** client event recorded before it (its
  *position*).

Sources: the OpenAI Realtime API reference (client and server events), and the
recordings in ``cassettes/`` (see docs/replay.md, "Which client event releases which
server event").

**Audio arithmetic.** Input audio is base64 in ``input_audio_buffer.append``; its
decoded length says how much audio it holds: 24 kHz 16-bit mono PCM (``pcm16``,
``audio/pcm``) is 48 bytes per millisecond, G.711 (``g711_ulaw``/``audio/pcmu``,
``g711_alaw``/``audio/pcma``, 8 kHz) 8 bytes per millisecond. Azure Voice Live also takes
PCM16 at 8 or 16 kHz (``input_audio_sampling_rate``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import msgspec

__all__ = [
    "AUDIO_APPEND",
    "CONVERSATION",
    "ECHOED_IDS",
    "G711_ALAW",
    "G711_ULAW",
    "GENERIC",
    "METADATA_PATHS",
    "PCM16",
    "PROFILES",
    "REALTIME",
    "SIDEBAND",
    "STREAMS",
    "TIME_FIELDS",
    "TRANSLATION",
    "VOICE_LIVE",
    "AudioFormat",
    "CauseTracker",
    "Profile",
    "Requirement",
    "ServerInfo",
    "Stream",
    "audio_format",
    "audio_length",
    "echoed_ids",
    "has_realtime_segment",
    "profile_for",
    "profile_for_path",
    "server_info",
    "voice_live_audio_format",
]

AUDIO_APPEND = "input_audio_buffer.append"

# -- audio --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioFormat:
    """An input audio format: its names on the wire and how many bytes a second holds."""

    name: str  # the beta name: "pcm16", "g711_ulaw", "g711_alaw"
    mime: str  # the GA format type: "audio/pcm", "audio/pcmu", "audio/pcma"
    rate: int  # samples per second
    sample_bytes: int  # bytes per sample (mono)

    @property
    def bytes_per_second(self) -> int:
        return self.rate * self.sample_bytes

    def ms(self, size: int) -> float:
        """Milliseconds of audio in ``size`` decoded bytes."""
        return size * 1000 / self.bytes_per_second

    def size(self, seconds: float) -> int:
        """Decoded bytes of ``seconds`` of audio (rounded down to whole samples)."""
        samples = int(seconds * self.rate)
        return samples * self.sample_bytes


PCM16 = AudioFormat("pcm16", "audio/pcm", 24_000, 2)
G711_ULAW = AudioFormat("g711_ulaw", "audio/pcmu", 8_000, 1)
G711_ALAW = AudioFormat("g711_alaw", "audio/pcma", 8_000, 1)
_FORMATS = {f.name: f for f in (PCM16, G711_ULAW, G711_ALAW)} | {
    f.mime: f for f in (PCM16, G711_ULAW, G711_ALAW)
}


def audio_format(session: Any) -> AudioFormat | None:
    """The input audio format a session object declares, or ``None`` if it declares none.

    GA: ``session.audio.input.format`` (``{"type": "audio/pcm", "rate": 24000}``); beta:
    ``session.input_audio_format`` (``"pcm16"``). Only 24 kHz is allowed for PCM.
    """
    if not isinstance(session, dict):
        return None
    beta = session.get("input_audio_format")
    if isinstance(beta, str):
        return _FORMATS.get(beta)
    audio = session.get("audio")
    audio_input = audio.get("input") if isinstance(audio, dict) else None
    fmt = audio_input.get("format") if isinstance(audio_input, dict) else None
    if isinstance(fmt, dict) and isinstance(fmt.get("type"), str):
        return _FORMATS.get(fmt["type"])
    return None


def voice_live_audio_format(session: Any) -> AudioFormat | None:
    """The input format of an Azure Voice Live session: :func:`audio_format`, at its
    ``input_audio_sampling_rate`` (PCM16 at 8, 16 or 24 kHz; VoiceLive spec, ``RequestSession``)."""
    fmt = audio_format(session)
    if not isinstance(session, dict):
        return fmt
    rate = session.get("input_audio_sampling_rate")
    if isinstance(rate, int) and not isinstance(rate, bool) and rate > 0:
        base = fmt or PCM16  # ``input_audio_format`` defaults to pcm16
        if base.sample_bytes == 2:
            return base if rate == base.rate else AudioFormat(base.name, base.mime, rate, 2)
    return fmt


def audio_length(b64: str) -> int:
    """Decoded length of a base64 string, computed from its length (no decoding)."""
    n = len(b64)
    if n == 0:
        return 0
    pad = 2 if b64.endswith("==") else 1 if b64.endswith("=") else 0
    full, rest = divmod(n, 4)
    return full * 3 - pad + (rest * 3) // 4


# -- streamed content -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """A server event that streams one piece of content in deltas, and the event that ends it.

    ``delta`` is the delta event's type, ``field`` its field holding the piece; the pieces
    of one stream are those with the same values of the ``key`` fields that they carry.
    ``content`` is ``"text"`` (the pieces are strings, concatenated) or ``"audio"`` (each
    piece is the base64 of audio bytes, which are concatenated). ``done`` is the event that
    closes the stream and ``done_field`` its field holding the whole content (``None``:
    it holds none, or no such event exists).
    """

    delta: str
    content: Literal["text", "audio"]
    done: str | None = None
    done_field: str | None = None
    field: str = "delta"
    key: tuple[str, ...] = ("response_id", "item_id", "output_index", "content_index", "call_id")


#: The streamed content of every endpoint, by delta type: GA and beta names (PROTOCOL.md 1.5
#: and 2.2), input transcription (2.2), MCP call arguments (CHANGES.md), the translation
#: endpoint's transcripts and audio (CHANGES.md, ``RealtimeTranslation*``; they have no
#: ``done`` event). The ``done`` events repeat the whole text (PROTOCOL.md 2.2:
#: ``response.output_text.done`` has ``text``, the transcript ``transcript``, the
#: arguments ``arguments``); ``response.output_audio.done`` repeats nothing.
STREAMS: Mapping[str, Stream] = {
    s.delta: s
    for s in (
        Stream("response.output_text.delta", "text", "response.output_text.done", "text"),
        Stream("response.output_audio.delta", "audio", "response.output_audio.done"),
        Stream(
            "response.output_audio_transcript.delta",
            "text",
            "response.output_audio_transcript.done",
            "transcript",
        ),
        Stream(
            "response.function_call_arguments.delta",
            "text",
            "response.function_call_arguments.done",
            "arguments",
        ),
        Stream(
            "response.mcp_call_arguments.delta", "text", "response.mcp_call_arguments.done", "arguments"
        ),
        Stream(
            "conversation.item.input_audio_transcription.delta",
            "text",
            "conversation.item.input_audio_transcription.completed",
            "transcript",
        ),
        Stream("response.text.delta", "text", "response.text.done", "text"),
        Stream("response.audio.delta", "audio", "response.audio.done"),
        Stream("response.audio_transcript.delta", "text", "response.audio_transcript.done", "transcript"),
        Stream("session.input_transcript.delta", "text"),
        Stream("session.output_transcript.delta", "text"),
        Stream("session.output_audio.delta", "audio"),
    )
}


# -- IDs a client echoes --------------------------------------------------------------------

#: Fields where a client copies back an ID it got from the server (or chose itself), by
#: event type. ``*`` stands for every element of a list (or value of an object).
#: ``response.metadata`` holds the client's own correlation IDs, which the server echoes in
#: ``response.created`` and ``response.done`` (PROTOCOL.md, server events).
ECHOED_IDS: dict[str, tuple[str, ...]] = {
    "conversation.item.truncate": ("item_id",),
    "conversation.item.retrieve": ("item_id",),
    "conversation.item.delete": ("item_id",),
    # An MCP approval answers the server's ``mcp_approval_request`` item by its ID.
    "conversation.item.create": (
        "previous_item_id",
        "item.id",
        "item.call_id",
        "item.approval_request_id",
    ),
    "response.cancel": ("response_id",),
    "response.create": (
        "response.input.*.id",
        "response.input.*.call_id",
        "response.input.*.approval_request_id",
        "response.metadata.*",
    ),
}
#: Echoed fields whose values only ``response`` objects carry back (not IDs to replace anywhere).
METADATA_PATHS = frozenset({"response.metadata.*"})

#: Server fields that hold a time (unix seconds), which a replay may move to replay time:
#: a session's ``expires_at``, a client secret's ``expires_at``, a SIP event's ``received_at``.
TIME_FIELDS: tuple[str, ...] = ("expires_at", "received_at", "created_at")


def _path_values(value: Any, parts: Sequence[str]) -> Iterator[Any]:
    if not parts:
        yield value
        return
    head, tail = parts[0], parts[1:]
    if head == "*":
        if isinstance(value, list):
            for item in value:
                yield from _path_values(item, tail)
        elif isinstance(value, dict):
            for item in value.values():
                yield from _path_values(item, tail)
    elif isinstance(value, dict) and head in value:
        yield from _path_values(value[head], tail)


def echoed_ids(event: Any, table: Mapping[str, tuple[str, ...]] = ECHOED_IDS) -> tuple[str, ...]:
    """The ID values a client event carries in the fields where clients echo IDs."""
    if not isinstance(event, dict):
        return ()
    kind = event.get("type")
    paths = table.get(kind) if isinstance(kind, str) else None
    if not paths:
        return ()
    found: list[str] = []
    for path in paths:
        for v in _path_values(event, path.split(".")):
            if isinstance(v, str) and v:
                found.append(v)
    return tuple(found)


# -- what a server event says about itself ----------------------------------------------------


class _ItemView(msgspec.Struct):
    id: object = None
    call_id: object = None


class _ResponseView(msgspec.Struct):
    id: object = None
    conversation_id: object = None



class _ErrorView(msgspec.Struct):
    event_id: object = None


class _ServerView(msgspec.Struct):
    """What the replay needs of a server event: its type, the IDs it carries, its session."""

    type: object = None
    item_id: object = None
    response_id: object = None
    call_id: object = None
    item: _ItemView | None = None
    response: _ResponseView | None = None
    error: _ErrorView | None = None
    session: object = None


_server_view = msgspec.json.Decoder(_ServerView)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A server event as the cause table reads it (no payload beyond this)."""

    type: str | None = None
    ids: tuple[str, ...] = ()  # every ID it carries (item_id, response_id, call_id, session.id...)
    response_id: str | None = None  # ``response_id``, or ``response.id``
    item_id: str | None = None  # ``item_id``, or ``item.id``
    error_event_id: str | None = None  # an ``error``'s ``error.event_id``
    session: dict[str, Any] | None = None  # a session event's session object


_NOTHING = ServerInfo()


def server_info(raw: bytes | memoryview | str) -> ServerInfo:
    """Read a server event's type and IDs (``ServerInfo()`` for anything that is not one)."""
    try:
        view = _server_view.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return _NOTHING
    ids: list[str] = []
    for v in (view.item_id, view.response_id, view.call_id):
        if isinstance(v, str):
            ids.append(v)
    item_id = view.item_id if isinstance(view.item_id, str) else None
    response_id = view.response_id if isinstance(view.response_id, str) else None
    if view.item is not None:
        for v in (view.item.id, view.item.call_id):
            if isinstance(v, str):
                ids.append(v)
        if item_id is None and isinstance(view.item.id, str):
            item_id = view.item.id
    if view.response is not None:
        if isinstance(view.response.id, str):
            ids.append(view.response.id)
            response_id = response_id or view.response.id
        if isinstance(view.response.conversation_id, str):
            ids.append(view.response.conversation_id)
    if isinstance(view.session, dict) and isinstance(view.session.get("id"), str):
        ids.append(view.session["id"])
    error_event_id = None
    if view.error is not None and isinstance(view.error.event_id, str):
        error_event_id = view.error.event_id
    kind = view.type if isinstance(view.type, str) else None
    return ServerInfo(
        kind,
        tuple(ids),
        response_id,
        item_id,
        error_event_id,
        view.session if isinstance(view.session, dict) else None,
    )


# -- endpoints --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What rtreplay knows of one Realtime endpoint (see the module docstring).

    Plain data, read by the recorder, the replay and ``rtreplay validate``:

    - ``name`` (``"conversation"``, ``"translation"``...) and ``title`` (for messages);
    - ``paths``: the request paths it serves, without query; a ``{...}`` segment stands for
      any one segment (``/openai/deployments/{deployment}/realtime``); ``query``: a query
      parameter a request must carry to be this endpoint's (``call_id`` for the sideband);
    - ``handshake_keys``: query parameters that choose the session (compared on replay);
    - ``audio_append``: the client event that carries input audio, matched as one stream
      by its amount (``None``: no audio stream, every event matched on its own);
      ``audio_format`` reads a session object's input format, ``input_format`` holds
      until a session declares one;
    - the *cause table*: ``answers`` maps a server event type to the client event types it
      answers; ``response_*`` name the events of a response's life; ``item_events`` are
      the server events about a conversation item (they follow the event that introduced
      the item); ``audio_events`` come from the input audio (voice activity, streamed
      translation); ``per_response`` events follow the latest response;
      ``tool_output`` is the item type a client answers a function call with;
    - ``unprompted``: server events that come from the server's own clock or the call's
      audio, not from a client event (they keep their recorded position);
      ``asynchronous``: server events the server sends on a schedule of their own beside
      the events around them (input transcription, rate limits): a correct client takes
      them at any place their cause allows (:mod:`rtreplay.strategies` moves them there);
      ``on_connect``: the server's greeting, which nothing causes (released on connect);
    - ``echoed_ids``: per client event type, the fields where a client copies back an ID;
    - ``time_fields``: server fields holding unix times, moved to replay time on replay;
    - ``client_secrets``: the HTTP path (``POST``) that mints ephemeral keys for it;
    - ``schema``: which reduced event schema ``rtreplay validate`` checks it against
      (``None``: none); ``warning``: said whenever a connection uses this profile.
    """

    name: str
    title: str
    paths: tuple[str, ...]
    handshake_keys: tuple[str, ...]
    audio_append: str | None
    answers: Mapping[str, tuple[str, ...]]
    echoed_ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    query: str | None = None
    response_created: str | None = None
    response_done: str | None = None
    response_cancel: str | None = None
    audio_committed: str | None = None
    item_events: frozenset[str] = frozenset()
    audio_events: frozenset[str] = frozenset()
    per_response: frozenset[str] = frozenset()
    unprompted: frozenset[str] = frozenset()
    asynchronous: frozenset[str] = frozenset()
    tool_output: str | None = None
    on_connect: frozenset[str] = frozenset()
    error: str = "error"
    input_format: AudioFormat = PCM16  # until a session says otherwise
    audio_format: Callable[[Any], AudioFormat | None] = audio_format
    time_fields: tuple[str, ...] = TIME_FIELDS
    client_secrets: str | None = None
    schema: str | None = None
    warning: str | None = None

    def serves(self, path: str, query: Mapping[str, str] | None = None) -> bool:
        """Whether a request path (without its query) and query are this endpoint's."""
        if self.query is not None and (query is None or self.query not in query):
            return False
        segments = _segments(path)
        return any(_path_matches(segments, pattern) for pattern in self._patterns)

    @property
    def _patterns(self) -> tuple[tuple[str, ...], ...]:
        return tuple(_segments(p) for p in self.paths)

    def causes(self) -> CauseTracker:
        """A fresh tracker for one recorded connection."""
        return CauseTracker(self)

    def variant(self, **changes: Any) -> Profile:
        """A copy of this profile with some fields changed (a new endpoint like this one)."""
        return replace(self, **changes)


def _segments(path: str) -> tuple[str, ...]:
    return tuple(s for s in path.split("/") if s)


def _path_matches(segments: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if len(segments) != len(pattern):
        return False
    return all(p == s or (p.startswith("{") and p.endswith("}")) for s, p in zip(segments, pattern, strict=True))


def has_realtime_segment(path: str) -> bool:
    """Whether a path has a ``realtime`` segment: what any Realtime endpoint's path has."""
    return "realtime" in _segments(path)


_CONVERSATION_ANSWERS: Mapping[str, tuple[str, ...]] = {
    "session.updated": ("session.update",),
    "transcription_session.updated": ("transcription_session.update",),
    "conversation.item.created": ("conversation.item.create",),
    "conversation.item.added": ("conversation.item.create",),
    "conversation.item.done": ("conversation.item.create",),
    "conversation.item.retrieved": ("conversation.item.retrieve",),
    "conversation.item.truncated": ("conversation.item.truncate",),
    "conversation.item.deleted": ("conversation.item.delete",),
    "input_audio_buffer.committed": ("input_audio_buffer.commit",),
    "input_audio_buffer.cleared": ("input_audio_buffer.clear",),
    "output_audio_buffer.cleared": ("output_audio_buffer.clear",),
    "response.created": ("response.create",),
}

#: The conversation endpoint: OpenAI's ``/v1/realtime`` (GA and beta) and Azure OpenAI's.
REALTIME = Profile(
    name="conversation",
    title="the Realtime conversation endpoint",
    paths=(
        "/v1/realtime",
        "/realtime",
        "/openai/realtime",
        "/openai/v1/realtime",
        "/openai/deployments/{deployment}/realtime",
    ),
    handshake_keys=("model", "deployment", "intent", "call_id"),
    audio_append=AUDIO_APPEND,
    answers=_CONVERSATION_ANSWERS,
    echoed_ids=ECHOED_IDS,
    response_created="response.created",
    response_done="response.done",
    response_cancel="response.cancel",
    audio_committed="input_audio_buffer.committed",
    item_events=frozenset(
        {"conversation.item.created", "conversation.item.added", "conversation.item.done"}
    ),
    audio_events=frozenset(
        {
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.timeout_triggered",
            "input_audio_buffer.dtmf_event_received",
        }
    ),
    per_response=frozenset({"rate_limits.updated"}),
    unprompted=frozenset(
        {"session.created", "input_audio_buffer.timeout_triggered", "rate_limits.updated"}
    ),
    # PROTOCOL.md 2.5: input transcription "arrive[s] asynchronously, possibly after the
    # response has started"; rate_limits.updated comes "at the beginning of a Response"
    # (the spec) or around its end (captures).
    asynchronous=frozenset(
        {
            "rate_limits.updated",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.completed",
            "conversation.item.input_audio_transcription.failed",
            "conversation.item.input_audio_transcription.segment",
        }
    ),
    tool_output="function_call_output",
    # PROTOCOL.md 2.5: "session.created arrives first, unprompted, before any client frame";
    # clients do not wait for it, so their first frames may be recorded before it.
    on_connect=frozenset({"session.created", "conversation.created"}),
    client_secrets="/v1/realtime/client_secrets",
    schema="conversation",
)
CONVERSATION = REALTIME

#: A sideband connection (``?call_id=``): the control socket of a SIP or WebRTC call. The
#: call's audio never travels on it, so voice activity, the output audio buffer's events and
#: DTMF digits arrive unprompted (``input_audio_buffer.dtmf_event_received`` has no
#: ``event_id``).
SIDEBAND = REALTIME.variant(
    name="sideband",
    title="a Realtime sideband connection (call_id)",
    query="call_id",
    unprompted=REALTIME.unprompted
    | REALTIME.audio_events
    | {"output_audio_buffer.started", "output_audio_buffer.stopped"},
)

#: Live speech translation (``/v1/realtime/translations``, ``RealtimeTranslation*`` events).
TRANSLATION = Profile(
    name="translation",
    title="the Realtime translation endpoint",
    paths=("/v1/realtime/translations", "/realtime/translations", "/openai/v1/realtime/translations"),
    handshake_keys=("model",),
    audio_append="session.input_audio_buffer.append",
    answers={"session.updated": ("session.update",), "session.closed": ("session.close",)},
    # Translated transcript and audio come as the input audio does: released by its amount.
    audio_events=frozenset(
        {
            "session.input_transcript.delta",
            "session.output_transcript.delta",
            "session.output_audio.delta",
        }
    ),
    unprompted=frozenset({"session.created"}),
    client_secrets="/v1/realtime/translations/client_secrets",
    schema="translation",
)

_VOICE_LIVE_EVENTS = frozenset(
    {
        # Azure extensions of a response (VoiceLive spec, ServerEventResponse*): they carry
        # their response_id, so they follow the response like its other events.
        "response.animation_blendshapes.delta",
        "response.animation_blendshapes.done",
        "response.animation_viseme.delta",
        "response.animation_viseme.done",
        "response.audio_timestamp.delta",
        "response.audio_timestamp.done",
    }
)

#: Azure Voice Live (``/voice-live/realtime?api-version=...&model=...``): the conversation
#: events, with the beta event names, plus Azure's avatar and animation events and its own
#: session options (``input_audio_sampling_rate``: PCM16 at 8, 16 or 24 kHz).
VOICE_LIVE = REALTIME.variant(
    name="voice-live",
    title="Azure Voice Live",
    paths=("/voice-live/realtime",),
    handshake_keys=("model", "agent_id", "project_id"),
    answers={**_CONVERSATION_ANSWERS, "session.avatar.connecting": ("session.avatar.connect",)},
    audio_format=voice_live_audio_format,
    client_secrets=None,
    schema="voice-live",
)

#: Any other path with a ``realtime`` segment: an endpoint rtreplay does not know yet.
GENERIC = Profile(
    name="generic",
    title="an unknown Realtime endpoint",
    paths=(),
    handshake_keys=("model",),
    audio_append=None,
    answers={},
    warning=(
        "{path} is not an endpoint rtreplay knows: its events are recorded and replayed in "
        "recorded order (every server event waits for every client event recorded before "
        "it), with no audio stream and no echoed IDs; see docs/replay.md, 'Endpoints'"
    ),
)

#: The known endpoints, in the order :func:`profile_for` tries them.
PROFILES: tuple[Profile, ...] = (SIDEBAND, REALTIME, TRANSLATION, VOICE_LIVE)


def profile_for(path: str, query: Mapping[str, str] | None = None) -> Profile | None:
    """The profile of the endpoint a request names: a known one, :data:`GENERIC` for another
    path with a ``realtime`` segment, ``None`` for a path that is no Realtime endpoint."""
    for profile in PROFILES:
        if profile.serves(path, query):
            return profile
    return GENERIC if has_realtime_segment(path) else None


def profile_for_path(path: str) -> Profile | None:
    """The known profile whose paths include ``path`` (query not considered), if any."""
    for profile in PROFILES:
        if profile.query is None and profile.serves(path):
            return profile
    return None


# -- causes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a recorded server event waits for before the replay may send it.

    ``after`` is a recorded client event (0-based, in the connection's order; ``-1``:
    nothing). ``every``: every client event up to ``after`` must have been received (the
    event's position in the recording); otherwise ``after`` alone, its cause. ``also``:
    more client events that must have been received, in any order (the
    ``function_call_output`` items a response waits for). ``rule`` says which line of the
    cause table decided, for reports.
    """

    after: int = -1
    every: bool = True
    rule: str = "position"
    also: tuple[int, ...] = ()

    def later(self, other: Requirement) -> Requirement:
        """The stronger of two requirements (the one that waits for the later event)."""
        if other.after > self.after or (other.after == self.after and other.every):
            stronger, weaker = other, self
        else:
            stronger, weaker = self, other
        if weaker.also and not set(weaker.also) <= set(stronger.also):
            return replace(stronger, also=tuple(sorted({*stronger.also, *weaker.also})))
        return stronger

    def waits_for(self) -> tuple[int, ...]:
        """Every client event this requirement names (``after`` and ``also``)."""
        return (*self.also, self.after) if self.after >= 0 else self.also


_CONNECT = Requirement(-1, True, "connect")


class _Response:
    __slots__ = ("cancel", "cause")

    def __init__(self, cause: Requirement) -> None:
        self.cause = cause
        self.cancel: int | None = None  # the response.cancel recorded for it


class CauseTracker:
    """Gives each server event of one recorded connection its :class:`Requirement`.

    Feed it the connection's events in recorded order: :meth:`client` for each client
    event (decoded, or ``None`` when it is not JSON), :meth:`server` for each server event,
    which returns the requirement.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._last_client = -1
        # Client events still waiting for an answer, by type, and all of them in order.
        self._pending: dict[str, deque[int]] = {}
        self._unanswered: dict[int, str | None] = {}
        self._by_event_id: dict[str, int] = {}
        self._responses: dict[str, _Response] = {}
        # What each item's events follow: a requirement, or the response that made it.
        self._items: dict[str, Requirement | _Response] = {}
        self._last_response: _Response | None = None
        self._open_responses: list[str] = []  # created, not yet done (newest last)
        self._committed: Requirement | None = None  # the last input_audio_buffer.committed
        # Tool outputs the client sent since the last response began (parallel tool calls).
        self._outputs: list[int] = []
        # Client events that created an item, by the item's ID or call ID.
        self._created: dict[str, int] = {}

    def copy(self) -> CauseTracker:
        """An independent tracker standing where this one stands, so that another order of
        the events that follow can be tried (:mod:`rtreplay.strategies` tries where an
        independent event may go); cheaper than ``copy.deepcopy``."""
        new = CauseTracker(self.profile)
        responses: dict[int, _Response] = {}

        def same(r: _Response) -> _Response:
            found = responses.get(id(r))
            if found is None:
                found = responses[id(r)] = _Response(r.cause)
                found.cancel = r.cancel
            return found

        new._last_client = self._last_client
        new._pending = {k: deque(v) for k, v in self._pending.items()}
        new._unanswered = dict(self._unanswered)
        new._by_event_id = dict(self._by_event_id)
        new._responses = {k: same(r) for k, r in self._responses.items()}
        new._items = {k: same(v) if isinstance(v, _Response) else v for k, v in self._items.items()}
        new._last_response = same(self._last_response) if self._last_response is not None else None
        new._open_responses = list(self._open_responses)
        new._committed = self._committed
        new._outputs = list(self._outputs)
        new._created = dict(self._created)
        return new

    def client(self, index: int, event: Any) -> None:
        """A recorded client event (``index``: its position among the client events)."""
        self._last_client = index
        kind = event.get("type") if isinstance(event, dict) else None
        kind = kind if isinstance(kind, str) else None
        if kind is not None and kind == self.profile.audio_append:
            return  # audio is answered by nothing: voice activity follows its position
        event_id = event.get("event_id") if isinstance(event, dict) else None
        if isinstance(event_id, str):
            self._by_event_id[event_id] = index
        self._unanswered[index] = kind
        if kind is not None:
            self._pending.setdefault(kind, deque()).append(index)
        item = event.get("item") if isinstance(event, dict) else None
        if isinstance(item, dict):
            for key in ("id", "call_id"):
                value = item.get(key)
                if isinstance(value, str) and value:
                    self._created.setdefault(value, index)
            if self.profile.tool_output is not None and item.get("type") == self.profile.tool_output:
                self._outputs.append(index)
        if kind is not None and kind == self.profile.response_cancel:
            target = event.get("response_id") if isinstance(event, dict) else None
            if not isinstance(target, str) or target not in self._responses:
                target = self._open_responses[-1] if self._open_responses else None
            if target is not None:
                self._responses[target].cancel = index

    def _answer(self, index: int) -> None:
        kind = self._unanswered.pop(index, None)
        if kind is not None:
            queue = self._pending.get(kind)
            if queue and index in queue:
                queue.remove(index)

    def _earliest(self, kinds: Sequence[str]) -> int | None:
        best: int | None = None
        for kind in kinds:
            queue = self._pending.get(kind)
            if queue and (best is None or queue[0] < best):
                best = queue[0]
        return best

    @staticmethod
    def _follow(owner: Requirement | _Response) -> Requirement:
        if isinstance(owner, Requirement):
            return owner
        if owner.cancel is not None:
            return owner.cause.later(Requirement(owner.cancel, False, "answers response.cancel"))
        return owner.cause

    def server(self, info: ServerInfo) -> Requirement:
        """The requirement of the next recorded server event."""
        p = self.profile
        kind = info.type
        position = Requirement(self._last_client, True) if self._last_client >= 0 else _CONNECT
        if kind is None:
            return position
        if kind == p.error:
            return self._error(info, position)
        if kind in p.on_connect:
            return _CONNECT
        if kind in p.audio_events:
            return position
        item = self._items.get(info.item_id) if info.item_id is not None else None
        if kind in p.item_events and item is not None:
            return self._follow(item)
        owner: Requirement | _Response
        if kind in p.answers:
            owner = req = self._root(kind, info, position)
        elif info.response_id is not None and info.response_id in self._responses:
            owner = response = self._responses[info.response_id]
            req = self._follow(response)
            if kind == p.response_done:
                self._done(info.response_id, response)
        elif item is not None:
            owner, req = item, self._follow(item)
        elif kind in p.per_response and self._last_response is not None:
            req = self._follow(self._last_response)
            owner = self._last_response
        else:
            owner = req = position
        if info.item_id is not None and item is None:
            self._items[info.item_id] = owner
        return req

    def _named(self, kinds: Sequence[str], info: ServerInfo) -> int | None:
        """The unanswered client event of ``kinds`` that created an item this event names."""
        for v in info.ids:
            index = self._created.get(v)
            if index is not None and self._unanswered.get(index, "") in kinds:
                return index
        return None

    def _root(self, kind: str, info: ServerInfo, position: Requirement) -> Requirement:
        p = self.profile
        kinds = p.answers[kind]
        index = self._named(kinds, info) if info.ids else None
        if index is None:
            index = self._earliest(kinds)
        if index is not None:
            self._answer(index)
            req = Requirement(index, False, f"answers {kinds[0]}")
        elif kind == p.response_created and self._committed is not None:
            # Server VAD (create_response) created it after committing the audio.
            req, self._committed = self._committed, None
        else:
            req = position
        if kind == p.response_created and self._outputs:
            # Parallel tool calls: the response waits for every tool output, in any order.
            waiting = tuple(i for i in self._outputs if i != req.after)
            self._outputs = []
            if waiting:
                rule = f"{req.rule}, after every {p.tool_output}"
                req = replace(req, rule=rule, also=waiting)
        if kind == p.audio_committed:
            self._committed = req
        if kind == p.response_created and info.response_id is not None:
            response = _Response(req)
            self._responses[info.response_id] = response
            self._last_response = response
            self._open_responses.append(info.response_id)
        return req

    def _done(self, response_id: str, response: _Response) -> None:
        if response_id in self._open_responses:
            self._open_responses.remove(response_id)
        if response.cancel is not None:
            self._answer(response.cancel)

    def _error(self, info: ServerInfo, position: Requirement) -> Requirement:
        named = info.error_event_id
        if named is not None and named in self._by_event_id:
            index = self._by_event_id[named]
            self._answer(index)
            return Requirement(index, False, "error.event_id")
        if self._unanswered:
            # The server answers client events in order: an error naming no event is the
            # answer to the earliest one still unanswered.
            index = min(self._unanswered)
            self._answer(index)
            return Requirement(index, False, "error (in order)")
        return position
