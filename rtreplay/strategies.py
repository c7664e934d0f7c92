"""Hypothesis strategies over Realtime sessions: a recording becomes a family of sessions.

A single recording tests one point of what varies between two runs of the same
conversation: how text and audio are cut into deltas, the timing, where independent events
interleave, an error or a dropped socket in the middle. :func:`replays` draws the *variants*
of a recording that a correct client must handle the same way, and hypothesis searches them
for the one that breaks your client, then shrinks it back towards the recording;
:func:`sessions` draws whole synthetic sessions (written by
:class:`~rtreplay.scripted.ScriptedSession`) for a client that has no recording yet.

What a variant changes, per connection (the client's side never changes, so a variant
replays against the same client events as the recording):

- **deltas re-chunked**: each run of streamed deltas (text, audio transcript, function call
  arguments, audio; :data:`rtreplay.protocol.STREAMS`) between two client events or other
  server events is cut into other pieces: the concatenated text and the audio bytes stay
  the same, the ``*.done`` events are unchanged; audio is cut on 6-byte boundaries of the
  decoded audio (whole PCM16 samples, whole base64 quanta, so each delta's base64 is
  padding-free and the concatenated base64 is the base64 of the whole);
- **independent events moved**: the events the endpoint's profile calls asynchronous
  (:attr:`rtreplay.protocol.Profile.asynchronous`: ``rate_limits.updated``, input audio
  transcription) go elsewhere, only where the cause table
  (:class:`rtreplay.protocol.CauseTracker`) gives every server event the same cause as in
  the recording, after the events that introduced the IDs they carry, and in their own
  order;
- **timing jittered**: the gaps between frames stretched or shrunk (up to 4x);
- **faults** (only when asked, ``faults=[...]``): drawn from the given set
  (:mod:`rtreplay.faults`'s ``WHAT`` vocabulary) at drawn places.

Every variant is a :class:`Variant`: a :class:`~rtreplay.cassette.Cassette` (save it with
:func:`rtreplay.save`, replay it with :class:`~rtreplay.server.ReplayServer`, the pytest
plugin's ``realtime_replay``) with its ``faults`` to inject; its ``repr`` is the
:func:`variant` call that rebuilds it, which is what hypothesis prints for a falsifying
example. The simplest draw is the recording itself, so shrinking ends at the smallest change
that still fails. Every variant passes ``rtreplay validate``.

This is the only module of rtreplay that imports hypothesis.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import hashlib
import itertools
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context, note

from .cassette import Cassette, Close, Connection, Frame
from .codec import load
from .faults import Fault, parse_faults
from .protocol import (
    REALTIME,
    STREAMS,
    CauseTracker,
    Profile,
    Requirement,
    ServerInfo,
    Stream,
    profile_for,
    server_info,
)
from .replay import ReplaySession
from .scripted import ERRORS, ScriptedCassette, ScriptedResponse, ScriptedSession, split_text

__all__ = [
    "KINDS",
    "Variant",
    "replays",
    "requirements",
    "sessions",
    "variant",
]

#: Audio is cut on multiples of this many decoded bytes: whole 16-bit samples and whole
#: base64 quanta (3 bytes), so each piece's base64 needs no padding.
AUDIO_UNIT = 6
#: How far (in frames) an independent event may move from where it was recorded.
MAX_MOVE = 48
#: How many frames after the places an event may go are checked for a changed cause too.
WINDOW_MARGIN = 16
#: At most this many cuts in one re-chunked stream.
MAX_CUTS = 16
#: The kinds of turn :func:`sessions` writes.
KINDS = ("text", "audio", "function", "error", "vad", "cancel")
#: Gaps between frames are scaled by up to this factor either way.
JITTER = 4.0

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

Chunks = Mapping[tuple[int, int], Sequence[Sequence[int] | None]]
Moves = Mapping[tuple[int, int], int]
Jitter = Mapping[int, tuple[float, int]]


# -- the recording, read once ------------------------------------------------------------------


@dataclass
class _Run:
    """One stream's deltas inside a segment: the frames, their pieces, the whole content."""

    stream: Stream
    frames: list[int]
    sizes: list[int]  # each frame's piece, in characters (text) or bytes (audio)
    content: str | bytes

    @property
    def unit(self) -> int:
        return AUDIO_UNIT if self.stream.content == "audio" else 1


@dataclass
class _Segment:
    """Deltas of one or more streams, with no client event and no other server event
    between them (independent events aside): what one re-chunking may recut."""

    first: int  # frame index of its first delta
    runs: list[_Run]


@dataclass
class _Movable:
    """An independent event, the places it may go (frame indices it may go before; the
    connection's length: the end), and the group whose order it keeps."""

    index: int
    slots: list[int]
    group: tuple[Any, ...]


@dataclass
class _Conn:
    """One recorded connection as the strategies read it."""

    connection: Connection
    profile: Profile
    events: list[Any]  # each frame's decoded JSON (None: not JSON)
    infos: list[ServerInfo | None]  # server frames' view (None for client frames)
    segments: list[_Segment] = field(default_factory=list)
    movables: list[_Movable] = field(default_factory=list)
    requirements: list[Requirement] = field(default_factory=list)

    @property
    def frames(self) -> list[Frame]:
        return self.connection.frames


