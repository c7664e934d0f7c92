"""The plugin's settings: precedence, validation, cassette names, the record command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_rtreplay._config import (
    MAX_NAME,
    RealtimeConfigError,
    cassette_file_name,
    check_keys,
    default_cassette_name,
    marker_kwargs,
    record_command,
    resolve_cassette,
    resolve_settings,
)

TEST_DIR = Path("/proj/tests")


def settings(*layers: tuple[str, dict[str, object]], run: str = "none") -> object:
    return resolve_settings(
        list(layers), run_record_mode=run, test_dir=TEST_DIR, default_cassette_name="m/t.jsonl"
    )


# -- precedence ---------------------------------------------------------------------------


def test_the_strongest_layer_that_sets_a_value_wins_and_says_so() -> None:
    s = settings(
        ("marker", {"speed": 2.0}),
        ("realtime_config", {"speed": 1.0, "strict": True}),
        ("command line", {"upstream": "ws://127.0.0.1:1/v1"}),
        ("ini", {"strict": False, "match": "type", "upstream": "ws://127.0.0.1:2/v1"}),
    )
    assert (s.speed, s.strict, s.match, s.upstream) == (2.0, True, "type", "ws://127.0.0.1:1/v1")
    assert s.sources["speed"] == "marker"
    assert s.sources["strict"] == "realtime_config"
    assert s.sources["upstream"] == "command line"
    assert s.sources["match"] == "ini"
    assert s.sources["allow_unplayed"] == "default" and s.allow_unplayed is False


def test_an_explicit_none_speed_in_a_marker_means_instant_over_a_conftest_pace() -> None:
    s = settings(("marker", {"speed": None}), ("realtime_config", {"speed": 1.0}))
    assert s.speed is None and s.sources["speed"] == "marker"


def test_only_the_command_line_switches_recording_on() -> None:
    off = settings(("marker", {"record_mode": "all"}), ("command line", {}), run="none")
    assert off.record_mode == "none" and off.sources["record_mode"] == "command line"
    on = settings(("marker", {"record_mode": "all"}), ("command line", {"record_mode": "once"}), run="once")
    assert on.record_mode == "all" and on.sources["record_mode"] == "marker"
    narrowed = settings(("marker", {"record_mode": "none"}), ("command line", {"record_mode": "all"}), run="all")
    assert narrowed.record_mode == "none"


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("speed", -1, "number >= 0"),
        ("speed", "fast", "must be a number"),
        ("speed", True, "number >= 0"),
        ("strict", "maybe", "true or false"),
        ("record_mode", "new_episodes", "none, once, all"),
        ("match", "fuzzy", "default, type, exact"),
        ("upstream", "https://api.openai.com/v1", "ws:// or wss://"),
        ("api_key", 3, "must be a string"),
    ],
)
def test_bad_values_name_the_setting_where_they_came_from(key: str, value: object, words: str) -> None:
    with pytest.raises(RealtimeConfigError, match=re.escape(words)) as info:
        settings(("realtime_config", {key: value}))
    assert str(info.value).startswith(f"realtime_config: {key} ")


def test_values_are_normalised() -> None:
    s = settings(("ini", {"speed": "0", "strict": "yes", "upstream": "ws://127.0.0.1:9/v1/"}))
    assert s.speed is None and s.strict is True and s.upstream == "ws://127.0.0.1:9/v1"


def test_unknown_names_are_refused_with_the_valid_ones_and_a_guess() -> None:
    with pytest.raises(RealtimeConfigError) as info:
        marker_kwargs([((), {"spead": 1})])
    assert str(info.value) == (
        "@pytest.mark.realtime got unknown argument 'spead' (did you mean 'speed'?); valid "
        "arguments: allow_unfired, allow_unplayed, audio_tolerance, cassette, faults, fresh_ids, latency, match, "
        "record_mode, shift_times, speed, stall_timeout, strict"
    )
    with pytest.raises(RealtimeConfigError, match="unknown arguments 'x', 'y'"):
        check_keys(["x", "y"], ["a"], "thing")


def test_markers_merge_closest_first_and_take_the_cassette_positionally() -> None:
    merged = marker_kwargs([(("near",), {"speed": 1}), ((), {"speed": 2, "strict": True})])
    assert merged == {"cassette": "near", "speed": 1, "strict": True}
    with pytest.raises(RealtimeConfigError, match="both positionally and as cassette="):
        marker_kwargs([(("a",), {"cassette": "b"})])
    with pytest.raises(RealtimeConfigError, match="at most one positional"):
        marker_kwargs([(("a", "b"), {})])


# -- cassette paths -----------------------------------------------------------------------


def test_default_names_follow_module_class_test_and_parameters() -> None:
    module = Path("/proj/tests/test_chat.py")
    assert default_cassette_name("tests/test_chat.py::test_hi", module) == "test_chat/test_hi.jsonl"
    assert (
        default_cassette_name("tests/test_chat.py::TestChat::test_reply[short text]", module)
        == "test_chat/TestChat.test_reply[short-text].jsonl"
    )
    assert default_cassette_name("tests/test_chat.py::test_x[a/b:c*?]", module) == "test_chat/test_x[a-b-c-].jsonl"


def test_long_names_are_cut_and_keep_a_hash_of_the_whole_name() -> None:
    a = cassette_file_name("test_" + "x" * 300 + "[1]")
    b = cassette_file_name("test_" + "x" * 300 + "[2]")
    assert a != b
    assert len(a) <= MAX_NAME + len(".jsonl")


@given(st.text(min_size=0, max_size=400))
def test_any_name_becomes_one_safe_file_name(name: str) -> None:
    file = cassette_file_name(name)
    assert re.fullmatch(r"[A-Za-z0-9_.,=+\[\]-]+\.jsonl", file)
    assert len(file) <= MAX_NAME + len(".jsonl")
    assert not file.startswith(".")
    assert os.path.basename(file) == file


@given(st.text(alphabet=st.sampled_from("ab./\\_-[]"), max_size=30).filter(lambda s: s.strip("/")))
def test_no_marker_cassette_escapes_the_directory(raw: str) -> None:
    base = Path("/proj/tests/cassettes")
    try:
        path = resolve_cassette(raw, base)
    except RealtimeConfigError as exc:
        assert "outside the cassette directory /proj/tests/cassettes" in str(exc)
        return
    assert os.path.commonpath([base, path]) == str(base) and path != base


def test_marker_cassettes_are_relative_to_the_cassette_directory() -> None:
    base = Path("/proj/tests/cassettes")
    assert resolve_cassette("shared/greeting", base) == base / "shared/greeting.jsonl"
    assert resolve_cassette("x.json", base) == base / "x.json"
    assert resolve_cassette("/proj/tests/cassettes/a", base) == base / "a.jsonl"
    with pytest.raises(RealtimeConfigError, match=r"cassette='\.\./x' resolves to /proj/tests/x, outside"):
        resolve_cassette("../x", base)
    with pytest.raises(RealtimeConfigError, match="outside"):
        resolve_cassette("/etc/passwd", base)


def test_cassette_dir_from_realtime_config_is_relative_to_the_test_file() -> None:
    s = settings(("realtime_config", {"cassette_dir": "../recordings"}))
    assert s.cassette_dir == Path("/proj/recordings")
    assert s.cassette == Path("/proj/recordings/m/t.jsonl")


# -- the command a user is told to run ----------------------------------------------------


def test_record_command_is_relative_to_where_pytest_ran_and_shell_quoted() -> None:
    cmd = record_command("tests/test_a.py::test_x[1-2]", Path("/p/tests/test_a.py"), Path("/p"))
    assert cmd == "pytest --realtime-record 'tests/test_a.py::test_x[1-2]'"
    cmd = record_command("tests/test_a.py::T::test_y", Path("/p/tests/test_a.py"), Path("/p/tests"), "all")
    assert cmd == "pytest --realtime-record-mode=all test_a.py::T::test_y"


# -- import cost --------------------------------------------------------------------------


def test_importing_the_plugin_loads_no_server_code() -> None:
    code = (
        "import sys, pytest; import pytest_rtreplay.plugin; "
        "heavy = [m for m in ('websockets', 'msgspec', 'openai', 'rtreplay', 'asyncio') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # pytest itself may import asyncio on some versions; nothing else may appear.
    assert out.stdout.strip() in ("[]", "['asyncio']"), out.stdout


# -- stall timeout and audio tolerance ---------------------------------------------------------


def test_the_plugins_defaults_are_the_replays() -> None:
    from pytest_rtreplay import _config

    from rtreplay import player

    assert _config.DEFAULT_STALL_TIMEOUT == player.DEFAULT_STALL_TIMEOUT
    assert _config.DEFAULT_AUDIO_TOLERANCE == player.DEFAULT_AUDIO_TOLERANCE


def test_stall_timeout_none_or_0_turns_it_off_and_the_ini_gives_strings() -> None:
    s: Any = settings(("marker", {"stall_timeout": None}), ("ini", {"stall_timeout": "3"}))
    assert s.stall_timeout is None and s.sources["stall_timeout"] == "marker"
    s = settings(("realtime_config", {"stall_timeout": 0}), ("ini", {"audio_tolerance": "0.5"}))
    assert s.stall_timeout is None and s.audio_tolerance == 0.5
    s = settings(("ini", {"stall_timeout": "3"}))
    assert s.stall_timeout == 3.0 and s.sources["stall_timeout"] == "ini"
    s = settings()
    assert (s.stall_timeout, s.audio_tolerance) == (10.0, 0.25)


@pytest.mark.parametrize(
    ("key", "value"),
    [("stall_timeout", -1), ("stall_timeout", "soon"), ("audio_tolerance", "inf"), ("audio_tolerance", True)],
)
def test_bad_stall_timeouts_and_tolerances_are_refused(key: str, value: object) -> None:
    with pytest.raises(RealtimeConfigError, match=key):
        settings(("marker", {key: value}))
