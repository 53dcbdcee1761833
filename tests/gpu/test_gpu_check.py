"""The GPU check's plumbing on a CPU machine: `scripts/gpu_check.sh --dry-run` end to end (simulated vLLM engines
launched by Triage's supervisor, the GPU e2e tests against them, the CPU classifier), and the step runner's
bookkeeping (budgets, prerequisites, the deadline, the alarm)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.gpu_check import PARTS, Check, Record, Step, build_parser, main, part_status
from benchmarks.gpu_steps import Context, StepFailed, StepSkipped, pytest_outcomes

from .sim_vllm import sim_argv

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_writes_every_part_as_it_ends(tmp_path: Path) -> None:
    """Every part runs on simulated engines; a failure injected into one step is reported, the rest go on."""
    out = tmp_path / "out"
    process = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "gpu_check.sh"),
            "--dry-run",
            "--base",
            str(tmp_path / "base"),
            "--inject-failure",
            "engines-memory",  # skipped anyway without NVML: every measuring step still runs
        ],
        env={**os.environ, "OUT": str(out), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert process.returncode == 1, process.stdout[-3000:] + process.stderr[-3000:]  # a part failed
    files = {p.name for p in out.iterdir()}
    assert files == {"summary.json", "results.tar.gz", *(f"{p}.json" for p in PARTS)}  # 7: the device returns 8
    summary = json.loads((out / "summary.json").read_text())
    parts = summary["parts"]
    assert summary["dry_run"] and summary["setup"]["status"] == "ok", summary["setup"]
    assert {k: v["status"] for k, v in parts.items()} == {
        "classifier": "ok",
        "engines": "failed",
        "e2e": "ok",
        "throughput": "ok",
        "replay": "ok",
    }, parts
    assert "injected" in parts["engines"]["reason"]
    assert all(p["wall_s"] >= 0 for p in parts.values()) and summary["wall_s"] < summary["deadline_s"]
    assert summary["machine"]["python"] and summary["machine"]["gpu"] is None
    assert summary["encoder"]["weights"] == "dummy" and summary["teardown"]["leftover"] == []
    argv = summary["engine_start_up_shortcuts"]["argv"]
    assert "sim_vllm.py serve" in argv["coder"] and "--kv-cache-memory-bytes 8589934592" in argv["coder"]

    engines = json.loads((out / "engines.json").read_text())["steps"]
    assert engines["engines"]["details"]["started_together"]
    e2e = {k: v["details"] for k, v in json.loads((out / "e2e.json").read_text())["steps"].items()}
    assert (e2e["e2e-live"]["passed"], e2e["e2e-live"]["skipped"]) == (5, 1), e2e["e2e-live"]
    assert e2e["e2e-live"]["skip_reasons"] == ["simulated engines hold no GPU memory"]
    assert e2e["e2e-restart"]["passed"] == 1 and e2e["e2e-shutdown"]["passed"] == 1
    throughput = json.loads((out / "throughput.json").read_text())["steps"]["throughput"]["details"]
    assert set(throughput["triage_throughput_ratio"]) == {"1", "4", "8"} and not throughput["errors"]
    assert all(ways["direct"] > 0 for ways in throughput["output_tok_per_s"].values())
    classifier = json.loads((out / "classifier.json").read_text())["steps"]
    assert classifier["classifier-tests"]["details"]["passed"] > 0
    assert classifier["classifier-bench"]["details"]["headline"]["eager"]["p50_ms_batch1_128tok"] is None  # 32 only
    replay = json.loads((out / "replay.json").read_text())["steps"]["replay"]["details"]
    assert replay["rates_measured"] == [4.0, 8.0] and "synthetic" in replay["source"]
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"logs/triage.log", "logs/e2e-live.log", "logs/classifier-tests.log"} <= names
    assert {"results/classifier-eager.json", "results/gpu_throughput.json", "results/gpu_replay.json"} <= names


def test_sim_vllm_takes_vllm_serve_argv() -> None:
    argv = ["serve", "/m/qwen2.5-0.5b", "--host", "127.0.0.1", "--port", "8202", "--served-model-name", "chat"]
    argv += ["--gpu-memory-utilization", "0.15", "--max-num-seqs", "64", "--load-format", "dummy", "--enforce-eager"]
    got = sim_argv(argv)
    assert got[:6] == ["--name", "chat", "--port", "8202", "--shape", "qwen2.5-0.5b"]
    assert got[got.index("--max-num-seqs") + 1] == "64" and got[got.index("--max-model-len") + 1] == "8192"
    with pytest.raises(SystemExit):  # no latency preset for this folder name
        sim_argv(["serve", "/m/llama-70b", "--port", "1", "--served-model-name", "x"])


# -- the runner, with steps that only take time or raise -----------------------------------------------------


def context(tmp_path: Path, **args: Any) -> Context:
    defaults = {"out": tmp_path / "out", "base": tmp_path / "base", "dry_run": False, "grace_s": 0.2}
    namespace = argparse.Namespace(**{**defaults, "inject_failure": set(), "min_s": {}, **args})
    return Context.create(namespace)


def sleeper(seconds: float) -> Any:
    def run(ctx: Context, budget_s: float) -> dict[str, Any]:
        time.sleep(seconds)
        return {"slept_s": seconds, "budget_s": budget_s}

    return run


def raiser(exc: Exception) -> Any:
    def run(ctx: Context, budget_s: float) -> dict[str, Any]:
        raise exc

    return run


def test_prerequisites_budgets_and_the_deadline(tmp_path: Path) -> None:
    steps = (
        Step("a", "classifier", sleeper(0), budget_s=100, min_s=0),
        Step("b", "engines", raiser(StepFailed("broken", {"x": 1})), 100, 0),
        Step("c", "e2e", sleeper(0), 100, 0, needs=("b",)),
        Step("d", "throughput", raiser(StepSkipped("nothing to do")), 100, 0),
        Step("e", "replay", sleeper(0), 100, min_s=50),  # 30 s deadline - 10 reserved < 50
        Step("f", "replay", sleeper(0), 5, 0, reserve_s=10),
    )
    summary = Check(context(tmp_path), steps, deadline_s=30).run()
    records = json.loads((tmp_path / "out" / "replay.json").read_text())["steps"]
    assert records["e"]["reason"].startswith("no time") and records["f"]["status"] == "ok"
    assert records["f"]["details"]["budget_s"] == 5  # its own budget, not the time left
    assert {k: v["status"] for k, v in summary["parts"].items()} == {
        "classifier": "ok",
        "engines": "failed",
        "e2e": "skipped",  # needs b
        "throughput": "skipped",
        "replay": "partial",
    }
    assert summary["parts"]["e2e"]["reason"] == "needs b, which did not end ok"
    engines = json.loads((tmp_path / "out" / "engines.json").read_text())["steps"]["b"]
    assert engines["reason"] == "broken" and engines["details"] == {"x": 1}


def test_a_step_past_the_deadline_is_cut_and_the_rest_skipped(tmp_path: Path) -> None:
    steps = (
        Step("slow", "classifier", sleeper(30), budget_s=100, min_s=0),
        Step("after", "engines", sleeper(0), 100, 0),
    )
    summary = Check(context(tmp_path), steps, deadline_s=0.3).run()  # the alarm: deadline + grace (0.2 s)
    assert summary["parts"]["classifier"]["status"] == "failed"
    assert "global deadline" in summary["parts"]["classifier"]["reason"]
    assert summary["parts"]["engines"]["status"] == "skipped" and summary["wall_s"] < 10


def test_injected_failure_and_unknown_steps(tmp_path: Path) -> None:
    steps = (Step("a", "classifier", sleeper(0), 100, 0),)
    summary = Check(context(tmp_path, inject_failure={"a"}), steps, deadline_s=10).run()
    assert summary["parts"]["classifier"]["status"] == "failed"
    min_s = build_parser().parse_args(["--out", str(tmp_path), "--min-s", "a=100,b=2.5"]).min_s
    assert min_s == {"a": 100.0, "b": 2.5}
    summary = Check(context(tmp_path, min_s=min_s), steps, deadline_s=10).run()
    assert summary["parts"]["classifier"]["reason"].startswith("no time")  # 10 s left, the step now needs 100
    with pytest.raises(SystemExit, match="unknown steps"):
        main(["--out", str(tmp_path), "--inject-failure", "nope"])


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["ok", "ok"], "ok"),
        (["ok", "skipped"], "partial"),
        (["skipped", "skipped"], "skipped"),
        (["ok", "failed", "skipped"], "failed"),
    ],
)
def test_part_status(statuses: list[str], expected: str) -> None:
    assert part_status([Record(s) for s in statuses])[0] == expected


def test_pytest_outcomes_from_verbose_output() -> None:
    text = (
        "tests/a.py::test_one PASSED                  [ 25%]\n"
        "tests/a.py::test_two[x-1] FAILED             [ 50%]\n"
        "tests/a.py::test_three SKIPPED (no GPU)      [ 75%]\n"
        "tests/a.py::test_four PASSED                 [100%]\n"
        "tests/a.py::test_four ERROR                  [100%]\n"
        "SKIPPED [1] tests/a.py:9: no GPU\n"
        "SKIPPED [3] tests/b.py: vLLM is not importable\n"
    )
    got = pytest_outcomes(text)
    assert (got["passed"], got["failed"], got["skipped"], got["error"]) == (1, 1, 1, 1)
    assert got["failing"] == ["tests/a.py::test_four", "tests/a.py::test_two[x-1]"]
    assert got["skip_reasons"] == ["no GPU", "vLLM is not importable"]
