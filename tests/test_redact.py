"""Redaction: no credential reaches a cassette file, wherever it hides."""

from __future__ import annotations

import base64
import json
import random
import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtreplay import CassetteWriter, Close, Frame, Open, Redactor, Reject, SecretLeakError, load
from rtreplay.redact import REDACTED, credentials_in_handshake

from .encodings import ENCODINGS, encode, leaked

KEY = "sk-proj-Zx8vQ2mN4pL6rT1wY3uE5iO7aS9dF0gH"


def write(path: Path, redactor: Redactor, *records: object) -> bytes:
    with CassetteWriter(path, redactor=redactor) as writer:
        for record in records:
            writer.write(record)  # type: ignore[arg-type]
    return path.read_bytes()


def test_handshake_credentials_are_removed_but_their_names_kept(tmp_path: Path) -> None:
    redactor = Redactor()
    headers = {
        "Authorization": f"Bearer {KEY}",
        "api-key": "0123456789abcdef0123456789abcdef",
        "OpenAI-Organization": "org-abc123def456",
        "OpenAI-Project": "proj_abc123def456",
        "Sec-WebSocket-Protocol": f"realtime, openai-insecure-api-key.{KEY}, openai-organization.org-abc123def456, openai-project.proj_x1y2z3w4",
        "User-Agent": "AsyncOpenAI/Python 3.52.0",
    }
    redactor.add_handshake(headers, ["realtime", f"openai-insecure-api-key.{KEY}"])
    data = write(
        tmp_path / "c.jsonl",
        redactor,
        Open(
            conn=0,
            query={"model": "gpt-realtime", "api_key": "secret-in-query-123", "api-version": "2025-04-01"},
            subprotocol=f"openai-insecure-api-key.{KEY}",
            headers=headers,
        ),
        Close(conn=0, t=1.0, reason=f"bye {KEY}"),
    )
    text = data.decode()
    for secret in (KEY, "0123456789abcdef0123456789abcdef", "org-abc123def456", "proj_abc123def456", "proj_x1y2z3w4", "secret-in-query-123"):
        assert secret not in text
    opened = load(tmp_path / "c.jsonl").connections[0].open
    assert opened.headers["Authorization"] == "Bearer REDACTED"
    assert opened.headers["api-key"] == REDACTED
    assert opened.headers["User-Agent"] == "AsyncOpenAI/Python 3.52.0"
    assert opened.headers["Sec-WebSocket-Protocol"] == (
        "realtime, openai-insecure-api-key.REDACTED, openai-organization.REDACTED, openai-project.REDACTED"
    )
    assert opened.query == {"model": "gpt-realtime", "api_key": REDACTED, "api-version": "2025-04-01"}
    assert opened.subprotocol == "openai-insecure-api-key.REDACTED"


def test_secrets_inside_frames_are_removed_and_other_bytes_kept(tmp_path: Path) -> None:
    redactor = Redactor(secrets=["azure0123456789abcdef"])
    events = [
        {"type": "session.created", "session": {"client_secret": {"value": "ek_68af0c2e3b5d4a1f", "expires_at": 1767233035}}},
        {"type": "conversation.item.create", "item": {"type": "function_call_output", "output": json.dumps({"token": "x", "api_key": KEY})}},
        {"type": "response.function_call_arguments.done", "arguments": json.dumps({"deep": {"nested": [f"use {KEY} here"]}})},
        {"type": "x", "a": {"b": [{"password": "hunter2hunter2"}, {"note": "azure0123456789abcdef"}]}},
    ]
    frames = [Frame.from_message(0, i / 10, "server", json.dumps(e, separators=(",", ":"))) for i, e in enumerate(events)]
    plain = Frame.from_message(0, 1.0, "server", '{"type":"response.output_text.delta","delta":"task-force sk-"}')
    binary = Frame.from_message(0, 1.1, "client", b"\x00" + KEY.encode() + b"\x01")
    data = write(tmp_path / "c.jsonl", redactor, Open(conn=0), *frames, plain, binary).decode()
    for secret in (KEY, "ek_68af0c2e3b5d4a1f", "hunter2hunter2", "azure0123456789abcdef"):
        assert secret not in data
    back = load(tmp_path / "c.jsonl").connections[0].frames
    assert json.loads(back[0].payload())["session"]["client_secret"] == {"value": REDACTED, "expires_at": 1767233035}
    assert back[4].payload() == plain.payload(), "a frame without secrets keeps its exact bytes"
    assert back[5].payload() == b"\x00sk-REDACTED\x01"


