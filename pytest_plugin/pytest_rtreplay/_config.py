"""Settings of one test's realtime mock: where they come from, which wins, and the cassette name.

Only the standard library here: pytest imports the plugin at start-up in every session,
including the many that never use ``realtime_mock``.

Precedence, from strongest to weakest (the docs' table says the same)::

    @pytest.mark.realtime(...)  >  realtime_config fixture  >  command line / environment
        >  ini file  >  built-in default

with one exception: recording is switched on only by the command line. When the run does
not record (no ``--realtime-record``), no test records, whatever its marker or
``realtime_config`` says; once it does, the usual order picks each test's record mode. So
a marker can never make a CI run touch the network.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_UPSTREAM",
    "MARKER_ARGS",
    "MATCH_POLICIES",
    "RECORD_MODES",
    "RealtimeConfigError",
    "RealtimeSettings",
    "cassette_file_name",
    "parse_bool",
    "record_command",
    "resolve_cassette",
    "resolve_settings",
]

RECORD_MODES = ("none", "once", "all")
"""``none``: replay only; ``once``: record missing cassettes; ``all``: re-record every test."""

MATCH_POLICIES = ("default", "type", "exact")
DEFAULT_UPSTREAM = "wss://api.openai.com/v1"

MARKER_ARGS = (
    "cassette",
    "match",
    "speed",
    "strict",
    "allow_unplayed",
    "allow_unfired",
    "record_mode",
    "stall_timeout",
    "audio_tolerance",
    "shift_times",
    "fresh_ids",
    "faults",
    "latency",
)
CONFIG_KEYS = (
    "cassette_dir",
    "match",
    "speed",
    "strict",
    "allow_unplayed",
    "allow_unfired",
    "record_mode",
    "stall_timeout",
    "audio_tolerance",
    "shift_times",
    "fresh_ids",
    "faults",
    "latency",
    "upstream",
    "api_key",
    "audio",
    "redactor",
)
AUDIO_MODES = ("inline", "files")

#: The replay's own defaults (``rtreplay.player``), repeated here so that the plugin's
#: import stays free of rtreplay until a test uses the mock; a test keeps them equal.
DEFAULT_STALL_TIMEOUT = 10.0
DEFAULT_AUDIO_TOLERANCE = 0.25
# Settings whose None means something (instant; never stall; no key) rather than "unset".
_NONE_MEANS = ("speed", "stall_timeout", "api_key", "latency", "redactor")

# Room for the ".jsonl" suffix and the writer's ".<pid>.partial" suffix within the
# 255-byte file name limit of every common file system, with margin for multi-byte names.
MAX_NAME = 100
# The longest part of a cassette path a marker may name (255 minus ".jsonl.<pid>.partial").
MAX_PART = 220
_UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+\[\]-]+")


class RealtimeConfigError(ValueError):
    """A realtime setting (marker argument, ``realtime_config`` key, ini value) is wrong."""


@dataclass(frozen=True)
class RealtimeSettings:
    """Everything one test's mock is built from, and where each value came from."""

    cassette: Path
    cassette_dir: Path
    match: Any = "default"
    speed: float | None = None
    strict: bool = False
    allow_unplayed: bool = False
    #: Faults that never fired are listed, not a failure (a drawn fault's place may never
    #: be reached in an example).
    allow_unfired: bool = False
    record_mode: str = "none"
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT
    audio_tolerance: float = DEFAULT_AUDIO_TOLERANCE
    shift_times: bool = True
    fresh_ids: bool = False
    faults: tuple[Any, ...] = ()  # rtreplay.faults.Fault values
    latency: Any = None  # an rtreplay.latency.Latency, or None
    upstream: str = DEFAULT_UPSTREAM
    api_key: str | None = None
    audio: str = "inline"  # how recordings are written: inline (format 1) or files (format 2)
    #: An ``rtreplay.Redactor`` for recordings (your header names, JSON paths, patterns,
    #: event_hook), or None for the built-in rules.
    redactor: Any = None
    #: An in-memory cassette (an ``rtreplay.Cassette``: a variant, a scripted session) to
    #: replay instead of the file; it is never recorded.
    source: Any = None
    # setting name -> "marker" | "realtime_config" | "command line" | "environment" | "ini" | "default"
    sources: Mapping[str, str] = field(default_factory=dict)