class _Source:
    """A cassette read for drawing variants: segments, independent events, causes."""

    def __init__(self, cassette: Cassette, name: str) -> None:
        self.cassette = cassette
        self.name = name
        self.conns = [_read(c) for c in cassette.connections]

    def segment(self, conn: int, first: int) -> _Segment:
        for seg in self.conns[conn].segments:
            if seg.first == first:
                return seg
        raise ValueError(f"connection {conn} has no run of deltas starting at frame {first}")


def _event(frame: Frame) -> Any:
    if frame.json is msgspec.UNSET:
        return None
    try:
        return _decoder.decode(frame.payload_bytes())
    except msgspec.DecodeError:
        return None


def _kind(event: Any) -> str | None:
    kind = event.get("type") if isinstance(event, dict) else None
    return kind if isinstance(kind, str) else None


def _read(connection: Connection) -> _Conn:
    profile = profile_for(connection.open.path, connection.open.query) or REALTIME
    events = [_event(f) for f in connection.frames]
    infos = [server_info(f.payload_bytes()) if f.dir == "server" else None for f in connection.frames]
    c = _Conn(connection, profile, events, infos)
    c.requirements = requirements(connection, order=None, profile=profile, infos=infos, events=events)
    c.segments = _segments(c)
    c.movables = _movables(c)
    return c


def _stream_of(c: _Conn, i: int) -> tuple[Stream, tuple[Any, ...], str | bytes] | None:
    """The stream a frame is a delta of, its key, and its piece (``None``: not a delta)."""
    frame, event = c.frames[i], c.events[i]
    kind = _kind(event)
    if frame.dir != "server" or kind is None or kind in c.profile.asynchronous:
        return None
    stream = STREAMS.get(kind)
    if stream is None:
        return None
    piece = event.get(stream.field)
    if not isinstance(piece, str):
        return None
    key = (kind, *(event.get(k) for k in stream.key))
    if stream.content == "audio":
        try:
            return stream, key, base64.b64decode(piece, validate=True)
        except (binascii.Error, ValueError):
            return None
    return stream, key, piece


def _segments(c: _Conn) -> list[_Segment]:
    segments: list[_Segment] = []
    current: _Segment | None = None
    runs: dict[tuple[Any, ...], _Run] = {}
    for i, frame in enumerate(c.frames):
        if frame.dir == "server" and _kind(c.events[i]) in c.profile.asynchronous:
            continue  # independent: it moves on its own, the deltas around it stay one run
        found = _stream_of(c, i)
        if found is None:
            current = None
            continue
        stream, key, piece = found
        if current is None:
            current = _Segment(i, [])
            segments.append(current)
            runs = {}
        run = runs.get(key)
        if run is None:
            run = runs[key] = _Run(stream, [], [], piece[:0])
            current.runs.append(run)
        run.frames.append(i)
        run.sizes.append(len(piece))
        run.content += piece  # type: ignore[operator]
    # A run of one non-empty piece of text can still be cut; nothing else is worth a draw.
    return [s for s in segments if any(len(r.content) > r.unit for r in s.runs)]


def requirements(
    connection: Connection,
    order: Sequence[int] | None = None,
    *,
    profile: Profile | None = None,
    infos: Sequence[ServerInfo | None] | None = None,
    events: Sequence[Any] | None = None,
) -> list[Requirement]:
    """The :class:`~rtreplay.protocol.Requirement` of each server frame of ``connection``
    (in the order of its frames), as the replay computes it; with ``order`` (frame indices),
    of the frames taken in that order instead (the requirements listed in that order)."""
    profile = profile or profile_for(connection.open.path, connection.open.query) or REALTIME
    frames = connection.frames
    if events is None:
        events = [_event(f) for f in frames]
    if infos is None:
        infos = [server_info(f.payload_bytes()) if f.dir == "server" else None for f in frames]
    tracker = profile.causes()
    client = 0
    out: list[Requirement] = []
    for i in order if order is not None else range(len(frames)):
        if frames[i].dir == "client":
            tracker.client(client, events[i])
            client += 1
        else:
            info = infos[i]
            out.append(tracker.server(info if info is not None else ServerInfo()))
    return out


