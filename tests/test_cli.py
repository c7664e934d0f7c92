"""The ``rtreplay`` command as a function, and as the real console script."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from rtreplay.cli import main

from .conftest import CASSETTES


def test_inspect_summarises_a_cassette(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(CASSETTES / "function-call.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "connection 0: /v1/realtime?model=gpt-realtime (GA protocol)" in out
    assert "client: 5 frames" in out
    assert "2 response.function_call_arguments.delta" in out
    assert "closed by the client with code 1000" in out


def test_a_bad_cassette_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind":"header","format":1,"rtreplay":"0.1.0"}\n{"kind":"open"}\n')
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{bad}:2: invalid open record: missing required field 'conn'" in err
    assert main(["inspect", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such cassette file" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rtreplay", "inspect", str(CASSETTES / "errors.jsonl")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "    1 (not an event)" in done.stdout, "the client frame without a type is counted apart"
    version = subprocess.run([sys.executable, "-m", "rtreplay", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip().startswith("rtreplay ")


def test_the_documented_outputs_are_what_the_commands_print(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from .docs import code_blocks

    monkeypatch.chdir(CASSETTES.parent)
    shown = [b for b in code_blocks("cli.md", "console") if b.startswith("$ rtreplay ")]
    documented = {block.split()[2] for block in shown}
    assert {"inspect", "validate", "show", "diff", "audio", "timeline", "redact", "convert"} <= documented
    for block in shown:
        command, _, expected = block.partition("\n")
        args = command.removeprefix("$ rtreplay ").split()
        if "<" in args:  # `rtreplay show - < x.jsonl`: the file on standard input
            args, stdin = args[: args.index("<")], args[args.index("<") + 1]
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(Path(stdin).read_bytes())))
        status = 0
        *rest, last = expected.rstrip("\n").split("\n")
        if last.startswith("(exit status ") and last.endswith(")"):
            status = int(last.removeprefix("(exit status ").removesuffix(")"))
            expected = "\n".join(rest) + "\n"
        assert main(args) == status, command
        printed = capsys.readouterr()
        assert printed.out + printed.err == expected, command


def test_top_level_help_ends_with_examples_of_the_main_commands() -> None:
    from rtreplay.cli import _COMMANDS, build_parser

    from .docs import code_blocks

    done = subprocess.run([sys.executable, "-m", "rtreplay", "--help"], capture_output=True, text=True, check=True)
    examples = done.stdout.split("\nexamples:\n", 1)[1]
    commands = [line.split()[1] for line in examples.splitlines() if line.startswith("  rtreplay ")]
    assert {"record", "serve", "validate", "show", "recover"} <= set(commands)
    parser = build_parser()
    for line in examples.splitlines():
        if line.startswith("  rtreplay "):  # each example is a command line that parses
            argv = line.split("    ")[0].split()[1:]
            assert argv[0] in {c[0] for c in _COMMANDS}
            parser.parse_args(argv)
    [documented] = [b for b in code_blocks("cli.md", "text") if b.startswith("examples:")]
    assert "examples:\n" + examples == documented
