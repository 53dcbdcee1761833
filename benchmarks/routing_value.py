"""Does routing by task fit AND live load deliver more correct answers per second than routing by either alone?

    python benchmarks/routing_value.py --outcomes FILE [--predictor DIR] [--out PATH]
    python benchmarks/routing_value.py --outcomes FILE --export-trace PATH   # only the GPU check's replay trace

The workload is the held-out prompts of an outcomes file (rows of prompt_id, prompt, model, score, benchmark;
`outcomes_workload.py`) arriving as an open-loop Poisson stream. One simulated engine per model of the file
(7-8B shape by default, `--shapes` for other pools), each the served simulator's scheduler with its H100
calibration on a virtual clock (`simrun.py`), in two placements: engines sharing GPUs (two per GPU, contention
as calibrated) and one GPU each. Each answer is correct with the file's probability for the model it went to.

Every policy decides over what it would see in production: its own LoadBoard counters (started / finished as
the gateway books them), vLLM-like gauges scraped every second with their age, and engine speeds measured by
`triage profile`'s protocol against the simulated engines (`engine_profile.py`), never the simulator's
constants. Policies, in the same run on the same traces: best single model and static per-category routing
(both learned on the training part), least-busy, random, quality-only (the learned predictor's argmax, load
ignored), Triage's presets (the triage policy with the learned predictor), and the oracle (ceiling).

Rates: the rate at which quality-only routing breaks the TTFT SLO is found by a bounded search per placement,
then rates from a tenth of it to twice it are swept. Per rate and policy: accuracy, SLO attainment, p50/p99
TTFT, and useful goodput = correct answers per second delivered within the SLO. Writes
benchmarks/results/routing_value.json (+ .png) and prints one JSON summary line. Knows nothing about how the
policies decide.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a file: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import outcomes_workload as workload
from benchmarks import routing_value_trace as trace_export
from benchmarks.baselines import BestSinglePolicy, LeastBusyPolicy, OraclePolicy, QualityOnlyPolicy, RandomPolicy
from benchmarks.common import REPO, RESULTS, SHARED_DATA, machine, percentile, write_json
from benchmarks.engine_profile import PROFILE_FIELDS, measure_shape
from benchmarks.goodput_noise import BOOTSTRAP_RESAMPLES, Record, compare
from benchmarks.outcomes_workload import Request, Workload
from benchmarks.simrun import REJECTED, Cluster, Shot, latency_summary, replay, within_slo
from server.classify import Classification
from server.config import CATEGORIES, ModelConfig, PolicyConfig, Profile
from server.load import LoadBoard
from server.policy import Policy
from server.policy.learned import LearnedQuality
from server.policy.static import StaticPolicy
from server.policy.triage import TriagePolicy
from server.sim.spec import SimEngineSpec

PRESETS = ("balanced", "quality", "speed", "cost")
BASELINES = ("best-single", "static", "least-busy", "random", "quality-only")  # not Triage, not the oracle
POLICIES = (*BASELINES, *(f"triage-{p}" for p in PRESETS), "oracle")
RATE_FACTORS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)  # x quality-only's SLO-break rate
PLACEMENTS = ("shared", "separate")
ENGINES_PER_SHARED_GPU = 2  # two 7B engines at gpu_memory_utilization 0.45 fill an 80 GB H100
TARGETS = {
    "useful_goodput_vs_best_baseline_min": (">=", 0.995),
    "useful_goodput_vs_quality_only_overload": (">=", 1.5),
    "accuracy_gain_vs_least_busy_points_min": (">=", 5.0),
    "accuracy_gap_to_quality_only_points_light": ("<=", 0.5),
}


@dataclass
class Bench:
    """What every run shares: the workload, the measured engines, the learned baselines."""

    work: Workload
    shapes: dict[str, str]  # model -> simulator shape
    profiles: dict[str, dict[str, Any]]  # shape -> measured profile fields
    predictor_dir: Path
    predictor_origin: str
    predictor_split: dict[str, Any]  # the artifact's meta.json "split": the rule that held these prompts out
    probs: np.ndarray  # [P, predictor's models] the predictor's probabilities, one batched call
    quality: np.ndarray  # [P, M] the same, columns in the file's model order (quality-only reads it)
    overall: list[float]  # [M] the predictor's tie-break between equal probabilities, the file's model order
    single: str
    static_map: dict[str, str]  # category -> model
    args: argparse.Namespace
    runs: int = 0
    run_wall_s: float = 0.0
    search: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    records: dict[tuple[str, float], dict[str, Record]] = field(default_factory=dict)  # (placement, rate) -> policy


# -- configuration as the policies see it -------------------------------------------------------------------


def gpu_of(placement: str, i: int) -> str:
    return str(i // ENGINES_PER_SHARED_GPU) if placement == "shared" else str(i)


def model_configs(bench: Bench, placement: str) -> list[ModelConfig]:
    """The config an operator would write: measured speeds, the engine's batch size, the predictor's names."""
    models = []
    for i, name in enumerate(bench.work.models):
        measured = bench.profiles[bench.shapes[name]]
        profile = Profile(
            max_num_seqs=bench.args.max_num_seqs,
            predictor_model=name,
            **{k: measured[k] for k in PROFILE_FIELDS},
        )
        roles = [f"best:{c}" for c, m in bench.static_map.items() if m == name]
        models.append(
            ModelConfig(
                name=name,
                endpoints=[f"http://127.0.0.1:{9000 + i}/v1"],  # never dialled: the engines are simulated
                gpu=gpu_of(placement, i),
                roles=roles,
                max_in_flight=bench.args.max_in_flight,
                profile=profile,
            )
        )
    return models


def make_policy(kind: str, bench: Bench, models: list[ModelConfig], load: LoadBoard, trace: list[Request]) -> Policy:
    if kind == "best-single":
        return BestSinglePolicy(models, load, PolicyConfig(), bench.single)
    if kind == "static":
        roles = {c: f"best:{c}" for c in bench.static_map}
        return StaticPolicy(models, load, PolicyConfig(name="static", options={"category_roles": roles}))
    if kind == "least-busy":
        return LeastBusyPolicy(models, load, PolicyConfig())
    if kind == "random":
        return RandomPolicy(models, load, PolicyConfig(), seed=bench.args.seed)
    if kind == "quality-only":
        prompt_of = {str(r.rid): r.prompt for r in trace}
        return QualityOnlyPolicy(
            models, load, PolicyConfig(), lambda req: bench.quality[prompt_of[req.request_id]], bench.overall
        )
    if kind == "oracle":
        right = {str(r.rid): r.correct for r in trace}
        peak = [m.profile.peak_decode_tok_per_s or m.profile.decode_tok_per_s for m in models]
        return OraclePolicy(models, load, PolicyConfig(), lambda req: right[req.request_id], [1 / p for p in peak])
    preset = kind.removeprefix("triage-")
    settings = PolicyConfig(
        name="triage", preset=preset, quality_predictor=str(bench.predictor_dir), options={"seed": bench.args.seed}
    )
    policy = TriagePolicy(models, load, settings)
    if policy.learned is not None:
        policy.learned = PrecomputedQuality(policy.learned, bench.probs, bench.work.classifications)
    return policy


class PrecomputedQuality(LearnedQuality):
    """The triage policy's learned quality, every prompt's prediction taken from one batched call.

    The same predictor and the same numbers (`check_precomputed` compares them at start-up); it only saves
    the CPU: one single-row torch forward costs milliseconds on a busy 2-core box, and a sweep makes about
    10^5 decisions. Prompts are recognised by their embedding object.
    """

    def __init__(self, learned: LearnedQuality, probs: np.ndarray, classifications: list[Classification]) -> None:
        super().__init__(learned.predictor, learned.columns)
        self.rows = {
            id(c.embedding): [float(probs[p, k]) if k is not None else None for k in learned.columns]
            for p, c in enumerate(classifications)
        }

    def predict(self, embedding: np.ndarray | None, offers_choices: bool = False) -> list[float | None]:
        return self.rows[id(embedding)] if embedding is not None else super().predict(embedding, offers_choices)


def check_precomputed(bench: Bench, sample: int = 64) -> float:
    """Largest difference between the batched predictions and the policy's own per-request call."""
    models = model_configs(bench, "separate")
    learned = LearnedQuality.load(str(bench.predictor_dir), models)
    fast = PrecomputedQuality(learned, bench.probs, bench.work.classifications)
    worst = 0.0
    for c in bench.work.classifications[:sample]:
        pairs = zip(fast.predict(c.embedding), learned.predict(c.embedding, c.offers_choices), strict=True)
        for a, b in pairs:
            worst = max(worst, abs((a or 0.0) - (b or 0.0)))
    return worst


