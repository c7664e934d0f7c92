"""The pytest plugin end to end: real pytest runs (pytester), real servers, the real openai SDK.

Runs that record talk to :class:`tests.upstream.ScriptedUpstream` on 127.0.0.1 through
``--realtime-upstream``; nothing leaves the machine.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from .conftest import CASSETTES, RECORDING_KEY, timeout
from .upstream import ScriptedUpstream

pytest_plugins = ["pytester"]

API_KEY = RECORDING_KEY
SAMPLE = CASSETTES / "text-response.jsonl"

# hypothesis' and pytest-recording's plugins are turned off in the inner runs: they cost
# each run (and each xdist worker) a quarter to half a second.
INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:recording -p no:cacheprovider
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

# The conversation of cassettes/text-response.jsonl, with the openai SDK: sync and async.
CONVERSATION = '''
import pytest

SESSION = {"type": "realtime", "output_modalities": ["text"], "instructions": "Be brief."}


def question(text="Say hello in three words."):
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def talk(client, text="Say hello in three words."):
    """The sync conversation; returns the answer and every server event type seen."""
    seen, answer = [], ""
    with client.realtime.connect(model="gpt-realtime") as conn:
        conn.session.update(session=SESSION)
        conn.conversation.item.create(item=question(text))
        conn.response.create()
        for event in conn:
            seen.append(event.type)
            if event.type == "response.output_text.delta":
                answer += event.delta
            if event.type == "response.done":
                break
    return answer, seen


async def atalk(client, text="Say hello in three words."):
    seen, answer = [], ""
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session=SESSION)
        await conn.conversation.item.create(item=question(text))
        await conn.response.create()
        async for event in conn:
            seen.append(event.type)
            if event.type == "response.output_text.delta":
                answer += event.delta
            if event.type == "response.done":
                break
    return answer, seen
'''


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A test project with the conversation helpers importable as ``talk``."""
    pytester.makeini(INI)
    pytester.makepyfile(talk=CONVERSATION)
    pytester.syspathinsert()
    return pytester


def put_cassette(pytester: pytest.Pytester, relative: str, source: Path = SAMPLE) -> Path:
    target = pytester.path / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target



# -- replay -------------------------------------------------------------------------------