def parse_bool(value: object, what: str) -> bool:
    """A bool from a bool or from the words pytest's ini files use."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
    raise RealtimeConfigError(f"{what} must be true or false, not {value!r}")


def _seconds(value: object, what: str, meaning: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RealtimeConfigError(f"{what} must be a number of seconds, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise RealtimeConfigError(f"{what} must be a number of seconds >= 0 ({meaning}), not {value!r}")
    return float(value)


def _check(key: str, value: object, what: str) -> object:
    """The value normalised, or a RealtimeConfigError saying what is wrong with it."""
    if key == "stall_timeout":
        if value is None:
            return None
        return _seconds(value, what, "0 or None: never") or None
    if key == "audio_tolerance":
        return _seconds(value, what, "0: exact amounts")
    if key in ("faults", "latency"):
        # Read by rtreplay itself (imported only now, when a test uses the mock, or when
        # the ini file sets a latency), so the plugin and the server agree on the syntax.
        from rtreplay.faults import parse_faults
        from rtreplay.latency import parse_latency

        try:
            if key == "faults":
                return parse_faults(value)  # type: ignore[arg-type]
            return parse_latency(value)  # type: ignore[arg-type]
        except ValueError as exc:  # the message names the fault or the latency itself
            raise RealtimeConfigError(f"{what.rsplit(': ', 1)[0]}: {exc}") from None
    if key == "speed":
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise RealtimeConfigError(f"{what} must be a number, not {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise RealtimeConfigError(
                f"{what} must be a number >= 0 (0 or None: instant, 1: recorded pacing), "
                f"not {value!r}"
            )
        return None if value == 0 else float(value)
    if key in ("strict", "allow_unplayed", "allow_unfired", "shift_times", "fresh_ids"):
        return parse_bool(value, what)
    if key == "record_mode":
        if value not in RECORD_MODES:
            raise RealtimeConfigError(
                f"{what} must be one of {', '.join(RECORD_MODES)}, not {value!r}"
            )
        return value
    if key == "match":
        # A string names a built-in policy; anything else is a policy object for the
        # replay server, which checks it itself.
        if isinstance(value, str) and value not in MATCH_POLICIES:
            raise RealtimeConfigError(
                f"{what} must be one of {', '.join(MATCH_POLICIES)} or a match policy "
                f"object, not {value!r}"
            )
        return value
    if key == "cassette" and _is_cassette(value):
        return value
    if key in ("cassette", "cassette_dir"):
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise RealtimeConfigError(
                f"{what} must be a non-empty path or an rtreplay.Cassette, not {value!r}"
            )
        return value
    if key == "upstream":
        if not isinstance(value, str) or not re.match(r"^wss?://", value):
            raise RealtimeConfigError(
                f"{what} must be a ws:// or wss:// URL such as {DEFAULT_UPSTREAM}, not {value!r}"
            )
        return value.rstrip("/")
    if key == "audio":
        if value not in AUDIO_MODES:
            raise RealtimeConfigError(f"{what} must be one of {', '.join(AUDIO_MODES)}, not {value!r}")
        return value
    if key == "redactor":
        module = sys.modules.get("rtreplay.redact")  # (nothing else could have made one)
        if value is not None and (module is None or not isinstance(value, module.Redactor)):
            raise RealtimeConfigError(f"{what} must be an rtreplay.Redactor, not {type(value).__name__}")
        return value
    if key == "api_key":
        if value is not None and not isinstance(value, str):
            raise RealtimeConfigError(f"{what} must be a string, not {type(value).__name__}")
        return value
    raise AssertionError(key)  # pragma: no cover - callers check the key first


def _is_cassette(value: object) -> bool:
    """Whether ``value`` is an in-memory ``rtreplay.Cassette`` (rtreplay is imported only if
    it already is: nothing else could have made one)."""
    import sys

    module = sys.modules.get("rtreplay.cassette")
    return module is not None and isinstance(value, module.Cassette)


def check_keys(
    given: Iterable[str], valid: Iterable[str], what: str, hints: Mapping[str, str] | None = None
) -> None:
    """Refuse unknown names, naming the valid ones and the likely intended one."""
    valid = sorted(valid)
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    import difflib  # only on this error path: the plugin's import stays cheap

    notes = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=1)
        if hints and key in hints:
            hint = f" ({hints[key]})"
        else:
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        notes.append(f"{key!r}{hint}")
    plural = "s" if len(unknown) > 1 else ""
    raise RealtimeConfigError(
        f"{what} got unknown argument{plural} {', '.join(notes)}; "
        f"valid arguments: {', '.join(valid)}"
    )


def marker_kwargs(markers: Iterable[tuple[tuple[Any, ...], Mapping[str, Any]]]) -> dict[str, Any]:
    """Merge ``realtime`` markers, closest first (function over class over module)."""
    merged: dict[str, Any] = {}
    for args, kwargs in markers:
        if len(args) > 1:
            raise RealtimeConfigError(
                "@pytest.mark.realtime takes at most one positional argument (the cassette), "
                f"got {len(args)}: {args!r}"
            )
        check_keys(kwargs, MARKER_ARGS, "@pytest.mark.realtime")
        given = dict(kwargs)
        if args:
            if "cassette" in given:
                raise RealtimeConfigError(
                    "@pytest.mark.realtime got the cassette both positionally and as cassette="
                )
            given["cassette"] = args[0]
        for key, value in given.items():
            merged.setdefault(key, value)
    return merged


def resolve_settings(
    layers: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    run_record_mode: str,
    test_dir: Path,
    default_cassette_name: str,
) -> RealtimeSettings:
    """Pick every setting from the first layer that has it; layers come strongest first.

    ``layers`` are ``(source, values)`` pairs, e.g. ``("marker", {...})``,
    ``("realtime_config", {...})``, ``("command line", {...})``, ``("ini", {...})``.
    Relative ``cassette_dir`` values are already absolute or relative to ``test_dir``.
    """
    chosen: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            if key in chosen or (value is None and key not in _NONE_MEANS):
                continue
            where = "@pytest.mark.realtime" if source == "marker" else source
            chosen[key] = _check(key, value, f"{where}: {key}")
            sources[key] = source
    defaults: dict[str, Any] = {
        "match": "default",
        "speed": None,
        "strict": False,
        "allow_unplayed": False,
        "allow_unfired": False,
        "record_mode": "none",
        "stall_timeout": DEFAULT_STALL_TIMEOUT,
        "audio_tolerance": DEFAULT_AUDIO_TOLERANCE,
        "shift_times": True,
        "fresh_ids": False,
        "faults": (),
        "latency": None,
        "upstream": DEFAULT_UPSTREAM,
        "api_key": None,
        "audio": "inline",
        "redactor": None,
    }
    for key, value in defaults.items():
        if key not in chosen:
            chosen[key] = value
            sources[key] = "default"

    # The exception to the order: only the command line switches recording on.
    if run_record_mode == "none" and chosen["record_mode"] != "none":
        chosen["record_mode"] = "none"
        sources["record_mode"] = "command line"

    if "cassette_dir" in chosen:
        cassette_dir = Path(os.path.abspath(test_dir / os.fspath(chosen["cassette_dir"])))
    else:
        cassette_dir = test_dir / "cassettes"
        sources["cassette_dir"] = "default"
    in_memory = None
    if "cassette" in chosen and _is_cassette(chosen["cassette"]):
        in_memory = chosen["cassette"]
        cassette = Path(in_memory.path) if in_memory.path else cassette_dir / default_cassette_name
        # Nothing to record into: an in-memory cassette replays, whatever the run asks.
        chosen["record_mode"] = "none"
        sources["record_mode"] = sources["cassette"]
    elif "cassette" in chosen:
        cassette = resolve_cassette(chosen["cassette"], cassette_dir)
    else:
        cassette = cassette_dir / default_cassette_name
        sources["cassette"] = "default"
    return RealtimeSettings(
        cassette=cassette,
        cassette_dir=cassette_dir,
        match=chosen["match"],
        speed=chosen["speed"],
        strict=chosen["strict"],
        allow_unplayed=chosen["allow_unplayed"],
        allow_unfired=chosen["allow_unfired"],
        record_mode=chosen["record_mode"],
        stall_timeout=chosen["stall_timeout"],
        audio_tolerance=chosen["audio_tolerance"],
        shift_times=chosen["shift_times"],
        fresh_ids=chosen["fresh_ids"],
        faults=chosen["faults"],
        latency=chosen["latency"],
        upstream=chosen["upstream"],
        api_key=chosen["api_key"],
        audio=chosen["audio"],
        redactor=chosen["redactor"],
        source=in_memory,
        sources=sources,
    )


def cassette_file_name(name: str) -> str:
    """A test's name made safe as one file name: unsafe runs become ``-``, long names get a hash."""
    safe = _UNSAFE.sub("-", name).strip("-.") or "test"
    if len(safe) > MAX_NAME or (safe != name and len(name) > MAX_NAME):
        # The hash of the original keeps two long names that share a prefix apart.
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        safe = f"{safe[: MAX_NAME - 13].rstrip('-.')}-{digest}"
    return f"{safe}.jsonl"


