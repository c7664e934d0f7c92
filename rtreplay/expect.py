"""What a driven server should send: the recorded server side as expectations, and the
server-side match policy. No I/O here.

When rtreplay plays the *client* side of a recording against a server under test
(:mod:`rtreplay.driver`), what comes back is compared with the recorded server side. A
live server never sends the same bytes twice, so the comparison is looser than the
replay's client-side matching, in four ways:

- **Streams.** The deltas of one text, transcript, audio or argument stream (every event
  type ending in ``.delta``, with the same ``response_id``, ``item_id``, ``output_index``
  and ``content_index``) are one :class:`Expectation`: a server may cut its text into
  more or fewer pieces. At ``exact`` strictness the joined text (the decoded audio) is
  compared.
- **Order.** Events are matched to the earliest recorded event of their type still
  expected whose cause (the client event it answers, :mod:`rtreplay.protocol`'s cause
  table) was sent, whatever came in between: causally independent events (a
  ``rate_limits.updated``, an input transcription, an item's events against its
  response's) may come in any order.
- **IDs.** IDs the server hands out (``item_id``, ``response_id``, ``call_id``...) are
  learned as events are matched, recorded ID to live ID, so that the client events that
  echo them can be rewritten, and an event whose IDs contradict what was learned is
  matched to another recorded event, or reported.
- **Volatile fields** (:data:`VOLATILE`: event and object IDs, timestamps, usage, rate
  limits, obfuscation padding; PROTOCOL.md section 2.3) are never compared by value.

A :class:`ServerPolicy` sets the **strictness**: ``"type"`` compares event types only;
``"structure"`` also the fields each event has and their JSON types (a field added,
removed, or changed from a string to a number; inside a volatile field, such as
``usage``, only its own type); ``"exact"`` also every value outside the
volatile fields (a live model never says the same words twice: use it for a relay in
front of a replay).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from .match import MISSING, Difference, diff
from .protocol import Requirement

__all__ = [
    "STRICTNESS",
    "VOLATILE",
    "Expectation",
    "ServerPolicy",
    "StreamKey",
    "Strictness",
    "event_roles",
    "is_stream",
    "json_kind",
    "shape_differences",
]

Strictness = Literal["type", "structure", "exact"]
STRICTNESS: tuple[Strictness, ...] = ("type", "structure", "exact")

#: Fields never compared by value, wherever they are (PROTOCOL.md section 2.3: what varies
#: from run to run). Besides these, every field named ``id`` or ending in ``_id`` is an
#: ID: compared through the IDs learned, never by value.
VOLATILE = frozenset(
    {
        "event_id",
        "expires_at",
        "created_at",
        "received_at",
        "usage",
        "rate_limits",
        "obfuscation",
        "logprobs",
        "audio_start_ms",
        "audio_end_ms",
    }
)


def is_stream(kind: str | None) -> bool:
    """Whether events of this type are pieces of a stream (every ``*.delta`` of the API)."""
    return kind is not None and kind.endswith(".delta")


def _is_audio_stream(kind: str) -> bool:
    return "audio" in kind and "transcript" not in kind


def _is_id_key(key: str) -> bool:
    return key == "id" or key.endswith("_id")


def json_kind(value: Any) -> str:
    """The JSON type of a decoded value: object, array, string, number, boolean, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


#: The roles an ID plays in a server event, and where each is read.
ROLES = ("response_id", "item_id", "call_id")


def event_roles(event: Any) -> dict[str, str]:
    """The IDs a decoded server event carries, by role: ``response_id`` (or
    ``response.id``), ``item_id`` (or ``item.id``), ``call_id`` (or ``item.call_id``)."""
    out: dict[str, str] = {}
    if not isinstance(event, dict):
        return out
    response = event.get("response")
    item = event.get("item")
    for role, own, nested, key in (
        ("response_id", "response_id", response, "id"),
        ("item_id", "item_id", item, "id"),
        ("call_id", "call_id", item, "call_id"),
    ):
        value = event.get(own)
        if not isinstance(value, str) and isinstance(nested, dict):
            value = nested.get(key)
        if isinstance(value, str) and value:
            out[role] = value
    return out


class _DeltaView(msgspec.Struct):
    """What the driver reads of a delta without decoding its payload."""

    type: Any = None
    response_id: Any = None
    item_id: Any = None
    call_id: Any = None
    output_index: Any = None
    content_index: Any = None


