"""The replay report is plain data: what it holds, how it reads, and what the docs say."""

from __future__ import annotations

import re
import typing

from rtreplay._index import CassetteIndex
from rtreplay.report import (
    AudioDifference,
    ConnectionProgress,
    Mismatch,
    MismatchKind,
    ReplayReport,
)

from .conftest import CASSETTES, REPO


def test_every_mismatch_kind_is_documented() -> None:
    text = (REPO / "docs" / "replay.md").read_text()
    listed = text.split("`report.mismatches`: each a `Mismatch` with `.kind` (")[1].split(":")[0]
    assert set(re.findall(r"`(\w+)`", listed)) == set(typing.get_args(MismatchKind))


def test_the_report_is_written_through_its_add_methods_and_reads_back() -> None:
    index = CassetteIndex.load(CASSETTES / "text-response.jsonl")
    [ic] = index.connections
    report = ReplayReport("x.jsonl", index.connections)
    assert report.ok and not report.complete  # nobody connected yet
    progress = ConnectionProgress(0, 0, ic.clients, ic.server_count, [True, True, False], sent=5)
    report.add_connection(progress)
    report.add_mismatch(
        Mismatch("stall", 0, 0, 1, 2, 3, {"type": "response.create"}, None, "stall: ...",
                 held="response.created (server event 5 of 17)", last_received="conversation.item.create")
    )
    report.add_audio(AudioDifference(0, 0, 1, "before input_audio_buffer.commit", 1000, 900, 250))
    assert not report.ok and [m.kind for m in report.stalls] == ["stall"]
    [unplayed] = report.unplayed
    assert (unplayed.missing, unplayed.frames, unplayed.events) == (1, 12, ("response.create",))
    text = str(report)
    assert text.startswith("rtreplay: replay of x.jsonl: 1 mismatch, 1 connection(s) not played to the end")
    assert "  holds:    response.created (server event 5 of 17)" in text
    assert "  last received from the client: conversation.item.create" in text
    assert "audio accepted within the tolerance:\n  connection 0 (recorded connection 0), turn 1: 100 ms less audio" in text
