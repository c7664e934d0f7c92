"""The replay report as a person reads it when a test fails: once, with what to do next.

:func:`failure_text` renders a :class:`~rtreplay.report.ReplayReport` for a failing test
(the pytest plugin's failure text or ``rtreplay`` section): each mismatch once (where, the
differences, what was expected and what came; for a stall, what the replay held and what
it awaited), what was never played, the audio accepted within the tolerance, and then what
to do: the command that re-records the test, and the narrowest loosening of matching that
would have accepted what came (the exact ``ignore`` paths the comparison just found, per
event type). :func:`loosening` computes that suggestion; :func:`report_json` gives the
same report as plain data for ``rtreplay serve --report``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .match import format_value
from .report import AudioDifference, Mismatch, ReplayReport

__all__ = ["NOTHING_CONNECTED", "failure_text", "loosening", "nothing_connected", "report_json"]

NOTHING_CONNECTED = (
    "no client connected to the mock: is your client pointed at "
    "realtime_mock.websocket_base_url (openai SDK: websocket_base_url=..., "
    "openai-agents: model_config['url'] = realtime_mock.url)?"
)


def nothing_connected(fixture: str = "realtime_mock") -> str:
    """What to check when no client connected, naming the fixture the test used.

    ``fixture`` is ``"realtime_mock"`` (the mock is the fixture itself:
    :data:`NOTHING_CONNECTED`) or a fixture called to serve one replay per ``with``
    block, such as ``"realtime_replay"`` (the mock is what the block yields).
    """
    if fixture == "realtime_mock":
        return NOTHING_CONNECTED
    return (
        f"no client connected to the mock: is your client pointed at the mock that "
        f"`with {fixture}(...) as mock:` yields (openai SDK: "
        "websocket_base_url=mock.websocket_base_url, openai-agents: "
        "model_config['url'] = mock.url)?"
    )


def _mismatch(m: Mismatch, index: int, total: int, already_shown: str = "") -> list[str]:
    head = f"mismatch {index} of {total} ({m.kind}): {m.where}"
    # The client raised the mock's error event, whose message is the summary (with up to
    # 3 differences): the test's own failure already said it.
    shown = bool(already_shown) and m.summary in already_shown
    if shown:
        lines = [f"{head} (the error above)"]
    elif m.differences and m.kind == "content":
        lines = [head, f"  {_what(m)}"]  # the differences follow, each once
    else:
        lines = [head, f"  {m.message}"]
    if m.after or m.last_sent:
        after = ", ".join(m.after) if m.after else "(nothing yet)"
        sent = f"; last server event sent: {m.last_sent}" if m.last_sent else ""
        lines.append(f"  after: {after}{sent}")
    if m.held is not None:
        lines.append(f"  holds:    {m.held}")
    if m.kind == "stall" or (m.kind == "audio" and m.held is not None):
        lines.append(f"  awaits:   {m.awaits or _show(m.expected)}")
        lines.append(f"  last received from the client: {m.last_received or '(nothing)'}")
    if m.differences and not (shown and len(m.differences) <= 3):
        lines.append("  differences (masked fields left out):")
        lines.extend(f"    {d}" for d in m.differences[:20])
        if len(m.differences) > 20:
            lines.append(f"    ... and {len(m.differences) - 20} more")
    if m.kind not in ("audio", "handshake", "no_connection", "stall"):
        lines.append(f"  expected: {_show(m.expected)}")
        lines.append(f"  got:      {_show(m.got)}")
    return lines


def _what(m: Mismatch) -> str:
    kind = m.expected.get("type") if isinstance(m.expected, dict) else None
    n = len(m.differences)
    return f"{kind or 'the event'} differs from the recording in {n} field{'s' if n != 1 else ''}"


def _show(event: Any) -> str:
    return "(nothing)" if event is None else format_value(event, limit=200)


def loosening(report: ReplayReport) -> str | None:
    """The narrowest ``@pytest.mark.realtime(match=...)`` that would have accepted what came.

    Content mismatches give ``ignore`` paths per event type (exactly the fields that
    differed); audio mismatches ``audio="ignore"``. ``None`` when no policy change would
    help (an unexpected event, a stall, a different handshake: re-record instead).
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
        elif m.kind == "audio" and m.held is None:
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
    report: ReplayReport,
    *,
    headline: str,
    cassette: str,
    rerecord: str,
    note: str = "",
    exception_text: str = "",
    allow_unplayed_hint: bool = False,
    advice: Sequence[str] = (),
    rerecord_advice: bool = True,
    rerecord_lines: Sequence[str] = (),
    fixture: str = "realtime_mock",
) -> str:
    """The whole text a failing test shows about its replay (see the module docstring).

    ``exception_text``: what the test's own exception already said; a mismatch whose
    summary it contains (the client raised the mock's ``error`` event) is not said again.
    ``advice``: lines said before the re-record command (what to try first);
    ``rerecord_advice=False`` leaves that command out (an injected fault's story);
    ``rerecord_lines``, when given, say how to re-record instead of the plain command
    (a cassette shared with other tests, a test that never records).
    ``fixture``: the fixture the test used (``realtime_mock``, ``realtime_replay``),
    named when no client connected (:func:`nothing_connected`).
    Injected faults (fired, never fired, what they cut) and the interruptions the replay
    followed are listed too.
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
        if not report.connections and all(u.conn is None for u in unplayed):
            lines.append(f"  {nothing_connected(fixture)}")
        else:
            lines.append("not played to the end:")
            lines.extend(f"  {u}" for u in unplayed)
    lines.extend(_faults(report))
    if report.audio:
        lines.append("")
        lines.append("audio accepted within the tolerance (not a failure):")
        lines.extend(f"  {a}" for a in report.audio)
    if report.reorderings:
        lines.append("")
        lines.append("accepted out of order (not a failure):")
        lines.extend(f"  {r}" for r in report.reorderings)
    lines.append("")
    lines.extend(advice)
    if not rerecord_advice:
        return "\n".join(lines).rstrip("\n")
    if rerecord_lines:
        lines.extend(rerecord_lines)
    else:
        lines.append("If the new conversation is right, re-record this test:")
        lines.append(f"    {rerecord}")
    loosen = loosening(report) if mismatches else None
    if loosen is not None:
        lines.append("Or loosen matching just enough to accept what came:")
        lines.append(f"    {loosen}")
    if allow_unplayed_hint and not mismatches and unplayed and report.connections:
        lines.append("If the test stops early on purpose: @pytest.mark.realtime(allow_unplayed=True)")
    return "\n".join(lines)


def _faults(report: ReplayReport) -> list[str]:
    """The injected faults that fired, those that never did, what they cut, and the
    interruptions followed: each a section, none of them a failure by itself."""
    lines: list[str] = []
    if report.faults:
        lines += ["", "injected faults, as asked:"]
        for fired in report.faults:
            what = fired.fault
            said = ""
            if what.startswith("stall@"):
                said = ": nothing was sent after it"
            elif what.startswith("stall:"):
                said = ": nothing was sent for that long"
            lines.append(f"  {fired}{said}")
    if report.unfired:
        lines += ["", "injected faults that never fired:"]
        lines.extend(f"  {f}" for f in report.unfired)
    if report.cut:
        lines += ["", "cut by a fault (not a failure):"]
        lines.extend(f"  {u}" for u in report.cut)
    if report.interruptions:
        lines += ["", "interruptions followed (not a failure):"]
        lines.extend(f"  {i}" for i in report.interruptions)
    return lines


def _value(v: Any) -> Any:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return repr(v)
    return v


def _mismatch_json(m: Mismatch) -> dict[str, Any]:
    return {
        "kind": m.kind,
        "conn": m.conn,
        "recorded_conn": m.recorded_conn,
        "turn": m.turn,
        "index": m.index,
        "total": m.total,
        "where": m.where,
        "message": m.message,
        "expected": _value(m.expected),
        "got": _value(m.got),
        "differences": [
            {"path": d.path, "expected": _value(d.expected), "got": _value(d.got)} for d in m.differences
        ],
        "after": list(m.after),
        "last_sent": m.last_sent,
        "held": m.held,
        "last_received": m.last_received,
        "awaits": m.awaits,
    }


def _audio_json(a: AudioDifference) -> dict[str, Any]:
    return {
        "conn": a.conn,
        "recorded_conn": a.recorded_conn,
        "turn": a.turn,
        "where": a.where,
        "expected_ms": a.expected_ms,
        "got_ms": a.got_ms,
        "tolerance_ms": a.tolerance_ms,
        "message": str(a),
    }


def report_json(report: ReplayReport) -> dict[str, Any]:
    """The replay report as plain JSON data (what ``rtreplay serve --report`` writes).

    Keys: ``cassette``, ``ok``, ``complete``, ``mismatches`` (each with its ``kind``, where,
    the events and differences; a stall also with ``held``, ``last_received`` and ``awaits``),
    ``stalls`` (the mismatches that cut a stalled connection, as in ``mismatches``),
    ``audio`` (differences accepted within the audio tolerance, in ms of audio),
    ``unplayed``, ``reorderings``, ``loosening``; ``faults`` (those that fired: the fault,
    its connection, where and when), ``unfired``, ``cut`` (what faults cut off) and
    ``interruptions`` (each response ended where the client interrupted it).
    """
    return {
        "cassette": report.source,
        "ok": report.ok,
        "complete": report.complete,
        "mismatches": [_mismatch_json(m) for m in report.mismatches],
        "stalls": [_mismatch_json(m) for m in report.stalls],
        "audio": [_audio_json(a) for a in report.audio],
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
        "faults": [
            {"fault": f.fault, "conn": f.conn, "recorded_conn": f.recorded_conn, "where": f.where, "seconds": f.seconds}
            for f in report.faults
        ],
        "unfired": list(report.unfired),
        "cut": [
            {"conn": u.conn, "recorded_conn": u.recorded_conn, "cut_by": u.cut_by,
             "missing_client_events": u.missing, "unsent_server_frames": u.frames}
            for u in report.cut
        ],
        "interruptions": [
            {"conn": i.conn, "recorded_conn": i.recorded_conn, "by": i.by, "response_id": i.response_id,
             "reason": i.reason, "sent_deltas": i.sent_deltas, "dropped": i.dropped,
             "synthesised": list(i.synthesised), "recorded": i.recorded}
            for i in report.interruptions
        ],
    }