# -- one run: one policy, one placement, one trace ----------------------------------------------------------


def run(kind: str, placement: str, bench: Bench, trace: list[Request]) -> tuple[dict[str, Any], Record]:
    """(metrics, per-request record for the noise estimate) of one policy on one trace."""
    t0 = time.perf_counter()
    work = bench.work
    models = model_configs(bench, placement)
    specs = [
        SimEngineSpec(
            name=m.name,
            port=0,
            gpu=m.gpu or "0",
            shape=bench.shapes[m.name],
            max_num_seqs=bench.args.max_num_seqs,
            seed=bench.args.seed + i,
        )
        for i, m in enumerate(models)
    ]
    cluster = Cluster.build(specs)
    load = LoadBoard()
    policy = make_policy(kind, bench, models, load, trace)
    if isinstance(policy, TriagePolicy):
        policy.clock = cluster.clock.time
    shots = [Shot(r.rid, r.arrival_s, workload.route_request(work, r), r.output_tokens) for r in trace]
    span_s = trace[-1].arrival_s
    end_s = span_s + bench.args.drain
    served = replay(policy, load, cluster, shots, end_s, bench.args.scrape_s)
    slo_s = bench.args.slo_ttft_ms / 1e3
    good = within_slo(shots, served, end_s, slo_s)
    right = [s.model in r.correct for r, s in zip(trace, served, strict=True)]
    routed = [k for k, s in enumerate(served) if s.model != REJECTED]
    column = {m: j for j, m in enumerate(work.models)}
    prompt = np.array([r.prompt for r in trace], dtype=np.int64)  # [N]
    model = np.array([column.get(s.model, -1) for s in served], dtype=np.int64)  # [N], -1 rejected
    score = np.where(model >= 0, work.table.scores[prompt, np.maximum(model, 0)], 0.0)  # [N] P(correct)
    record = Record(prompt, model, score, np.array(good, dtype=bool))
    metrics = latency_summary(shots, served, end_s, slo_s, work.models)
    total_s = [min(x.done_s, end_s) - shot.arrival_s for shot, x in zip(shots, served, strict=True)]  # censored
    metrics |= {
        "latency_p50_ms": round(percentile(total_s, 50) * 1e3, 1),  # end to end: what the latency term prices
        "latency_p99_ms": round(percentile(total_s, 99) * 1e3, 1),
        "accuracy": round(sum(right[k] for k in routed) / max(1, len(routed)), 4),
        "expected_accuracy": round(float(score[model >= 0].mean()) if routed else 0.0, 4),
        "useful_goodput_rps": round(sum(g and c for g, c in zip(good, right, strict=True)) / span_s, 3),
        "expected_useful_goodput_rps": round(float(record.expected_correct.sum()) / span_s, 3),
        "goodput_rps": round(sum(good) / span_s, 3),
        "offered_rps": round(len(trace) / span_s, 3),
    }
    bench.runs += 1
    bench.run_wall_s += time.perf_counter() - t0
    return metrics, record


