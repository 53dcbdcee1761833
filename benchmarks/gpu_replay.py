"""Part 5 of the GPU check: a routing-value trace replayed on the real engines, static routing vs Triage.

A trace (JSON, gzipped when the name ends in .gz) is what `benchmarks/routing_value.py` simulates, written down
so that real engines can serve it (`routing_value.py --export-trace`, `routing_value_trace.py`: which model each
engine stands in for, and what a replay on dummy weights can and cannot show):

    {"source": "...",                                   # where the prompts and answers come from
     "engines": {"coder": "<outcomes model>", ...},     # which model's answers each engine of the check stands for
     "quality": {"coder": {"code": 0.71, ...}, ...},     # per-category accuracy on the training part (profiles)
     "static_roles": {"code": "coder", ...},             # the static baseline: best engine per category (training)
     "slo_ttft_ms": 1000,
     "rates": [{"rate": 4.0, "duration_s": 10.0,
                "requests": [{"at_s": 0.12, "prompt": "...", "max_tokens": 170, "correct": ["coder"]}, ...]}]}

`correct` lists the engines whose stand-in model answers that prompt correctly (drawn once per request, the same
for both routers: common random numbers). Two routers run over the check's engines (their `launch` blocks
replaced by the engines' endpoints), with the same keyword classifier and the trace's qualities as profiles:
`static` (policy static, the trace's best engine per category) and `triage` (policy triage, preset balanced).
Every rate replays the same requests through each router, open loop (gpu_policy_frontier.py's client), and is
scored: accuracy of the answered requests, TTFT SLO attainment, useful goodput (correct answers within the SLO
per second of arrivals). Knows nothing about how the routers decide.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import multiprocessing as mp
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_policy_frontier import Outcome, RunJob, Shot, run_job, split

TRACE_NAME = "routing_value_trace.json.gz"
TODO = (
    "no routing_value trace was carried (.vllm/data/" + TRACE_NAME + "): run scripts/prepare_device.sh, which "
    "exports it (benchmarks/routing_value.py --export-trace), and carry .vllm/data"
)
ROUTER_PORTS = {"static": 8210, "triage": 8211}
WORKERS = 4  # client processes; each is one asyncio loop


def load_trace(path: Path) -> dict[str, Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        trace: dict[str, Any] = json.load(f)
    return trace


def synthetic_trace(
    prompts_path: Path, engines: list[str], rates: tuple[float, ...], duration_s: float
) -> dict[str, Any]:
    """A trace of the right form for a dry run: real prompts, Poisson arrivals, correctness a coin per engine."""
    with gzip.open(prompts_path, "rt", encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for _, line in zip(range(500), f, strict=False)]
    rng = random.Random(0)
    out_rates = []
    for rate in rates:
        at_s, requests = 0.0, []
        while (at_s := at_s + rng.expovariate(rate)) < duration_s:
            correct = [e for e in engines if rng.random() < 0.5]
            requests.append(
                {"at_s": round(at_s, 3), "prompt": rng.choice(prompts), "max_tokens": 8, "correct": correct}
            )
        out_rates.append({"rate": rate, "duration_s": duration_s, "requests": requests})
    quality = {e: {"code": 0.6 + 0.1 * i, "general_qa": 0.7 - 0.1 * i} for i, e in enumerate(engines)}
    return {
        "source": "synthetic (dry run): coin-flip correctness, not a measurement",
        "engines": {e: e for e in engines},
        "quality": quality,
        "static_roles": {"code": engines[-1], "general_qa": engines[0]},
        "slo_ttft_ms": 1000.0,
        "rates": out_rates,
    }


def router_config(
    base: dict[str, Any], trace: dict[str, Any], policy: str, engines: dict[str, str], work: Path
) -> dict[str, Any]:
    """The check's config with its engines reached by endpoint, the trace's qualities and the given policy."""
    config = copy.deepcopy(base)
    config["server"] = {"host": "127.0.0.1", "port": ROUTER_PORTS[policy], "log_level": "warning"}
    config["classifier"] = {"kind": "keyword"}  # the same categories for both routers, whatever the encoder
    config["auth"] = {"db": str(work / f"replay-{policy}-auth.db")}
    roles = {c: f"best:{c}" for c in trace.get("static_roles", {})}
    for model in config["models"]:
        name = model["name"]
        model.pop("launch")
        model["endpoints"] = [engines[name] + "/v1"]
        model["roles"] = [*model.get("roles", []), *(r for c, r in roles.items() if trace["static_roles"][c] == name)]
        model.setdefault("profile", {})["quality"] = trace["quality"].get(name, {})
    if policy == "static":
        config["policy"] = {"name": "static", "store": None, "options": {"category_roles": roles}}
    else:
        config["policy"] = {"name": "triage", "preset": "balanced", "store": None, "explore_share": 0.0}
    return config


def start_router(config: dict[str, Any], work: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    import yaml

    path = work / f"replay-{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with (work / f"replay-{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--config", str(path)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    import httpx

    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s and process.poll() is None:
        try:
            if httpx.get(url + "/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"router {url} not ready within {timeout_s:.0f} s (exit {process.poll()})")


def score(
    requests: list[dict[str, Any]], outcomes: list[Outcome], slo_s: float, start_s: float, span_s: float
) -> dict[str, Any]:
    """Accuracy, SLO attainment and useful goodput of one run; requests and outcomes share their order (rid)."""
    by_rid = {o.rid: o for o in outcomes}
    answered = correct = within = useful = 0
    served: dict[str, int] = {}
    for rid, request in enumerate(requests):
        o = by_rid[rid]
        if o.status != 200 or o.error or math.isinf(o.first_token_s):
            continue
        answered += 1
        served[o.model] = served.get(o.model, 0) + 1
        right = o.model in request["correct"]
        on_time = o.first_token_s - start_s - request["at_s"] <= slo_s
        correct, within, useful = correct + right, within + on_time, useful + (right and on_time)
    n = len(requests)
    return {
        "requests": n,
        "answered": answered,
        "accuracy": round(correct / answered, 4) if answered else None,
        "slo_attainment": round(within / n, 4) if n else None,
        "useful_goodput_rps": round(useful / span_s, 3),
        "model_share": {m: round(k / max(1, answered), 3) for m, k in sorted(served.items())},
        "errors": sorted({o.error for o in outcomes if o.error})[:3],
    }


def replay_rate(pool: Any, url: str, block: dict[str, Any], drain_s: float) -> tuple[list[Outcome], float]:
    """One rate's requests through one router, open loop; (outcomes, monotonic time of arrival 0)."""
    shots = [Shot(i, r["at_s"], r["prompt"], int(r["max_tokens"])) for i, r in enumerate(block["requests"])]
    start_s = time.monotonic() + 1.0
    cut_s = start_s + block["duration_s"] + drain_s
    jobs = [RunJob(url, None, part, start_s, cut_s, 60.0) for part in split(shots, WORKERS)]
    outcomes = [o for part in pool.map(run_job, jobs) for o in part]
    return outcomes, start_s