def test_sync_asyncio_and_anyio_tests_replay_the_same_cassette(project: pytest.Pytester) -> None:
    for name in ("test_sync", "test_asyncio", "test_anyio[asyncio]", "test_fixtures"):
        put_cassette(project, f"cassettes/test_kinds/{name}.jsonl")
    project.makepyfile(
        test_kinds="""
        import pytest
        from talk import talk, atalk

        def test_sync(realtime_mock):
            answer, seen = talk(realtime_mock.client())
            assert answer == "Hello there, friend!"
            assert realtime_mock.recording is False
            assert realtime_mock.report.ok and realtime_mock.report.complete
            assert [r.event["type"] for r in realtime_mock.received] == [
                "session.update", "conversation.item.create", "response.create"]
            assert realtime_mock.websocket_base_url.startswith("ws://127.0.0.1:")
            assert realtime_mock.url == realtime_mock.websocket_base_url + "/realtime"
            assert realtime_mock.cassette_path.name == "test_sync.jsonl"

        @pytest.mark.asyncio
        async def test_asyncio(realtime_mock):
            answer, _ = await atalk(realtime_mock.async_client())
            assert answer == "Hello there, friend!"

        @pytest.mark.anyio
        async def test_anyio(realtime_async_openai):
            answer, _ = await atalk(realtime_async_openai)
            assert answer == "Hello there, friend!"

        def test_fixtures(realtime_openai, realtime_mock):
            assert realtime_openai.websocket_base_url == realtime_mock.websocket_base_url
            assert realtime_openai.api_key == "rtreplay-replay-key"
            assert talk(realtime_openai)[0] == "Hello there, friend!"
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=4)


def test_a_missing_cassette_fails_the_test_with_the_path_and_the_command(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_missing="""
        import pytest

        @pytest.mark.parametrize("voice", ["alloy", "ash cedar"])
        def test_voice(realtime_mock, voice):
            raise AssertionError("the body must not run without a cassette")
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    expected = [
        "rtreplay: this test has no cassette, and this run does not record.",
        "  expected: cassettes/test_missing/test_voice[alloy].jsonl",
        "  record it (talks to the live API once, needs OPENAI_API_KEY):",
        "    pytest --realtime-record 'test_missing.py::test_voice[alloy]'",
    ]
    assert "\n".join(expected) in out, out
    assert "  expected: cassettes/test_missing/test_voice[ash-cedar].jsonl" in out
    assert "    pytest --realtime-record 'test_missing.py::test_voice[ash cedar]'" in out
    result.stdout.no_fnmatch_line("*the body must not run*")
    result.stdout.no_fnmatch_line("*Traceback*")


def test_paths_and_command_are_given_from_where_pytest_ran(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = project.mkdir("suite")
    (sub / "test_deep.py").write_text("def test_deep(realtime_mock):\n    pass\n")
    from_root = project.runpytest("suite")
    from_root.stdout.fnmatch_lines(
        [
            "  expected: suite/cassettes/test_deep/test_deep.jsonl",
            "    pytest --realtime-record suite/test_deep.py::test_deep",
        ]
    )
    monkeypatch.chdir(sub)
    from_sub = project.runpytest()
    from_sub.stdout.fnmatch_lines(
        ["  expected: cassettes/test_deep/test_deep.jsonl", "    pytest --realtime-record test_deep.py::test_deep"]
    )


# -- configuration ------------------------------------------------------------------------


def test_the_marker_is_registered_and_unknown_arguments_are_errors(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_marker="""
        import pytest

        @pytest.mark.realtime(speed=1)
        def test_no_fixture():
            pass

        @pytest.mark.realtime(spead=2, cassete="x")
        def test_typo(realtime_mock):
            pass

        @pytest.mark.realtime(cassette="../../elsewhere")
        def test_escape(realtime_mock):
            pass
        """
    )
    result = project.runpytest("--strict-markers")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*rtreplay: @pytest.mark.realtime got unknown arguments 'spead' (did you mean 'speed'?), "
            "'cassete' (did you mean 'cassette'?); valid arguments: allow_unfired, allow_unplayed, audio_tolerance, "
            "cassette, faults, fresh_ids, latency, match, record_mode, shift_times, speed, stall_timeout, strict",
        ]
    )
    result.stdout.fnmatch_lines(["*cassette='../../elsewhere' resolves to *, outside the cassette directory *"])
    markers = project.runpytest("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.realtime(cassette=None, *): configure this test's realtime_mock*"])


def test_a_bad_ini_value_stops_the_run_at_start(project: pytest.Pytester) -> None:
    project.makeini(INI + "realtime_speed = fast\n")
    project.makepyfile(test_x="def test_x():\n    pass\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: rtreplay: ini option realtime_speed must be a number, not 'fast'"])


def test_precedence_marker_over_config_fixture_over_command_line_over_ini(project: pytest.Pytester) -> None:
    put_cassette(project, "cassettes/shared.jsonl")
    project.makeini(INI + "realtime_match = type\nrealtime_speed = 3\nrealtime_strict = true\nrealtime_upstream = ws://127.0.0.1:1/v1\n")
    project.makeconftest(
        """
        import pytest

        @pytest.fixture
        def realtime_config():
            return {"speed": 2, "allow_unplayed": True, "record_mode": "all"}
        """
    )
    project.makepyfile(
        test_prec="""
        import pytest

        @pytest.mark.realtime(cassette="shared")
        class TestBoth:
            @pytest.mark.realtime(speed=0.5, match="exact")
            def test_settings(self, realtime_mock):
                s = realtime_mock.settings
                assert (s.match, s.speed, s.strict, s.allow_unplayed) == ("exact", 0.5, True, True)
                assert s.upstream == "ws://127.0.0.1:2/v1"
                assert dict(s.sources) == {
                    "cassette": "marker", "match": "marker", "speed": "marker",
                    "allow_unplayed": "realtime_config", "strict": "ini",
                    "upstream": "command line", "record_mode": "command line",
                    "api_key": "default", "cassette_dir": "default", "audio": "default",
                    "redactor": "default",
                    "stall_timeout": "default", "audio_tolerance": "default",
                    "shift_times": "default", "fresh_ids": "default",
                    "faults": "default", "latency": "default", "allow_unfired": "default",
                }
                # the run does not record, so the conftest's record_mode="all" does not apply
                assert s.record_mode == "none" and not realtime_mock.recording
                assert realtime_mock.cassette_path.name == "shared.jsonl"
        """
    )
    result = project.runpytest("--realtime-upstream=ws://127.0.0.1:2/v1")
    result.assert_outcomes(passed=1)


