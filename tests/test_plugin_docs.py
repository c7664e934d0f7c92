"""docs/pytest.md and docs/quickstart_test.py are real: their files run, their outputs are what pytest prints.

The docs' workflow is replayed step by step in a pytester project: the missing-cassette
failure, the first recording (against the scripted upstream, never the live API), the
offline replay, and the mismatch failure after the prompt changed.
"""

from __future__ import annotations

import re
import shlex
import shutil

import pytest

from .conftest import CASSETTES, RECORDING_KEY, REPO
from .upstream import ScriptedUpstream

pytest_plugins = ["pytester"]

DOCS = REPO / "docs" / "pytest.md"
API_KEY = RECORDING_KEY
INNER_OPTIONS = ("-p", "no:hypothesispytest", "-p", "no:recording", "-p", "no:cacheprovider")

_FILE_BLOCK = re.compile(r"^```(\w+) file=(\S+)\n(.*?)^```", re.S | re.M)
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def doc_files() -> dict[str, str]:
    """The blocks of docs/pytest.md that are files of the example project, by path."""
    return {path: body for _, path, body in _FILE_BLOCK.findall(DOCS.read_text())}


def text_block(starting_with: str) -> list[str]:
    """The lines of the ```text block of docs/pytest.md whose second line starts so."""
    for lang, body in _BLOCK.findall(DOCS.read_text()):
        lines = body.splitlines()
        if lang == "text" and len(lines) > 1 and lines[1].startswith(starting_with):
            return lines
    raise AssertionError(f"no text block starting with {starting_with!r} in {DOCS}")


def console_commands() -> list[list[str]]:
    """Every ``pytest ...`` command in the console blocks, as argument lists (comments dropped)."""
    commands = []
    for lang, body in _BLOCK.findall(DOCS.read_text()):
        if lang != "console":
            continue
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words.pop(0)  # VAR=value prefixes
            if words and words[0] == "pytest":
                commands.append(words[1:])
    return commands


def assert_shows(output: str, lines: list[str]) -> None:
    """Every documented line (except pytest's rules of ``_`` and ``=``) is in the output, in order."""
    wanted = [line for line in lines if line.strip() and not re.fullmatch(r"[_=]+ ?\S* ?[_=]+", line.strip())]
    got = output.splitlines()
    at = 0
    for line in wanted:
        try:
            at = got.index(line, at) + 1
        except ValueError:
            raise AssertionError(f"documented line not in the output:\n{line}\n--- output ---\n{output}") from None



def test_the_quickstart_replays_the_sample_cassette(pytester: pytest.Pytester) -> None:
    shutil.copyfile(REPO / "docs" / "quickstart_test.py", pytester.path / "quickstart_test.py")
    target = pytester.path / "cassettes" / "quickstart_test" / "test_says_hello.jsonl"
    target.parent.mkdir(parents=True)
    shutil.copyfile(CASSETTES / "text-response.jsonl", target)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n")
    result = pytester.runpytest("quickstart_test.py", *INNER_OPTIONS)
    result.assert_outcomes(passed=1)


