"""``rtreplay convert``: a cassette's audio moved into files beside it (format 2), or back inline."""

from __future__ import annotations

import argparse
import os
import sys

from ..audiofiles import AUDIO_DIR, convert

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassettes", nargs="+", metavar="CASSETTE", help="cassette files (.jsonl), rewritten in place")
    parser.add_argument(
        "--audio",
        choices=("files", "inline"),
        default="files",
        help=f"files: audio in {AUDIO_DIR}/ beside the cassette (format 2, the default here); "
        "inline: everything in the one file (format 1)",
    )
    parser.add_argument("-o", "--out", metavar="PATH", help="write here instead of in place (one cassette only)")


def run(args: argparse.Namespace) -> int:
    if args.out and len(args.cassettes) > 1:
        print("rtreplay convert: error: --out takes one cassette", file=sys.stderr)
        return 2
    for name in args.cassettes:
        before = os.path.getsize(name) if os.path.isfile(name) else 0
        result = convert(name, args.out or name, audio=args.audio)
        audio = sum(p.stat().st_size for p in set(result.audio_files))
        where = f" in {len(set(result.audio_files))} file(s) under {result.path.parent / AUDIO_DIR}" if result.audio_files else ""
        moved = f"; audio of {result.frames_out_of_line} frames{where} ({audio:,} bytes)" if result.frames_out_of_line else ""
        print(
            f"{result.path}: format {result.format}, {before:,} -> {result.cassette_bytes:,} bytes{moved}",
            flush=True,
        )
    return 0
