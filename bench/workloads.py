"""The traffic the benchmarks replay and relay, generated on the spot and never committed.

Every cassette here is written with :class:`rtreplay.codec.CassetteWriter`, the writer a
recording uses, so the files are exactly what rtreplay reads in real life. Payloads are
deterministic (seeded) and shaped like GA Realtime events: ~300 B text deltas and ~6.5 KB
base64 audio deltas (100 ms of 24 kHz PCM16 each).
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from pathlib import Path

import msgspec
from rtreplay.cassette import Close, Frame, Open
from rtreplay.codec import CassetteWriter

AUDIO_CHUNK_BYTES = 4800  # 100 ms of 24 kHz mono PCM16
SMALL_EVENT_BYTES = 300
_encode = msgspec.json.encode


def _audio_pool(seed: int = 7, size: int = 64) -> list[str]:
    rng = random.Random(seed)
    return [base64.b64encode(rng.randbytes(AUDIO_CHUNK_BYTES)).decode() for _ in range(size)]


def small_events(n: int, seed: int = 1) -> list[bytes]:
    """``n`` text-delta events of about 300 bytes, each with its own event_id."""
    rng = random.Random(seed)
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "realtime",
        "audio",
        "streams",
        "in",
    ]
    out = []
    for i in range(n):
        event = {
            "type": "response.output_text.delta",
            "event_id": f"event_{i:012d}",
            "response_id": "resp_CBenchmark0000000001",
            "item_id": "item_CBenchmark0000000002",
            "output_index": 0,
            "content_index": 0,
            "delta": "",
        }
        room = SMALL_EVENT_BYTES - len(_encode(event))
        text = ""
        while len(text) < room:
            text += rng.choice(words) + " "
        event["delta"] = text[:room]
        out.append(_encode(event))
    return out


def audio_deltas(n: int, seed: int = 2) -> list[bytes]:
    """``n`` ``response.output_audio.delta`` events of about 6.5 KB (base64 audio)."""
    pool = _audio_pool(seed)
    return [
        _encode(
            {
                "type": "response.output_audio.delta",
                "event_id": f"event_{i:012d}",
                "response_id": "resp_CBenchmark0000000001",
                "item_id": "item_CBenchmark0000000002",
                "output_index": 0,
                "content_index": 0,
                "delta": pool[i % len(pool)],
            }
        )
        for i in range(n)
    ]


def audio_appends(n: int, seed: int = 3) -> list[bytes]:
    """``n`` ``input_audio_buffer.append`` events of about 6.5 KB: a client's audio."""
    pool = _audio_pool(seed)
    return [
        _encode({"type": "input_audio_buffer.append", "event_id": f"evt_{i:012d}", "audio": pool[i % len(pool)]})
        for i in range(n)
    ]


def _open(conn: int = 0) -> Open:
    # With its start time, as every recording has it: the replay then moves time fields.
    return Open(conn, query={"model": "gpt-realtime"}, headers={"authorization": "Bearer REDACTED"},
                started="2026-11-20T09:00:00.000Z")


def write_server_stream(path: Path, payloads: list[bytes]) -> Path:
    """One connection whose server sends ``payloads`` on connect, then closes."""
    with CassetteWriter(path) as w:
        w.write(_open(), flush=False)
        t = 0.0
        batch = []
        for p in payloads:
            t += 0.0001
            batch.append(Frame(0, round(t, 6), "server", json=msgspec.Raw(p)))
            if len(batch) >= 2000:
                w.write_many(batch)
                batch.clear()
        batch.append(Close(0, round(t + 0.001, 6), 1000, "", "server"))
        w.write_many(batch)
    return path


def _ev(**fields: object) -> bytes:
    return _encode(fields)


SESSION_CREATED = _ev(
    type="session.created",
    event_id="event_0001",
    session={
        "type": "realtime",
        "id": "sess_Bench",
        "model": "gpt-realtime",
        "output_modalities": ["audio"],
    },
)
SESSION_UPDATE = _ev(
    type="session.update", session={"type": "realtime", "instructions": "Be brief."}
)
SESSION_UPDATED = _ev(
    type="session.updated",
    event_id="event_0002",
    session={"type": "realtime", "id": "sess_Bench", "instructions": "Be brief."},
)


def write_exchange(path: Path) -> Path:
    """The smallest useful session: session.created, one session.update and its answer."""
    with CassetteWriter(path) as w:
        w.write_many(
            [
                _open(),
                Frame(0, 0.0, "server", json=msgspec.Raw(SESSION_CREATED)),
                Frame(0, 0.01, "client", json=msgspec.Raw(SESSION_UPDATE)),
                Frame(0, 0.05, "server", json=msgspec.Raw(SESSION_UPDATED)),
                Close(0, 0.06, 1000, "", "client"),
            ]
        )
    return path


