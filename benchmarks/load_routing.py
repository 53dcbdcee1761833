"""Load-aware routing vs static task routing, in a discrete-event (virtual-time) simulation.

Three simulated engines (code: Qwen2.5-Coder-7B shape, chat: Qwen2.5-7B shape, small: Qwen2.5-1.5B shape) with
the H100-calibrated latency model of `server/sim/latency.py` (continuous batching, chunked prefill, per-step
GPU contention via `server/sim/gpu.SimGPU`), an open-loop Poisson mix of code / chat / short prompts drawn from
../shared/data/prompts_train.jsonl.gz, and the REAL policy objects deciding over a REAL `LoadBoard` updated as
the gateway does (`started` at dispatch, `finished` at the last token, engine gauges scraped every second).
Virtual time replaces HTTP: a 2-core box cannot drive saturating real traffic, and the simulation is exact
and repeatable. Policies: static task routing (the keyword policy), least-busy, random, and Triage's presets;
placements: all engines on one GPU, and one GPU each.

    python -m benchmarks.load_routing --prompts ../shared/data/prompts_train.jsonl.gz
writes benchmarks/results/load_routing.json (+ .png) and prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import json
import math
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from server.classify import Classification, KeywordClassifier
from server.config import ModelConfig, PolicyConfig, load_config
from server.errors import TriageError
from server.load import LoadBoard
from server.policy import Decision, Outcome, Policy, RouteRequest
from server.policy.eligibility import ineligible_reason, raise_no_candidate
from server.policy.static import StaticPolicy
from server.policy.triage import TriagePolicy
from server.sim.gpu import SimGPU
from server.sim.latency import SHAPES, LatencyModel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
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
MAX_BATCHED_TOKENS = 8192  # vLLM's default chunked-prefill budget, as the simulated engine uses
SCRAPE_S = 1.0
REJECTED = "(rejected)"  # the model of a request every model refused (429)


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
    prefill_left: int = 0
    finish_step: int = 0
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


# -- a virtual-time twin of server/sim/engine.py's scheduler ---------------------------------------------------


class VirtualEngine:
    """FIFO admission (max_num_seqs, KV cache), chunked prefill within the token budget, one token per step."""

    def __init__(self, name: str, shape: str, gpu: SimGPU, max_num_seqs: int) -> None:
        self.name = name
        self.model = LatencyModel.from_shape(shape)
        self.kv_capacity = SHAPES[shape].kv_cache_tokens
        self.gpu = gpu
        gpu.register(name)
        self.max_num_seqs = max_num_seqs
        self.waiting: deque[Req] = deque()
        self.prefilling: list[Req] = []
        self.decoding: list[tuple[int, int, Req]] = []  # heap of (finish_step, rid, req)
        self.n_decoding = 0
        self.kv_used = 0
        self.step_index = 0
        self.busy = False

    @property
    def running(self) -> int:
        return len(self.prefilling) + self.n_decoding

    def start_step(self, now_s: float) -> tuple[float, list[Req]] | None:
        """Plan one step; returns (end time, sequences whose first token it emits), or None when idle."""
        while self.waiting and self.running < self.max_num_seqs:
            req = self.waiting[0]
            if self.kv_used + req.prompt_tokens > self.kv_capacity and self.running:
                break
            self.waiting.popleft()
            self.kv_used += req.prompt_tokens
            req.prefill_left = req.prompt_tokens
            self.prefilling.append(req)
        if not self.running:
            self.gpu.report(self.name, 0)
            self.busy = False
            return None
        budget = max(0, MAX_BATCHED_TOKENS - self.n_decoding)
        tokens, first = 0, []
        for req in self.prefilling:
            if budget <= 0:
                break
            chunk = min(req.prefill_left, budget)
            req.prefill_left -= chunk
            budget -= chunk
            tokens += chunk
            if req.prefill_left == 0:
                first.append(req)
        self.gpu.report(self.name, self.running)
        factor = self.gpu.factor(self.name, self.model.contention_sensitivity)
        step_ms = self.model.step_ms(self.n_decoding + len(first), tokens) * factor
        self.busy = True
        return now_s + step_ms / 1e3, first

    def end_step(self, now_s: float, first: list[Req]) -> list[Req]:
        """Emit the step's tokens; returns the requests that finished."""
        self.step_index += 1
        self.kv_used += self.n_decoding + len(first)
        done: list[Req] = []
        for req in first:
            self.prefilling.remove(req)
            req.first_token_s = now_s
            if req.out_tokens <= 1:
                done.append(req)
            else:
                heapq.heappush(self.decoding, (self.step_index + req.out_tokens - 1, req.rid, req))
                self.n_decoding += 1
        while self.decoding and self.decoding[0][0] <= self.step_index:
            req = heapq.heappop(self.decoding)[2]
            self.n_decoding -= 1
            done.append(req)
        for req in done:
            req.done_s = now_s
            self.kv_used -= req.prompt_tokens + req.out_tokens
        return done


