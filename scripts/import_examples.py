"""Turn the raw example sessions (``{"t_ms", "dir", "frame"}`` per line) into v1 cassettes.

Usage: python scripts/import_examples.py SRC.jsonl... --out cassettes/

Each source becomes one cassette of one GA connection to ``/v1/realtime?model=gpt-realtime``
that the client closes normally just after the last recorded frame. Frames are written as
compact JSON, which is what the real API sends.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec

from rtreplay.cassette import Close, Frame, Header, Open
from rtreplay.codec import CassetteWriter


def convert(src: Path, out: Path) -> Path:
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    target = out / src.name
    with CassetteWriter(target, header=Header(created="2026-11-21T00:00:00Z")) as writer:
        writer.write(
            Open(
                conn=0,
                path="/v1/realtime",
                query={"model": "gpt-realtime"},
                protocol="ga",
                headers={"authorization": "Bearer REDACTED", "user-agent": "AsyncOpenAI/Python 3.52.0"},
            )
        )
        last = 0.0
        for row in rows:
            last = row["t_ms"] / 1000
            text = msgspec.json.encode(row["frame"]).decode()
            writer.write(Frame.from_message(0, last, row["dir"], text), flush=False)
        writer.write(Close(conn=0, t=round(last + 0.05, 6), code=1000, reason="", by="client"))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sources", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("cassettes"))
    args = parser.parse_args()
    for src in args.sources:
        print(convert(src, args.out))


if __name__ == "__main__":
    main()