def test_user_rules_headers_paths_patterns_and_hooks(tmp_path: Path) -> None:
    def hook(event: object, direction: str) -> object:
        if isinstance(event, dict) and event.get("type") == "conversation.item.create":
            event = {**event, "hooked": direction}
        return event

    redactor = Redactor(
        headers=["X-Internal-Token"],
        json_paths=["item.content.*.text"],
        patterns=[r"acct-\d{6}"],
        event_hook=hook,
    )
    event = {"type": "conversation.item.create", "item": {"content": [{"type": "input_text", "text": "my SSN"}]}, "note": "acct-123456"}
    write(
        tmp_path / "c.jsonl",
        redactor,
        Open(conn=0, headers={"X-Internal-Token": "abc"}),
        Frame.from_message(0, 0.1, "client", json.dumps(event)),
    )
    conn = load(tmp_path / "c.jsonl").connections[0]
    assert conn.open.headers == {"X-Internal-Token": REDACTED}
    got = json.loads(conn.frames[0].payload())
    assert got["item"]["content"][0] == {"type": "input_text", "text": REDACTED}
    assert got["note"] == REDACTED
    assert got["hooked"] == "client"


def test_a_pattern_that_matches_the_empty_string_is_refused() -> None:
    with pytest.raises(ValueError, match="matches the empty string"):
        Redactor(patterns=[r"(acct-\d{6})?"])
    assert Redactor(patterns=[r"(?=acct)"]).text("my acct-123456") == "my acct-123456"


def test_a_secret_that_survives_every_rule_refuses_the_record(tmp_path: Path) -> None:
    def leak(event: object, direction: str) -> object:
        return {"oops": KEY[::-1][::-1]}  # a hook that puts the live key back

    redactor = Redactor(secrets=[KEY], event_hook=leak)
    path = tmp_path / "c.jsonl"
    path.write_text("the old cassette\n")
    writer = CassetteWriter(path, redactor=redactor)
    with pytest.raises(SecretLeakError, match="live credential"):
        writer.write(Frame.from_message(0, 0.1, "server", '{"type":"x"}'))
    writer.abort()
    assert path.read_text() == "the old cassette\n"


def test_the_last_check_discards_a_file_holding_the_live_key(tmp_path: Path) -> None:
    redactor = Redactor()
    path = tmp_path / "c.jsonl"
    writer = CassetteWriter(path, redactor=redactor)
    writer.write(Open(conn=0, headers={"user-agent": "short"}))
    # The key becomes known only after it was written (e.g. learnt too late).
    writer.write(Reject(conn=0, t=0.1, status=401, body="Incorrect API key provided: zz-0123456789abcdefXYZ"))
    redactor.add_secret("zz-0123456789abcdefXYZ")
    with pytest.raises(SecretLeakError, match="discarded"):
        writer.close()
    assert not path.exists() and not writer.partial_path.exists()


def test_short_keys_are_redacted_by_field_but_not_hunted_in_text() -> None:
    redactor = Redactor()
    redactor.add_handshake({"Authorization": "Bearer test"})
    assert redactor.secrets == set()
    assert redactor.headers({"Authorization": "Bearer test"}) == {"Authorization": "Bearer REDACTED"}
    assert redactor.text("a test of text") == "a test of text"


def test_credentials_in_handshake() -> None:
    assert credentials_in_handshake(
        {"authorization": "Bearer ek_1", "api-key": "k2"}, ["realtime", "openai-insecure-api-key.k3"]
    ) == ["ek_1", "k2", "k3"]


# -- the law: whatever the session, the key's bytes appear nowhere in the file ------------

