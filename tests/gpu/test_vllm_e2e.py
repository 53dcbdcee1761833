"""End to end on a GPU: `triage serve` launches real vLLM engines (Qwen2.5 shapes, dummy weights, from
configs/gpu-dummy.yaml), routes `auto` requests, streams, reads vLLM's /metrics and NVML, restarts a killed
engine, and shuts down leaving no process behind.

Skipped without an NVIDIA GPU (NVML) and an importable vLLM. Takes ~4-5 minutes, mostly engine start-up (the two
engines have fixed KV caches, so they start at the same time). On the lent GPU machine these tests run inside
`bash scripts/gpu_check.sh`, attached to the router it already started (TRIAGE_E2E_ATTACH="PID:LOG", the router's
pid and log file) instead of starting their own; the check runs them in three groups: `-k "not killed and not
sigterm"` first, `-k killed` and `-k sigterm` later. When the classifier's encoder has random weights
(TRIAGE_ENCODER_WEIGHTS=dummy: the real ones do not fit one device call) its categories are noise, and the auto
routing test checks the served model against the router's own dry run of the same request instead.

In the check's dry run on a CPU machine (`bash scripts/gpu_check.sh --dry-run`, TRIAGE_E2E_SIMULATED=1 beside
TRIAGE_E2E_ATTACH) the same tests run against simulated engines (tests/gpu/sim_vllm.py: vLLM's argv, streams,
aborts and /metrics names); only what needs a GPU (NVML memory, engine worker processes, the overhead bound
measured with a GPU classifier) is skipped or relaxed there. Without both variables they need a GPU and vLLM.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.config import load_config
from server.supervisor import session_processes
from server.telemetry.nvml import GIB, read_gpus_once

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "gpu-dummy.yaml"
TRIAGE = "http://127.0.0.1:8200"
ENGINES = {"coder": ("qwen2.5-1.5b", "http://127.0.0.1:8201"), "chat": ("qwen2.5-0.5b", "http://127.0.0.1:8202")}
READY_TIMEOUT_S = 600.0  # two engines at the same time, ~2 min in eager mode
RESTART_TIMEOUT_S = 420.0
ATTACH = os.environ.get("TRIAGE_E2E_ATTACH", "")  # "PID:LOG" of a running `triage serve` on CONFIG
DUMMY_ENCODER = os.environ.get("TRIAGE_ENCODER_WEIGHTS") == "dummy"
SIMULATED = bool(ATTACH) and os.environ.get("TRIAGE_E2E_SIMULATED") == "1"  # the check's dry run: no GPU


def _gpu_and_vllm() -> str | None:
    """Why the test cannot run here, or None."""
    if SIMULATED:
        return None
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not importable"
    readings = read_gpus_once()
    if not readings:
        return "no NVIDIA GPU (NVML found none)"
    return None


_SKIP = _gpu_and_vllm()
_GPU = [] if SIMULATED else [pytest.mark.gpu]  # the `gpu` marker skips a test wherever CUDA is missing
pytestmark = [*_GPU, pytest.mark.skipif(_SKIP is not None, reason=f"GPU e2e: {_SKIP}")]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


@dataclass
class Attached:
    """A router this test did not start (gpu_check.sh's): what the tests use of `subprocess.Popen`."""

    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not alive(self.pid):
            self.returncode = -1  # not our child: its exit code belongs to its parent
        return self.returncode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        deadline_s = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline_s:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.2)
        return -1


@dataclass
class Triage:
    process: subprocess.Popen[bytes] | Attached
    log_path: Path
    client: httpx.Client

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def engine_leaders(self) -> list[int]:
        """Triage's direct children: the engine leaders, each the first process of its own session."""
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            if int(text[text.rfind(")") + 2 :].split()[1]) == self.process.pid:
                out.append(int(stat.parent.name))
        return out

    def metric(self, text: str, name: str, **labels: str) -> float | None:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                got = ",".join(sorted(re.findall(r'(\w+="[^"]*")', line.split("}")[0]))) if "{" in line else ""
                if got == want:
                    return float(line.rsplit(" ", 1)[1])
        return None


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, triage: Triage | None = None, poll_s: float = 1.0
) -> None:
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if triage is not None and triage.process.poll() is not None:
            pytest.fail(f"triage exited ({triage.process.returncode}) waiting for {what}:\n{triage.log_tail()}")
        if time.monotonic() > deadline_s:
            pytest.fail(
                f"timed out after {timeout_s:g} s waiting for {what}" + (f":\n{triage.log_tail()}" if triage else "")
            )
        time.sleep(poll_s)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def triage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Triage]:
    if ATTACH:
        pid, log_file = ATTACH.split(":", 1)
        attached = Triage(Attached(int(pid)), Path(log_file), httpx.Client(base_url=TRIAGE, timeout=120))
        wait_for(lambda: answers(TRIAGE + "/health"), 60, "the attached router", attached)  # alive; engines may not be
        yield attached
        attached.client.close()
        return
    models = tmp_path_factory.mktemp("dummy-models")
    for shape, _ in ENGINES.values():
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "make_dummy_model.py"), shape, str(models / shape)],
            check=True,
            timeout=120,
        )
    out_dir = Path(os.environ.get("OUT") or tmp_path_factory.mktemp("logs"))
    log_path = out_dir / "triage-gpu-e2e.log"
    env = {
        **os.environ,
        "TRIAGE_DUMMY_MODELS": str(models),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--config", str(CONFIG)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    t = Triage(process, log_path, httpx.Client(base_url=TRIAGE, timeout=120))
    try:
        wait_for(lambda: answers(TRIAGE + "/ready"), READY_TIMEOUT_S, "triage and its engines", t, poll_s=2.0)
        yield t
    finally:
        t.client.close()
        if process.poll() is None:  # a failed test left it running: stop it the same way, then be sure
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)


