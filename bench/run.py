"""Measure rtreplay against the physical limit and the peer a user would pick, in one run.

    python bench/run.py            # every figure, 5 runs each, writes docs/performance.md
    python bench/run.py --quick    # a smoke run in seconds (tiny workloads, 2 runs)

Each figure is measured as a ratio against a reference taken in the same run on the same
machine; docs/performance.md gets the table (median and spread of the runs) and the plot.
Everything listens on 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import report  # noqa: E402
import workloads  # noqa: E402
from harness import MitmProc, Row, Series, ServerProc, median, percentile  # noqa: E402
from wsclient import BlockingClient, async_connect, now, text_frame  # noqa: E402

DONE_FRAME = text_frame(b'{"type":"bench.done"}')
PING_EVENT = workloads.small_events(1, seed=99)[0]


@dataclass
class Sizes:
    runs: int
    small: int  # replay throughput, small events
    audio: int  # replay throughput, audio deltas
    relay_small: int
    relay_audio: int
    mitm_small: int
    round_trips: int
    load_bytes: int
    pytest_tests: int
    clients: tuple[int, ...]
    large_bytes: int
    large_runs: int
    examples: int  # property-test examples per measurement
    binary_frame: int  # bytes of the one binary frame the recorder takes (recorder-binary)


FULL = Sizes(
    runs=5,
    small=100_000,
    audio=20_000,
    relay_small=40_000,
    relay_audio=16_000,
    mitm_small=4_000,
    round_trips=2_000,
    load_bytes=64_000_000,
    pytest_tests=40,
    clients=(1, 16, 64, 256),
    large_bytes=500_000_000,
    large_runs=5,
    examples=200,
    binary_frame=15 * 1024 * 1024,
)
QUICK = Sizes(
    runs=2,
    small=3_000,
    audio=300,
    relay_small=2_000,
    relay_audio=200,
    mitm_small=500,
    round_trips=100,
    load_bytes=2_000_000,
    pytest_tests=4,
    clients=(1, 16),
    large_bytes=5_000_000,
    large_runs=2,
    examples=8,
    binary_frame=1024 * 1024,
)


@dataclass
class Context:
    sizes: Sizes
    tmp: Path
    logs: Path
    install: bool
    profile: bool
    quick: bool = False
    against: str = "HEAD~1"  # the commit the no-fault replay is compared with
    rows: list[Row] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def server(self, name: str, *argv: str, pythonpath: Path | None = None) -> ServerProc:
        return ServerProc(name, list(argv), logs=self.logs, pythonpath=pythonpath)


# -- client-side measurements (the client is the lean one in wsclient.py) -----------------


def receive_all(url: str) -> tuple[int, int, float]:
    """Connect and count every frame until the server closes: (frames, bytes, seconds).

    The seconds run from the first frame to the close: the steady rate of the stream, so a
    proxy's per-connection setup (its upstream handshake) is not spread over a short run.
    """
    client = BlockingClient(url)
    frames = size = 0
    t0 = 0.0
    for _op, length in client.frames():
        if not frames:
            t0 = now()
        frames += 1
        size += length  # type: ignore[operator]
    elapsed = now() - t0
    if client.close_code != 1000:
        raise RuntimeError(f"{url}: closed with {client.close_code} after {frames} frames")
    return frames, size, elapsed


def send_all(url: str, blob: bytes, n: int) -> float:
    """Send ``n`` pre-masked frames, then wait for the sink's acknowledgement: seconds."""
    client = BlockingClient(url, keep=True)
    t0 = now()
    client.send(blob + DONE_FRAME)
    for _op, payload in client.frames():
        if b"bench.ok" in payload:  # type: ignore[operator]
            elapsed = now() - t0
            count = json.loads(payload)["count"]  # type: ignore[arg-type]
            if count != n:
                raise RuntimeError(f"{url}: the upstream received {count} frames of {n}")
            client.close()
            return elapsed
    raise RuntimeError(f"{url}: closed (code {client.close_code}) before acknowledging")


def round_trips(url: str, count: int, warmup: int = 50) -> list[float]:
    """Round-trip times (seconds) of one small event echoed back, one at a time."""
    client = BlockingClient(url, keep=True)
    frame = text_frame(PING_EVENT)
    rtts = []
    it = client.frames()
    for i in range(count + warmup):
        t0 = now()
        client.send(frame)
        next(it)
        if i >= warmup:
            rtts.append(now() - t0)
    client.close()
    return rtts


def recv_rate(
    server: ServerProc | MitmProc, n: int, cpu: dict[str, list[float]] | None = None
) -> Callable[[], float]:
    """A measure: frames/s of ``n`` frames the server sends on connect (and its CPU per frame)."""

    def measure() -> float:
        c0 = server.cpu_seconds()
        rate = n / receive_all(server.url())[2]
        if cpu is not None:
            cpu.setdefault(server.name, []).append((server.cpu_seconds() - c0) / n * 1e6)
        return rate

    return measure


def send_rate(
    server: ServerProc, blob: bytes, n: int, cpu: dict[str, list[float]] | None = None
) -> Callable[[], float]:
    """A measure: frames/s of ``n`` pre-masked frames sent to a sink (and its CPU per frame)."""

    def measure() -> float:
        c0 = server.cpu_seconds()
        rate = n / send_all(server.url(), blob, n)
        if cpu is not None:
            cpu.setdefault(server.name, []).append((server.cpu_seconds() - c0) / n * 1e6)
        return rate

    return measure


