"""``python bench/run.py --quick`` runs its figures end to end and writes its page and plot.

A smoke test of the benchmark harness, not a benchmark: no timing is asserted, and the
quick run never installs anything (mitmdump is not run). The default suite runs three quick
figures (the harness, the page, the plot and the concurrency table); every figure is the
slow test's (about 25 s).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quick_bench(tmp_path: Path, only: list[str], figures: list[str]) -> None:
    """Run ``bench/run.py --quick`` on the figures ``only`` (all when empty) and check that
    its page has a row for each of ``figures``, the concurrency table, and its plot."""
    out = tmp_path / "performance.md"
    picked = [arg for name in only for arg in ("--only", name)]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--no-install", *picked, "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = out.read_text()
    for figure in figures:
        assert f"| {figure}" in page, f"no row for {figure!r} in:\n{page}"
    assert "## Concurrency" in page
    assert "![ratio of each figure to its reference](performance.svg)" in page
    svg = (tmp_path / "performance.svg").read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count("<rect") > len(figures)  # the background and one bar per row


def test_quick_bench_of_three_figures_writes_its_page_and_plot(tmp_path: Path) -> None:
    _quick_bench(
        tmp_path,
        ["audio-files", "concurrency", "large"],
        [
            "large cassette: server peak memory",
            "size on disk, an hour of two-way audio",
            "replay throughput, audio deltas (~6.5 KB), audio out of line",
        ],
    )


@pytest.mark.slow
def test_quick_bench_writes_its_page_and_plot(tmp_path: Path) -> None:
    _quick_bench(
        tmp_path,
        [],
        [
            "replay throughput, small events",
            "replay throughput, audio deltas",
            "recorder throughput, server→client",
            "recorder throughput, client→server",
            "recorder round-trip latency, p50",
            "cassette load",
            "per-test cost of `realtime_mock`",
            "large cassette: server peak memory",
            "size on disk, an hour of two-way audio",
            "replay throughput, audio deltas (~6.5 KB), audio out of line",
            "drive: per-event cost",
            "property test examples/s, openai client",
            "property test examples/s, raw client",
        ],
    )
