"""rtreplay: record and replay OpenAI Realtime API WebSocket sessions.

Record a live session through a proxy into a cassette, then replay it from a local mock
server to any client, deterministically, with no API key and no network.
"""

from ._version import __version__
from .cassette import FORMAT_VERSION, Cassette, Close, Connection, Frame, Header, Open, Reject
from .codec import CassetteReader, CassetteWriter, load, save
from .errors import (
    CassetteError,
    CassetteFormatError,
    CassetteNotFoundError,
    CassetteTruncatedWarning,
    CassetteVersionError,
    CassetteWriteError,
    MismatchError,
    RecordError,
    ReplayError,
    RtreplayError,
    SecretLeakError,
    UpstreamError,
)
from .redact import Redactor

__all__ = [
    "FORMAT_VERSION",
    "Cassette",
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
    "Frame",
    "Header",
    "MismatchError",
    "Open",
    "RecordError",
    "Redactor",
    "Reject",
    "ReplayError",
    "RtreplayError",
    "SecretLeakError",
    "UpstreamError",
    "__version__",
    "load",
    "save",
]
