"""The whole-cassette replay, Sans-I/O: which recorded connection a handshake gets, or a refusal.

As websockets' ``ServerProtocol.accept()`` decides a handshake from values, a
:class:`ReplaySession` decides from a :class:`Handshake` (the request's path, query,
protocol and whether it carries a credential) what the server answers:

- :meth:`ReplaySession.screen` refuses what no cassette can serve (HTTP 404 for a path
  that is not a Realtime endpoint, 401 without a credential under ``require_auth``);
- :meth:`ReplaySession.accept` picks the recorded connection (:func:`choose_connection`)
  and returns an :class:`Accept` carrying the :class:`~rtreplay.player.Player` to run, or a
  :class:`Refuse`: 409 when every recorded connection was replayed, 400 for the wrong
  protocol, or the recorded refusal itself.

The server shell (:mod:`rtreplay.server`) only turns HTTP requests into handshakes and
refusals into responses. Everything is written to :attr:`ReplaySession.report`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from ._index import CassetteIndex, IndexedConnection
from .match import MatchPolicy, resolve_policy
from .player import DEFAULT_AUDIO_TOLERANCE, DEFAULT_STALL_TIMEOUT, Player, check_options
from .protocol import PROFILES, REALTIME
from .report import ConnectionProgress, Mismatch, ReplayReport

if TYPE_CHECKING:
    from .cassette import Cassette, Protocol

__all__ = [
    "Accept",
    "Handshake",
    "Refuse",
    "ReplaySession",
    "choose_connection",
    "handshake_differences",
]

_PROTOCOL_NAMES = {
    "ga": "the GA protocol (no OpenAI-Beta header)",
    "beta": "the beta protocol (OpenAI-Beta: realtime=v1)",
}


@dataclass(frozen=True)
class Handshake:
    """What the replay needs of a connection request.

    ``path`` without its query; ``query`` its parameters; ``protocol`` ``"ga"`` or
    ``"beta"`` (see :func:`rtreplay._wsio.handshake_protocol`); ``credential``: it carries
    an API key in any of the forms clients use.
    """

    path: str = "/v1/realtime"
    query: Mapping[str, str] = field(default_factory=dict)
    protocol: Protocol = "ga"
    credential: bool = True


@dataclass(frozen=True)
class Accept:
    """Accept the connection: ``player`` replays recorded connection ``recorded`` to it."""

    conn: int  # the live connection's number, from 0 in order of arrival
    recorded: int
    player: Player
    differences: tuple[str, ...] = ()  # how the request differs from the recorded one


@dataclass(frozen=True)
class Refuse:
    """Refuse the connection with this HTTP response.

    ``conn`` is the live connection's number when one was used up; ``recorded`` the
    recorded connection when this replays a recorded refusal.
    """

    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)
    conn: int | None = None
    recorded: int | None = None
    reason: str = ""  # one line for the log


def handshake_differences(
    connection: IndexedConnection, handshake: Handshake, keys: Sequence[str] = REALTIME.handshake_keys
) -> list[str]:
    """How a request's session-choosing query parameters differ from the recorded ones."""
    recorded = connection.open.query
    out = []
    for key in keys:
        want, got = recorded.get(key), handshake.query.get(key)
        if want != got:
            out.append(f"{key}: recorded {want!r}, got {got!r}")
    return out


def choose_connection(
    connections: Sequence[IndexedConnection],
    used: Collection[int],
    handshake: Handshake,
    *,
    repeat: bool = False,
    live: int = 0,
) -> IndexedConnection | tuple[int, str]:
    """The recorded connection a handshake gets, or ``(HTTP status, why not)``.

    The first connection not ``used`` yet (any, with ``repeat``) of the handshake's
    protocol, preferring one whose session-choosing query (``model``, ``intent``,
    ``call_id``, ``deployment``) is the same; 409 when none is left, 400 when none speaks
    the protocol. ``live`` numbers the request (from 0) for the message.
    """
    recorded = len(connections)
    pool = list(connections) if repeat else [c for c in connections if c.number not in used]
    if not pool:
        return 409, (
            f"the cassette recorded {recorded} connection{'s' if recorded != 1 else ''} and "
            f"every one was replayed; this is connection {live + 1}. Record it, or replay "
            f"with repeat=True (--repeat) to serve the same connection again"
        )
    same = [c for c in pool if c.protocol == handshake.protocol]
    if not same:
        return 400, (
            f"the cassette recorded {_PROTOCOL_NAMES[pool[0].protocol]}, but the client asked "
            f"for {_PROTOCOL_NAMES[handshake.protocol]}; connect with the client the cassette "
            f"was recorded with"
        )
    exact = [c for c in same if not handshake_differences(c, handshake, c.profile.handshake_keys)]
    return exact[0] if exact else same[0]


