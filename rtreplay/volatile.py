"""What a replay changes in recorded server frames: times moved to replay time, fresh IDs.

Some server fields differ from run to run (PROTOCOL.md, 2.3 "Volatile fields"). Two kinds
matter to a client that acts on them:

- **Times.** A recorded ``session.created`` carries the ``expires_at`` of a session that
  ended long ago; a client that checks it believes its new session has already expired,
  and one that checks a client secret's ``expires_at`` refuses to use it. A
  :class:`Rewriter` with ``shift`` moves every time field (:data:`rtreplay.protocol.TIME_FIELDS`,
  unix seconds) by the time between the recording and the replay, keeping its offset from
  the moment of the recording: a session recorded to expire 30 minutes after it opened
  expires 30 minutes after the replay's connection opened. **On by default**: a replayed
  session must look current to the client, and a time is only meaningful relative to now.
- **IDs.** Replayed as recorded by default: IDs are opaque, only their identity matters to a
  client, and tests and reports refer to the recorded ones. With ``fresh_ids`` each
  connection of a replay gets its own IDs (same prefix and length, new characters; the same
  recorded ID always becomes the same fresh one within a connection), so a client that
  caches IDs from one session and echoes them in another is caught: the echo does not match
  what the replay handed out, and the report says where the stale ID came from.

Only the bytes of the values change; every other byte of a frame stays as recorded, and a
frame without such fields is sent untouched. No I/O here: the player owns one rewriter per
connection and the server applies it to each payload it sends.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from .protocol import TIME_FIELDS

__all__ = [
    "Rewriter",
    "fresh_id",
    "has_time_fields",
    "parse_wall_clock",
    "shift_times",
]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# A unix time in seconds between 2001 and 2286: a smaller number in a time field is a
# duration or a placeholder, and is left alone.
_MIN_UNIX_TIME = 1_000_000_000


def _time_pattern(fields: Iterable[str]) -> re.Pattern[bytes]:
    names = b"|".join(re.escape(f.encode()) for f in fields)
    return re.compile(rb'"(' + names + rb')"(\s*:\s*)(\d{10,11}(?:\.\d+)?)(?![\d.eE])')


_TIMES = _time_pattern(TIME_FIELDS)
_PROBE = b'_at"'  # every time field's name ends so: a cheap test before the regex


def has_time_fields(data: bytes, fields: tuple[str, ...] = TIME_FIELDS) -> bool:
    """Whether a JSON payload holds a time field with a unix time in it."""
    if _PROBE not in data:
        return False
    pattern = _TIMES if fields == TIME_FIELDS else _time_pattern(fields)
    return pattern.search(data) is not None


def shift_times(data: bytes, seconds: float, fields: tuple[str, ...] = TIME_FIELDS) -> bytes:
    """``data`` (JSON) with every time field moved by ``seconds`` (whole seconds for integers)."""
    if not seconds or _PROBE not in data:
        return data
    pattern = _TIMES if fields == TIME_FIELDS else _time_pattern(fields)
    whole = round(seconds)

    def move(m: re.Match[bytes]) -> bytes:
        text = m.group(3)
        if b"." in text:
            value = repr(float(text) + seconds).encode()
        else:
            value = str(int(text) + whole).encode()
        return b'"' + m.group(1) + b'"' + m.group(2) + value

    return pattern.sub(move, data)


def parse_wall_clock(text: str | None) -> float | None:
    """An ISO 8601 time as the cassette writes it (``2026-11-20T09:00:00.123Z``), in unix
    seconds; ``None`` when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def fresh_id(recorded: str, rng: random.Random) -> str:
    """A new ID shaped like ``recorded``: the same prefix (up to its first ``_``) and length."""
    prefix, sep, rest = recorded.partition("_")
    if not sep:
        prefix, rest = "", recorded
    body = "".join(rng.choice(_BASE62) for _ in rest) or rng.choice(_BASE62)
    return f"{prefix}{sep}{body}"


class Rewriter:
    """Rewrites the payloads of one replayed connection's recorded server frames.

    ``shift``: seconds to add to time fields (``0``: leave them). ``ids``: recorded ID ->
    the ID this replay hands out instead (empty: IDs as recorded). :meth:`apply` returns the
    payload to send; :meth:`sent_as` tells what a recorded ID became.
    """

    def __init__(
        self,
        *,
        shift: float = 0.0,
        ids: Mapping[str, str] | None = None,
        time_fields: tuple[str, ...] = TIME_FIELDS,
    ) -> None:
        self.shift = shift
        self.ids: dict[str, str] = dict(ids or {})
        self.time_fields = time_fields
        self._back = {fresh: recorded for recorded, fresh in self.ids.items()}
        self._ids_re: re.Pattern[bytes] | None = None
        self._encoded: dict[bytes, bytes] = {}
        if self.ids:
            # Longest first, so that an ID that is a prefix of another never wins.
            names = sorted(self.ids, key=len, reverse=True)
            self._ids_re = re.compile(b'"(' + b"|".join(re.escape(n.encode()) for n in names) + b')"')
            self._encoded = {k.encode(): v.encode() for k, v in self.ids.items()}

    @classmethod
    def for_connection(
        cls,
        *,
        recorded_at: float | None,
        now: float | None,
        ids: Iterable[str] = (),
        rng: random.Random | None = None,
        time_fields: tuple[str, ...] = TIME_FIELDS,
    ) -> Rewriter:
        """A rewriter for a connection recorded at ``recorded_at`` and replayed at ``now``
        (unix seconds; either ``None``: times left as recorded), giving each of ``ids`` a
        fresh ID (drawn from ``rng``)."""
        shift = 0.0 if recorded_at is None or now is None else now - recorded_at
        rng = rng or random.Random()
        fresh: dict[str, str] = {}
        taken: set[str] = set()
        for recorded in ids:
            new = fresh_id(recorded, rng)
            while new in taken or new == recorded:
                new = fresh_id(recorded, rng)
            taken.add(new)
            fresh[recorded] = new
        return cls(shift=shift, ids=fresh, time_fields=time_fields)

    @property
    def active(self) -> bool:
        """Whether it changes anything at all."""
        return bool(self.shift) or bool(self.ids)

    def sent_as(self, recorded: str) -> str:
        """The ID the client was given for recorded ID ``recorded``."""
        return self.ids.get(recorded, recorded)

    def recorded(self, fresh: str) -> str | None:
        """The recorded ID a fresh one stands for, if it is one of this connection's."""
        return self._back.get(fresh)

    def apply(self, data: bytes, *, times: bool = True) -> bytes:
        """A payload with its IDs replaced and (if it may hold any, ``times``) its times moved."""
        if self._ids_re is not None:
            encoded = self._encoded
            data = self._ids_re.sub(lambda m: b'"' + encoded[m.group(1)] + b'"', data)
        if times and self.shift:
            data = shift_times(data, self.shift, self.time_fields)
        return data