def test_an_unknown_realtime_config_key_fails_the_tests_using_it(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
        import pytest

        @pytest.fixture
        def realtime_config():
            return {"cassette": "x"}
        """
    )
    project.makepyfile(test_cfg="def test_cfg(realtime_mock):\n    pass\n")
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.no_fnmatch_line("*During handling*")
    result.stdout.fnmatch_lines(
        [
            "rtreplay: the realtime_config fixture got unknown argument 'cassette' (name a test's "
            "cassette with @pytest.mark.realtime(cassette=...)); valid arguments: allow_unfired, allow_unplayed, "
            "api_key, audio, audio_tolerance, cassette_dir, faults, fresh_ids, latency, match, record_mode, "
            "redactor, shift_times, speed, stall_timeout, strict, upstream"
        ]
    )


# -- teardown checks ----------------------------------------------------------------------


def test_a_mismatch_the_client_swallowed_fails_the_test_with_the_report(project: pytest.Pytester) -> None:
    put_cassette(project, "cassettes/test_drift/test_other_question.jsonl")
    project.makepyfile(
        test_drift="""
        from talk import SESSION, question

        def test_other_question(realtime_mock):
            with realtime_mock.client().realtime.connect(model="gpt-realtime") as conn:
                conn.session.update(session=SESSION)
                conn.conversation.item.create(item=question("Say goodbye in three words."))
                for event in conn:
                    # The client logs the error event and carries on, as SDK users do.
                    if event.type == "error":
                        break
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*rtreplay: the client's events did not match the cassette.",
            "  cassette: cassettes/test_drift/test_other_question.jsonl",
            "*`error` event, which clients often swallow*",
            "*If the new conversation is right, re-record this test:",
            "    pytest --realtime-record-mode=all test_drift.py::test_other_question",
        ]
    )
    out = result.stdout.str()
    assert "Say goodbye in three words." in out and "Say hello in three words." in out, out
    assert "Traceback" not in out and "_mock.py" not in out


def test_unplayed_client_events_fail_the_test_unless_allowed(project: pytest.Pytester) -> None:
    for name in ("test_stops_early", "test_stops_early_on_purpose"):
        put_cassette(project, f"cassettes/test_early/{name}.jsonl")
    project.makepyfile(
        test_early="""
        import pytest
        from talk import SESSION

        def stop_after_session(client):
            with client.realtime.connect(model="gpt-realtime") as conn:
                conn.session.update(session=SESSION)
                for event in conn:
                    if event.type == "session.updated":
                        return

        def test_stops_early(realtime_mock):
            stop_after_session(realtime_mock.client())

        @pytest.mark.realtime(allow_unplayed=True)
        def test_stops_early_on_purpose(realtime_mock):
            stop_after_session(realtime_mock.client())
            assert not realtime_mock.report.complete
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*rtreplay: the test ended before the client sent every event recorded in the cassette.",
            "  cassette: cassettes/test_early/test_stops_early.jsonl",
            "*conversation.item.create*",
            "If the test stops early on purpose: @pytest.mark.realtime(allow_unplayed=True)",
        ]
    )


def test_a_failing_test_gets_the_mismatch_report_as_a_section(project: pytest.Pytester) -> None:
    put_cassette(project, "cassettes/test_fails/test_fails.jsonl")
    project.makepyfile(
        test_fails="""
        from talk import talk

        def test_fails(realtime_mock):
            answer, seen = talk(realtime_mock.client(), "Say goodbye.")
            assert "error" in seen  # the mock said so in-band; the test looks elsewhere
            assert "goodbye" in answer.lower()
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*- rtreplay -*", "rtreplay: the client's events also did not match the cassette, which may be why the test failed."]
    )