# -- baselines that are not in the product's registry ------------------------------------------------------


class LeastBusyPolicy(Policy):
    name: ClassVar[str] = "least-busy"

    def choose(self, request: RouteRequest) -> Decision:
        return self._pick(request, lambda ok: min(ok, key=lambda m: self.load.engine(m.name).in_flight))

    def _pick(self, request: RouteRequest, pick: Any) -> Decision:
        ok = [
            m
            for m in self.models
            if ineligible_reason(m, self.load.engine(m.name), request, self.settings.allow_remote) is None
        ]
        if not ok:
            raise_no_candidate([])
        return Decision(pick(ok).name, self.name, [])


class RandomPolicy(LeastBusyPolicy):
    name: ClassVar[str] = "random"
    rng = random.Random(7)

    def choose(self, request: RouteRequest) -> Decision:
        return self._pick(request, self.rng.choice)


# -- one run ----------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    policy: str
    placement: str
    rate: float
    metrics: dict[str, Any] = field(default_factory=dict)


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


def make_policy(kind: str, models: list[ModelConfig], load: LoadBoard, clock: list[float]) -> Policy:
    if kind == "static":
        return StaticPolicy(models, load, PolicyConfig(name="static"))
    if kind == "least-busy":
        return LeastBusyPolicy(models, load, PolicyConfig())
    if kind == "random":
        return RandomPolicy(models, load, PolicyConfig())
    preset = kind.split("-")[1].split("+")[0]
    settings = PolicyConfig(name="triage", preset=preset, allow_remote=kind.endswith("+remote"), options={"seed": 1})
    policy = TriagePolicy(models, load, settings)
    policy.clock = lambda: clock[0]
    return policy


def simulate(
    kind: str,
    placement: str,
    base_models: list[ModelConfig],
    trace: list[Req],
    duration_s: float,
    slo_ttft_s: float,
    drain_s: float,
) -> dict[str, Any]:
    remote = kind.endswith("+remote")
    models = build_models(base_models, placement, remote)
    load = LoadBoard()
    clock = [0.0]
    policy = make_policy(kind, models, load, clock)
    gpus: dict[str, SimGPU] = {}
    engines: dict[str, VirtualEngine] = {}
    for m in models:
        if not m.remote:
            gpu = gpus.setdefault(m.gpu or "0", SimGPU(m.gpu or "0"))
            engines[m.name] = VirtualEngine(m.name, SHAPE_OF[m.name], gpu, m.profile.max_num_seqs)
    remote_profile = next((m.profile for m in models if m.remote), None)
    reqs = [
        Req(r.rid, r.klass, r.category, r.classification, r.prompt_tokens, r.max_tokens, r.out_tokens, r.arrival_s)
        for r in trace
    ]
    events: list[tuple[float, int, str, Any]] = [(r.arrival_s, r.rid, "arrive", r) for r in reqs]
    events.append((0.0, -1, "scrape", None))
    heapq.heapify(events)
    seq = len(reqs)
    decide_us: list[float] = []
    end_s = duration_s + drain_s

    def push(t: float, kind_: str, payload: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind_, payload))

    def kick(engine: VirtualEngine, now: float) -> None:
        if not engine.busy:
            step = engine.start_step(now)
            if step is not None:
                push(step[0], "step", (engine, step[1]))

    def finish(req: Req) -> None:
        load.finished(req.model, req.prompt_tokens, req.max_tokens)
        policy.observe(str(req.rid), req.model, Outcome.OK, req.done_s - req.arrival_s)

    while events:
        now, _, what, payload = heapq.heappop(events)
        if now > end_s:
            break
        clock[0] = now
        if what == "arrive":
            req = payload
            request = RouteRequest(str(req.rid), req.classification, req.prompt_tokens, req.max_tokens)
            t0 = time.perf_counter()
            try:
                decision = policy.commit(request, policy.choose(request))
            except TriageError:  # every model at its in-flight cap: the client gets a 429
                req.model = REJECTED
                continue
            decide_us.append((time.perf_counter() - t0) * 1e6)
            req.model = decision.model
            load.started(req.model, req.prompt_tokens, req.max_tokens)
            engine = engines.get(req.model)
            if engine is None:  # remote: elastic, the profile's idle speed
                assert remote_profile is not None
                req.first_token_s = now + remote_profile.base_ttft_ms / 1e3
                req.done_s = req.first_token_s + req.out_tokens / remote_profile.decode_tok_per_s
                push(req.done_s, "remote_done", req)
                continue
            push(now + engine.model.frontend_ms / 1e3, "enqueue", (engine, req))
        elif what == "enqueue":
            engine, req = payload
            engine.waiting.append(req)
            kick(engine, now)
        elif what == "step":
            engine, first = payload
            engine.busy = False
            for req in engine.end_step(now, first):
                finish(req)
            kick(engine, now)
        elif what == "remote_done":
            finish(payload)
        elif what == "scrape":
            for name, engine in engines.items():
                load.record_scrape(
                    name, engine.running, len(engine.waiting), min(1.0, engine.kv_used / engine.kv_capacity)
                )
                load.engine(name).scraped_at_s = now  # virtual clock, as the policy reads it
            if now + SCRAPE_S <= end_s:
                push(now + SCRAPE_S, "scrape", None)
    return summarize(reqs, models, duration_s, slo_ttft_s, end_s, decide_us)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


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
        "ttft_p50_ms": round(_pct(ttft, 0.5) * 1e3, 1),
        "ttft_p99_ms": round(_pct(ttft, 0.99) * 1e3, 1),
        "mean_quality": round(statistics.fmean(served_q), 4) if served_q else math.nan,
        "overflow_share": round(sum(r.model in remote for r in reqs) / max(1, len(reqs)), 4),
        "model_share": {k: round(v / max(1, len(reqs)), 4) for k, v in share.items()},
        "decide_us_mean": round(statistics.fmean(decide_us), 2) if decide_us else None,
        "decide_us_p99": round(_pct(decide_us, 0.99), 2) if decide_us else None,
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
        "p50_us": round(_pct(samples, 0.5), 2),
        "p99_us": round(_pct(samples, 0.99), 2),
    }