def test_the_documented_workflow_from_first_recording_to_a_failing_change(
    pytester: pytest.Pytester, upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = doc_files()
    assert {"tests/test_hello.py", "tests/test_hello_sync.py", "tests/test_hello_anyio.py",
            "tests/conftest.py", "pytest.ini"} <= set(files)
    for path, body in files.items():
        if path == "pytest.ini":
            # The documented ini names the live API; a closed local port stands in for it,
            # so that a precedence bug fails here instead of reaching the network.
            assert "realtime_upstream = wss://api.openai.com/v1" in body
            body = body.replace("wss://api.openai.com/v1", "ws://127.0.0.1:9/v1")
            body += "asyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
        (pytester.path / path).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / path).write_text(body)
    up = f"--realtime-upstream={upstream.websocket_base_url}"

    # 1. No cassette yet: the documented failure.
    first = pytester.runpytest("tests/test_hello.py", *INNER_OPTIONS)
    first.assert_outcomes(failed=2)
    assert_shows(first.stdout.str(), text_block("rtreplay: this test has no cassette"))

    # 2. Record it once, with the documented command (pointed at the scripted upstream).
    (record,) = [c for c in console_commands() if c[:1] == ["--realtime-record"] and c[1:] == ["tests/test_hello.py"]]
    recorded = pytester.runpytest(*record, up, *INNER_OPTIONS)
    recorded.assert_outcomes(passed=2)
    assert_shows(recorded.stdout.str(), text_block("recorded 1 cassette:"))
    cassette = pytester.path / "tests" / "cassettes" / "test_hello" / "test_says_hello.jsonl"
    assert API_KEY not in cassette.read_text()
    order = re.findall(r'"type": ?"(session\.updated|conversation\.item\.create)"', cassette.read_text())
    assert order[:2] == ["session.updated", "conversation.item.create"], "the documented wait fixes the order"
    pytester.runpytest("--realtime-record", up, *INNER_OPTIONS).assert_outcomes(passed=4)
    assert len(upstream.handshakes) == 3, "test_session_is_text_only reuses a cassette: it never records"

    # 3. Offline, no key: everything replays.
    monkeypatch.delenv("OPENAI_API_KEY")
    pytester.runpytest(*INNER_OPTIONS).assert_outcomes(passed=4)

    # 4. The prompt changes: the documented mismatch failure.
    hello = pytester.path / "tests" / "test_hello.py"
    hello.write_text(hello.read_text().replace("Say hello in three words.", "Say goodbye in three words."))
    changed = pytester.runpytest("tests/test_hello.py::test_says_hello", *INNER_OPTIONS)
    changed.assert_outcomes(failed=1)
    assert_shows(changed.stdout.str(), text_block("rtreplay: the client's events did not match"))


def test_every_documented_option_exists(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    help_text = pytester.runpytest("--help").stdout.str()
    foreign = {"--block-network", "--allowed-hosts", "-n"}  # pytest-recording, pytest-xdist
    options = {w.split("=")[0] for args in console_commands() for w in args if w.startswith("-")}
    assert "--realtime-record-mode" in options and "--realtime-upstream" in options
    for option in sorted(options - foreign):
        assert option in help_text, f"docs/pytest.md uses {option}, which pytest --help does not list"
    ini = doc_files()["pytest.ini"]
    for name in re.findall(r"^#?\s*(realtime_\w+) =", ini, re.M):
        assert f"{name} (" in help_text, f"documented ini option {name} is not registered"
    documented = set(re.findall(r"^\| `(\w+)`", DOCS.read_text().split("| marker argument |")[1].split("\n\n")[0], re.M))
    from pytest_rtreplay._config import MARKER_ARGS

    assert documented == set(MARKER_ARGS)


def test_docs_name_every_attribute_of_the_mock() -> None:
    from pytest_rtreplay import RealtimeMock

    table = DOCS.read_text().split("| attribute | what it is |")[1].split("\n\n")[0]
    documented = {re.sub(r"\(.*", "", name) for name in re.findall(r"^\| `([\w(*)]+)`", table, re.M)}
    public = {n for n in dir(RealtimeMock) if not n.startswith("_")}
    instance = {"settings", "cassette_path", "recording", "recorded"}  # set in __init__
    assert documented == public | instance


def test_the_documented_hang_fails_with_the_documented_stall(pytester: pytest.Pytester) -> None:
    section = DOCS.read_text().split("## My test hangs")[1].split("\n## ")[0]
    (code,) = [body for lang, body in _BLOCK.findall(section) if lang == "python"]
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_hangs.py").write_text(code)
    cassette = pytester.path / "tests" / "cassettes" / "test_hello" / "test_says_hello.jsonl"
    cassette.parent.mkdir(parents=True)
    shutil.copyfile(CASSETTES / "text-response.jsonl", cassette)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n")
    # No pytest-timeout: the stall alone ends the test.
    result = pytester.runpytest_subprocess("tests/test_hangs.py", "-p", "no:timeout", *INNER_OPTIONS, timeout=60)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*ConnectionClosedError: received 1008 (policy violation) rtreplay stall: waiting for conversation.item.create*",
            "*ConnectionClosedError: received 1008 (policy violation) rtreplay stall: every recorded "
            "server event was sent; the recorded client closed here*",
        ]
    )
    out = result.stdout.str()
    assert_shows(out, text_block("rtreplay: the replay stalled: it held"))
    assert_shows(out, text_block("rtreplay: the replay stalled: it had sent every"))
