"""Latency profiles: values, the timeline they make, the player's clock, and a real client's wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtreplay.latency import Latency, apply_latency, parse_latency
from rtreplay.server import ReplayServer

from .conftest import CASSETTES, timeout
from .test_player import C, Run, S, recording

DELTAS = [
    S("session.created"),
    C("response.create"),
    S("response.created", response={"id": "resp_1"}),
    S("response.output_item.added", response_id="resp_1", item={"id": "item_1"}),
    *[S("response.output_text.delta", response_id="resp_1", item_id="item_1", delta=str(i)) for i in range(4)],
    S("response.output_text.done", response_id="resp_1", item_id="item_1", text="0123"),
    S("response.done", response={"id": "resp_1"}),
]


def test_a_latency_reads_from_its_string_and_writes_it_back() -> None:
    latency = Latency.parse("ttft=0.8, rate=20,jitter=0.05,seed=3")
    assert latency == Latency(ttft=0.8, rate=20, jitter=0.05, seed=3)
    assert str(latency) == "ttft=0.8,rate=20,jitter=0.05,seed=3"
    assert parse_latency({"audio_speed": 1}) == Latency(audio_speed=1.0)
    assert parse_latency(None) is None and parse_latency(latency) is latency


@settings(deadline=None)  # a loaded machine is no reason to fail
@given(st.builds(Latency, st.floats(0, 60).map(lambda x: round(x, 3)), st.none() | st.floats(0.01, 500).map(lambda x: round(x, 2)),
                 st.none() | st.floats(0.1, 10).map(lambda x: round(x, 2)), st.floats(0, 1).map(lambda x: round(x, 3)), st.integers(0, 2**31)))
def test_any_latency_survives_its_string(latency: Latency) -> None:
    assert Latency.parse(str(latency)) == latency


@pytest.mark.parametrize(
    ("text", "says"),
    [("ttft=-1", "ttft is a number of seconds >= 0"), ("rate=0", "rate is a number > 0"), ("speed=2", "not NAME=VALUE"),
     ("ttft", "not NAME=VALUE"), ("ttft=x", "ttft must be a number"), ("ttft=1,ttft=2", "given twice"), ("seed=1.5", "seed must be a number")],
)
def test_a_bad_latency_is_a_value_error_saying_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Latency.parse(text)


def delays(latency: Latency, conn: int = 0, audio: Any = None) -> list[float]:
    """The delay of each delta's cue, in order."""
    _index, ic = recording(*DELTAS)
    timeline = apply_latency(ic.timeline, latency, conn=conn, audio_seconds=audio)
    return [cue.delay for cue in timeline if cue.frames and cue.frames[0].type == "response.output_text.delta"]


def test_the_first_delta_waits_ttft_and_each_next_one_a_rate_s_gap() -> None:
    assert delays(Latency(ttft=0.5, rate=4)) == pytest.approx([0.5, 0.75, 1.0, 1.25])
    assert delays(Latency(ttft=2)) == pytest.approx([2, 2, 2, 2])


def test_jitter_is_the_same_for_the_same_seed_and_connection_and_bounded() -> None:
    jittered = delays(Latency(rate=10, jitter=0.05, seed=7))
    assert jittered == delays(Latency(rate=10, jitter=0.05, seed=7))
    assert jittered != delays(Latency(rate=10, jitter=0.05, seed=8))
    assert jittered != delays(Latency(rate=10, jitter=0.05, seed=7), conn=1)
    plain = delays(Latency(rate=10))
    extra = [j - p for j, p in zip(jittered, plain, strict=True)]
    assert all(0 <= e <= 0.05 * (i + 1) + 1e-9 for i, e in enumerate(extra))


def test_audio_deltas_wait_for_their_duration_at_the_audio_speed() -> None:
    steps = [S("session.created"), C("response.create"), S("response.created", response={"id": "r"}),
             *[S("response.output_audio.delta", response_id="r", delta="AAAA") for _ in range(3)],
             S("response.done", response={"id": "r"})]
    _index, ic = recording(*steps)
    timeline = apply_latency(ic.timeline, Latency(ttft=0.1, audio_speed=2.0), audio_seconds=lambda f: 1.0)
    assert [c.delay for c in timeline if c.frames and c.frames[0].type == "response.output_audio.delta"] == pytest.approx([0.1, 0.6, 1.1])


def test_apply_latency_is_pure() -> None:
    _index, ic = recording(*DELTAS)
    recorded = ic.timeline
    before = [(len(c.frames), c.delay) for c in recorded]
    apply_latency(recorded, Latency(ttft=1, rate=2))
    assert [(len(c.frames), c.delay) for c in recorded] == before


def test_the_player_sends_the_first_delta_after_ttft_and_the_rest_at_the_rate() -> None:
    index, ic = recording(*DELTAS)
    # (No stall clock: the clock is run out, and a client that then says nothing while the
    # recording goes on with its close is a stall, which test_player covers.)
    run = Run(index, ic, timeline=apply_latency(ic.timeline, Latency(ttft=1.0, rate=2.0)), stall_timeout=None)
    run.send(C("response.create")[1], now=10.0)
    assert run.types()[-2:] == ["response.created", "response.output_item.added"]
    times = []
    while run.player.next_deadline() is not None:
        for event in run.wait():
            times.append((event["type"], round(run.now, 3)))
    assert times == [
        ("response.output_text.delta", 11.0), ("response.output_text.delta", 11.5),
        ("response.output_text.delta", 12.0), ("response.output_text.delta", 12.5),
        ("response.output_text.done", 12.5), ("response.done", 12.5),
    ]
    assert run.report.ok and run.report.complete


def test_a_session_with_latency_gives_every_connection_its_own_jitter() -> None:
    from rtreplay.replay import ReplaySession

    session = ReplaySession(CASSETTES / "text-chat.jsonl", latency="rate=5,jitter=0.1,seed=1", repeat=True)
    [ic] = session.connections
    a, b = session.timeline(ic, 0), session.timeline(ic, 1)
    assert a is not None and b is not None
    assert [c.delay for c in a] != [c.delay for c in b]
    assert [c.delay for c in a] == [c.delay for c in session.timeline(ic, 0)]  # type: ignore[union-attr]


async def test_a_client_waiting_for_a_slow_first_token_gives_up_without_a_sleep_in_the_test() -> None:
    """The app under test shows 'still thinking' when no delta came within 0.3 s."""
    from openai import AsyncOpenAI

    async with ReplayServer(CASSETTES / "text-chat.jsonl", latency="ttft=1.5") as server:
        client = AsyncOpenAI(api_key="sk-test", websocket_base_url=server.websocket_base_url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            from rtreplay.codec import load

            asked = time.monotonic()
            for frame in load(CASSETTES / "text-chat.jsonl").connections[0].client_frames():
                await conn.send(frame.event())  # type: ignore[arg-type]
            thinking = False
            first: float | None = None
            async for event in conn:
                if event.type == "response.created":
                    try:
                        while True:
                            event = await asyncio.wait_for(conn.recv(), 0.3)  # the app's own bound
                            if event.type == "response.output_text.delta":
                                break
                    except asyncio.TimeoutError:
                        thinking = True
                        event = await asyncio.wait_for(conn.recv(), timeout(10))
                if event.type == "response.output_text.delta" and first is None:
                    first = time.monotonic()
                if event.type == "response.done":
                    break
        await client.close()
    assert thinking, "the app saw a slow model"
    assert first is not None and first - asked >= 1.5  # never earlier than the profile says
    assert server.report.ok and server.report.complete