def _movables(c: _Conn) -> list[_Movable]:
    """The independent events and the places each may go without changing any cause."""
    frames = c.frames
    n = len(frames)
    first_carrier: dict[str, int] = {}
    for i, info in enumerate(c.infos):
        if info is not None:
            for v in info.ids:
                first_carrier.setdefault(v, i)
    original = {j: r for j, r in zip((j for j, f in enumerate(frames) if f.dir == "server"), c.requirements, strict=True)}
    client_positions = [i for i, f in enumerate(frames) if f.dir == "client"]
    candidates: list[tuple[int, int, int]] = []  # (lo, index, hi)
    for i, frame in enumerate(frames):
        kind = _kind(c.events[i])
        if frame.dir != "server" or kind is None or kind not in c.profile.asynchronous:
            continue
        info = c.infos[i]
        assert info is not None
        lo = max(0, i - MAX_MOVE)
        for v in info.ids:
            if first_carrier.get(v, i) < i:
                lo = max(lo, first_carrier[v] + 1)
        candidates.append((lo, i, min(n, i + MAX_MOVE)))
    # One tracker walks the connection once; each event's window starts from a copy of it
    # (windows taken in the order they start).
    tracker = c.profile.causes()
    walked = clients = 0
    found: dict[int, list[int]] = {}
    for lo, i, hi in sorted(candidates):
        while walked < lo:
            clients += _feed(c, tracker, walked, clients)
            walked += 1
        window = _Window(c, tracker, lo, min(n, hi + 1 + WINDOW_MARGIN), clients, original, client_positions)
        found[i] = [s for s in range(lo, hi + 1) if s in (i, i + 1) or window.keeps_causes(i, s)]
    out: list[_Movable] = []
    for _, i, _ in candidates:
        if len(found[i]) > 1:
            kind, info = _kind(c.events[i]), c.infos[i]
            assert kind is not None and info is not None
            group = (kind.rsplit(".", 1)[0], info.item_id) if info.item_id else (kind, i)
            out.append(_Movable(i, found[i], group))
    return out


def _feed(c: _Conn, tracker: CauseTracker, j: int, clients: int) -> int:
    """Feed frame ``j`` to ``tracker`` (``clients``: client events before it); 1 for a client frame."""
    if c.frames[j].dir == "client":
        tracker.client(clients, c.events[j])
        return 1
    info = c.infos[j]
    tracker.server(info if info is not None else ServerInfo())
    return 0


class _Window:
    """The frames an independent event may move among, and the cause tracker as it stands
    where they begin: a move changes the order of these frames only, so only their causes
    (and a margin after them) are computed again for each place it may go."""

    def __init__(
        self,
        c: _Conn,
        tracker: CauseTracker,
        start: int,
        end: int,
        clients: int,
        original: Mapping[int, Requirement],
        client_positions: Sequence[int],
    ) -> None:
        self.c, self.start, self.end, self.clients = c, start, end, clients
        self.original, self.client_positions = original, client_positions
        self.tracker: CauseTracker = tracker.copy()

    def keeps_causes(self, moved: int, slot: int) -> bool:
        rest = [j for j in range(self.start, self.end) if j != moved]
        at = bisect.bisect_left(rest, slot)
        order = [*rest[:at], moved, *rest[at:]]
        tracker = self.tracker.copy()
        clients = self.clients
        position = {j: k for k, j in enumerate(order)}
        frames = self.c.frames
        for j in order:
            if frames[j].dir == "client":
                clients += _feed(self.c, tracker, j, clients)
                continue
            info = self.c.infos[j]
            req = tracker.server(info if info is not None else ServerInfo())
            before = self.original[j]
            if (req.after, req.every, req.also) != (before.after, before.every, before.also):
                return False
            # What it waits for must come before it: nothing recorded after it may release
            # it (client events before the window come before it whatever the order).
            waits = range(req.after + 1) if req.every else req.waits_for()
            for k in waits:
                if 0 <= k < len(self.client_positions):
                    at_k = self.client_positions[k]
                    if at_k >= self.start and position.get(at_k, len(order)) > position[j]:
                        return False
        return True


# -- a variant ---------------------------------------------------------------------------------


@dataclass(repr=False)
class Variant(Cassette):
    """A variant of a recording (:func:`variant`, :func:`replays`): a
    :class:`~rtreplay.cassette.Cassette` plus the ``faults`` to inject when it is replayed
    (give them to ``ReplayServer(variant, faults=variant.faults)``; the plugin's
    ``realtime_replay`` does). ``changes`` says what differs from the recording, in words;
    its ``repr`` is the :func:`variant` call that rebuilds it.

    A variant of a scripted session (:class:`~rtreplay.scripted.ScriptedCassette`) keeps
    what the session knew: its ``script``, the ``responses`` it holds (what each said: the
    edits recut and move events, they change no content) and the ``errors`` (codes) the
    server sent; for a recording these are empty."""

    faults: tuple[Fault, ...] = ()
    changes: tuple[str, ...] = ()
    call: str = ""
    script: str = ""
    responses: list[ScriptedResponse] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return self.call or "Variant()"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # hypothesis (and IPython) print a dataclass field by field, unless told this way.
        p.text(repr(self))


def _source_name(cassette: str | os.PathLike[str] | Cassette) -> str:
    if isinstance(cassette, ScriptedCassette):
        # The variant's repr starts with the script that defines s (see _variant).
        return "s.cassette()" if cassette.script.endswith("\ns.cassette()") else "<scripted session>"
    if isinstance(cassette, Variant):
        return "<variant>"
    if isinstance(cassette, Cassette):
        return repr(cassette.path) if cassette.path is not None else "<cassette>"
    return repr(os.fspath(cassette))


# Files read for strategies, by path, modification time and size: variant() calls (what a
# failing example's repr runs) read each file once.
_sources: dict[str, _Source] = {}


