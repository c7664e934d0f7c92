"""What a failing replayed or recorded test prints: the report once, and what to do next."""

from __future__ import annotations

import pytest

from .test_plugin import project, put_cassette  # noqa: F401 - the fixture
from .upstream import ScriptedUpstream

pytest_plugins = ["pytester"]

DIFFERENCE = 'item.content[0].text: expected "Say hello in three words.", got "Say goodbye in three words."'


def test_a_mismatch_is_said_once_without_websockets_chatter(project: pytest.Pytester) -> None:  # noqa: F811
    for name in ("test_swallowed", "test_raised", "test_own_assert"):
        put_cassette(project, f"cassettes/test_once/{name}.jsonl")
    project.makepyfile(
        test_once="""
        from talk import SESSION, question, talk

        def test_swallowed(realtime_mock):
            with realtime_mock.client().realtime.connect(model="gpt-realtime") as conn:
                conn.session.update(session=SESSION)
                conn.conversation.item.create(item=question("Say goodbye in three words."))
                for event in conn:
                    if event.type == "error":
                        break

        def test_raised(realtime_mock):
            with realtime_mock.client().realtime.connect(model="gpt-realtime") as conn:
                conn.session.update(session=SESSION)
                conn.conversation.item.create(item=question("Say goodbye in three words."))
                for event in conn:
                    if event.type == "error":
                        raise RuntimeError(event.error.message)

        def test_own_assert(realtime_mock):
            answer, _ = talk(realtime_mock.client(), "Say goodbye in three words.")
            assert answer == "Goodbye"
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert out.count(DIFFERENCE) == 3, "once per test"
    for chatter in ("connection open", "server listening", "server closing", "WARNING  rtreplay.server"):
        assert chatter not in out, chatter
    # the test that raised the mock's error: its summary is not repeated in the section
    assert "(the error above)" in out
    # every failure says how to re-record, and the narrowest loosening
    for name in ("test_swallowed", "test_raised", "test_own_assert"):
        assert f"    pytest --realtime-record-mode=all test_once.py::{name}" in out
    loosening = (
        '    @pytest.mark.realtime(match=MatchPolicy.default(ignore={"conversation.item.create": '
        '["item.content[0].text"]}))  # from rtreplay import MatchPolicy'
    )
    assert out.count(loosening) == 3


def test_the_suggested_loosening_accepts_what_came(project: pytest.Pytester) -> None:  # noqa: F811
    put_cassette(project, "cassettes/test_loose/test_goodbye.jsonl")
    project.makepyfile(
        test_loose="""
        import pytest
        from rtreplay import MatchPolicy
        from talk import talk

        @pytest.mark.realtime(match=MatchPolicy.default(ignore={"conversation.item.create": ["item.content[0].text"]}))
        def test_goodbye(realtime_mock):
            assert talk(realtime_mock.client(), "Say goodbye in three words.")[0] == "Hello there, friend!"
        """
    )
    project.runpytest().assert_outcomes(passed=1)


def test_a_test_whose_client_never_connected_is_asked_where_it_points(project: pytest.Pytester) -> None:  # noqa: F811
    put_cassette(project, "cassettes/test_nowhere/test_nowhere.jsonl")
    project.makepyfile(
        test_nowhere="""
        def test_nowhere(realtime_mock):
            raise TimeoutError("no answer from the API")
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- rtreplay -*",
            "*is your client pointed at realtime_mock.websocket_base_url*",
            "    pytest --realtime-record-mode=all test_nowhere.py::test_nowhere",
        ]
    )


def test_a_missing_cassette_fails_the_same_way_under_every_fixture(project: pytest.Pytester) -> None:  # noqa: F811
    project.makepyfile(
        test_none="""
        def test_mock(realtime_mock):
            raise AssertionError("must not run")

        def test_openai(realtime_openai):
            raise AssertionError("must not run")

        async def test_async_openai(realtime_async_openai):
            raise AssertionError("must not run")
        """
    )
    result = project.runpytest("-p", "anyio", "-o", "asyncio_mode=auto")
    result.assert_outcomes(failed=3)
    assert result.stdout.str().count("rtreplay: this test has no cassette, and this run does not record.") == 3
    assert "must not run" not in result.stdout.str()