# -- the rate sweep --------------------------------------------------------------------------------------------


def trace_at(bench: Bench, rate: float) -> list[Request]:
    return workload.make_trace(bench.work, rate, bench.args.duration, bench.args.seed + round(rate * 10))


def find_break_rate(bench: Bench, placement: str) -> float:
    """Lowest rate (bounded search) at which quality-only routing meets the TTFT SLO for too few requests."""
    args = bench.args
    probes: list[dict[str, float]] = []

    def broken(rate: float) -> bool:
        attainment = run("quality-only", placement, bench, trace_at(bench, rate))[0]["slo_attainment"]
        probes.append({"rate": rate, "slo_attainment": attainment})
        print(json.dumps({"placement": placement, "search_rate": rate, "quality_only_slo": attainment}), flush=True)
        return bool(attainment < args.slo_attainment)

    lo, hi = 0.0, args.search_start
    for _ in range(args.search_doublings):  # bracket: double until it breaks
        if broken(hi):
            break
        lo, hi = hi, hi * 2
    else:
        raise SystemExit(f"quality-only never broke the SLO up to {hi:g} req/s; raise --search-start")
    for _ in range(args.search_steps):  # bisect the bracket
        mid = round((lo + hi) / 2, 1)
        if mid in (lo, hi):
            break
        lo, hi = (lo, mid) if broken(mid) else (mid, hi)
    bench.search[placement] = probes
    return float(hi)