keys = st.one_of(
    st.from_regex(r"sk-(proj-)?[A-Za-z0-9]{20,48}", fullmatch=True),
    st.from_regex(r"ek_[A-Za-z0-9]{16,32}", fullmatch=True),
    st.from_regex(r"[a-f0-9]{32}", fullmatch=True),  # Azure-style key
)
filler = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_categories=("Cs",)), max_size=20)
_HIDING_PLACES = [
    "header",
    "subprotocol",
    "query",
    "client_secret",
    "nested",
    "tool_arguments",
    "text_frame",
    "binary_frame",
    "close_reason",
]


@st.composite
def sessions_hiding(draw: st.DrawFn) -> tuple[str, list[object], dict[str, str], list[str]]:
    key = draw(keys)
    places = draw(st.lists(st.sampled_from(_HIDING_PLACES), min_size=1, unique=True))
    headers = {"User-Agent": draw(filler)}
    protocols = ["realtime"]
    auth = draw(st.sampled_from(["authorization", "api-key", "subprotocol"]))
    if auth == "authorization":
        headers["Authorization"] = f"Bearer {key}"
    elif auth == "api-key":
        headers["api-key"] = key
    else:
        protocols.append(f"openai-insecure-api-key.{key}")
    if "header" in places:
        headers[draw(st.sampled_from(["X-Debug", "OpenAI-Project", "Cookie"]))] = f"{draw(filler)}{key}"
    query = {"model": "gpt-realtime"}
    if "query" in places:
        query[draw(st.sampled_from(["api_key", "key", "note"]))] = key
    if "subprotocol" in places:
        protocols.append(f"openai-insecure-api-key.{key}")
    records: list[object] = [
        Open(conn=0, query=query, headers=headers, subprotocol=protocols[-1] if len(protocols) > 1 else "realtime")
    ]
    t = 0.0

    def frame(direction: str, message: str | bytes) -> None:
        nonlocal t
        t += 0.01
        records.append(Frame.from_message(0, t, direction, message))  # type: ignore[arg-type]

    frame("server", json.dumps({"type": "session.created", "session": {"id": "sess_1"}}))
    if "client_secret" in places:
        frame("server", json.dumps({"type": "session.updated", "session": {"client_secret": {"value": key, "expires_at": 1}}}))
    if "nested" in places:
        depth = draw(st.integers(1, 6))
        value: object = draw(filler) + key + draw(filler)
        for _ in range(depth):
            value = draw(st.sampled_from([lambda v: [v], lambda v: {"k": v}]))(value)
        frame(draw(st.sampled_from(["client", "server"])), json.dumps({"type": "conversation.item.create", "item": value}, ensure_ascii=draw(st.booleans())))
    if "tool_arguments" in places:
        arguments = json.dumps({"query": draw(filler), "credentials": {"token": key}})
        frame("server", json.dumps({"type": "response.function_call_arguments.done", "arguments": arguments}))
    if "text_frame" in places:
        frame("client", f"{draw(filler)} {key} {draw(filler)}")
    if "binary_frame" in places:
        frame("client", draw(st.binary(max_size=8)) + key.encode() + draw(st.binary(max_size=8)))
    reason = f"bye {key}" if "close_reason" in places else ""
    records.append(Close(conn=0, t=t + 0.01, reason=reason, by="client"))
    return key, records, headers, protocols


SESSIONS_TRIED = 0


@given(sessions_hiding())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
def test_no_key_survives_into_a_written_cassette(
    tmp_path: Path, session: tuple[str, list[object], dict[str, str], list[str]]
) -> None:
    global SESSIONS_TRIED
    SESSIONS_TRIED += 1
    key, records, headers, protocols = session
    redactor = Redactor()
    redactor.add_handshake(headers, protocols)  # what the recorder does with each handshake
    path = tmp_path / f"s{SESSIONS_TRIED}.jsonl"
    data = write(path, redactor, *records)
    assert key.encode() not in data
    # Nor hidden behind JSON escapes: decode every JSON payload and look again.
    for conn in load(path).connections:
        for f in conn.frames:
            event = f.event()
            if event is not None:
                assert key not in msgspec.json.encode(event).decode()
    path.unlink()


