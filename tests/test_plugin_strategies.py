"""The plugin with hypothesis: ``realtime_replay`` serves one example per call, and a
mismatch or a stall in one example fails that example with its replay report and the line
that keeps it as a regression test; ``realtime_mock`` takes an in-memory cassette."""

from __future__ import annotations

import shutil

import pytest

from .conftest import CASSETTES

pytest_plugins = ["pytester"]

# The hypothesis plugin stays on: its health checks are part of what is tested.
INI = """
[pytest]
addopts = -p no:recording -p no:cacheprovider
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

CLIENT = '''
import asyncio

from openai import AsyncOpenAI

SESSION = {"type": "realtime", "output_modalities": ["text"],
           "instructions": "You are a concise assistant. Answer in one sentence."}
ANSWER = "The capital of Australia is Canberra, not Sydney as many people assume."


def ask(base_url, question="What is the capital of Australia?", create=True):
    async def run():
        client = AsyncOpenAI(api_key="sk-test", websocket_base_url=base_url)
        text = ""
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(session=SESSION)
            await conn.conversation.item.create(item={"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": question}]})
            if create:
                await conn.response.create()
            async for event in conn:
                if event.type == "response.output_text.delta":
                    text += event.delta
                if event.type == "response.done":
                    break
        return text

    return asyncio.run(run())
'''


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makepyfile(client=CLIENT)
    pytester.syspathinsert()
    (pytester.path / "cassettes").mkdir()
    shutil.copyfile(CASSETTES / "text-chat.jsonl", pytester.path / "cassettes" / "text-chat.jsonl")
    return pytester


def test_each_example_is_served_and_checked(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_prop="""
        from hypothesis import given, settings
        from rtreplay.strategies import replays
        from client import ANSWER, ask

        SEEN = []

        @settings(max_examples=15, deadline=None)
        @given(replays("cassettes/text-chat.jsonl"))
        def test_every_variant(realtime_replay, v):
            with realtime_replay(v) as mock:
                assert ask(mock.websocket_base_url) == ANSWER
            assert not mock.report.mismatches
            SEEN.append(mock.url)

        def test_one_server_per_example():
            assert len(SEEN) == len(set(SEEN)) >= 10

        def test_a_path(realtime_replay):
            with realtime_replay("cassettes/text-chat.jsonl") as mock:
                assert ask(mock.websocket_base_url) == ANSWER
        """
    )
    project.runpytest("-p", "no:randomly").assert_outcomes(passed=3)


def test_a_mismatch_fails_the_example_with_its_report_and_how_to_keep_it(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_prop="""
        from hypothesis import Phase, given, settings
        from rtreplay.strategies import replays
        from client import ask

        @settings(max_examples=5, deadline=None, database=None, phases=[Phase.generate, Phase.shrink])
        @given(replays("cassettes/text-chat.jsonl"))
        def test_france(realtime_replay, v):
            with realtime_replay(v, stall_timeout=0.5) as mock:
                ask(mock.websocket_base_url, "What is the capital of France?")
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "rtreplay: the client's events did not match the cassette." in out
    assert 'item.content[0].text: expected "What is the capital of Australia?", got "What is the capital of France?"' in out
    # the example hypothesis shrank to (every example fails: the recording itself), and how to keep it
    assert "v=variant('cassettes/text-chat.jsonl')" in out
    assert "rtreplay.save(variant('cassettes/text-chat.jsonl'), 'tests/cassettes/regression.jsonl')" in out
    assert out.count("keep it as a regression test") == 1
    assert "re-record" not in out


