"""Match policies: what is compared, what is masked, and how differences read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtreplay.match import MISSING, Difference, MatchPolicy, diff, format_value, resolve_policy

UPDATE = {
    "type": "session.update",
    "event_id": "evt_1",
    "session": {
        "type": "realtime",
        "instructions": "Be brief.",
        "tools": [{"name": "a", "description": "x"}],
    },
}


def changed(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(event))
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = copy
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        target[last] = value
    return copy


class Ids:
    def __init__(self, handed: set[str] = frozenset(), bound: dict[str, str] | None = None) -> None:  # type: ignore[assignment]
        self.handed = handed
        self._bound = bound or {}

    def handed_out(self, recorded_id: str) -> bool:
        return recorded_id in self.handed

    def bound(self, recorded_id: str) -> str | None:
        return self._bound.get(recorded_id)

    def bound_to(self, received_id: str) -> str | None:
        return next((k for k, v in self._bound.items() if v == received_id), None)


def test_default_masks_event_id_only() -> None:
    policy = MatchPolicy.default()
    assert policy.compare(UPDATE, changed(UPDATE, event_id="other")).ok
    assert policy.compare(UPDATE, {k: v for k, v in UPDATE.items() if k != "event_id"}).ok
    verdict = policy.compare(UPDATE, changed(UPDATE, session__instructions="Be long."))
    assert verdict.kind == "content"
    assert [str(d) for d in verdict.differences] == [
        'session.instructions: expected "Be brief.", got "Be long."'
    ]


def test_type_policy_compares_the_type_only() -> None:
    policy = resolve_policy("type")
    assert policy.compare(UPDATE, {"type": "session.update"}).ok
    assert policy.compare(UPDATE, {"type": "response.create"}).kind == "type"
    assert policy.audio == "ignore"


def test_exact_policy_masks_nothing() -> None:
    policy = resolve_policy("exact")
    assert policy.compare(UPDATE, json.loads(json.dumps(UPDATE))).ok
    verdict = policy.compare(UPDATE, changed(UPDATE, event_id="evt_2"))
    assert [str(d) for d in verdict.differences] == ['event_id: expected "evt_1", got "evt_2"']
    assert policy.audio == "content"


def test_numbers_compare_by_value_but_booleans_are_not_numbers() -> None:
    policy = MatchPolicy.default()
    a = {"type": "x", "speed": 1, "flag": True}
    assert policy.compare(a, {"type": "x", "speed": 1.0, "flag": True}).ok
    assert not policy.compare(a, {"type": "x", "speed": 1, "flag": 1}).ok


def test_ignore_paths_for_every_type_or_per_type() -> None:
    everywhere = MatchPolicy.default(ignore=["session.tools.*.description"])
    assert everywhere.compare(UPDATE, changed(UPDATE, session__tools__0__description="y")).ok
    assert not everywhere.compare(UPDATE, changed(UPDATE, session__tools__0__name="b")).ok
    per_type = MatchPolicy.default(ignore={"session.update": ["session.instructions"]})
    assert per_type.compare(UPDATE, changed(UPDATE, session__instructions="?")).ok
    other = {"type": "response.create", "session": {"instructions": "a"}}
    assert not per_type.compare(other, changed(other, session__instructions="b")).ok


def test_differences_name_missing_and_extra_fields_and_list_items() -> None:
    got = changed(UPDATE, session__tools=[])
    got["session"]["tracing"] = "auto"
    del got["session"]["instructions"]
    lines = [str(d) for d in MatchPolicy.default().compare(UPDATE, got).differences]
    assert lines == [
        'session.instructions: missing (recorded "Be brief.")',
        'session.tools[0]: missing (recorded {"name": "a", "description": "x"})',
        'session.tracing: not in the recording (got "auto")',
    ]


def test_handed_out_ids_must_come_back_as_they_were_sent() -> None:
    truncate = {
        "type": "conversation.item.truncate",
        "item_id": "item_A1",
        "content_index": 0,
        "audio_end_ms": 900,
    }
    policy = MatchPolicy.default()
    assert policy.compare(truncate, dict(truncate), Ids({"item_A1"})).ok
    verdict = policy.compare(truncate, changed(truncate, item_id="item_B"), Ids({"item_A1"}))
    assert verdict.kind == "id"
    assert "the ID the replay handed out" in str(verdict.differences[0])
    # Other fields are still compared.
    assert (
        policy.compare(truncate, changed(truncate, audio_end_ms=901), Ids({"item_A1"})).kind
        == "content"
    )


def test_client_chosen_ids_bind_to_what_the_client_used() -> None:
    create = {
        "type": "conversation.item.create",
        "previous_item_id": None,
        "item": {"id": "msg_rec", "type": "message"},
    }
    policy = MatchPolicy.default()
    verdict = policy.compare(create, changed(create, item__id="msg_live"), Ids())
    assert verdict.ok and verdict.bindings == {"msg_rec": "msg_live"}
    assert policy.compare(
        create, changed(create, item__id="msg_live"), Ids(bound={"msg_rec": "msg_live"})
    ).ok
    assert (
        policy.compare(
            create, changed(create, item__id="msg_x"), Ids(bound={"msg_rec": "msg_live"})
        ).kind
        == "id"
    )
    assert (
        policy.compare(
            create, changed(create, item__id="msg_live"), Ids(bound={"other": "msg_live"})
        ).kind
        == "id"
    )
    assert policy.compare(create, changed(create, previous_item_id="item_1"), Ids()).kind == "id"


def test_exact_policy_does_not_map_ids() -> None:
    cancel = {"type": "response.cancel", "response_id": "resp_1"}
    assert (
        MatchPolicy.exact()
        .compare(cancel, {"type": "response.cancel", "response_id": "resp_2"})
        .kind
        == "content"
    )


def test_rules_decide_or_defer() -> None:
    seen: list[Any] = []

    def rule(expected: Any, got: Any) -> bool | str | None:
        seen.append((expected["type"], got["type"]))
        return {"yes": True, "no": False, "why": "because", "defer": None}[
            got["session"]["instructions"]
        ]

    policy = MatchPolicy.type_only(rules={"session.update": rule})
    assert policy.compare(UPDATE, changed(UPDATE, session__instructions="yes")).ok
    no = policy.compare(UPDATE, changed(UPDATE, session__instructions="no"))
    assert no.kind == "rule" and no.reason == "the rule for session.update said no"
    assert policy.compare(UPDATE, changed(UPDATE, session__instructions="why")).reason == "because"
    assert policy.compare(UPDATE, changed(UPDATE, session__instructions="defer")).ok  # type-only
    assert seen[0] == ("session.update", "session.update")
    strict = MatchPolicy.default().with_rule("session.update", rule)
    assert strict.compare(UPDATE, changed(UPDATE, session__instructions="defer")).kind == "content"
    assert strict.rules and not MatchPolicy.default().rules  # with_rule copies


def test_a_rule_that_raises_is_a_rule_mismatch_naming_the_exception_and_its_line() -> None:
    def rule(expected: Any, got: Any) -> bool:
        return bool(got["session"]["nonexistent"])  # the user's bug

    verdict = MatchPolicy.default().with_rule("session.update", rule).compare(UPDATE, UPDATE)
    assert verdict.kind == "rule" and verdict.reason is not None
    assert verdict.reason.startswith("the rule for session.update raised KeyError: 'nonexistent' at ")
    assert verdict.reason.endswith(f"{__file__}:{rule.__code__.co_firstlineno + 1}")


def test_masked_view_for_the_report() -> None:
    assert "event_id" not in MatchPolicy.default().masked(UPDATE)
    assert MatchPolicy.exact().masked(UPDATE) == UPDATE


def test_resolve_policy() -> None:
    policy = MatchPolicy.default()
    assert resolve_policy(policy) is policy
    assert resolve_policy("default").name == "default"
    with pytest.raises(ValueError, match="unknown match policy 'loose'"):
        resolve_policy("loose")
    with pytest.raises(ValueError, match="audio must be"):
        MatchPolicy(audio="bytes")  # type: ignore[arg-type]


def test_format_value_keeps_report_lines_short() -> None:
    assert format_value("a" * 10_000).endswith('…" (10,000 chars)')
    assert len(format_value(list(range(1000)))) <= 72
    assert format_value(MISSING) == "(absent)"
    assert str(Difference("a.b", 1, 2, "custom")) == "a.b: custom"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)
events = st.builds(
    lambda kind, body, eid: {"type": kind, "event_id": eid, **body},
    st.sampled_from(["session.update", "conversation.item.create", "response.create"]),
    st.dictionaries(
        st.text(min_size=1, max_size=4).filter(lambda k: k not in ("type", "event_id")),
        json_values,
        max_size=4,
    ),
    st.text(max_size=6),
)


@given(events, st.text(max_size=6))
def test_an_event_matches_itself_in_any_key_order_with_any_event_id(
    event: dict[str, Any], other_id: str
) -> None:
    reordered = dict(reversed(list(json.loads(json.dumps(event)).items())))
    reordered["event_id"] = other_id
    for name in ("default", "type"):
        assert resolve_policy(name).compare(event, reordered, Ids()).ok


@given(json_values, json_values)
def test_diff_is_empty_exactly_when_values_are_equal(a: Any, b: Any) -> None:
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (diff(a, b) == []) == same or _numeric_only_difference(a, b)


def _numeric_only_difference(a: Any, b: Any) -> bool:
    # 1 and 1.0 are the same number: JSON from two SDKs may spell it either way.
    return json.dumps(a, sort_keys=True).replace(".0", "") == json.dumps(b, sort_keys=True).replace(
        ".0", ""
    )


def test_matching_doc_examples_run() -> None:
    from .docs import code_blocks

    blocks = code_blocks("matching.md", "python")
    assert len(blocks) == 2
    for code in blocks:
        exec(compile(code, "docs/matching.md", "exec"), {})
