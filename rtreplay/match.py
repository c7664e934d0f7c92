"""Does a client event match the recorded one, and if not, why. No I/O here.

Events are compared as parsed JSON, never as bytes: SDKs differ in key order, spacing and
defaults. A :class:`MatchPolicy` says what is compared:

- ``"default"``: ``type`` and content, with ``event_id`` masked (clients make it up) and
  the IDs a client echoes back (``item_id`` in truncate/retrieve/delete,
  ``previous_item_id``, ``response_id`` in ``response.cancel``, ``call_id`` of a
  ``function_call_output``...) checked against the IDs the replay handed out; audio
  appends compared by amount of audio at each commit or other boundary;
- ``"type"``: the ``type`` only, audio not compared;
- ``"exact"``: the whole event, nothing masked; audio compared by content.

Any policy takes extra ``ignore`` paths and per-type ``rules`` (a function that decides
for one event type). :meth:`MatchPolicy.compare` returns a :class:`Verdict` listing each
:class:`Difference` with masked fields left out, which the replay report prints.
"""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .protocol import ECHOED_IDS

__all__ = [
    "MISSING",
    "AudioMode",
    "Difference",
    "IdContext",
    "MatchPolicy",
    "Rule",
    "Verdict",
    "VerdictKind",
    "format_value",
    "resolve_policy",
]

AudioMode = Literal["length", "content", "ignore"]
#: The outcome of one comparison (see :class:`Verdict`).
VerdictKind = Literal["match", "type", "content", "id", "rule"]

#: A per-type rule: ``rule(expected, got)`` returns ``True`` (match), ``False`` or a string
#: saying what differs (mismatch), or ``None`` to let the policy compare as usual. A rule
#: that raises is a mismatch of kind ``"rule"`` naming the exception and where it was raised.
Rule = Callable[[Any, Any], "bool | str | None"]


