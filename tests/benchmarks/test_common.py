"""benchmarks/common.py: the one percentile, metrics parser and server-process launcher every benchmark uses."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import httpx
import pytest

from benchmarks.common import Launch, free_port, parse_metrics, percentile, server_process, server_processes


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def test_parse_metrics_sums_label_sets() -> None:
    text = (
        "# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="a",engine="0"} 3.0\n'
        'vllm:num_requests_running{model_name="a",engine="1"} 2.0\n'
        'vllm:num_requests_waiting{model_name="a"} 7.0\n'
        "triage_usage_committed_rows_total 12\n"
    )
    values = parse_metrics(text)
    assert values["vllm:num_requests_running"] == 5.0 and values["vllm:num_requests_waiting"] == 7.0
    assert values["triage_usage_committed_rows_total"] == 12.0


def test_server_process_waits_until_ready_and_stops_the_group(tmp_path: Path) -> None:
    port = free_port()
    launch = Launch(
        [sys.executable, "benchmarks/fake_engine.py", "--port", str(port)],
        f"http://127.0.0.1:{port}/health",
        "fake-engine",
        log_path=tmp_path / "fake.log",
    )
    with server_process(launch) as proc:
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    assert proc.poll() is not None


def test_a_server_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    dies = Launch(
        [sys.executable, "-c", "print('no config here'); raise SystemExit(3)"],
        f"http://127.0.0.1:{free_port()}/health",
        "dies",
        log_path=tmp_path / "dies.log",
    )
    with pytest.raises(RuntimeError, match=r"exited with 3(.|\n)*no config here"), server_processes(dies):
        pass