_delta_view = msgspec.json.Decoder(_DeltaView)
_any = msgspec.json.Decoder()

#: A stream's identity: its type, its IDs (by role, recorded or live), its indexes.
StreamKey = tuple[str, str | None, str | None, str | None, Any, Any]


def delta_key(raw: bytes | str) -> tuple[StreamKey, dict[str, str]] | None:
    """A delta's stream key and its IDs by role, read without decoding its payload."""
    try:
        v = _delta_view.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not isinstance(v.type, str):
        return None
    roles = {
        role: value
        for role, value in (
            ("response_id", v.response_id),
            ("item_id", v.item_id),
            ("call_id", v.call_id),
        )
        if isinstance(value, str) and value
    }
    key: StreamKey = (
        v.type,
        roles.get("response_id"),
        roles.get("item_id"),
        roles.get("call_id"),
        v.output_index,
        v.content_index,
    )
    return key, roles


def _masked(value: Any, ignore: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: _masked(v, ignore)
            for k, v in value.items()
            if k not in ignore and not (_is_id_key(k) and (isinstance(v, str) or v is None))
        }
    if isinstance(value, list):
        return [_masked(v, ignore) for v in value]
    return value


def shape_differences(
    expected: Any, got: Any, path: str = "", ignore: frozenset[str] = frozenset()
) -> list[Difference]:
    """How two events differ in structure: fields present on one side only, and fields
    whose JSON type differs (``null`` matches any type: fields are nullable run to run).
    List elements are compared pairwise, as far as the shorter list goes. Inside a field
    named in ``ignore`` (the volatile ones: ``usage``...) only its own type counts."""
    out: list[Difference] = []
    _shape(expected, got, path, out, ignore)
    return out


def _shape(expected: Any, got: Any, path: str, out: list[Difference], ignore: frozenset[str] = frozenset()) -> None:
    if expected is None or got is None:
        return
    ek, gk = json_kind(expected), json_kind(got)
    if ek != gk:
        out.append(Difference(path, expected, got, f"was {ek}, now {gk}"))
        return
    if isinstance(expected, dict):
        for key, value in expected.items():
            sub = f"{path}.{key}" if path else key
            if key in got:
                if key in ignore:
                    if value is not None and got[key] is not None and json_kind(value) != json_kind(got[key]):
                        out.append(Difference(sub, value, got[key], f"was {json_kind(value)}, now {json_kind(got[key])}"))
                    continue
                _shape(value, got[key], sub, out, ignore)
            else:
                out.append(Difference(sub, value, MISSING, f"field removed (was {json_kind(value)})"))
        for key, value in got.items():
            if key not in expected:
                sub = f"{path}.{key}" if path else key
                out.append(Difference(sub, MISSING, value, f"field added ({json_kind(value)})"))
    elif isinstance(expected, list):
        for i in range(min(len(expected), len(got))):
            _shape(expected[i], got[i], f"{path}[{i}]", out, ignore)


class ServerPolicy:
    """How the events a driven server sends are compared with the recorded ones.

    ``strictness``: ``"type"``, ``"structure"`` or ``"exact"`` (see the module docstring).
    ``ignore``: more field names never compared by value (besides :data:`VOLATILE` and
    every ID field), wherever they appear. Raises :class:`ValueError` for an unknown
    strictness.
    """

    def __init__(self, strictness: Strictness = "type", *, ignore: Iterable[str] = ()) -> None:
        if strictness not in STRICTNESS:
            raise ValueError(
                f"strictness must be 'type', 'structure' or 'exact', not {strictness!r}"
            )
        if isinstance(ignore, str):
            raise ValueError("ignore is a list of field names, not one string")
        self.strictness: Strictness = strictness
        self.ignore = VOLATILE | frozenset(ignore)

    @property
    def name(self) -> str:
        return self.strictness

    def __repr__(self) -> str:
        return f"ServerPolicy({self.strictness!r})"

    def masked(self, event: Any) -> Any:
        """The event without its volatile and ID fields, as the report shows it."""
        return _masked(event, self.ignore)

    def compare(self, expected: Any, got: Any) -> list[Difference]:
        """The differences between a recorded event and a received one of the same type."""
        if self.strictness == "type":
            return []
        if self.strictness == "structure":
            return shape_differences(expected, got, ignore=self.ignore)
        return diff(self.masked(expected), self.masked(got))