def test_a_recording_the_upstream_refused_shows_the_upstreams_answer(
    project: pytest.Pytester, upstream: ScriptedUpstream  # noqa: F811
) -> None:
    upstream.api_key = "sk-the-right-key-0123456789"
    project.makepyfile(
        test_refused="""
        from talk import talk

        def test_refused(realtime_mock):
            talk(realtime_mock.client())
        """
    )
    result = project.runpytest("--realtime-record", f"--realtime-upstream={upstream.websocket_base_url}")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "rtreplay: recording failed: the upstream refused the connection.",
            "*upstream refused /v1/realtime?model=gpt-realtime with HTTP 401*Incorrect API key provided.*",
            "*check OPENAI_API_KEY*",
        ]
    )
    assert "Traceback" not in out and "websockets/" not in out.split("short test summary")[0]


# -- re-record hints that would not do what they say --------------------------------------

SHARING = {
    "test_hello": """
        from talk import talk

        def test_says_hello(realtime_mock):
            assert talk(realtime_mock.client())[0] == "Hello there, friend!"
        """,
    "test_reader": """
        import pytest
        from talk import talk

        @pytest.mark.realtime(cassette="test_hello/test_says_hello", record_mode="none")
        def test_reads(realtime_mock):
            talk(realtime_mock.client(), "Say goodbye in three words.")
        """,
    "test_sharer": """
        import pytest
        from talk import talk

        @pytest.mark.realtime(cassette="test_hello/test_says_hello")
        def test_shares(realtime_mock):
            talk(realtime_mock.client(), "Say goodbye in three words.")
        """,
}


def test_a_shared_cassette_and_a_test_that_never_records_get_hints_that_work(
    project: pytest.Pytester, upstream: ScriptedUpstream  # noqa: F811
) -> None:
    cassette = put_cassette(project, "cassettes/test_hello/test_says_hello.jsonl")
    project.makepyfile(**SHARING)
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    reads = out[out.index("_ test_reads _") : out.index("_ test_shares _")]
    shares = out[out.index("_ test_shares _") :]
    # record_mode="none" wins over the command line: the plain re-record command would
    # replay again. The hint names the test that does record this cassette.
    assert "--realtime-record-mode=all test_reader.py::test_reads" not in reads
    assert 'This test never records (record_mode="none" in its @pytest.mark.realtime).' in reads
    assert (
        "If the recorded conversation changed, re-record its cassette with "
        "test_hello.py::test_says_hello, which records it:\n"
        "    pytest --realtime-record-mode=all test_hello.py::test_says_hello\n"
        "If only this test's changed, give it a cassette of its own: drop cassette= from its "
        "marker (and record_mode=), then record it:\n"
        "    pytest --realtime-record test_reader.py::test_reads"
    ) in reads
    # Re-recording from the sharer would change what the other two replay: said.
    assert (
        "This test shares its cassette with 2 other tests (test_hello.py::test_says_hello, "
        "test_reader.py::test_reads): re-recording it from this test changes what they "
        "replay too.\n"
        "If the new conversation is right for them all, re-record this test:\n"
        "    pytest --realtime-record-mode=all test_sharer.py::test_shares\n"
        "Or give this test a cassette of its own: drop cassette= from its marker, then record it:\n"
        "    pytest --realtime-record test_sharer.py::test_shares"
    ) in shares
    # The command given for the test that never records does record its cassette.
    cassette.unlink()
    again = project.runpytest(
        "--realtime-record-mode=all",
        "test_hello.py::test_says_hello",
        f"--realtime-upstream={upstream.websocket_base_url}",
    )
    again.assert_outcomes(passed=1)
    assert cassette.exists() and len(upstream.events("response.create")) == 1


def test_a_missing_cassette_of_a_test_that_never_records_says_what_records_it(
    project: pytest.Pytester,  # noqa: F811
) -> None:
    project.makepyfile(**SHARING)
    both = project.runpytest("test_hello.py", "test_reader.py")
    both.assert_outcomes(failed=2)
    reads = both.stdout.str().split("_ test_reads _")[1]
    assert (
        'this test never records (record_mode="none" in its @pytest.mark.realtime).\n'
        "  record its cassette with the test that records it (talks to the live API once, "
        "needs OPENAI_API_KEY):\n"
        "    pytest --realtime-record test_hello.py::test_says_hello"
    ) in reads
    alone = project.runpytest("test_reader.py")  # the test that records it is not collected
    alone.assert_outcomes(failed=1)
    assert (
        '  remove record_mode="none" there, then record it (talks to the live API once, '
        "needs OPENAI_API_KEY):\n"
        "    pytest --realtime-record test_reader.py::test_reads"
    ) in alone.stdout.str()
