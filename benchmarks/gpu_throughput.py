"""Throughput and latency through Triage vs straight to vLLM: same engines, same run, same prompts.

Starts `triage serve` on configs/gpu-dummy.yaml (real vLLM engines, Qwen2.5 shapes, dummy weights; CUDA graphs
unless --eager), then at each concurrency (1 ... 256) sends the same streamed chat requests three ways, in an
order that rotates per level so drift does not favour one:
  direct       to the engine's own port                          (the baseline)
  triage       through Triage, naming the model                   (relay overhead)
  triage-auto  through Triage, `model: auto` limited to that model (classification + decision + relay)
Prompts are real (../shared/data/prompts_train.jsonl.gz, cut at --max-prompt-bytes), so prompt lengths follow
a realistic mix; every answer is --max-tokens long (`ignore_eos`). Load comes from --workers client processes,
each an asyncio aiohttp client: one Python process tops out at a few thousand SSE events/s.

Reports output tokens/s, TTFT and TPOT percentiles per mode and level, and Triage/direct ratios; writes
gpu_throughput.json and .png (GPU, driver, vLLM version, model shapes recorded) and ends with one JSON line.
Every loop is bounded by request count and time; traffic goes to 127.0.0.1 only. Exits 2 without a GPU.
On the lent GPU machine its three-level form is part 4 of `scripts/gpu_check.sh` (the one device call); this
full sweep (~6 min) needs a call of its own, which a 15-minute lease does not leave beside the check.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.metadata
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

if __package__ in (None, ""):  # run as a file: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, Launch, machine, percentile, rounded, server_process, triage_serve, write_json

TRIAGE = "http://127.0.0.1:{port}/v1"
MODES = ("direct", "triage", "triage-auto")

# -- one client process ----------------------------------------------------------------------------------

_PROMPTS: list[str] = []  # set once per worker by the pool initializer


@dataclass(slots=True)
class Record:
    start_s: float  # time.monotonic(): one clock for every process on the machine (Linux CLOCK_MONOTONIC)
    ttft_s: float  # request sent -> first content token
    end_s: float
    output_tokens: int
    error: str = ""


@dataclass
class Job:
    url: str  # .../v1/chat/completions
    model: str
    route: dict[str, Any] | None  # Triage's `route` object, or None
    slots: int  # concurrent requests this worker keeps open
    prompt_ids: list[int]  # requests to send, in order
    max_tokens: int
    start_at_s: float  # monotonic time all workers start together
    deadline_s: float  # no new request after this (monotonic)
    request_timeout_s: float


def _init_worker(prompts: list[str]) -> None:
    global _PROMPTS
    _PROMPTS = prompts
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the pool


def run_job(job: Job) -> list[Record]:
    return asyncio.run(_run_job(job))


async def _run_job(job: Job) -> list[Record]:
    queue = list(reversed(job.prompt_ids))
    records: list[Record] = []
    timeout = aiohttp.ClientTimeout(total=job.request_timeout_s)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def slot() -> None:
            while queue and time.monotonic() < job.deadline_s:
                records.append(await _one(session, job, _PROMPTS[queue.pop()]))

        await asyncio.sleep(max(0.0, job.start_at_s - time.monotonic()))
        await asyncio.gather(*(slot() for _ in range(job.slots)))
    return records


async def _one(session: aiohttp.ClientSession, job: Job, prompt: str) -> Record:
    body: dict[str, Any] = {
        "model": job.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": job.max_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if job.route is not None:
        body["route"] = job.route
    start_s = time.monotonic()
    first_s, tokens, deltas = 0.0, 0, 0
    try:
        async with session.post(job.url, json=body) as response:
            if response.status != 200:
                text = (await response.read())[:200].decode(errors="replace")
                return Record(start_s, 0.0, time.monotonic(), 0, f"HTTP {response.status}: {text}")
            async for line in response.content:  # one SSE line at a time
                if not line.startswith(b"data: {"):
                    continue
                event = json.loads(line[6:])
                choices = event.get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    deltas += 1
                    if not first_s:
                        first_s = time.monotonic()
                if event.get("usage"):
                    tokens = int(event["usage"].get("completion_tokens") or 0)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Record(start_s, 0.0, time.monotonic(), 0, f"{type(exc).__name__}: {exc}")
    end_s = time.monotonic()
    return Record(start_s, (first_s or end_s) - start_s, end_s, tokens or deltas)


# -- statistics ------------------------------------------------------------------------------------------


def summarize(records: list[Record]) -> dict[str, Any]:
    ok = [r for r in records if not r.error]
    wall_s = (max(r.end_s for r in ok) - min(r.start_s for r in ok)) if ok else float("nan")
    tokens = sum(r.output_tokens for r in ok)
    ttft_ms = [r.ttft_s * 1e3 for r in ok]
    # TPOT: time per output token after the first, per request: (end - first token) / (tokens - 1)
    tpot_ms = [(r.end_s - r.start_s - r.ttft_s) * 1e3 / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    out: dict[str, Any] = {
        "requests": len(records),
        "errors": len(records) - len(ok),
        "output_tokens": tokens,
        "wall_s": rounded(wall_s),
        "output_tok_per_s": rounded(tokens / wall_s, 1) if ok else 0.0,
        "request_per_s": rounded(len(ok) / wall_s, 2) if ok else 0.0,
    }
    for name, values in (("ttft_ms", ttft_ms), ("tpot_ms", tpot_ms)):
        for q in (50, 90, 99):
            out[f"p{q}_{name}"] = rounded(percentile(values, q))
        out[f"mean_{name}"] = rounded(sum(values) / len(values)) if values else None
    out["first_errors"] = sorted({r.error for r in records if r.error})[:3]
    return out


# -- the run ---------------------------------------------------------------------------------------------


def refuse_without_gpu() -> str | None:
    from server.telemetry.nvml import read_gpus_once

    if not read_gpus_once():
        return "no NVIDIA GPU found (NVML reports none); this benchmark measures real vLLM engines on a GPU"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not importable; install triage-router[gpu] or source the device bundle's env script"
    return None


def load_prompts(path: Path, count: int, max_bytes: int, seed: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line)["prompt"] for line in f]
    rng = random.Random(seed)
    picked = rng.sample(rows, min(count, len(rows)))
    # cut on a UTF-8 boundary: the dummy tokenizer is byte-level, so bytes bound tokens (<= max_model_len)
    return [p.encode()[:max_bytes].decode(errors="ignore") or "hello" for p in picked]


def bench_config(args: argparse.Namespace, models_dir: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    import yaml

    config = yaml.safe_load((REPO / "configs" / "gpu-dummy.yaml").read_text())
    if not args.all_engines:  # one engine starts in ~3 min instead of ~6 (CUDA graphs); idle ones cost nothing
        config["models"] = [m for m in config["models"] if m["name"] == args.model]
    for model in config["models"]:
        launch = model["launch"]
        launch["model"] = launch["model"].replace("${TRIAGE_DUMMY_MODELS:-/tmp/triage-dummy-models}", str(models_dir))
        if not args.eager:
            launch["extra_args"] = [a for a in launch["extra_args"] if a != "--enforce-eager"]
        launch["startup_timeout_s"] = args.startup_timeout_s
    config["server"]["log_level"] = "warning"  # no per-request logging in the measured process
    path = out / "gpu_throughput.config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, config


def model_shapes(config: dict[str, Any]) -> dict[str, Any]:
    shapes = {}
    for model in config["models"]:
        cfg = json.loads((Path(model["launch"]["model"]) / "config.json").read_text())
        shapes[model["name"]] = {
            k: cfg.get(k)
            for k in (
                "architectures",
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "vocab_size",
                "torch_dtype",
            )
        }
        shapes[model["name"]]["path"] = model["launch"]["model"]
        shapes[model["name"]]["gpu_memory_utilization"] = model["launch"]["gpu_memory_utilization"]
    return shapes


def environment() -> dict[str, Any]:
    from server.telemetry.nvml import Nvml

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "vllm": version("vllm"),
        "torch": version("torch"),
        "host_cpus": os.cpu_count(),
    }
    nvml = Nvml.open()
    if nvml is not None:
        try:
            env["driver"] = str(nvml.pynvml.nvmlSystemGetDriverVersion())
            env["gpus"] = [
                {"index": r.gpu, "name": r.name, "memory_total_gib": round(r.memory_total_bytes / 2**30, 1)}
                for r in nvml.read()
            ]
        finally:
            nvml.close()
    return env


def level_prompts(args: argparse.Namespace, concurrency: int, n_prompts: int, rng: random.Random) -> list[int]:
    """The prompts of one level (the same for every mode): requests_per_slot x concurrency, within bounds."""
    total = min(max(args.requests_per_slot * concurrency, args.min_requests), args.max_requests)
    return [rng.randrange(n_prompts) for _ in range(total)]


def run_level(
    pool: Any, args: argparse.Namespace, mode: str, url: str, model: str, concurrency: int, ids: list[int]
) -> dict[str, Any]:
    workers = min(args.workers, concurrency)
    start_at_s = time.monotonic() + 0.5
    jobs = []
    for w in range(workers):
        slots = concurrency // workers + (1 if w < concurrency % workers else 0)
        route = {"models": [args.model]} if mode == "triage-auto" else None
        jobs.append(
            Job(
                url,
                "auto" if mode == "triage-auto" else model,
                route,
                slots,
                ids[w::workers],
                args.max_tokens,
                start_at_s,
                start_at_s + args.level_timeout_s,
                args.request_timeout_s,
            )
        )
    records = [r for part in pool.map(run_job, jobs) for r in part]
    return summarize(records)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [row["concurrency"] for row in result["levels"]]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for mode in result["modes"]:
        rows = [row["modes"][mode] for row in result["levels"]]
        axes[0].plot(levels, [r["output_tok_per_s"] for r in rows], marker="o", label=mode)
        axes[1].plot(levels, [r["p50_ttft_ms"] for r in rows], marker="o", label=f"{mode} p50")
        axes[1].plot(levels, [r["p99_ttft_ms"] for r in rows], ls="--", label=f"{mode} p99")
        axes[2].plot(levels, [r["p50_tpot_ms"] for r in rows], marker="o", label=f"{mode} p50")
    titles = ("output tokens/s", "TTFT (ms)", "TPOT (ms)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent requests")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    gpu = (result["environment"].get("gpus") or [{"name": "?"}])[0]["name"]
    fig.suptitle(
        f"Triage vs direct vLLM {result['environment'].get('vllm')} on {gpu}: model "
        f"'{result['model']}' ({result['model_shapes'][result['model']]['num_hidden_layers']} layers, "
        f"hidden {result['model_shapes'][result['model']]['hidden_size']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = parser.add_argument_group("what to measure")
    g.add_argument("--model", default="chat", help="model of configs/gpu-dummy.yaml to load (chat: 0.5B shape)")
    g.add_argument("--concurrency", default="1,2,4,8,16,32,64,128,256", help="comma-separated levels")
    g.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    g.add_argument("--max-tokens", type=int, default=128, help="output tokens per request (ignore_eos)")
    g.add_argument("--eager", action="store_true", help="keep --enforce-eager (faster start, slower engine)")
    g.add_argument("--all-engines", action="store_true", help="launch every engine of the config, not only --model")
    g = parser.add_argument_group("prompts")
    g.add_argument("--prompts", type=Path, default=REPO.parent / "shared" / "data" / "prompts_train.jsonl.gz")
    g.add_argument("--num-prompts", type=int, default=4000, help="prompts sampled from the file")
    g.add_argument("--max-prompt-bytes", type=int, default=4096, help="cut longer prompts (<= max_model_len)")
    g.add_argument("--seed", type=int, default=0)
    g = parser.add_argument_group("bounds")
    g.add_argument("--workers", type=int, default=min(8, max(1, (os.cpu_count() or 2) // 2)), help="client processes")
    g.add_argument("--requests-per-slot", type=int, default=4, help="requests per level = this x concurrency")
    g.add_argument("--min-requests", type=int, default=16)
    g.add_argument("--max-requests", type=int, default=1024)
    g.add_argument("--level-timeout-s", type=float, default=30.0, help="no new requests after this, per level")
    g.add_argument("--request-timeout-s", type=float, default=120.0)
    g.add_argument("--startup-timeout-s", type=float, default=600.0)
    g.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)

    why_not = refuse_without_gpu()
    if why_not is not None:
        print(f"gpu_throughput: refusing to run: {why_not}", file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes {sorted(unknown)}; use {', '.join(MODES)}")
    levels = [int(c) for c in args.concurrency.split(",")]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    prompts = load_prompts(args.prompts, args.num_prompts, args.max_prompt_bytes, args.seed)
    prompt_bytes = [len(p.encode()) for p in prompts]

    work = Path(tempfile.mkdtemp(prefix="triage-bench-"))
    for shape in ("qwen2.5-1.5b", "qwen2.5-0.5b"):
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "make_dummy_model.py"), shape, str(work / shape)],
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )
    config_path, config = bench_config(args, work, args.out_dir)
    model = next(m for m in config["models"] if m["name"] == args.model)
    port = config["server"]["port"]
    urls = {
        "direct": f"http://127.0.0.1:{model['launch']['port']}/v1/chat/completions",
        "triage": TRIAGE.format(port=port) + "/chat/completions",
    }
    urls["triage-auto"] = urls["triage"]

    launch = Launch(
        triage_serve(config_path),
        f"http://127.0.0.1:{port}/ready",
        "triage",
        ready_timeout_s=args.startup_timeout_s + 60,
        stop_timeout_s=180,
        log_path=args.out_dir / "gpu_throughput.triage.log",
    )
    t0 = time.monotonic()
    with server_process(launch):
        print(f"engines ready in {time.monotonic() - t0:.0f} s", flush=True)
        rng = random.Random(args.seed)
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers, initializer=_init_worker, initargs=(prompts,)) as pool:
            warm_up = level_prompts(args, 16, len(prompts), rng)
            for mode in modes:  # warm-up: connections, the engine's batch shapes, Triage's code paths
                run_level(pool, args, mode, urls[mode], args.model, 16, warm_up)
            rows = []
            for i, concurrency in enumerate(levels):
                order = modes[i % len(modes) :] + modes[: i % len(modes)]  # rotate who goes first
                row: dict[str, Any] = {"concurrency": concurrency, "order": order, "modes": {}}
                ids = level_prompts(args, concurrency, len(prompts), rng)
                for mode in order:
                    row["modes"][mode] = run_level(pool, args, mode, urls[mode], args.model, concurrency, ids)
                direct = row["modes"].get("direct")
                for mode in ("triage", "triage-auto"):
                    if direct and mode in row["modes"] and direct["output_tok_per_s"]:
                        m = row["modes"][mode]
                        row[f"{mode}_throughput_ratio"] = round(m["output_tok_per_s"] / direct["output_tok_per_s"], 4)
                        row[f"{mode}_added_p50_ttft_ms"] = round(m["p50_ttft_ms"] - direct["p50_ttft_ms"], 3)
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "modes"}), flush=True)
        result: dict[str, Any] = {
            "benchmark": "gpu_throughput",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine(),
            "environment": environment(),
            "model": args.model,
            "model_shapes": model_shapes(config),
            "modes": modes,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "prompt_bytes": {
                "count": len(prompts),
                "p50": percentile(prompt_bytes, 50),
                "p90": percentile(prompt_bytes, 90),
                "max": max(prompt_bytes),
            },
            "levels": rows,
        }
        ratios = [float(row["triage_throughput_ratio"]) for row in rows if row.get("triage_throughput_ratio")]
        result["min_triage_throughput_ratio"] = min(ratios) if ratios else None
        result["target_min_ratio"] = 0.98
    write_json(args.out_dir / "gpu_throughput.json", result)
    plot(result, args.out_dir / "gpu_throughput.png")
    print(
        json.dumps(
            {
                "benchmark": "gpu_throughput",
                "gpu": (result["environment"].get("gpus") or [{}])[0].get("name"),
                "vllm": result["environment"].get("vllm"),
                "model": args.model,
                "min_triage_throughput_ratio": result["min_triage_throughput_ratio"],
                "levels": {
                    row["concurrency"]: {m: row["modes"][m]["output_tok_per_s"] for m in row["modes"]} for row in rows
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