def openai_client() -> object:
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=TRIAGE + "/v1", api_key="unused", timeout=120)


def test_models_are_listed(triage: Triage) -> None:
    listed = triage.client.get("/v1/models").json()
    assert {m["id"] for m in listed["data"]} >= set(ENGINES)


def test_auto_routes_by_task_and_answers(triage: Triage) -> None:
    client = openai_client()
    prompt = "Write a Python function that reverses a linked list."
    raw = client.chat.completions.with_raw_response.create(  # type: ignore[attr-defined]
        model="auto",
        max_tokens=16,
        messages=[{"role": "user", "content": prompt}],
    )
    answer = raw.parse()
    if DUMMY_ENCODER:  # categories are noise: the relay must serve what the router's own dry run decides
        plan = triage.client.post(
            "/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": prompt}]}
        )
        assert raw.headers["x-triage-category"] == plan.json()["category"], plan.text
        assert raw.headers["x-triage-model"] == plan.json()["model"], (raw.headers, plan.text)
    else:
        assert raw.headers["x-triage-model"] == "coder", raw.headers  # code quality 0.624 (its 1.5B profile) vs 0.5
        assert raw.headers["x-triage-category"] == "code"
    assert answer.model == raw.headers["x-triage-model"] and answer.usage.completion_tokens > 0
    overhead_ms = float(raw.headers["x-triage-overhead-ms"])
    assert 0 <= overhead_ms < (1000 if SIMULATED else 50)  # simulated: the classifier runs on a shared CPU


def test_streaming_relays_every_token(triage: Triage) -> None:
    client = openai_client()
    stream = client.chat.completions.create(  # type: ignore[attr-defined]
        model="chat",
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
        messages=[{"role": "user", "content": "Tell me a story."}],
    )
    deltas, usage = 0, None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content is not None:
            deltas += 1
        if chunk.usage is not None:
            usage = chunk.usage
    assert usage is not None and usage.completion_tokens == 32
    assert deltas >= 16  # vLLM sends one delta per token (a few may merge across detokenizer boundaries)


