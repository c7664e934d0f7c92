"""The ``rtreplay`` command: ``serve``, ``record``, ``show``, ``diff``, ``audio``, ``timeline``, ``migrate``, ``recover``...

``main(argv=None) -> int`` is the whole command; ``python -m rtreplay`` and the console
script call it, and so do the tests. Each subcommand is a module with
``add_arguments(parser)`` and ``run(args) -> int`` that reuses the library (``serve``,
``record`` and ``validate`` live beside the module they drive). Exit codes: 0 success,
1 the subcommand's own finding (mismatches, invalid events, a difference), 2 bad usage or
an unusable cassette. Every command behaves in a pipe: ``rtreplay show x | head`` stops
quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._version import __version__
from ..codec import partial_note
from ..errors import CassetteError, CassetteNotFoundError, RtreplayError

__all__ = ["build_parser", "main"]

# name, one-line help, description, example, where add_arguments/run live
_COMMANDS: list[tuple[str, str, str, str, str]] = [
    (
        "serve",
        "replay a cassette from a local mock Realtime server",
        "Replay a cassette from a local mock Realtime server: any client pointed at the "
        "printed websocket_base_url gets the recorded session, with no key and no network.",
        "rtreplay serve cassettes/text-response.jsonl --port 0 --report report.json --fail-on-mismatch",
        "..server:add_serve_arguments:serve_main",
    ),
    (
        "record",
        "record live sessions through a proxy into a cassette",
        "Record live Realtime sessions through a local proxy into a cassette; keys and "
        "secrets never reach the disk.",
        "OPENAI_API_KEY=sk-... rtreplay record --out cassettes/hello.jsonl --port 8765",
        "..recorder:add_record_arguments:record_main",
    ),
    (
        "show",
        "the conversation of a cassette: turns, transcripts, calls, errors, timings",
        "Print a cassette as a conversation, per connection and in order: user turns (text, "
        "or audio with its duration and transcript), assistant turns, function calls and "
        "their outputs, errors, cancellations, truncations, voice activity, and per "
        "response the time to its first delta and its duration.",
        "rtreplay show cassettes/function-call.jsonl --color always | less -R",
        ".show",
    ),
    (
        "diff",
        "what changed between two recordings of the same test, turn by turn",
        "Compare two cassettes as conversations: what was said, called and answered, turn "
        "by turn, ignoring IDs, timestamps, event IDs and audio bytes (audio is compared by "
        "duration). Exit status 0 when they say the same, 1 when they differ, 2 on an error.",
        "rtreplay diff <(git show main:cassettes/test_x.jsonl) cassettes/test_x.jsonl",
        ".diff",
    ),
    (
        "audio",
        "WAV files of what the user sent and the assistant said, per turn",
        "Write the audio of a cassette as WAV files, one per user turn and per assistant "
        "message, in the session's format (PCM16 24 kHz, or G.711 at 8 kHz), named "
        "conn<K>-turn<NN>-<who>.wav.",
        "rtreplay audio cassettes/interruption.jsonl --out /tmp/interruption-audio",
        ".audio",
    ),
    (
        "timeline",
        "one HTML page showing the session in time, with audio you can play",
        "Write one self-contained HTML page (no network) showing each connection in time: "
        "client and server lanes, every event (its JSON on hover or click), the audio as "
        "waveforms that play in the page, and each response's latency.",
        "rtreplay timeline cassettes/interruption.jsonl --out /tmp/interruption.html",
        ".timeline",
    ),
    (
        "inspect",
        "summarise a cassette: connections, event counts, closes",
        "Summarise a cassette: for each connection its path, protocol, frames and bytes "
        "each way, the event types each side sent, and how it closed.",
        "rtreplay inspect cassettes/function-call.jsonl",
        ".inspect",
    ),
    (
        "validate",
        "check a cassette's events (and its audio files) against the Realtime schema",
        "Check every event of each cassette against the Realtime API schema of its "
        "endpoint and protocol (known type for its direction, required top-level fields), "
        "and that every audio file a cassette refers to is there and intact. An event type "
        "the schema does not know yet, of a plausible shape, is a warning unless --strict.",
        "rtreplay validate --strict cassettes/*.jsonl",
        "..validate:add_validate_arguments:validate_main",
    ),
    (
        "drive",
        "drive your server with a cassette's recorded client, and check its answers",
        "Play a cassette's recorded client side to a server under test (a relay, a proxy, "
        "your own Realtime server) and compare what it sends with the recorded server side: "
        "streams whole, independent events in any order, IDs learned, volatile fields "
        "masked. With --concurrency and --repeat, many sessions at once and the latency a "
        "user would feel. Exit status 0 as recorded, 1 a mismatch, 2 bad input or no "
        "connection.",
        "rtreplay drive cassettes/function-call.jsonl --url ws://127.0.0.1:9000/v1/realtime",
        ".drive",
    ),
    (
        "verify",
        "play a cassette's client against the live API and report the drift",
        "Play a cassette's recorded client against the live Realtime API (or --upstream) "
        "and report drift: event types that appeared, disappeared or were renamed, fields "
        "added, removed or changed in type, refusals; never wording. Nothing is written "
        "unless --record-to. Exit status 0 no drift, 1 drift, 2 bad input or no connection.",
        "OPENAI_API_KEY=sk-... rtreplay verify cassettes/function-call.jsonl --record-to /tmp/new.jsonl",
        ".verify",
    ),
    (
        "migrate",
        "rewrite beta cassettes in the GA shapes, for a GA client",
        "Rewrite the beta connections of cassettes (recorded with OpenAI-Beta: realtime=v1, "
        "which the API no longer accepts) in the GA shapes a GA client records: event names, "
        "session, response and item fields, the item lifecycle, the handshake. In place and "
        "atomically, then validated.",
        "rtreplay migrate cassettes/beta-text.jsonl --out cassettes/ga-text.jsonl",
        ".migrate",
    ),
    (
        "redact",
        "apply today's redaction rules (and yours) to existing cassettes, in place",
        "Rewrite cassettes with today's redaction rules and your own, in place and "
        "atomically, and report what changed: for cassettes recorded before a rule existed.",
        "rtreplay redact cassettes/*.jsonl --json-path 'item.content.*.text' --dry-run",
        ".redact",
    ),
    (
        "recover",
        "make the partial file of an interrupted recording the cassette",
        "Make the <CASSETTE>.<pid>.partial file a killed or crashed recording left the "
        "cassette: its records are checked as any cassette's (a last line cut short by the "
        "interruption is dropped), written atomically, and the partial file removed. A "
        "damaged line ends what is kept: recover names it and refuses to drop the records "
        "after it unless --truncate (the partial file is then kept whole as .damaged). An "
        "existing cassette is left as it is unless --replace.",
        "rtreplay recover cassettes/test_hello/test_says_hello.jsonl",
        ".recover",
    ),
    (
        "convert",
        "move a cassette's audio into files beside it (format 2), or back inline",
        "Rewrite cassettes with their audio out of line, in content-addressed files under "
        "rtreplay-audio/ beside them (format 2), or back inline (format 1). A replay of the "
        "result sends the same bytes.",
        "rtreplay convert --audio files cassettes/*.jsonl",
        ".convert",
    ),
]


# The commands that read a cassette from standard input when given "-" (they only read it).
STDIN_COMMANDS = ("show", "inspect", "validate", "diff", "timeline", "audio")


def _load(where: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[Any], int]]:
    module_name, _, names = where.partition(":")
    module = importlib.import_module(module_name, __name__)
    if names:
        add, run = names.split(":")
        return getattr(module, add), getattr(module, run)
    return module.add_arguments, module.run


# What `rtreplay --help` ends with: the main commands as a first session uses them.
EXAMPLES = """\
examples:
  rtreplay record --out cassettes/hello.jsonl    record live sessions through a local proxy
                                                 (OPENAI_API_KEY set; Ctrl-C writes the cassette)
  rtreplay serve cassettes/hello.jsonl           replay it: point any client at the printed
                                                 websocket_base_url, no key, no network
  rtreplay validate cassettes/*.jsonl            check cassettes against the Realtime schema
  rtreplay show cassettes/hello.jsonl            read a cassette as a conversation
  rtreplay diff old.jsonl new.jsonl              what changed between two recordings
  rtreplay recover cassettes/hello.jsonl         keep what an interrupted recording wrote
  pytest --realtime-record                       record the tests' cassettes (plain pytest replays)

'rtreplay COMMAND --help' shows a command's options and an example; docs/cli.md has them all."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtreplay",
        description="Record and replay OpenAI Realtime API WebSocket sessions.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rtreplay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, description, example, where in _COMMANDS:
        add_arguments, run = _load(where)
        p = sub.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(p)
        # add_arguments may set its own description; ours is the one --help shows.
        p.description = description
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.run(args))
        sys.stdout.flush()
        return status
    except RtreplayError as exc:
        print(f"rtreplay {args.command}: error: {exc}", file=sys.stderr)
        # recover's complaint is of the partial file beside "-": a CassetteError, not "not found".
        if isinstance(exc, CassetteError) and str(exc.path) == "-" and args.command not in STDIN_COMMANDS:
            print(f"  note: '-' reads a cassette from standard input in {', '.join(STDIN_COMMANDS)}; "
                  f"{args.command} needs a file", file=sys.stderr)
        elif isinstance(exc, CassetteNotFoundError) and args.command != "recover":
            note = partial_note(exc.path)
            if note:  # the cassette was never finished: say where what was recorded is
                print(f"  note: {note}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`rtreplay show x | head`): stop quietly, as Unix tools do,
        # and keep Python from complaining again when it flushes stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (a test's capture)
            pass
        return 141
    except KeyboardInterrupt:
        return 130
