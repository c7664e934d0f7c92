"""rtreplay: record and replay OpenAI Realtime API WebSocket sessions.

Record a live session through a proxy into a cassette, then replay it from a local mock
server to any client, deterministically, with no API key and no network.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._version import __version__
from .cassette import FORMAT_VERSION, Cassette, Close, Connection, Frame, Header, Open, Reject
from .codec import CassetteReader, CassetteWriter, load, save
from .driver import Driver
from .errors import (
    CassetteChangedError,
    CassetteError,
    CassetteFormatError,
    CassetteNotFoundError,
    CassetteTruncatedWarning,
    CassetteVersionError,
    CassetteWriteError,
    DriveError,
    EventHookError,
    MismatchError,
    RecordError,
    ReplayError,
    RtreplayError,
    SecretLeakError,
    UpstreamError,
)
from .expect import ServerPolicy
from .faults import At, Fault
from .latency import Latency
from .match import MatchPolicy
from .player import Player
from .redact import Redactor
from .replay import ReplaySession
from .report import DriveReport, Mismatch, ReplayReport
from .timeline import Timeline

if _TYPE_CHECKING:
    from .drive import Drive
    from .recorder import Recorder
    from .server import ReceivedEvent, ReplayServer

# The servers pull in websockets: imported on first use, so ``import rtreplay`` (and the
# pytest plugin, which imports it in every test session) stays cheap.
_LAZY = {
    "Drive": ".drive",
    "ReceivedEvent": ".server",
    "Recorder": ".recorder",
    "ReplayServer": ".server",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rtreplay' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "FORMAT_VERSION",
    "At",
    "Cassette",
    "CassetteChangedError",
    "CassetteError",
    "CassetteFormatError",
    "CassetteNotFoundError",
    "CassetteReader",
    "CassetteTruncatedWarning",
    "CassetteVersionError",
    "CassetteWriteError",
    "CassetteWriter",
    "Close",
    "Connection",
    "Drive",
    "DriveError",
    "DriveReport",
    "Driver",
    "EventHookError",
    "Fault",
    "Frame",
    "Header",
    "Latency",
    "MatchPolicy",
    "Mismatch",
    "MismatchError",
    "Open",
    "Player",
    "ReceivedEvent",
    "RecordError",
    "Recorder",
    "Redactor",
    "Reject",
    "ReplayError",
    "ReplayReport",
    "ReplayServer",
    "ReplaySession",
    "RtreplayError",
    "SecretLeakError",
    "ServerPolicy",
    "Timeline",
    "UpstreamError",
    "__version__",
    "load",
    "save",
]
