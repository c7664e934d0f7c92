"""The ``rtreplay`` command: ``serve``, ``record``, ``inspect`` and ``validate``.

``main(argv=None) -> int`` is the whole command; ``python -m rtreplay`` and the console
script call it, and so do the tests. Each subcommand lives beside the module it drives
(``server.serve_main``, ``recorder.record_main``...); this module only wires them.
Exit codes: 0 success, 1 the subcommand's own failure (mismatches, invalid events),
2 bad usage or an unusable cassette.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence

from ._version import __version__
from .errors import RtreplayError

__all__ = ["main"]


def _inspect_main(args: argparse.Namespace) -> int:
    from .codec import load

    cassette = load(args.cassette)
    out = sys.stdout
    print(
        f"{args.cassette}: cassette format {cassette.header.format}, "
        f"written by rtreplay {cassette.header.rtreplay}"
        + (f" on {cassette.header.created}" if cassette.header.created else ""),
        file=out,
    )
    for conn in cassette.connections:
        o = conn.open
        query = "&".join(f"{k}={v}" for k, v in o.query.items())
        target = o.path + (f"?{query}" if query else "")
        print(f"connection {o.conn}: {target} ({o.protocol.upper()} protocol)", file=out)
        if conn.reject is not None:
            print(f"  refused with HTTP {conn.reject.status}: {conn.reject.body[:200]}", file=out)
            continue
        sent = Counter[str]()
        for direction in ("client", "server"):
            frames = [f for f in conn.frames if f.dir == direction]
            size = sum(len(f.payload_bytes()) for f in frames)
            sent.clear()
            for frame in frames:
                event = frame.event()
                kind = event.get("type") if isinstance(event, dict) else None
                sent[kind if isinstance(kind, str) else "(not an event)"] += 1
            print(f"  {direction}: {len(frames)} frames, {size:,} bytes", file=out)
            for kind, count in sent.most_common():
                print(f"    {count:5d} {kind}", file=out)
        duration = conn.frames[-1].t if conn.frames else 0.0
        if conn.close is not None:
            c = conn.close
            duration = max(duration, c.t)
            who = f" by the {c.by}" if c.by else ""
            reason = f" ({c.reason})" if c.reason else ""
            print(f"  closed{who} with code {c.code}{reason} after {duration:.3f} s", file=out)
        else:
            print(f"  never closed (recording interrupted?) after {duration:.3f} s", file=out)
    for warning in cassette.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtreplay",
        description="Record and replay OpenAI Realtime API WebSocket sessions.",
    )
    parser.add_argument("--version", action="version", version=f"rtreplay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("inspect", help="summarise a cassette: connections, events, closes")
    p.add_argument("cassette", help="path to a cassette (.jsonl)")
    p.set_defaults(run=_inspect_main)

    from . import recorder, server, validate

    commands = [
        ("serve", "replay a cassette from a local mock Realtime server", server.add_serve_arguments, server.serve_main),
        ("record", "record live sessions through a proxy into a cassette", recorder.add_record_arguments, recorder.record_main),
        ("validate", "check a cassette's events against the Realtime schema", validate.add_validate_arguments, validate.validate_main),
    ]
    for name, help_text, add_arguments, run in commands:
        p = sub.add_parser(name, help=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except RtreplayError as exc:
        print(f"rtreplay {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
