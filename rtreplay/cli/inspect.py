"""``rtreplay inspect``: a cassette's HTTP exchanges and connections (their endpoint, event
counts per side, and closes)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from ..codec import load
from ..protocol import REALTIME, profile_for
from ._common import CASSETTE_HELP, cassette_source, shown_name

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassette", help=CASSETTE_HELP)


def run(args: argparse.Namespace) -> int:
    source, name = cassette_source(args.cassette)
    cassette = load(source, name=name)
    out = sys.stdout
    print(
        f"{shown_name(args.cassette)}: cassette format {cassette.header.format}, "
        f"written by rtreplay {cassette.header.rtreplay}"
        + (f" on {cassette.header.created}" if cassette.header.created else ""),
        file=out,
    )
    for exchange in cassette.exchanges:
        req, res = exchange.request, exchange.response
        print(f"http {exchange.n}: {req.method} {req.path} -> HTTP {res.status} after {exchange.duration:.3f} s", file=out)
    for conn in cassette.connections:
        o = conn.open
        query = "&".join(f"{k}={v}" for k, v in o.query.items())
        target = o.path + (f"?{query}" if query else "")
        profile = profile_for(o.path, o.query)
        endpoint = f", {profile.title}" if profile is not None and profile is not REALTIME else ""
        print(f"connection {o.conn}: {target} ({o.protocol.upper()} protocol{endpoint})", file=out)
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