def default_cassette_name(nodeid: str, module_path: Path) -> str:
    """``<module>/<Class.test_name[params]>.jsonl`` for a test's node id."""
    _, _, inner = nodeid.partition("::")
    test = inner.replace("::", ".") or module_path.stem
    return f"{cassette_file_name(module_path.stem)[: -len('.jsonl')]}/{cassette_file_name(test)}"


def resolve_cassette(value: str | os.PathLike[str], cassette_dir: Path) -> Path:
    """A marker's cassette, inside the cassette directory, ``.jsonl`` added when it has no suffix.

    Relative names are taken from the cassette directory, so tests in several modules can
    share one cassette. A name that leads out of that directory (``..``, or an absolute
    path elsewhere) is refused: a typo must not make a recording overwrite an unrelated file.
    """
    raw = os.fspath(value)
    if "\x00" in raw:
        raise RealtimeConfigError(
            f"@pytest.mark.realtime: cassette={raw!r} contains a NUL character, which no file name can hold"
        )
    # The writer adds ".<pid>.partial" to the name: keep every part well within 255 bytes.
    long = [part for part in Path(raw).parts if len(os.fsencode(part)) > MAX_PART]
    if long:
        raise RealtimeConfigError(
            f"@pytest.mark.realtime: cassette={raw[:60]!r}... has a name of {len(os.fsencode(long[0]))} "
            f"bytes; file systems allow {MAX_PART} here: use a shorter name"
        )
    path = Path(os.path.normpath(os.path.join(cassette_dir, raw)))
    base = os.path.normpath(cassette_dir)
    inside = os.path.commonpath([base, str(path)]) == base and str(path) != base
    if inside and not path.suffix:
        path = path.with_name(path.name + ".jsonl")
    if not inside:
        raise RealtimeConfigError(
            f"@pytest.mark.realtime: cassette={raw!r} resolves to {path}, outside the cassette "
            f"directory {base}; name a file inside it (relative names start there), or move "
            f"the directory with the realtime_cassette_dir ini option or realtime_config's "
            f"'cassette_dir'"
        )
    return path


def record_command(nodeid: str, test_path: Path, invocation_dir: Path, mode: str = "once") -> str:
    """The exact shell command that (re-)records one test, from where pytest was started."""
    _, sep, inner = nodeid.partition("::")
    try:
        where = os.path.relpath(test_path, invocation_dir)
    except ValueError:  # another drive on Windows
        where = str(test_path)
    target = where + (sep + inner if sep else "")
    option = "--realtime-record" if mode == "once" else f"--realtime-record-mode={mode}"
    return f"pytest {option} {shlex.quote(target)}"
