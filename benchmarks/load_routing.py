"""Load-aware routing vs static task routing, in a discrete-event (virtual-time) simulation of three engines.

Three simulated engines (code: Qwen2.5-Coder-7B shape, chat: Qwen2.5-7B shape, small: Qwen2.5-1.5B shape),
each the served simulator's own scheduler (`server/sim/engine.py`: continuous batching, chunked prefill, the
H100-calibrated step times of `server/sim/latency.py`, per-step contention on a shared `SimGPU`) on a virtual
clock (`benchmarks/simrun.py`), an open-loop Poisson mix of code / chat / short prompts drawn from
../shared/data/prompts_train.jsonl.gz, and the REAL policy objects deciding over a REAL `LoadBoard` updated as
the gateway does (`started` at dispatch, `finished` at the last token, engine gauges scraped every second).
Policies: static task routing, least-busy, random, and Triage's presets; placements: all engines on one GPU,
and one GPU each.

Quality here is a PROFILE ESTIMATE, not a measurement: the served model's `profile.quality` for the request's
dataset category, from configs/demo.yaml (published benchmark scores and estimates) - the same table the
Triage policy maximises. `benchmarks/routing_value.py` scores answers against published outcomes instead.

    python -m benchmarks.load_routing --prompts ../shared/data/prompts_train.jsonl.gz
writes benchmarks/results/load_routing.json (+ .png) and prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baselines import LeastBusyPolicy, RandomPolicy
from benchmarks.common import REPO, RESULTS, SHARED_DATA, machine, percentile, write_json
from benchmarks.simrun import REJECTED, Cluster, RemoteSpeed, Shot, replay
from server.classify import Classification, KeywordClassifier
from server.config import ModelConfig, PolicyConfig, load_config
from server.load import LoadBoard
from server.policy import Policy, RouteRequest
from server.policy.static import StaticPolicy
from server.policy.triage import TriagePolicy
from server.sim.spec import SimEngineSpec

SHAPE_OF = {"coder": "qwen2.5-7b", "chat": "qwen2.5-7b", "fast": "qwen2.5-1.5b"}
# request classes: which dataset categories feed them, and the max_tokens their clients ask for
CLASSES: dict[str, tuple[tuple[str, ...], int]] = {
    "code": (("code",), 512),
    "chat": (
        (
            "creative_writing",
            "roleplay_chat",
            "brainstorming",
            "reasoning",
            "math",
            "summarization",
            "translation_multilingual",
        ),
        384,
    ),
    "short": (("classification", "extraction", "general_qa"), 64),
}
SCRAPE_S = 1.0
QUALITY = "quality_profile_estimate"  # the quality column's key: an estimate, see QUALITY_COLUMN
QUALITY_COLUMN = (
    "quality_profile_estimate: mean profile quality (configs/demo.yaml's per-category estimates from published "
    "scores) of the model that served each request, for the request's dataset category; an estimate, the same "
    "table the triage policy maximises, not a measured answer quality"
)


# -- workload ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Req:
    rid: int
    klass: str
    category: str  # the dataset's (true) category: what served quality is scored on
    classification: Classification  # what the router sees (keyword classifier)
    prompt_tokens: int
    max_tokens: int
    out_tokens: int  # what the engine will generate (answers stop before max_tokens)
    arrival_s: float
    model: str = ""
    first_token_s: float = math.inf
    done_s: float = math.inf
    prompt: str = ""  # the text itself: gpu_policy_frontier.py sends it to real engines


def load_prompts(path: Path, per_class: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """class -> [(category, prompt)], a seeded sample of at most per_class prompts."""
    pools: dict[str, list[tuple[str, str]]] = {k: [] for k in CLASSES}
    owner = {c: k for k, (cats, _) in CLASSES.items() for c in cats}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            klass = owner.get(row["category"])
            if klass is not None:
                pools[klass].append((row["category"], row["prompt"]))
    rng = random.Random(seed)
    return {k: rng.sample(v, min(per_class, len(v))) for k, v in pools.items()}


def make_trace(
    rate: float,
    duration_s: float,
    mix: dict[str, float],
    prompts: dict[str, list[tuple[str, str]]],
    classified: dict[str, Classification],
    seed: int,
) -> list[Req]:
    rng = random.Random(seed)
    classes, weights = list(mix), [mix[k] for k in mix]
    t = 0.0
    out: list[Req] = []
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return out
        klass = rng.choices(classes, weights)[0]
        category, prompt = rng.choice(prompts[klass])
        max_tokens = CLASSES[klass][1]
        out.append(
            Req(
                len(out),
                klass,
                category,
                classified[prompt],
                min(4096, len(prompt) // 4 + 8),
                max_tokens,
                max(1, round(max_tokens * rng.uniform(0.3, 1.0))),
                t,
                prompt=prompt,
            )
        )


# -- one run ----------------------------------------------------------------------------------------------


def build_models(base: list[ModelConfig], placement: str, remote: bool) -> list[ModelConfig]:
    models = []
    for i, m in enumerate(base):
        gpu = "0" if placement == "shared" else str(i)
        models.append(m.model_copy(update={"gpu": gpu, "simulated": None}))
    if remote:
        models.append(
            ModelConfig.model_validate(
                {
                    "name": "remote",
                    "kind": "openai",
                    "endpoints": ["https://api.example.invalid/v1"],
                    "remote": True,
                    "context_length": 128000,
                    "profile": {
                        "quality_default": 0.9,
                        "base_ttft_ms": 400.0,
                        "decode_tok_per_s": 80.0,
                        "prefill_tok_per_s": 50000.0,
                        "usd_per_1m_tokens": 0.6,
                    },
                }
            )
        )
    return models


def make_policy(kind: str, models: list[ModelConfig], load: LoadBoard) -> Policy:
    if kind == "static":
        return StaticPolicy(models, load, PolicyConfig(name="static"))
    if kind == "least-busy":
        return LeastBusyPolicy(models, load, PolicyConfig())
    if kind == "random":
        return RandomPolicy(models, load, PolicyConfig())
    preset = kind.split("-")[1].split("+")[0]
    settings = PolicyConfig(name="triage", preset=preset, allow_remote=kind.endswith("+remote"), options={"seed": 1})
    return TriagePolicy(models, load, settings)


def simulate(
    kind: str,
    placement: str,
    base_models: list[ModelConfig],
    trace: list[Req],
    duration_s: float,
    slo_ttft_s: float,
    drain_s: float,
) -> dict[str, Any]:
    models = build_models(base_models, placement, kind.endswith("+remote"))
    specs = [
        SimEngineSpec(
            name=m.name, port=0, gpu=m.gpu or "0", shape=SHAPE_OF[m.name], max_num_seqs=m.profile.max_num_seqs
        )
        for m in models
        if not m.remote
    ]
    remote = {m.name: RemoteSpeed(m.profile.base_ttft_ms / 1e3, m.profile.decode_tok_per_s) for m in models if m.remote}
    cluster = Cluster.build(specs, remote)
    load = LoadBoard()
    policy = make_policy(kind, models, load)
    if isinstance(policy, TriagePolicy):
        policy.clock = cluster.clock.time
    shots = [
        Shot(
            r.rid, r.arrival_s, RouteRequest(str(r.rid), r.classification, r.prompt_tokens, r.max_tokens), r.out_tokens
        )
        for r in trace
    ]
    end_s = duration_s + drain_s
    served = replay(policy, load, cluster, shots, end_s, SCRAPE_S)
    reqs = [
        dataclasses.replace(r, model=s.model, first_token_s=s.first_token_s, done_s=s.done_s)
        for r, s in zip(trace, served, strict=True)
    ]
    return summarize(reqs, models, duration_s, slo_ttft_s, end_s, [s.decide_us for s in served if s.model != REJECTED])


def summarize(
    reqs: list[Req],
    models: list[ModelConfig],
    duration_s: float,
    slo_ttft_s: float,
    end_s: float,
    decide_us: list[float],
) -> dict[str, Any]:
    quality = {m.name: m.profile for m in models}
    remote = {m.name for m in models if m.remote}
    ttft = [min(r.first_token_s, end_s) - r.arrival_s for r in reqs]  # unanswered: censored at the end
    good = [r for r, t in zip(reqs, ttft, strict=True) if t <= slo_ttft_s and r.done_s <= end_s]
    served_q = [
        quality[r.model].quality.get(r.category, quality[r.model].quality_default) for r in reqs if r.model != REJECTED
    ]
    share = {m.name: 0 for m in models} | {REJECTED: 0}
    for r in reqs:
        share[r.model] += 1
    code = [t for r, t in zip(reqs, ttft, strict=True) if r.klass == "code"]
    return {
        "requests": len(reqs),
        "goodput_rps": round(len(good) / duration_s, 3),
        "slo_attainment": round(len(good) / max(1, len(reqs)), 4),
        "code_slo_attainment": round(sum(t <= slo_ttft_s for t in code) / max(1, len(code)), 4),
        "ttft_p50_ms": round(percentile(ttft, 50) * 1e3, 1),
        "ttft_p99_ms": round(percentile(ttft, 99) * 1e3, 1),
        QUALITY: round(statistics.fmean(served_q), 4) if served_q else math.nan,
        "overflow_share": round(sum(r.model in remote for r in reqs) / max(1, len(reqs)), 4),
        "model_share": {k: round(v / max(1, len(reqs)), 4) for k, v in share.items()},
        "decide_us_mean": round(statistics.fmean(decide_us), 2) if decide_us else None,
        "decide_us_p99": round(percentile(decide_us, 99), 2) if decide_us else None,
    }


# -- the sweep, the summary, the plot ---------------------------------------------------------------------


def micro_benchmark(base_models: list[ModelConfig], n: int = 20_000) -> dict[str, float]:
    """Decision cost of the triage policy alone, three models, one busy engine, no store."""
    load = LoadBoard()
    for _ in range(300):
        load.started("coder", 450, 250)
    policy = TriagePolicy(build_models(base_models, "shared", False), load, PolicyConfig(name="triage"))
    cls = KeywordClassifier().classify_now("Write a Python function that merges two sorted lists.")
    request = RouteRequest("r", cls, 40, 512)
    for _ in range(1000):
        policy.choose(request)  # warm-up
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        policy.choose(request)
        samples.append((time.perf_counter() - t0) * 1e6)
    return {
        "decisions": n,
        "mean_us": round(statistics.fmean(samples), 2),
        "p50_us": round(percentile(samples, 50), 2),
        "p99_us": round(percentile(samples, 99), 2),
    }


def dominates(points: list[dict[str, Any]], static: dict[str, Any]) -> bool:
    g0, q0 = static["goodput_rps"], static[QUALITY]
    return any(
        (p["goodput_rps"] > g0 and p[QUALITY] >= q0) or (p[QUALITY] > q0 and p["goodput_rps"] >= g0) for p in points
    )


def learned_router_gain() -> tuple[float | None, str]:
    """Accuracy points of learned routing over the best single model on the outcomes hold-out split, as
    `triage train-quality` recorded them in the predictor's artifact (models/artifacts/quality/meta.json)."""
    path = REPO / "models" / "artifacts" / "quality" / "meta.json"
    if not path.exists():
        return None, f"{path.relative_to(REPO)} not found: run `triage train-quality`"
    held = json.loads(path.read_text()).get("metrics_heldout", {})
    held = held.get("id", held)  # format 2: the in-distribution hold-out ("id") beside leave-one-benchmark-out
    held_out = held.get("average", {}).get("prompt_weighted", {})
    if "routed_minus_best_single" not in held_out:
        return None, f"{path.relative_to(REPO)} has no metrics_heldout[.id].average.prompt_weighted"
    return (
        round(100 * float(held_out["routed_minus_best_single"]), 2),
        f"{path.relative_to(REPO)}: metrics_heldout[.id].average.prompt_weighted (n={held_out.get('n')}), "
        f"routed {held_out.get('routed')} vs best single {held_out.get('best_single')}",
    )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    shared = results["placements"]["shared"]
    rate = results["summary"]["single_gpu_rate"]
    row = next(r for r in shared["sweep"] if r["rate"] == rate)
    ax = axes[0]
    triage = [(k, v) for k, v in row["policies"].items() if k.startswith("triage")]
    ax.plot(
        [v["goodput_rps"] for _, v in triage],
        [v[QUALITY] for _, v in triage],
        "o-",
        label="Triage presets",
    )
    for k, v in triage:
        ax.annotate(k.removeprefix("triage-"), (v["goodput_rps"], v[QUALITY]), fontsize=8)
    for k, marker in (("static", "s"), ("least-busy", "^"), ("random", "x")):
        if k not in row["policies"]:
            continue
        v = row["policies"][k]
        ax.plot(v["goodput_rps"], v[QUALITY], marker, label=k, markersize=9)
    ax.set_xlabel(f"goodput (req/s with TTFT <= {results['config']['slo_ttft_ms']:.0f} ms)")
    ax.set_ylabel("served quality, profile estimate (not measured)")
    ax.set_title(f"one shared GPU, {rate:g} req/s offered")
    ax.legend(fontsize=8)
    ax = axes[1]
    sweep = results["placements"]["separate"]["sweep"]
    for k in sweep[0]["policies"]:
        ax.plot([r["rate"] for r in sweep], [r["policies"][k]["goodput_rps"] for r in sweep], ".-", label=k)
    ax.plot([r["rate"] for r in sweep], [r["rate"] for r in sweep], "k:", lw=0.8, label="offered")
    ax.axvline(results["summary"]["separate_gpu_rate"], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel("goodput (req/s)")
    ax.set_title("one GPU per engine: goodput vs load")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def saturating_rate(sweep: list[dict[str, Any]], threshold: float) -> float:
    """The lowest swept rate at which static routing's code requests meet the SLO less than `threshold`."""
    for row in sweep:
        if row["policies"]["static"]["code_slo_attainment"] < threshold:
            return float(row["rate"])
    return float(sweep[-1]["rate"])


def add_workload_args(
    parser: argparse.ArgumentParser, *, rates: str, rates_help: str, duration_s: float, drain_s: float, drain_help: str
) -> tuple[argparse._ArgumentGroup, argparse._ArgumentGroup]:
    """The workload and scoring flags this benchmark shares with gpu_policy_frontier.py; returns both groups."""
    g = parser.add_argument_group("workload")
    g.add_argument(
        "--prompts",
        type=Path,
        default=SHARED_DATA / "prompts_train.jsonl.gz",
        help="prompts file (gzipped JSON lines with prompt and category)",
    )
    g.add_argument("--mix", default="code=0.6,chat=0.25,short=0.15", help="request class shares")
    g.add_argument("--rates", default=rates, help=rates_help)
    g.add_argument("--duration", type=float, default=duration_s, help="seconds of arrivals per run")
    g.add_argument("--drain", type=float, default=drain_s, help=drain_help)
    g.add_argument("--seed", type=int, default=0)
    scoring = parser.add_argument_group("scoring")
    scoring.add_argument("--slo-ttft-ms", type=float, default=1000.0, help="goodput counts answers within this TTFT")
    scoring.add_argument(
        "--saturation",
        type=float,
        default=0.5,
        help="static routing counts as saturated where it meets the SLO on fewer code requests than this",
    )
    return g, scoring


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_workload_args(
        parser,
        rates="20,40,60,70,80,90,100,110,120,140",
        rates_help="offered req/s to sweep",
        duration_s=60.0,
        drain_s=30.0,
        drain_help="seconds after arrivals stop before the cut",
    )
    g = parser.add_argument_group("output")
    g.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"), help="profiles of coder/chat/fast")
    g.add_argument("--out", default=str(RESULTS / "load_routing.json"))
    g.add_argument(
        "--policies",
        default="static,least-busy,random,triage-balanced,triage-quality,triage-speed,"
        "triage-cost,triage-balanced+remote",
    )
    args = parser.parse_args(argv)

    mix = {k: float(v) for k, v in (p.split("=") for p in args.mix.split(","))}
    rates = [float(r) for r in args.rates.split(",")]
    policies = args.policies.split(",")
    base_models = [m for m in load_config(args.config).models if m.name in SHAPE_OF]
    prompts = load_prompts(Path(args.prompts), 2000, args.seed)
    classifier = KeywordClassifier()
    classified = {p: classifier.classify_now(p) for pool in prompts.values() for _, p in pool}
    slo_s = args.slo_ttft_ms / 1e3
    wall0 = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "load_routing",
        "machine": machine(),
        "method": "discrete-event simulation in virtual time: the served simulator's scheduler "
        "(server/sim/engine.SimEngine: continuous batching, chunked prefill, KV-cache admission, the H100-calibrated "
        "step times of server/sim/latency.py, SimGPU contention) on a VirtualClock, driven by the real policy "
        "objects over a real LoadBoard (started/finished per request as the gateway does, engine gauges scraped "
        "every 1 s); no HTTP",
        "quality_column": QUALITY_COLUMN,
        "config": {
            "mix": mix,
            "rates": rates,
            "duration_s": args.duration,
            "drain_s": args.drain,
            "slo_ttft_ms": args.slo_ttft_ms,
            "seed": args.seed,
            "classifier": "keyword",
            "max_tokens": {k: v[1] for k, v in CLASSES.items()},
            "output_tokens": "uniform(0.3, 1.0) x max_tokens",
            "engines": SHAPE_OF,
            "remote_variant": "triage-balanced+remote: a remote provider (quality 0.9, TTFT 400 ms, "
            "80 tok/s, $0.6/1M tokens) allowed for overflow",
        },
        "placements": {},
    }
    for placement in ("separate", "shared"):
        sweep = []
        for rate in rates:
            trace = make_trace(rate, args.duration, mix, prompts, classified, args.seed + int(rate))
            row: dict[str, Any] = {"rate": rate, "policies": {}}
            for kind in policies:
                if kind.endswith("+remote") and placement == "shared":
                    continue
                row["policies"][kind] = simulate(kind, placement, base_models, trace, args.duration, slo_s, args.drain)
            sweep.append(row)
            print(
                json.dumps(
                    {
                        "placement": placement,
                        "rate": rate,
                        **{k: (v["goodput_rps"], v[QUALITY], v["ttft_p99_ms"]) for k, v in row["policies"].items()},
                    }
                ),
                flush=True,
            )
        results["placements"][placement] = {"sweep": sweep}

    sep = results["placements"]["separate"]["sweep"]
    rate_sep = saturating_rate(sep, args.saturation)
    row = next(r for r in sep if r["rate"] == rate_sep)["policies"]
    static, balanced = row["static"], row["triage-balanced"]
    shared = results["placements"]["shared"]["sweep"]
    rate_shared = saturating_rate(shared, args.saturation)
    row_shared = next(r for r in shared if r["rate"] == rate_shared)["policies"]
    presets = [v for k, v in row_shared.items() if k.startswith("triage-")]
    gain, gain_note = learned_router_gain()
    results["micro_benchmark_decision"] = micro_benchmark(base_models)
    results["summary"] = {
        "separate_gpu_rate": rate_sep,
        "goodput_ratio_vs_static": round(balanced["goodput_rps"] / max(1e-9, static["goodput_rps"]), 3),
        "p99_ttft_ratio_vs_static": round(balanced["ttft_p99_ms"] / max(1e-9, static["ttft_p99_ms"]), 3),
        "quality_profile_estimate_delta_vs_static": round(
            (balanced[QUALITY] - static[QUALITY]) / static[QUALITY],
            4,
        ),
        "single_gpu_rate": rate_shared,
        "single_gpu_dominates_static": dominates(presets, row_shared["static"]),
        "single_gpu_dominates_static_all_rates": all(
            dominates([v for k, v in r["policies"].items() if k.startswith("triage-")], r["policies"]["static"])
            for r in shared
        ),
        "learned_router_gain_points": gain,
        "learned_router_gain_note": gain_note,
        "triage_policy_in_ratios": "triage-balanced (local only)",
        "saturating_rate_rule": f"lowest swept rate where static routing meets the TTFT SLO on fewer than "
        f"{args.saturation:.0%} of code requests",
        "decision_us_mean": results["micro_benchmark_decision"]["mean_us"],
    }
    results["wall_s"] = round(time.perf_counter() - wall0, 1)
    out = Path(args.out)
    write_json(out, results)
    plot(results, out.with_suffix(".png"))
    print(json.dumps({"summary": results["summary"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
