"""Figures of ``rtreplay drive``: its per-event cost, how many paced sessions one process
sustains, and a Locust process doing the same work beside it.

The server is bench/servers.py's ``answer``: a bare websockets server that sends, for each
client message, the server frames recorded after it, pre-encoded, so that what is measured
is the client side.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rtreplay.codec import load
from rtreplay.drive import Drive
from rtreplay.driver import scripts
from rtreplay.loadtest import load as load_test

from harness import Row, Series, median, percentile

#: The session driven: a recorded tool call and its answer (2 responses, 41 server events,
#: 1.4 s at the recorded pace).
SESSION = Path(__file__).resolve().parents[1] / "cassettes" / "tool-call.jsonl"
#: A process sustains N sessions when every one matched and the driver's worst lateness
#: (a client event sent after its recorded pace made it due) stays under this, p99.
LATE_BOUND = 0.050


async def _bare_session(url: str, steps: list[tuple[str, list[str], int]]) -> int:
    from websockets.asyncio.client import connect

    events = 0
    async with connect(url, compression=None, max_size=None) as ws:
        for kind, messages, n in steps:
            if kind == "send":
                for m in messages:
                    await ws.send(m)
                events += len(messages)
            else:
                for _ in range(n):
                    await ws.recv()
                events += n
    return events


def bare_steps(path: Path) -> list[tuple[str, list[str], int]]:
    """The client side as a plain client plays it: send these, then await that many."""
    steps: list[tuple[str, list[str], int]] = []
    for f in load(path).connections[0].frames:
        if f.dir == "client":
            if steps and steps[-1][0] == "send":
                steps[-1][1].append(str(f.payload()))
            else:
                steps.append(("send", [str(f.payload())], 0))
        elif steps and steps[-1][0] == "recv":
            steps[-1] = ("recv", [], steps[-1][2] + 1)
        else:
            steps.append(("recv", [], 1))
    return steps


def overhead(url: str, cassette: Path, sessions: int) -> tuple[float, float]:
    """Seconds per event: (drive, bare client), sessions one after the other."""
    prepared = scripts(cassette)
    steps = bare_steps(cassette)

    async def drive_all() -> tuple[float, int]:
        t = time.perf_counter()
        events = 0
        for _ in range(sessions):
            report = await Drive(prepared, url, speed=0, audio_speed=0).run()
            assert report.ok, report
            events += sum(p.received + p.clients_sent for p in report.connections)
        return time.perf_counter() - t, events

    async def bare_all() -> tuple[float, int]:
        t = time.perf_counter()
        events = 0
        for _ in range(sessions):
            events += await _bare_session(url, steps)
        return time.perf_counter() - t, events

    d, de = asyncio.run(drive_all())
    b, be = asyncio.run(bare_all())
    return d / de, b / be


def locust_run(tmp: Path, cassette: Path, url: str, users: int, seconds: int, logs: Path) -> dict[str, Any] | None:
    """One Locust process (no master), ``users`` RealtimeUsers for ``seconds``: its stats row."""
    if importlib.util.find_spec("locust") is None:
        return None
    locustfile = tmp / "drive_locustfile.py"
    locustfile.write_text(
        "from locust import constant\n"
        "from rtreplay.locust import RealtimeUser\n\n\n"
        "class Caller(RealtimeUser):\n"
        f"    cassette = {str(cassette)!r}\n"
        "    wait_time = constant(0)\n"
    )
    prefix = tmp / "drive_locust"
    with open(logs / "locust.log", "wb") as log:
        subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(users),
             "-r", str(users), "-t", f"{seconds}s", "--host", url, "--csv", str(prefix), "--only-summary",
             "--stop-timeout", "10"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=seconds + 120,
        )
    with open(f"{prefix}_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    return {"session": rows.get("session"), "first delta": rows.get("first delta"), "seconds": seconds}


def fig_drive(ctx: Any) -> None:
    """drive: per-event cost against a bare client, concurrent paced sessions, Locust."""
    quick = ctx.quick
    base = SESSION
    server = ctx.server("answer", "answer", str(base))
    try:
        url = f"ws://127.0.0.1:{server.port}/v1/realtime"
        sessions = 20 if quick else 200
        drive_runs: list[float] = []
        bare_runs: list[float] = []
        for _ in range(ctx.sizes.runs):
            d, b = overhead(url, base, sessions)
            drive_runs.append(d * 1e6)
            bare_runs.append(b * 1e6)
        ctx.rows.append(
            Row(
                "drive: per-event cost",
                "rtreplay drive (the driver and its websockets shell), --speed 0",
                "bare websockets client sending the same frames, awaiting as many",
                "µs",
                drive_runs,
                bare_runs,
                better="lower",
                target=3.0,
                note=f"{sessions} sessions of {len(scripts(base)[0].steps)} client and "
                f"{len(scripts(base)[0].connection.server)} server events, one after the "
                "other; an event is a frame sent or received",
            )
        )
        # Concurrent sessions at the recorded pace.
        paced_path = base
        prepared = scripts(paced_path)
        seconds_each = scripts(base)[0].last_t
        levels = (8, 32) if quick else (32, 128, 256, 512)
        rate = Series("drive --concurrency: sessions completed", "sessions/s")
        late = Series("drive --concurrency: p99 of each session's worst lateness", "ms")
        first = Series("drive --concurrency: p99 first delta", "ms")
        sustained = 0
        for n in levels:
            for series in (rate, late, first):
                series.values[str(n)] = []
            ok_all = True
            for _ in range(ctx.sizes.runs if not quick else 1):
                report = asyncio.run(load_test(prepared, url, concurrency=n, repeat=2, speed=1.0))
                rate.values[str(n)].append(report.sessions / report.wall)
                late.values[str(n)].append(percentile(report.late, 99) * 1e3 if report.late else 0.0)
                first.values[str(n)].append(percentile(report.first_delta, 99) * 1e3 if report.first_delta else 0.0)
                ok_all = ok_all and report.ok
            if ok_all and median(late.values[str(n)]) <= LATE_BOUND * 1e3:
                sustained = n
        ctx.notes["drive sustained"] = str(sustained)
        rate.note = (
            f"one process drives N copies of a {seconds_each:.1f} s recorded session (a tool "
            f"call and the answer: 5 client, 41 server events) at the recorded pace, twice each, against the bare "
            f"answering server; it sustains {sustained} at once on this machine (every session "
            f"matched, its worst client event no later than {LATE_BOUND * 1e3:.0f} ms behind "
            f"the recorded pace, p99)"
        )
        ctx.series += [rate, late, first]
        # Locust beside it: one process, the same sessions, the same number of users.
        users = sustained or levels[0]
        seconds = 4 if quick else 15
        result = locust_run(ctx.tmp, paced_path, url, users, seconds, ctx.logs)
        if result is None or result["session"] is None:
            ctx.skipped.append("Locust figure: locust is not installed (pip install -e '.[locust]')")
            return
        ours = asyncio.run(load_test(prepared, url, concurrency=users, repeat=max(2, int(seconds / seconds_each)), speed=1.0))
        locust_rate = float(result["session"]["Requests/s"])
        failures = int(result["session"]["Failure Count"])
        ctx.rows.append(
            Row(
                f"Locust user, {users} users in one process",
                "Locust 1 process (gevent, rtreplay.locust.RealtimeUser)",
                f"rtreplay drive --concurrency {users} (1 process, asyncio)",
                "sessions/s",
                [locust_rate],
                [ours.sessions / ours.wall],
                note=f"the paced session for {seconds} s; Locust failures: {failures}; "
                f"Locust p99 first delta {result['first delta']['99%'] if result['first delta'] else '-'} ms; "
                "Locust adds machines (workers) where drive stops at one process",
            )
        )
    finally:
        server.stop()
