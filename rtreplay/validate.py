"""A loose schema check of a cassette's events: known ``type``, required top-level fields.

Each event is checked against the published schema of its connection's endpoint and
protocol (:attr:`rtreplay.protocol.Profile.schema`: the conversation endpoint's GA or beta
events, the translation endpoint's, Azure Voice Live's) and its direction: its ``type``
must be a known event type, and the fields the schema marks required at the top level must
be present. Nothing deeper is checked, on purpose: the published schema is stricter than
the real server, which sends ``null`` where the schema wants an object or a string. The
reduced schemas ship in ``rtreplay/schema/`` (refreshed by ``scripts/make_schema.py``).

The API gains event types before rtreplay's schema knows them. An unknown type of a
plausible shape (a dotted lower-case name; a server event with its ``event_id``) is a
**warning**: the cassette still replays. ``strict`` (``--strict``) makes it an error. An
unknown type that is the other direction's, or the other protocol's name, or of no
plausible shape, is always an error. Also warnings: a connection recorded with the beta
protocol (it replays, but the API no longer accepts beta clients, so it cannot be
re-recorded: ``rtreplay migrate`` moves it to GA), one to an endpoint rtreplay does
not know (its events are not checked), and a frame whose time ``t`` is earlier than the
frame before it on its connection (the recorder writes each connection's frames in time
order, so the file was edited or made by hand).

A client event the server answered with an ``error`` naming its ``event_id`` is not a
problem: the cassette recorded a deliberate (or accidental) bad request and the server's
answer to it, which is exactly what a replay must serve.

``rtreplay validate CASSETTE...`` prints one line per problem and warning, and exits 1 if
there were problems (warnings alone: 0), 0 if every event passed, 2 if a cassette could not
be read.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import warnings as _warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import IO, Any, Literal

from .cassette import AudioFile, Close, Direction, Frame, Open, Record, Reject
from .codec import CassetteReader, partial_note
from .errors import CassetteError, CassetteNotFoundError, CassetteTruncatedWarning
from .protocol import REALTIME, profile_for

__all__ = [
    "BETA_SUNSET",
    "EventSchema",
    "Problem",
    "Severity",
    "add_validate_arguments",
    "check_event",
    "event_schema",
    "validate_cassette",
    "validate_main",
    "validate_records",
]


Severity = Literal["error", "warning"]
#: What validate says of a beta connection (PROTOCOL.md 1.5; CHANGES.md, "Beta sunset").
BETA_SUNSET = (
    "recorded with the beta protocol (OpenAI-Beta: realtime=v1): it replays to beta clients, "
    "but the API now answers a beta client with an error (beta_api_shape_disabled) and close "
    "4000, so it cannot be re-recorded; `rtreplay migrate {path}` rewrites it to the GA shapes"
)
_PLAUSIBLE_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass(frozen=True)
class EventSchema:
    """What the check knows of one endpoint and protocol: required top-level fields per
    type and direction. ``protocol`` names it: ``ga``, ``beta``, ``translation``,
    ``voice-live``."""

    protocol: str
    client: Mapping[str, tuple[str, ...]]
    server: Mapping[str, tuple[str, ...]]
    source: str

    def types(self, direction: Direction) -> Mapping[str, tuple[str, ...]]:
        return self.client if direction == "client" else self.server

    @property
    def label(self) -> str:
        return {"ga": "GA", "beta": "BETA"}.get(self.protocol, self.protocol)


@cache
def event_schema(protocol: str) -> EventSchema:
    """The reduced schema ``protocol`` names (``"ga"``, ``"beta"``, ``"translation"``,
    ``"voice-live"``), loaded once. Raises :class:`ValueError` for another name."""
    try:
        text = resources.files("rtreplay").joinpath("schema").joinpath(f"events-{protocol}.json").read_text()
    except FileNotFoundError:
        raise ValueError(f"no event schema {protocol!r}: use 'ga', 'beta', 'translation' or 'voice-live'") from None
    data = json.loads(text)
    source = data.get("source", {})
    return EventSchema(
        protocol=protocol,
        client={t: tuple(f) for t, f in data["client"].items()},
        server={t: tuple(f) for t, f in data["server"].items()},
        source=f"{source.get('repository', '?')}@{str(source.get('commit', '?'))[:12]}",
    )


def _other(protocol: str) -> str | None:
    return {"ga": "beta", "beta": "ga"}.get(protocol)


def schema_for(open: Open) -> str | None:
    """The schema a recorded connection is checked against (``None``: an endpoint
    rtreplay does not know, not checked)."""
    profile = profile_for(open.path, open.query) or REALTIME
    if profile.schema == "conversation":
        return open.protocol
    return profile.schema


def _check(event: Any, direction: Direction, protocol: str, strict: bool) -> list[tuple[str, Severity]]:
    if not isinstance(event, dict):
        return [(f"not a JSON object but a JSON {type(event).__name__}: every Realtime event is an object", "error")]
    kind = event.get("type")
    if kind is None:
        return [("no 'type' field", "error")]
    if not isinstance(kind, str):
        return [(f"'type' is {json.dumps(kind)}, not a string", "error")]
    schema = event_schema(protocol)
    known = schema.types(direction)
    if kind not in known:
        return [_unknown(event, kind, direction, protocol, strict)]
    missing = [name for name in known[kind] if name not in event]
    if missing:
        fields = ", ".join(repr(m) for m in missing)
        plural = "s" if len(missing) > 1 else ""
        return [(f"missing required field{plural} {fields} ({schema.label} schema)", "error")]
    return []


def check_event(event: Any, direction: Direction, protocol: str = "ga", *, strict: bool = False) -> list[str]:
    """What is wrong with one decoded event, in words; an empty list when nothing is.

    ``event`` is the decoded JSON of a frame, ``direction`` who sent it, ``protocol`` the
    schema of its connection (``"ga"``, ``"beta"``, ``"translation"``, ``"voice-live"``).
    An unknown type of a plausible shape is not wrong unless ``strict``.
    """
    return [message for message, severity in _check(event, direction, protocol, strict) if severity == "error"]


def _unknown(event: dict[str, Any], kind: str, direction: Direction, protocol: str, strict: bool) -> tuple[str, Severity]:
    schema = event_schema(protocol)
    other_side: Direction = "server" if direction == "client" else "client"
    text = f"unknown {schema.label} {direction} event type {kind!r}"
    if kind in schema.types(other_side):
        return f"{text}: it is a {other_side} event; was the frame's 'dir' recorded backwards?", "error"
    other = _other(protocol)
    if other is not None and kind in event_schema(other).types(direction):
        label = event_schema(other).label if other == "ga" else "beta"
        return (
            f"{text}: it is a {label} event name; is the connection's protocol right "
            f"(the open record says {protocol!r})?",
            "error",
        )
    close = difflib.get_close_matches(kind, list(schema.types(direction)), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    plausible = _PLAUSIBLE_TYPE.match(kind) is not None and (
        direction == "client" or isinstance(event.get("event_id"), str)
    )
    if not plausible:
        return text + hint, "error"
    if strict:
        return f"{text}{hint} (--strict: rtreplay's schema, {schema.source}, does not know it)", "error"
    return (
        f"{text}{hint} (a plausible shape: a newer API's event replays as recorded; --strict "
        f"makes this an error)",
        "warning",
    )


@dataclass(frozen=True)
class Problem:
    """One finding of the check, with where it is: an ``"error"`` (the event is wrong) or a
    ``"warning"`` (the cassette replays, but you should know); ``conn`` is ``None`` for a
    finding about the whole cassette."""

    path: str
    line: int | None
    conn: int | None  # None: a problem of the file (a damaged audio file)
    direction: Direction | None  # None: of the connection, or of the file
    event_type: str | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        level = "warning: " if self.severity == "warning" else ""
        if self.conn is None:
            return f"{where}: {level}{self.message}"
        if self.direction is None:
            return f"{where}: {level}connection {self.conn}: {self.message}"
        kind = repr(self.event_type) if self.event_type is not None else "(no type)"
        return f"{where}: {level}connection {self.conn}, {self.direction} event {kind}: {self.message}"


def _frame_event(frame: Frame) -> tuple[Any, str | None]:
    """The decoded event of a frame, or the reason there is none."""
    if not frame.is_text:
        return None, "a binary frame: the Realtime API sends only JSON text frames"
    try:
        event = frame.event()
    except ValueError:
        return None, "the frame's JSON cannot be decoded"
    if event is None:
        return None, "a text frame that is not JSON: Realtime events are JSON objects"
    return event, None


def validate_records(
    records: Iterable[tuple[int | None, Record]], path: str = "<cassette>", *, strict: bool = False
) -> Iterator[Problem]:
    """Problems and warnings in ``(line, record)`` pairs, in file order.

    A client event's problem is held back until its connection ends, so a server ``error``
    naming that event's ``event_id`` can excuse it.
    """
    schemas: dict[int, str | None] = {}
    held: dict[int, list[tuple[str | None, Problem]]] = {}
    beta: list[int] = []
    last_t: dict[int, tuple[float, int | None]] = {}  # each connection's latest frame time, and its line
    for line, record in records:
        if isinstance(record, Open):
            schemas[record.conn] = schema_for(record)
            held[record.conn] = []
            if schemas[record.conn] is None:
                profile = profile_for(record.path, record.query)
                assert profile is not None and profile.warning is not None
                what = profile.warning.format(path=record.path).split(":")[0]
                yield Problem(path, line, record.conn, None, None, f"{what}: its events are not checked", "warning")
            elif record.protocol == "beta":
                beta.append(record.conn)
                if len(beta) == 1:
                    yield Problem(path, line, record.conn, None, None, BETA_SUNSET.format(path=path), "warning")
            continue
        if isinstance(record, (Close, Reject)):  # the connection is over: nothing can excuse now
            yield from (p for _, p in held.pop(record.conn, []))
            continue
        if not isinstance(record, Frame):
            continue
        previous = last_t.get(record.conn)
        if previous is not None and record.t < previous[0]:
            yield Problem(
                path, line, record.conn, None, None,
                f"a {record.dir} frame's time t={record.t:g} s is earlier than the frame before it on this connection "
                f"(t={previous[0]:g} s{f', line {previous[1]}' if previous[1] is not None else ''}): "
                "the recorder writes each connection's frames in time order, so this file was "
                "edited or made by hand"
                + (" (a replay sends this frame without waiting)" if record.dir == "server" else ""),
                "warning",
            )
        else:
            last_t[record.conn] = (record.t, line)
        protocol = schemas.get(record.conn, "ga")
        if protocol is None:
            continue
        event, unreadable = _frame_event(record)
        kind = event.get("type") if isinstance(event, dict) else None
        kind = kind if isinstance(kind, str) else None
        findings: list[tuple[str, Severity]] = (
            [(unreadable, "error")] if unreadable else _check(event, record.dir, protocol, strict)
        )
        if record.dir == "server" and kind == "error" and isinstance(event, dict):
            culprit = (event.get("error") or {}).get("event_id") if isinstance(event.get("error"), dict) else None
            if culprit is not None:
                pending = held.get(record.conn, [])
                held[record.conn] = [(eid, p) for eid, p in pending if eid != culprit]
        for message, severity in findings:
            problem = Problem(path, line, record.conn, record.dir, kind, message, severity)
            event_id = event.get("event_id") if isinstance(event, dict) else None
            if record.dir == "client" and isinstance(event_id, str) and severity == "error":
                held.setdefault(record.conn, []).append((event_id, problem))
            else:
                yield problem
    for pending in held.values():
        yield from (p for _, p in pending)


def validate_cassette(
    path: str | Path | IO[bytes], *, strict: bool = False, warnings: bool = False, name: str | None = None
) -> list[Problem]:
    """Every problem in the cassette at ``path``, in file order (with ``warnings``, the
    warnings too; ``strict`` makes an unknown event type a problem).

    ``path`` may also be an open binary stream (``sys.stdin.buffer``); ``name`` is what
    problems and errors call it (``<stdin>``).

    Raises :class:`~rtreplay.errors.CassetteError` when the file is not a readable cassette
    (in format 2: also when an audio file it refers to is missing or of the wrong size).
    A damaged audio file (its SHA-256 differs) is a problem. A last line cut short is
    tolerated, as the reader tolerates it.
    """
    declared: dict[str, int] = {}

    def records(reader: CassetteReader) -> Iterator[tuple[int | None, Record]]:
        for record in reader:
            if isinstance(record, AudioFile):
                declared[record.id] = reader.line
            yield reader.line, record

    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", CassetteTruncatedWarning)
        # Audio stays in its files: the events are checked as the file holds them, and
        # each audio file once, whole, against its SHA-256.
        reader = CassetteReader(path, resolve_audio=False, name=name)
        shown = str(reader.path)
        try:
            found = list(validate_records(records(reader), shown, strict=strict))
            for file_id, line in declared.items():
                damage = reader.audio.verify(file_id)
                if damage is not None:
                    found.append(Problem(shown, line, None, None, None, damage))
        finally:
            reader.audio.close()
    found.sort(key=lambda p: p.line or 0)
    return [p for p in found if warnings or p.severity == "error"]


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rtreplay validate``."""
    parser.description = (
        "Check every event of each cassette against the Realtime API schema of its "
        "endpoint and protocol: known type for its direction, required top-level fields present."
    )
    parser.add_argument("cassettes", nargs="+", metavar="CASSETTE", help="cassette files (.jsonl); - reads one from standard input")
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems only, no summary")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="an event type the schema does not know is a problem (by default, one of a "
        "plausible shape is a warning)",
    )


