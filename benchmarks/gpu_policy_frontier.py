"""Load-aware routing vs static task routing on REAL vLLM engines sharing one GPU: load_routing.py, measured.

One `triage serve` on configs/gpu-frontier.yaml launches the three engines once (coder and chat 7B-shaped, fast
1.5B-shaped; dummy weights). Engines start in minutes, so policies are compared without restarting them:
  static   a second router, `triage serve`, policy `static`, its models' `endpoints` pointing at
           the same engine ports (static task routing: category -> role -> model; nothing else differs)
  triage-* the first router (policy `triage`), each request naming its preset in `route.priority`
Both routers run the same code, the same keyword classifier and the same relay, so only the decision differs.

The workload is load_routing.py's, imported from it: code / chat / short prompts drawn from
../shared/data/prompts_train.jsonl.gz, open-loop Poisson arrivals, per-class max_tokens (512 / 384 / 64) of which
an answer uses uniform(0.3, 1.0); here every answer is that long exactly (max_tokens = its sampled length,
`ignore_eos`), and prompts are cut at --max-prompt-bytes. The same trace is replayed for every policy at a rate.
Each run: --duration s of arrivals, then until every request has its first token (at most --drain s); streams
still open are then closed (Triage aborts them in vLLM) and the engines are left to empty before the next run.
Scoring is load_routing.summarize(): goodput = requests with TTFT within the SLO and no error, per second of
arrivals; TTFT censored at the cut; quality = the PROFILE ESTIMATE (configs' profile.quality) of the model that
served each request for the request's dataset category, not a measured answer quality. Also recorded: router
CPU, and each engine's running / waiting gauges each second.

Rates: with `--rates auto` a probe first measures the coder engine alone (64 concurrent code prompts, direct,
non-streamed) and the sweep is set around the rate that engine would saturate at under static routing. Rates run
in the listed order (the likely saturated ones first) and a rate is skipped when it no longer fits --budget-s;
JSON is rewritten after every rate, so a run cut short still leaves its results.

    python -m benchmarks.gpu_policy_frontier --prompts ../shared/data/prompts_train.jsonl.gz
writes gpu_policy_frontier.json (+ .png) under --out-dir and prints one JSON summary line. Client load comes from
--workers processes (asyncio aiohttp); all traffic goes to 127.0.0.1. Exits 2 without a GPU or vLLM.
Not part of `scripts/gpu_check.sh` (the one device call): it needs a call of its own (~9.5 min, three eager engine
starts), which a 15-minute lease does not leave beside the check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import json
import math
import multiprocessing as mp
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import Launch, cpu_s, parse_metrics, percentile, server_process, triage_serve
from benchmarks.gpu_throughput import environment, model_shapes, refuse_without_gpu
from benchmarks.load_routing import (
    CLASSES,
    QUALITY,
    REJECTED,
    Req,
    add_workload_args,
    dominates,
    load_prompts,
    make_trace,
    summarize,
)
from server.classify import KeywordClassifier
from server.config import ModelConfig, TriageConfig, interpolate_env

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "gpu-frontier.yaml"
STATIC_PORT = 8310  # the static router; the Triage router and the engines take the config's ports
PRESETS = ("quality", "balanced", "speed", "cost")
AUTO_RATE_FACTORS = (0.75, 1.0, 0.4, 1.3)  # x the probe's saturation estimate, in run order
WARM_UP_S = 4.0  # arrivals of the unrecorded first run (connections, engines' batch shapes, routers' code paths)

# -- one client process ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Shot:
    rid: int
    at_s: float  # arrival, seconds after the run's start
    prompt: str
    max_tokens: int


@dataclass(slots=True)
class Outcome:
    rid: int
    first_token_s: float = math.inf  # time.monotonic() (one clock for every process on Linux)
    end_s: float = math.inf  # stream ended by the server; inf when cut by the run or failed
    model: str = ""  # x-triage-model, else the chunks' `model`
    status: int = 0
    events: int = 0  # SSE data events after the first token
    send_lag_s: float = 0.0  # how late the client sent it (open loop: should stay ~0)
    cut: bool = False  # still streaming when the run closed it
    error: str = ""


@dataclass
class RunJob:
    url: str  # .../v1/chat/completions of one router
    route: dict[str, Any] | None  # Triage's `route` object, or None (static)
    shots: list[Shot]
    start_s: float  # monotonic time of arrival 0, the same for every worker
    cut_s: float  # monotonic: streams still open are closed
    request_timeout_s: float


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the pool


def run_job(job: RunJob) -> list[Outcome]:
    return asyncio.run(_run_job(job))


async def _run_job(job: RunJob) -> list[Outcome]:
    outcomes = [Outcome(s.rid) for s in job.shots]
    pending = set(range(len(job.shots)))  # requests still waiting for their first token
    timeout = aiohttp.ClientTimeout(total=job.request_timeout_s)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        tasks = []
        for i, shot in enumerate(job.shots):  # sorted by arrival: open loop, whatever the answers do
            await asyncio.sleep(max(0.0, job.start_s + shot.at_s - time.monotonic()))
            outcomes[i].send_lag_s = max(0.0, time.monotonic() - job.start_s - shot.at_s)
            tasks.append(asyncio.create_task(_one(session, job, shot, outcomes[i], pending, i)))
        while pending and time.monotonic() < job.cut_s:  # drain: until every request has its first token
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return outcomes


async def _one(
    session: aiohttp.ClientSession, job: RunJob, shot: Shot, out: Outcome, pending: set[int], index: int
) -> None:
    body: dict[str, Any] = {
        "model": "auto",
        "messages": [{"role": "user", "content": shot.prompt}],
        "max_tokens": shot.max_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
    }
    if job.route is not None:
        body["route"] = job.route
    try:
        async with session.post(job.url, json=body) as response:
            out.status = response.status
            out.model = response.headers.get("x-triage-model", "")
            if response.status != 200:
                out.error = f"HTTP {response.status}: {(await response.read())[:200].decode(errors='replace')}"
                return
            head = b""
            async for chunk in response.content.iter_any():
                if not math.isinf(out.first_token_s):  # after the first token only count, never parse
                    out.events += chunk.count(b"data: {")
                    if b'data: {"error"' in chunk:
                        out.error = "stream error event after the first token"
                    continue
                head += chunk
                lines = head.split(b"\n")
                head = lines.pop()
                for line in lines:
                    if not line.startswith(b"data: {"):
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        out.error = f"stream error: {str(event['error'])[:200]}"
                        return
                    out.model = out.model or str(event.get("model", ""))
                    choices = event.get("choices") or []
                    if choices and choices[0].get("delta", {}).get("content") and math.isinf(out.first_token_s):
                        out.first_token_s = time.monotonic()
                        pending.discard(index)
            out.end_s = time.monotonic()
    except asyncio.CancelledError:
        out.cut = True  # closed by the run (not an error): the server was still streaming fine
        raise
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        pending.discard(index)


# -- scoring (pure) --------------------------------------------------------------------------------------


def shots_for(trace: list[Req], max_prompt_bytes: int) -> list[Shot]:
    """The requests of a trace as clients send them; prompts cut on a UTF-8 boundary (bytes bound tokens)."""
    return [
        Shot(r.rid, r.arrival_s, r.prompt.encode()[:max_prompt_bytes].decode(errors="ignore") or "hello", r.out_tokens)
        for r in trace
    ]


def split(shots: list[Shot], workers: int) -> list[list[Shot]]:
    return [shots[w::workers] for w in range(workers) if shots[w::workers]]


def score(
    trace: list[Req],
    outcomes: list[Outcome],
    models: list[ModelConfig],
    start_s: float,
    cut_s: float,
    duration_s: float,
    slo_ttft_s: float,
) -> dict[str, Any]:
    """load_routing.summarize() over measured outcomes (times relative to the run's start), plus error counts."""
    by_rid = {o.rid: o for o in outcomes}
    names = {m.name for m in models}
    end_s = cut_s - start_s
    reqs = []
    for r in trace:
        o = by_rid[r.rid]
        ok = o.status == 200 and not o.error and o.model in names
        first_s = o.first_token_s - start_s if ok else math.inf
        done_s = (o.end_s - start_s if not o.cut else end_s) if ok and not math.isinf(first_s) else math.inf
        reqs.append(dataclasses.replace(r, model=o.model if ok else REJECTED, first_token_s=first_s, done_s=done_s))
    metrics = summarize(reqs, models, duration_s, slo_ttft_s, end_s, [])
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    metrics.update(
        {
            "errors": sum(bool(o.error) for o in outcomes),
            "first_errors": sorted({o.error for o in outcomes if o.error})[:3],
            "http_status": statuses,
            "cut_streams": sum(o.cut for o in outcomes),
            "send_lag_p99_ms": round(percentile([o.send_lag_s for o in outcomes], 99) * 1e3, 1) if outcomes else None,
        }
    )
    return metrics


def frontier_summary(sweep: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Dominance of the Triage presets over static routing, per rate and at the highest rate where static is
    saturated (its code requests meet the SLO less than `threshold` of the time)."""
    rows = [
        r
        for r in sorted(sweep, key=lambda r: r["rate"])
        if "static" in r["policies"] and any(k.startswith("triage-") for k in r["policies"])
    ]
    if not rows:
        return {"dominates_static": None, "rate": None, "note": "no rate measured both static and a preset"}
    by_rate = {r["rate"]: dominates(presets(r), r["policies"]["static"]) for r in rows}
    saturated = [r["rate"] for r in rows if r["policies"]["static"]["code_slo_attainment"] < threshold]
    row = next(r for r in rows if r["rate"] == (saturated[-1] if saturated else rows[-1]["rate"]))
    static = row["policies"]["static"]
    return {
        "dominates_static": by_rate[row["rate"]],
        "rate": row["rate"],
        "static_saturated": bool(saturated),
        "saturated_rates": saturated,
        "dominates_static_by_rate": by_rate,
        "frontier": {
            k: {"goodput_rps": v["goodput_rps"], QUALITY: v[QUALITY], "ttft_p99_ms": v["ttft_p99_ms"]}
            for k, v in row["policies"].items()
        },
        "goodput_ratio_vs_static": {
            k: round(v["goodput_rps"] / max(1e-9, static["goodput_rps"]), 3)
            for k, v in row["policies"].items()
            if k != "static"
        },
        "rule": f"static saturated: fewer than {threshold:.0%} of its code requests meet the TTFT SLO; dominates: "
        "some preset has more goodput and no less quality, or more quality and no less goodput",
    }


def presets(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for k, v in row["policies"].items() if k.startswith("triage-")]


# -- routers, engines, probes ----------------------------------------------------------------------------


def router_configs(
    base: dict[str, Any], models_dir: Path, work: Path, startup_timeout_s: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Triage router config that launches the engines, static router config over the same engine ports)."""
    triage = copy.deepcopy(base)
    for model in triage["models"]:
        model["launch"]["model"] = model["launch"]["model"].replace(
            "${TRIAGE_DUMMY_MODELS:-/tmp/triage-dummy-models}", str(models_dir)
        )
        model["launch"]["startup_timeout_s"] = startup_timeout_s
    triage["auth"] = {"db": str(work / "triage-auth.db")}
    static = copy.deepcopy(triage)
    static["server"]["port"] = STATIC_PORT
    static["policy"] = {"name": "static", "store": None}
    static["auth"] = {"db": str(work / "static-auth.db")}
    for model in static["models"]:
        launch = model.pop("launch")
        model["endpoints"] = [f"http://127.0.0.1:{launch['port']}/v1"]
    return triage, static


def parse_gauges(text: str) -> tuple[float, float]:
    """(running, waiting) from a vLLM /metrics page, summed over label sets."""
    values = parse_metrics(text)
    return values.get("vllm:num_requests_running", 0.0), values.get("vllm:num_requests_waiting", 0.0)


@dataclass
class Gauges:
    """Each engine's running / waiting requests, read once a second during a run."""

    urls: dict[str, str]  # model -> http://127.0.0.1:PORT
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def read(self) -> dict[str, tuple[float, float]]:
        import httpx

        out = {}
        for name, url in self.urls.items():
            try:
                out[name] = parse_gauges(httpx.get(url + "/metrics", timeout=1.0).text)
            except httpx.HTTPError:
                continue
        return out

    def sample(self) -> None:
        for name, value in self.read().items():
            self.samples.setdefault(name, []).append(value)

    def summary(self) -> dict[str, Any]:
        return {
            name: {
                "max_running": max(r for r, _ in s),
                "mean_running": round(statistics.fmean(r for r, _ in s), 1),
                "max_waiting": max(w for _, w in s),
            }
            for name, s in self.samples.items()
            if s
        }

    def wait_idle(self, limit_s: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            if all(r + w == 0 for r, w in self.read().values()):
                break
            time.sleep(0.2)
        return round(time.monotonic() - t0, 2)


async def probe(url: str, prompts: list[str], max_tokens: int) -> dict[str, Any]:
    """Output tokens/s of one engine with len(prompts) non-streamed requests at once (its batch cap)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one(prompt: str) -> int:
            body = {
                "model": "coder",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "ignore_eos": True,
                "temperature": 0.0,
            }
            async with session.post(url, json=body) as response:
                response.raise_for_status()
                return int((await response.json())["usage"]["completion_tokens"])

        t0 = time.monotonic()
        tokens = sum(await asyncio.gather(*(one(p) for p in prompts)))
        wall_s = time.monotonic() - t0
    return {
        "requests": len(prompts),
        "max_tokens": max_tokens,
        "wall_s": round(wall_s, 2),
        "out_tok_per_s": round(tokens / wall_s, 1),
    }


def auto_rates(coder_tok_per_s: float, code_share: float) -> tuple[float, list[float]]:
    """Static routing's saturation estimate (req/s at which the code requests alone fill the coder, which ran
    alone in the probe) and the rates to sweep around it, in run order."""
    code_tokens = CLASSES["code"][1] * 0.65  # mean of uniform(0.3, 1.0) x max_tokens
    estimate = coder_tok_per_s / (code_share * code_tokens)
    return round(estimate, 1), [max(1.0, round(estimate * f * 2) / 2) for f in AUTO_RATE_FACTORS]


# -- the run ---------------------------------------------------------------------------------------------


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(result["sweep"], key=lambda r: r["rate"])
    fig, axes = plt.subplots(1, len(rows) + 1, figsize=(4.2 * (len(rows) + 1), 4.2), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=False):
        points = sorted(
            ((k, v) for k, v in row["policies"].items() if k.startswith("triage-")), key=lambda kv: kv[1]["goodput_rps"]
        )
        ax.plot([v["goodput_rps"] for _, v in points], [v[QUALITY] for _, v in points], "o-", label="Triage presets")
        for k, v in points:
            ax.annotate(k.removeprefix("triage-"), (v["goodput_rps"], v[QUALITY]), fontsize=8)
        if "static" in row["policies"]:
            s = row["policies"]["static"]
            ax.plot(s["goodput_rps"], s[QUALITY], "s", markersize=9, label="static task routing")
        ax.set_title(f"{row['rate']:g} req/s offered")
        ax.set_xlabel(f"goodput (req/s, TTFT <= {result['config']['slo_ttft_ms']:g} ms)")
        ax.set_ylabel("served quality, profile estimate (not measured)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    for k in dict.fromkeys(k for r in rows for k in r["policies"]):
        pts = [(r["rate"], r["policies"][k]["goodput_rps"]) for r in rows if k in r["policies"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-", label=k)
    ax.plot([r["rate"] for r in rows], [r["rate"] for r in rows], "k:", lw=0.8, label="offered")
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel("goodput (req/s)")
    ax.legend(fontsize=7)
    gpu = (result["environment"].get("gpus") or [{"name": "?"}])[0]["name"]
    fig.suptitle(
        f"Static task routing vs Triage presets, real vLLM {result['environment'].get('vllm')} engines "
        f"(coder 7B, chat 7B, fast 1.5B shapes) sharing one {gpu}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_yaml(config: dict[str, Any], path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    t_start = time.monotonic()
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    g, scoring = add_workload_args(
        parser,
        rates="auto",
        rates_help="offered req/s in run order, or 'auto' (from the probe)",
        duration_s=12.0,
        drain_s=4.0,
        drain_help="after arrivals, longest wait for first tokens",
    )
    g.add_argument("--max-prompt-bytes", type=int, default=4096, help="cut longer prompts (<= max_model_len)")
    g = scoring
    g.add_argument("--presets", default=",".join(PRESETS), help="Triage presets to measure")
    g = parser.add_argument_group("bounds")
    g.add_argument("--budget-s", type=float, default=540.0, help="wall time from start; later rates are skipped")
    g.add_argument("--workers", type=int, default=4, help="client processes")
    g.add_argument("--quiesce-s", type=float, default=8.0, help="longest wait for idle engines between runs")
    g.add_argument("--request-timeout-s", type=float, default=60.0)
    g.add_argument("--startup-timeout-s", type=float, default=300.0, help="per engine")
    g.add_argument("--config", type=Path, default=CONFIG)
    g.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    why_not = refuse_without_gpu()
    if why_not is not None:
        print(f"gpu_policy_frontier: refusing to run: {why_not}", file=sys.stderr)
        return 2
    import yaml

    mix = {k: float(v) for k, v in (p.split("=") for p in args.mix.split(","))}
    policies = ["static", *(f"triage-{p}" for p in args.presets.split(",") if p)]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    prompts = load_prompts(args.prompts, 1000, args.seed)
    classifier = KeywordClassifier()
    classified = {p: classifier.classify_now(p) for pool in prompts.values() for _, p in pool}

    work = Path(tempfile.mkdtemp(prefix="triage-frontier-"))
    for shape in ("qwen2.5-7b", "qwen2.5-1.5b"):
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "make_dummy_model.py"), shape, str(work / shape)],
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )
    triage_cfg, static_cfg = router_configs(yaml.safe_load(args.config.read_text()), work, work, args.startup_timeout_s)
    models = TriageConfig.model_validate(interpolate_env(static_cfg)).models
    ports = {m["name"]: m["launch"]["port"] for m in triage_cfg["models"]}
    urls = {
        "triage": f"http://127.0.0.1:{triage_cfg['server']['port']}/v1/chat/completions",
        "static": f"http://127.0.0.1:{STATIC_PORT}/v1/chat/completions",
    }
    gauges = Gauges({name: f"http://127.0.0.1:{port}" for name, port in ports.items()})
    out_json = args.out_dir / "gpu_policy_frontier.json"
    result: dict[str, Any] = {
        "benchmark": "gpu_policy_frontier",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "method": __doc__,
        "config": {
            "mix": mix,
            "duration_s": args.duration,
            "drain_s": args.drain,
            "slo_ttft_ms": args.slo_ttft_ms,
            "seed": args.seed,
            "classifier": "keyword (both routers)",
            "saturation": args.saturation,
            "max_tokens": {k: v[1] for k, v in CLASSES.items()},
            "output_tokens": "uniform(0.3, 1.0) x max_tokens, sent as max_tokens with ignore_eos",
            "max_prompt_bytes": args.max_prompt_bytes,
            "workers": args.workers,
            "routers": {"static": static_cfg["policy"], "triage": triage_cfg["policy"]},
            "engines": {m["name"]: m["launch"] for m in triage_cfg["models"]},
        },
        "sweep": [],
        "skipped": [],
    }
    run_cost_s = args.duration + args.drain + args.quiesce_s + 2.0  # one policy at one rate, at most
    logs = {name: args.out_dir / f"gpu_policy_frontier.{name}.log" for name in ("triage", "static")}
    with contextlib.ExitStack() as stack:
        # engines start one after another; give up early enough to measure one rate (3 runs)
        triage = stack.enter_context(
            server_process(
                Launch(
                    triage_serve(write_yaml(triage_cfg, work / "triage.yaml")),
                    urls["triage"].replace("/v1/chat/completions", "/ready"),
                    "triage",
                    ready_timeout_s=max(60.0, args.budget_s - (time.monotonic() - t_start) - 3 * run_cost_s),
                    stop_timeout_s=180,
                    log_path=logs["triage"],
                )
            )
        )
        engines_ready_s = time.monotonic() - t_start
        print(f"engines ready {engines_ready_s:.0f} s after start", flush=True)
        static = stack.enter_context(
            server_process(
                Launch(
                    triage_serve(write_yaml(static_cfg, work / "static.yaml")),
                    urls["static"].replace("/v1/chat/completions", "/ready"),
                    "static",
                    stop_timeout_s=30,
                    log_path=logs["static"],
                )
            )
        )
        routers = {"static": static, "triage": triage}
        result["environment"] = environment()
        result["model_shapes"] = model_shapes(triage_cfg)
        code_prompts = [p.encode()[: args.max_prompt_bytes].decode(errors="ignore") for _, p in prompts["code"]]
        coder = next(m for m in models if m.name == "coder")
        result["probe"] = asyncio.run(
            probe(
                f"http://127.0.0.1:{ports['coder']}/v1/chat/completions",
                code_prompts[: coder.profile.max_num_seqs],
                256,
            )
        )
        if args.rates == "auto":
            estimate, rates = auto_rates(result["probe"]["out_tok_per_s"], mix["code"] / sum(mix.values()))
            result["probe"]["static_saturation_estimate_rps"] = estimate
        else:
            rates = [float(r) for r in args.rates.split(",")]
        result["config"]["rates_in_run_order"] = rates
        print(json.dumps({"probe": result["probe"], "rates": rates}), flush=True)
        gauges.wait_idle(args.quiesce_s)

        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers, initializer=_ignore_sigint) as pool:
            for i, rate in enumerate([min(rates) / 2, *rates]):  # the first: a short warm-up, not recorded
                duration_s = args.duration if i else WARM_UP_S
                trace = make_trace(rate, duration_s, mix, prompts, classified, args.seed + int(rate * 10))
                shots = shots_for(trace, args.max_prompt_bytes)
                rot = i % max(1, len(policies) - 1)  # static first (the reference), presets rotated per rate
                order = [policies[0], *policies[1:][rot:], *policies[1:][:rot]] if i else ["static", policies[-1]]
                if i and time.monotonic() - t_start + run_cost_s * min(3, len(order)) > args.budget_s:
                    result["skipped"].append({"rate": rate, "why": "budget"})
                    continue
                row: dict[str, Any] = {"rate": rate, "requests": len(trace), "order": [], "policies": {}, "engines": {}}
                for policy in order:
                    if i and time.monotonic() - t_start + run_cost_s > args.budget_s:
                        result["skipped"].append({"rate": rate, "policy": policy, "why": "budget"})
                        continue
                    url = urls["static" if policy == "static" else "triage"]
                    route = None if policy == "static" else {"priority": policy.removeprefix("triage-")}
                    router_pid = routers["static" if policy == "static" else "triage"].pid
                    start_s = time.monotonic() + 1.0
                    cut_s = start_s + duration_s + args.drain
                    jobs = [
                        RunJob(url, route, part, start_s, cut_s, args.request_timeout_s)
                        for part in split(shots, args.workers)
                    ]
                    gauges.samples = {}
                    cpu0, wall0 = cpu_s(router_pid, tree=False), time.monotonic()
                    pending = pool.map_async(run_job, jobs)
                    while not pending.ready():
                        gauges.sample()
                        pending.wait(1.0)
                    router_cpu = (cpu_s(router_pid, tree=False) - cpu0) / (time.monotonic() - wall0)
                    outcomes = [o for part in pending.get() for o in part]
                    metrics = score(trace, outcomes, models, start_s, cut_s, duration_s, args.slo_ttft_ms / 1e3)
                    metrics["router_cpu_cores"] = round(router_cpu, 2)
                    row["engines"][policy] = gauges.summary()
                    metrics["quiesce_s"] = gauges.wait_idle(args.quiesce_s)
                    row["order"].append(policy)
                    row["policies"][policy] = metrics
                    print(
                        json.dumps(
                            {
                                "rate": rate,
                                "policy": policy,
                                **{
                                    k: metrics[k]
                                    for k in (
                                        "goodput_rps",
                                        QUALITY,
                                        "code_slo_attainment",
                                        "ttft_p50_ms",
                                        "ttft_p99_ms",
                                        "errors",
                                        "router_cpu_cores",
                                        "model_share",
                                    )
                                },
                            }
                        ),
                        flush=True,
                    )
                if i == 0:
                    result["warm_up"] = row
                    continue
                result["sweep"].append(row)
                result["summary"] = frontier_summary(result["sweep"], args.saturation)
                result["timings"] = {
                    "engines_ready_s": round(engines_ready_s, 1),
                    "elapsed_s": round(time.monotonic() - t_start, 1),
                }
                out_json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    if not result["sweep"]:
        print("gpu_policy_frontier: no rate was measured (see the logs and `skipped`)", file=sys.stderr)
        out_json.write_text(json.dumps(result, indent=1, default=str) + "\n")
        return 1
    result["sweep"].sort(key=lambda r: r["rate"])
    out_json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    try:
        plot(result, out_json.with_suffix(".png"))
    except ImportError as exc:  # the JSON holds every number; the picture is a convenience
        print(f"gpu_policy_frontier: no plot ({exc}); results are in {out_json}", file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "gpu_policy_frontier",
                "gpu": (result["environment"].get("gpus") or [{}])[0].get("name"),
                "vllm": result["environment"].get("vllm"),
                "summary": result["summary"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
