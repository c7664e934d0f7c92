"""Turns the measurements into docs/performance.md and its plot (a hand-written SVG)."""

from __future__ import annotations

import html
import math
from pathlib import Path

from harness import BENCH, Row, Series, median, spread

HOW_TO_RUN = """\
## How to run

```sh
pip install -e .              # rtreplay itself, as in the README
python bench/run.py           # every figure, 5 runs each: about 5 minutes on 2 cores (plus a minute to install mitmproxy the first time)
python bench/run.py --quick   # a smoke run in seconds, tiny workloads, 2 runs
python bench/run.py --only replay --only load --profile   # some figures, with py-spy hot spots
```

`bench/run.py` regenerates this page and `performance.svg` beside it. It needs nothing
beyond rtreplay's own dependencies, except for the `mitmdump` comparison: mitmproxy is
installed on first use into `bench/.venv-mitm`, a separate virtual environment that is
never a dependency of rtreplay (`--no-install` skips that row instead). `--profile` runs
the rtreplay servers under `py-spy` (from that same environment) and appends their hot
spots below. Every server listens on 127.0.0.1, each in its own process, and stops by
itself; the client is a lean hand-written WebSocket client (`bench/wsclient.py`) so that
it is never the bottleneck being measured. Workloads are generated into a temporary
directory (the 500 MB cassette is written with `rtreplay.codec.CassetteWriter`) and
deleted afterwards.

Each figure is measured against its reference **in the same run**: subject and reference
run alternately (ABAB...), and the ratio is computed per run. The table gives the median
of the runs and, in brackets, their spread (min-max). Only ratios mean anything across
machines.
"""


def fmt(x: float) -> str:
    if x != x:
        return "n/a"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _value(runs: list[float], unit: str) -> str:
    lo, hi = spread(runs)
    return f"{fmt(median(runs))} {unit} ({fmt(lo)}–{fmt(hi)})"


def _target(row: Row) -> str:
    if row.target is None:
        return "—"
    return ("≥ " if row.better == "higher" else "≤ ") + f"{row.target:g}×"


def _verdict(row: Row) -> str:
    met, r = row.met, row.ratio
    if met is None or r is None or row.target is None:
        return ""
    if met:
        return "met"
    missed = (1 - r / row.target) if row.better == "higher" else (r / row.target - 1)
    return f"**missed by {missed:.0%}**"


def table(rows: list[Row]) -> str:
    out = [
        "| figure | rtreplay | reference | ratio | target | |",
        "| --- | --- | --- | ---: | ---: | --- |",
    ]
    for row in rows:
        ratios = row.ratios
        lo, hi = spread(ratios)
        ratio = f"{fmt(median(ratios))}× ({fmt(lo)}–{fmt(hi)})" if ratios else "n/a"
        out.append(
            f"| {row.figure} | {row.subject}: {_value(row.subject_runs, row.unit)} | "
            f"{row.reference}: {_value(row.reference_runs, row.unit)} | {ratio} | {_target(row)} | {_verdict(row)} |"
        )
    return "\n".join(out)


def series_table(series: list[Series], key: str = "clients") -> str:
    if not series:
        return ""
    keys = list(series[0].values)
    out = [
        f"| {key} | "
        + " | ".join(f"{s.figure.split(': ', 1)[-1]} ({s.unit})" for s in series)
        + " |",
        "| ---: |" + " ---: |" * len(series),
    ]
    for k in keys:
        out.append(f"| {k} | " + " | ".join(_value(s.values.get(k, []), "") for s in series) + " |")
    notes = [s.note for s in series if s.note]
    return "\n".join(out) + ("\n\n" + " ".join(notes) if notes else "")


