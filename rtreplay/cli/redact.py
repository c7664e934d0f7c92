"""``rtreplay redact``: today's redaction rules (and yours) applied to existing cassettes."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from typing import Any

from ..audiofiles import write_cassette
from ..cassette import AUDIO_FILES_FORMAT, AudioFile, Frame, Header, Record
from ..codec import CassetteReader, encode_record
from ..redact import REDACTED, Redactor

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassettes", nargs="+", metavar="CASSETTE", help="cassette files (.jsonl), rewritten in place")
    parser.add_argument("--header", action="append", default=[], metavar="NAME", help="another handshake header to blank")
    parser.add_argument("--query", action="append", default=[], metavar="NAME", help="another query parameter to blank")
    parser.add_argument(
        "--json-path", action="append", default=[], metavar="PATH",
        help="a dotted path in events to blank, '*' for any key or index (item.content.*.text)",
    )
    parser.add_argument("--pattern", action="append", default=[], metavar="REGEX", help="text to replace by REDACTED")
    parser.add_argument(
        "--secret-env", action="append", default=[], metavar="VAR",
        help="hunt for the value of this environment variable (a live key) everywhere",
    )
    parser.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    parser.add_argument("--check", action="store_true", help="like --dry-run, and exit 1 if anything would change (for CI)")


def _describe(record: Record) -> str:
    kind = type(record).__name__.lower()
    conn = getattr(record, "conn", None)
    if isinstance(record, Frame):
        event = None
        with contextlib.suppress(ValueError):
            event = record.event()
        etype = event.get("type") if isinstance(event, dict) else None
        what = f"{record.dir} event {etype!r}" if isinstance(etype, str) else f"{record.dir} frame"
        return f"connection {conn}, {what}"
    return f"connection {conn}, {kind} record" if conn is not None else f"{kind} record"


def run(args: argparse.Namespace) -> int:
    try:
        patterns = [re.compile(p) for p in args.pattern]
        Redactor(patterns=patterns)  # refuses a pattern that matches the empty string
    except re.error as exc:
        print(f"rtreplay redact: error: --pattern {exc.pattern!r}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"rtreplay redact: error: --pattern: {exc}", file=sys.stderr)
        return 2
    secrets = []
    for var in args.secret_env:
        value = os.environ.get(var)
        if not value:
            print(f"rtreplay redact: error: --secret-env {var}: the variable is not set", file=sys.stderr)
            return 2
        secrets.append(value)
    dry = args.dry_run or args.check
    changed_any = False
    for name in args.cassettes:
        redactor = Redactor(
            secrets=secrets, headers=args.header, query=args.query, json_paths=args.json_path, patterns=patterns
        )
        records: list[Record] = []
        changes: list[str] = []
        with CassetteReader(name, verify_audio=True) as reader:
            fmt = 1
            for record in reader:
                if isinstance(record, Header):
                    fmt = record.format
                if isinstance(record, (Header, AudioFile)):
                    records.append(record)
                    continue
                clean = redactor.record(record)
                before, after = encode_record(record), encode_record(clean)
                if before != after:
                    n = max(1, after.count(REDACTED.encode()) - before.count(REDACTED.encode()))
                    changes.append(f"  line {reader.line}: {_describe(record)}: {n} value{'s' if n != 1 else ''} redacted")
                records.append(clean)
        if not changes:
            print(f"{name}: nothing to redact")
            continue
        changed_any = True
        verb = "would change" if dry else "changed"
        print(f"{name}: {verb} {len(changes)} record{'s' if len(changes) != 1 else ''}:")
        for line in changes:
            print(line)
        if not dry:
            audio: Any = "files" if fmt >= AUDIO_FILES_FORMAT else "inline"
            write_cassette(records, name, audio=audio)
    return 1 if args.check and changed_any else 0