def _source(cassette: str | os.PathLike[str] | Cassette) -> _Source:
    if isinstance(cassette, Cassette):
        # Not kept: a test may make thousands (sessions() examples); replays() reads it once.
        return _Source(cassette, _source_name(cassette))
    path = os.fspath(cassette)
    try:
        stat = os.stat(path)
    except OSError:
        return _Source(load(path), _source_name(path))  # load() says what is wrong, as a CassetteError
    key = f"{os.path.abspath(path)}:{stat.st_mtime_ns}:{stat.st_size}"
    found = _sources.get(key)
    if found is None:
        found = _sources[key] = _Source(load(path), _source_name(path))
    return found


def variant(
    cassette: str | os.PathLike[str] | Cassette,
    *,
    chunks: Chunks | None = None,
    moves: Moves | None = None,
    jitter: Jitter | None = None,
    faults: Iterable[Fault | str] = (),
) -> Variant:
    """The variant of ``cassette`` (a path or a :class:`~rtreplay.cassette.Cassette`) these
    edits make; what a :func:`replays` example's ``repr`` calls.

    - ``chunks``: ``{(conn, frame): [sizes or None, ...]}``: the run of deltas starting at
      frame ``frame`` (0-based among connection ``conn``'s frames) recut, per stream in the
      order the run first has them, into pieces of these sizes (characters of text, bytes
      of audio: multiples of 6 but the last; they add up to the stream's content), ``None``
      leaving a stream as it was;
    - ``moves``: ``{(conn, frame): before}``: an independent event put before frame
      ``before`` (the connection's frame count: at the end);
    - ``jitter``: ``{conn: (amount, seed)}``: each gap between frames scaled by
      ``4 ** uniform(-amount, amount)`` (``amount`` from 0 to 1), drawn from ``seed``;
    - ``faults``: :class:`~rtreplay.faults.Fault` values or strings, for the replay.

    Raises :class:`ValueError` for an edit the recording does not allow (no such run, sizes
    that do not add up, a move the cause table forbids).
    """
    return _variant(_source(cassette), chunks, moves, jitter, parse_faults(list(faults)))


def _variant(
    src: _Source,
    chunks: Chunks | None,
    moves: Moves | None,
    jitter: Jitter | None,
    fault_list: tuple[Fault, ...],
) -> Variant:
    chunks = dict(chunks or {})
    moves = dict(moves or {})
    jitter = dict(jitter or {})
    connections: list[Connection] = []
    changes: list[str] = []
    for ci, c in enumerate(src.conns):
        mine_chunks = {first: sizes for (k, first), sizes in chunks.items() if k == ci}
        mine_moves = {i: slot for (k, i), slot in moves.items() if k == ci}
        connections.append(_build(c, ci, mine_chunks, mine_moves, jitter.get(ci), changes))
    for key in [*chunks, *moves]:
        if not 0 <= key[0] < len(src.conns):
            raise ValueError(f"the cassette has no connection {key[0]}")
    for f in fault_list:
        changes.append(f"fault {f}")
    for ci, (amount, _) in jitter.items():
        if amount:
            changes.append(f"connection {ci}: timing jittered (amount {amount:g})")
    args = [src.name]
    if chunks:
        args.append(f"chunks={ {k: [list(s) if s is not None else None for s in v] for k, v in chunks.items()}!r}")
    if moves:
        args.append(f"moves={moves!r}")
    if jitter:
        args.append(f"jitter={jitter!r}")
    if fault_list:
        args.append(f"faults={[str(f) for f in fault_list]!r}")
    call = f"variant({', '.join(args)})"
    source = src.cassette
    script = source.script if isinstance(source, (ScriptedCassette, Variant)) else ""
    if isinstance(source, ScriptedCassette) and script.endswith("\ns.cassette()"):
        # The script that writes the session, then the variant of it: code that runs.
        call = f"{script.removesuffix('s.cassette()')}{call}"
    return Variant(
        header=src.cassette.header,
        connections=connections,
        path=None,
        warnings=list(src.cassette.warnings),
        exchanges=list(src.cassette.exchanges),
        faults=fault_list,
        changes=tuple(changes),
        call=call,
        # What a scripted session knew, kept (a variant of a variant keeps it too).
        script=script,
        responses=copy.deepcopy(source.responses) if isinstance(source, (ScriptedCassette, Variant)) else [],
        errors=list(source.errors) if isinstance(source, (ScriptedCassette, Variant)) else [],
    )


def _derived_id(event_id: Any, n: int) -> Any:
    """A new ``event_id`` for the n-th extra piece of a delta, shaped like the API's."""
    if not isinstance(event_id, str):
        return event_id
    prefix, sep, body = event_id.partition("_")
    digest = hashlib.sha256(f"{event_id}/{n}".encode()).digest()
    tail = "".join(_BASE62[b % 62] for b in digest)
    if not sep:
        return f"{event_id}_{tail[:8]}"
    keep = body[:5]
    return f"{prefix}_{keep}{tail[: max(4, len(body) - len(keep))]}"


