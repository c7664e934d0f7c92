"""What the subcommands share: loading a cassette quietly, colour on a terminal."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import IO, ClassVar, TextIO

from ..cassette import Cassette
from ..codec import load
from ..errors import CassetteError, CassetteTruncatedWarning

__all__ = ["CASSETTE_HELP", "STDIN", "Style", "add_color_argument", "cassette_source", "load_quietly", "one_stdin", "shown_name", "unknown_connection"]

# What errors call a cassette read from standard input (the argument "-").
STDIN = "<stdin>"
# The help of a CASSETTE argument that may be "-" (see cassette_source()).
CASSETTE_HELP = "path to a cassette (.jsonl), or - to read it from standard input"


def cassette_source(path: str) -> tuple[str | IO[bytes], str | None]:
    """What to read for a CASSETTE argument, and its name in errors: ``-`` is standard
    input (``<stdin>``), as in most command-line tools; anything else a path.

    Raises :class:`~rtreplay.errors.CassetteError` when ``-`` is given and standard input
    is a terminal: reading it would wait for typing that never comes.
    """
    if path != "-":
        return path, None
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    if stdin is None:
        raise CassetteError(STDIN, "no standard input to read the cassette from")
    if stdin.isatty():
        raise CassetteError(
            STDIN,
            "is a terminal: '-' reads the cassette from standard input, so pipe one in "
            "(`< cassette.jsonl` after the command, or `cat cassette.jsonl |` before it)",
        )
    return stdin, STDIN


def shown_name(path: str) -> str:
    """How output names a CASSETTE argument: ``<stdin>`` for ``-``, else as given."""
    return STDIN if path == "-" else path


def one_stdin(command: str, paths: list[str]) -> bool:
    """Whether ``-`` is given more than once (then said on stderr): stdin is read once."""
    if paths.count("-") > 1:
        print(f"rtreplay {command}: error: '-' (standard input) can be given once: it is read once", file=sys.stderr)
        return True
    return False


def load_quietly(path: str) -> Cassette:
    """A whole cassette (``-``: from standard input); a last line cut short (a killed
    recorder) is said once on stderr."""
    source, name = cassette_source(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CassetteTruncatedWarning)
        cassette = load(source, name=name)
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
