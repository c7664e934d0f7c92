"""Input without newlines is never read whole: every reader bounds its lines.

A "cassette" that is one huge line (a binary file, /dev/zero, gigabytes without a newline)
fails after reading at most the bound (``RTREPLAY_MAX_LINE_BYTES``, 128 MiB by default),
with an error naming the file, the line, the bound and how to raise it, in every command
that reads a cassette and in the pytest plugin. The tests set a small bound through the
environment variable; one runs the real default bound on a sparse file far larger than it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtreplay import load
from rtreplay._index import CassetteIndex
from rtreplay.codec import DEFAULT_MAX_LINE, MAX_LINE_ENV, CassetteReader
from rtreplay.errors import CassetteFormatError

from .conftest import CASSETTES, REPO, timeout
from .docs import code_blocks
from .test_plugin import project, put_cassette  # noqa: F401 - the fixture

pytest_plugins = ["pytester"]

BOUND = 4096
TEXT = CASSETTES / "text-response.jsonl"


def long_line_cassette(tmp_path: Path, length: int = BOUND + 1, at: int = 3) -> Path:
    """A valid cassette whose line ``at`` is ``length`` bytes with no newline in them."""
    lines = TEXT.read_bytes().splitlines(keepends=True)
    lines.insert(at - 1, b"x" * length)
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def message(path: Path, line: int, bound: int = BOUND) -> str:
    shown = f"{bound} bytes" if bound < 1 << 20 else f"{bound / (1 << 20):g} MiB"
    return f"{path}:{line}: line is longer than {shown}, the longest a cassette line may be"


def run(*argv: str, bound: int | None = BOUND) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != MAX_LINE_ENV}
    if bound is not None:
        env[MAX_LINE_ENV] = str(bound)
    return subprocess.run(
        [sys.executable, "-m", "rtreplay", *argv],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout(60),
    )


def test_the_library_readers_name_file_line_and_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_LINE_ENV, str(BOUND))
    path = long_line_cassette(tmp_path)
    for read in (load, CassetteIndex.load, lambda p: list(CassetteReader(p))):
        with pytest.raises(CassetteFormatError) as caught:
            read(path)
        assert caught.value.line == 3
        assert str(caught.value).startswith(message(path, 3)), str(caught.value)
        assert f"{MAX_LINE_ENV}=<bytes>" in str(caught.value)


def test_a_line_of_exactly_the_bound_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The longest line of the sample, as the bound: read as before.
    longest = max(len(line.rstrip(b"\n")) for line in TEXT.read_bytes().splitlines())
    monkeypatch.setenv(MAX_LINE_ENV, str(longest))
    assert len(load(TEXT).connections) == 1
    monkeypatch.setenv(MAX_LINE_ENV, str(longest - 1))
    with pytest.raises(CassetteFormatError):
        load(TEXT)


@pytest.mark.parametrize(
    "argv",
    [
        ["validate"], ["inspect"], ["show"], ["diff", str(TEXT)], ["migrate"], ["redact", "--dry-run"],
        ["convert", "--audio", "files"], ["timeline", "--out", "/dev/null"], ["serve", "--port", "0"],
        ["drive", "--url", "ws://127.0.0.1:9/v1/realtime"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_command_refuses_a_long_line_with_exit_2(tmp_path: Path, argv: list[str]) -> None:
    path = long_line_cassette(tmp_path)
    before = path.read_bytes()
    argv = ["diff", str(path), argv[1]] if argv[0] == "diff" else [argv[0], str(path), *argv[1:]]
    done = run(*argv)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message(path, 3) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert path.read_bytes() == before  # nothing rewritten


def test_binary_input_and_dev_zero_fail_at_the_bound(tmp_path: Path) -> None:
    binary = tmp_path / "photo.jsonl"
    binary.write_bytes(bytes(range(256)).replace(b"\n", b"") * 64)
    for path in (binary, Path("/dev/zero")):
        done = run("validate", str(path))
        assert done.returncode == 2 and message(path, 1) in done.stderr, done.stderr


def test_the_default_bound_stops_a_huge_line_without_reading_it_whole(tmp_path: Path) -> None:
    """1 GiB of no newline (sparse: no disk used) after a valid header: the process reads
    128 MiB of it, fails, and never holds the gigabyte."""
    path = tmp_path / "huge.jsonl"
    header = TEXT.read_bytes().splitlines(keepends=True)[0]
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + (1 << 30))
    # VmHWM, this process's own peak: ru_maxrss keeps the peak of the memory it replaced
    # at exec, which for a child vforked from a big pytest process is the parent's.
    script = (
        "import re, sys\n"
        "from rtreplay.cli import main\n"
        f"status = main(['validate', {str(path)!r}])\n"
        "status_text = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status_text).group(1)) // 1024, file=sys.stdout)\n"
        "sys.exit(status)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != MAX_LINE_ENV}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout(120)
    )
    assert done.returncode == 2, done.stderr
    assert message(path, 2, DEFAULT_MAX_LINE) in done.stderr, done.stderr
    [documented] = [b for b in code_blocks("cassette-format.md", "text") if "RTREPLAY_MAX_LINE_BYTES" in b]
    said = done.stderr.strip().removeprefix("rtreplay validate: error: ")
    assert said.replace(f"{path}:2:", "big.jsonl:3:") == documented.strip()
    peak_mib = int(done.stdout.split()[-1])
    print(f"peak RSS reading a 1 GiB line: {peak_mib} MiB")
    assert peak_mib < 600, f"peak RSS {peak_mib} MiB for a 1 GiB line"  # the bound, not the line


def test_the_plugin_fails_the_test_with_the_same_error(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    put_cassette(project, "cassettes/test_long/test_replay.jsonl", long_line_cassette(project.path))
    project.makepyfile(
        test_long="""
        def test_replay(realtime_mock):
            raise AssertionError("must not run")
        """
    )
    monkeypatch.setenv(MAX_LINE_ENV, str(BOUND))
    result = project.runpytest_subprocess()
    result.assert_outcomes(errors=1)  # at setup, as any unusable cassette
    out = result.stdout.str()
    assert "test_replay.jsonl:3: line is longer than 4096 bytes" in out, out
    assert f"{MAX_LINE_ENV}=<bytes>" in out and "must not run" not in out
