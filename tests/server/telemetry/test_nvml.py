"""NVML readings: absent (no module, no driver) degrades cleanly; present (a fake pynvml) fills gauges and load."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

import pytest

from server.load import LoadBoard
from server.telemetry.metrics import Metrics
from server.telemetry.nvml import NvmlReader, read_gpus_once
from tests.server.telemetry.fake_pynvml import FakeGpu, install

GIB = 1024**3


def gauge(metrics: Metrics, name: str, **labels: str) -> Any:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def worker() -> Any:
    """A child process in its own process group, standing in for a launched engine's GPU worker."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield process
    process.kill()
    process.wait(10)


async def test_no_pynvml_module_logs_once_and_reads_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    load, metrics = LoadBoard(), Metrics()
    reader = NvmlReader(load, metrics, interval_s=0.01)
    with caplog.at_level(logging.INFO, "server.telemetry.nvml"):
        await reader.start()
        await reader.poll_once()
        await reader.stop()
    assert not reader.available and load.gpus == {}
    assert [r.message for r in caplog.records] == ["NVML unavailable (nvidia-ml-py is not installed); no GPU readings"]
    assert b"triage_gpu_utilization_ratio{" not in metrics.render()
    assert read_gpus_once() is None


async def test_nvml_init_error_degrades_cleanly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install(monkeypatch, init_error="NVML Shared Library Not Found")
    reader = NvmlReader(LoadBoard(), Metrics())
    with caplog.at_level(logging.INFO, "server.telemetry.nvml"):
        await reader.start()
        await reader.stop()
    assert not reader.available
    assert "NVML unavailable (NVML Shared Library Not Found)" in caplog.text


async def test_readings_fill_gauges_load_and_the_engine_map(
    monkeypatch: pytest.MonkeyPatch, worker: subprocess.Popen[bytes]
) -> None:
    # GPU 0 runs a launched engine (found by its worker's process group) and a stranger's process;
    # GPU 1 runs an engine Triage did not launch, known only from its config's `gpu`.
    gpus = [
        FakeGpu(
            total=80 * GIB,
            used=60 * GIB,
            utilization_percent=87,
            processes={worker.pid: 30 * GIB, 999_999_999: 2 * GIB},
        ),
        FakeGpu(total=80 * GIB, used=1 * GIB, utilization_percent=0, name="Fake H100 #2"),
    ]
    nvml = install(monkeypatch, gpus)
    load, metrics = LoadBoard(), Metrics()
    reader = NvmlReader(
        load,
        metrics,
        engine_groups=lambda: {"coder": os.getpgid(worker.pid)},
        configured_gpus={"coder": ["0"], "remote-box": ["1"]},
        interval_s=0.01,
    )
    await reader.start()
    try:
        assert load.gpus["0"].utilization == pytest.approx(0.87)
        assert load.gpus["0"].memory_used_bytes == 60 * GIB and load.gpus["0"].memory_total_bytes == 80 * GIB
        assert load.gpus["0"].read_at_s > 0 and load.gpus["1"].memory_used_bytes == 1 * GIB
        assert gauge(metrics, "triage_gpu_utilization_ratio", gpu="0") == pytest.approx(0.87)
        assert gauge(metrics, "triage_gpu_memory_used_bytes", gpu="0") == 60 * GIB
        assert gauge(metrics, "triage_gpu_memory_total_bytes", gpu="1") == 80 * GIB
        assert gauge(metrics, "triage_engine_gpu_memory_used_bytes", model="coder", gpu="0") == 30 * GIB
        assert reader.engines_on_gpu == {"0": ["coder"], "1": ["remote-box"]}

        gpus[0].utilization_percent = 12  # the background task picks up changes
        gpus[0].processes = {}  # the engine left the GPU
        for _ in range(200):
            await reader.poll_once()
            if load.gpus["0"].utilization == pytest.approx(0.12):
                break
        assert gauge(metrics, "triage_engine_gpu_memory_used_bytes", model="coder", gpu="0") is None
        assert reader.engines_on_gpu["0"] == ["coder"]  # not seen by PID now: the config's gpu says where
    finally:
        await reader.stop()
    assert nvml.state["initialised"] == 0  # nvmlShutdown balanced nvmlInit


async def test_read_errors_keep_the_last_readings_and_log_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failing: list[str] = []
    install(monkeypatch, [FakeGpu(total=10 * GIB, used=4 * GIB, utilization_percent=50)], read_error=failing)
    load, metrics = LoadBoard(), Metrics()
    reader = NvmlReader(load, metrics)
    await reader.start()
    failing.append("GPU is lost")
    with caplog.at_level(logging.INFO, "server.telemetry.nvml"):
        for _ in range(3):
            await reader.poll_once()
        failing.clear()
        await reader.poll_once()
    await reader.stop()
    assert load.gpus["0"].memory_used_bytes == 4 * GIB
    messages = [r.message for r in caplog.records]
    assert messages == ["NVML read failed (GPU is lost); keeping the last GPU readings", "NVML reads work again"]
