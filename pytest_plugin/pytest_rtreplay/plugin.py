"""The rtreplay pytest plugin: ``realtime_mock``, ``--realtime-record`` and ``@pytest.mark.realtime``.

Registered through the ``pytest11`` entry point, so pytest imports this module in every
session: it imports only pytest and the standard library. rtreplay's servers are imported
when a test first asks for ``realtime_mock``.

How a test's mock ends: the plugin stops the server right after the test function returns
(in ``pytest_runtest_call``), so a mismatch or an unplayed event fails *the test*, with the
replay's report as its failure text, instead of surfacing as an error in a fixture's
teardown. When the test itself failed, the report is attached as an extra section.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ._config import (
    CONFIG_KEYS,
    MARKER_ARGS,
    MATCH_POLICIES,
    RECORD_MODES,
    RealtimeConfigError,
    check_keys,
    default_cassette_name,
    marker_kwargs,
    record_command,
    resolve_settings,
)
from ._mock import RealtimeMock

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "pytest_runtest_call",
    "pytest_runtest_makereport",
    "realtime_async_openai",
    "realtime_config",
    "realtime_drive",
    "realtime_mock",
    "realtime_openai",
    "realtime_replay",
]

_MOCK = pytest.StashKey[RealtimeMock]()
_RUNNING = pytest.StashKey[pytest.Item]()  # the test whose function runs now
_SECTION = pytest.StashKey[str]()
_REFUSED = pytest.StashKey[str]()
_UNREACHABLE = pytest.StashKey[str]()
# Where the upstream URL was set, by the source names of _config.resolve_settings.
_UPSTREAM_SET_BY = {
    "marker": "@pytest.mark.realtime(upstream=...)",
    "realtime_config": "the realtime_config fixture's 'upstream'",
    "command line": "--realtime-upstream",
    "environment": "RTREPLAY_UPSTREAM in the environment",
    "ini": "realtime_upstream in the ini file",
}
_RECORDED_PROPERTY = "rtreplay_recorded"
_PARTIAL_PROPERTY = "rtreplay_partial"  # a partial file an interrupted recording left
_KEPT_PROPERTY = "rtreplay_kept"  # recorded, but every connection refused: the old one kept
# Per test directory, each cassette the collected tests use: (test, the commands that
# record and re-record it, or "" when it never records). Worked out once, when a hint
# needs it.
_USERS = pytest.StashKey[dict[Path, dict[Path, list[tuple[str, str, str]]]]]()

MARKER_DOC = (
    "realtime(cassette=None, *, match='default', speed=None, strict=False, "
    "allow_unplayed=False, allow_unfired=False, record_mode=None, stall_timeout=10.0, audio_tolerance=0.25, "
    "shift_times=True, fresh_ids=False, faults=(), latency=None): "
    "configure this test's realtime_mock (rtreplay); see docs/pytest.md and docs/faults.md"
)

# ini option -> setting it provides (all read as strings, so an unset option is visible
# as "" and the precedence table can tell "ini" from "default").
_INI = {
    "realtime_match": "match",
    "realtime_speed": "speed",
    "realtime_strict": "strict",
    "realtime_allow_unplayed": "allow_unplayed",
    "realtime_allow_unfired": "allow_unfired",
    "realtime_stall_timeout": "stall_timeout",
    "realtime_audio_tolerance": "audio_tolerance",
    "realtime_shift_times": "shift_times",
    "realtime_fresh_ids": "fresh_ids",
    "realtime_latency": "latency",
    "realtime_upstream": "upstream",
    "realtime_audio": "audio",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rtreplay", "OpenAI Realtime record and replay (rtreplay)")
    group.addoption(
        "--realtime-record",
        action="store_const",
        const="once",
        dest="realtime_record_mode",
        help="record the cassettes that are missing, through a proxy to the live API "
        "(same as --realtime-record-mode=once); without it no test touches the network",
    )
    group.addoption(
        "--realtime-record-mode",
        choices=RECORD_MODES,
        dest="realtime_record_mode",
        help="none: replay only (default); once: record missing cassettes, replay the rest; "
        "all: re-record every test that uses realtime_mock",
    )
    group.addoption(
        "--realtime-upstream",
        metavar="URL",
        dest="realtime_upstream",
        help="where recordings are made (default: $RTREPLAY_UPSTREAM, the realtime_upstream "
        "ini option, or wss://api.openai.com/v1)",
    )
    parser.addini(
        "realtime_cassette_dir",
        "directory of realtime cassettes, relative to the ini file "
        "(default: a 'cassettes' directory beside each test file)",
        default="",
    )
    parser.addini(
        "realtime_match",
        f"default match policy for client events: {', '.join(MATCH_POLICIES)}",
        default="",
    )
    parser.addini("realtime_speed", "replay pacing: 0 instant (default), 1 as recorded", default="")
    parser.addini(
        "realtime_strict", "close with 1008 on a mismatch instead of an error event", default=""
    )
    parser.addini(
        "realtime_allow_unplayed",
        "do not fail tests that end before sending every recorded client event",
        default="",
    )
    parser.addini(
        "realtime_allow_unfired",
        "do not fail tests whose injected faults never fired (they are still listed)",
        default="",
    )
    parser.addini(
        "realtime_stall_timeout",
        "seconds a client may stay silent while the replay holds server events for it, "
        "before the test fails with a stall (0: never; default 10)",
        default="",
    )
    parser.addini(
        "realtime_audio_tolerance",
        "seconds of input audio a client may send more or less than recorded (default 0.25)",
        default="",
    )
    parser.addini(
        "realtime_shift_times",
        "move recorded time fields (session.expires_at...) to replay time (default true)",
        default="",
    )
    parser.addini(
        "realtime_fresh_ids",
        "give each replayed connection its own IDs instead of the recorded ones (default false)",
        default="",
    )
    parser.addini(
        "realtime_latency",
        "pace every replayed response, e.g. ttft=0.8,rate=20 (docs/faults.md; default: none)",
        default="",
    )
    parser.addini(
        "realtime_upstream", "where recordings are made (a ws:// or wss:// URL)", default=""
    )
    parser.addini(
        "realtime_audio",
        "how recordings keep their audio: inline (one self-contained file, the default) or "
        "files (rtreplay-audio/ beside the cassette, cassette format 2)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_DOC)
    config.pluginmanager.register(_RecordedSummary(), "rtreplay-recorded-summary")
    # A wrong ini value is a mistake in the project, not in a test: stop before running.
    try:
        _ini_layer(config)
        _command_line_layer(config)
    except RealtimeConfigError as exc:
        raise pytest.UsageError(f"rtreplay: {exc}") from None


def _ini_layer(config: pytest.Config) -> dict[str, Any]:
    from ._config import _check

    values: dict[str, Any] = {}
    for option, key in _INI.items():
        raw = config.getini(option)
        if isinstance(raw, str) and raw.strip():
            values[key] = _check(key, raw.strip(), f"ini option {option}")
    cassette_dir = config.getini("realtime_cassette_dir")
    if isinstance(cassette_dir, str) and cassette_dir.strip():
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        values["cassette_dir"] = str(base / cassette_dir.strip())
    return values


def _command_line_layer(config: pytest.Config) -> list[tuple[str, dict[str, Any]]]:
    from ._config import _check

    layers: list[tuple[str, dict[str, Any]]] = []
    cli: dict[str, Any] = {}
    mode = config.getoption("realtime_record_mode", None)
    if mode is not None:
        cli["record_mode"] = mode
    upstream = config.getoption("realtime_upstream", None)
    if upstream:
        cli["upstream"] = _check("upstream", upstream, "--realtime-upstream")
    layers.append(("command line", cli))
    env = os.environ.get("RTREPLAY_UPSTREAM", "").strip()
    if env:
        layers.append(("environment", {"upstream": _check("upstream", env, "RTREPLAY_UPSTREAM")}))
    return layers


def _run_record_mode(config: pytest.Config) -> str:
    mode = config.getoption("realtime_record_mode", None)
    return mode if isinstance(mode, str) else "none"


@pytest.fixture
def realtime_config() -> dict[str, Any]:
    """Settings for every ``realtime_mock`` in scope; override it in a ``conftest.py``.

    Keys: ``cassette_dir`` (relative to the test file), ``match``, ``speed``, ``strict``,
    ``allow_unplayed``, ``allow_unfired``, ``record_mode``, ``stall_timeout``,
    ``audio_tolerance``, ``shift_times``, ``fresh_ids``, ``faults``, ``latency``,
    ``upstream``, ``api_key``, ``audio``, ``redactor``. A marker on the test
    wins over these; these win over the command line, the ini file and the defaults.
    """
    return {}


def _settings_for(item: pytest.Item, realtime_config: Any) -> Any:
    config = item.config
    markers = [(m.args, m.kwargs) for m in item.iter_markers("realtime")]
    marker = marker_kwargs(markers)
    if not isinstance(realtime_config, dict):
        raise RealtimeConfigError(
            f"the realtime_config fixture must return a dict, not {type(realtime_config).__name__}"
        )
    check_keys(
        realtime_config,
        CONFIG_KEYS,
        "the realtime_config fixture",
        hints={"cassette": "name a test's cassette with @pytest.mark.realtime(cassette=...)"},
    )
    layers: list[tuple[str, dict[str, Any]]] = [
        ("marker", marker),
        ("realtime_config", dict(realtime_config)),
        *_command_line_layer(config),
        ("ini", _ini_layer(config)),
    ]
    test_path = Path(item.path)
    return resolve_settings(
        layers,
        run_record_mode=_run_record_mode(config),
        test_dir=test_path.parent,
        default_cassette_name=default_cassette_name(item.nodeid, test_path),
    )


def _debugging(config: pytest.Config) -> bool:
    """Whether the tests run under a debugger: ``--trace``, or an IDE's (which load pydevd)."""
    import sys

    return bool(config.getoption("trace", False)) or "pydevd" in sys.modules