def _piece_frame(c: _Conn, origin: int, piece: str | bytes, n: int, t: float) -> Frame:
    event = dict(c.events[origin])
    stream = STREAMS[event["type"]]
    event[stream.field] = base64.b64encode(piece).decode() if isinstance(piece, bytes) else piece
    if n:
        event["event_id"] = _derived_id(event.get("event_id"), n)
    return Frame(c.frames[origin].conn, t, "server", json=msgspec.Raw(_encoder.encode(event)))


def _recut(c: _Conn, ci: int, seg: _Segment, sizes_list: Sequence[Sequence[int] | None], changes: list[str]) -> dict[int, list[tuple[str | bytes, int]]]:
    """New pieces per origin frame: (piece, n-th piece at that frame)."""
    if len(sizes_list) != len(seg.runs):
        raise ValueError(
            f"connection {ci}, frame {seg.first}: the run has {len(seg.runs)} streams, "
            f"not {len(sizes_list)} (give None for a stream left as it was)"
        )
    out: dict[int, list[tuple[str | bytes, int]]] = {}
    for run, sizes in zip(seg.runs, sizes_list, strict=True):
        if sizes is None:
            continue
        sizes = list(sizes)
        total = len(run.content)
        if any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in sizes) or sum(sizes) != total:
            raise ValueError(
                f"connection {ci}, frame {seg.first}: {run.stream.delta} pieces must be sizes > 0 "
                f"adding up to {total}, not {sizes}"
            )
        if any(s % run.unit for s in sizes[:-1]):
            raise ValueError(
                f"connection {ci}, frame {seg.first}: audio pieces are cut on multiples of "
                f"{AUDIO_UNIT} bytes (whole samples, whole base64), not {sizes}"
            )
        starts = [0]
        for s in run.sizes[:-1]:
            starts.append(starts[-1] + s)
        for f in run.frames:
            out.setdefault(f, [])
        pos = 0
        for s in sizes:
            origin = run.frames[max(0, bisect.bisect_right(starts, pos) - 1)]
            pieces = out[origin]
            pieces.append((run.content[pos : pos + s], len(pieces)))
            pos += s
        if sizes != run.sizes:
            what = run.stream.delta
            changes.append(f"connection {ci}: {len(run.sizes)} {what} at frame {seg.first} re-cut into {len(sizes)}")
    return out


def _build(c: _Conn, ci: int, chunks: Mapping[int, Sequence[Sequence[int] | None]], moves: Mapping[int, int], jitter: tuple[float, int] | None, changes: list[str]) -> Connection:
    frames = c.frames
    n = len(frames)
    pieces: dict[int, list[tuple[str | bytes, int]]] = {}
    for first, sizes_list in chunks.items():
        seg = next((s for s in c.segments if s.first == first), None)
        if seg is None:
            raise ValueError(f"connection {ci} has no run of deltas starting at frame {first}")
        pieces.update(_recut(c, ci, seg, sizes_list, changes))
    movable = {m.index: m for m in c.movables}
    before: dict[int, list[int]] = {}
    for i, slot in sorted(moves.items()):
        m = movable.get(i)
        if m is None:
            raise ValueError(f"connection {ci}, frame {i} is not an event that may move")
        if slot not in m.slots:
            raise ValueError(
                f"connection {ci}: frame {i} ({_kind(c.events[i])}) may go before frames "
                f"{m.slots} (where every server event keeps its cause), not {slot}"
            )
        if slot != i:
            before.setdefault(slot, []).append(i)
        if slot not in (i, i + 1):  # before the next frame: where it was, unless others went there
            target = f"before frame {slot} ({_kind(c.events[slot])})" if slot < n else "at the end"
            changes.append(f"connection {ci}: {_kind(c.events[i])} (frame {i}) moved {target}")
    _check_group_order(c, ci, moves)
    moved = {i for v in before.values() for i in v}
    out: list[tuple[Frame, float | None]] = []  # frame, its time (None: take the one before)
    for i, frame in enumerate(frames):
        out.extend((frames[j], None) for j in before.get(i, ()))
        if i in moved:
            continue
        if i in pieces:
            mine = pieces[i]
            t0 = frame.t
            t1 = frames[i + 1].t if i + 1 < n else t0
            for k, (piece, nth) in enumerate(mine):
                t = t0 + (t1 - t0) * k / len(mine)
                if len(mine) == 1 and _same_piece(c, i, piece):
                    out.append((frame, t))  # the recorded frame itself, byte for byte
                else:
                    out.append((_piece_frame(c, i, piece, nth, t), t))
            continue
        out.append((frame, frame.t))
    out.extend((frames[j], None) for j in before.get(n, ()))
    new_frames: list[Frame] = []
    last = 0.0
    times: list[float] = []
    for _, at in out:
        last = max(last, at if at is not None else last)
        times.append(last)
    if jitter is not None and jitter[0]:
        amount, seed = jitter
        if not 0 <= amount <= 1:
            raise ValueError(f"jitter amount is from 0 to 1, not {amount!r}")
        rng = random.Random(seed)
        prev_old = prev_new = 0.0
        jittered = []
        for t in times:
            prev_new += (t - prev_old) * JITTER ** rng.uniform(-amount, amount)
            prev_old = t
            jittered.append(prev_new)
        times = jittered
    for (frame, _), when in zip(out, times, strict=True):
        when = round(when, 6)
        new_frames.append(frame if frame.t == when else msgspec.structs.replace(frame, t=when))
    close = c.connection.close
    if close is not None and new_frames:
        end = new_frames[-1].t
        tail = close.t - (frames[-1].t if frames else 0.0)
        if close.t < end or tail != close.t - end:
            close = Close(close.conn, round(end + max(0.0, tail), 6), close.code, close.reason, close.by)
    return Connection(c.connection.open, new_frames, close, c.connection.reject)


