"""Check a recording against the live API: drive its client side there, report the drift.

``rtreplay verify CASSETTE --upstream URL`` plays the cassette's recorded client to a live
Realtime endpoint (the real API with your key; any compatible server) as ``rtreplay drive``
does (:mod:`rtreplay.drive`), and compares the *kinds* of things that came back with the
recording, never their wording (a live model says it differently each time, in other
pieces):

- event types that **appeared** (sent now, never in the recording) or **disappeared**
  (recorded, not sent now); a pair of them with the same fields is shown as a likely
  **rename**;
- per event type, fields **added**, **removed**, or whose JSON type **changed** (``null``
  is taken for any type: fields are nullable from run to run);
- **refusals**: a handshake refused, or ``error`` codes the recording never had.

Events past the recording's end (the recording's client hung up mid-response) are not
counted. Nothing is written unless asked: ``record_to`` (``--record-to NEW.jsonl``) writes
what was exchanged as a new cassette, credentials removed as the recorder removes them.
"""

from __future__ import annotations

import os
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .drive import Drive, Exchange
from .driver import DEFAULT_TIMEOUT
from .expect import json_kind
from .report import DriveReport

if TYPE_CHECKING:
    from .cassette import Cassette, Open

__all__ = ["DEFAULT_UPSTREAM", "Drift", "VerifyReport", "compare", "schema", "verify"]

#: Where ``rtreplay verify`` goes without ``--upstream`` (as ``rtreplay record`` does).
DEFAULT_UPSTREAM = "wss://api.openai.com/v1"

_any = msgspec.json.Decoder()

Schema = dict[str, set[str]]  # field path -> JSON types seen


def _walk(value: Any, path: str, out: Schema) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            out.setdefault(sub, set()).add(json_kind(v))
            _walk(v, sub, out)
    elif isinstance(value, list):
        for v in value:
            sub = f"{path}[]"
            out.setdefault(sub, set()).add(json_kind(v))
            _walk(v, sub, out)


def schema(events: Iterable[Any]) -> dict[str, Schema]:
    """Per event type, every field path its events have and the JSON types seen there."""
    out: dict[str, Schema] = {}
    for event in events:
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        if not isinstance(kind, str):
            continue
        fields = out.setdefault(kind, {})
        _walk({k: v for k, v in event.items() if k != "type"}, "", fields)
    return out


@dataclass(frozen=True)
class Drift:
    """One way the live endpoint differs from the recording.

    ``kind``: ``"appeared"``, ``"disappeared"``, ``"renamed"``, ``"field added"``,
    ``"field removed"``, ``"field type"`` or ``"refusal"``; ``event`` the event type (or
    ``old -> new``), ``field`` the field path, ``detail`` the rest in words.
    """

    kind: str
    event: str
    field: str = ""
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "refusal":
            return f"refusal: {self.detail}"
        if self.field:
            return f"{self.event}: {self.kind}: {self.field} {self.detail}".rstrip()
        return f"{self.kind}: {self.event} {self.detail}".rstrip()


@dataclass
class VerifyReport:
    """What ``verify`` found: the drift, and the drive behind it."""

    source: str | None
    target: str
    drift: list[Drift] = field(default_factory=list)
    drive: DriveReport | None = None
    written: Path | None = None
    errors: list[str] = field(default_factory=list)  # connections that could not be made

    @property
    def ok(self) -> bool:
        """No drift, and every recorded connection could be tried."""
        return not self.drift and not self.errors

    def __str__(self) -> str:
        name = f" of {self.source}" if self.source else ""
        n = len(self.drift)
        head = f"rtreplay: verify{name} against {self.target}: "
        if self.errors:
            lines = [head + "could not verify: " + "; ".join(self.errors)]
            lines.extend(f"  {d}" for d in self.drift)
        elif not n:
            lines = [head + "no drift: the API still sends what the recording has"]
        else:
            lines = [head + f"{n} difference{'s' if n != 1 else ''} from the recording"]
            lines.extend(f"  {d}" for d in self.drift)
        if self.written is not None:
            lines.append(f"re-recorded to {self.written}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "ok": self.ok,
            "drift": [
                {"kind": d.kind, "event": d.event, "field": d.field, "detail": d.detail}
                for d in self.drift
            ],
            "written": str(self.written) if self.written else None,
            "errors": list(self.errors),
        }


def _errors(events: Iterable[Any]) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for event in events:
        if isinstance(event, dict) and event.get("type") == "error":
            err = event.get("error")
            if isinstance(err, dict):
                out.setdefault(err.get("code"), str(err.get("message", "")))
    return out


