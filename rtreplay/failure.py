"""The replay report as a person reads it when a test fails: once, with what to do next.

:func:`failure_text` renders a :class:`~rtreplay.player.ReplayReport` for a failing test
(the pytest plugin's failure text or ``rtreplay`` section): each mismatch once (where, the
differences, what was expected and what came), what was never played, and then what to
do: the command that re-records the test, and the narrowest loosening of matching that
would have accepted what came (the exact ``ignore`` paths the comparison just found, per
event type). :func:`loosening` computes that suggestion; :func:`report_json` gives the
same report as plain data for ``rtreplay serve --report``.
"""

from __future__ import annotations

import json
from typing import Any

from .match import format_value

__all__ = ["NOTHING_CONNECTED", "failure_text", "loosening", "report_json"]

NOTHING_CONNECTED = (
    "no client connected to the mock: is your client pointed at "
    "realtime_mock.websocket_base_url (openai SDK: websocket_base_url=..., "
    "openai-agents: model_config['url'] = realtime_mock.url)?"
)


def _mismatch(m: Any, index: int, total: int, already_shown: str = "") -> list[str]:
    head = f"mismatch {index} of {total}: {m.where}"
    shown = bool(already_shown) and m.summary in already_shown
    if shown:
        # The client raised the mock's error event, whose message is the summary (with up
        # to 3 differences): the test's own failure already said it.
        head += " (the error above)"
        lines = [head]
    else:
        lines = [head, f"  {m.message if not m.differences else _what(m)}"]
    if m.after or m.last_sent:
        after = ", ".join(m.after) if m.after else "(nothing yet)"
        sent = f"; last server event sent: {m.last_sent}" if m.last_sent else ""
        lines.append(f"  after: {after}{sent}")
    if m.differences and not (shown and len(m.differences) <= 3):
        lines.append("  differences (masked fields left out):")
        lines.extend(f"    {d}" for d in m.differences[:20])
        if len(m.differences) > 20:
            lines.append(f"    ... and {len(m.differences) - 20} more")
    if m.kind not in ("audio", "handshake", "no_connection"):
        lines.append(f"  expected: {_show(m.expected)}")
        lines.append(f"  got:      {_show(m.got)}")
    return lines


def _what(m: Any) -> str:
    kind = m.expected.get("type") if isinstance(m.expected, dict) else None
    n = len(m.differences)
    return f"{kind or 'the event'} differs from the recording in {n} field{'s' if n != 1 else ''}"


def _show(event: Any) -> str:
    return "(nothing)" if event is None else format_value(event, limit=200)


def loosening(report: Any) -> str | None:
    """The narrowest ``@pytest.mark.realtime(match=...)`` that would have accepted what came.

    Content mismatches give ``ignore`` paths per event type (exactly the fields that
    differed); audio mismatches ``audio="ignore"``. ``None`` when no policy change would
    help (an unexpected event, a different handshake: re-record instead).
    """
    ignore: dict[str, list[str]] = {}
    audio = False
    for m in report.mismatches:
        if m.kind == "content" and m.differences and isinstance(m.expected, dict):
            kind = m.expected.get("type")
            paths = ignore.setdefault(str(kind), [])
            for d in m.differences:
                if d.path and d.path not in paths:
                    paths.append(d.path)
        elif m.kind == "audio":
            audio = True
        else:
            return None
    if not ignore and not audio:
        return None
    args = []
    if ignore:
        args.append(f"ignore={json.dumps(ignore)}")
    if audio:
        args.append('audio="ignore"')
    return f"@pytest.mark.realtime(match=MatchPolicy.default({', '.join(args)}))  # from rtreplay import MatchPolicy"


def failure_text(
    report: Any,
    *,
    headline: str,
    cassette: str,
    rerecord: str,
    note: str = "",
    exception_text: str = "",
    allow_unplayed_hint: bool = False,
) -> str:
    """The whole text a failing test shows about its replay (see the module docstring).

    ``exception_text``: what the test's own exception already said; a mismatch whose
    summary it contains (the client raised the mock's ``error`` event) is not said again.
    """
    lines = [f"rtreplay: {headline}", f"  cassette: {cassette}"]
    if note:
        lines.append(f"  {note}")
    mismatches = list(report.mismatches)
    for i, m in enumerate(mismatches, 1):
        lines.append("")
        lines.extend(_mismatch(m, i, len(mismatches), exception_text))
    unplayed = report.unplayed
    if unplayed:
        lines.append("")
        if not report.players and all(u.conn is None for u in unplayed):
            lines.append(f"  {NOTHING_CONNECTED}")
        else:
            lines.append("not played to the end:")
            lines.extend(f"  {u}" for u in unplayed)
    if report.reorderings:
        lines.append("")
        lines.append("accepted out of order (not a failure):")
        lines.extend(f"  {r}" for r in report.reorderings)
    lines.append("")
    lines.append("If the new conversation is right, re-record this test:")
    lines.append(f"    {rerecord}")
    loosen = loosening(report) if mismatches else None
    if loosen is not None:
        lines.append("Or loosen matching just enough to accept what came:")
        lines.append(f"    {loosen}")
    if allow_unplayed_hint and not mismatches and unplayed and report.players:
        lines.append("If the test stops early on purpose: @pytest.mark.realtime(allow_unplayed=True)")
    return "\n".join(lines)


def report_json(report: Any) -> dict[str, Any]:
    """The replay report as plain JSON data (what ``rtreplay serve --report`` writes)."""

    def value(v: Any) -> Any:
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            return repr(v)
        return v

    return {
        "cassette": report.source,
        "ok": report.ok,
        "complete": report.complete,
        "mismatches": [
            {
                "kind": m.kind,
                "conn": m.conn,
                "recorded_conn": m.recorded_conn,
                "turn": m.turn,
                "index": m.index,
                "total": m.total,
                "where": m.where,
                "message": m.message,
                "expected": value(m.expected),
                "got": value(m.got),
                "differences": [
                    {"path": d.path, "expected": value(d.expected), "got": value(d.got)} for d in m.differences
                ],
            }
            for m in report.mismatches
        ],
        "unplayed": [
            {
                "conn": u.conn,
                "recorded_conn": u.recorded_conn,
                "missing_client_events": u.missing,
                "events": list(u.events),
                "unsent_server_frames": u.frames,
            }
            for u in report.unplayed
        ],
        "reorderings": [str(r) for r in report.reorderings],
        "loosening": loosening(report) if report.mismatches else None,
    }