# What a cassette holds whatever the event: its header, a frame's fields, this test's event
# type and rtreplay's placeholder. A secret spelt in it (hypothesis draws the string
# constants of the code under test: "REDACTED", "rtreplay") is not a leak of the event.
_SKELETON = (
    '{"kind":"header","format":1,"rtreplay":"0.1.0","created":"2026-01-01T00:00:00Z"} '
    '{"kind":"frame","conn":0,"t":0.0,"dir":"server","json":{"type": "response.output_audio.delta", '
    f'"delta": "", "note": "{REDACTED}", "items": [1, {{"x": ["{REDACTED}"]}}]}}}}'
).lower()


@given(
    secret=st.text(
        st.sampled_from([chr(c) for c in range(33, 127) if chr(c) not in '"\\']), min_size=8, max_size=40
    ).filter(lambda s: s.lower() not in _SKELETON),
    before=st.text(max_size=10),
    after=st.text(max_size=10),
    pad=st.integers(0, 3000),
    where=st.sampled_from(["value", "key", "list", "delta"]),
    encoding=st.sampled_from(ENCODINGS),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_the_recorders_quick_path_never_writes_a_live_credential(
    tmp_path: Path, secret: str, before: str, after: str, pad: int, where: str, encoding: str
) -> None:
    """What the recorder writes (``write_messages``) holds no live credential in any
    encoding, before the final whole-file check at close() could catch it: whatever its
    characters (the quick path skips the search when the frame lacks a byte of the
    credential), wherever it is, however it is written."""
    hidden = before + encode(secret, encoding) + after
    event: dict[str, object] = {"type": "response.output_audio.delta", "delta": "QUJD" * (pad // 4)}
    if where == "value":
        event["note"] = hidden
    elif where == "key":
        event[hidden] = 1
    elif where == "list":
        event["items"] = [1, {"x": [hidden]}]
    else:
        event["delta"] = str(event["delta"]) + hidden
    message = json.dumps(event, ensure_ascii=False).encode()
    writer = CassetteWriter(tmp_path / "c.jsonl", redactor=Redactor(secrets=[secret]))
    try:
        assert writer.write_messages(0, "server", [(0.0, message, True)]) == 1
        written = writer.partial_path.read_bytes()
        leak = leaked(secret, written)
        assert leak is None, f"{secret!r} is {leak} in {written[-500:]!r}"
        for line in written.splitlines():  # JSON escapes undone too
            text = json.dumps(json.loads(line), ensure_ascii=False).encode()
            assert leaked(secret, text) is None, text[-500:]
    finally:
        writer.abort()


def load_frames(path: Path) -> list[Frame]:
    from rtreplay.codec import CassetteReader

    with CassetteReader(path) as reader:
        return [r for r in reader if isinstance(r, Frame)]


KEY_ENCODED = {e: encode(KEY, e) for e in ENCODINGS}


@pytest.mark.parametrize("encoding", ENCODINGS[1:])
def test_a_live_key_is_found_in_every_encoding_wherever_a_record_holds_text(
    tmp_path: Path, encoding: str
) -> None:
    shown = KEY_ENCODED[encoding]
    redactor = Redactor()
    redactor.add_handshake({"Authorization": f"Bearer {KEY}"})
    assert leaked(KEY, redactor.text(f"see {shown} here").encode()) is None
    event = {"type": "conversation.item.create", "item": {"type": "message", "content": [{"type": "input_text", "text": f"key: {shown}"}]}}
    data = write(
        tmp_path / "c.jsonl",
        redactor,
        Open(conn=0, headers={"X-Note": f"k={shown}"}, query={"note": shown}),
        Frame.from_message(0, 0.1, "client", json.dumps(event)),
        Frame.from_message(0, 0.2, "client", f"not json {shown}"),
        Frame.from_message(0, 0.3, "server", b"\x00" + shown.encode() + b"\x01"),
        Close(conn=0, t=1.0, reason=f"bad key {shown}"[:123], by="server"),
        Open(conn=1),
        Reject(conn=1, t=0.0, status=401, body=f"Incorrect API key provided: {shown}."),
    )
    assert leaked(KEY, data) is None, data.decode()
    for f in load_frames(tmp_path / "c.jsonl"):
        assert leaked(KEY, f.payload_bytes()) is None


def test_encoded_keys_in_a_big_base64_blob_are_found_at_every_alignment() -> None:
    redactor = Redactor(secrets=[KEY])
    for offset in range(3):
        audio = bytes(range(256)) * 8
        blob = audio[: 1000 + offset] + KEY.encode() + audio
        for coder in (base64.b64encode, base64.urlsafe_b64encode):
            event = {"type": "input_audio_buffer.append", "audio": coder(blob).decode()}
            frame, clean = redactor.frame_from_message(0, 0.0, "client", json.dumps(event).encode(), True)
            assert not clean and leaked(KEY, frame.payload_bytes()) is None


def test_a_frame_that_cannot_hold_a_key_still_takes_the_quick_path() -> None:
    # The writer searches the encoded line again unless the redactor proved it clean:
    # audio with no live key in any encoding is proved clean, as before.
    redactor = Redactor(secrets=[KEY, "az0123456789abcdef0123456789abcdef"])
    audio = base64.b64encode(bytes(range(256)) * 19).decode()
    for kind, field in (("response.output_audio.delta", "delta"), ("input_audio_buffer.append", "audio")):
        message = json.dumps({"type": kind, "event_id": "event_1", field: audio}).encode()
        frame, clean = redactor.frame_from_message(0, 0.0, "server", message, True)
        assert clean and bytes(frame.json) == message


def test_key_shaped_strings_need_a_boundary() -> None:
    redactor = Redactor()
    assert redactor.text("task-force-abcdefghijklmnop") == "task-force-abcdefghijklmnop"
    assert redactor.text("(sk-abcdefghijklmnop)") == "(sk-REDACTED)"
    assert re.fullmatch(r"ek_REDACTED", redactor.text("ek_abcdefghijkl"))


def test_the_documented_user_rules_work(tmp_path: Path) -> None:
    from .docs import code_blocks

    (code,) = code_blocks("redaction.md", "python")
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/redaction.md", "exec"), namespace)
    redactor = namespace["redactor"]
    assert isinstance(redactor, Redactor)
    event = {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "private"}]},
        "note": "acct-123456",
    }
    data = write(
        tmp_path / "c.jsonl",
        redactor,
        Open(conn=0, headers={"X-Internal-Token": "abc"}, query={"signature_v2": "s"}),
        Frame.from_message(0, 0.1, "client", json.dumps(event)),
        Frame.from_message(0, 0.2, "server", json.dumps({"type": "session.updated", "session": {"instructions": "secret prompt"}})),
    ).decode()
    for gone in ("private", "acct-123456", "abc", "secret prompt"):
        assert gone not in data
    conn = load(tmp_path / "c.jsonl").connections[0]
    assert json.loads(conn.frames[0].payload())["item"]["content"] == []
    assert conn.open.query == {"signature_v2": REDACTED}


