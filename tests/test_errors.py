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
