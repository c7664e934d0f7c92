"""What a client sent, as the replay server and the recording proxy both keep it."""

from __future__ import annotations

from typing import Any

import msgspec

from ._index import AUDIO_APPEND

__all__ = ["APPEND_TYPE_BYTES", "RECEIVED_AUDIO_BUDGET", "ReceivedEvent"]

#: Client messages kept whole in ``received`` (past it, audio appends lose their audio).
RECEIVED_AUDIO_BUDGET = 32 * 1024 * 1024

_decoder = msgspec.json.Decoder()
_UNSET: Any = object()
#: How an audio append names its type, to spot one without decoding it.
APPEND_TYPE_BYTES = f'"{AUDIO_APPEND}"'.encode()


class ReceivedEvent:
    """A message a client sent: ``conn`` (connection number), ``raw``, ``event``.

    ``raw`` is the message as received (``str`` for text, ``bytes`` for binary). To bound
    memory on long audio sessions, the ``input_audio_buffer.append`` messages past the
    server's ``received_audio_budget`` are kept without their audio: ``raw`` is ``None``,
    ``event`` is ``{"type": "input_audio_buffer.append", "audio": None}`` and ``elided``
    the size of the message that was dropped (``kind`` names the append event of the
    endpoint: ``session.input_audio_buffer.append`` on the translation endpoint).
    """

    __slots__ = ("_event", "_raw", "_wire", "conn", "elided")

    def __init__(
        self, conn: int, raw: str | bytes | None, elided: int = 0, kind: str = AUDIO_APPEND
    ) -> None:
        self.conn = conn
        self._raw = raw
        self._wire: bytes | None = None  # a text message's UTF-8, decoded when first asked
        self.elided = elided
        self._event: Any = _UNSET
        if elided:
            self._event = {"type": kind, "audio": None}

    @classmethod
    def from_wire(cls, conn: int, data: bytes, text: bool) -> ReceivedEvent:
        """A message as it came off the wire, decoded only if someone looks at it."""
        if not text:
            return cls(conn, data)
        received = cls(conn, None)
        received._wire = data
        return received

    @property
    def raw(self) -> str | bytes | None:
        if self._wire is not None:
            self._raw, self._wire = self._wire.decode(), None
        return self._raw

    @property
    def event(self) -> Any:
        """The decoded JSON event, or ``None`` for a message that is not JSON."""
        if self._event is _UNSET:
            raw = self.raw
            try:
                self._event = _decoder.decode(raw) if isinstance(raw, str) else None
            except (msgspec.DecodeError, RecursionError):
                self._event = None
        return self._event

    @property
    def type(self) -> str | None:
        """The event's ``type``, if it is a JSON object with one."""
        event = self.event
        kind = event.get("type") if isinstance(event, dict) else None
        return kind if isinstance(kind, str) else None

    def __repr__(self) -> str:
        return f"ReceivedEvent(conn={self.conn}, type={self.type!r})"
