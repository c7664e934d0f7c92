"""``rtreplay show``: a cassette as the conversation a reader wants (see rtreplay.conversation)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from ..cassette import HttpExchange
from ..client_secrets import PLACEHOLDER
from ..conversation import (
    Cancel,
    ConversationConnection,
    End,
    Entry,
    ErrorEvent,
    FunctionCall,
    FunctionOutput,
    Message,
    OtherFrame,
    Response,
    SessionUpdate,
    Translation,
    Truncate,
    UserAudio,
    UserText,
    conversation,
    session_settings,
)
from ._common import (
    CASSETTE_HELP,
    Style,
    add_color_argument,
    load_quietly,
    shown_name,
    unknown_connection,
)

__all__ = ["add_arguments", "render", "run"]

_INDENT = " " * 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassette", help=CASSETTE_HELP)
    parser.add_argument("--conn", type=int, action="append", metavar="K", help="only connection K (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the conversation as JSON, for scripts")
    add_color_argument(parser)


def run(args: argparse.Namespace) -> int:
    cassette = load_quietly(args.cassette)
    name = shown_name(args.cassette)
    if unknown_connection("show", cassette, name, args.conn):
        return 2
    conns = conversation(cassette, args.conn)
    out = sys.stdout
    if args.json:
        doc = {
            "cassette": name,
            "format": cassette.header.format,
            "truncated": bool(cassette.warnings),
            "connections": [c.to_json() for c in conns],
        }
        json.dump(doc, out, ensure_ascii=False, indent=1)
        out.write("\n")
        return 0
    style = Style(out, args.color)
    n = len(cassette.connections)
    print(style(name, "bold") + f": cassette format {cassette.header.format}, "
          f"{n} connection{'s' if n != 1 else ''}", file=out)
    for exchange in cassette.exchanges:
        print(_exchange(exchange), file=out)
    for c in conns:
        render(c, out, style)
    return 0


def _exchange(exchange: HttpExchange) -> str:
    """One HTTP exchange (a client secret minted) as a line."""
    secret = " (an ephemeral key, recorded as a placeholder)" if PLACEHOLDER.encode() in exchange.response.body() else ""
    return (
        f"http {exchange.n}: {exchange.request.method} {exchange.request.path} -> HTTP "
        f"{exchange.response.status}{secret}"
    )


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:,.0f} ms"


def render(c: ConversationConnection, out: TextIO, style: Style) -> None:
    """One connection, one line per entry (more for a response's outputs)."""
    print("", file=out)
    print(style(f"connection {c.conn}", "bold") + f": {c.target} ({c.protocol.upper()}), "
          f"{c.duration:.3f} s, {c.frames} frames", file=out)
    settings = session_settings(c.session, c.protocol)
    if settings:
        text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in settings.items())
        print(style(f"  session: {text}", "dim"), file=out)
    turn = 0
    for e in c.entries:
        if e.turn != turn:
            turn = e.turn
            print(style(f"  turn {turn}", "bold"), file=out)
        who, color, lines = _describe(e)
        head = style(f"{e.at:9.3f}", "dim") + "  " + style(f"{who:<9}", color)
        print(f"{head} {lines[0]}", file=out)
        for line in lines[1:]:
            print(f"{_INDENT}{line}", file=out)


def _describe(e: Entry) -> tuple[str, str, list[str]]:
    if isinstance(e, UserText):
        added = "" if e.role == "user" else " (added by the client)"
        if e.audio:
            return e.role, "green", [f"audio {e.duration or 0:.2f} s (in a conversation item){added}" + (f": {_quote(e.text)}" if e.text else "")]
        return e.role, "green", [_quote(e.text) + added]
    if isinstance(e, UserAudio):
        detail = [f"from {e.t:.3f} s"]
        if e.speech is not None:
            start, stop = e.speech
            detail.append(f"speech {start if start is not None else '?'}-{stop if stop is not None else '?'} ms")
        if e.status != "committed":
            detail.append({"cleared": "cleared by the client", "pending": "never committed"}.get(e.status, e.status))
        text = f"audio {e.duration:.2f} s ({', '.join(detail)})"
        if e.transcript is not None:
            text += f": {_quote(e.transcript)}"
        elif e.transcript_error:
            text += f": transcription failed: {e.transcript_error}"
        return "user", "green", [text]
    if isinstance(e, Response):
        status = e.status or "unfinished"
        if e.reason:
            status += f" ({e.reason})"
        if e.done is None:
            status = "never finished (the recording stops here)"
        timing = [f"first delta {_ms(e.latency)}" + (f" after {e.trigger}" if e.trigger else "") if e.first_delta is not None else "no delta"]
        if e.duration is not None:
            timing.append(f"done in {_ms(e.duration)}")
        lines = [f"response {status}: {', '.join(timing)}"]
        for out in e.outputs:
            lines.extend(_output(out))
        return "assistant", "cyan", lines
    if isinstance(e, Translation):
        lines = [f"audio {e.duration:.2f} s: {_quote(e.text)}"]
        if e.source:
            lines.append(f"heard: {_quote(e.source)}")
        return "translat.", "cyan", lines
    if isinstance(e, FunctionOutput):
        name = f" {e.name}" if e.name else ""
        return "client", "yellow", [f"function output{name}: {e.output}"]
    if isinstance(e, SessionUpdate):
        keys = ", ".join(sorted(e.session)) if isinstance(e.session, dict) else json.dumps(e.session)
        return "client", "yellow", [f"session.update ({keys})"]
    if isinstance(e, ErrorEvent):
        culprit = f" (answering {e.culprit})" if e.culprit else ""
        return "error", "red", [f"{e.code or e.type or 'error'}: {e.message}{culprit}"]
    if isinstance(e, Cancel):
        return "client", "yellow", ["response.cancel" + (f" {e.response_id}" if e.response_id else "")]
    if isinstance(e, Truncate):
        return "client", "yellow", [f"truncate {e.item_id or '?'}: audio heard {e.audio_end_ms} ms"]
    if isinstance(e, OtherFrame):
        what = e.type or ""
        return e.dir, "yellow" if e.dir == "client" else "blue", [f"{what} {e.detail}".strip()]
    if isinstance(e, End):
        if e.how == "refused":
            return "end", "red", [f"handshake refused with HTTP {e.status}: {e.reason}"]
        if e.how == "open":
            return "end", "red", ["never closed: the recording stops here (a recorder killed?)"]
        who = f" by the {e.by}" if e.by else ""
        reason = f", {_quote(e.reason)}" if e.reason else ""
        return "end", "dim", [f"closed{who} (code {e.code}{reason})"]
    return "?", "dim", [e.kind]


def _output(out: Message | FunctionCall) -> list[str]:
    if isinstance(out, FunctionCall):
        return [f"call {out.name or '?'}({out.arguments}) {out.call_id or ''}".rstrip()]
    lines = []
    if out.audio or out.transcript:
        lines.append(f"audio {out.duration:.2f} s: {_quote(out.transcript)}")
    if out.text:
        lines.append(f"text: {_quote(out.text)}")
    if out.status and out.status != "completed":
        lines.append(f"(message {out.status})")
    return lines or ["(empty message)"]