# -- the recorder's quick paths agree with the full rules ---------------------------------

_PIECES = st.sampled_from([" ", "  ", "\n", "word", "sk-", "proj", "-", "_", "ek_", "%2D", "&#115;", "\\u0073", '"',
                           '{"api_key": "', "key", KEY[:5], KEY[5:12], KEY[12:], KEY[:9], KEY, "x" * 30])


@given(deltas=st.lists(st.lists(_PIECES, max_size=6).map("".join), min_size=1, max_size=12),
       encoding=st.sampled_from(ENCODINGS))
@settings(max_examples=300, deadline=None)
def test_the_quick_join_of_deltas_agrees_with_the_full_one(deltas: list[str], encoding: str) -> None:
    """A stream of text deltas through the recorder's quick path is written exactly as the
    full rules write it (the quick join keeps only the last word of a stream), and the
    deltas joined never spell the live key in any encoding."""
    shown = encode(KEY, encoding)
    deltas = [d.replace(KEY, shown) for d in deltas]
    quick = Redactor(secrets=[KEY])
    full = Redactor(secrets=[KEY], json_paths=["no.such.path"])  # user rules: the full path only
    written: list[tuple[str, str]] = []
    for n, delta in enumerate(deltas):
        message = json.dumps({"type": "response.output_text.delta", "event_id": f"e{n}", "response_id": "r",
                              "item_id": "i", "output_index": 0, "content_index": 0, "delta": delta})
        a, _ = quick.frame_from_message(0, float(n), "server", message.encode(), True)
        b, _ = full.frame_from_message(0, float(n), "server", message.encode(), True)
        written.append((a.event()["delta"], b.event()["delta"]))
    assert [a for a, _ in written] == [b for _, b in written]
    joined = "".join(a for a, _ in written)
    assert leaked(KEY, joined.encode()) is None, joined