def never_records(settings: Any) -> bool:
    """Whether a test's own settings pin ``record_mode="none"`` (no command line records it)."""
    return bool(
        settings.record_mode == "none"
        and settings.sources.get("record_mode") in ("marker", "realtime_config")
    )


def _sharing(
    item: pytest.Item, realtime_config: Any, cassette: Path
) -> Callable[[], list[tuple[str, str, str]]]:
    """The other collected tests that use this test's cassette (see :data:`_USERS`).

    Their ``realtime_config`` is not known here: tests of this test's directory are taken to
    share its value, others to use none. A test not collected in this run is not seen.
    """

    def others() -> list[tuple[str, str, str]]:
        session = item.session
        by_dir = session.stash.setdefault(_USERS, {})
        here = Path(item.path).parent
        users = by_dir.get(here)
        if users is None:
            users = {}
            invoked = item.config.invocation_params.dir
            for other in session.items:
                if "realtime_mock" not in getattr(other, "fixturenames", ()):
                    continue
                config = realtime_config if Path(other.path).parent == here else {}
                try:
                    settings = _settings_for(other, config)
                except RealtimeConfigError:
                    continue
                once = again = ""
                if not never_records(settings):
                    once = record_command(other.nodeid, Path(other.path), invoked)
                    again = record_command(other.nodeid, Path(other.path), invoked, mode="all")
                users.setdefault(Path(settings.cassette), []).append((other.nodeid, once, again))
            by_dir[here] = users
        return [u for u in users.get(Path(cassette), []) if u[0] != item.nodeid]

    return others


