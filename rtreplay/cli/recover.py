"""``rtreplay recover``: the partial file of an interrupted recording made the cassette."""

from __future__ import annotations

import argparse
import sys

from ..codec import recover

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassette", metavar="CASSETTE", help="the cassette the recording was writing (.jsonl)")
    parser.add_argument(
        "--partial",
        metavar="FILE",
        help="which partial file (default: the newest <CASSETTE>.<pid>.partial whose process is gone)",
    )
    parser.add_argument(
        "--truncate",
        action="store_true",
        help="when a damaged line has records after it, keep the records before it and drop "
        "the rest (by default recover refuses; the partial file is kept whole either way)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace the cassette if it exists (by default an existing cassette is left as it is)",
    )


def run(args: argparse.Namespace) -> int:
    done = recover(args.cassette, partial=args.partial, replace=args.replace, truncate=args.truncate)
    if done.dropped is None:
        print(f"{done.cassette}: recovered from {done.source} ({done.records:,} record{'s' if done.records != 1 else ''}; {done.source.name} removed)", flush=True)
        return 0
    print(
        f"{done.cassette}: recovered from {done.source} ({done.records:,} record{'s' if done.records != 1 else ''} before its damaged line; "
        f"kept whole as {done.damaged})",
        flush=True,
    )
    print(f"rtreplay recover: warning: {done.dropped}", file=sys.stderr)
    return 0