def compare(recorded: list[Any], live: list[Any]) -> list[Drift]:
    """The drift between recorded server events and live ones (decoded JSON)."""
    rec_types = Counter(_types(recorded))
    live_types = Counter(_types(live))
    rec_schema, live_schema = schema(recorded), schema(live)
    gone = [t for t in rec_types if t not in live_types]
    new = [t for t in live_types if t not in rec_types]
    out: list[Drift] = []
    for old in list(gone):
        match = next((t for t in new if set(live_schema.get(t, {})) == set(rec_schema.get(old, {}))), None)
        if match is not None:
            out.append(Drift("renamed", f"{old} -> {match}", detail="(the same fields under a new name)"))
            gone.remove(old)
            new.remove(match)
    out.extend(Drift("disappeared", t, detail=f"(recorded {rec_types[t]} times, not sent now)") for t in gone)
    out.extend(Drift("appeared", t, detail=f"(sent {live_types[t]} times, never recorded)") for t in new)
    for kind in rec_types:
        if kind not in live_types:
            continue
        r, lv = rec_schema.get(kind, {}), live_schema.get(kind, {})
        for path in sorted(set(r) | set(lv)):
            if path not in lv:
                if _parent_gone(path, r, lv):
                    continue
                out.append(Drift("field removed", kind, path, f"(was {_kinds(r[path])})"))
            elif path not in r:
                if _parent_gone(path, lv, r):
                    continue
                out.append(Drift("field added", kind, path, f"({_kinds(lv[path])})"))
            else:
                a, b = r[path] - {"null"}, lv[path] - {"null"}
                if a and b and not a & b:
                    out.append(Drift("field type", kind, path, f"{_kinds(a)} -> {_kinds(b)}"))
    rec_errors, live_errors = _errors(recorded), _errors(live)
    for code, message in live_errors.items():
        if code not in rec_errors:
            out.append(Drift("refusal", "error", detail=f"error {code!r}: {message}"))
    return out


def _types(events: Iterable[Any]) -> Iterator[str]:
    for e in events:
        kind = e.get("type") if isinstance(e, dict) else None
        if isinstance(kind, str):
            yield kind


def _parent_gone(path: str, have: Schema, other: Schema) -> bool:
    """Whether a parent of ``path`` is already reported added or removed."""
    parts = path.replace("[]", ".[]").split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i]).replace(".[]", "[]")
        if parent in have and parent not in other:
            return True
    return False


def _kinds(kinds: Iterable[str]) -> str:
    return " or ".join(sorted(kinds))


def _live_events(exchanges: Iterable[Exchange]) -> Iterator[Any]:
    for ex in exchanges:
        for _, direction, message in ex.messages:
            if direction == "server" and isinstance(message, str):
                try:
                    yield _any.decode(message)
                except msgspec.DecodeError:
                    continue


def _recorded_events(drive: Drive) -> Iterator[Any]:
    """The recorded server events of the connections that opened (a refusal is its own drift)."""
    for script, ex in zip(drive.scripts, drive.exchanges, strict=True):
        if ex.close is None:
            continue
        for e in script.expectations:
            if e.stream:
                for raw in e.pieces:
                    yield _any.decode(raw)
            elif e.event is not None:
                yield e.event


def upstream_for(upstream: str) -> Any:
    """The URL of each recorded connection on ``upstream``: its base, then the recorded
    path from ``/realtime`` on (as ``rtreplay record`` maps a client's path)."""
    from .recorder import upstream_url

    def url_for(open: Open) -> str:
        return upstream_url(upstream, open.path) or upstream.rstrip("/") + "/realtime"

    return url_for


async def verify(
    cassette: str | os.PathLike[str] | Cassette,
    upstream: str = DEFAULT_UPSTREAM,
    *,
    api_key: str | None = None,
    speed: float | None = 1.0,
    audio_speed: float | None = 1.0,
    timeout: float = DEFAULT_TIMEOUT,
    record_to: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """Drive ``cassette``'s recorded client against ``upstream`` and report the drift.

    ``upstream`` is a base URL as ``rtreplay record --upstream`` takes
    (``wss://api.openai.com/v1``). ``record_to``: also write what was exchanged there, as a
    new cassette. Raises the cassette errors of :func:`rtreplay.load`,
    :class:`ValueError` for bad options, :class:`~rtreplay.errors.CassetteWriteError` when
    ``record_to`` cannot be written.
    """
    d = Drive(
        cassette, upstream, match="type", speed=speed, audio_speed=audio_speed, timeout=timeout,
        api_key=api_key, keep_exchange=True, url_for=upstream_for(upstream),
    )
    report = await d.run()
    result = VerifyReport(report.source, report.target, drive=report)
    for m in report.mismatches:
        if m.kind == "unreachable":
            result.errors.append(m.message)
        elif m.kind in ("refused", "handshake"):
            result.drift.append(Drift("refusal", "handshake", detail=m.message))
    result.drift.extend(compare(list(_recorded_events(d)), list(_live_events(d.exchanges))))
    if record_to is not None:
        result.written = write_exchanges(d, record_to, api_key)
    return result


def write_exchanges(d: Drive, path: str | os.PathLike[str], api_key: str | None) -> Path:
    """Write a drive's exchanges as a cassette (credentials removed); return its path."""
    from .cassette import Close, Frame, Open, Reject, utc_timestamp
    from .codec import CassetteWriter
    from .redact import Redactor

    redactor = Redactor(secrets=[api_key] if api_key else ())
    with CassetteWriter(path, redactor=redactor) as writer:
        for conn, ex in enumerate(d.exchanges):
            url = urllib.parse.urlsplit(ex.handshake.url)
            recorded = ex.script.open
            writer.write(
                Open(
                    conn,
                    path=url.path,
                    query=dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
                    protocol=recorded.protocol,
                    subprotocol=recorded.subprotocol,
                    headers=dict(ex.handshake.headers),
                    started=utc_timestamp("milliseconds"),
                )
            )
            if ex.refused is not None:
                status, headers, body = ex.refused
                writer.write(Reject(conn, 0.0, status, headers, body))
                continue
            writer.write_many(
                Frame.from_message(conn, t, "client" if direction == "client" else "server", message)
                for t, direction, message in ex.messages
            )
            if ex.close is not None:
                t, code, reason, by = ex.close
                writer.write(Close(conn, round(t, 6), code if code is not None else 1006, reason, by))  # type: ignore[arg-type]
    return Path(path)