class ReplaySession:
    """One cassette replayed to any number of clients (see the module docstring).

    ``cassette`` is a path, a :class:`~rtreplay.cassette.Cassette` or an index; the other
    options are :class:`~rtreplay.server.ReplayServer`'s. ``base_url`` is shown in refusals
    of unknown paths. Use it as a context manager, or call :meth:`close`, to release the
    cassette file. Bad options raise :class:`ValueError`.
    """

    def __init__(
        self,
        cassette: str | os.PathLike[str] | Cassette | CassetteIndex,
        *,
        match: str | MatchPolicy = "default",
        speed: float | None = None,
        strict: bool = False,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        audio_tolerance: float | None = DEFAULT_AUDIO_TOLERANCE,
        repeat: bool = False,
        require_auth: bool = False,
        base_url: str | None = None,
    ) -> None:
        self.policy = resolve_policy(match)
        self.speed, self.stall_timeout, self.audio_tolerance = check_options(
            speed, stall_timeout, audio_tolerance
        )
        self.strict = strict
        self.repeat = repeat
        self.require_auth = require_auth
        self.base_url = base_url
        self.index = CassetteIndex.load(cassette)
        self.report = ReplayReport(self.index.path, self.index.connections)
        # What a recording proxy accepted (any path ending in a realtime segment, such as
        # Azure's /openai/deployments/<name>/realtime) is served too.
        self._recorded_paths = {ic.open.path.rstrip("/") or "/" for ic in self.index.connections}
        self._used: set[int] = set()
        self._next = 0

    def __enter__(self) -> ReplaySession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the cassette file (the report stays readable)."""
        self.index.close()

    @property
    def connections(self) -> list[IndexedConnection]:
        return self.index.connections

    def player(self, recorded: int = 0, *, conn: int | None = None) -> Player:
        """A player for recorded connection ``recorded``, outside of any handshake.

        ``conn`` numbers it in the report (the next live number by default). Raises
        :class:`ValueError` for a connection the cassette lacks.
        """
        for ic in self.index.connections:
            if ic.number == recorded:
                if conn is None:
                    conn = self._next
                    self._next += 1
                return self._player(ic, conn)
        numbers = ", ".join(str(ic.number) for ic in self.index.connections) or "none"
        raise ValueError(f"the cassette has no connection {recorded} (it has: {numbers})")

    def _player(self, ic: IndexedConnection, conn: int) -> Player:
        return Player(
            ic,
            policy=self.policy,
            speed=self.speed,
            strict=self.strict,
            stall_timeout=self.stall_timeout,
            audio_tolerance=self.audio_tolerance,
            conn=conn,
            report=self.report,
            source=self.index,
        )

    def screen(self, handshake: Handshake) -> Refuse | None:
        """What no recording can serve: an unknown path (404), no credential (401).

        A path is known when an endpoint profile serves it or the cassette recorded it.
        """
        recorded = (handshake.path.rstrip("/") or "/") in self._recorded_paths
        if not recorded and not any(profile.serves(handshake.path) for profile in PROFILES):
            where = f" (websocket_base_url {self.base_url})" if self.base_url else ""
            return Refuse(
                404,
                f"rtreplay: no Realtime endpoint at {handshake.path}; connect to /v1/realtime{where}\n",
                reason="not a Realtime endpoint",
            )
        if self.require_auth and not handshake.credential:
            return Refuse(
                401,
                "rtreplay: no credential: send 'Authorization: Bearer <key>', 'api-key: <key>' "
                "or the 'openai-insecure-api-key.<key>' subprotocol (any key is accepted)\n",
                reason="no credential",
            )
        return None

    def accept(self, handshake: Handshake) -> Accept | Refuse:
        """Decide a valid upgrade request: which recorded connection it gets, or why none."""
        refused = self.screen(handshake)
        if refused is not None:
            return refused
        live = self._next
        self._next += 1
        chosen = choose_connection(
            self.index.connections, self._used, handshake, repeat=self.repeat, live=live
        )
        if isinstance(chosen, tuple):
            status, message = chosen
            self.report.add_mismatch(
                Mismatch("no_connection" if status == 409 else "handshake", live, None, 1, None, 0, None, None, message)
            )
            return Refuse(status, f"rtreplay: {message}\n", conn=live, reason=message)
        ic = chosen
        if not self.repeat:
            self._used.add(ic.number)
        if ic.reject is not None:
            rej = ic.reject
            self.report.add_connection(
                ConnectionProgress(live, ic.number, ic.clients, ic.server_count, refused=True)
            )
            return Refuse(
                rej.status,
                rej.body,
                rej.headers,
                conn=live,
                recorded=ic.number,
                reason=f"replaying recorded connection {ic.number}, refused with HTTP {rej.status}",
            )
        differences = tuple(handshake_differences(ic, handshake, ic.profile.handshake_keys))
        if differences and self.policy.content:
            message = (
                f"the connection request differs from recorded connection {ic.number}: "
                + "; ".join(differences)
            )
            self.report.add_mismatch(
                Mismatch("handshake", live, ic.number, 1, None, len(ic.clients), None, None, message)
            )
        return Accept(live, ic.number, self._player(ic, live), differences)
