"""Recording with an upstream that cannot be reached: one clear paragraph, no traceback.

The client's own exception ends deep inside websockets or openai with "HTTP 502"; the test
report says instead which upstream could not be reached, why, and where its URL was set.
"""

from __future__ import annotations

import socket

import pytest

from .docs import code_blocks
from .test_plugin import INI, project  # noqa: F401 - the fixture

pytest_plugins = ["pytester"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("environment", "The URL comes from RTREPLAY_UPSTREAM in the environment: change it there."),
        ("option", "The URL comes from --realtime-upstream: change it there."),
        ("ini", "The URL comes from realtime_upstream in the ini file: change it there."),
    ],
)
def test_an_unreachable_upstream_is_one_paragraph_naming_it(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str, said: str  # noqa: F811
) -> None:
    port = closed_port()
    url = f"ws://127.0.0.1:{port}/v1"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdefghij")
    monkeypatch.delenv("RTREPLAY_UPSTREAM", raising=False)
    args = ["--realtime-record"]
    if how == "environment":
        monkeypatch.setenv("RTREPLAY_UPSTREAM", url)
    elif how == "option":
        args.append(f"--realtime-upstream={url}")
    else:
        project.makeini(INI + f"realtime_upstream = {url}\n")
    project.makepyfile(
        test_rec="""
        from talk import talk, atalk

        def test_sync(realtime_mock):
            talk(realtime_mock.client())

        async def test_async(realtime_mock):
            await atalk(realtime_mock.async_client())
        """
    )
    result = project.runpytest(*args, "-p", "anyio", "-o", "asyncio_mode=auto")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    failures = out.split("= FAILURES =")[1].split("short test summary")[0]
    assert failures.count(f"rtreplay: recording failed: the upstream {url} could not be reached (") == 2, out
    assert failures.count("so the recording proxy answered the client HTTP 502. " + said + " Nothing was written.") == 2, out
    assert "Traceback" not in failures and "site-packages" not in failures, failures
    assert not list(project.path.rglob("*.jsonl")), "nothing is written"
    if how == "environment":  # what docs/pytest.md shows
        [documented] = [b for b in code_blocks("pytest.md", "text") if "could not be reached" in b]
        shown = documented.strip().replace("127.0.0.1:9", f"127.0.0.1:{port}").replace("', 9)", f"', {port})")
        assert shown in failures, (shown, failures)