class _Missing:
    """Marks a field present on one side only."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def format_value(value: Any, limit: int = 72) -> str:
    """A value as compact JSON for a report line, long strings and containers cut short."""
    if value is MISSING:
        return "(absent)"
    if isinstance(value, str) and len(value) > limit:
        return (
            json.dumps(value[: limit - 12], ensure_ascii=False)[:-1] + f'…" ({len(value):,} chars)'
        )
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError, RecursionError):
        text = "<nested too deeply to show>" if isinstance(value, (dict, list)) else repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


@dataclass(frozen=True)
class Difference:
    """One field that differs: its path, the recorded value and the received one."""

    path: str
    expected: Any
    got: Any
    note: str = ""

    def __str__(self) -> str:
        where = self.path or "(the whole event)"
        if self.note:
            return f"{where}: {self.note}"
        if self.got is MISSING:
            return f"{where}: missing (recorded {format_value(self.expected)})"
        if self.expected is MISSING:
            return f"{where}: not in the recording (got {format_value(self.got)})"
        return f"{where}: expected {format_value(self.expected)}, got {format_value(self.got)}"


@dataclass(frozen=True)
class Verdict:
    """The outcome of comparing one received event with one recorded event.

    ``kind`` is ``"match"``, ``"type"`` (different event types), ``"content"``, ``"id"``
    (an echoed ID is not the one the replay handed out) or ``"rule"`` (a user rule said
    no). ``bindings`` are client-chosen IDs (recorded -> received) to remember if the
    event is accepted.
    """

    kind: VerdictKind
    differences: tuple[Difference, ...] = ()
    reason: str = ""
    bindings: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.kind == "match"


class IdContext(Protocol):
    """What the comparison needs to know about IDs; the player implements it."""

    def handed_out(self, recorded_id: str) -> bool:
        """Whether the replay already sent this recorded ID to the client."""

    def bound(self, recorded_id: str) -> str | None:
        """The ID the client used in place of this recorded client-chosen ID, if any."""

    def bound_to(self, received_id: str) -> str | None:
        """The recorded ID this received ID already stands for, if any."""

    def sent_as(self, recorded_id: str) -> str:
        """The ID the client was given for a recorded one (itself, unless IDs are fresh)."""

    def origin(self, received_id: str) -> str | None:
        """Where a received ID that is not the expected one came from, in words, if known
        (the recording, another connection of the replay: a stale echo)."""


class _NoIds:
    def handed_out(self, recorded_id: str) -> bool:
        return False

    def bound(self, recorded_id: str) -> str | None:
        return None

    def bound_to(self, received_id: str) -> str | None:
        return None

    def sent_as(self, recorded_id: str) -> str:
        return recorded_id

    def origin(self, received_id: str) -> str | None:
        return None


Pattern = tuple[str, ...]


@functools.lru_cache(maxsize=1024)
def _split(path: str) -> Pattern:
    return tuple(p for p in path.replace("[", ".").replace("]", "").split(".") if p)


def _strip(value: Any, patterns: list[Pattern]) -> Any:
    """A copy of ``value`` without the fields the patterns name (``*`` = any key or index)."""
    if not patterns:
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = [p[1:] for p in patterns if p[0] in (key, "*")]
            if any(not p for p in sub):
                continue
            out[key] = _strip(item, sub) if sub else item
        return out
    if isinstance(value, list):
        items: list[Any] = []
        for i, item in enumerate(value):
            sub = [p[1:] for p in patterns if p[0] in (str(i), "*")]
            # A list element named by a pattern is kept as a placeholder, so that the
            # positions of the others do not shift in the comparison.
            if any(not p for p in sub):
                items.append(None)
                continue
            items.append(_strip(item, sub) if sub else item)
        return items
    return value


def _values_at(value: Any, pattern: Pattern, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if not pattern:
        yield prefix, value
        return
    head, tail = pattern[0], pattern[1:]
    if isinstance(value, dict):
        keys = list(value) if head == "*" else [head] if head in value else []
        for k in keys:
            yield from _values_at(value[k], tail, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list):
        idx = (
            range(len(value))
            if head == "*"
            else [int(head)]
            if head.isdigit() and int(head) < len(value)
            else []
        )
        for i in idx:
            yield from _values_at(value[i], tail, f"{prefix}[{i}]")


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(a == b)


def diff(expected: Any, got: Any, path: str = "") -> list[Difference]:
    """Every difference between two JSON values, by path."""
    out: list[Difference] = []
    _diff(expected, got, path, out)
    return out


def _diff(expected: Any, got: Any, path: str, out: list[Difference]) -> None:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key, value in expected.items():
            sub = f"{path}.{key}" if path else key
            if key in got:
                _diff(value, got[key], sub, out)
            else:
                out.append(Difference(sub, value, MISSING))
        for key, value in got.items():
            if key not in expected:
                out.append(Difference(f"{path}.{key}" if path else key, MISSING, value))
    elif isinstance(expected, list) and isinstance(got, list):
        for i in range(max(len(expected), len(got))):
            sub = f"{path}[{i}]"
            if i >= len(got):
                out.append(Difference(sub, expected[i], MISSING))
            elif i >= len(expected):
                out.append(Difference(sub, MISSING, got[i]))
            else:
                _diff(expected[i], got[i], sub, out)
    elif not _same_scalar(expected, got):
        out.append(Difference(path, expected, got))


def _raised(kind: Any, exc: Exception) -> str:
    """What a rule that raised says: the exception, and the line of the rule's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"the rule for {kind} raised {type(exc).__name__}: {exc}{where}"


