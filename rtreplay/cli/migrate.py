"""``rtreplay migrate``: beta cassettes rewritten in the GA shapes (:mod:`rtreplay.migrate`)."""

from __future__ import annotations

import argparse
import sys

from ..codec import load, save
from ..migrate import migrate_cassette
from ..validate import validate_cassette

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassettes", nargs="+", metavar="CASSETTE", help="cassette files (.jsonl), rewritten in place")
    parser.add_argument("-o", "--out", metavar="PATH", help="write here instead of in place (one cassette only)")


def run(args: argparse.Namespace) -> int:
    if args.out and len(args.cassettes) > 1:
        print("rtreplay migrate: error: --out takes one cassette", file=sys.stderr)
        return 2
    status = 0
    for name in args.cassettes:
        result = migrate_cassette(load(name))
        if not result.connections:
            print(f"{name}: every connection is GA already; nothing to migrate", flush=True)
            continue
        target = save(result.cassette, args.out or name)
        added = ", ".join(f"{n} {kind}" for kind, n in sorted(result.added.items()))
        problems = validate_cassette(target)
        print(
            f"{target}: {result.connections} beta connection(s) now GA: {result.renamed} events renamed, "
            f"{result.reshaped} reshaped" + (f", {added} added" if added else "")
            + (f"; validate: {len(problems)} problem(s)" if problems else "; validate: ok"),
            flush=True,
        )
        for problem in problems:
            print(problem)
            status = 1
    return status
