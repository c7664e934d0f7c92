"""What the subcommands share: loading a cassette quietly, colour on a terminal."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import ClassVar, TextIO

from ..cassette import Cassette
from ..codec import load
from ..errors import CassetteTruncatedWarning

__all__ = ["Style", "add_color_argument", "load_quietly", "unknown_connection"]


def load_quietly(path: str) -> Cassette:
    """A whole cassette; a last line cut short (a killed recorder) is said once on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CassetteTruncatedWarning)
        cassette = load(path)
    for warning in cassette.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return cassette


def unknown_connection(command: str, cassette: Cassette, path: str, wanted: list[int] | None) -> bool:
    """Whether ``--conn`` names a connection the cassette lacks (then said on stderr)."""
    have = [c.open.conn for c in cassette.connections]
    missing = [k for k in wanted or () if k not in have]
    if missing:
        listed = ", ".join(str(k) for k in have) or "none"
        print(f"rtreplay {command}: error: no connection {missing[0]} in {path} (it has: {listed})", file=sys.stderr)
    return bool(missing)


def add_color_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output: auto (on a terminal, unless NO_COLOR is set), always, never",
    )


class Style:
    """ANSI colours when wanted (https://no-color.org: a non-empty NO_COLOR turns them off)."""

    CODES: ClassVar[dict[str, str]] = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35", "cyan": "36"}

    def __init__(self, stream: TextIO, mode: str = "auto") -> None:
        if mode == "always":
            self.on = True
        elif mode == "never":
            self.on = False
        else:
            isatty = getattr(stream, "isatty", None)
            self.on = (
                not os.environ.get("NO_COLOR")
                and os.environ.get("TERM") != "dumb"
                and bool(isatty and isatty())
            )

    def __call__(self, text: str, *styles: str) -> str:
        if not self.on or not styles:
            return text
        codes = ";".join(self.CODES[s] for s in styles)
        return f"\033[{codes}m{text}\033[0m"
