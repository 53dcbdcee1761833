"""The GPU policy benchmark's CPU-side parts in CI: workload, scoring, the dominance summary, the two routers'
configs, its client and probes against a fake engine, and its refusal to run without a GPU."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from benchmarks import gpu_policy_frontier as bench
from benchmarks.load_routing import CLASSES, QUALITY, REJECTED, Req, make_trace
from server.classify import Classification, KeywordClassifier
from server.config import TriageConfig, interpolate_env, load_config
from server.telemetry.nvml import read_gpus_once

from .fakes import fake_vllm

REPO = Path(__file__).resolve().parents[2]
PROMPTS = {
    "code": [("code", "Write a Python function that merges two sorted lists.")],
    "chat": [("creative_writing", "Write a poem about the sea, ünïcödé included.")],
    "short": [("general_qa", "What is the capital of France?")],
}


def trace(rate: float = 20.0, duration_s: float = 5.0) -> list[Req]:
    classifier = KeywordClassifier()
    classified = {p: classifier.classify_now(p) for pool in PROMPTS.values() for _, p in pool}
    return make_trace(rate, duration_s, {"code": 0.6, "chat": 0.25, "short": 0.15}, PROMPTS, classified, 3)


def test_workload_is_load_routings_with_prompts() -> None:
    reqs = trace()
    assert 50 <= len(reqs) <= 160  # Poisson, 20/s for 5 s
    assert all(r.prompt == dict(PROMPTS[r.klass])[r.category] for r in reqs)
    shots = bench.shots_for(reqs, max_prompt_bytes=20)
    assert [s.at_s for s in shots] == sorted(s.at_s for s in shots)
    assert all(1 <= s.max_tokens <= CLASSES[r.klass][1] for s, r in zip(shots, reqs, strict=True))
    assert all(len(s.prompt.encode()) <= 20 for s in shots)  # cut on a UTF-8 boundary: still decodes
    parts = bench.split(shots, 4)
    assert sorted(s.rid for part in parts for s in part) == [s.rid for s in shots]


def _req(rid: int, klass: str, category: str, at_s: float) -> Req:
    return Req(rid, klass, category, Classification(category, {category: 1.0}, 0.5), 20, 64, 32, at_s)


def test_score_counts_goodput_quality_and_failures() -> None:
    models = load_config(REPO / "configs" / "gpu-frontier.yaml").models
    start_s, cut_s = 100.0, 100.0 + 10.0 + 4.0
    reqs = [
        _req(0, "code", "code", 1.0),
        _req(1, "code", "code", 2.0),
        _req(2, "chat", "creative_writing", 3.0),
        _req(3, "short", "general_qa", 4.0),
        _req(4, "code", "code", 9.9),
        _req(5, "code", "code", 5.0),
    ]
    outcomes = [
        bench.Outcome(0, first_token_s=101.2, end_s=104.0, model="coder", status=200),  # good
        bench.Outcome(1, first_token_s=103.5, end_s=106.0, model="coder", status=200),  # TTFT 1.5 s: too slow
        bench.Outcome(2, first_token_s=103.1, model="chat", status=200, cut=True),  # cut while streaming: good
        bench.Outcome(3, model="fast", status=429, error="HTTP 429: busy"),  # refused
        bench.Outcome(4, model="coder", status=200, cut=True),  # no first token before the cut
        bench.Outcome(5, first_token_s=105.1, model="coder", status=200, error="stream error: x"),
    ]
    m = bench.score(reqs, outcomes, models, start_s, cut_s, 10.0, 1.0)
    assert m["requests"] == 6 and m["goodput_rps"] == pytest.approx(0.2)
    quality = {x.name: x.profile for x in models}
    assert m[QUALITY] == pytest.approx(
        (3 * quality["coder"].quality["code"] + quality["chat"].quality["creative_writing"]) / 4, abs=1e-4
    )
    assert m["model_share"][REJECTED] == pytest.approx(2 / 6, abs=1e-4)
    assert m["errors"] == 2 and m["cut_streams"] == 2 and m["http_status"] == {"200": 5, "429": 1}
    assert m["code_slo_attainment"] == pytest.approx(0.25)  # 1 of 4 code requests within 1 s
    # TTFTs 0.1, 0.2, 1.5, 4.1 (cut), 9.0 (error), 10.0 s (request 3, refused: censored at the cut, 14 s - 4 s);
    # p99 interpolates between the two largest: 9.0 + 0.95 * 1.0
    assert m["ttft_p99_ms"] == pytest.approx(9950.0)


def _row(rate: float, static: tuple[float, float, float], **triage: tuple[float, float]) -> dict[str, object]:
    policies = {
        "static": {
            "goodput_rps": static[0],
            QUALITY: static[1],
            "code_slo_attainment": static[2],
            "ttft_p99_ms": 1.0,
        }
    }
    for name, (g, q) in triage.items():
        policies[f"triage-{name}"] = {
            "goodput_rps": g,
            QUALITY: q,
            "code_slo_attainment": 1.0,
            "ttft_p99_ms": 1.0,
        }
    return {"rate": rate, "policies": policies}


def test_frontier_summary_takes_the_highest_saturated_rate() -> None:
    sweep = [
        _row(30, (18.0, 0.73, 0.3), speed=(20.0, 0.70), quality=(25.0, 0.80)),  # dominated by quality
        _row(10, (10.0, 0.73, 1.0), speed=(10.0, 0.70), quality=(10.0, 0.80)),
        _row(40, (15.0, 0.73, 0.1), speed=(16.0, 0.72), quality=(14.0, 0.80)),
    ]  # no preset dominates
    s = bench.frontier_summary(sweep, 0.5)
    assert s["rate"] == 40 and s["static_saturated"] and s["saturated_rates"] == [30, 40]
    assert s["dominates_static"] is False
    assert s["dominates_static_by_rate"] == {10: True, 30: True, 40: False}
    assert s["goodput_ratio_vs_static"]["triage-speed"] == pytest.approx(16 / 15, abs=1e-3)
    s = bench.frontier_summary(sweep[:2], 0.5)
    assert s["rate"] == 30 and s["dominates_static"] is True
    s = bench.frontier_summary([sweep[1]], 0.5)  # static never saturated: the highest rate, flagged
    assert s["rate"] == 10 and not s["static_saturated"]
    assert bench.frontier_summary([{"rate": 5, "policies": {}}], 0.5)["dominates_static"] is None


def test_router_configs_share_the_launched_engines(tmp_path: Path) -> None:
    base = yaml.safe_load((REPO / "configs" / "gpu-frontier.yaml").read_text())
    triage_raw, static_raw = bench.router_configs(base, tmp_path / "models", tmp_path, 300.0)
    triage = TriageConfig.model_validate(interpolate_env(triage_raw))
    static = TriageConfig.model_validate(interpolate_env(static_raw))
    assert triage.policy.name == "triage" and static.policy.name == "static"
    assert triage.policy.store is None and static.policy.store is None
    assert static.server.port == bench.STATIC_PORT != triage.server.port
    assert [m.endpoints for m in static.models] == [m.endpoints for m in triage.models]
    assert all(m.launch is None for m in static.models)
    assert [Path(m.launch.model).name for m in triage.models if m.launch] == [
        "qwen2.5-7b",
        "qwen2.5-7b",
        "qwen2.5-1.5b",
    ]
    assert all(m.launch and m.launch.model.startswith(str(tmp_path)) for m in triage.models)
    assert sum(m.launch.gpu_memory_utilization for m in triage.models if m.launch) <= 0.95
    assert "launch" in base["models"][0]  # the input is left as it was


def test_auto_rates_bracket_the_estimate() -> None:
    estimate, rates = bench.auto_rates(coder_tok_per_s=6000.0, code_share=0.6)
    assert estimate == pytest.approx(6000 / (0.6 * 512 * 0.65), abs=0.1)
    assert rates[0] < rates[1] < rates[3] and rates[2] < rates[0]
    assert all(r * 2 == int(r * 2) for r in rates)


@pytest.fixture
def fake_engine() -> Iterator[str]:
    with fake_vllm("coder") as base:
        yield base


def test_client_probe_and_gauges_against_a_fake_engine(fake_engine: str) -> None:
    shots = bench.shots_for(trace(rate=10.0, duration_s=1.0), 4096)
    start_s = time.monotonic() + 0.2
    job = bench.RunJob(fake_engine + "/v1/chat/completions", {"priority": "speed"}, shots, start_s, start_s + 10, 10)
    outcomes = bench.run_job(job)
    assert [o.rid for o in outcomes] == [s.rid for s in shots]
    assert all(o.status == 200 and not o.error and not o.cut for o in outcomes)
    assert all(o.model == "coder" for o in outcomes)  # from the chunks: a bare engine sends no x-triage-model
    assert all(start_s + s.at_s <= o.first_token_s <= o.end_s < math.inf for s, o in zip(shots, outcomes, strict=True))
    assert all(o.send_lag_s < 0.5 for o in outcomes)
    probe = asyncio.run(bench.probe(fake_engine + "/v1/chat/completions", ["a", "b", "c"], 8))
    assert probe["requests"] == 3 and probe["out_tok_per_s"] > 0  # the fake answers 2 tokens each
    gauges = bench.Gauges({"coder": fake_engine})
    gauges.sample()
    assert gauges.summary() == {"coder": {"max_running": 0.0, "mean_running": 0.0, "max_waiting": 0.0}}
    assert gauges.wait_idle(2.0) < 1.0


def test_parse_gauges_sums_label_sets() -> None:
    text = (
        '# HELP vllm:num_requests_running x\nvllm:num_requests_running{model_name="a",engine="0"} 3.0\n'
        'vllm:num_requests_running{model_name="a",engine="1"} 2.0\nvllm:num_requests_waiting{model_name="a"} 7.0\n'
        'vllm:num_requests_waiting_by_reason{reason="x"} 9.0\n'
    )
    assert bench.parse_gauges(text) == (5.0, 7.0)


@pytest.mark.skipif(bool(read_gpus_once()), reason="a GPU is present: the benchmark would run")
def test_refuses_without_a_gpu() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_policy_frontier", "--out-dir", "/nonexistent"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "refusing to run" in result.stderr