AUDIO = bytes(range(256)) * 12


@given(offset=st.integers(0, len(AUDIO)), cut=st.integers(1, len(KEY) - 1), split=st.booleans(),
       field=st.sampled_from([("response.output_audio.delta", "delta"), ("input_audio_buffer.append", "audio")]),
       separators=st.sampled_from([(",", ":"), (", ", ": ")]))
@settings(max_examples=200, deadline=None)
def test_a_live_key_in_audio_bytes_is_zeroed_even_across_messages(
    offset: int, cut: int, split: bool, field: tuple[str, str], separators: tuple[str, str]
) -> None:
    """The key's bytes in the audio (its base64 at any alignment) are zeroed, the audio
    keeping its length; split across two messages of a stream, the second loses its part
    and the first keeps at most 7 bytes: the stream's decoded audio never holds the key."""
    pcm = AUDIO[:offset] + KEY.encode() + AUDIO[offset:]
    chunks = [pcm[: offset + cut], pcm[offset + cut :]] if split else [pcm]
    chunks = [c for c in chunks if c]
    redactor = Redactor(secrets=[KEY])
    kind, name = field
    decoded = b""
    for n, chunk in enumerate(chunks):
        event = {"type": kind, "event_id": f"e{n}", name: base64.b64encode(chunk).decode()}
        message = json.dumps(event, separators=separators)
        frame, _ = redactor.frame_from_message(0, float(n), "client", message.encode(), True)
        audio = base64.b64decode(frame.event()[name])
        assert len(audio) == len(chunk)
        decoded += audio
    assert leaked(KEY, decoded) is None
    assert len(decoded) == len(pcm)


# -- a hook that fails -------------------------------------------------------------------


def failing_hook(event: dict[str, object], direction: str) -> dict[str, object]:
    if event.get("type") == "response.done":
        raise ValueError(f"cannot handle {event.get('note')}")
    return event


@pytest.mark.parametrize(
    ("hook", "problem"),
    [
        (failing_hook, "raised ValueError: cannot handle REDACTED"),
        (lambda event, direction: None, "returned NoneType, not the event"),
        (lambda event, direction: {**event, "x": object()}, "returned an event that is not JSON"),
    ],
    ids=["raises", "returns-none", "returns-no-json"],
)
def test_a_failing_event_hook_is_an_error_naming_it_and_the_event(hook: object, problem: str) -> None:
    from rtreplay import EventHookError, RecordError

    redactor = Redactor(secrets=[KEY], event_hook=hook)  # type: ignore[arg-type]
    message = json.dumps({"type": "response.done", "event_id": "event_42", "note": KEY})
    with pytest.raises(EventHookError) as info:
        redactor.frame_from_message(3, 0.5, "server", message.encode(), True)
    error = info.value
    assert isinstance(error, RecordError)
    assert (error.conn, error.direction, error.event_type, error.event_id) == (3, "server", "response.done", "event_42")
    text = str(error)
    assert problem in text and "connection 3" in text and "'response.done'" in text and "event_42" in text
    assert "event_hook" in text and ("failing_hook" in text or "lambda" in text)
    assert KEY not in text  # the hook's message quoted the event: redacted like a log line
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)  # (unredacted)
    if hook is failing_hook:
        assert error.where is not None and error.where.endswith(f"test_redact.py:{failing_hook.__code__.co_firstlineno + 2}")
        assert isinstance(error.error, ValueError)