def resolve_server_policy(match: str | ServerPolicy) -> ServerPolicy:
    """The policy of strictness ``"type"``, ``"structure"`` or ``"exact"``, or the one given."""
    if isinstance(match, ServerPolicy):
        return match
    return ServerPolicy(match)  # type: ignore[arg-type]  # checked in the constructor


# -- the recorded server side ------------------------------------------------------------


@dataclass(eq=False)
class Expectation:
    """One recorded server event the driver waits for, or one recorded stream of deltas.

    ``index`` is its position among the connection's expectations; ``frame`` the recorded
    server frame (0-based among the connection's server frames) it starts at, ``count``
    how many frames it stands for (a stream: its deltas); ``line`` the cassette line of
    that frame; ``requirement`` what it waits for (:class:`~rtreplay.protocol.Requirement`);
    ``t`` the recorded time of its first frame (seconds since the connection opened);
    ``turn`` the conversation turn (1 + the responses done before it); ``roles`` its
    recorded IDs by role; ``response`` the recorded response it belongs to; ``blocking``:
    a client event recorded after it waits for it (``rate_limits.updated`` and input
    transcription, which come whenever the server likes, do not block).
    """

    index: int
    frame: int
    type: str | None
    label: str
    requirement: Requirement
    t: float
    turn: int
    line: int
    event: Any = None
    raw: bytes = b""
    stream: bool = False
    count: int = 1
    t_last: float = 0.0
    roles: dict[str, str] = field(default_factory=dict)
    blocking: bool = True
    key: StreamKey | None = None
    pieces: list[bytes] = field(default_factory=list)  # a stream's delta payloads

    @property
    def response(self) -> str | None:
        return self.roles.get("response_id")

    def describe(self) -> str:
        if self.stream:
            return f"{self.label} x{self.count}" if self.count > 1 else self.label
        return self.label

    def joined(self) -> tuple[str, bytes]:
        """A stream's content: the joined text, or the digest of its decoded audio."""
        text = []
        digest = hashlib.blake2b(digest_size=16)
        audio = self.type is not None and _is_audio_stream(self.type)
        for raw in self.pieces:
            delta = _any.decode(raw).get("delta")
            if not isinstance(delta, str):
                continue
            if audio:
                feed_audio(digest, delta)
            else:
                text.append(delta)
        return "".join(text), digest.digest()


def feed_audio(digest: Any, b64: str) -> None:
    """Add a base64 audio delta's decoded bytes to a digest (its text when not base64)."""
    try:
        digest.update(base64.b64decode(b64))
    except (binascii.Error, ValueError):
        digest.update(b64.encode())


def stream_content(kind: str, deltas: Iterator[str]) -> tuple[str, bytes]:
    """What :meth:`Expectation.joined` computes, for deltas received live."""
    digest = hashlib.blake2b(digest_size=16)
    if _is_audio_stream(kind):
        for d in deltas:
            feed_audio(digest, d)
        return "", digest.digest()
    return "".join(deltas), digest.digest()


def non_blocking(kind: str | None, per_response: Iterable[str]) -> bool:
    """Server events a client never waits for: per-response bookkeeping (rate limits) and
    the transcription of the user's audio, which arrives whenever it is ready."""
    if kind is None:
        return False
    return kind in per_response or kind.startswith("conversation.item.input_audio_transcription.")


def role_conflict(
    roles: Mapping[str, str],
    recorded: Mapping[str, str],
    live_to_recorded: Mapping[str, str],
    recorded_to_live: Mapping[str, str],
) -> str | None:
    """Why live IDs ``roles`` cannot stand for an event with ``recorded`` IDs, or ``None``."""
    for role, live in roles.items():
        rec = recorded.get(role)
        if rec is None:
            continue
        known = live_to_recorded.get(live)
        if known is not None:
            if known != rec:
                return f"{role} {live!r} stands for recorded {known!r}, not {rec!r}"
            continue
        bound = recorded_to_live.get(rec)
        if bound is not None and bound != live:
            return f"recorded {role} {rec!r} was {bound!r} on this server, not {live!r}"
    return None