def validate_main(args: argparse.Namespace) -> int:
    """Run ``rtreplay validate``: 0 no problem (warnings allowed), 1 problems found, 2 a
    cassette is unreadable."""
    from .cli._common import cassette_source, one_stdin, shown_name

    if one_stdin("validate", args.cassettes):
        return 2
    status = 0
    for arg in args.cassettes:
        name = shown_name(arg)  # "-" is standard input, "<stdin>" in what is said
        try:
            source, stream_name = cassette_source(arg)
            found = validate_cassette(source, strict=args.strict, warnings=True, name=stream_name)
        except CassetteError as exc:
            print(f"rtreplay validate: error: {exc}", file=sys.stderr)
            note = partial_note(arg) if isinstance(exc, CassetteNotFoundError) else None
            if note:
                print(f"  note: {note}", file=sys.stderr)
            status = 2
            continue
        for problem in found:
            print(problem)
        note = partial_note(arg) if arg != "-" else None
        if note:
            print(f"{name}: warning: {note}", file=sys.stderr)
        problems = sum(1 for p in found if p.severity == "error")
        cautions = len(found) - problems
        if problems:
            status = max(status, 1)
        if not args.quiet:
            parts = []
            if problems:
                parts.append(f"{problems} problem{'s' if problems != 1 else ''}")
            if cautions:
                parts.append(f"{cautions} warning{'s' if cautions != 1 else ''}")
            print(f"{name}: {', '.join(parts) or 'ok'}", file=sys.stderr)
    return status
