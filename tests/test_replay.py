"""The replay session without sockets: which recorded connection a handshake gets, refusals."""

from __future__ import annotations

import json

import pytest

from rtreplay import Cassette, Close, Connection, Frame, Header, Open, Reject
from rtreplay._index import CassetteIndex
from rtreplay.player import Player, Send
from rtreplay.replay import Accept, Handshake, Refuse, ReplaySession, choose_connection

from .conftest import CASSETTES


def cassette(*opens: Open, reject: int | None = None) -> Cassette:
    connections = []
    for o in opens:
        frames = [Frame.from_message(o.conn, 0.0, "server", json.dumps({"type": "session.created", "event_id": f"c{o.conn}"}))]
        conn = Connection(o, frames, Close(o.conn, 1.0, 1000, "", "client"))
        if reject == o.conn:
            conn = Connection(o, [], None, Reject(o.conn, 0.1, 401, {"content-type": "application/json"}, '{"error":"no"}'))
        connections.append(conn)
    return Cassette(Header(), connections)


TWO = cassette(Open(0, query={"model": "gpt-realtime"}), Open(1, query={"model": "gpt-realtime-mini"}))


def connections(c: Cassette) -> list:  # type: ignore[type-arg]
    return CassetteIndex.from_cassette(c).connections


def test_the_kth_handshake_gets_the_kth_recorded_connection() -> None:
    conns = connections(cassette(Open(0, query={"model": "m"}), Open(1, query={"model": "m"})))
    hello = Handshake(query={"model": "m"})
    first = choose_connection(conns, set(), hello)
    assert not isinstance(first, tuple) and first.number == 0
    second = choose_connection(conns, {0}, hello, live=1)
    assert not isinstance(second, tuple) and second.number == 1


def test_a_handshake_prefers_the_connection_with_its_query() -> None:
    chosen = choose_connection(connections(TWO), set(), Handshake(query={"model": "gpt-realtime-mini"}))
    assert not isinstance(chosen, tuple) and chosen.number == 1
    # With none the same, the next unused one.
    other = choose_connection(connections(TWO), set(), Handshake(query={"model": "other"}))
    assert not isinstance(other, tuple) and other.number == 0


def test_one_connection_too_many_is_409_and_repeat_serves_again() -> None:
    conns = connections(TWO)
    status, message = choose_connection(conns, {0, 1}, Handshake(), live=2)  # type: ignore[misc]
    assert status == 409
    assert message.startswith("the cassette recorded 2 connections and every one was replayed; this is connection 3")
    assert "repeat=True (--repeat)" in message
    again = choose_connection(conns, {0, 1}, Handshake(query={"model": "gpt-realtime"}), repeat=True)
    assert not isinstance(again, tuple) and again.number == 0


def test_the_wrong_protocol_is_400() -> None:
    status, message = choose_connection(connections(TWO), set(), Handshake(protocol="beta"))  # type: ignore[misc]
    assert status == 400
    assert message.startswith("the cassette recorded the GA protocol (no OpenAI-Beta header), but the client asked for the beta protocol")


def test_a_session_accepts_refuses_and_reports() -> None:
    with ReplaySession(TWO, stall_timeout=None) as session:
        first = session.accept(Handshake(query={"model": "gpt-realtime"}))
        assert isinstance(first, Accept) and (first.conn, first.recorded) == (0, 0)
        assert isinstance(first.player, Player) and first.player.stall_timeout is None
        second = session.accept(Handshake(query={"model": "other"}))
        assert isinstance(second, Accept) and second.differences == (
            "model: recorded 'gpt-realtime-mini', got 'other'",
        )
        third = session.accept(Handshake())
        assert isinstance(third, Refuse) and third.status == 409 and third.conn == 2
        assert third.body.startswith("rtreplay: the cassette recorded 2 connections")
        assert [m.kind for m in session.report.mismatches] == ["handshake", "no_connection"]
        assert [p.conn for p in session.report.connections] == [0, 1]


def test_a_session_screens_paths_and_credentials_before_using_a_connection() -> None:
    session = ReplaySession(TWO, require_auth=True, base_url="ws://127.0.0.1:1/v1")
    refused = session.screen(Handshake(path="/v2/chat"))
    assert isinstance(refused, Refuse) and refused.status == 404
    assert refused.body == "rtreplay: no Realtime endpoint at /v2/chat; connect to /v1/realtime (websocket_base_url ws://127.0.0.1:1/v1)\n"
    anonymous = session.accept(Handshake(credential=False))
    assert isinstance(anonymous, Refuse) and anonymous.status == 401 and anonymous.conn is None
    assert session.screen(Handshake(path="/openai/v1/realtime/")) is None
    accepted = session.accept(Handshake(query={"model": "gpt-realtime"}))
    assert isinstance(accepted, Accept) and accepted.conn == 0  # the refusals used up nothing
    assert session.report.ok


def test_a_recorded_refusal_is_replayed_as_that_response() -> None:
    session = ReplaySession(cassette(Open(0), reject=0))
    refused = session.accept(Handshake())
    assert isinstance(refused, Refuse)
    assert (refused.status, refused.body, refused.recorded) == (401, '{"error":"no"}', 0)
    assert refused.headers == {"content-type": "application/json"}
    assert session.report.ok and session.report.complete  # replayed exactly as recorded


def test_a_session_builds_players_outside_any_handshake() -> None:
    session = ReplaySession(CASSETTES / "text-response.jsonl")
    player = session.player(0)
    player.connect(0.0)
    [send] = player.poll(0.0)
    assert isinstance(send, Send) and [f.type for f in send.frames] == ["session.created"]
    assert session.report.connections[0].conn == 0
    with pytest.raises(ValueError, match="has no connection 5"):
        session.player(5)
    session.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [("speed", -1.0), ("stall_timeout", float("inf")), ("audio_tolerance", -0.1)],
)
def test_bad_options_are_refused_before_anything_is_read(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        ReplaySession(CASSETTES / "text-response.jsonl", **{option: value})  # type: ignore[arg-type]
