"""``rtreplay verify``: a cassette checked against the live API; the drift reported.

docs/driving.md ("Verify a recording against the live API") is the manual.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from ..verify import DEFAULT_UPSTREAM, verify
from .drive import add_timing_arguments, api_key_from

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rtreplay verify``."""
    parser.add_argument("cassette", help="the cassette whose recorded client to play (.jsonl)")
    parser.add_argument(
        "--upstream",
        default=DEFAULT_UPSTREAM,
        metavar="URL",
        help=f"the live endpoint's base URL, as rtreplay record takes it (default {DEFAULT_UPSTREAM})",
    )
    parser.add_argument(
        "--record-to",
        metavar="NEW.jsonl",
        help="also write what was exchanged as a new cassette (nothing is written without it)",
    )
    add_timing_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the drift as JSON")


def run(args: argparse.Namespace) -> int:
    """Run ``rtreplay verify``: 0 no drift, 1 drift, 2 unusable input or no connection."""
    key = api_key_from(args)
    try:
        report = asyncio.run(
            verify(
                args.cassette,
                args.upstream,
                api_key=key,
                speed=args.speed,
                audio_speed=args.audio_speed,
                timeout=args.timeout,
                record_to=args.record_to,
            )
        )
    except ValueError as exc:
        print(f"rtreplay verify: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(report)
    if report.errors:
        return 2
    return 0 if report.ok else 1
