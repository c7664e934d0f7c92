"""What a replay changes in recorded server frames: times moved, IDs made fresh."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from rtreplay.volatile import Rewriter, fresh_id, has_time_fields, parse_wall_clock, shift_times


def test_only_the_digits_of_time_fields_move() -> None:
    frame = b'{"type":"session.created","session":{"id":"sess_1","expires_at":1763656200,"x":"expires_at"}}'
    assert has_time_fields(frame)
    assert shift_times(frame, 3600.4) == frame.replace(b"1763656200", b"1763659800")
    # Not a unix time (a duration, a placeholder), or not a time field: left alone.
    for same in (b'{"expires_at":0}', b'{"expires_at":600}', b'{"expires_in":1763656200}',
                 b'{"text":"expires_at: 1763656200"}'):
        assert shift_times(same, 3600) == same and not has_time_fields(same)
    assert shift_times(b'{"received_at":1763656200.25}', 1.5) == b'{"received_at":1763656201.75}'
    assert shift_times(b'{"created_at":  1763656200 }', -60) == b'{"created_at":  1763656140 }'


def test_the_wall_clock_of_a_cassette_is_read_or_unknown() -> None:
    assert parse_wall_clock("1970-01-01T00:01:00.500Z") == 60.5
    assert parse_wall_clock(None) is None and parse_wall_clock("yesterday") is None


@given(st.from_regex(r"(item|resp|call|sess|conv)_[A-Za-z0-9]{5,24}", fullmatch=True), st.integers(0, 2**32))
def test_a_fresh_id_keeps_the_prefix_and_length(recorded: str, seed: int) -> None:
    new = fresh_id(recorded, random.Random(seed))
    assert new.split("_")[0] == recorded.split("_")[0] and len(new) == len(recorded)


def test_a_rewriter_maps_each_id_the_same_way_and_tells_what_it_became() -> None:
    rewriter = Rewriter.for_connection(recorded_at=1000.0, now=4600.0, ids=["item_A", "item_AB", "resp_1"],
                                       rng=random.Random(1))
    assert rewriter.active and rewriter.shift == 3600.0
    frame = json.dumps({"item_id": "item_AB", "previous_item_id": "item_A", "item": {"id": "item_AB"},
                        "text": "item_A is an id", "expires_at": 1_763_656_200}).encode()
    out = json.loads(rewriter.apply(frame))
    assert out["item_id"] == out["item"]["id"] == rewriter.sent_as("item_AB") != "item_AB"
    assert out["previous_item_id"] == rewriter.sent_as("item_A")
    assert out["text"] == "item_A is an id"  # only whole JSON strings are IDs
    assert out["expires_at"] == 1_763_656_200 + 3600
    assert rewriter.recorded(rewriter.sent_as("resp_1")) == "resp_1"
    assert not Rewriter().active and Rewriter().apply(frame) == frame
