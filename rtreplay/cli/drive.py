"""``rtreplay drive``: your server driven with a cassette's recorded client, its answers checked.

With ``--concurrency N --repeat M``, a load test (:mod:`rtreplay.loadtest`). The options
``--speed``, ``--audio-speed``, ``--timeout`` and ``--api-key-env`` are shared with
``rtreplay verify``. docs/driving.md is the manual.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from typing import Any

from ..drive import Drive
from ..driver import DEFAULT_TIMEOUT
from ..loadtest import load

__all__ = ["add_arguments", "add_timing_arguments", "api_key_from", "run"]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text}")
    return value


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """The pacing, bound and credential options ``drive`` and ``verify`` share."""
    parser.add_argument(
        "--speed",
        type=_seconds,
        default=1.0,
        help="pacing of client events: 1 as recorded (default), 2 twice as fast, 0 as soon "
        "as the server events they follow have come",
    )
    parser.add_argument(
        "--audio-speed",
        type=_seconds,
        default=1.0,
        metavar="SPEED",
        help="pacing of audio appends: 1 real time (default), 4 four times faster, 0 at once",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="how long the server may stay silent while a recorded event is awaited "
        f"(default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the key sent where the recording sent a "
        "credential (default OPENAI_API_KEY; cassettes never hold one)",
    )


def api_key_from(args: argparse.Namespace) -> str | None:
    return os.environ.get(args.api_key_env) or None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rtreplay drive``."""
    parser.add_argument("cassette", help="the cassette whose recorded client to play (.jsonl)")
    parser.add_argument(
        "--url",
        required=True,
        help="the server under test: ws://HOST:PORT[/PATH] (without a path, the recorded one)",
    )
    parser.add_argument(
        "--match",
        choices=("type", "structure", "exact"),
        default="type",
        help="how server events are compared: type only (default), structure (fields and "
        "their JSON types), exact (every value but IDs, timestamps, usage, rate limits)",
    )
    add_timing_arguments(parser)
    parser.add_argument(
        "--concurrency", type=_whole, default=1, metavar="N", help="run N sessions at once (load)"
    )
    parser.add_argument(
        "--repeat", type=_whole, default=1, metavar="M", help="each of them M times in a row (load)"
    )
    parser.add_argument("--report", metavar="FILE", help="also write the report as JSON to FILE")


def run(args: argparse.Namespace) -> int:
    """Run ``rtreplay drive``: 0 as recorded, 1 mismatches, 2 bad input or no connection."""
    import warnings

    from ..errors import CassetteTruncatedWarning

    with warnings.catch_warnings():
        # Said once, in the report's notes, rather than as a Python warning with a source line.
        warnings.simplefilter("ignore", CassetteTruncatedWarning)
        return _drive_main(args)


def _drive_main(args: argparse.Namespace) -> int:
    import json

    key = api_key_from(args)
    try:
        if args.concurrency > 1 or args.repeat > 1:

            result: Any = asyncio.run(
                load(
                    args.cassette,
                    args.url,
                    concurrency=args.concurrency,
                    repeat=args.repeat,
                    match=args.match,
                    speed=args.speed,
                    audio_speed=args.audio_speed,
                    timeout=args.timeout,
                    api_key=key,
                )
            )
            mismatches = [] if result.first_failure is None else result.first_failure.mismatches
        else:
            result = Drive(
                args.cassette,
                args.url,
                match=args.match,
                speed=args.speed,
                audio_speed=args.audio_speed,
                timeout=args.timeout,
                api_key=key,
            ).run_sync()
            mismatches = result.mismatches
    except ValueError as exc:
        print(f"rtreplay drive: error: {exc}", file=sys.stderr)
        return 2
    print(result)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(result.to_dict(), f, indent=1, default=str)
            f.write("\n")
    if any(m.kind == "unreachable" for m in mismatches):
        return 2
    return 0 if result.ok else 1