# -- recording ----------------------------------------------------------------------------

RECORDED_TESTS = """
import pytest
from talk import talk, atalk

def test_sync(realtime_mock):
    assert talk(realtime_mock.client())[0] == "Hello there, friend!"
    # The same whether this run records or replays.
    assert [r.type for r in realtime_mock.received] == [
        "session.update", "conversation.item.create", "response.create"]

@pytest.mark.asyncio
async def test_asyncio(realtime_async_openai):
    assert (await atalk(realtime_async_openai))[0] == "Hello there, friend!"

@pytest.mark.parametrize("text", ["Hi!", "Hello?"])
def test_params(realtime_mock, text):
    assert talk(realtime_mock.client(), text)[0] == "Hello there, friend!"
"""
RECORDED_FILES = ["test_sync.jsonl", "test_asyncio.jsonl", "test_params[Hi-].jsonl", "test_params[Hello-].jsonl"]


def test_record_once_then_replay_offline(
    project: pytest.Pytester, upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(test_rec=RECORDED_TESTS)
    cassettes = project.path / "cassettes" / "test_rec"
    result = project.runpytest("--realtime-record", f"--realtime-upstream={upstream.websocket_base_url}")
    result.assert_outcomes(passed=4)
    assert sorted(p.name for p in cassettes.iterdir()) == sorted(RECORDED_FILES)
    result.stdout.fnmatch_lines(["*= rtreplay =*", "recorded 4 cassettes:", "  cassettes/test_rec/test_asyncio.jsonl", "*"])
    assert len(upstream.events("response.create")) == 4
    assert [h.headers["authorization"] for h in upstream.handshakes] == [f"Bearer {API_KEY}"] * 4
    for cassette in cassettes.iterdir():
        text = cassette.read_text()
        assert API_KEY not in text, f"the key reached {cassette}"
        assert '"dir":"client"' in text and "Hello there, friend!" in text

    # Offline: the upstream is gone, the key too; every test replays.
    before = {p.name: p.read_bytes() for p in cassettes.iterdir()}
    upstream_url = upstream.websocket_base_url
    monkeypatch.delenv("OPENAI_API_KEY")
    replay = project.runpytest()
    replay.assert_outcomes(passed=4)
    replay.stdout.no_fnmatch_line("*recorded*")
    # --realtime-record leaves existing cassettes alone: the upstream sees nothing new.
    again = project.runpytest("--realtime-record", f"--realtime-upstream={upstream_url}")
    again.assert_outcomes(passed=4)
    assert len(upstream.events("response.create")) == 4
    assert {p.name: p.read_bytes() for p in cassettes.iterdir()} == before


def test_a_redaction_hook_that_fails_while_recording_fails_the_test_naming_it(
    project: pytest.Pytester, upstream: ScriptedUpstream
) -> None:
    """realtime_config's ``redactor`` records with your rules; a hook of its that raises
    ends the connection (the client sees 1011) and the test fails saying which hook, on
    which event; no cassette is written."""
    project.makeconftest(
        """
        import pytest
        from rtreplay import Redactor

        def no_done(event, direction):
            if event.get("type") == "response.done":
                raise ValueError("response.done is not wanted here")
            return event

        @pytest.fixture
        def realtime_config():
            return {"redactor": Redactor(event_hook=no_done)}
        """
    )
    project.makepyfile(
        test_hook="""
        from talk import talk

        def test_hooked(realtime_mock):
            talk(realtime_mock.client())
        """
    )
    result = project.runpytest("--realtime-record", f"--realtime-upstream={upstream.websocket_base_url}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*rtreplay: the recording of cassettes/test_hook/test_hooked.jsonl failed to finish: the recording "
            "could not be written whole (the redaction event_hook conftest.no_done raised ValueError: "
            "response.done is not wanted here at *conftest.py:6 on the server event 'response.done' "
            "(event_id *, connection 0); the event was not recorded.*",
        ]
    )
    assert not (project.path / "cassettes" / "test_hook" / "test_hooked.jsonl").exists()