def svg(rows: list[Row], series: list[Series]) -> str:
    """Ratios on a log axis, one bar per row, its spread as a whisker and its target as a tick."""
    rows = [r for r in rows if r.ratios]
    label_w, plot_w, bar_h, gap, top = 480, 420, 16, 8, 56
    lo_x, hi_x = 0.05, 100.0
    height = top + len(rows) * (bar_h + gap) + 40
    width = label_w + plot_w + 130

    def x(v: float) -> float:
        v = min(max(v, lo_x), hi_x)
        return label_w + plot_w * (math.log10(v) - math.log10(lo_x)) / (
            math.log10(hi_x) - math.log10(lo_x)
        )

    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="18" font-size="14" font-weight="bold">rtreplay / reference (median of runs, whisker: min–max; '
        "tick: target)</text>",
        '<text x="10" y="36" fill="#555">green: target met; red: missed; grey: no target. '
        "Throughput rows: higher is better. Latency, cost and memory rows: lower is better.</text>",
    ]
    for tick in (0.1, 0.3, 1, 3, 10, 30, 100):
        tx = x(tick)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height - 30}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{tx:.1f}" y="{height - 16}" text-anchor="middle" fill="#555">{tick:g}×</text>'
        )
    parts.append(
        f'<line x1="{x(1):.1f}" y1="{top - 6}" x2="{x(1):.1f}" y2="{height - 30}" stroke="#888"/>'
    )
    for i, row in enumerate(rows):
        y = top + i * (bar_h + gap)
        r = median(row.ratios)
        lo, hi = spread(row.ratios)
        color = {True: "#3a9d5d", False: "#d0493b", None: "#9a9a9a"}[row.met]
        reference = row.reference.removeprefix("(a) ").removeprefix("(b) ")
        label = f"{row.figure.replace('recorder throughput', 'recorder')} vs {reference}"
        if len(label) > 76:
            label = label[:75] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_h - 4}" text-anchor="end">{e(label)}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{max(1.0, x(r) - label_w):.1f}" height="{bar_h}" fill="{color}"/>'
        )
        parts.append(
            f'<line x1="{x(lo):.1f}" y1="{y + bar_h / 2}" x2="{x(hi):.1f}" y2="{y + bar_h / 2}" stroke="black"/>'
        )
        target = "" if row.target is None else f" ({_target(row)})"
        parts.append(
            f'<text x="{label_w + plot_w + 10}" y="{y + bar_h - 4}" fill="#222">{fmt(r)}×{e(target)}</text>'
        )
        if row.target is not None:
            tx = x(row.target)
            parts.append(
                f'<line x1="{tx:.1f}" y1="{y - 3}" x2="{tx:.1f}" y2="{y + bar_h + 3}" stroke="black" stroke-width="2"/>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write(
    output: Path,
    rows: list[Row],
    series: list[Series],
    profiles: dict[str, str],
    problems: list[str],
    machine: dict[str, str],
    runs: int,
    elapsed: float,
    *,
    quick: bool,
) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    plot = output.with_suffix(".svg")
    plot.write_text(svg(rows, series))
    analysis = BENCH / "analysis.md"
    lines = [
        "# Performance",
        "",
        "<!-- Generated by `python bench/run.py`: edit bench/report.py or bench/analysis.md, not this page. -->",
        "",
        "rtreplay is measured against the physical limit (a bare `websockets` server, a bare relay, "
        "msgspec itself) and against the peer a user would pick (`mitmdump`), side by side in one run.",
        "",
        "## Results",
        "",
        f"Measured at commit {machine['commit']} on {machine['cpu']}, Python {machine['python']}, websockets {machine['websockets']}, "
        f"msgspec {machine['msgspec']}, {machine['date']}; {runs} runs per figure; the whole run took "
        f"{elapsed / 60:.1f} min; load average at its end (1/5/15 min): {machine['load']}."
        + (" **Quick smoke run: tiny workloads, figures not meaningful.**" if quick else ""),
        "",
        table(rows),
        "",
        f"![ratio of each figure to its reference]({plot.name})",
        "",
    ]
    notes = [f"- **{r.figure}** vs {r.reference}: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["Details per row:", "", *notes, ""]
    driving = [s for s in series if s.figure.startswith("drive ")]
    replaying = [s for s in series if s not in driving]
    if replaying:
        lines += [
            "## Concurrency",
            "",
            "One ReplayServer (instant mode, `repeat=True`), N clients replaying "
            "the same session at once, spread over up to 4 client processes: every client "
            "connects first, then all start together.",
            "",
            series_table(replaying),
            "",
        ]
    if driving:
        lines += [
            "## Driving: paced sessions at once",
            "",
            "`rtreplay drive --concurrency N` in one process (`rtreplay.loadtest.load`), "
            "against a bare websockets server answering each client event with the frames "
            "recorded after it.",
            "",
            series_table(driving, "sessions at once"),
            "",
        ]
    if problems:
        lines += ["## Not measured in this run", "", *[f"- {p}" for p in problems], ""]
    if analysis.exists():
        lines += [analysis.read_text().rstrip(), ""]
    if profiles:
        lines += ["## Profiles (py-spy, this run)", ""]
        for name, text in profiles.items():
            lines += [f"### {name}", "", text, ""]
    lines += [HOW_TO_RUN]
    output.write_text("\n".join(lines))


def console(rows: list[Row], series: list[Series]) -> str:
    out = []
    for r in rows:
        ratio = r.ratio
        out.append(
            f"{r.figure:70.70} vs {r.reference:32.32} {fmt(ratio) if ratio is not None else 'n/a':>7}×  "
            f"{_target(r):>8} {_verdict(r).replace('*', '')}"
        )
    for s in series:
        out.append(
            f"{s.figure}: "
            + ", ".join(f"{k}: {fmt(median(v))} {s.unit}" for k, v in s.values.items())
        )
    return "\n".join(out)
