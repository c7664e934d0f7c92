"""``rtreplay audio``: WAV files of what the user sent and what the assistant said, per turn."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..conversation import Message, Response, UserAudio, UserText, conversation, wav_bytes
from ._common import CASSETTE_HELP, load_quietly, shown_name, unknown_connection

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassette", help=CASSETTE_HELP)
    parser.add_argument("-o", "--out", required=True, metavar="DIR", help="directory to write the WAV files to (created)")
    parser.add_argument("--conn", type=int, action="append", metavar="K", help="only connection K (repeatable)")
    parser.add_argument(
        "--pcm", action="store_true",
        help="decode G.711 audio to 16-bit PCM (for players that do not read G.711 WAV files)",
    )


def run(args: argparse.Namespace) -> int:
    cassette = load_quietly(args.cassette)
    name = shown_name(args.cassette)
    if unknown_connection("audio", cassette, name, args.conn):
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"rtreplay audio: error: cannot create {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    written = 0
    for c in conversation(cassette, args.conn):
        used: dict[str, int] = {}
        for e in c.entries:
            clips: list[tuple[str, bytes, str | None]] = []
            fmt = c.input_format
            if isinstance(e, UserAudio) and e.audio:
                clips.append(("user", e.audio, e.transcript))
                fmt = e.format
            elif isinstance(e, UserText) and e.audio:
                clips.append((e.role, e.audio, e.text or None))
            elif isinstance(e, Response):
                fmt = c.output_format
                for o in e.outputs:
                    if isinstance(o, Message) and o.audio:
                        clips.append(("assistant", o.audio, o.transcript))
            for who, data, transcript in clips:
                stem = f"conn{c.conn}-turn{e.turn:02d}-{who}"
                used[stem] = used.get(stem, 0) + 1
                name = stem + (f"-{used[stem]}" if used[stem] > 1 else "") + ".wav"
                (out / name).write_bytes(wav_bytes(data, fmt, pcm=args.pcm))
                written += 1
                said = f"  {json.dumps(transcript, ensure_ascii=False)}" if transcript else ""
                print(f"{out / name}  {fmt.duration(len(data)):6.2f} s  {fmt.label}{said}")
    if not written:
        print(f"rtreplay audio: {name} has no audio", file=sys.stderr)
    return 0