def _display(path: Path, config: pytest.Config) -> str:
    try:
        return os.path.relpath(path, config.invocation_params.dir)
    except ValueError:  # another drive on Windows
        return str(path)


@pytest.fixture
def realtime_mock(request: pytest.FixtureRequest, realtime_config: Any) -> Iterator[RealtimeMock]:
    """A Realtime endpoint for this test: its cassette replayed, or recorded with ``--realtime-record``.

    The server runs on 127.0.0.1, a free port, in its own thread, so sync tests,
    pytest-asyncio and anyio tests all use it the same way.
    """
    item = request.node
    try:
        settings = _settings_for(item, realtime_config)
    except RealtimeConfigError as exc:
        problem: str | None = str(exc)
    else:
        problem = None
    if problem is not None:  # outside the except block, so no chained traceback is shown
        pytest.fail(f"rtreplay: {problem}", pytrace=False)
    config = item.config
    if settings.sources.get("stall_timeout") == "default" and _debugging(config):
        # A breakpoint silences the client: the default must not cut the replay under it.
        settings = replace(
            settings,
            stall_timeout=None,
            sources={**settings.sources, "stall_timeout": "default (off under a debugger)"},
        )
    mock = RealtimeMock(
        settings,
        record_command=record_command(item.nodeid, Path(item.path), config.invocation_params.dir),
        rerecord_command=record_command(
            item.nodeid, Path(item.path), config.invocation_params.dir, mode="all"
        ),
        display_path=_display(settings.cassette, config),
        sharing=_sharing(item, realtime_config, settings.cassette),
    )
    from rtreplay.codec import leftover_partials

    for partial, _pid, running in leftover_partials(settings.cassette):
        if not running:
            item.user_properties.append((_PARTIAL_PROPERTY, _display(partial, config)))
    mock._start()
    item.stash[_MOCK] = mock
    try:
        yield mock
    finally:
        # Normally finished right after the test function; here only when the test never
        # ran (another fixture failed), which counts as a failure: nothing is recorded.
        mock._finish(test_failed=True)
        del item.stash[_MOCK]