def dominates(points: list[dict[str, Any]], static: dict[str, Any]) -> bool:
    g0, q0 = static["goodput_rps"], static["mean_quality"]
    return any(
        (p["goodput_rps"] > g0 and p["mean_quality"] >= q0) or (p["mean_quality"] > q0 and p["goodput_rps"] >= g0)
        for p in points
    )


def learned_router_gain() -> tuple[float | None, str]:
    """Accuracy points of learned routing over the best single model on the outcomes hold-out split, as
    `triage train-quality` recorded them in the predictor's artifact (models/artifacts/quality/meta.json)."""
    path = ROOT / "models" / "artifacts" / "quality" / "meta.json"
    if not path.exists():
        return None, f"{path.relative_to(ROOT)} not found: run `triage train-quality`"
    held_out = json.loads(path.read_text()).get("metrics_heldout", {}).get("average", {}).get("prompt_weighted", {})
    if "routed_minus_best_single" not in held_out:
        return None, f"{path.relative_to(ROOT)} has no metrics_heldout.average.prompt_weighted"
    return (
        round(100 * float(held_out["routed_minus_best_single"]), 2),
        f"{path.relative_to(ROOT)}: metrics_heldout.average.prompt_weighted (n={held_out.get('n')}), "
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
    ax.plot([v["goodput_rps"] for _, v in triage], [v["mean_quality"] for _, v in triage], "o-", label="Triage presets")
    for k, v in triage:
        ax.annotate(k.removeprefix("triage-"), (v["goodput_rps"], v["mean_quality"]), fontsize=8)
    for k, marker in (("static", "s"), ("least-busy", "^"), ("random", "x")):
        if k not in row["policies"]:
            continue
        v = row["policies"][k]
        ax.plot(v["goodput_rps"], v["mean_quality"], marker, label=k, markersize=9)
    ax.set_xlabel(f"goodput (req/s with TTFT <= {results['config']['slo_ttft_ms']:.0f} ms)")
    ax.set_ylabel("mean profile quality of the served model")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = parser.add_argument_group("workload")
    g.add_argument(
        "--prompts",
        default=str(ROOT.parent / "shared" / "data" / "prompts_train.jsonl.gz"),
        help="prompts file (gzipped JSON lines with prompt and category)",
    )
    g.add_argument("--mix", default="code=0.6,chat=0.25,short=0.15", help="request class shares")
    g.add_argument("--rates", default="20,40,60,70,80,90,100,110,120,140", help="offered req/s to sweep")
    g.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals per run (virtual)")
    g.add_argument("--drain", type=float, default=30.0, help="seconds after arrivals stop before the cut")
    g.add_argument("--seed", type=int, default=0)
    g = parser.add_argument_group("scoring")
    g.add_argument("--slo-ttft-ms", type=float, default=1000.0, help="goodput counts answers within this TTFT")
    g.add_argument(
        "--saturation",
        type=float,
        default=0.5,
        help="code model counts as saturated where static meets the SLO on fewer code requests",
    )
    g = parser.add_argument_group("output")
    g.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"), help="profiles of coder/chat/fast")
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
        "method": "discrete-event simulation in virtual time: server/sim/latency.py's H100-calibrated latency "
        "model and SimGPU contention, driven by the real policy objects over a real LoadBoard "
        "(started/finished per request as the gateway does, engine gauges scraped every 1 s); no HTTP",
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
                        **{
                            k: (v["goodput_rps"], v["mean_quality"], v["ttft_p99_ms"])
                            for k, v in row["policies"].items()
                        },
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
        "quality_delta_vs_static": round(
            (balanced["mean_quality"] - static["mean_quality"]) / static["mean_quality"], 4
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out.with_suffix(".png"))
    print(json.dumps({"summary": results["summary"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
