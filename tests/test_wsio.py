"""The websockets plumbing: how a failed handshake is logged."""

from __future__ import annotations

import logging
import sys

from websockets.http11 import Request
from websockets.streams import StreamReader

from rtreplay import load
from rtreplay._wsio import websockets_logger


def _record(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        "rtreplay.server.websockets", logging.ERROR, __file__, 1, "anything websockets says", None,
        (type(exc), exc, exc.__traceback__),
    )


def _raised(fn: object) -> BaseException:
    try:
        fn()  # type: ignore[operator]
    except Exception:
        return sys.exc_info()[1]  # type: ignore[return-value]
    raise AssertionError("it did not raise")


def _parse_garbage() -> None:
    reader = StreamReader()
    reader.feed_data(b"\x16\x03\x01 a TLS hello\r\n\r\n")
    gen = Request.parse(reader.read_line)
    next(gen)


def test_a_peer_that_is_not_http_is_one_warning_whatever_websockets_calls_it() -> None:
    record = _record(_raised(_parse_garbage))
    assert websockets_logger("rtreplay.test.websockets").filters[0].filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("a client's opening handshake failed, its connection was dropped: ")
    assert "\n" not in record.getMessage()


def test_a_bug_of_ours_keeps_its_traceback() -> None:
    record = _record(_raised(lambda: load("/nonexistent/rtreplay-cassette.jsonl")))
    assert websockets_logger("rtreplay.test.websockets").filters[0].filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