def test_realtime_config_redactor_must_be_a_redactor(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
        import pytest

        @pytest.fixture
        def realtime_config():
            return {"redactor": lambda event, direction: event}
        """
    )
    project.makepyfile(test_bad="def test_bad(realtime_mock):\n    pass\n")
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*realtime_config: redactor must be an rtreplay.Redactor, not function*"])


def test_a_test_that_fails_while_recording_keeps_the_old_cassette(project: pytest.Pytester, upstream: ScriptedUpstream) -> None:
    old = put_cassette(project, "cassettes/test_flaky/test_flaky.jsonl")
    before = old.read_bytes()
    project.makepyfile(
        test_flaky="""
        from talk import talk

        def test_flaky(realtime_mock):
            assert realtime_mock.recording
            talk(realtime_mock.client())
            raise AssertionError("the live API had a bad day")

        def test_new(realtime_mock):
            talk(realtime_mock.client())
            raise AssertionError("no cassette yet, and this one fails")
        """
    )
    result = project.runpytest("--realtime-record-mode=all", f"--realtime-upstream={upstream.websocket_base_url}")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*rtreplay: the test failed while recording, so the recording was discarded; "
            "cassettes/test_flaky/test_flaky.jsonl was left as it was.",
            "*rtreplay: the test failed while recording, so the recording was discarded; "
            "cassettes/test_flaky/test_new.jsonl was not written.",
        ]
    )
    assert old.read_bytes() == before
    assert sorted(p.name for p in old.parent.iterdir()) == ["test_flaky.jsonl"], "no partial file left"
    assert len(upstream.events("response.create")) == 2, "both tests did record live"


def test_a_discarded_recording_leaves_no_directory_it_made(project: pytest.Pytester, upstream: ScriptedUpstream) -> None:
    """A first recording that fails is discarded: neither cassettes/ nor cassettes/test_first/
    is left behind, empty; a directory that was there, or that another test filled, stays."""
    (project.path / "cassettes" / "keep").mkdir(parents=True)
    project.makepyfile(
        test_first="""
        from talk import talk

        def test_fails(realtime_mock):
            talk(realtime_mock.client())
            raise AssertionError("the live API had a bad day")
        """
    )
    result = project.runpytest("--realtime-record", f"--realtime-upstream={upstream.websocket_base_url}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the recording was discarded; cassettes/test_first/test_fails.jsonl was not written."])
    assert sorted(p.name for p in (project.path / "cassettes").iterdir()) == ["keep"]
    shutil.rmtree(project.path / "cassettes")
    project.makepyfile(
        test_second="""
        from talk import talk

        def test_fails(realtime_mock):
            talk(realtime_mock.client())
            raise AssertionError("the live API had a bad day")

        def test_passes(realtime_mock):
            talk(realtime_mock.client())
        """
    )
    result = project.runpytest("test_second.py", "--realtime-record", f"--realtime-upstream={upstream.websocket_base_url}")
    result.assert_outcomes(failed=1, passed=1)
    assert sorted(p.relative_to(project.path).as_posix() for p in (project.path / "cassettes").rglob("*")) == [
        "cassettes/test_second", "cassettes/test_second/test_passes.jsonl"]


def test_recording_needs_a_key_and_a_connection(
    project: pytest.Pytester, upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    project.makepyfile(
        test_rec="""
        def test_no_key(realtime_mock):
            realtime_mock.client()

        def test_never_connects(realtime_mock):
            pass
        """
    )
    result = project.runpytest("--realtime-record", f"--realtime-upstream={upstream.websocket_base_url}")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            f"*rtreplay: recording cassettes/test_rec/test_no_key.jsonl needs an API key for {upstream.websocket_base_url}: set OPENAI_API_KEY*",
            "*rtreplay: recording finished with no connection: the test never connected to realtime_mock, so nothing was written.",
        ]
    )
    assert not (project.path / "cassettes").exists(), "no directory made for nothing"


def test_an_unreachable_upstream_is_named_when_a_recording_test_fails(
    project: pytest.Pytester, upstream: ScriptedUpstream
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    project.makepyfile(
        test_dead="""
        from talk import talk

        def test_dead(realtime_mock):
            talk(realtime_mock.client())
        """
    )
    result = project.runpytest("--realtime-record", f"--realtime-upstream=ws://127.0.0.1:{dead}/v1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*rtreplay: the test failed while recording, so the recording was discarded; "
            "cassettes/test_dead/test_dead.jsonl was not written.",
            f"  the recording proxy answered the client: upstream ws://127.0.0.1:{dead}/v1/realtime "
            "answered 502: *",
        ]
    )


def test_the_upstream_can_come_from_the_environment(
    project: pytest.Pytester, upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RTREPLAY_UPSTREAM", upstream.websocket_base_url)
    project.makepyfile(
        test_env="""
        from talk import talk

        def test_env(realtime_mock):
            assert realtime_mock.settings.sources["upstream"] == "environment"
            assert talk(realtime_mock.client())[0] == "Hello there, friend!"
        """
    )
    project.runpytest("--realtime-record").assert_outcomes(passed=1)
    assert (project.path / "cassettes" / "test_env" / "test_env.jsonl").is_file()


# -- xdist --------------------------------------------------------------------------------


def test_xdist_records_and_replays_with_two_workers(
    project: pytest.Pytester, upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(test_rec=RECORDED_TESTS)
    result = project.runpytest_subprocess("-n", "2", "--realtime-record", f"--realtime-upstream={upstream.websocket_base_url}")
    result.assert_outcomes(passed=4)
    # The summary is printed by the controller, from what both workers reported.
    result.stdout.fnmatch_lines(["recorded 4 cassettes:"])
    names = sorted(p.name for p in (project.path / "cassettes" / "test_rec").iterdir())
    assert names == sorted(RECORDED_FILES), names
    assert len(upstream.events("response.create")) == 4
    monkeypatch.delenv("OPENAI_API_KEY")
    project.runpytest_subprocess("-n", "2").assert_outcomes(passed=4)



# -- bad input ----------------------------------------------------------------------------


def test_a_broken_cassette_fails_with_its_file_and_line(project: pytest.Pytester) -> None:
    broken = project.path / "cassettes" / "test_broken" / "test_broken.jsonl"
    broken.parent.mkdir(parents=True)
    lines = SAMPLE.read_text().splitlines()
    lines[3] = '{"kind":"frame","conn":0,"t":"soon"}'
    broken.write_text("\n".join(lines) + "\n")
    project.makepyfile(test_broken="def test_broken(realtime_mock):\n    pass\n")
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"rtreplay: cannot use the cassette of this test: {broken}:4: *"])
    result.stdout.no_fnmatch_line("*During handling*")


def test_the_client_helpers_say_how_to_get_openai_when_it_is_missing(project: pytest.Pytester) -> None:
    put_cassette(project, "cassettes/test_no_sdk/test_no_sdk.jsonl")
    project.makeconftest("import sys\n\nsys.modules['openai'] = None  # as if it were not installed\n")
    project.makepyfile(test_no_sdk="def test_no_sdk(realtime_mock):\n    realtime_mock.client()\n")
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["rtreplay: realtime_mock.client() needs the openai SDK: pip install 'openai[realtime]>=2.1'"]
    )
    result.stdout.no_fnmatch_line("*During handling*")


# -- beside pytest-recording --------------------------------------------------------------


def test_beside_pytest_recording_block_network_needs_loopback_allowed(project: pytest.Pytester) -> None:
    pytest.importorskip("pytest_recording")
    project.makeini(INI.replace("-p no:recording ", ""))
    put_cassette(project, "cassettes/test_blocked/test_blocked.jsonl")
    project.makepyfile(
        test_blocked="""
        from talk import talk

        def test_blocked(realtime_mock):
            assert talk(realtime_mock.client())[0] == "Hello there, friend!"
        """
    )
    # The blocked client's own socket is left unclosed by the SDK: not ours to fail on.
    blocked = project.runpytest_subprocess(
        "--block-network", "-W", "ignore::pytest.PytestUnraisableExceptionWarning"
    )
    blocked.assert_outcomes(failed=1)
    blocked.stdout.fnmatch_lines(
        [
            "*- rtreplay -*",
            "rtreplay: realtime_mock received no connection, and pytest-recording is blocking the "
            "network (--block-network or @pytest.mark.block_network), loopback included.",
            "  allow the mock's address: pytest --block-network --allowed-hosts=127.0.0.1",
        ]
    )
    allowed = project.runpytest_subprocess("--block-network", "--allowed-hosts=127.0.0.1")
    allowed.assert_outcomes(passed=1)


def test_marker_match_and_strict_reach_the_replay(project: pytest.Pytester) -> None:
    for name in ("test_loose", "test_strict"):
        put_cassette(project, f"cassettes/test_policy/{name}.jsonl")
    project.makepyfile(
        test_policy="""
        import pytest
        from websockets.exceptions import ConnectionClosedError
        from talk import talk

        @pytest.mark.realtime(match="type")
        def test_loose(realtime_mock):
            assert talk(realtime_mock.client(), "Say goodbye.")[0] == "Hello there, friend!"

        @pytest.mark.realtime(strict=True)
        def test_strict(realtime_mock):
            with pytest.raises(ConnectionClosedError) as closed:
                talk(realtime_mock.client(), "Say goodbye.")
            assert closed.value.rcvd.code == 1008
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*_ test_strict _*", "rtreplay: the client's events did not match the cassette."])


def test_a_test_that_waits_in_vain_is_told_what_the_replay_holds_back(project: pytest.Pytester) -> None:
    put_cassette(project, "cassettes/test_wait/test_waits_for_a_reply.jsonl")
    project.makepyfile(
        test_wait="""
        import pytest
        from talk import SESSION

        def test_waits_for_a_reply(realtime_mock):
            with realtime_mock.client().realtime.connect(model="gpt-realtime") as conn:
                conn.session.update(session=SESSION)
                # forgot to ask: the recorded answer never comes
                for event in conn:
                    if event.type == "session.updated":
                        pytest.fail("timed out waiting for response.done")  # a timeout, quickly
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- rtreplay -*",
            "rtreplay: when the test failed, the replay was still waiting for client events; "
            "the server events recorded after them were not sent.",
            "  cassette: cassettes/test_wait/test_waits_for_a_reply.jsonl",
            "*conversation.item.create, response.create*",
        ]
    )


# -- a replay never hangs ------------------------------------------------------------------------


def test_a_deadlocked_client_fails_within_the_stall_timeout_without_pytest_timeout(
    project: pytest.Pytester,
) -> None:
    put_cassette(project, "cassettes/test_deadlock/test_waits_forever.jsonl")
    put_cassette(project, "cassettes/test_deadlock/test_waits_forever_async.jsonl")
    project.makepyfile(
        test_deadlock="""
        import time
        import pytest
        from talk import SESSION

        @pytest.mark.realtime(stall_timeout=1)
        def test_waits_forever(realtime_mock):
            with realtime_mock.client().realtime.connect(model="gpt-realtime") as conn:
                conn.session.update(session=SESSION)
                waiting = time.monotonic()
                try:
                    # forgot to ask, and nothing bounds this wait: only the stall ends it
                    for event in conn:
                        if event.type == "response.done":
                            break
                finally:
                    print(f"waited {time.monotonic() - waiting:.3f} s")

        @pytest.mark.realtime(stall_timeout=1)
        @pytest.mark.asyncio
        async def test_waits_forever_async(realtime_mock):
            async with realtime_mock.async_client().realtime.connect(model="gpt-realtime") as conn:
                await conn.session.update(session=SESSION)
                waiting = time.monotonic()
                try:
                    async for event in conn:
                        if event.type == "response.done":
                            break
                finally:
                    print(f"waited {time.monotonic() - waiting:.3f} s")
        """
    )
    # No pytest-timeout at all: the subprocess's own bound is only this test's safety net.
    result = project.runpytest_subprocess("-p", "no:timeout", timeout=timeout(60))
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_waits_forever _*",
            "*ConnectionClosedError*1008*rtreplay stall: waiting for conversation.item.create*",
            "*- rtreplay -*",
            "rtreplay: the replay stalled: it held server events for a client that, for 1 s, "
            "sent nothing that moved the replay on; then it closed the connection (1008) so "
            "the test would not hang.",
            "  cassette: cassettes/test_deadlock/test_waits_forever.jsonl",
            "mismatch 1 of 1 (stall): connection 0 (recorded connection 0), turn 1, client event "
            "2 of 3",
            "  stall: the replay holds conversation.item.added (server event 3 of 17, *) "
            "until the client sends conversation.item.create (client event 2 of 3, *), and the "
            "client has been silent for the stall timeout, 1 s (last sent: session.update)",
            "  holds:    conversation.item.added*",
            '  awaits:   {"type": "conversation.item.create"*',
            "  last received from the client: session.update",
            "*If it legitimately needs longer: @pytest.mark.realtime(stall_timeout=30)*",
            "If the new conversation is right, re-record this test:",
            "    pytest --realtime-record-mode=all test_deadlock.py::test_waits_forever",
        ]
    )
    # Each client was woken within the stall timeout plus a second (scaled for slow machines).
    waits = [float(w) for w in re.findall(r"^waited ([\d.]+) s$", result.stdout.str(), re.M)]
    assert len(waits) == 2 and all(1 <= w < timeout(1 + 1) for w in waits), waits


def test_stall_timeout_and_audio_tolerance_reach_the_replay(project: pytest.Pytester) -> None:
    project.makeini(INI + "realtime_stall_timeout = 3\nrealtime_audio_tolerance = 0.1\n")
    for name in ("test_ini", "test_marker"):
        put_cassette(project, f"cassettes/test_options/{name}.jsonl")
    project.makepyfile(
        test_options="""
        import pytest

        def test_ini(realtime_mock):
            assert realtime_mock.service.stall_timeout == 3.0
            assert realtime_mock.service.audio_tolerance == 0.1
            assert realtime_mock.settings.sources["stall_timeout"] == "ini"

        @pytest.mark.realtime(stall_timeout=0, audio_tolerance=0.5, allow_unplayed=True)
        def test_marker(realtime_mock):
            assert realtime_mock.service.stall_timeout is None
            assert realtime_mock.service.audio_tolerance == 0.5
        """
    )
    result = project.runpytest("-k", "test_ini or test_marker", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)  # test_ini sends nothing: unplayed
    result.stdout.fnmatch_lines(["*_ test_ini _*", "rtreplay: the test ended before the client sent every event*"])


def test_the_default_stall_timeout_is_off_under_a_debugger(project: pytest.Pytester) -> None:
    put_cassette(project, "cassettes/test_debugger/test_paused.jsonl")
    project.makeconftest(
        "import sys, types\nsys.modules.setdefault('pydevd', types.ModuleType('pydevd'))\n"
    )
    project.makepyfile(
        test_debugger="""
        import pytest

        @pytest.mark.realtime(allow_unplayed=True)
        def test_paused(realtime_mock):
            assert realtime_mock.service.stall_timeout is None
            assert realtime_mock.settings.sources["stall_timeout"] == "default (off under a debugger)"

        @pytest.mark.realtime(cassette="test_debugger/test_paused", stall_timeout=5, allow_unplayed=True)
        def test_explicit(realtime_mock):
            assert realtime_mock.service.stall_timeout == 5.0
        """
    )
    project.runpytest_subprocess().assert_outcomes(passed=2)
