"""Promise 3: a corrupted cassette is refused with its file and line, never served half-read.

The reader itself is fuzzed in ``tests/test_codec.py``; the replay server does not use it
alone but indexes the file (``rtreplay._index``) to read payloads on demand, so here the
same corruptions go through what ``rtreplay serve`` runs: the index, then ``main(["serve",
...])`` in-process, then a real ``rtreplay serve`` subprocess for a sample of them.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import warnings
from pathlib import Path

import pytest

from rtreplay.cli import main
from rtreplay.errors import CassetteError
from rtreplay.server import ReplayServer

from ..conftest import CASSETTES, timeout
from ..test_codec import _mutations
from .support import report_figure

FUZZED = int(os.environ.get("RTREPLAY_FUZZ_CASSETTES", "1000"))
SLOW_FUZZED = 20_000
SUBPROCESSES = 6


def corrupted(rng: random.Random) -> bytes:
    samples = [p.read_bytes() for p in sorted(CASSETTES.glob("*.jsonl"))]
    data = _mutations(rng, rng.choice(samples))
    for _ in range(rng.randrange(3)):
        data = _mutations(rng, data) if data else data
    return data


def fuzz(tmp_path: Path, count: int, seed: int) -> dict[str, int]:
    """Serve ``count`` corrupted cassettes in-process; every failure must name file and line."""
    rng = random.Random(seed)
    target = tmp_path / "fuzz.jsonl"
    outcomes = {"served": 0, "refused": 0}
    samples = [p.read_bytes() for p in sorted(CASSETTES.glob("*.jsonl"))]
    for n in range(count):
        data = _mutations(rng, rng.choice(samples))
        for _ in range(rng.randrange(3)):
            data = _mutations(rng, data) if data else data
        target.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a cut last line is served, with a warning
            try:
                server = ReplayServer(target)
            except CassetteError as exc:
                outcomes["refused"] += 1
                assert exc.line is not None and exc.line >= 1, repr(exc)
                assert str(exc).startswith(f"{target}:{exc.line}: "), str(exc)
                assert "\n" not in str(exc), str(exc)
            except Exception as exc:  # the promise: nothing else ever escapes
                raise AssertionError(f"input {n} ({data[:200]!r}...) raised {exc!r}") from exc
            else:
                outcomes["served"] += 1
                server.index.close()
    report_figure(f"bad cassettes: {count} fuzzed (served, refused with file:line)", [outcomes["served"], outcomes["refused"]])
    return outcomes


def test_corrupted_cassettes_are_refused_with_file_and_line(tmp_path: Path) -> None:
    outcomes = fuzz(tmp_path, FUZZED, 20261121)
    assert outcomes["refused"] > FUZZED // 3 and outcomes["served"] > 20, outcomes


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_corrupted_cassettes_many(tmp_path: Path) -> None:
    outcomes = fuzz(tmp_path, SLOW_FUZZED, 8)
    assert outcomes["refused"] > SLOW_FUZZED // 3, outcomes


def _refused_inputs(tmp_path: Path, count: int, seed: int) -> list[Path]:
    """``count`` corrupted cassettes the server refuses, each in its own file."""
    rng = random.Random(seed)
    out: list[Path] = []
    while len(out) < count:
        path = tmp_path / f"bad{len(out)}.jsonl"
        path.write_bytes(corrupted(rng))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ReplayServer(path).index.close()
            except CassetteError:
                out.append(path)
                continue
        path.unlink()
    return out


def test_serve_exits_2_with_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in _refused_inputs(tmp_path, 60, 7):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["serve", str(path), "--port", "0"]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"rtreplay serve: error: {path}:"), err
        line_number = lines[0][len(f"rtreplay serve: error: {path}:") :].split(":")[0]
        assert line_number.isdigit() and int(line_number) >= 1, err


async def test_the_serve_process_exits_2_with_one_line(tmp_path: Path) -> None:
    """The real command, as a shell or CI sees it: exit status 2, one line on stderr."""
    paths = _refused_inputs(tmp_path, SUBPROCESSES, 11)

    async def serve(path: Path) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rtreplay", "serve", str(path), "--port", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout(60))
        assert proc.returncode is not None
        return proc.returncode, out, err

    for path, (code, out, err) in zip(paths, await asyncio.gather(*(serve(p) for p in paths)), strict=True):
        text = err.decode()
        assert code == 2, text
        assert out == b""
        assert len(text.splitlines()) == 1 and text.startswith(f"rtreplay serve: error: {path}:"), text
