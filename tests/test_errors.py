"""The exception tree keeps the promises of its builtin bases."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from rtreplay import CassetteNotFoundError, CassetteWriteError, Recorder, ReplayServer, load


def test_a_missing_cassette_is_a_file_not_found_error_with_its_fields(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    for attempt in (lambda: load(missing), lambda: ReplayServer(missing)):
        with pytest.raises(FileNotFoundError) as info:
            attempt()
        err = info.value
        assert isinstance(err, CassetteNotFoundError)
        assert err.errno == errno.ENOENT and err.strerror == "No such file or directory"
        assert err.filename == str(missing) and err.path == missing
        assert str(err) == f"{missing}: no such cassette file"


def test_a_write_error_names_its_file() -> None:
    err = CassetteWriteError("out.jsonl", "cannot be written: disk full")
    assert isinstance(err, OSError) and err.filename == "out.jsonl"
    assert err.strerror == "cannot be written: disk full" and err.errno is None


def test_bad_arguments_are_value_errors_everywhere(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="upstream must be a ws:// or wss:// URL"):
        Recorder(tmp_path / "x.jsonl", upstream="https://api.openai.com/v1")
    with pytest.raises(ValueError, match="stall_timeout"):
        ReplayServer(Path(__file__).parent.parent / "cassettes" / "text-response.jsonl", stall_timeout=-1)


@pytest.mark.parametrize(
    ("header", "said"),
    [
        (
            '{"kind":"header","format":3,"rtreplay":"9.0.0"}',
            "the cassette is in format 3 (written by rtreplay 9.0.0), newer than this rtreplay ({v}) can read "
            "(it reads cassette formats 1 and 2): install a newer rtreplay (pip install -U rtreplay), "
            "or re-record the cassette with this one",
        ),
        (
            '{"kind":"header","format":3}',
            "the cassette is in format 3 (its header does not say which rtreplay wrote it), newer than this "
            "rtreplay ({v}) can read",
        ),
        (
            '{"kind":"header","format":"2"}',
            "the header's \"format\" is '2', not a cassette format: this rtreplay ({v}) reads cassette formats 1 and 2",
        ),
    ],
)
def test_a_format_this_rtreplay_cannot_read_is_said_plainly(tmp_path: Path, header: str, said: str) -> None:
    """What `rtreplay validate` prints for a header this version cannot read: never a bare
    "(written)", always which format, who wrote it if known, and which formats it reads."""
    import subprocess
    import sys

    from rtreplay import __version__
    from rtreplay.cassette import FORMAT_VERSIONS

    path = tmp_path / "future.jsonl"
    path.write_text(header + "\n")
    done = subprocess.run([sys.executable, "-m", "rtreplay", "validate", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith(f"rtreplay validate: error: {path}:1: " + said.format(v=__version__)), done.stderr
    assert "(written)" not in done.stderr
    assert FORMAT_VERSIONS == (1, 2)  # the wording above names them
    if "9.0.0" in header:  # what docs/cassette-format.md shows
        from .docs import code_blocks

        [documented] = [b for b in code_blocks("cassette-format.md", "text") if "newer than this rtreplay" in b]
        assert documented.strip().replace("(0.1.0)", f"({__version__})") == done.stderr.strip().removeprefix(
            f"rtreplay validate: error: {tmp_path}/"
        )