def run(
    trace: dict[str, Any],
    base_config: dict[str, Any],
    engines: dict[str, str],
    work: Path,
    env: dict[str, str],
    budget_s: float,
    dry_run: bool,
) -> dict[str, Any]:
    """Start both routers, replay every rate that fits the budget through each, stop them; the result."""
    t0 = time.monotonic()
    slo_s = float(trace.get("slo_ttft_ms", 1000.0)) / 1e3
    drain_s = 1.0 if dry_run else 4.0
    routers = {p: start_router(router_config(base_config, trace, p, engines, work), work, env, p) for p in ROUTER_PORTS}
    urls = {p: f"http://127.0.0.1:{port}" for p, port in ROUTER_PORTS.items()}
    rows: list[dict[str, Any]] = []
    skipped: list[float] = []
    try:
        for p, process in routers.items():
            wait_ready(urls[p], process, min(60.0, budget_s / 3))
        with mp.get_context("spawn").Pool(WORKERS) as pool:
            for block in trace["rates"]:
                cost_s = len(routers) * (block["duration_s"] + drain_s + 3.0)
                if time.monotonic() - t0 + cost_s > budget_s:
                    skipped.append(block["rate"])
                    continue
                row: dict[str, Any] = {"rate": block["rate"], "requests": len(block["requests"]), "routers": {}}
                for i, p in enumerate(sorted(routers, reverse=bool(len(rows) % 2))):  # alternate who goes first
                    outcomes, start_s = replay_rate(pool, urls[p] + "/v1/chat/completions", block, drain_s)
                    row["routers"][p] = score(block["requests"], outcomes, slo_s, start_s, block["duration_s"])
                    row["routers"][p]["order"] = i
                rows.append(row)
    finally:
        for process in routers.values():
            process.terminate()
        for process in routers.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    gains = [
        r["routers"]["triage"]["useful_goodput_rps"] / r["routers"]["static"]["useful_goodput_rps"]
        for r in rows
        if r["routers"]["static"]["useful_goodput_rps"]
    ]
    summary = {
        "source": trace.get("source"),
        "rates_measured": [r["rate"] for r in rows],
        "rates_skipped_for_time": skipped,
        "useful_goodput_rps": {r["rate"]: {p: v["useful_goodput_rps"] for p, v in r["routers"].items()} for r in rows},
        "accuracy": {r["rate"]: {p: v["accuracy"] for p, v in r["routers"].items()} for r in rows},
        "triage_vs_static_useful_goodput_min": round(min(gains), 3) if gains else None,
    }
    return {"benchmark": "gpu_replay", "trace_engines": trace["engines"], "rows": rows, "summary": summary}