def cpu_note(cpu: dict[str, list[float]], subject: str, reference: str) -> str:
    """What each process spent per frame: robust to other load on the machine."""
    if subject not in cpu or reference not in cpu:
        return ""
    s, r = median(cpu[subject]), median(cpu[reference])
    if s <= 0 or r <= 0:  # a run shorter than the clock tick (10 ms): --quick
        return "CPU per frame: too short a run to measure"
    return (
        f"CPU per frame (less sensitive to other load than throughput): {s:.1f} µs vs {r:.1f} µs, "
        f"a CPU-bound ratio of {r / s:.2f}×"
    )


def interleaved(
    runs: int,
    measures: list[tuple[str, Callable[[], float]]],
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Run every measure ``runs`` times, alternating their order each round.

    Each measure runs once first, untimed: a server's first connection pays for imports
    and first allocations (~100 ms in a Python server), which is not its steady cost.
    ``cpu``, the measures' CPU-per-frame record, forgets that run.
    """
    out: dict[str, list[float]] = {name: [] for name, _ in measures}
    for _name, fn in measures:
        fn()
    if cpu is not None:
        cpu.clear()
    for r in range(runs):
        order = measures if r % 2 == 0 else measures[::-1]
        for name, fn in order:
            out[name].append(fn())
    return out


# -- the figures ------------------------------------------------------------------------


def missing(ctx: Context, module: str, figure: str) -> bool:
    """Note (and say) that a figure cannot run because ``module`` is not there yet."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return False
    ctx.skipped.append(f"{figure}: {module} is not importable")
    return True


def fig_replay(ctx: Context) -> None:
    """Replay throughput in instant mode, against a bare server sending the same frames."""
    if missing(ctx, "rtreplay.server", "replay throughput"):
        return
    s = ctx.sizes
    for label, payloads in (
        ("small events (~300 B)", workloads.small_events(s.small)),
        ("audio deltas (~6.5 KB)", workloads.audio_deltas(s.audio)),
    ):
        key = "small" if "small" in label else "audio"
        cassette = workloads.write_server_stream(ctx.tmp / f"replay-{key}.jsonl", payloads)
        del payloads
        bare = ctx.server(f"send-{key}", "send", str(cassette))
        batched = ctx.server(f"send-batched-{key}", "send-batched", str(cassette))
        ours = ctx.server(f"replay-{key}", "replay", str(cassette), "--repeat")
        # The same replay sending the recorded times and IDs untouched, and with fresh IDs.
        kept = ctx.server(f"replay-kept-{key}", "replay", str(cassette), "--repeat", "--keep-times")
        fresh = ctx.server(f"replay-fresh-{key}", "replay", str(cassette), "--repeat", "--fresh-ids")
        try:
            sizes: dict[str, int] = {}
            cpu: dict[str, list[float]] = {}

            expected = s.small if key == "small" else s.audio

            def fps(
                server: ServerProc,
                sizes: dict[str, int] = sizes,
                expected: int = expected,
                cpu: dict[str, list[float]] = cpu,
            ) -> Callable[[], float]:
                def measure() -> float:
                    c0 = server.cpu_seconds()
                    frames, size, sec = receive_all(server.url())
                    cpu.setdefault(server.name, []).append(
                        (server.cpu_seconds() - c0) / expected * 1e6
                    )
                    sizes[server.name] = size
                    if frames != expected:
                        raise RuntimeError(f"{server.name}: {frames} frames of {expected}")
                    return frames / sec

                return measure

            res = interleaved(
                s.runs,
                [("bare", fps(bare)), ("rtreplay", fps(ours)), ("batched", fps(batched)),
                 ("kept", fps(kept)), ("fresh", fps(fresh))],
                cpu,
            )
            profile_extra(ctx, ours, f"replay {key}", fps(ours))
        finally:
            bare.stop()
            batched.stop()
            ours.stop()
            kept.stop()
            fresh.stop()
        mb = sizes[bare.name] / expected / 1e6
        ctx.rows.append(
            Row(
                f"replay throughput, {label}",
                "ReplayServer, instant",
                "bare websockets server",
                "frames/s",
                res["rtreplay"],
                res["bare"],
                target=0.9,
                note=(
                    f"bare: {median(res['bare']) * mb:.0f} MB/s, rtreplay: {median(res['rtreplay']) * mb:.0f} MB/s. "
                    + cpu_note(cpu, ours.name, bare.name)
                ),
            )
        )
        ctx.rows.append(
            Row(
                f"replay throughput, {label}",
                "ReplayServer, instant",
                "bare server writing in batches (the limit)",
                "frames/s",
                res["rtreplay"],
                res["batched"],
                note=(
                    "the same frames written 256 (or 32 KB) at a time through websockets' "
                    "send_context, as ReplayServer writes them: the most websockets can send. "
                    + cpu_note(cpu, ours.name, batched.name)
                ),
            )
        )
        ctx.rows.append(
            Row(
                f"replay throughput, {label}",
                "ReplayServer, default (times moved to replay time)",
                "ReplayServer, times kept as recorded",
                "frames/s",
                res["rtreplay"],
                res["kept"],
                note="what moving time fields to replay time (the default) costs a replay whose "
                "frames hold none: it looks at a frame only when it holds one. "
                + cpu_note(cpu, ours.name, kept.name),
            )
        )
        ctx.rows.append(
            Row(
                f"replay throughput, {label}",
                "ReplayServer, fresh IDs",
                "ReplayServer, default",
                "frames/s",
                res["fresh"],
                res["rtreplay"],
                note="fresh IDs (off by default) rewrite every frame that carries an ID. "
                + cpu_note(cpu, fresh.name, ours.name),
            )
        )


def export_rtreplay(ref: str, into: Path) -> str | None:
    """Write the ``rtreplay`` package as it is at git revision ``ref`` into ``into``; return
    the short commit, or ``None`` when git cannot (no repository, no such revision)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", f"{ref}^{{commit}}"], cwd=harness.REPO,
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "rtreplay"], cwd=harness.REPO,
            capture_output=True, check=True, timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    import io
    import tarfile

    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        try:
            tar.extractall(into, filter="data")
        except TypeError:  # a Python without extraction filters (3.10 before 3.10.12)
            tar.extractall(into)
    return commit


def fig_no_faults(ctx: Context) -> None:
    """Replay with no faults configured, against the same replay at the previous commit."""
    if missing(ctx, "rtreplay.server", "replay without faults against the previous commit"):
        return
    ref_dir = ctx.tmp / "reference-rtreplay"
    commit = export_rtreplay(ctx.against, ref_dir)
    if commit is None:
        ctx.skipped.append(f"replay against {ctx.against}: git cannot export that revision here")
        return
    s = ctx.sizes
    # Four times the replay figure's streams: the two are nearly equal, and a longer run
    # is what lets the ratio see through a shared machine's noise.
    small, audio = 4 * s.small, 4 * s.audio
    for label, payloads in (
        ("small events (~300 B)", workloads.small_events(small)),
        ("audio deltas (~6.5 KB)", workloads.audio_deltas(audio)),
    ):
        key = "small" if "small" in label else "audio"
        expected = small if key == "small" else audio
        cassette = workloads.write_server_stream(ctx.tmp / f"nofault-{key}.jsonl", payloads)
        del payloads
        now = ctx.server(f"replay-now-{key}", "replay", str(cassette), "--repeat")
        before = ctx.server(f"replay-{commit}-{key}", "replay", str(cassette), "--repeat", pythonpath=ref_dir)
        cpu: dict[str, list[float]] = {}
        try:

            def fps(
                server: ServerProc, expected: int = expected, cpu: dict[str, list[float]] = cpu
            ) -> Callable[[], float]:
                def measure() -> float:
                    c0 = server.cpu_seconds()
                    frames, _size, sec = receive_all(server.url())
                    cpu.setdefault(server.name, []).append((server.cpu_seconds() - c0) / expected * 1e6)
                    if frames != expected:
                        raise RuntimeError(f"{server.name}: {frames} frames of {expected}")
                    return frames / sec

                return measure

            res = interleaved(2 * s.runs, [("now", fps(now)), ("before", fps(before))], cpu)
        finally:
            now.stop()
            before.stop()
        ctx.rows.append(
            Row(
                f"replay throughput without faults, {label}",
                "ReplayServer, instant, this tree",
                f"the same at {commit} ({ctx.against})",
                "frames/s",
                res["now"],
                res["before"],
                target=0.97,
                note="faults, latency and interruptions cost nothing when none is configured: "
                "the same cassette, both servers measured in turns in this run. "
                + cpu_note(cpu, now.name, before.name),
            )
        )


def fig_recorder(ctx: Context) -> None:
    """Recorder throughput both ways, its added latency, and mitmdump doing the same job."""
    if missing(ctx, "rtreplay.recorder", "recorder figures"):
        return
    s = ctx.sizes
    small = workloads.write_server_stream(
        ctx.tmp / "up-small.jsonl", workloads.small_events(s.relay_small)
    )
    audio = workloads.write_server_stream(
        ctx.tmp / "up-audio.jsonl", workloads.audio_deltas(s.relay_audio)
    )
    upstreams = {
        "s2c-small": ctx.server("up-send-small", "send", str(small)),
        "s2c-audio": ctx.server("up-send-audio", "send", str(audio)),
        "c2s": ctx.server("up-sink", "sink"),
        "rtt": ctx.server("up-echo", "echo"),
    }
    procs: list[ServerProc | MitmProc] = list(upstreams.values())
    try:
        relays = {k: ctx.server(f"relay-{k}", "relay", up.base) for k, up in upstreams.items()}
        procs += relays.values()
        recorders = {
            k: ctx.server(f"record-{k}", "record", str(ctx.tmp / f"rec-{k}.jsonl"), up.base)
            for k, up in upstreams.items()
        }
        procs += recorders.values()
        setups = {"direct": upstreams, "relay": relays, "recorder": recorders}

        for key, label, n in (
            ("s2c-small", "server→client, small events", s.relay_small),
            ("s2c-audio", "server→client, audio deltas", s.relay_audio),
        ):
            cpu: dict[str, list[float]] = {}
            res = interleaved(
                s.runs,
                [(name, recv_rate(group[key], n, cpu)) for name, group in setups.items()],
                cpu,
            )
            add_recorder_rows(
                ctx,
                f"recorder throughput, {label}",
                res,
                cpu_note(cpu, recorders[key].name, relays[key].name),
            )
            profile_extra(ctx, recorders[key], f"recorder {label}", recv_rate(recorders[key], n))

        for label, payloads in (
            ("client→server, small events", workloads.small_events(s.relay_small)),
            # What a client sends: its audio goes up as input_audio_buffer.append.
            ("client→server, audio appends", workloads.audio_appends(s.relay_audio)),
        ):
            blob = b"".join(text_frame(p) for p in payloads)
            n = len(payloads)
            cpu = {}
            res = interleaved(
                s.runs,
                [(name, send_rate(group["c2s"], blob, n, cpu)) for name, group in setups.items()],
                cpu,
            )
            add_recorder_rows(
                ctx,
                f"recorder throughput, {label}",
                res,
                cpu_note(cpu, recorders["c2s"].name, relays["c2s"].name),
            )
            profile_extra(
                ctx, recorders["c2s"], f"recorder {label}", send_rate(recorders["c2s"], blob, n)
            )

        # A round trip is ~0.3 ms, of which the proxy's part is a few per cent, and one run's
        # p50 swings by ±15% on a shared 2-core machine: twice the runs of the other figures.
        lat: dict[str, list[list[float]]] = {name: [] for name in setups}
        lat_runs = 2 * s.runs
        for r in range(lat_runs):
            for name in list(setups) if r % 2 == 0 else list(setups)[::-1]:
                lat[name].append(round_trips(setups[name]["rtt"].url(), s.round_trips))
        profile_extra(
            ctx,
            recorders["rtt"],
            "recorder round trips",
            lambda: round_trips(recorders["rtt"].url(), s.round_trips),
        )
        for q in (50, 99):
            vals = {name: [percentile(x, q) * 1e6 for x in runs] for name, runs in lat.items()}
            ctx.rows.append(
                Row(
                    f"recorder round-trip latency, p{q}",
                    "through Recorder",
                    "through bare relay",
                    "µs",
                    vals["recorder"],
                    vals["relay"],
                    better="lower",
                    target=1.15 if q == 50 else None,
                    note=(
                        f"{lat_runs} runs of {s.round_trips:,} round trips; "
                        f"direct: {median(vals['direct']):.0f} µs; added by the recorder: "
                        f"{median(vals['recorder']) - median(vals['direct']):.0f} µs, by the bare relay: "
                        f"{median(vals['relay']) - median(vals['direct']):.0f} µs"
                    ),
                )
            )
        ctx.notes["latency_recorder_p50"] = json.dumps(
            [percentile(x, 50) * 1e6 for x in lat["recorder"]]
        )

        if ctx.quick:
            ctx.skipped.append(
                "recorder vs mitmdump: not run by --quick (mitmdump takes seconds to start)"
            )
            return
        exe = harness.mitmdump_path(ctx.install)
        if exe is None:
            ctx.skipped.append(
                "recorder vs mitmdump: mitmproxy is not installed in bench/.venv-mitm "
                "(run without --no-install to create it)"
            )
            return
        mitm_echo = MitmProc(
            "mitm-echo", exe, upstreams["rtt"].port, ctx.tmp / "mitm-echo.flows", ctx.logs
        )
        procs.append(mitm_echo)
        # mitmdump holds a connection's messages in memory until it ends; the send stream
        # is cut to mitm_small frames by a shorter upstream so one run stays a few seconds.
        short = workloads.write_server_stream(
            ctx.tmp / "up-short.jsonl", workloads.small_events(s.mitm_small)
        )
        up_short = ctx.server("up-send-short", "send", str(short))
        procs.append(up_short)
        rec_short = ctx.server(
            "record-short", "record", str(ctx.tmp / "rec-short.jsonl"), up_short.base
        )
        procs.append(rec_short)
        mitm_short = MitmProc(
            "mitm-short", exe, up_short.port, ctx.tmp / "mitm-short.flows", ctx.logs
        )
        procs.append(mitm_short)
        n = s.mitm_small
        cpu = {}
        res = interleaved(
            s.runs,
            [
                ("recorder", recv_rate(rec_short, n, cpu)),
                ("mitmdump", recv_rate(mitm_short, n, cpu)),
            ],
            cpu,
        )
        ctx.rows.append(
            Row(
                "recorder vs mitmdump, throughput (server→client, small events)",
                "Recorder",
                "mitmdump -w (reverse proxy)",
                "frames/s",
                res["recorder"],
                res["mitmdump"],
                target=10.0,
                note=f"{n} frames per run for both. "
                + cpu_note(cpu, rec_short.name, mitm_short.name),
            )
        )
        mrtt = [
            percentile(round_trips(mitm_echo.url(), max(100, s.round_trips // 4)), 50) * 1e6
            for _ in range(s.runs)
        ]
        rec_p50 = json.loads(ctx.notes["latency_recorder_p50"])
        ctx.rows.append(
            Row(
                "recorder vs mitmdump, round-trip latency p50",
                "Recorder",
                "mitmdump -w (reverse proxy)",
                "µs",
                rec_p50,
                mrtt,
                better="lower",
                note="lower is better",
            )
        )
    finally:
        harness.stop_all(procs)


def fig_recorder_binary(ctx: Context) -> None:
    """The recorder taking one large binary frame of random bytes, client to server: its
    redactor reads a binary frame as text and looks for every encoding of each live key
    (two here: the client's and its own), the worst case being random bytes, which hold an
    escape every few hundred bytes. Milliseconds per frame against the bare relay's."""
    if missing(ctx, "rtreplay.recorder", "recorder figures"):
        return
    import random

    from websockets.frames import Frame, Opcode

    s = ctx.sizes
    payload = random.Random(15).randbytes(s.binary_frame)
    blob = Frame(Opcode.BINARY, payload).serialize(mask=True)
    sink = ctx.server("up-sink-binary", "sink")
    procs: list[ServerProc] = [sink]
    try:
        relay = ctx.server("relay-binary", "relay", sink.base)
        recorder = ctx.server("record-binary", "record", str(ctx.tmp / "rec-binary.jsonl"), sink.base)
        procs += [relay, recorder]
        cpu: dict[str, list[float]] = {}

        def ms_per_frame(server: ServerProc) -> Callable[[], float]:
            rate = send_rate(server, blob, 1, cpu)
            return lambda: 1000 / rate()

        res = interleaved(s.runs, [("relay", ms_per_frame(relay)), ("recorder", ms_per_frame(recorder))], cpu)
        size = f"{s.binary_frame / 2**20:g} MiB"
        note = f"{s.runs} runs of one frame of random bytes, client→server"
        ours, theirs = (median(cpu.get(p.name) or [0.0]) for p in (recorder, relay))
        if ours > 0 and theirs > 0:  # (a run shorter than the clock tick reads 0: --quick)
            note += f"; CPU per frame: {ours / 1000:.0f} ms vs {theirs / 1000:.0f} ms"
        ctx.rows.append(
            Row(
                f"recorder, one {size} binary frame",
                "Recorder",
                "(b) bare relay",
                "ms",
                res["recorder"],
                res["relay"],
                better="lower",
                note=note,
            )
        )
    finally:
        harness.stop_all(procs)


def add_recorder_rows(
    ctx: Context, figure: str, res: dict[str, list[float]], note: str = ""
) -> None:
    ctx.rows.append(
        Row(
            figure,
            "Recorder",
            "(b) bare relay",
            "frames/s",
            res["recorder"],
            res["relay"],
            target=0.85,
            note=note,
        )
    )
    ctx.rows.append(
        Row(
            figure,
            "Recorder",
            "(a) direct client↔server",
            "frames/s",
            res["recorder"],
            res["direct"],
            note="for scale: any proxy costs a second hop",
        )
    )


def fig_load(ctx: Context) -> None:
    """Cassette load against msgspec decoding the same lines into a minimal Struct."""
    path, size, _ = workloads.write_audio_hour(
        ctx.tmp / "load.jsonl", ctx.sizes.load_bytes, turn_seconds=2
    )
    times: dict[str, list[float]] = {"rtreplay": [], "msgspec": []}
    for r in range(ctx.sizes.runs):
        for which in ("rtreplay", "msgspec") if r % 2 == 0 else ("msgspec", "rtreplay"):
            out = subprocess.run(
                [sys.executable, str(BENCH / "loadbench.py"), which, str(path)],
                check=True,
                capture_output=True,
                text=True,
                cwd=harness.REPO,
            )
            times[which].append(float(out.stdout.split()[0]))
    mbs = {k: [size / t / 1e6 for t in v] for k, v in times.items()}
    ctx.rows.append(
        Row(
            "cassette load",
            "rtreplay.codec.load()",
            "msgspec, line by line, minimal Struct",
            "MB/s",
            mbs["rtreplay"],
            mbs["msgspec"],
            target=0.8,
            note=f"{size / 1e6:.0f} MB cassette, fresh process per run",
        )
    )
    if ctx.profile:
        raw = ctx.logs / "load.pyspy.txt"
        subprocess.run(
            [
                str(harness.MITM_VENV / "bin" / "py-spy"),
                "record",
                "--format",
                "raw",
                "--rate",
                "500",
                "-o",
                str(raw),
                "--",
                sys.executable,
                str(BENCH / "loadbench.py"),
                "rtreplay",
                str(path),
            ],
            check=False,
            capture_output=True,
            cwd=harness.REPO,
        )
        ctx.profiles["cassette load"] = harness.summarize_profile(raw)


def fig_pytest_cost(ctx: Context) -> None:
    """Per-test cost of the realtime_mock fixture against a bare serve/connect/close cycle."""
    import pytestcost

    try:
        res = pytestcost.measure(
            ctx.tmp / "pytest-cost", ctx.sizes.pytest_tests, ctx.sizes.runs, ctx.logs
        )
    except pytestcost.Unavailable as exc:
        ctx.skipped.append(f"per-test cost of realtime_mock: {exc}")
        return
    ctx.rows.append(
        Row(
            "per-test cost of `realtime_mock`",
            "realtime_mock: setup, load, connect, 1 exchange, teardown",
            "bare websockets serve/connect/1 exchange/close",
            "ms",
            [x * 1e3 for x in res["mock"]],
            [x * 1e3 for x in res["bare"]],
            better="lower",
            target=3.0,
            note=f"median over {ctx.sizes.pytest_tests} tests of each kind per pytest run",
        )
    )


def fig_strategies(ctx: Context) -> None:
    """Examples per second of a property test over replays() (draw a variant, serve it,
    play it through a client, check it) against the plain replay cycle of the recording
    with the same client: what hypothesis adds to a replay."""
    cassette = harness.REPO / "cassettes" / "text-chat.jsonl"
    clients = {"openai": "the openai SDK (AsyncOpenAI realtime.connect)", "raw": "a bare websockets client"}
    for which, name in clients.items():
        runs: dict[str, list[float]] = {"strategy": [], "plain": []}
        for _ in range(ctx.sizes.runs):
            out = subprocess.run(
                [sys.executable, str(BENCH / "strategybench.py"), str(cassette), which, str(ctx.sizes.examples)],
                check=True,
                capture_output=True,
                text=True,
                cwd=harness.REPO,
            )
            strategy, plain = (float(x) for x in out.stdout.split())
            runs["strategy"].append(strategy)
            runs["plain"].append(plain)
        ctx.rows.append(
            Row(
                f"property test examples/s, {which} client",
                f"replays() example: draw a variant, replay it to {name}, check",
                "the plain replay cycle of the recording, same client",
                "examples/s",
                runs["strategy"],
                runs["plain"],
                target=0.8,
                note=f"cassettes/text-chat.jsonl, {ctx.sizes.examples} examples per run, a fresh ReplayServer each",
            )
        )


# Client processes for the concurrency figure: one asyncio client process for 256
# sockets spends as much CPU per event as the server, so it would measure itself.
CLIENT_PROCESSES = 4


def fig_concurrency(ctx: Context) -> None:
    """1..256 clients replaying one session at once from one server, the clients spread
    over several processes."""
    if missing(ctx, "rtreplay.server", "concurrency"):
        return
    cassette = workloads.write_text_session(ctx.tmp / "concurrent.jsonl")
    steps = list(workloads.plan(cassette))
    expected = sum(n for kind, _, n in steps if kind == "recv")
    burst = max(n for kind, _, n in steps if kind == "recv")
    server = ctx.server("replay-concurrent", "replay", str(cassette), "--repeat")
    rate = Series("concurrency: delivered, all clients", "events/s")
    delay = Series("concurrency: p99 per-event delay", "ms")
    median_delay = Series("concurrency: median per-event delay", "ms")
    cpu = Series("concurrency: server CPU per event", "µs")
    bound = Series(
        f"concurrency: one core serving every client's {burst}-event burst at once", "ms"
    )
    try:
        for clients in ctx.sizes.clients:
            for series in (rate, delay, median_delay, cpu, bound):
                series.values[str(clients)] = []
            for _ in range(ctx.sizes.runs):
                got, delays, elapsed, used = concurrent(server, steps, clients)
                incomplete = [g for g in got if g != expected]
                if incomplete:
                    raise RuntimeError(
                        f"{len(incomplete)} of {clients} sessions incomplete "
                        f"(expected {expected} events, got {sorted(set(incomplete))})"
                    )
                rate.values[str(clients)].append(clients * expected / elapsed)
                delay.values[str(clients)].append(percentile(delays, 99) * 1e3)
                median_delay.values[str(clients)].append(percentile(delays, 50) * 1e3)
                per_event = used / (clients * expected)
                cpu.values[str(clients)].append(per_event * 1e6)
                bound.values[str(clients)].append(clients * burst * per_event * 1e3)
    finally:
        server.stop()
    rate.note = (
        f"every session completed ({expected} server events each: session setup and 3 text "
        "responses of 30 deltas); the clients connect first, then all start at once, spread "
        f"over up to {CLIENT_PROCESSES} processes; a delay is measured from the client event "
        "that triggers a server event to its arrival; server CPU is counted from the start "
        "(connections made) to the end (closes included), in clock ticks (coarse at 1 "
        "client); the last line is the time one core needs for a round in which every "
        "client's response burst is due at once: a floor for the tail delay"
    )
    ctx.series += [rate, delay, median_delay, cpu, bound]


def concurrent(
    server: ServerProc, steps: list[tuple[str, bytes, int]], clients: int
) -> tuple[list[int], list[float], float, float]:
    """Run ``clients`` sessions at once from up to CLIENT_PROCESSES processes: the events
    each got, every per-event delay (seconds), the seconds from the first start to the
    last end (connections are made before the start), and the server's CPU seconds."""
    import multiprocessing

    procs = min(CLIENT_PROCESSES, clients)
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    mp = multiprocessing.get_context("fork")
    barrier = mp.Barrier(procs + 1)  # the clients, and this process to read the CPU
    results = mp.Queue()
    workers = [
        mp.Process(target=_client_process, args=(server.url(), steps, n, barrier, results))
        for n in shares
    ]
    for w in workers:
        w.start()
    try:
        barrier.wait(timeout=120)
        c0 = server.cpu_seconds()
        parts = [results.get(timeout=180) for _ in workers]
        used = server.cpu_seconds() - c0
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()
    got = [g for part in parts for g in part[0]]
    delays = [d for part in parts for d in part[1]]
    elapsed = max(p[3] for p in parts) - min(p[2] for p in parts)
    return got, delays, elapsed, used


def _client_process(url: str, steps: list[tuple[str, bytes, int]], n: int, barrier: object, results: object) -> None:
    results.put(asyncio.run(_concurrent(url, steps, n, barrier)))  # type: ignore[attr-defined]


async def _concurrent(
    url: str, steps: list[tuple[str, bytes, int]], clients: int, barrier: object
) -> tuple[list[int], list[float], float, float]:
    delays: list[float] = []

    async def one(client: object) -> int:
        got = 0
        mark = now()
        for kind, blob, n in steps:
            if kind == "send":
                client.writer.write(blob)  # type: ignore[attr-defined]
                mark = now()
                continue
            left = n
            while left > 0:
                frames = await client.next_frames()  # type: ignore[attr-defined]
                if frames is None:
                    await client.close()  # type: ignore[attr-defined]
                    return got
                t = now()
                for _ in frames:
                    delays.append(t - mark)
                got += len(frames)
                left -= len(frames)
        await client.close()  # type: ignore[attr-defined]
        return got

    connected = await asyncio.wait_for(
        asyncio.gather(*(async_connect(url) for _ in range(clients))), 120
    )
    barrier.wait(timeout=120)  # type: ignore[attr-defined]
    t0 = now()
    got = await asyncio.wait_for(asyncio.gather(*(one(c) for c in connected)), 120)
    return list(got), delays, t0, now()


def _on_disk(*paths: Path) -> int:
    """Bytes the files take on the disk (allocated blocks, as ``du`` counts them)."""
    return sum(p.stat().st_blocks * 512 for p in paths)


def fig_audio_files(ctx: Context) -> None:
    """Format 2 (audio in files beside the cassette): size on disk, and replay speed."""
    if missing(ctx, "rtreplay.audiofiles", "audio out of line"):
        return
    from rtreplay.audiofiles import AUDIO_DIR, AUDIO_SUFFIX, convert

    # Size on disk: the bundled audio cassettes, and an hour of two-way audio.
    bundled = ["audio-server-vad", "audio-vad-real", "interruption", "transcription"]
    inline_size = files_size = 0
    store = ctx.tmp / "bundled"
    speech: tuple[Path, ...] = ()
    for name in bundled:
        src = harness.REPO / "cassettes" / f"{name}.jsonl"
        inline_size += _on_disk(src)
        result = convert(src, store / f"{name}.jsonl", audio="files")
        files_size += _on_disk(result.path)
        if name == "audio-vad-real":
            speech = result.audio_files
    files_size += _on_disk(*(store / AUDIO_DIR).glob(f"*{AUDIO_SUFFIX}")) if (store / AUDIO_DIR).exists() else 0
    ctx.rows.append(
        Row(
            "size on disk, the 4 bundled audio cassettes",
            "audio in files (format 2): cassettes + rtreplay-audio/",
            "audio inline, base64 (format 1)",
            "KB",
            [files_size / 1e3] * ctx.sizes.runs,
            [inline_size / 1e3] * ctx.sizes.runs,
            better="lower",
            note="allocated blocks (du); " + ", ".join(bundled) + "; the audio files hold the "
            "decoded audio (3/4 of its base64); audio-server-vad's 10-byte chunks stay inline"
            + _compression_note(speech),
        )
    )
    hour, _size, seconds = workloads.write_audio_hour(ctx.tmp / "hour-inline.jsonl", ctx.sizes.large_bytes)
    t0 = time.perf_counter()
    result = convert(hour, ctx.tmp / "hour" / "hour.jsonl", audio="files")
    took = time.perf_counter() - t0
    files = _on_disk(result.path, *set(result.audio_files))
    ctx.rows.append(
        Row(
            "size on disk, an hour of two-way audio",
            "audio in files (format 2)",
            "audio inline, base64 (format 1)",
            "MB",
            [files / 1e6] * ctx.sizes.runs,
            [_on_disk(hour) / 1e6] * ctx.sizes.runs,
            better="lower",
            note=(
                f"{seconds / 60:.0f} min of PCM16 24 kHz each way; the cassette itself "
                f"{_on_disk(result.path) / 1e6:.1f} MB, its {len(set(result.audio_files))} audio files "
                f"{_on_disk(*set(result.audio_files)) / 1e6:.0f} MB; converted in {took:.1f} s"
            ),
        )
    )
    hour.unlink()
    # Replay speed: the audio-delta stream of fig_replay, inline and out of line, and the
    # bare server sending the same messages (the reference of the replay target), in one run.
    s = ctx.sizes
    inline = workloads.write_server_stream(ctx.tmp / "deltas-inline.jsonl", workloads.audio_deltas(s.audio))
    out_of_line = convert(inline, ctx.tmp / "deltas" / "deltas.jsonl", audio="files").path
    bare = ctx.server("send-deltas", "send", str(inline))
    one = ctx.server("replay-deltas-inline", "replay", str(inline), "--repeat")
    two = ctx.server("replay-deltas-files", "replay", str(out_of_line), "--repeat")
    try:
        cpu: dict[str, list[float]] = {}

        def fps(server: ServerProc) -> Callable[[], float]:
            def measure() -> float:
                c0 = server.cpu_seconds()
                frames, _size, sec = receive_all(server.url())
                cpu.setdefault(server.name, []).append((server.cpu_seconds() - c0) / s.audio * 1e6)
                if frames != s.audio:
                    raise RuntimeError(f"{server.name}: {frames} frames of {s.audio}")
                return frames / sec

            return measure

        res = interleaved(s.runs, [("bare", fps(bare)), ("inline", fps(one)), ("files", fps(two))], cpu)
        profile_extra(ctx, two, "replay audio out of line", fps(two))
    finally:
        bare.stop()
        one.stop()
        two.stop()
    subject = "ReplayServer, format 2 (audio bytes read from its file, encoded as sent)"
    ctx.rows.append(
        Row(
            "replay throughput, audio deltas (~6.5 KB), audio out of line",
            subject,
            "bare websockets server",
            "frames/s",
            res["files"],
            res["bare"],
            target=0.9,
            note=cpu_note(cpu, two.name, bare.name),
        )
    )
    ctx.rows.append(
        Row(
            "replay throughput, audio deltas (~6.5 KB), audio out of line",
            subject,
            "ReplayServer, format 1 (base64 read from the cassette)",
            "frames/s",
            res["files"],
            res["inline"],
            note="the price of encoding each delta's base64 as it is sent. " + cpu_note(cpu, two.name, one.name),
        )
    )


def _compression_note(files: tuple[Path, ...]) -> str:
    """What the stdlib's compressors would keep of real speech (audio-vad-real's audio files),
    and at what speed: why format 2 stores the audio uncompressed."""
    import bz2
    import lzma
    import zlib

    data = [p.read_bytes() for p in files]
    raw = sum(len(d) for d in data)
    if not raw:
        return ""
    kept = []
    for name, fn in (("zlib", zlib.compress), ("bz2", bz2.compress), ("lzma", lzma.compress)):
        t0 = time.perf_counter()
        size = sum(len(fn(d)) for d in data)
        kept.append(f"{size / raw:.0%} ({name}, {raw / (time.perf_counter() - t0) / 1e6:.0f} MB/s)")
    return "; of the real speech (audio-vad-real) a compressor would keep " + ", ".join(kept)


def fig_large(ctx: Context) -> None:
    """A 500 MB cassette of an hour of two-way audio, served and replayed: peak memory."""
    if missing(ctx, "rtreplay.server", "large cassette"):
        return
    t0 = time.perf_counter()
    path, size, seconds = workloads.write_audio_hour(ctx.tmp / "hour.jsonl", ctx.sizes.large_bytes)
    gen = time.perf_counter() - t0
    peaks: list[float] = []
    loaded: list[float] = []
    times: list[float] = []
    for r in range(ctx.sizes.large_runs):
        server = ctx.server(f"replay-large-{r}", "replay", str(path))
        try:
            loaded.append(server.peak_rss())
            t1 = now()
            replay_through(server.url(), path)
            times.append(now() - t1)
            peaks.append(server.peak_rss())
        finally:
            server.stop()
    if ctx.profile:
        server = ctx.server("replay-large-profile", "replay", str(path))
        try:
            profile_extra(
                ctx,
                server,
                "large cassette replay",
                lambda: replay_through(server.url(), path),
                times=1,
            )
        finally:
            server.stop()
    idle = ctx.server("idle-bare", "echo")
    base = idle.peak_rss()
    idle.stop()
    ctx.rows.append(
        Row(
            "large cassette: server peak memory",
            "ReplayServer peak RSS (VmHWM)",
            "cassette size",
            "MB",
            [p / 1e6 for p in peaks],
            [size / 1e6] * len(peaks),
            better="lower",
            target=0.3,
            note=(
                f"{seconds / 60:.0f} min of audio each way, {size / 1e6:.0f} MB (generated in {gen:.0f} s); "
                f"replayed in {median(times):.1f} s. Server peak once the cassette is loaded, before any "
                f"client: {median(loaded) / 1e6:.0f} MB; an idle bare websockets server peaks at {base / 1e6:.0f} MB"
            ),
        )
    )


def replay_through(url: str, path: Path) -> int:
    """Play a cassette's client side against a replay server; fail on any error event."""
    client = BlockingClient(url, keep=True, timeout=120)
    it = client.frames()
    received = 0
    for kind, blob, n in workloads.plan(path):
        if kind == "send":
            client.send(blob)
            continue
        for _ in range(n):
            _op, payload = next(it)
            if payload[:40].startswith(b'{"type":"error"'):  # type: ignore[index]
                raise RuntimeError(f"the replay answered with an error: {payload[:600]!r}")  # type: ignore[index]
        received += n
    client.close()
    return received


def profile_extra(
    ctx: Context, server: ServerProc, name: str, measure: Callable[[], object], times: int = 2
) -> None:
    """With --profile: one more run of ``measure`` with py-spy attached to the server.

    An extra run, after the measured ones, so that sampling never slows a measured figure.
    """
    if not ctx.profile:
        return
    raw = ctx.logs / f"{name.replace(' ', '-')}.pyspy.txt"
    pyspy = str(harness.MITM_VENV / "bin" / "py-spy")
    _ = server.port  # started
    with open(ctx.logs / f"{raw.stem}.log", "wb") as log:
        spy = subprocess.Popen(
            [
                pyspy,
                "record",
                "--pid",
                str(server.pid),
                "--format",
                "raw",
                "--rate",
                "250",
                "--nonblocking",
                "-o",
                str(raw),
            ],
            stdout=log,
            stderr=log,
        )
        try:
            time.sleep(1.0)  # py-spy has no "attached" signal; it attaches within a few ms
            for _ in range(times):
                measure()
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
    ctx.profiles[name] = harness.summarize_profile(raw)


FIGURES: dict[str, Callable[[Context], None]] = {
    "replay": fig_replay,
    "audio-files": fig_audio_files,
    "no-faults": fig_no_faults,
    "recorder": fig_recorder,
    "recorder-binary": fig_recorder_binary,
    "load": fig_load,
    "pytest": fig_pytest_cost,
    "strategies": fig_strategies,
    "concurrency": fig_concurrency,
    "large": fig_large,
    "drive": lambda ctx: __import__("drivebench").fig_drive(ctx),
}


def machine() -> dict[str, str]:
    import msgspec
    import websockets

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=harness.REPO,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "rtreplay", "pytest_plugin"],
            capture_output=True,
            text=True,
            cwd=harness.REPO,
        ).stdout.strip()
        commit = head + (" plus uncommitted changes to rtreplay" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "commit": commit,
        "load": f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}",
        "cpu": f"{cpu} ({os.cpu_count()} cores)",
        "python": platform.python_version(),
        "websockets": websockets.__version__,
        "msgspec": msgspec.__version__,
        "os": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny workloads and 2 runs: a smoke test"
    )
    parser.add_argument("--runs", type=int, help="repetitions of every measurement (default 5)")
    parser.add_argument(
        "--only", action="append", choices=sorted(FIGURES), help="measure only these figures"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=harness.REPO / "docs" / "performance.md",
        help="the page to write (its plot goes beside it)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never create bench/.venv-mitm (skip the mitmdump rows if it is missing)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the rtreplay servers under py-spy and add their hot spots to the page",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (cassettes, logs)"
    )
    parser.add_argument(
        "--against",
        default="HEAD~1",
        metavar="REV",
        help="the git revision the replay without faults is compared with (default: HEAD~1, "
        "the previous commit)",
    )
    args = parser.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    if args.runs:
        sizes = dataclasses.replace(sizes, runs=args.runs, large_runs=args.runs)
    if args.profile and harness.mitmdump_path(not args.no_install) is None:
        parser.error("--profile needs py-spy from bench/.venv-mitm; run once without --no-install")
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="rtreplay-bench-"))
    logs = tmp / "logs"
    logs.mkdir()
    ctx = Context(
        sizes,
        tmp,
        logs,
        install=not (args.no_install or args.quick),
        profile=args.profile,
        quick=args.quick,
        against=args.against,
    )
    failures: list[str] = []
    try:
        for name, fig in FIGURES.items():
            if args.only and name not in args.only:
                continue
            t = time.perf_counter()
            print(f"[{time.perf_counter() - started:5.0f}s] {name} ...", flush=True)
            try:
                fig(ctx)
            except Exception as exc:
                traceback.print_exc()
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
            print(f"        {name} took {time.perf_counter() - t:.0f} s", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    report.write(
        args.output,
        ctx.rows,
        ctx.series,
        ctx.profiles,
        ctx.skipped + failures,
        machine(),
        sizes.runs,
        elapsed,
        quick=args.quick,
    )
    print(report.console(ctx.rows, ctx.series))
    print(f"wrote {args.output} in {elapsed:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