def test_a_stall_fails_the_example_with_the_stall(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_prop="""
        from hypothesis import Phase, given, settings
        from rtreplay.strategies import replays
        from client import ask

        @settings(max_examples=3, deadline=None, database=None, phases=[Phase.generate])
        @given(replays("cassettes/text-chat.jsonl"))
        def test_forgets_to_ask(realtime_replay, v):
            with realtime_replay(v, stall_timeout=0.3) as mock:
                ask(mock.websocket_base_url, create=False)
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "rtreplay: the replay stalled" in out
    assert "until the client sends response.create" in out
    assert "During handling of the above exception" not in out  # the socket error the stall caused
    assert "Falsifying example" in out or "Failing test case" in out


def test_a_failing_assertion_keeps_the_shrunk_variant(project: pytest.Pytester) -> None:
    # The client's own bug (not a replay failure): the replay report has nothing to add;
    # hypothesis' note says how to keep the smallest example, and the kept cassette fails
    # the same way under the marker.
    project.makepyfile(
        test_prop="""
        import asyncio

        import pytest
        from hypothesis import given, settings
        from openai import AsyncOpenAI
        from rtreplay.strategies import replays
        from client import ANSWER, SESSION

        def first_delta(base_url):
            async def run():
                client = AsyncOpenAI(api_key="sk-test", websocket_base_url=base_url)
                text = ""
                async with client.realtime.connect(model="gpt-realtime") as conn:
                    await conn.session.update(session=SESSION)
                    await conn.conversation.item.create(item={"type": "message", "role": "user",
                        "content": [{"type": "input_text", "text": "What is the capital of Australia?"}]})
                    await conn.response.create()
                    async for event in conn:
                        if event.type == "response.output_text.delta" and not text:
                            text = event.delta
                        if event.type == "response.done":
                            break
                return text
            return asyncio.run(run())

        @settings(max_examples=30, deadline=None, database=None)
        @given(replays("cassettes/text-chat.jsonl"))
        def test_first_word(realtime_replay, v):
            with realtime_replay(v) as mock:
                assert first_delta(mock.websocket_base_url) == "The"
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "v=variant('cassettes/text-chat.jsonl', chunks={(0, 11): [[71]]})" in out
    assert "16 response.output_text.delta at frame 11 re-cut into 1" in out
    save = "rtreplay.save(variant('cassettes/text-chat.jsonl', chunks={(0, 11): [[71]]}), 'tests/cassettes/regression.jsonl')"
    assert save in out
    # What the note says to run works: the kept example replays under the marker.
    project.makepyfile(
        keep=f"""
        import rtreplay
        from rtreplay.strategies import variant
        {save.replace("tests/cassettes", "cassettes")}
        """
    )
    project.runpython(project.path / "keep.py")
    project.makepyfile(
        test_kept="""
        import pytest
        from client import ANSWER, ask

        @pytest.mark.realtime("regression")
        def test_kept(realtime_mock):
            assert ask(realtime_mock.websocket_base_url) == ANSWER
        """
    )
    project.runpytest("test_kept.py").assert_outcomes(passed=1)


def test_realtime_mock_takes_an_in_memory_cassette(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_mem="""
        import pytest
        from rtreplay.scripted import ScriptedSession
        from client import SESSION, ask

        s = ScriptedSession(seed=1)
        s.update_session(SESSION)
        s.user_text("What is the capital of Australia?")
        s.reply_text("Canberra.")
        SCRIPTED = s.cassette()

        @pytest.mark.realtime(cassette=SCRIPTED)
        def test_scripted(realtime_mock):
            assert ask(realtime_mock.websocket_base_url) == "Canberra."

        @pytest.mark.realtime(cassette=SCRIPTED)
        def test_scripted_mismatch(realtime_mock):
            ask(realtime_mock.websocket_base_url, "Where is Canberra?")
        """
    )
    result = project.runpytest("--realtime-record-mode=all")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "expected \"What is the capital of Australia?\", got \"Where is Canberra?\"" in out
    assert not (project.path / "cassettes" / "test_mem").exists()  # nothing recorded over it


def test_realtime_replay_refuses_what_it_cannot_serve(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_bad="""
        def test_option(realtime_replay):
            with realtime_replay("cassettes/text-chat.jsonl", sped=2):
                pass

        def test_thing(realtime_replay):
            with realtime_replay(42):
                pass

        def test_no_with(realtime_replay):
            mock = realtime_replay("cassettes/text-chat.jsonl")
            mock.async_client()

        def test_missing(realtime_replay):
            with realtime_replay("cassettes/text-chta.jsonl"):
                pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        ["*AttributeError: realtime_replay(...) starts a replay only in a with block: `with realtime_replay(cassette) as mock:`, then mock.async_client"]
    )
    # A path with a typo fails on entering the block, even when no client connects; and
    # realtime_replay never records, so the failure does not offer to.
    result.stdout.fnmatch_lines(
        ["*realtime_replay(): cassettes/text-chta.jsonl: no such cassette file (a path is relative to where pytest runs, *)"]
    )
    out = result.stdout.str()
    assert "realtime_replay()" in out and "sped" in out
    assert "realtime_replay() takes a cassette path or an rtreplay.Cassette, not 42" in out


def test_a_fault_the_cassette_has_no_place_for_fails_without_a_traceback(project: pytest.Pytester) -> None:
    """A fault at a place the recording never reaches is the user's option, not an error
    deep inside rtreplay: one line naming the fault and what the cassette has, with
    realtime_replay and realtime_mock, with or without allow_unfired."""
    project.makepyfile(
        test_place="""
        import pytest

        NOWHERE = "error@after:response.function_call_arguments.done"

        def test_block(realtime_replay):
            with realtime_replay("cassettes/text-chat.jsonl", faults=[NOWHERE], allow_unfired=True):
                pass

        @pytest.mark.realtime(cassette="text-chat", faults=[NOWHERE])
        def test_marker(realtime_mock):
            pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1, errors=1)  # realtime_mock's fails in its setup
    out = result.stdout.str()
    assert out.count(
        "rtreplay: cannot replay the cassette of this test: fault "
        "'error@after:response.function_call_arguments.done' can never fire"
    ) == 2, out
    assert "replay.py" not in out and "server.py" not in out and "Traceback" not in out, out


def test_realtime_mock_in_a_hypothesis_test_points_at_realtime_replay(project: pytest.Pytester) -> None:
    """hypothesis refuses a function-scoped fixture and advises suppressing the check, which
    would replay the first example and refuse the rest: the failure names the right fixture.
    (The test has its cassette, so the fixture itself has nothing to say: older hypothesis
    releases check their fixtures after rtreplay's.)"""
    (project.path / "cassettes" / "test_wrong").mkdir()
    shutil.copyfile(CASSETTES / "text-chat.jsonl", project.path / "cassettes" / "test_wrong" / "test_chat.jsonl")
    project.makepyfile(
        test_wrong="""
        from hypothesis import given, settings
        from rtreplay.strategies import replays

        from client import ask

        @settings(max_examples=3, deadline=None)
        @given(replays("cassettes/text-chat.jsonl"))
        def test_chat(realtime_mock, session):
            ask(realtime_mock.websocket_base_url)
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*FailedHealthCheck*realtime_mock*",
            "*rtreplay: realtime_mock replays the test's cassette once, but a hypothesis test runs once per example: use the realtime_replay fixture*",
            "*with realtime_replay(session) as mock:*",
        ]
    )


def test_realtime_replay_of_a_path_says_how_to_record_it_again(project: pytest.Pytester) -> None:
    # It said `rtreplay record ... cassettes/text-chat.jsonl`: not a command that runs.
    project.makepyfile(
        test_other="""
        from client import ask

        def test_other_question(realtime_replay):
            with realtime_replay("cassettes/text-chat.jsonl") as mock:
                ask(mock.websocket_base_url, question="What is the capital of Peru?")
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*If the new conversation is right, re-record this test:",
            "*    rtreplay record --out cassettes/text-chat.jsonl   (then run the client against the URL it prints)",
        ]
    )


def test_nothing_connected_names_the_fixture_the_test_used(project: pytest.Pytester) -> None:
    """A block no client connected to says where to point the client: at the mock the
    block yields, not at a realtime_mock fixture the test never asked for."""
    project.makepyfile(
        test_idle="""
        from hypothesis import given, settings
        from rtreplay.strategies import replays

        def test_path(realtime_replay):
            with realtime_replay("cassettes/text-chat.jsonl"):
                pass

        @settings(max_examples=2, deadline=None)
        @given(replays("cassettes/text-chat.jsonl"))
        def test_examples(realtime_replay, v):
            with realtime_replay(v):
                pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    said = "no client connected to the mock: is your client pointed at the mock that `with realtime_replay(...) as mock:` yields"
    assert out.count(said) == 2
    assert "websocket_base_url=mock.websocket_base_url" in out and "model_config['url'] = mock.url" in out
    assert "realtime_mock" not in out