def test_a_failing_event_hook_stops_the_writer_after_what_it_passed(tmp_path: Path) -> None:
    from rtreplay import EventHookError

    writer = CassetteWriter(tmp_path / "c.jsonl", redactor=Redactor(event_hook=failing_hook))
    messages = [(0.1, json.dumps({"type": "response.created"}).encode(), True),
                (0.2, json.dumps({"type": "response.done"}).encode(), True),
                (0.3, json.dumps({"type": "response.created"}).encode(), True)]
    with pytest.raises(EventHookError) as info:
        writer.write_messages(0, "server", messages)
    assert info.value.recorded == 1
    lines = writer.partial_path.read_bytes().splitlines()
    assert len(lines) == 2 and b"response.created" in lines[1]  # the header, then what the hook passed
    writer.abort()


@pytest.mark.parametrize("message", [json.dumps(f" {KEY} "), json.dumps(f"x {KEY[:5]}") + "", json.dumps([f"{KEY}"])])
def test_a_frame_that_is_one_json_string_is_redacted_too(tmp_path: Path, message: str) -> None:
    # (Found by test_no_key_survives_into_a_written_cassette: '" <key> "' is JSON.)
    data = write(tmp_path / "c.jsonl", Redactor(secrets=[KEY]), Frame.from_message(0, 0.1, "client", message))
    assert KEY.encode() not in data


def _noise(size: int, seed: str) -> bytes:
    """``size`` random bytes, the same each run: binary frames are read as text, and
    random bytes hold escapes (``&lt``, ``\\n``, ``%41``) and runs between quotes,
    spaces and ``<``/``>`` every few dozen bytes."""
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_key_anywhere_in_a_big_binary_frame_is_found_in_every_encoding(encoding: str) -> None:
    # A large binary message is searched only where something could be (one scan over
    # its bytes): the key at odd offsets, glued to random bytes, after a space, at the end.
    shown = KEY_ENCODED[encoding].encode()
    noise = _noise(300_000, encoding)
    redactor = Redactor(secrets=[KEY, "az0123456789abcdef0123456789abcdef"])
    data = noise[:4097] + shown + noise[4097:150_001] + b" " + shown + noise[150_001:] + shown
    out = redactor.frame(Frame(0, 0.0, "server", binary=data)).binary
    assert isinstance(out, bytes)
    assert leaked(KEY, out) is None
    assert out[:4000] == data[:4000], "bytes far from the key keep their place and value"


@pytest.mark.parametrize("encoding", ["plain", "html-decimal", "html-every-other", "json-u", "percent"])
def test_a_key_nobody_presented_is_found_by_its_shape_in_a_big_binary_frame(encoding: str) -> None:
    shown = KEY_ENCODED[encoding].encode()
    noise = _noise(200_000, encoding)
    # (A key shape needs a boundary before it: no letter or digit.)
    out = Redactor().frame(Frame(0, 0.0, "server", binary=noise[:77_777] + b"\x00" + shown + noise[77_777:])).binary
    assert isinstance(out, bytes)
    assert leaked(KEY, out) is None


@pytest.mark.parametrize("shown", [
    # Only the first character escaped: what follows the escape reaches across a space
    # and quotes, which end a run of text, so the credential is in no run of its own.
    '&#111;pen "sesame" 1234&#x21;',
    '\\u006fpen "sesame" 1234!',
    'open "sesame" 1234&#x21;',
    '%6Fpen%20%22sesame%22%201234!',
])
def test_a_credential_with_spaces_and_quotes_is_found_across_runs_of_a_big_binary_frame(shown: str) -> None:
    secret = 'open "sesame" 1234!'
    redactor = Redactor(secrets=[secret])
    noise = _noise(100_000, shown)
    data = noise[:50_001] + b" xx " + shown.encode() + b" yy " + noise[50_001:]
    out = redactor.frame(Frame(0, 0.0, "server", binary=data)).binary
    assert isinstance(out, bytes)
    assert leaked(secret, out) is None, out[50_000:50_100]