def _same_piece(c: _Conn, i: int, piece: str | bytes) -> bool:
    event = c.events[i]
    stream = STREAMS[event["type"]]
    value = event[stream.field]
    if isinstance(piece, bytes):
        try:
            return binascii.a2b_base64(value) == piece
        except (binascii.Error, ValueError):
            return False
    return bool(value == piece)


def _place(index: int, slot: int) -> tuple[int, int, int]:
    """Where an event lands, as a sort key: moved before frame ``slot``, or left at ``index``
    (an event put before a frame goes before the frame itself, after the events of lower
    index put there too)."""
    if slot == index:
        return (index, 1, index)
    return (slot, 0, index)


def _check_group_order(c: _Conn, ci: int, moves: Mapping[int, int]) -> None:
    """Independent events of one group (one item's transcription) keep their order."""
    by_group: dict[tuple[Any, ...], list[tuple[int, tuple[int, int, int]]]] = {}
    for m in c.movables:
        by_group.setdefault(m.group, []).append((m.index, _place(m.index, moves.get(m.index, m.index))))
    for group, members in by_group.items():
        places = [p for _, p in sorted(members)]
        if places != sorted(places):
            raise ValueError(
                f"connection {ci}: the {group[0]} events at frames "
                f"{[i for i, _ in sorted(members)]} would change their order"
            )


# -- the strategies ----------------------------------------------------------------------------


_Template = tuple[str, Fault | None]  # (WHAT, or the fault itself when its place is given)


def _templates(faults: Iterable[Fault | str]) -> list[_Template]:
    out: list[_Template] = []
    for f in faults:
        if isinstance(f, Fault):
            out.append((str(f), f))
        elif isinstance(f, str) and "@" in f:
            out.append((f, Fault.parse(f)))
        elif isinstance(f, str):
            # WHAT alone: checked now, placed when drawn.
            Fault.parse(f"{f}@{'connect' if f.split(':')[0] == 'refuse' else 'open'}")
            out.append((f, None))
        else:
            raise ValueError(f"a fault is a Fault, 'WHAT' or 'WHAT@WHERE', not {f!r}")
    return out


@st.composite
def _sizes(draw: st.DrawFn, run: _Run) -> list[int] | None:
    """New piece sizes for a run (``None``: as recorded, the simplest)."""
    total = len(run.content)
    cuttable = (total - 1) // run.unit  # cut points strictly inside, on unit multiples
    how = draw(st.integers(0, 2 if cuttable else 1))
    if how == 0:
        return None
    if how == 1:
        return [total]  # one delta for the whole run
    cuts = sorted(draw(st.lists(st.integers(1, cuttable), min_size=1, max_size=min(MAX_CUTS, cuttable), unique=True)))
    points = [0, *(k * run.unit for k in cuts), total]
    return [b - a for a, b in itertools.pairwise(points)]


def _by_distance(slots: Sequence[int], index: int, floor: tuple[int, int, int] | None) -> list[int]:
    """The slots an event may take, nearest to where it was first (its own place first)."""
    allowed = [s for s in slots if floor is None or _place(index, s) >= floor]
    if not allowed and floor is not None:
        allowed = [floor[0]]  # right after the one of its group before it
    return sorted(allowed, key=lambda s: (abs(s - index), s))


def _fault_place(draw: st.DrawFn, v: Variant, what: str) -> Fault:
    conns = v.connections
    ci = draw(st.integers(0, len(conns) - 1)) if len(conns) > 1 else 0
    conn = ci if len(conns) > 1 else None
    kind = what.split(":")[0]
    if kind == "refuse":
        return Fault.parse(f"{what}@connect" + (f",conn={conn}" if conn is not None else ""))
    servers = [f for f in conns[ci].frames if f.dir == "server"]
    if not servers or draw(st.integers(0, 9)) == 9:
        place = "open"
    else:
        k = draw(st.integers(0, len(servers) - 1))
        types = [_kind(_event(f)) for f in servers[: k + 1]]
        kind_k = types[-1]
        if kind_k is None:
            place = "open"
        else:
            side = "before" if draw(st.booleans()) else "after"
            nth = types.count(kind_k)
            place = f"{side}:{kind_k}" + (f"#{nth}" if nth > 1 else "")
    return Fault.parse(f"{what}@{place}" + (f",conn={conn}" if conn is not None else ""))