def write_text_session(path: Path, turns: int = 3, deltas: int = 30) -> Path:
    """A text conversation: session setup, then ``turns`` responses of ``deltas`` ~300 B deltas."""
    records: list[Frame | Open | Close] = [_open()]
    t = 0.0

    def add(dir: str, payload: bytes) -> None:
        nonlocal t
        t += 0.001
        records.append(Frame(0, round(t, 6), dir, json=msgspec.Raw(payload)))  # type: ignore[arg-type]

    add("server", SESSION_CREATED)
    add("client", SESSION_UPDATE)
    add("server", SESSION_UPDATED)
    text = small_events(turns * deltas)
    for turn in range(turns):
        rid = f"resp_T{turn:04d}"
        add(
            "client",
            _ev(
                type="conversation.item.create",
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": f"Question number {turn}?"}],
                },
            ),
        )
        add("client", _ev(type="response.create"))
        add(
            "server",
            _ev(
                type="response.created",
                event_id=f"event_c{turn}",
                response={"id": rid, "status": "in_progress"},
            ),
        )
        for d in text[turn * deltas : (turn + 1) * deltas]:
            add("server", d)
        add(
            "server",
            _ev(
                type="response.done",
                event_id=f"event_d{turn}",
                response={"id": rid, "status": "completed"},
            ),
        )
    records.append(Close(0, round(t + 0.01, 6), 1000, "", "client"))
    with CassetteWriter(path) as w:
        w.write_many(records)
    return path


def write_audio_hour(
    path: Path, target_bytes: int, turn_seconds: int = 10
) -> tuple[Path, int, float]:
    """Two-way audio until the file reaches ``target_bytes``; returns (path, size, seconds of audio each way).

    Each turn the client streams ``turn_seconds`` of microphone audio in 100 ms appends,
    server VAD commits it, and the model answers with as much audio in 100 ms deltas: what
    a voice agent exchanges in an hour at 24 kHz PCM16 is about 500 MB of JSON Lines.
    """
    pool = _audio_pool(11, 128)
    chunks = turn_seconds * 10
    t = 0.0
    turn = 0
    with CassetteWriter(path) as w:
        w.write(_open(), flush=False)
        w.write(Frame(0, 0.0, "server", json=msgspec.Raw(SESSION_CREATED)), flush=False)
        while w.bytes_written < target_bytes:
            batch: list[Frame] = []
            item = f"item_U{turn:05d}"
            rid = f"resp_R{turn:05d}"
            for k in range(chunks):
                t += 0.1
                audio = pool[(turn * chunks + k) % len(pool)]
                batch.append(
                    Frame(
                        0,
                        round(t, 6),
                        "client",
                        json=msgspec.Raw(
                            b'{"type":"input_audio_buffer.append","audio":"'
                            + audio.encode()
                            + b'"}'
                        ),
                    )
                )
            server = [
                _ev(
                    type="input_audio_buffer.speech_started",
                    event_id=f"event_s{turn}",
                    audio_start_ms=0,
                    item_id=item,
                ),
                _ev(
                    type="input_audio_buffer.speech_stopped",
                    event_id=f"event_p{turn}",
                    audio_end_ms=turn_seconds * 1000,
                    item_id=item,
                ),
                _ev(
                    type="input_audio_buffer.committed",
                    event_id=f"event_m{turn}",
                    previous_item_id=None,
                    item_id=item,
                ),
                _ev(
                    type="response.created",
                    event_id=f"event_c{turn}",
                    response={"id": rid, "status": "in_progress"},
                ),
            ]
            for k in range(chunks):
                audio = pool[(turn * chunks + k + 1) % len(pool)]
                server.append(
                    b'{"type":"response.output_audio.delta","event_id":"event_a%d_%d","response_id":"%s",'
                    b'"item_id":"item_A%05d","output_index":0,"content_index":0,"delta":"'
                    % (turn, k, rid.encode(), turn)
                    + audio.encode()
                    + b'"}'
                )
            server.append(
                _ev(
                    type="response.done",
                    event_id=f"event_d{turn}",
                    response={"id": rid, "status": "completed"},
                )
            )
            for payload in server:
                t += 0.001
                batch.append(Frame(0, round(t, 6), "server", json=msgspec.Raw(payload)))
            t += turn_seconds * 0.1
            w.write_many(batch)
            turn += 1
        w.write(Close(0, round(t + 0.1, 6), 1000, "", "client"))
    # Seconds of audio each way: the client's microphone and the model's voice.
    return path, path.stat().st_size, float(turn * turn_seconds)


class _Line(msgspec.Struct):
    """Just what a client needs from a record to drive a replay."""

    kind: str
    conn: int = 0
    dir: str | None = None
    json: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_line_decoder = msgspec.json.Decoder(_Line)


def plan(path: Path, conn: int = 0, send_batch: int = 200) -> Iterator[tuple[str, bytes, int]]:
    """How a client replays connection ``conn``: ("send", frames, n) and ("recv", b"", n) steps.

    Streams through the file, so the plan of a 500 MB cassette costs one batch of memory.
    Runs of client frames are sent as pre-masked batches; runs of server frames are awaited
    by count.
    """
    from wsclient import text_frame

    sends: list[bytes] = []
    recv = 0
    with open(path, "rb") as f:
        for line in f:
            rec = _line_decoder.decode(line)
            if rec.kind != "frame" or rec.conn != conn or rec.json is msgspec.UNSET:
                continue
            if rec.dir == "client":
                if recv:
                    yield ("recv", b"", recv)
                    recv = 0
                sends.append(text_frame(bytes(rec.json)))
                if len(sends) >= send_batch:
                    yield ("send", b"".join(sends), len(sends))
                    sends = []
            else:
                if sends:
                    yield ("send", b"".join(sends), len(sends))
                    sends = []
                recv += 1
    if sends:
        yield ("send", b"".join(sends), len(sends))
    if recv:
        yield ("recv", b"", recv)