class MatchPolicy:
    """How received client events are compared with recorded ones.

    ``content``: compare more than the ``type``. ``mask``: paths never compared (by
    default ``event_id``). ``map_ids``: echoed IDs must be the ones the replay handed out
    (or, for IDs the client chose, the same one each time) instead of equal to the
    recording. ``ignore``: more paths to leave out, for every event (an iterable) or per
    event type (a mapping of type to paths; ``"*"`` for every type). Paths are dotted,
    ``*`` matches any key or list index (``session.tools.*.description``). ``rules``: per
    event type, a :data:`Rule` that decides instead of the comparison. ``audio``: how
    ``input_audio_buffer.append`` events are checked, as one stream: ``"length"`` (the
    amount of audio at each boundary), ``"content"`` (the bytes too) or ``"ignore"``.
    """

    def __init__(
        self,
        name: str = "custom",
        *,
        content: bool = True,
        mask: Iterable[str] = ("event_id",),
        map_ids: bool = True,
        ignore: Iterable[str] | Mapping[str, Iterable[str]] = (),
        rules: Mapping[str, Rule] | None = None,
        audio: AudioMode = "length",
    ) -> None:
        if audio not in ("length", "content", "ignore"):
            raise ValueError(f"audio must be 'length', 'content' or 'ignore', not {audio!r}")
        self.name = name
        self.content = content
        self.mask = tuple(mask)
        self.map_ids = map_ids
        if isinstance(ignore, Mapping):
            self.ignore: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in ignore.items()}
        else:
            self.ignore = {"*": tuple(ignore)}
        self.rules: dict[str, Rule] = dict(rules or {})
        self.audio: AudioMode = audio

    # -- the three named policies -----------------------------------------------------

    @classmethod
    def default(cls, **changes: Any) -> MatchPolicy:
        """Type and content, ``event_id`` masked, echoed IDs mapped, audio by length."""
        return cls("default", **changes)

    @classmethod
    def type_only(cls, **changes: Any) -> MatchPolicy:
        """The event ``type`` only; audio not compared."""
        changes.setdefault("audio", "ignore")
        return cls("type", content=False, **changes)

    @classmethod
    def exact(cls, **changes: Any) -> MatchPolicy:
        """The whole parsed event, nothing masked, IDs equal; audio by content."""
        changes.setdefault("audio", "content")
        return cls("exact", mask=(), map_ids=False, **changes)

    def with_rule(self, event_type: str, rule: Rule) -> MatchPolicy:
        """A copy of this policy with ``rule`` deciding for events of ``event_type``."""
        ignore: dict[str, tuple[str, ...]] = dict(self.ignore)
        return MatchPolicy(
            self.name,
            content=self.content,
            mask=self.mask,
            map_ids=self.map_ids,
            ignore=ignore,
            rules={**self.rules, event_type: rule},
            audio=self.audio,
        )

    def __repr__(self) -> str:
        return f"MatchPolicy({self.name!r}, content={self.content}, audio={self.audio!r})"

    # -- comparing --------------------------------------------------------------------

    def _hidden(self, kind: str | None) -> list[Pattern]:
        paths = [*self.mask, *self.ignore.get("*", ())]
        if kind is not None:
            paths.extend(self.ignore.get(kind, ()))
        return [_split(p) for p in paths]

    def _id_paths(self, kind: str | None, echoed: Mapping[str, tuple[str, ...]] = ECHOED_IDS) -> list[Pattern]:
        if not self.map_ids or kind is None:
            return []
        return [_split(p) for p in echoed.get(kind, ())]

    def masked(self, event: Any) -> Any:
        """The event as the report shows it: masked and ignored fields left out."""
        if not isinstance(event, dict):
            return event
        kind = event.get("type")
        return _strip(event, self._hidden(kind if isinstance(kind, str) else None))

    def compare(
        self,
        expected: Any,
        got: Any,
        ids: IdContext | None = None,
        echoed: Mapping[str, tuple[str, ...]] = ECHOED_IDS,
    ) -> Verdict:
        """Compare a received event (``got``) with a recorded one (``expected``).

        ``echoed`` names, per event type, the fields where a client echoes an ID: the
        endpoint's (:attr:`rtreplay.protocol.Profile.echoed_ids`; the conversation
        endpoint's by default).
        """
        if not (isinstance(expected, dict) and isinstance(got, dict)):
            differences = diff(expected, got)
            if not differences:
                return Verdict("match")
            # A JSON value that is not an event cannot stand for a recorded event.
            verdict: VerdictKind = (
                "type" if isinstance(expected, dict) or isinstance(got, dict) else "content"
            )
            return Verdict(verdict, tuple(differences))
        kind = expected.get("type")
        if kind != got.get("type"):
            return Verdict("type", (Difference("type", kind, got.get("type", MISSING)),))
        skind = kind if isinstance(kind, str) else None
        rule = self.rules.get(skind) if skind is not None else None
        if rule is not None:
            try:
                decision = rule(expected, got)
            except Exception as exc:  # the user's code: a mismatch that says so, not a dead connection
                return Verdict(
                    "rule", tuple(self._differences(expected, got, skind)), _raised(kind, exc)
                )
            if decision is True:
                return Verdict("match")
            if decision is False or isinstance(decision, str):
                reason = decision if isinstance(decision, str) else f"the rule for {kind} said no"
                return Verdict("rule", tuple(self._differences(expected, got, skind, echoed)), reason)
        if not self.content:
            return Verdict("match")
        differences = self._differences(expected, got, skind, echoed)
        id_diffs, bindings = self._check_ids(expected, got, skind, ids or _NoIds(), echoed)
        if id_diffs:
            return Verdict("id", tuple(id_diffs + differences), bindings=bindings)
        if differences:
            return Verdict("content", tuple(differences), bindings=bindings)
        return Verdict("match", bindings=bindings)

    def _differences(
        self, expected: Any, got: Any, kind: str | None, echoed: Mapping[str, tuple[str, ...]] = ECHOED_IDS
    ) -> list[Difference]:
        hidden = self._hidden(kind) + self._id_paths(kind, echoed)
        return diff(_strip(expected, hidden), _strip(got, hidden))

    def _check_ids(
        self,
        expected: Any,
        got: Any,
        kind: str | None,
        ids: IdContext,
        echoed: Mapping[str, tuple[str, ...]] = ECHOED_IDS,
    ) -> tuple[list[Difference], dict[str, str]]:
        out: list[Difference] = []
        bindings: dict[str, str] = {}
        hidden = self._hidden(kind)
        for pattern in self._id_paths(kind, echoed):
            if any(pattern[: len(h)] == h for h in hidden):
                continue
            want = dict(_values_at(expected, pattern))
            have = dict(_values_at(got, pattern))
            for path in sorted(set(want) | set(have)):
                e, g = want.get(path, MISSING), have.get(path, MISSING)
                if e is MISSING or g is MISSING or not isinstance(e, str) or not isinstance(g, str):
                    if not _same_scalar(e, g):
                        out.append(Difference(path, e, g))
                    continue
                if ids.handed_out(e):
                    # (IdContexts written before fresh IDs existed lack the last two methods.)
                    sent_as = getattr(ids, "sent_as", None)
                    sent = sent_as(e) if sent_as is not None else e
                    if g != sent:
                        origin_of = getattr(ids, "origin", None)
                        origin = origin_of(g) if origin_of is not None else None
                        out.append(
                            Difference(
                                path,
                                sent,
                                g,
                                f"expected {sent!r}, the ID the replay handed out, got {g!r}"
                                + (f" ({origin})" if origin else ""),
                            )
                        )
                    continue
                bound = bindings.get(e) or ids.bound(e)
                if bound is not None:
                    if g != bound:
                        out.append(
                            Difference(
                                path,
                                e,
                                g,
                                f"expected {bound!r} (the ID the client used for recorded {e!r} before), got {g!r}",
                            )
                        )
                    continue
                other = ids.bound_to(g)
                if other is None:
                    other = next((k for k, v in bindings.items() if v == g), None)
                if other is not None and other != e:
                    out.append(
                        Difference(
                            path,
                            e,
                            g,
                            f"{g!r} already stands for recorded {other!r}, expected one for {e!r}",
                        )
                    )
                    continue
                bindings[e] = g
        return out, bindings


_NAMED = {"default": MatchPolicy.default, "type": MatchPolicy.type_only, "exact": MatchPolicy.exact}


def resolve_policy(match: str | MatchPolicy) -> MatchPolicy:
    """The policy named ``"default"``, ``"type"`` or ``"exact"``, or the policy given."""
    if isinstance(match, MatchPolicy):
        return match
    try:
        return _NAMED[match]()
    except KeyError:
        raise ValueError(
            f"unknown match policy {match!r}; use 'default', 'type', 'exact' or a MatchPolicy"
        ) from None
