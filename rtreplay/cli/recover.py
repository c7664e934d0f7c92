"""``rtreplay recover``: the partial file of an interrupted recording made the cassette."""

from __future__ import annotations

import argparse

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
        "--replace",
        action="store_true",
        help="replace the cassette if it exists (by default an existing cassette is left as it is)",
    )


def run(args: argparse.Namespace) -> int:
    target, source, count = recover(args.cassette, partial=args.partial, replace=args.replace)
    print(f"{target}: recovered from {source} ({count:,} records; {source.name} removed)", flush=True)
    return 0