def sweep(bench: Bench, placement: str, break_rate: float) -> list[dict[str, Any]]:
    rows = []
    for factor in bench.args.rate_factors:
        rate = round(factor * break_rate, 1)
        trace = trace_at(bench, rate)
        row: dict[str, Any] = {"rate": rate, "factor": factor, "requests": len(trace), "policies": {}}
        records = bench.records.setdefault((placement, rate), {})
        for kind in bench.args.policies:
            row["policies"][kind], records[kind] = run(kind, placement, bench, trace)
        rows.append(row)
        brief = {k: (v["useful_goodput_rps"], v["accuracy"], v["slo_attainment"]) for k, v in row["policies"].items()}
        print(json.dumps({"placement": placement, "rate": rate, **brief}), flush=True)
    return rows


# -- summary and plot ------------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b > 0 else math.inf


def summarize(placements: dict[str, dict[str, Any]], policies: list[str]) -> dict[str, Any]:
    """The issue's numbers; each with where it was taken, so a miss can be traced to a rate and a placement."""
    triage = "triage-balanced"
    baselines = [k for k in BASELINES if k in policies]
    vs_best: list[tuple[float, str, float, str]] = []
    gain_lb: list[tuple[float, str, float]] = []
    light: list[tuple[float, str, float]] = []
    over_qo: list[tuple[float, str, float]] = []
    over_oracle: list[tuple[float, str, float]] = []
    for placement, result in placements.items():
        rows = result["sweep"]
        for row in rows:
            p = row["policies"]
            best = max(baselines, key=lambda k: p[k]["useful_goodput_rps"])
            vs_best.append(
                (_ratio(p[triage]["useful_goodput_rps"], p[best]["useful_goodput_rps"]), placement, row["rate"], best)
            )
            if "least-busy" in p:
                gain = 100 * (p[triage]["accuracy"] - p["least-busy"]["accuracy"])
                gain_lb.append((round(gain, 2), placement, row["rate"]))
        first, last = rows[0]["policies"], rows[-1]["policies"]
        if "quality-only" in first:
            gap = 100 * (first["quality-only"]["accuracy"] - first[triage]["accuracy"])
            light.append((round(gap, 2), placement, rows[0]["rate"]))
            ratio = _ratio(last[triage]["useful_goodput_rps"], last["quality-only"]["useful_goodput_rps"])
            over_qo.append((ratio, placement, rows[-1]["rate"]))
        if "oracle" in last:
            ratio = _ratio(last[triage]["useful_goodput_rps"], last["oracle"]["useful_goodput_rps"])
            over_oracle.append((ratio, placement, rows[-1]["rate"]))
    worst = min(vs_best)
    summary: dict[str, Any] = {
        "policy": triage,
        "useful_goodput_vs_best_baseline_min": worst[0],
        "useful_goodput_vs_best_baseline_min_at": {"placement": worst[1], "rate": worst[2], "baseline": worst[3]},
        "useful_goodput_vs_quality_only_overload": min(over_qo)[0] if over_qo else None,
        "useful_goodput_vs_quality_only_overload_by_placement": {p: r for r, p, _ in over_qo},
        "accuracy_gain_vs_least_busy_points_min": min(gain_lb)[0] if gain_lb else None,
        "accuracy_gain_vs_least_busy_points_min_at": dict(zip(("placement", "rate"), min(gain_lb)[1:], strict=True))
        if gain_lb
        else None,
        "accuracy_gap_to_quality_only_points_light": max(light)[0] if light else None,
        "accuracy_gap_to_quality_only_points_light_by_placement": {p: g for g, p, _ in light},
        "useful_goodput_vs_oracle_overload": min(over_oracle)[0] if over_oracle else None,
        "useful_goodput_vs_oracle_overload_by_placement": {p: r for r, p, _ in over_oracle},
        "quality_only_slo_break_rps": {p: r["quality_only_slo_break_rps"] for p, r in placements.items()},
        "rules": "min over every swept rate and both placements, except: overload = the highest rate (twice the "
        "quality-only SLO-break rate), min over placements; light = the lowest rate, max over placements; best "
        f"baseline = the highest useful goodput among {', '.join(baselines)} at that rate and placement",
    }
    summary["targets"] = {k: f"{op} {v:g}" for k, (op, v) in TARGETS.items()}
    summary["met"] = {
        k: (summary[k] is not None and (summary[k] >= v if op == ">=" else summary[k] <= v))
        for k, (op, v) in TARGETS.items()
    }
    return summary


