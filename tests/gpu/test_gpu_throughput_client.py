"""The GPU benchmark's CPU-side parts in CI: its streaming client and statistics against a fake engine, and its
refusal to run without a GPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.telemetry.nvml import read_gpus_once

from .fakes import fake_vllm

REPO = Path(__file__).resolve().parents[2]


def load_benchmark() -> Any:
    path = REPO / "benchmarks" / "gpu_throughput.py"
    spec = importlib.util.spec_from_file_location("gpu_throughput", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules["gpu_throughput"] = importlib.util.module_from_spec(spec)  # dataclasses need it
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_engine() -> Iterator[str]:
    with fake_vllm("chat") as base:
        yield base


def test_client_streams_and_summarizes(fake_engine: str) -> None:
    bench = load_benchmark()
    now_s = time.monotonic()
    job = bench.Job(
        fake_engine + "/v1/chat/completions",
        "chat",
        None,
        slots=3,
        prompt_ids=list(range(10)),
        max_tokens=8,
        start_at_s=now_s,
        deadline_s=now_s + 30,
        request_timeout_s=10,
    )
    bench._init_worker(["hello"] * 10)
    records = bench.run_job(job)
    assert len(records) == 10 and not [r.error for r in records if r.error]
    assert all(r.output_tokens == 2 for r in records)  # the fake streams two deltas and no usage chunk
    stats = bench.summarize(records)
    assert stats["requests"] == 10 and stats["errors"] == 0 and stats["output_tokens"] == 20
    assert stats["p50_ttft_ms"] > 0 and stats["output_tok_per_s"] > 0

    bad = bench.Job(fake_engine + "/v1/nowhere", "chat", None, 1, [0], 8, now_s, now_s + 30, 10)
    (record,) = bench.run_job(bad)
    assert record.error.startswith("HTTP 404")
    assert bench.summarize([record])["output_tok_per_s"] == 0.0


def test_percentiles_interpolate() -> None:
    bench = load_benchmark()
    assert bench.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert bench.percentile([5.0], 99) == 5.0


@pytest.mark.skipif(bool(read_gpus_once()), reason="a GPU is present")
def test_refuses_without_a_gpu() -> None:
    process = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py")], capture_output=True, text=True, timeout=60
    )
    assert process.returncode == 2 and "refusing to run" in process.stderr
