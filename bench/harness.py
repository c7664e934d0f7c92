"""Processes, repetitions and statistics for the benchmarks.

Every server runs in its own process (``servers.py``), started once per figure and
measured run after run, with the subject and its reference interleaved (ABAB...) so that
a machine that slows down mid-run slows both.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SERVERS = BENCH / "servers.py"
MITM_VENV = BENCH / ".venv-mitm"


@dataclass
class Row:
    """One line of the results table: a subject, its reference, the ratio and the target."""

    figure: str
    subject: str
    reference: str
    unit: str
    subject_runs: list[float] = field(default_factory=list)
    reference_runs: list[float] = field(default_factory=list)
    # "higher": ratio = subject / reference; "lower": same, but lower is better.
    better: str = "higher"
    target: float | None = None
    note: str = ""
    ratios_override: list[float] | None = None

    @property
    def ratios(self) -> list[float]:
        if self.ratios_override is not None:
            return self.ratios_override
        return [s / r for s, r in zip(self.subject_runs, self.reference_runs, strict=False) if r]

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio >= self.target if self.better == "higher" else self.ratio <= self.target


@dataclass
class Series:
    """A figure without a reference (concurrency): values per run, per setting."""

    figure: str
    unit: str
    values: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def spread(xs: list[float]) -> tuple[float, float]:
    return (min(xs), max(xs)) if xs else (float("nan"), float("nan"))


class ServerProc:
    """One server in a child process; its port, its peak memory, a clean stop."""

    def __init__(
        self, name: str, argv: list[str], *, logs: Path, pythonpath: Path | None = None
    ) -> None:
        self.name = name
        cmd = [sys.executable, str(SERVERS), *argv]
        self.log = logs / f"{name}.log"
        self._log = open(self.log, "wb")  # noqa: SIM115
        env = None
        if pythonpath is not None:  # this rtreplay ahead of the installed one
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=REPO, env=env
        )
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port, waited for on first use: servers started together boot in parallel."""
        if self._port is None:
            self._port = self._read_port()
        return self._port

    def _read_port(self, timeout: float = 60.0) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith(b"PORT "):
                    return int(line.split()[1])
                if not line:
                    break
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(
            f"server {self.name!r} did not start; see {self.log}:\n{self.log.read_text()[-2000:]}"
        )

    def url(self, path: str = "/v1/realtime?model=gpt-realtime") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss(self) -> int:
        """The process's peak resident memory so far (VmHWM), in bytes."""
        _ = self.port  # started (its cassette loaded) before it is measured
        pid = self.pid
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc status")

    def request_stop(self) -> None:
        """Ask the server to stop (it finishes its work, e.g. a cassette) without waiting."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request_stop()
                self.proc.wait(30)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far.

    Unlike wall-clock throughput, this barely moves when other programs share the machine,
    so it tells what a server costs per frame even on a busy CI box.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def stop_all(procs: list[ServerProc] | list[ServerProc | MitmProc]) -> None:
    """Stop several servers at once: ask them all, then wait for each."""
    for p in procs:
        if isinstance(p, ServerProc):
            p.request_stop()
    for p in procs:
        p.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mitmdump_path(install: bool) -> Path | None:
    """``mitmdump`` from the bench's own venv, created on demand (never rtreplay's deps)."""
    exe = MITM_VENV / "bin" / "mitmdump"
    if exe.exists():
        return exe
    if not install:
        return None
    print("  installing mitmproxy and py-spy into bench/.venv-mitm (once) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(MITM_VENV)], check=True)
        subprocess.run(
            [str(MITM_VENV / "bin" / "pip"), "install", "-q", "mitmproxy", "py-spy"], check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"  could not install mitmproxy ({exc}); its rows are skipped", flush=True)
        shutil.rmtree(MITM_VENV, ignore_errors=True)
        return None
    return exe if exe.exists() else None


class MitmProc:
    """``mitmdump`` as a reverse proxy to ``upstream``, saving every flow (with its
    WebSocket messages) to a file: what a user would run to record this traffic."""

    def __init__(self, name: str, exe: Path, upstream_port: int, flows: Path, logs: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log = logs / f"{name}.log"
        self._log = open(self.log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(exe),
                "-q",
                "--mode",
                f"reverse:http://127.0.0.1:{upstream_port}/",
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                str(self.port),
                "-w",
                str(flows),
                "--set",
                f"confdir={flows.parent / 'mitm-conf'}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            cwd=flows.parent,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mitmdump did not start; see {self.log}")

    def url(self, path: str = "/v1/realtime?model=gpt-realtime") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def summarize_profile(raw: Path, top: int = 12) -> str:
    """The hottest functions of a py-spy ``--format raw`` profile, by own and total time."""
    if not raw.exists():
        return f"(no profile written at {raw})"
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[_short(frames[-1])] += n
        for name in {_short(f) for f in frames}:
            total[name] += n
    if not samples:
        return "(empty profile)"
    lines = [f"{samples} samples", "", "| own % | total % | function |", "| ---: | ---: | --- |"]
    names = [n for n, _ in own.most_common(top)]
    for name in names:
        lines.append(
            f"| {100 * own[name] / samples:.1f} | {100 * total[name] / samples:.1f} | `{name}` |"
        )
    ours = [(n, c) for n, c in total.most_common() if "rtreplay" in n][:top]
    if ours:
        lines += [
            "",
            "rtreplay functions by total time:",
            "",
            "| total % | function |",
            "| ---: | --- |",
        ]
        lines += [f"| {100 * c / samples:.1f} | `{n}` |" for n, c in ours]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # py-spy frames look like "func (path/to/module.py:123)"
    func, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    path = path.removeprefix(os.sep)
    return f"{func} ({path})" if path else func