class RealtimeDrive:
    """Drives a server under test with a cassette's recorded client (``realtime_drive``).

    Call it from a sync test, or await :meth:`run` from an async one, with the server's
    ``ws://`` URL. ``cassette`` is this test's cassette unless named (relative to the test
    file); ``options`` are :class:`rtreplay.drive.Drive`'s (``match``, ``speed``,
    ``audio_speed``, ``timeout``, ``api_key``). A mismatch fails the test with the drive's
    report; the report is returned otherwise.
    """

    def __init__(self, item: pytest.Item, realtime_config: Any) -> None:
        self._item = item
        self._config = realtime_config

    def _cassette(self, cassette: str | os.PathLike[str] | None) -> Path:
        if cassette is None:
            try:
                path = Path(_settings_for(self._item, self._config).cassette)
            except RealtimeConfigError as exc:
                problem = str(exc)
            else:
                problem = ""
            if problem:
                pytest.fail(f"rtreplay: {problem}", pytrace=False)
        else:
            path = Path(self._item.path).parent / cassette
        if not path.is_file():
            pytest.fail(
                f"rtreplay: no cassette to drive with at {path}: record the session once "
                f"(docs/driving.md, 'The sandwich')",
                pytrace=False,
            )
        return path

    def _checked(self, report: Any) -> Any:
        if not report.ok:
            pytest.fail(str(report), pytrace=False)
        return report

    def __call__(self, url: str, *, cassette: str | os.PathLike[str] | None = None, **options: Any) -> Any:
        from rtreplay.drive import Drive

        return self._checked(Drive(self._cassette(cassette), url, **options).run_sync())

    async def run(self, url: str, *, cassette: str | os.PathLike[str] | None = None, **options: Any) -> Any:
        from rtreplay.drive import Drive

        return self._checked(await Drive(self._cassette(cassette), url, **options).run())


@pytest.fixture
def realtime_drive(request: pytest.FixtureRequest, realtime_config: Any) -> RealtimeDrive:
    """Drive your server (a relay, a proxy, your own Realtime server) with a recorded client.

    ``realtime_drive(url)`` plays this test's cassette's client side to ``url`` and fails
    the test if what comes back differs from the recorded server side; see docs/driving.md.
    """
    return RealtimeDrive(request.node, realtime_config)


# What a realtime_replay call takes: the marker's replay settings (no cassette, no recording).
_REPLAY_OPTIONS = tuple(k for k in MARKER_ARGS if k not in ("cassette", "record_mode"))


