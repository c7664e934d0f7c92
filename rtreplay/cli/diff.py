"""``rtreplay diff``: two recordings of the same test compared as conversations."""

from __future__ import annotations

import argparse
import json
import sys

from ..conversation import Change, ConversationConnection, compare_lines, conversation, lines
from ._common import Style, add_color_argument, load_quietly, one_stdin, shown_name

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="the old cassette (- reads it from standard input)")
    parser.add_argument("b", metavar="B", help="the new cassette (- reads it from standard input)")
    parser.add_argument(
        "--audio-tolerance", type=float, default=0.1, metavar="SECONDS",
        help="audio durations this close count as the same (default 0.1 s)",
    )
    parser.add_argument("-U", "--context", type=int, default=3, metavar="N", help="unchanged lines shown around a change (default 3)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    add_color_argument(parser)


def run(args: argparse.Namespace) -> int:
    if one_stdin("diff", [args.a, args.b]):
        return 2
    a = conversation(load_quietly(args.a))
    b = conversation(load_quietly(args.b))
    pairs: list[tuple[str, list[Change]]] = []
    for k in range(max(len(a), len(b))):
        ca: ConversationConnection | None = a[k] if k < len(a) else None
        cb: ConversationConnection | None = b[k] if k < len(b) else None
        la = lines(ca) if ca is not None else []
        lb = lines(cb) if cb is not None else []
        label = f"connection {k}"
        if ca is None:
            label += " (only in B)"
        elif cb is None:
            label += " (only in A)"
        elif ca.target != cb.target:
            label += f" ({ca.target} -> {cb.target})"
        pairs.append((label, compare_lines(la, lb, args.audio_tolerance)))
    changed = sum(1 for _, changes in pairs for c in changes if c.sign != " ")
    out = sys.stdout
    if args.json:
        doc = {
            "a": shown_name(args.a),
            "b": shown_name(args.b),
            "same": changed == 0,
            "connections": [
                {"label": label, "changes": [{"sign": c.sign, "turn": c.line.turn, "line": c.line.shown} for c in changes]}
                for label, changes in pairs
            ],
        }
        json.dump(doc, out, ensure_ascii=False, indent=1)
        out.write("\n")
        return 1 if changed else 0
    style = Style(out, args.color)
    print(style(f"--- {shown_name(args.a)}", "red"), file=out)
    print(style(f"+++ {shown_name(args.b)}", "green"), file=out)
    for label, changes in pairs:
        if not any(c.sign != " " for c in changes):
            print(style(f"{label}: the same ({len(changes)} lines)", "dim"), file=out)
            continue
        print(style(f"@@ {label}", "cyan"), file=out)
        show = _near_changes(changes, args.context)
        last = -1
        for i, c in enumerate(changes):
            if i not in show:
                continue
            if last >= 0 and i != last + 1:
                print(style("  ...", "dim"), file=out)
            last = i
            text = f"{c.sign} turn {c.line.turn:>2}  {c.line.shown}"
            print(style(text, {"-": "red", "+": "green"}.get(c.sign, "dim")) if c.sign != " " else text, file=out)
    if changed:
        turns = {c.line.turn for _, changes in pairs for c in changes if c.sign != " "}
        print(f"{changed} line{'s' if changed != 1 else ''} differ, in {len(turns)} turn{'s' if len(turns) != 1 else ''}", file=out)
        return 1
    print("the same conversation", file=out)
    return 0


def _near_changes(changes: list[Change], context: int) -> set[int]:
    keep: set[int] = set()
    for i, c in enumerate(changes):
        if c.sign != " ":
            keep.update(range(max(0, i - context), min(len(changes), i + context + 1)))
    return keep