def replays(
    cassette: str | os.PathLike[str] | Cassette,
    *,
    rechunk: bool = True,
    move: bool = True,
    jitter: bool = True,
    faults: Iterable[Fault | str] = (),
    max_faults: int = 1,
) -> st.SearchStrategy[Variant]:
    """A strategy of :class:`Variant` s of ``cassette`` (a path or a
    :class:`~rtreplay.cassette.Cassette`) that a correct client handles as it handles the
    recording (see the module docstring).

    ``rechunk``, ``move``, ``jitter`` switch each kind of change; ``faults``: what may go
    wrong, as :mod:`rtreplay.faults` writes it: ``"error:rate_limit_exceeded"``,
    ``"close:1011"``, ``"drop"``, ``"stall:2"``, ``"expire"``, ``"refuse:429"`` (placed at a
    drawn server event, or at ``open``; ``refuse`` at ``connect``), or a whole fault with
    its place (``"drop@after:response.created"``, a :class:`~rtreplay.faults.Fault`), drawn
    or not; at most ``max_faults`` per example. A variant with faults no longer replays
    against the same client events: a correct client handles it, not the same way.

    The cassette is read once, when the strategy is made: a missing or unreadable file
    raises :class:`~rtreplay.errors.CassetteError` there, a bad fault (or a placed one
    that the recording has no place for) :class:`ValueError`.
    """
    src = _source(cassette)
    templates = _templates(faults)
    if isinstance(max_faults, bool) or not isinstance(max_faults, int) or max_faults < 0:
        raise ValueError(f"max_faults is a number >= 0, not {max_faults!r}")
    placed = [f for _, f in templates if f is not None]
    if placed:
        # A placed fault the recording has no place for would fail every example that
        # draws it, each looking like a find: refuse it now, as the replay would.
        ReplaySession(src.cassette, faults=placed).close()

    @st.composite
    def draw_variant(draw: st.DrawFn) -> Variant:
        chunks: dict[tuple[int, int], list[list[int] | None]] = {}
        moves: dict[tuple[int, int], int] = {}
        jitters: dict[int, tuple[float, int]] = {}
        for ci, c in enumerate(src.conns):
            if rechunk:
                for seg in c.segments:
                    if draw(st.booleans()):
                        sizes = [draw(_sizes(run)) for run in seg.runs]
                        if any(x is not None for x in sizes):
                            chunks[(ci, seg.first)] = sizes
            if move:
                floors: dict[tuple[Any, ...], tuple[int, int, int]] = {}
                for m in c.movables:
                    slots = _by_distance(m.slots, m.index, floors.get(m.group))
                    slot = slots[draw(st.integers(0, len(slots) - 1))]
                    floors[m.group] = _place(m.index, slot)
                    if slot != m.index:
                        moves[(ci, m.index)] = slot
            if jitter:
                amount = draw(st.floats(0, 1))
                if amount:
                    jitters[ci] = (amount, draw(st.integers(0, 2**32 - 1)))
        v = _variant(src, chunks, moves, jitters, ())
        if templates:
            picked = draw(st.lists(st.sampled_from(range(len(templates))), max_size=max_faults))
            chosen = tuple(templates[k][1] or _fault_place(draw, v, templates[k][0]) for k in picked)
            if chosen:
                v = _variant(src, chunks, moves, jitters, chosen)
        if currently_in_test_context():
            _note(v)
        return v

    return draw_variant()


def _note(c: Cassette) -> None:
    """Tell hypothesis how to keep this example (it prints the note of a failing one); the
    pytest plugin's ``realtime_replay`` then leaves the advice to the note."""
    note(_keep_note(c))
    c._rtreplay_noted = True  # type: ignore[attr-defined]


def _keep_note(c: Cassette) -> str:
    """The note: what this example is, and the lines that keep it as a regression test
    (a cassette in the ``cassettes`` folder beside the test, replayed by the marker)."""
    target = "'tests/cassettes/regression.jsonl'"
    if isinstance(c, ScriptedCassette):
        return (
            "rtreplay: this example is the generated session the script above writes.\n"
            f"  keep it as a regression test: run the script, then rtreplay.save(s.cassette(), {target})\n"
            "  and replay it with @pytest.mark.realtime('regression')"
        )
    what = "; ".join(c.changes) if isinstance(c, Variant) and c.changes else "the recording as it was"
    script, _, call = repr(c).rpartition("\n")
    faults = ""
    if isinstance(c, Variant) and c.faults:
        faults = f", faults={[str(f) for f in c.faults]!r}"
    return (
        f"rtreplay: this example: {what}.\n"
        f"  keep it as a regression test: {'run the script above, then ' if script else ''}"
        f"rtreplay.save({call}, {target})\n"
        f"  and replay it with @pytest.mark.realtime('regression'{faults})"
    )


PHRASES = (
    "Canberra.",
    "The capital of Australia is Canberra, not Sydney as many people assume.",
    "Sure! It's sunny and twenty-two degrees right now.",
    "Yes, take an umbrella: it's 14°C with light rain in Paris.",
    "Spoon.",
    "Bonjour ! Ça va très bien, merci. 😊",
)
_TEXT = st.one_of(
    st.sampled_from(PHRASES),
    st.text(min_size=1, max_size=40),
)
_TOOLS: Mapping[str, st.SearchStrategy[dict[str, Any]]] = {
    "get_weather": st.fixed_dictionaries({"city": st.sampled_from(["Paris", "Tokyo", "Lima"]) | st.text(min_size=1, max_size=20)}),
}


