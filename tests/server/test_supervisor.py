"""The engine supervisor against a fake `vllm serve` (fake_vllm.py): argv, health wait, restart, no orphans."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from server.config import ConfigError, ModelConfig, Profile, gpu_shares, load_config, parse_config
from server.load import LoadBoard
from server.supervisor import (
    LaunchError,
    Supervisor,
    build_argv,
    build_env,
    free_port,
    session_processes,
    with_parent_death_signal,
)
from server.telemetry.metrics import Metrics
from tests.server.telemetry.fake_pynvml import FakeGpu, install

FAKE_VLLM = str(Path(__file__).with_name("fake_vllm.py"))
REPO = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and PR_SET_PDEATHSIG")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


async def async_wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def records(state: Path) -> list[dict[str, Any]]:
    """What each fake engine start wrote: argv, pid, child pid (oldest first)."""
    files = sorted(state.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in files]


def all_pids(state: Path) -> list[int]:
    return [pid for r in records(state) for pid in (r["pid"], r["child"]) if pid]


def launch_block(state: Path, **overrides: Any) -> dict[str, Any]:
    env = {"FAKE_VLLM_DIR": str(state), **overrides.pop("env", {})}
    return {
        "model": "org/fake-model",
        "command": [sys.executable, FAKE_VLLM, "serve"],
        "env": env,
        "gpu_memory_utilization": 0.3,
        "startup_timeout_s": 15,
        "stop_timeout_s": 3,
        "restart": {"max_restarts": 3, "backoff_initial_s": 0.1, "backoff_max_s": 0.4},
        **overrides,
    }


def model(name: str, state: Path, **launch: Any) -> ModelConfig:
    return ModelConfig.model_validate({"name": name, "launch": launch_block(state, **launch)})


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "fake-vllm"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def no_leftovers(state: Path) -> Any:
    """Every test ends with every fake engine and worker gone (kill stragglers so one failure stays one)."""
    yield
    left = [pid for pid in all_pids(state) if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running: {left}"


# -- argv, environment, config ---------------------------------------------------------------------------


def test_argv_has_every_flag_and_extra_args_last() -> None:
    m = ModelConfig.model_validate(
        {
            "name": "coder",
            "served_name": "qwen-coder",
            "context_length": 16384,
            "profile": {"max_num_seqs": 128},
            "launch": {
                "model": "Qwen/Qwen2.5-Coder-7B-Instruct",
                "gpu_memory_utilization": 0.4,
                "extra_args": ["--load-format", "dummy", "--enforce-eager"],
            },
        }
    )
    assert build_argv(m, 8123) == [
        sys.executable,
        "-m",
        "vllm.entrypoints.cli.main",
        "serve",
        "Qwen/Qwen2.5-Coder-7B-Instruct",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--served-model-name",
        "qwen-coder",
        "--gpu-memory-utilization",
        "0.4",
        "--max-model-len",
        "16384",
        "--max-num-seqs",
        "128",
        "--load-format",
        "dummy",
        "--enforce-eager",
    ]


def test_explicit_limits_and_command_win() -> None:
    m = ModelConfig.model_validate(
        {
            "name": "fast",
            "launch": {"model": "/models/q", "command": ["vllm", "serve"], "max_model_len": 9000, "max_num_seqs": 64},
        }
    )
    argv = build_argv(m, 9)
    assert argv[:3] == ["vllm", "serve", "/models/q"]
    assert argv[argv.index("--max-model-len") + 1] == "9000"
    assert argv[argv.index("--max-num-seqs") + 1] == "64"


def test_env_pins_gpu_and_keeps_the_key_off_the_command_line() -> None:
    m = ModelConfig.model_validate(
        {
            "name": "a",
            "gpu": "1",
            "api_key": "sk-local",
            "launch": {"model": "m", "env": {"VLLM_LOGGING_LEVEL": "DEBUG"}},
        }
    )
    env = build_env(m, {"PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["VLLM_API_KEY"] == "sk-local" and "sk-local" not in build_argv(m, 1)
    assert env["VLLM_LOGGING_LEVEL"] == "DEBUG" and env["PATH"] == "/bin"


@linux_only
def test_parent_death_signal_trampoline_execs_the_command() -> None:
    argv = with_parent_death_signal([sys.executable, "-c", "import os; print(os.getpid())"])
    process = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    assert process.stdout.strip().isdigit()


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (
            [{"name": "a", "endpoints": ["http://h:1/v1"], "launch": {"model": "m"}}],
            r"models\[0\]\.endpoints: Value error, drop endpoints",
        ),
        ([{"name": "a"}], r"models\[0\]\.endpoints: Value error, give at least one"),  # no '+' in either
        ([{"name": "a", "launch": {"model": "m", "extra_args": ["--port=9"]}}], "use launch.port"),
        (
            [{"name": "a", "context_length": 32768, "launch": {"model": "m", "max_model_len": 8192}}],
            "below context_length",
        ),
        (
            [
                {"name": "coder", "gpu": "0", "launch": {"model": "m", "gpu_memory_utilization": 0.5}},
                {"name": "chat", "gpu": "0", "launch": {"model": "m", "gpu_memory_utilization": 0.45}},
                {"name": "fast", "gpu": "1", "launch": {"model": "m", "gpu_memory_utilization": 0.9}},
            ],
            "GPU 0 ask for coder 0.5 + chat 0.45 = 0.95",
        ),
        (
            [{"name": "a", "launch": {"model": "m", "port": 8080, "gpu_memory_utilization": 0.1}}],
            "launch.port 8080 is used twice",
        ),
    ],
)
def test_config_errors_name_the_fix(models: list[dict[str, Any]], message: str) -> None:
    if "0.95" in message:  # exactly at the limit passes; a hair over fails
        parse_config({"models": models})
        models[1]["launch"]["gpu_memory_utilization"] = 0.46
        message = "chat 0.46 = 0.96"
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        parse_config({"models": models})


def test_fixed_kv_cache_is_a_flag_the_supervisor_owns() -> None:
    m = ModelConfig.model_validate(
        {"name": "a", "launch": {"model": "m", "kv_cache_memory_gib": 1.5, "extra_args": ["--enforce-eager"]}}
    )
    argv = build_argv(m, 9)
    assert argv[-3:] == ["--kv-cache-memory-bytes", str(3 * 2**29), "--enforce-eager"]  # before extra_args
    with pytest.raises(ConfigError, match=r"launch\.kv_cache_memory_gib"):
        parse_config({"models": [{"name": "a", "launch": {"model": "m", "extra_args": ["--kv-cache-memory-bytes=9"]}}]})


def test_fixed_port_derives_the_endpoint() -> None:
    config = parse_config({"models": [{"name": "a", "launch": {"model": "m", "port": 8011, "host": "0.0.0.0"}}]})
    assert config.models[0].endpoints == ["http://127.0.0.1:8011/v1"]


# -- start, health, stop ---------------------------------------------------------------------------------


async def test_starts_engines_on_free_ports_and_stops_them(state: Path) -> None:
    models = [model("coder", state, extra_args=["--load-format", "dummy"]), model("chat", state)]
    load = LoadBoard()
    supervisor = Supervisor(models, load, health_poll_s=0.05)
    endpoints = await supervisor.start()
    try:
        assert all(m.endpoints == [] for m in models)  # the config is left alone: start() returns the endpoints
        ports = [int(endpoints[m.name][0].rsplit(":", 1)[1].split("/")[0]) for m in models]
        assert len(set(ports)) == 2
        async with httpx.AsyncClient() as client:
            for m in models:
                listed = (await client.get(endpoints[m.name][0] + "/models")).json()
                assert listed["data"][0]["id"] == m.name
        seen = {r["argv"][r["argv"].index("--served-model-name") + 1]: r["argv"] for r in records(state)}
        assert seen["coder"] == build_argv(models[0], ports[0])[2:]  # minus interpreter and script
        assert seen["coder"][-2:] == ["--load-format", "dummy"]
        assert set(supervisor.process_groups()) == {"coder", "chat"}
        assert all(load.engine(m.name).healthy for m in models)
    finally:
        await supervisor.stop()
    assert not [pid for pid in all_pids(state) if alive(pid)]


@pytest.mark.parametrize("fixed_cache", [True, False])
async def test_engines_take_turns_only_where_a_shared_gpu_has_a_cache_sized_from_free_memory(
    state: Path, fixed_cache: bool, caplog: pytest.LogCaptureFixture
) -> None:
    kv = {"kv_cache_memory_gib": 2.0} if fixed_cache else {}
    slow = {"FAKE_VLLM_HEALTH_DELAY_S": "0.5"}  # /health answers 503 this long: starts overlap or they do not
    models = [model("coder", state, env=slow, **kv), model("chat", state, env=slow, **kv), model("alone", state)]
    models[2].gpu = "1"  # the only engine on its GPU: nothing to mislead
    supervisor = Supervisor(models, LoadBoard(), health_poll_s=0.05)
    caplog.set_level("INFO", logger="server.supervisor")
    await supervisor.start()
    try:
        events = [
            " ".join(r.getMessage().split()[:4]).rstrip(",")
            for r in caplog.records
            if r.getMessage().startswith(("started engine for", "engine for"))
        ]
        if fixed_cache:
            assert set(events[:3]) == {f"started engine for {m}" for m in ("coder", "chat", "alone")}, events
        else:
            assert events == [
                "started engine for alone",
                "engine for alone healthy",
                "started engine for coder",
                "engine for coder healthy",
                "started engine for chat",
                "engine for chat healthy",
            ], events
    finally:
        await supervisor.stop()


async def test_health_wait_times_out_with_a_clear_message(state: Path) -> None:
    m = model("slow", state, startup_timeout_s=0.6, env={"FAKE_VLLM_HEALTH_DELAY_S": "30"})
    with pytest.raises(
        LaunchError,
        match=r"did not answer http://127\.0\.0\.1:\d+/health within 0\.6 s "
        r"\(launch\.startup_timeout_s\)",
    ) as caught:
        await Supervisor([m], LoadBoard(), health_poll_s=0.05).start()
    assert "[slow] INFO:     Application startup complete." in str(caught.value)
    assert records(state) and not [pid for pid in all_pids(state) if alive(pid)]


async def test_engine_that_dies_while_starting_shows_its_output(state: Path) -> None:
    good = model("good", state)
    bad = model("bad", state, env={"FAKE_VLLM_EXIT_AT_ONCE": "1"})
    with pytest.raises(LaunchError, match=r"engine for 'bad' exited with code 1 while starting") as caught:
        await Supervisor([good, bad], LoadBoard(), health_poll_s=0.05).start()
    assert "CUDA out of memory (pretend)" in str(caught.value)
    assert not [pid for pid in all_pids(state) if alive(pid)]  # the healthy one was stopped too


async def test_missing_command_is_a_launch_error(state: Path) -> None:
    m = model("x", state, command=["no-such-vllm-binary", "serve"])
    with pytest.raises(LaunchError, match="'no-such-vllm-binary' is not an executable on PATH"):
        await Supervisor([m], LoadBoard()).start()


@linux_only
async def test_stop_kills_workers_and_engines_that_ignore_sigterm(state: Path) -> None:
    m = model("stubborn", state, stop_timeout_s=0.5, env={"FAKE_VLLM_CHILD": "1", "FAKE_VLLM_IGNORE_SIGTERM": "1"})
    supervisor = Supervisor([m], LoadBoard(), health_poll_s=0.05)
    await supervisor.start()
    (record,) = records(state)
    assert alive(record["pid"]) and alive(record["child"])
    t0 = time.monotonic()
    await supervisor.stop()
    assert time.monotonic() - t0 < 5
    assert not alive(record["pid"]) and not alive(record["child"])
    assert session_processes(record["pid"]) == []


# -- crash, restart, give up -----------------------------------------------------------------------------


@linux_only
async def test_crash_marks_unhealthy_restarts_with_backoff_and_recovers(state: Path) -> None:
    m = model(
        "coder",
        state,
        env={
            "FAKE_VLLM_CRASH_AFTER_S": "1.2",
            "FAKE_VLLM_CRASH_TIMES": "1",
            "FAKE_VLLM_CHILD": "1",
            "FAKE_VLLM_HEALTH_DELAY_S": "0.5",
        },
    )
    load, metrics = LoadBoard(), Metrics()
    supervisor = Supervisor([m], load, metrics, health_poll_s=0.05)
    await supervisor.start()
    try:
        first = records(state)[0]
        await async_wait_until(lambda: not load.engine("coder").healthy, 5, "the crash to be noticed")
        assert "engine exited with code 3; restarting" in load.engine("coder").unhealthy_reason
        await async_wait_until(lambda: len(records(state)) == 2, 5, "the restart")
        assert not load.engine("coder").healthy  # restarted, not yet healthy (its /health waits 0.5 s)
        await async_wait_until(lambda: load.engine("coder").healthy, 10, "the restarted engine's health")
        assert not alive(first["pid"]) and not alive(first["child"])  # the dead leader's worker was killed
        assert metrics.registry.get_sample_value("triage_engine_restarts_total", {"model": "coder"}) == 1
        assert supervisor.process_groups()["coder"] == records(state)[1]["pid"]
    finally:
        await supervisor.stop()


async def test_gives_up_after_max_restarts(state: Path) -> None:
    m = model(
        "flaky",
        state,
        restart={"max_restarts": 1, "backoff_initial_s": 0.05, "backoff_max_s": 0.1},
        env={"FAKE_VLLM_CRASH_AFTER_S": "0.2"},
    )
    load = LoadBoard()
    supervisor = Supervisor([m], load, health_poll_s=0.05)
    await supervisor.start()
    try:
        await async_wait_until(lambda: "gave up" in load.engine("flaky").unhealthy_reason, 10, "giving up")
        assert "gave up after 1 restarts" in load.engine("flaky").unhealthy_reason
        assert len(records(state)) == 2 and not load.engine("flaky").healthy
    finally:
        await supervisor.stop()


# -- memory check against (fake) NVML ----------------------------------------------------------------------


async def test_memory_check_names_models_and_numbers(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gib = 1024**3
    install(monkeypatch, [FakeGpu(total=80 * gib, used=70 * gib, processes={4242: 69 * gib})])
    models = [model("coder", state), model("fast", state, gpu_memory_utilization=0.2)]
    with pytest.raises(
        LaunchError,
        match=r"GPU 0 \(Fake H100\) has 10\.0 of 80\.0 GiB free, but its engines "
        r"need 40\.0 GiB \(coder 0\.3 = 24\.0 GiB, fast 0\.2 = 16\.0 GiB\); "
        r"held by pid 4242 \(69\.0 GiB\)",
    ):
        await Supervisor(models, LoadBoard()).start()
    assert records(state) == []  # refused before starting anything


# -- a real `triage serve` process and its signals ---------------------------------------------------------


def write_config(tmp_path: Path, state: Path, **env: str) -> Path:
    launch = launch_block(state, env={"FAKE_VLLM_CHILD": "1", **env}, startup_timeout_s=60)
    config = {
        "server": {"port": free_port(), "log_level": "info"},
        "policy": {"name": "static"},
        "models": [
            {"name": "coder", "roles": ["code"], "launch": launch},
            {"name": "chat", "roles": ["chat"], "launch": launch},
        ],
    }
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_triage(config: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = yaml.safe_load(config.read_text())["server"]["port"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


def ready(base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def triage(tmp_path: Path, state: Path) -> Any:
    processes: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> tuple[subprocess.Popen[bytes], str]:
        process, base = start_triage(write_config(tmp_path, state, **env))
        processes.append(process)
        return process, base

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@linux_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_triage_serve_routes_to_launched_engines_and_cleans_up_on_signal(
    triage: Any, state: Path, signum: signal.Signals
) -> None:
    process, base = triage()
    wait_until(lambda: ready(base), 30, "triage to become ready")
    answer = httpx.post(
        base + "/v1/chat/completions",
        timeout=10,
        json={"model": "auto", "messages": [{"role": "user", "content": "write a python function"}]},
    )
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "fake answer"
    assert answer.headers["x-triage-model"] in {"coder", "chat"}
    pids = all_pids(state)
    assert len(pids) == 4 and all(alive(pid) for pid in pids)  # two engines, each with a worker
    process.send_signal(signum)
    process.wait(30)
    assert not [pid for pid in pids if alive(pid)]


@linux_only
def test_signal_during_engine_start_up_stops_it(triage: Any, state: Path) -> None:
    process, _ = triage(FAKE_VLLM_HEALTH_DELAY_S="120")
    wait_until(lambda: len(records(state)) == 1, 30, "the first engine to start")
    t0 = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    assert time.monotonic() - t0 < 15
    assert len(records(state)) == 1  # the second engine was never started
    assert not [pid for pid in all_pids(state) if alive(pid)]


@linux_only
def test_engines_die_with_a_sigkilled_triage(triage: Any, state: Path) -> None:
    process, base = triage()
    wait_until(lambda: ready(base), 30, "triage to become ready")
    pids = all_pids(state)
    process.kill()  # no shutdown code runs: PR_SET_PDEATHSIG must do it
    process.wait(10)
    wait_until(lambda: not [pid for pid in pids if alive(pid)], 15, f"engines {pids} to exit")


# -- the shipped GPU configs -----------------------------------------------------------------------------


def test_gpu_dummy_config_launches_two_dummy_engines() -> None:
    config = load_config(REPO / "configs" / "gpu-dummy.yaml")
    assert [m.endpoints for m in config.models] == [["http://127.0.0.1:8201/v1"], ["http://127.0.0.1:8202/v1"]]
    argv = build_argv(config.models[0], 8201)
    models_dir = os.environ.get("TRIAGE_DUMMY_MODELS", "/tmp/triage-dummy-models")
    assert argv[:5] == [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", f"{models_dir}/qwen2.5-1.5b"]
    assert argv[-3:] == ["--load-format", "dummy", "--enforce-eager"]


def test_single_gpu_config_fits_one_80gb_card() -> None:
    missing = {"peak_decode_tok_per_s", "contention_sensitivity"} - set(Profile.model_fields)
    if missing:
        pytest.skip(f"the policy's Profile fields {sorted(missing)} are not merged yet")
    config = load_config(REPO / "configs" / "single-gpu.yaml")
    assert config.policy.name == "triage"
    assert {m.launch.model for m in config.models if m.launch} == {
        "Qwen/Qwen2.5-Coder-7B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
        "Qwen/Qwen2.5-1.5B-Instruct",
    }
    assert sum(gpu_shares(config.models)["0"].values()) <= 0.9