@pytest.mark.parametrize("shown", [
    '%6Fpen "sesame" 1234!',  # one character percent-escaped; the space and quotes not
    'open "sesame" 1234%21',
    'open "ses%61me" 1234!',
    'open+"sesame"+1234%21',  # a query string's + for the space
])
def test_a_credential_with_spaces_and_quotes_partly_percent_encoded_is_found(shown: str) -> None:
    secret = 'open "sesame" 1234!'
    redactor = Redactor(secrets=[secret])
    for text in (f"password: {shown} end", shown):
        out = redactor.text(text)
        assert leaked(secret, out.encode()) is None, out
    out_frame = redactor.frame(Frame(0, 0.0, "server", text=f'{{"type":"x","note":{json.dumps(shown)}}}')).text
    assert out_frame is not None and leaked(secret, out_frame.encode()) is None, out_frame


@pytest.mark.parametrize("size", [100, 100_000])
def test_a_binary_frame_with_escaped_surrogates_beside_a_key_is_redacted(size: int) -> None:
    # JSON writes an emoji as two escapes (\ud83d\ude00): decoded alone, each is a lone
    # surrogate, which the redacted bytes hold again as they were.
    noise = _noise(size, "emoji")
    escaped = "\\ud83d\\ude00" + encode(KEY, "json-u-every-other")
    data = noise + b' {"text":"' + escaped.encode() + b'"} ' + noise
    out = Redactor(secrets=[KEY]).frame(Frame(0, 0.0, "client", binary=data)).binary
    assert isinstance(out, bytes)
    assert leaked(KEY, out) is None
    assert out.startswith(noise) and out.endswith(noise)


def test_a_big_binary_frame_without_secrets_keeps_its_bytes() -> None:
    data = _noise(1 << 20, "clean")
    frame = Frame(0, 0.0, "server", binary=data)
    assert Redactor(secrets=[KEY]).frame(frame) is frame


@pytest.mark.parametrize("gap", range(0, 48, 3))
def test_a_credential_spelt_after_an_escape_near_another_is_found_in_a_big_binary_frame(gap: int) -> None:
    # Two escapes close together: the credential spelt from the second reaches further
    # than the first one's window, so the window grows with it.
    secret = 'open "sesame" 1234!'
    noise = _noise(8_000, "near").translate(None, b"&\\%")
    data = noise + b" &amp;" + b"x" * gap + b" \\u006fpen \"sesame\" 1234! " + noise
    out = Redactor(secrets=[secret]).frame(Frame(0, 0.0, "server", binary=data)).binary
    assert isinstance(out, bytes)
    assert leaked(secret, out) is None


_BINARY_TOKENS = st.sampled_from(
    [b"&amp;", b"&lt;xx ", b" ", b"x", b"xxxxxxxx", b'"', b"\\n", b"%41", b"<", b"\\u0041", b"sk-"]
)


@given(
    before=st.lists(_BINARY_TOKENS, max_size=40).map(b"".join),
    after=st.lists(_BINARY_TOKENS, max_size=40).map(b"".join),
    secret_escape=st.sampled_from(
        [('open "sesame" 1234!', e) for e in ("&#{};", "\\u{:04x}", "%{:02X}", "{}")]
        + [(KEY, e) for e in ("&#{};", "\\u{:04x}", "%{:02X}", "{}")]
    ),
    at=st.integers(0, 40),
    noise=st.binary(min_size=0, max_size=300),
)
@settings(max_examples=200, deadline=None)
def test_a_big_binary_frame_loses_nothing_the_text_rules_find(
    before: bytes, after: bytes, secret_escape: tuple[str, str], at: int, noise: bytes
) -> None:
    # A large binary frame goes through the text rules only where they could change
    # something: what they find in the whole frame read as text, it finds too.
    secret, escape = secret_escape
    at %= len(secret)
    char = secret[at]
    escaped = escape.format(ord(char) if escape != "{}" else char)
    spelt = (secret[:at] + escaped + secret[at + 1 :]).encode()
    data = _noise(5_000, "loses-nothing").translate(None, b"&\\%") + noise + b" " + before + spelt + after + b" " + noise
    redactor = Redactor(secrets=[secret])
    whole = redactor.text(data.decode("utf-8", "surrogateescape")).encode("utf-8", "rtreplay.binary")
    out = redactor.frame(Frame(0, 0.0, "server", binary=data)).binary
    assert isinstance(out, bytes)
    assert leaked(secret, whole) is None
    assert leaked(secret, out) is None