@st.composite
def _deltas(draw: st.DrawFn, text: str) -> list[str] | None:
    """How a text is streamed: as the API would (``None``, the simplest) or cut elsewhere."""
    if len(text) < 2 or not draw(st.booleans()):
        return None
    cuts = sorted(draw(st.lists(st.integers(1, len(text) - 1), min_size=1, max_size=min(MAX_CUTS, len(text) - 1), unique=True)))
    points = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(points)]


def sessions(
    *,
    kinds: Sequence[str] = KINDS,
    turns: tuple[int, int] = (1, 3),
    text: st.SearchStrategy[str] | None = None,
    tools: Mapping[str, st.SearchStrategy[dict[str, Any]]] | None = None,
) -> st.SearchStrategy[ScriptedCassette]:
    """A strategy of whole synthetic GA sessions, written by
    :class:`~rtreplay.scripted.ScriptedSession`: a ``session.update``, then ``turns``
    (from, to) turns of the ``kinds`` asked for:

    - ``"text"``: a user message and a text reply, streamed in drawn pieces;
    - ``"audio"``: a user message and an audio reply with its transcript;
    - ``"function"``: a user message, a function call (arguments streamed in pieces), the
      client's output, and a text reply;
    - ``"error"``: a client event the API refuses and its ``error``, or a server error;
    - ``"vad"``: the user speaks (server VAD) and the server replies with audio;
    - ``"cancel"``: a text reply the client cancels part way.

    ``text``: the strategy of what the user and the assistant say (phrases and arbitrary
    text by default); ``tools``: function name -> strategy of its arguments (a
    ``get_weather`` tool by default). Each example is a
    :class:`~rtreplay.scripted.ScriptedCassette` whose ``repr`` is the script that writes
    it and whose ``responses`` say what each response said. Shrinks towards one short text
    turn. Raises :class:`ValueError` for an unknown kind or a bad range, :class:`TypeError`
    for a ``text`` or a tool's arguments that is not a strategy.
    """
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds are some of {', '.join(KINDS)}, not {list(kinds)!r}")
    if (
        not isinstance(turns, tuple) or len(turns) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in turns)
        or not 0 < turns[0] <= turns[1]
    ):
        raise ValueError(f"turns is (from, to) with 0 < from <= to, not {turns!r}")
    low, high = turns
    words = text if text is not None else _TEXT
    # Checked here: a plain value would fail only when drawn, deep inside hypothesis.
    if not isinstance(words, st.SearchStrategy):
        raise TypeError(f"text is a strategy of str (st.text(), st.sampled_from([...])), not {text!r}")
    tool_args = dict(tools) if tools is not None else dict(_TOOLS)
    for name, args in tool_args.items():
        if not isinstance(name, str) or not isinstance(args, st.SearchStrategy):
            raise TypeError(
                "tools maps a function name to the strategy of its arguments "
                f"(st.fixed_dictionaries({{...}})), not {name!r}: {args!r}"
            )
    if "function" in kinds and not tool_args:
        raise ValueError("function turns need at least one tool")

    @st.composite
    def draw_session(draw: st.DrawFn) -> ScriptedCassette:
        plan = draw(st.lists(st.sampled_from(kinds), min_size=low, max_size=high))
        s = ScriptedSession(seed=draw(st.integers(0, 2**16)))
        spoken = any(k in ("audio", "vad") for k in plan)
        update: dict[str, Any] = {"output_modalities": ["audio" if spoken else "text"]}
        if "function" in plan:
            update["tools"] = [
                {"type": "function", "name": name, "description": f"The {name} tool.",
                 "parameters": {"type": "object", "properties": {}}}
                for name in sorted(tool_args)
            ]
        s.update_session(**update)
        for kind in plan:
            if kind == "error":
                s.error(draw(st.sampled_from(sorted(ERRORS))))
                continue
            if kind == "vad":
                s.user_audio(draw(st.sampled_from([0.3, 0.6, 1.0])))
                s.reply_audio(draw(words), draw(st.sampled_from([0.3, 0.6])))
                continue
            s.user_text(draw(words))
            if kind == "text":
                reply = draw(words)
                s.reply_text(reply, deltas=draw(_deltas(reply)))
            elif kind == "audio":
                s.reply_audio(draw(words), draw(st.sampled_from([0.3, 0.6])))
            elif kind == "function":
                name = draw(st.sampled_from(sorted(tool_args)))
                arguments = draw(tool_args[name])
                call = s.reply_function_call(name, arguments)
                s.function_output(call, draw(st.fixed_dictionaries({"result": words})))
                reply = draw(words)
                s.reply_text(reply, deltas=draw(_deltas(reply)))
            else:  # cancel
                reply = draw(words)
                deltas = draw(_deltas(reply))
                pieces = deltas if deltas is not None else None
                count = len(pieces) if pieces is not None else len(split_text(reply))
                s.reply_text(reply, deltas=deltas, cancel_after=draw(st.integers(0, count - 1)))
        cassette = s.cassette()
        if currently_in_test_context():
            _note(cassette)
        return cassette

    return draw_session()