class RealtimeReplay:
    """Serves one cassette per call, for tests that replay many: ``realtime_replay``.

    ``with realtime_replay(cassette, **options) as mock:`` starts a replay of ``cassette``
    (a path, or an in-memory ``rtreplay.Cassette``: a hypothesis example from
    :mod:`rtreplay.strategies`, a scripted session) and yields a :class:`RealtimeMock`
    (``websocket_base_url``, ``url``, ``client()``, ``async_client()``, ``report``...);
    leaving the block stops it and fails *that example* with its replay report when the
    client's events did not match, the replay stalled, a fault never fired (unless
    ``allow_unfired``: a drawn fault's place may never be reached) or (unless
    ``allow_unplayed``) the client stopped early. ``options`` are the marker's
    (``match``, ``stall_timeout``, ``faults``...; a variant's own faults are added), and
    win over the test's ``@pytest.mark.realtime`` and the ini file.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def __repr__(self) -> str:
        return "realtime_replay"

    def _settings(self, cassette: Any, options: dict[str, Any]) -> Any:
        from ._config import _is_cassette

        check_keys(options, _REPLAY_OPTIONS, "realtime_replay()")
        options = dict(options)
        item = self._config.stash.get(_RUNNING, None)
        marker: dict[str, Any] = {}
        if item is not None:
            marker = marker_kwargs([(m.args, m.kwargs) for m in item.iter_markers("realtime")])
            marker = {k: v for k, v in marker.items() if k in _REPLAY_OPTIONS}
        if _is_cassette(cassette):
            extra = tuple(getattr(cassette, "faults", ()) or ())
            if extra:
                options = {**options, "faults": (*options.get("faults", ()), *extra)}
        elif isinstance(cassette, (str, os.PathLike)) and os.fspath(cassette):
            # A path, as open() takes it: relative to where pytest runs.
            path = os.path.abspath(os.fspath(cassette))
            options = {**options, "cassette_dir": os.path.dirname(path)}
            cassette = os.path.basename(path)
        else:
            raise RealtimeConfigError(
                f"realtime_replay() takes a cassette path or an rtreplay.Cassette, not {cassette!r}"
            )
        test_dir = Path(item.path).parent if item is not None else self._config.rootpath
        return resolve_settings(
            [("realtime_replay()", {**options, "cassette": cassette}), ("marker", marker), ("ini", _ini_layer(self._config))],
            run_record_mode="none",
            test_dir=test_dir,
            default_cassette_name="in-memory.jsonl",
        )

    def __call__(self, cassette: Any, **options: Any) -> _OneReplay:
        __tracebackhide__ = True
        try:
            settings = self._settings(cassette, options)
        except RealtimeConfigError as exc:
            problem = f"rtreplay: {exc}"
        else:
            problem = ""
        if problem:
            pytest.fail(problem, pytrace=False)
        if settings.source is not None:
            display, keep = _example_names(settings.source, settings.cassette.parent, self._config)
        else:
            display, keep = _display(settings.cassette, self._config), None
        mock = RealtimeMock(
            settings,
            record_command="",
            # realtime_replay never records: the proxy that writes this path is the way.
            rerecord_command=f"rtreplay record --out {display}   (then run the client against the URL it prints)",
            display_path=display,
            keep_advice=keep,
            fixture="realtime_replay",
        )
        return _OneReplay(mock)


class _OneReplay:
    """One ``with realtime_replay(...)`` block: starts the replay on entering, checks it on
    leaving (a class, not a generator, so a failure's traceback ends at the test's line)."""

    def __init__(self, mock: RealtimeMock) -> None:
        self.mock = mock

    def __getattr__(self, name: str) -> Any:
        # Only for what the class lacks: a mock's attribute asked of the call itself.
        if hasattr(RealtimeMock, name):
            raise AttributeError(
                f"realtime_replay(...) starts a replay only in a with block: "
                f"`with realtime_replay(cassette) as mock:`, then mock.{name}"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __enter__(self) -> RealtimeMock:
        __tracebackhide__ = True
        mock = self.mock
        mock._start()
        if mock._missing is not None:
            # realtime_mock fails when the missing cassette is used; a realtime_replay block
            # that never connects would pass, so a path with a typo must fail here.
            from rtreplay.codec import partial_note

            note = partial_note(mock.cassette_path)
            pytest.fail(
                f"rtreplay: realtime_replay(): {mock._display_path}: no such cassette file "
                f"(a path is relative to where pytest runs, {os.getcwd()})\n"
                + (f"  but: {note}\n" if note else "")
                + "  realtime_replay only replays: record the cassette with a test that uses "
                "realtime_mock and `pytest --realtime-record`, or with `rtreplay record`",
                pytrace=False,
            )
        return mock

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        __tracebackhide__ = True
        mock = self.mock
        if exc is None:
            problem = mock._finish(test_failed=False)
            if problem:
                raise pytest.fail.Exception(problem)
            return
        text = mock._finish(test_failed=True, exception_text=str(exc))
        report = mock.report if mock._service is not None else None
        if text and report is not None and report.stalls:
            # The stall is the story: the client's own error (a closed socket, its
            # timeout) is what the stall caused.
            raise pytest.fail.Exception(text) from None
        if not text:
            return
        if sys.version_info >= (3, 11):
            exc.add_note(text)
        elif report is None or not (report.ok and report.complete):
            # No notes before 3.11: a replay that went wrong gets a failure of its own,
            # which says what the client's exception was; a clean one adds nothing.
            raise pytest.fail.Exception(f"{type(exc).__name__}: {exc}\n\n{text}") from exc


def _example_names(cassette: Any, cassette_dir: Path, config: pytest.Config) -> tuple[str, str | None]:
    """How a failure names an in-memory cassette, and how to keep it as a regression test
    (nothing when hypothesis already notes it: rtreplay.strategies' examples do)."""
    call = repr(cassette)
    name = call if "\n" not in call and len(call) <= 2000 else f"an in-memory cassette ({type(cassette).__name__})"
    hypothesis = sys.modules.get("hypothesis.control")
    if hypothesis is not None and getattr(cassette, "_rtreplay_noted", False) and hypothesis.currently_in_test_context():
        return name, None
    target = _display(cassette_dir / "regression.jsonl", config)
    save = f"rtreplay.save({call if name == call else '<this cassette>'}, {target!r})"
    faults = [str(f) for f in getattr(cassette, "faults", ()) or ()]
    marker = "@pytest.mark.realtime('regression'" + (f", faults={faults!r}" if faults else "") + ")"
    return name, f"Keep this example as a regression test: {save}, then replay it with {marker}."


@pytest.fixture(scope="session")
def realtime_replay(pytestconfig: pytest.Config) -> RealtimeReplay:
    """Replay one cassette per call: ``with realtime_replay(cassette) as mock: ...``.

    For tests that replay many cassettes in one test function (hypothesis examples of
    ``rtreplay.strategies.replays()`` or ``sessions()``): each call serves one example and
    checks it on leaving the block, so a mismatch or a stall fails that example with its
    replay report. Session-scoped, so hypothesis' function-scoped-fixture health check has
    nothing to object to; see docs/property-testing.md.
    """
    return RealtimeReplay(pytestconfig)


@pytest.fixture
def realtime_openai(realtime_mock: RealtimeMock) -> Iterator[Any]:
    """An ``openai.OpenAI`` client pointed at ``realtime_mock`` (needs the openai package)."""
    if realtime_mock._missing is not None:
        # No cassette: the test fails when it starts, as with realtime_mock alone (not an
        # error in this fixture's setup).
        yield None
        return
    client = realtime_mock.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def realtime_async_openai(realtime_mock: RealtimeMock) -> Any:
    """An ``openai.AsyncOpenAI`` client pointed at ``realtime_mock`` (needs the openai package).

    Realtime connections do not use its HTTP pool, so there is nothing to close.
    """
    if realtime_mock._missing is not None:
        return None  # the test fails when it starts, as with realtime_mock alone
    return realtime_mock.async_client()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    item.config.stash[_RUNNING] = item
    try:
        return (yield from _runtest_call(item))
    finally:
        del item.config.stash[_RUNNING]


def _runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    mock = item.stash.get(_MOCK, None)
    if mock is None:
        return (yield)
    mock._check_before_call()
    try:
        result = yield
    except BaseException as exc:
        section = mock._finish(test_failed=True, exception_text=str(exc))
        if section:
            item.stash[_SECTION] = section
        if mock.recording and mock.refusals:
            item.stash[_REFUSED] = "\n".join(mock.refusals)
        elif mock.recording and mock.upstream_errors:
            item.stash[_UNREACHABLE] = _unreachable(mock)
        raise
    problem = mock._finish(test_failed=False)
    if mock.recorded is not None:
        item.user_properties.append((_RECORDED_PROPERTY, _display(mock.recorded, item.config)))
    if mock.kept is not None:
        item.user_properties.append((_KEPT_PROPERTY, _display(mock.kept, item.config)))
    if problem:
        pytest.fail(problem, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call":
        section = item.stash.get(_SECTION, None)
        if section:
            report.sections.append(("rtreplay", section))
        refused = item.stash.get(_REFUSED, None)
        if refused and call.excinfo is not None and _from_a_client_library(call.excinfo.value):
            # The client's exception (a websockets or openai traceback) only says "HTTP 401";
            # the upstream said why.
            exc = call.excinfo.value
            report.longrepr = (
                "rtreplay: recording failed: the upstream refused the connection.\n"
                + "\n".join(f"  {line}" for line in refused.splitlines())
                + f"\n  (the client then raised {type(exc).__module__}.{type(exc).__name__}: {exc})\n"
                "  check OPENAI_API_KEY (or realtime_config['api_key']) and the upstream URL"
            )
        if (
            call.excinfo is not None
            and getattr(getattr(item, "function", None), "is_hypothesis_test", False)
            and "realtime_mock" in getattr(item, "fixturenames", ())
        ):
            # hypothesis' health check advises suppressing it, which would serve the first
            # example and refuse every other with HTTP 409: point at the fixture that fits.
            report.sections.append(("rtreplay", _HYPOTHESIS_ADVICE))
        unreachable = item.stash.get(_UNREACHABLE, None)
        if unreachable and call.excinfo is not None and _from_a_client_library(call.excinfo.value):
            exc = call.excinfo.value
            # The client's traceback ends deep in websockets with "HTTP 502": say what failed.
            report.longrepr = (
                f"{unreachable}\n  (the client then raised "
                f"{type(exc).__module__}.{type(exc).__name__}: {exc})"
            )
    return report


_HYPOTHESIS_ADVICE = (
    "rtreplay: realtime_mock replays the test's cassette once, but a hypothesis test runs once "
    "per example: use the realtime_replay fixture, which serves one replay per example,\n"
    "  with realtime_replay(session) as mock:\n"
    "      ... mock.async_client() ...\n"
    "(docs/property-testing.md)"
)


def _unreachable(mock: RealtimeMock) -> str:
    """A recording whose upstream could not be reached: which, why, where it was set."""
    settings = mock.settings
    source = settings.sources.get("upstream", "default")
    where = _UPSTREAM_SET_BY.get(source)
    change = (
        f"The URL comes from {where}: change it there"
        if where is not None
        else "That is the default, the OpenAI API: check the network, or record from another "
        "upstream with --realtime-upstream or RTREPLAY_UPSTREAM"
    )
    error = mock.upstream_errors[0]
    return (
        f"rtreplay: recording failed: the upstream {settings.upstream} could not be reached "
        f"({error.reason}), so the recording proxy answered the client HTTP {error.status}. "
        f"{change}. Nothing was written."
    )


def _from_a_client_library(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__module__.split(".")[0] in ("websockets", "openai", "websocket", "agents"):
            return True
        current = current.__cause__ or current.__context__
    return False


class _RecordedSummary:
    """Collects the cassettes recorded in this run and lists them at the end.

    Reports travel from xdist workers to the controller with their ``user_properties``,
    so the list is complete there too.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.kept: list[str] = []
        self.partials: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":  # later reports of the test carry the same properties
            self.paths.extend(str(v) for k, v in report.user_properties if k == _RECORDED_PROPERTY)
            self.kept.extend(str(v) for k, v in report.user_properties if k == _KEPT_PROPERTY)
        if report.when == "call" or (report.when == "setup" and report.failed):
            self.partials.extend(str(v) for k, v in report.user_properties if k == _PARTIAL_PROPERTY)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.paths and not self.kept and not self.partials:
            return
        terminalreporter.section("rtreplay")
        if self.partials:
            terminalreporter.write_line(
                "partial files of interrupted recordings (their processes are gone), beside "
                "the cassettes they were writing: `rtreplay recover CASSETTE` makes one the "
                "cassette, or delete it:"
            )
            for path in sorted(set(self.partials)):
                terminalreporter.write_line(f"  {path}")
        if self.paths:
            n = len(self.paths)
            terminalreporter.write_line(f"recorded {n} cassette{'s' if n != 1 else ''}:")
            for path in sorted(set(self.paths)):
                terminalreporter.write_line(f"  {path}")
        if self.kept:
            n = len(self.kept)
            terminalreporter.write_line(
                f"left {n} cassette{'s' if n != 1 else ''} as {'they were' if n != 1 else 'it was'}: "
                "the upstream refused every connection (delete one to record the refusal):"
            )
            for path in sorted(set(self.kept)):
                terminalreporter.write_line(f"  {path}")