def noise_summary(
    placements: dict[str, dict[str, Any]],
    summary: dict[str, Any],
    records: dict[tuple[str, float], dict[str, Record]],
    policies: list[str],
) -> dict[str, Any]:
    """How much of the best-baseline ratio is noise (`goodput_noise.compare`): at the drawn minimum, and the same
    minimum taken over expected useful goodput (the draws removed). Reported beside the target, never instead."""
    triage = "triage-balanced"
    baselines = [k for k in BASELINES if k in policies]
    expected: list[tuple[float, str, float, str]] = []
    for placement, result in placements.items():
        for row in result["sweep"]:
            p = row["policies"]
            best = max(baselines, key=lambda k: p[k]["expected_useful_goodput_rps"])
            ratio = _ratio(p[triage]["expected_useful_goodput_rps"], p[best]["expected_useful_goodput_rps"])
            expected.append((ratio, placement, row["rate"], best))
    worst = min(expected)
    at = summary["useful_goodput_vs_best_baseline_min_at"]
    drawn = records[(at["placement"], at["rate"])]
    lowest = records[(worst[1], worst[2])]
    return {
        "at_drawn_min": {
            **at,
            "drawn_ratio": summary["useful_goodput_vs_best_baseline_min"],
            **compare(drawn[triage], drawn[at["baseline"]]),
        },
        "expected_min": worst[0],
        "expected_min_at": {
            "placement": worst[1],
            "rate": worst[2],
            "baseline": worst[3],
            **compare(lowest[triage], lowest[worst[3]]),
        },
        "method": "expected = useful goodput with each answer counted as its model's score (P(correct)) instead of "
        "a draw; draw_sd = the drawn ratio's standard deviation from the correctness draws alone (delta method); "
        f"prompt_bootstrap_95 = 2.5-97.5 percentiles of the expected ratio over {BOOTSTRAP_RESAMPLES} resamples of "
        "the held-out prompts. The target is judged on the drawn ratio above.",
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    placements = result["placements"]
    fig, axes = plt.subplots(1, len(placements), figsize=(6.5 * len(placements), 4.8), squeeze=False)
    for ax, (placement, data) in zip(axes[0], placements.items(), strict=True):
        rows = data["sweep"]
        rates = [r["rate"] for r in rows]
        for kind in rows[0]["policies"]:
            style = {"linestyle": ":", "color": "black"} if kind == "oracle" else {}
            width = 2.4 if kind == "triage-balanced" else 1.2
            values = [r["policies"][kind]["useful_goodput_rps"] for r in rows]
            ax.plot(rates, values, marker=".", lw=width, label=kind, **style)
        ax.axvline(data["quality_only_slo_break_rps"], color="k", lw=0.8, ls="--")
        ax.set_xlabel("offered rate (req/s); dashed: quality-only breaks the SLO")
        ax.set_ylabel(f"useful goodput (correct answers/s, TTFT <= {result['config']['slo_ttft_ms']:g} ms)")
        ax.set_title(f"{placement}: {data['gpus']} simulated H100s, {len(result['config']['models'])} engines")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Useful goodput on {Path(result['config']['outcomes']).name} (held-out prompts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# -- set-up ----------------------------------------------------------------------------------------------------


def load_predictor(args: argparse.Namespace, table: Any) -> tuple[Any, Path, str]:
    """(predictor, its folder, where it came from). A predictor must know the file's models and have been
    trained on this very file (its split is then the file's); without --predictor one is trained here on the
    training part with `triage train-quality`'s recipe when the shipped one was trained on another file."""
    from models.quality import DEFAULT_QUALITY_ARTIFACT, QualityPredictor

    path = Path(args.predictor) if args.predictor else DEFAULT_QUALITY_ARTIFACT
    predictor = QualityPredictor.load(path)
    fits = set(table.models) <= set(predictor.models)
    same_file = predictor.meta.get("data", {}).get("outcomes_sha256") == table.sha256
    if fits and same_file:
        return predictor, path, "given" if args.predictor else "shipped artifact"
    if args.predictor:
        raise SystemExit(
            f"--predictor {path} was not trained on {args.outcomes} (models or file hash differ), so its held-out "
            f"split is not this file's; train one: triage train-quality --outcomes {args.outcomes} --out DIR"
        )
    from models.train_quality import main as train_quality

    out = Path(args.cache_dir) / f"routing-value-predictor-{table.sha256[:16]}"
    if not (out / "meta.json").is_file():
        print(f"training a quality predictor on the training part of {args.outcomes} into {out}", flush=True)
        train = ("--outcomes", str(args.outcomes), "--out", str(out), "--cache-dir", str(args.cache_dir))
        train_quality([*train, "--threads", str(args.threads)])
    return QualityPredictor.load(out), out, "trained here (train-quality recipe) on the file's training part"


def parse_shapes(text: str, models: list[str], default: str) -> dict[str, str]:
    shapes = dict.fromkeys(models, default)
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, shape = item.rpartition("=")
        if name not in shapes:
            raise SystemExit(f"--shapes: '{name}' is not a model of the outcomes file: {', '.join(models)}")
        shapes[name] = shape
    return shapes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    g = p.add_argument_group("inputs")
    g.add_argument("--outcomes", type=Path, default=SHARED_DATA / "outcomes_routerdc_train.jsonl.gz")
    g.add_argument("--predictor", help="quality artifact trained on this file (default: the shipped one)")
    g.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "triage", help="embeddings, fitted predictor")
    g.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    g = p.add_argument_group("engines")
    g.add_argument("--shape", default="qwen2.5-7b", help="simulator shape of every model (7-8B pools)")
    g.add_argument("--shapes", default="", help="per-model override: MODEL=SHAPE,MODEL=SHAPE")
    g.add_argument("--max-num-seqs", type=int, default=256, help="engine batch (vLLM's default)")
    g.add_argument("--max-in-flight", type=int, default=512, help="router cap per model (Triage's default)")
    g.add_argument("--profile-time-scale", type=float, default=16.0, help="engine slow-down while profiling")
    g.add_argument("--profile-repeats", type=int, default=5)
    g.add_argument("--profile-concurrency", type=int, default=0, help="0: max_num_seqs")
    g = p.add_argument_group("load and scoring")
    g.add_argument("--slo-ttft-ms", type=float, default=1000.0, help="answers count within this TTFT")
    g.add_argument("--slo-attainment", type=float, default=0.95, help="the SLO holds while this share meets it")
    g.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals per run (virtual), at least")
    g.add_argument("--drain", type=float, default=10.0, help="seconds after the last arrival before the cut")
    g.add_argument("--scrape-s", type=float, default=1.0, help="engine gauge scrape interval")
    g.add_argument(
        "--rate-factors",
        type=lambda text: [float(x) for x in text.split(",")],
        default=list(RATE_FACTORS),
        help="swept rates as multiples of quality-only's SLO-break rate; the last is the overload point",
    )
    g.add_argument("--search-start", type=float, default=32.0, help="first rate of the break-rate search")
    g.add_argument("--search-doublings", type=int, default=8)
    g.add_argument("--search-steps", type=int, default=4, help="bisection steps after bracketing")
    g.add_argument("--policies", default=",".join(POLICIES), help="subset, comma-separated")
    g.add_argument("--placements", default=",".join(PLACEMENTS))
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", type=Path, default=RESULTS / "routing_value.json")
    g = p.add_argument_group("GPU check trace (routing_value_trace.py)")
    g.add_argument(
        "--export-trace",
        type=Path,
        help="only write the held-out workload as a gpu_replay trace (seconds; no simulation) and exit",
    )
    g.add_argument("--trace-config", type=Path, default=REPO / "configs" / "gpu-dummy.yaml", help="its engines")
    g.add_argument(
        "--trace-rates",
        type=lambda text: tuple(float(x) for x in text.split(",")),
        default=trace_export.DEFAULT_RATES,
        help="req/s, comma-separated",
    )
    g.add_argument("--trace-duration", type=float, default=trace_export.DEFAULT_DURATION_S, help="seconds per rate")
    return p


def setup(args: argparse.Namespace) -> Bench:
    import torch

    from models.data import load_outcomes
    from models.embed_cache import embed_cached
    from models.encoder import EncoderConfig
    from models.splits import heldout_mask

    torch.set_num_threads(args.threads)
    table = load_outcomes(args.outcomes)
    predictor, predictor_dir, origin = load_predictor(args, table)
    split = predictor.meta["split"]
    heldout = heldout_mask(table.prompt_ids, table.benchmarks, split["heldout_frac"], split["seed"])
    if (split.get("n_train"), split.get("n_heldout")) != (int((~heldout).sum()), int(heldout.sum())):
        raise SystemExit(f"{predictor_dir}: its recorded split does not give the held-out prompts recomputed here")
    encoder = EncoderConfig(model=predictor.meta.get("encoder_model", ""), max_tokens=int(predictor.meta["max_tokens"]))
    embedding = embed_cached(table.texts, encoder, table.cache_id, args.cache_dir)  # [P, 384]
    complexity = workload.complexity_from_training_part(embedding, table.scores, ~heldout)
    classes = workload.classify(table.texts, embedding, complexity)
    work = Workload(table, heldout, classes, [workload.prompt_tokens(t) for t in table.texts])
    shapes = parse_shapes(args.shapes, work.models, args.shape)
    profiles = {
        shape: measure_shape(
            shape, args.max_num_seqs, args.profile_time_scale, args.profile_repeats, args.profile_concurrency or None
        )
        for shape in sorted(set(shapes.values()))
    }
    print(json.dumps({"profiles": {s: {k: p[k] for k in PROFILE_FIELDS} for s, p in profiles.items()}}), flush=True)
    static_map = workload.best_per_category(work)
    static_map = {c: static_map.get(c, workload.best_single(work)) for c in CATEGORIES}
    probs = workload.predicted_quality(predictor, work)
    columns = [predictor.models.index(m) for m in work.models]
    quality, overall = probs[:, columns], [float(predictor.overall[k]) for k in columns]
    single = workload.best_single(work)
    return Bench(
        work, shapes, profiles, predictor_dir, origin, split, probs, quality, overall, single, static_map, args
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.export_trace:
        engines = trace_export.check_engines(args.trace_config)
        brief = trace_export.export(
            args.outcomes, args.export_trace, engines, args.trace_rates, args.trace_duration, args.seed
        )
        print(json.dumps(brief))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.policies = [k for k in args.policies.split(",") if k]
    if unknown := set(args.policies) - set(POLICIES):
        raise SystemExit(f"unknown policies {sorted(unknown)}; choose from {', '.join(POLICIES)}")
    if "triage-balanced" not in args.policies:
        raise SystemExit("--policies must include triage-balanced: the summary compares it with the others")
    wall0 = time.perf_counter()
    bench = setup(args)
    placements: dict[str, dict[str, Any]] = {}
    for placement in args.placements.split(","):
        break_rate = find_break_rate(bench, placement)
        placements[placement] = {
            "gpus": len({gpu_of(placement, i) for i in range(len(bench.work.models))}),
            "quality_only_slo_break_rps": break_rate,
            "break_rate_search": bench.search[placement],
            "sweep": sweep(bench, placement, break_rate),
        }
    work = bench.work
    result: dict[str, Any] = {
        "benchmark": "routing_value",
        "machine": machine(),
        "method": __doc__,
        "quality_column": "accuracy: share of routed requests answered correctly, each answer drawn from the "
        "outcomes file's published per-model score for that prompt (ground truth no policy sees); measured on "
        "prompts the quality predictor never trained on",
        "config": {
            "outcomes": str(args.outcomes),
            "outcomes_sha256": work.table.sha256,
            "models": work.models,
            "prompts": {"train": int((~work.heldout).sum()), "heldout": int(work.heldout.sum())},
            "predictor": {
                "dir": str(bench.predictor_dir),
                "origin": bench.predictor_origin,
                "split": bench.predictor_split,
                "held_out_prompts": "fitted on the training part only (train-quality fits the scorer, calibration, "
                "gate and prior there); the held-out prompts graded here are the split's held-out part, "
                "recomputed from its seed and share and checked against its recorded counts",
            },
            "classifier": "shipped MiniLM task head for categories; complexity from a head refit on the training "
            "part with train-classifier's recipe (the shipped complexity head was refit on every outcomes prompt, "
            "the held-out ones included)",
            "slo_ttft_ms": args.slo_ttft_ms,
            "slo": f"TTFT <= {args.slo_ttft_ms:g} ms for at least {args.slo_attainment:.0%} of requests; a request "
            "counts within the SLO if its first token came within the TTFT bound and it completed before the cut",
            "duration_s": args.duration,
            "drain_s": args.drain,
            "scrape_s": args.scrape_s,
            "seed": args.seed,
            "max_num_seqs": args.max_num_seqs,
            "max_in_flight": args.max_in_flight,
            "shapes": bench.shapes,
            "engines_per_shared_gpu": ENGINES_PER_SHARED_GPU,
            "measured_profiles": bench.profiles,
            "rate_factors": args.rate_factors,
            "predictor_precomputed_max_abs_diff": check_precomputed(bench),
            "output_lengths": {
                **{key: vars(m) for key, m in workload.OUTPUT_LENGTHS},
                "default": vars(workload.DEFAULT_LENGTH),
            },
            "best_single": bench.single,
            "static_category_to_model": bench.static_map,
            "policies": args.policies,
        },
        "placements": placements,
    }
    result["summary"] = summarize(placements, args.policies)
    result["summary"]["useful_goodput_vs_best_baseline_noise"] = noise_summary(
        placements, result["summary"], bench.records, args.policies
    )
    result["timing"] = {
        "wall_s": round(time.perf_counter() - wall0, 1),
        "runs": bench.runs,
        "simulation_wall_s": round(bench.run_wall_s, 1),
    }
    write_json(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps({"summary": result["summary"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
