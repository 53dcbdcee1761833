"""Plumbing every benchmark shares: one percentile, one server-process launcher, one free-port helper, one
Prometheus text parser, process CPU and memory from /proc, and a description of the machine.

Knows nothing about what a benchmark measures. Scripts run as files (`python benchmarks/x.py`) import it as
`benchmarks.common` after putting the repository root on sys.path (see `REPO`).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED_DATA = REPO.parent / "shared" / "data"  # ../shared/data beside a checkout of the repository


# -- numbers ------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (q in 0..100) with linear interpolation between ranks; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def rounded(x: float, digits: int = 3) -> float | None:
    """`round`, with NaN (no data) as JSON null."""
    return None if x != x else round(x, digits)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {sample name: value summed over its label sets} (e.g. vLLM's per-engine gauges)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


# -- processes -----------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, the repository importable, output unbuffered, plus `extra`."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(extra or {})}


@dataclass
class Launch:
    """One server process: how to start it and how to tell that it is ready."""

    argv: list[str]
    ready_url: str  # answers 200 once the server takes requests
    name: str  # for logs and errors
    env: dict[str, str] | None = None  # added to `child_env()`
    ready_timeout_s: float = 120.0
    stop_timeout_s: float = 15.0  # SIGTERM to SIGKILL grace
    log_path: Path | None = None  # stdout + stderr; default /tmp/bench-<name>.log
    cwd: Path = REPO


def _log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _wait_ready(proc: subprocess.Popen[bytes], launch: Launch, log_path: Path) -> None:
    import httpx

    deadline_s = time.monotonic() + launch.ready_timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{launch.name} exited with {proc.returncode}; {log_path} ends:\n{_log_tail(log_path)}")
        try:
            if httpx.get(launch.ready_url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline_s:
            raise RuntimeError(
                f"{launch.name} not ready within {launch.ready_timeout_s:g} s; {log_path} ends:\n{_log_tail(log_path)}"
            )
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the process group, SIGKILL it after `timeout_s`; a no-op once the process has exited."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    except ProcessLookupError:
        proc.wait(5)


@contextmanager
def server_processes(*launches: Launch) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start every launch (each in its own process group), wait until all are ready, stop them all after.

    The processes start together and are waited for in order; on exit they stop in reverse order.
    """
    with ExitStack() as stack:
        started: list[tuple[subprocess.Popen[bytes], Launch, Path]] = []
        for launch in launches:
            log_path = launch.log_path or Path("/tmp") / f"bench-{launch.name}.log"
            log = stack.enter_context(open(log_path, "wb"))
            proc = subprocess.Popen(
                launch.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=child_env(launch.env),
                cwd=launch.cwd,
            )
            stack.callback(_stop, proc, launch.stop_timeout_s)
            started.append((proc, launch, log_path))
        for proc, launch, log_path in started:
            _wait_ready(proc, launch, log_path)
        yield [proc for proc, _, _ in started]


@contextmanager
def server_process(launch: Launch) -> Iterator[subprocess.Popen[bytes]]:
    """`server_processes` for one server."""
    with server_processes(launch) as (proc,):
        yield proc


def triage_serve(config_path: Path, *extra: str) -> list[str]:
    """argv of `triage serve --config PATH` with this interpreter."""
    return [sys.executable, "-m", "server.cli", "serve", "--config", str(config_path), *extra]


# -- /proc -----------------------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def cpu_s(pid: int, tree: bool = True) -> float:
    """User + system CPU seconds of a process (and, with `tree`, all its descendants), now."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, IndexError, ValueError):
            continue
        if tree:
            stack += _children(p)
    return total / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# -- the record ----------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, core count, Python and OS: what every results JSON records about where it ran."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write `result` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
