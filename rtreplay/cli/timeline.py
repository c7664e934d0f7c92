"""``rtreplay timeline``: one self-contained HTML page of a cassette in time."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..timeline_page import timeline_data, timeline_html
from ._common import CASSETTE_HELP, load_quietly, shown_name, unknown_connection

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassette", help=CASSETTE_HELP)
    parser.add_argument("-o", "--out", required=True, metavar="FILE.html", help="the page to write")
    parser.add_argument("--conn", type=int, action="append", metavar="K", help="only connection K (repeatable)")


def run(args: argparse.Namespace) -> int:
    cassette = load_quietly(args.cassette)
    name = shown_name(args.cassette)
    if unknown_connection("timeline", cassette, name, args.conn):
        return 2
    data = timeline_data(cassette, args.conn)
    html = timeline_html(cassette, title=name, data=data)
    out = Path(args.out)
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        print(f"rtreplay timeline: error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    n = len(data)
    events = sum(len(c["events"]) for c in data)
    clips = sum(len(c["clips"]) for c in data)
    print(
        f"{out}: {n} connection{'s' if n != 1 else ''}, {events} events, "
        f"{clips} audio clip{'s' if clips != 1 else ''}; open it in a browser"
    )
    return 0
