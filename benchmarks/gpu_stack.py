"""The serving stack a GPU check measures: one `triage serve` on configs/gpu-dummy.yaml that launches its vLLM
engines itself (Qwen2.5 shapes, dummy weights, fixed KV caches, so they start at the same time), or, in a dry run on
a CPU machine, the same shapes simulated (tests/gpu/sim_vllm.py: `vllm serve`'s argv, Triage's simulator behind it).

`start()` writes the config (model folders, engine command, start-up flags), spawns the router in its own
session and returns at once; `wait_ready()` waits for `/ready` (every engine healthy); `memory_shares()` reads
each engine's GPU memory from NVML by process and checks it against its `gpu_memory_utilization` share;
`stop()` ends the router (which stops its engines) and reports what was left behind.

Knows nothing about what is measured on the stack.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "gpu-dummy.yaml"
SIM_VLLM = REPO / "tests" / "gpu" / "sim_vllm.py"
SHAPES = ("qwen2.5-1.5b", "qwen2.5-0.5b")  # the shapes configs/gpu-dummy.yaml serves
MODELS_VAR = "${TRIAGE_DUMMY_MODELS:-/tmp/triage-dummy-models}"
# What the engines skip to start within a few minutes, and why each keeps the measurement honest; the summary
# JSON carries this text next to the flags actually passed.
SHORTCUTS = {
    "--load-format dummy": "random weights of the real architecture: speed and memory as with real weights, text is "
    "noise (no download, no disk read)",
    "--enforce-eager": "no torch.compile and no CUDA-graph capture (saves minutes per engine); decode is slower "
    "than a production engine at low concurrency, and direct and Triage go to the same engines, so the ratios "
    "compare like with like",
    "--kv-cache-memory-bytes (launch.kv_cache_memory_gib)": "a fixed KV cache: no start-up memory profiling of "
    "free memory, so the engines start at the same time without mis-sizing each other; shares still checked",
    "--max-model-len 8192": "a small context keeps activation memory small; prompts are cut to 4096 bytes",
    "VLLM_CACHE_ROOT on /tmp, fresh machine": "no compile cache from an earlier run (nothing is compiled anyway)",
}


@dataclass
class Stack:
    """A running (or exited) `triage serve` and where its parts listen."""

    config: dict[str, Any]  # the config as written for this run
    config_path: Path
    log_path: Path  # the router's output, engine output included as `[model] ...` lines
    process: subprocess.Popen[bytes]
    started_s: float  # time.monotonic() at spawn
    ready_s: float | None = None  # seconds from spawn to /ready

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config['server']['port']}"

    @property
    def engines(self) -> dict[str, str]:
        """Model -> engine base URL (http://127.0.0.1:PORT, no /v1)."""
        return {m["name"]: f"http://127.0.0.1:{m['launch']['port']}" for m in self.config["models"]}

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""


def make_models(models_dir: Path, timeout_s: float = 120.0) -> None:
    """The dummy model folders (config + tokenizer, no weights), about a second each, in parallel."""
    script = REPO / "scripts" / "make_dummy_model.py"
    procs = [
        subprocess.Popen([sys.executable, str(script), shape, str(models_dir / shape)], stdout=subprocess.DEVNULL)
        for shape in SHAPES
        if not (models_dir / shape / "tokenizer.json").is_file()
    ]
    for p in procs:
        if p.wait(timeout_s) != 0:
            raise RuntimeError(f"make_dummy_model.py exited with {p.returncode}")


def write_config(work: Path, models_dir: Path, *, dry_run: bool) -> tuple[Path, dict[str, Any]]:
    """configs/gpu-dummy.yaml with this run's model folders; in a dry run the simulator replaces vLLM."""
    import yaml

    config = yaml.safe_load(CONFIG.read_text())
    for model in config["models"]:
        launch = model["launch"]
        launch["model"] = launch["model"].replace(MODELS_VAR, str(models_dir))
        if dry_run:
            launch["command"] = [sys.executable, str(SIM_VLLM), "serve"]
    path = work / "gpu-check.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, config


def start(work: Path, models_dir: Path, env: dict[str, str], *, dry_run: bool) -> Stack:
    """Spawn `triage serve` (own session, output to work/triage.log); returns without waiting."""
    config_path, config = write_config(work, models_dir, dry_run=dry_run)
    log_path = work / "triage.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--config", str(config_path)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Stack(config, config_path, log_path, process, time.monotonic())


def wait_ready(stack: Stack, timeout_s: float) -> float:
    """Wait until `/ready` answers 200 (every engine healthy); seconds from spawn to the first time it did.
    Raises RuntimeError with the log's tail when the router exits or `timeout_s` passes."""
    import httpx

    deadline_s = time.monotonic() + timeout_s
    while True:
        if stack.process.poll() is not None:
            raise RuntimeError(f"triage exited with {stack.process.returncode}; log tail:\n{stack.log_text()[-3000:]}")
        try:
            if httpx.get(stack.url + "/ready", timeout=2.0).status_code == 200:
                if stack.ready_s is None:  # the first time: the stack's start-up
                    stack.ready_s = round(time.monotonic() - stack.started_s, 1)
                return stack.ready_s
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline_s:
            raise RuntimeError(f"triage not ready within {timeout_s:.0f} s; log tail:\n{stack.log_text()[-3000:]}")
        time.sleep(1.0)


def engine_leaders(stack: Stack) -> dict[str, int]:
    """Model -> pid of its engine's current leader (= its session id), from the supervisor's log lines."""
    return {m: int(pid) for m, pid in re.findall(r"started engine for (\S+), pid (\d+)", stack.log_text())}


def startup_times(stack: Stack) -> dict[str, float]:
    """Model -> seconds its engine took to answer /health (the supervisor's log lines; the first start)."""
    times: dict[str, float] = {}
    for model, seconds in re.findall(r"engine for (\S+) healthy after (\d+) s", stack.log_text()):
        times.setdefault(model, float(seconds))
    return times


def memory_shares(stack: Stack) -> dict[str, Any]:
    """Each engine's GPU memory (NVML, summed over its session's processes) against its share of the card."""
    from server.supervisor import session_processes
    from server.telemetry.nvml import GIB, read_gpus_once

    readings = read_gpus_once()
    if not readings:
        return {"checked": False, "why": "no NVML (no NVIDIA GPU here)"}
    gpu = readings[0]
    total = gpu.memory_total_bytes
    engines: dict[str, Any] = {}
    for model in stack.config["models"]:
        name, share = model["name"], float(model["launch"]["gpu_memory_utilization"])
        leader = engine_leaders(stack).get(name)
        pids = set(session_processes(leader)) if leader else set()
        used = sum(b for pid, b in gpu.processes.items() if pid in pids)
        engines[name] = {
            "share": share,
            "share_gib": round(share * total / GIB, 2),
            "used_gib": round(used / GIB, 2),
            "kv_cache_gib": model["launch"].get("kv_cache_memory_gib"),
            "within_share": 0 < used <= share * total,
        }
    return {
        "checked": True,
        "gpu": gpu.name,
        "total_gib": round(total / GIB, 1),
        "used_gib": round(gpu.memory_used_bytes / GIB, 1),
        "shares_sum": round(sum(e["share"] for e in engines.values()), 3),
        "engines": engines,
        "all_within_share": all(e["within_share"] for e in engines.values()),
    }


def leftovers(stack: Stack, leaders: dict[str, int]) -> list[int]:
    """Processes of the engines' sessions still alive."""
    from server.supervisor import session_processes

    return [pid for sid in leaders.values() for pid in session_processes(sid)]


def stop(stack: Stack, timeout_s: float = 60.0) -> dict[str, Any]:
    """SIGTERM the router (it stops its engines), SIGKILL its session after `timeout_s`; what was left."""
    leaders = engine_leaders(stack)
    t0 = time.monotonic()
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait(10)
    left = leftovers(stack, leaders)
    for pid in left:  # the engines outlived the router: end them so the machine is clean for what follows
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return {"router_exit": stack.process.returncode, "stop_s": round(time.monotonic() - t0, 1), "leftover": left}