def vllm_sum(root: str, name: str) -> float:
    """A vLLM gauge or counter summed over its label sets, e.g. vllm:num_requests_running."""
    text = httpx.get(root + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_cancelled_stream_is_aborted_in_the_engine(triage: Triage) -> None:
    root = ENGINES["chat"][1]
    body = {
        "model": "chat",
        "stream": True,
        "max_tokens": 6000,  # ~20 s of decoding: the engine would still be busy long after the wait below
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "Count to ten thousand."}],
    }
    with httpx.stream("POST", TRIAGE + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        events, running = 0, 0.0
        for line in response.iter_lines():
            events += line.startswith("data: {")
            if events >= 8:  # read the engine while the stream is open: leaving the loop closes the connection
                running = vllm_sum(root, "vllm:num_requests_running")
                break
        assert running >= 1
    # the client hung up mid-stream: Triage must close its upstream stream, and vLLM abort the request

    def router_dropped() -> bool:
        text = triage.client.get("/metrics").text
        return not triage.metric(text, "triage_in_flight_requests", model="chat")

    wait_for(router_dropped, 10, "the router to drop the cancelled stream", triage, poll_s=0.1)
    time.sleep(1.0)  # the abort reaches the engine core; a step already scheduled finishes
    before = vllm_sum(root, "vllm:generation_tokens_total")
    time.sleep(2.0)  # still generating, the engine would add hundreds of tokens here (a few ms per token)
    assert vllm_sum(root, "vllm:generation_tokens_total") == before, "the engine kept generating for nobody"


def test_live_vllm_metrics(triage: Triage) -> None:
    for _, root in ENGINES.values():
        assert "vllm:num_requests_running" in httpx.get(root + "/metrics", timeout=10).text

    def one(i: int) -> int:
        r = httpx.post(
            TRIAGE + "/v1/completions",
            timeout=300,
            json={"model": "coder", "prompt": f"request {i} " * 200, "max_tokens": 256, "ignore_eos": True},
        )
        return r.status_code

    peak_running = 0.0
    with ThreadPoolExecutor(64) as pool:
        futures = [pool.submit(one, i) for i in range(64)]
        deadline_s = time.monotonic() + 120
        while not all(f.done() for f in futures) and time.monotonic() < deadline_s:
            text = triage.client.get("/metrics").text
            peak_running = max(
                peak_running, triage.metric(text, "triage_engine_running_requests", model="coder") or 0.0
            )
            time.sleep(0.2)
        assert [f.result(timeout=300) for f in futures] == [200] * 64
    assert peak_running > 0, "the probe never saw vllm:num_requests_running move"


@pytest.mark.skipif(SIMULATED, reason="simulated engines hold no GPU memory")
def test_nvml_and_engine_memory_within_shares(triage: Triage) -> None:
    text = triage.client.get("/metrics").text
    total = triage.metric(text, "triage_gpu_memory_total_bytes", gpu="0")
    used = triage.metric(text, "triage_gpu_memory_used_bytes", gpu="0")
    assert total and used
    assert triage.metric(text, "triage_gpu_utilization_ratio", gpu="0") is not None
    shares = {m.name: m.launch.gpu_memory_utilization for m in load_config(CONFIG).models if m.launch}
    held = 0.0
    for name in ENGINES:
        engine_bytes = triage.metric(text, "triage_engine_gpu_memory_used_bytes", model=name, gpu="0")
        assert engine_bytes is not None and engine_bytes > 1 * GIB, f"{name}: engine not found on GPU 0 by PID"
        # fixed KV caches: weights + cache + activations, within the share vLLM checked at start
        assert engine_bytes <= shares[name] * total, f"{name}: {engine_bytes / GIB:.1f} GiB over its share"
        assert triage.metric(text, "triage_engine_healthy", model=name) == 1.0
        held += engine_bytes
    assert used >= held


def test_killed_engine_is_routed_around_and_restarted(triage: Triage) -> None:
    # from the supervisor's log line, not /proc/PID/cmdline: vLLM retitles its processes (setproctitle)
    leader = int(re.findall(r"started engine for chat, pid (\d+)", triage.log_tail(10**7))[-1])
    assert leader in triage.engine_leaders()
    os.killpg(leader, signal.SIGKILL)  # the whole engine, workers too, as an OOM kill or a driver fault would

    def chat_unhealthy() -> bool:
        return triage.metric(triage.client.get("/metrics").text, "triage_engine_healthy", model="chat") == 0.0

    wait_for(chat_unhealthy, 30, "chat to be marked unhealthy", triage, poll_s=0.2)
    r = triage.client.post(
        "/v1/chat/completions",
        json={"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hello there, how are you?"}]},
    )
    assert r.status_code == 200 and r.headers["x-triage-model"] == "coder"  # routed around the dead engine
    wait_for(lambda: not chat_unhealthy(), RESTART_TIMEOUT_S, "chat to be restarted", triage, poll_s=2.0)
    assert triage.metric(triage.client.get("/metrics").text, "triage_engine_restarts_total", model="chat") == 1
    r = triage.client.post(
        "/v1/chat/completions",
        json={"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hello again"}]},
    )
    assert r.status_code == 200


def test_sigterm_stops_everything(triage: Triage) -> None:
    sessions = triage.engine_leaders()
    members = {pid for sid in sessions for pid in session_processes(sid)}
    assert len(sessions) == len(ENGINES)
    assert len(members) > len(sessions) or SIMULATED  # vLLM runs workers (EngineCore); the simulator does not
    before = read_gpus_once() or []
    gpu_pids = {pid for r in before for pid in r.processes}
    triage.process.send_signal(signal.SIGTERM)
    triage.process.wait(180)
    left = [pid for sid in sessions for pid in session_processes(sid)]
    assert not left, f"engine processes left behind: {left}\n{triage.log_tail()}"
    after = read_gpus_once() or []
    assert not gpu_pids & {pid for r in after for pid in r.processes}, "engine processes still hold the GPU"
    assert "engine for coder stopped" in triage.log_tail(20000)
