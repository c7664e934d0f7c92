"""Time one way of loading a cassette, in a fresh process: ``loadbench.py rtreplay|msgspec FILE``.

Prints the seconds the load took (imports excluded). The reference is the least a reader
can do with msgspec: decode each line into a minimal Struct, keeping the frame's JSON raw.
"""

from __future__ import annotations

import gc
import sys
import time

import msgspec


class Minimal(msgspec.Struct):
    kind: str
    conn: int = 0
    t: float = 0.0
    dir: str | None = None
    json: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


def reference(path: str) -> int:
    decoder = msgspec.json.Decoder(Minimal)
    with open(path, "rb") as f:
        records = [decoder.decode(line) for line in f]
    return len(records)


def ours(path: str) -> int:
    from rtreplay.codec import load

    cassette = load(path)
    return sum(len(c.frames) for c in cassette.connections)


def main() -> None:
    which, path = sys.argv[1], sys.argv[2]
    fn = ours if which == "rtreplay" else reference
    if which == "rtreplay":
        import rtreplay.codec  # noqa: F401  (imports are not what is measured)
    # Best of three in this fresh process: one load takes a fraction of a second, and a
    # single timing of that length is at the mercy of the scheduler.
    best = float("inf")
    n = 0
    for _ in range(3):
        gc.collect()
        t0 = time.perf_counter()
        n = fn(path)
        best = min(best, time.perf_counter() - t0)
    print(f"{best:.6f} {n}")


if __name__ == "__main__":
    main()
