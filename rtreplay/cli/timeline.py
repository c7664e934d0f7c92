"""``rtreplay timeline``: one self-contained HTML page of a cassette in time."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..timeline import timeline_html
from ._common import load_quietly

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassette", help="path to a cassette (.jsonl)")
    parser.add_argument("-o", "--out", required=True, metavar="FILE.html", help="the page to write")
    parser.add_argument("--conn", type=int, action="append", metavar="K", help="only connection K (repeatable)")


def run(args: argparse.Namespace) -> int:
    cassette = load_quietly(args.cassette)
    html = timeline_html(cassette, title=args.cassette, conns=args.conn)
    out = Path(args.out)
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        print(f"rtreplay timeline: error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    n = len(cassette.connections) if not args.conn else len(args.conn)
    print(f"{out}: {n} connection{'s' if n != 1 else ''}, {len(html):,} bytes; open it in a browser")
    return 0
