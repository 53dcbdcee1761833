"""routing_value.py end to end on a small synthetic outcomes file with three models, plus its pure parts."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from benchmarks import routing_value
from benchmarks.outcomes_workload import DEFAULT_LENGTH, Request, Workload, length_model, make_trace
from server.classify import Classification

MODELS = ("maths-whiz", "trivia-buff", "generalist")
BENCHMARKS = {  # benchmark -> (prompt template, P(correct) per model)
    "gsm8k-synth": ("Tom has {a} apples and buys {b} more. How many apples does he have now?", (0.9, 0.2, 0.5)),
    "mmlu-synth": ("Question: Which planet is number {a} from the sun? Choices: {b}\nAnswer:", (0.2, 0.9, 0.5)),
}


def write_outcomes(path: Path, per_benchmark: int = 40) -> None:
    rng = random.Random(0)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for bench, (template, p_right) in BENCHMARKS.items():
            for k in range(per_benchmark):
                prompt = template.format(a=rng.randrange(1, 99), b=rng.randrange(1, 99))
                for model, p in zip(MODELS, p_right, strict=True):
                    score = float(rng.random() < p)
                    row = {"prompt_id": f"{bench}:{k}", "prompt": prompt, "model": model, "score": score}
                    f.write(json.dumps({**row, "benchmark": bench}) + "\n")


def seed_embedding_cache(outcomes: Path, cache_dir: Path) -> None:
    """Put stand-in embeddings where `embed_cached` looks for this file's MiniLM vectors: one direction per
    benchmark plus noise, unit length. Loading MiniLM would take most of this test's time; what is tested here is
    that the command runs end to end on a file of that shape, not what the encoder makes of these prompts."""
    from models.data import load_outcomes
    from models.embed_cache import cache_key
    from models.encoder import EncoderConfig

    table = load_outcomes(outcomes)
    rng = np.random.default_rng(0)
    axes = {b: rng.normal(size=384) for b in BENCHMARKS}
    emb = np.stack([axes[b] + 0.5 * rng.normal(size=384) for b in table.benchmarks]).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cache_dir.mkdir(parents=True)
    np.save(cache_dir / f"{cache_key(EncoderConfig(), table.cache_id)}.npy", emb)


def test_runs_on_any_outcomes_file_of_that_shape(tmp_path: Path) -> None:
    outcomes = tmp_path / "outcomes.jsonl.gz"
    write_outcomes(outcomes)
    seed_embedding_cache(outcomes, tmp_path / "cache")
    out = tmp_path / "routing_value.json"
    routing_value.main(
        [
            *("--outcomes", str(outcomes), "--cache-dir", str(tmp_path / "cache"), "--out", str(out)),
            # 7B steps (few per virtual second) on two slots per engine: saturates at a few requests per second
            *("--max-num-seqs", "2", "--max-in-flight", "4"),
            *("--profile-repeats", "2", "--profile-time-scale", "1"),
            *(
                "--duration",
                "1",
                "--drain",
                "1",
                "--search-start",
                "4",
                "--search-steps",
                "1",
                "--rate-factors",
                "0.25,2",
            ),
        ]
    )
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").is_file()
    assert result["config"]["models"] == sorted(MODELS)
    assert result["config"]["predictor"]["origin"].startswith("trained here")
    assert result["config"]["slo_ttft_ms"] == 1000.0 and "95%" in result["config"]["slo"]
    assert set(result["config"]["measured_profiles"]) == {"qwen2.5-7b"}
    for placement in ("shared", "separate"):
        data = result["placements"][placement]
        rates = [row["rate"] for row in data["sweep"]]
        assert rates == sorted(rates) and rates[-1] == pytest.approx(2 * data["quality_only_slo_break_rps"], abs=0.1)
        for row in data["sweep"]:
            assert set(row["policies"]) == set(routing_value.POLICIES)
            p = row["policies"]
            assert all(0.0 <= v["accuracy"] <= 1.0 and v["useful_goodput_rps"] <= v["goodput_rps"] for v in p.values())
            assert all(v["expected_useful_goodput_rps"] <= v["goodput_rps"] for v in p.values())
        light = data["sweep"][0]["policies"]  # no cap reached: the oracle's answers are the best there are
        assert light["oracle"]["accuracy"] >= max(v["accuracy"] for v in light.values())
    summary = result["summary"]
    assert set(routing_value.TARGETS) <= set(summary) and set(summary["met"]) == set(routing_value.TARGETS)
    assert summary["useful_goodput_vs_oracle_overload"] is not None
    noise = summary["useful_goodput_vs_best_baseline_noise"]
    assert noise["at_drawn_min"]["drawn_ratio"] == summary["useful_goodput_vs_best_baseline_min"]
    assert noise["at_drawn_min"]["draw_sd"] >= 0 and noise["expected_min"] > 0
    assert result["config"]["predictor"]["split"]["n_heldout"] == result["config"]["prompts"]["heldout"]


def test_length_models_are_written_per_benchmark() -> None:
    assert length_model("gsm8k-train").max_tokens == 512 and length_model("mmlu_train").median_tokens < 100
    assert length_model("cmmlu_train") is length_model("mmlu_train")
    assert length_model("something-new") is DEFAULT_LENGTH
    rng = random.Random(1)
    draws = [length_model("arc_easy_train").draw(rng) for _ in range(2000)]
    assert min(draws) >= 1 and max(draws) <= 256 and 30 <= float(np.median(draws)) <= 50


class _Table:
    def __init__(self) -> None:
        self.models = list(MODELS)
        self.benchmarks = ["gsm8k-synth"] * 6
        self.scores = np.array([[1.0, 0.0, 0.5]] * 6, dtype=np.float32)


def test_trace_covers_the_held_out_prompts_and_draws_correctness() -> None:
    cls = Classification("math", {"math": 1.0}, 0.5)
    work = Workload(_Table(), np.array([True, False, True, True, False, True]), [cls] * 6, [20] * 6)  # type: ignore[arg-type]
    light = make_trace(work, rate=1.0, duration_s=1.0, seed=3)
    assert sorted(r.prompt for r in light) == [0, 2, 3, 5]  # every held-out prompt once, none from training
    heavy: list[Request] = make_trace(work, rate=200.0, duration_s=10.0, seed=3)
    assert len(heavy) == 2000 and 9.0 < heavy[-1].arrival_s < 11.0
    assert all("maths-whiz" in r.correct and "trivia-buff" not in r.correct for r in heavy)
    assert 0.45 < sum("generalist" in r.correct for r in heavy) / len(heavy) < 0.55


def _row(rate: float, **policies: tuple[float, float]) -> dict[str, object]:
    """policies: name -> (useful goodput, accuracy)."""
    return {"rate": rate, "policies": {k: {"useful_goodput_rps": g, "accuracy": a} for k, (g, a) in policies.items()}}


def test_summary_takes_each_number_where_the_issue_says() -> None:
    base = {"best-single": (5.0, 0.50), "static": (9.0, 0.57), "random": (8.0, 0.50), "oracle": (20.0, 0.80)}
    sweep = [
        _row(10, **base, **{"least-busy": (8.0, 0.49), "quality-only": (10.0, 0.58), "triage-balanced": (10.0, 0.578)}),
        _row(20, **base, **{"least-busy": (16.0, 0.49), "quality-only": (20.0, 0.58), "triage-balanced": (19.0, 0.57)}),
        _row(40, **base, **{"least-busy": (30.0, 0.49), "quality-only": (12.0, 0.55), "triage-balanced": (33.0, 0.56)}),
    ]
    placements = {"shared": {"sweep": sweep, "quality_only_slo_break_rps": 20.0}}
    s = routing_value.summarize(placements, list(routing_value.POLICIES))
    assert s["useful_goodput_vs_best_baseline_min"] == 0.95  # 19 / 20 at 20 req/s, quality-only best there
    assert s["useful_goodput_vs_best_baseline_min_at"] == {
        "placement": "shared",
        "rate": 20,
        "baseline": "quality-only",
    }
    assert s["useful_goodput_vs_quality_only_overload"] == 2.75  # 33 / 12 at the highest rate
    assert s["accuracy_gain_vs_least_busy_points_min"] == 7.0  # 0.56 - 0.49 at 40 req/s
    assert s["accuracy_gap_to_quality_only_points_light"] == 0.2  # 0.58 - 0.578 at the lowest rate
    assert s["useful_goodput_vs_oracle_overload"] == 1.65
    assert s["met"] == {
        "useful_goodput_vs_best_baseline_min": False,
        "useful_goodput_vs_quality_only_overload": True,
        "accuracy_gain_vs_least_busy_points_min": True,
        "accuracy_gap_to_quality_only_points_light": True,
    }
