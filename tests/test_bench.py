"""``python bench/run.py --quick`` runs every figure end to end and writes its page and plot.

A smoke test of the benchmark harness, not a benchmark: no timing is asserted, and the
quick run never installs anything (mitmdump is not run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_writes_its_page_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--no-install", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = out.read_text()
    for figure in (
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
    ):
        assert f"| {figure}" in page, f"no row for {figure!r} in:\n{page}"
    assert "## Concurrency" in page
    assert "![ratio of each figure to its reference](performance.svg)" in page
    svg = (tmp_path / "performance.svg").read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count("<rect") > 8  # the background and one bar per row
