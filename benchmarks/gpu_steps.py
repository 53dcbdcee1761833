"""The steps of the GPU check (`gpu_check.py` runs them in order, each inside a time budget).

Each step takes the shared `Context` and its budget in seconds, returns the details its part's JSON shows, and
raises `StepFailed` or `StepSkipped` (with whatever it measured so far) otherwise. Tests run as pytest child
processes in their own session, killed when the budget ends; benchmarks call into their modules
(`classifier.py`, `gpu_throughput.py`, `gpu_replay.py`). In a dry run the same steps run against simulated engines
(tests/gpu/sim_vllm.py) and the CPU classifier, with small sizes; the GPU e2e tests run too, minus their NVML checks.

Knows nothing about the order of the steps, deadlines or the output folder.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import gpu_stack

REPO = gpu_stack.REPO
BUNDLE = REPO / ".vllm"  # what scripts/prepare_device.sh puts beside the checkout; carried into the device call
E2E_TESTS = "tests/gpu/test_vllm_e2e.py"
THROUGHPUT_MODEL = "chat"  # the 0.5B-shaped engine: the most requests per second, so the most relay work


class StepFailed(Exception):
    def __init__(self, reason: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.details = details or {}


class StepSkipped(Exception):
    def __init__(self, reason: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.details = details or {}


@dataclass
class Context:
    """What the steps share: arguments, folders, the children's environment and the running stack."""

    args: argparse.Namespace
    dry_run: bool
    out: Path  # comes back from the device: JSON files and results.tar.gz only
    work: Path  # logs/ and results/, packed into results.tar.gz
    base: Path  # work/ plus models/ and encoder/ (not packed)
    env: dict[str, str] = field(default_factory=dict)
    data: Path | None = None  # prompts (jsonl.gz with "prompt" and "category")
    stack: gpu_stack.Stack | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    checkout: dict[str, Any] = field(default_factory=dict)
    encoder: dict[str, Any] = field(default_factory=dict)
    shortcuts: dict[str, Any] = field(default_factory=dict)
    teardown: dict[str, Any] = field(default_factory=dict)
    todo: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, args: argparse.Namespace) -> Context:
        out, base = args.out.resolve(), args.base.resolve()
        work = base / "work"
        for folder in (out, work / "logs", work / "results"):
            folder.mkdir(parents=True, exist_ok=True)
        return cls(args, args.dry_run, out, work, base)

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def result(self, name: str) -> Path:
        return self.work / "results" / name


# -- helpers ---------------------------------------------------------------------------------------------------


def versions() -> dict[str, Any]:
    """The machine and the versions that matter: GPU, driver, CUDA, torch, triton, vLLM, Python."""

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    import torch  # only its version strings: no CUDA context in this process, the engines get the memory

    from server.telemetry.nvml import GIB, Nvml

    info: dict[str, Any] = {"gpu": None, "gpu_memory_gib": None, "driver": None, "cuda": torch.version.cuda}
    nvml = Nvml.open()
    if nvml is not None:
        try:
            gpus = nvml.read()
            info["driver"] = str(nvml.pynvml.nvmlSystemGetDriverVersion())
            info["gpu"] = gpus[0].name if gpus else None
            info["gpu_memory_gib"] = round(gpus[0].memory_total_bytes / GIB, 1) if gpus else None
            info["gpus"] = len(gpus)
        finally:
            nvml.close()
    info |= {"python": platform.python_version(), "cpus": os.cpu_count()}
    info |= {name: version(name) for name in ("torch", "triton", "vllm", "transformers", "tokenizers")}
    return info


def kill_session(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


OUTCOME = re.compile(r"^(\S+::\S+?)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", re.M)
SKIP_REASON = re.compile(r"^SKIPPED \[\d+\] [^:]+(?::\d+)?: (.+)$", re.M)


def pytest_outcomes(text: str) -> dict[str, Any]:
    """Counts, failing node ids and skip reasons from `pytest -v -rs` output (partial output works too)."""
    seen: dict[str, str] = {}
    for nodeid, outcome in OUTCOME.findall(text):
        if seen.get(nodeid) != "FAILED":  # a teardown ERROR after a PASSED is reported on a second line
            seen[nodeid] = outcome
    counts = {k.lower(): sum(v == k for v in seen.values()) for k in ("PASSED", "FAILED", "ERROR", "SKIPPED")}
    return {
        **counts,
        "failing": sorted(n for n, v in seen.items() if v in ("FAILED", "ERROR")),
        "skip_reasons": sorted(set(SKIP_REASON.findall(text)))[:5],
    }


def run_pytest(
    ctx: Context, name: str, targets: list[str], budget_s: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run pytest in its own session within `budget_s`; its outcome, or StepFailed / StepSkipped."""
    argv = [sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider"]
    argv += ["-W", "ignore::pytest.PytestConfigWarning", *targets]
    t0 = time.monotonic()
    rc = run_logged(ctx, name, argv, budget_s, env)
    text = ctx.log(name).read_text(errors="replace")
    result = {"argv": argv[3:], "returncode": rc, "wall_s": round(time.monotonic() - t0, 1), **pytest_outcomes(text)}
    if rc is None:
        raise StepFailed(f"pytest cut at its budget of {budget_s:.0f} s", result)
    if result["failed"] or result["error"] or rc not in (0, 5):
        tail = text[-1500:] if not result["failing"] else ", ".join(result["failing"][:8])
        raise StepFailed(f"pytest exit {rc}: {tail}", result)
    if not result["passed"]:
        raise StepSkipped("every test skipped: " + "; ".join(result["skip_reasons"] or ["no tests collected"]), result)
    return result


# -- setup -----------------------------------------------------------------------------------------------------


def setup(ctx: Context, budget_s: float) -> dict[str, Any]:
    """Dummy model folders, the encoder folder, the prompts, the children's environment, versions."""
    models = ctx.base / "models"
    gpu_stack.make_models(models, timeout_s=budget_s)
    ctx.encoder = prepare_encoder(ctx.base / "encoder")
    ctx.data = synthetic_prompts(ctx.base / "prompts-dry-run.jsonl.gz") if ctx.dry_run else find_prompts()
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    ctx.env = {
        **os.environ,
        "PYTHONPATH": path,
        "PYTHONUNBUFFERED": "1",
        "TRIAGE_ENCODER": ctx.encoder["dir"],
        "TRIAGE_ENCODER_WEIGHTS": ctx.encoder["weights"],
        "TRIAGE_DUMMY_MODELS": str(models),
    }
    ctx.machine = versions()
    snapshot(ctx, "nvidia-smi-start")
    checkout = BUNDLE / "data" / "checkout.json"
    ctx.checkout = json.loads(checkout.read_text()) if checkout.is_file() else {"commit": None}
    ctx.shortcuts = {"flags_explained": gpu_stack.SHORTCUTS}
    return {"models": str(models), "prompts": str(ctx.data), "encoder": ctx.encoder}


def find_prompts() -> Path:
    """The carried sample of the prompt mix (.vllm/data), else ../shared/data's full file."""
    from models.data import DEFAULT_PROMPTS

    for path in (BUNDLE / "data" / "prompts_sample.jsonl.gz", DEFAULT_PROMPTS):
        if path.is_file():
            return path
    raise StepFailed(f"no prompts: run scripts/prepare_device.sh (it writes {BUNDLE}/data/prompts_sample.jsonl.gz)")


def synthetic_prompts(path: Path, n: int = 200) -> Path:
    """Made-up prompts of a few categories and lengths (a dry run needs the form of the data, not the data)."""
    import gzip

    kinds = [
        ("code", "Write a Python function that merges two sorted lists of {k} items."),
        ("creative_writing", "Tell me a story about a lighthouse keeper and {k} gulls."),
        ("general_qa", "What is the capital of the country with {k} lakes?"),
        ("math", "What is {k} times 17, and why?"),
    ]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i in range(n):
            category, text = kinds[i % len(kinds)]
            prompt = " ".join([text.format(k=i)] * (1 + i % 7))  # 1-7 sentences: a spread of lengths
            f.write(json.dumps({"id": f"dry-{i}", "prompt": prompt, "category": category}) + "\n")
    return path


def prepare_encoder(target: Path) -> dict[str, Any]:
    """The classifier's encoder folder: the real fp16 weights when carried (.vllm/minilm-fp16), else random
    weights in all-MiniLM-L6-v2's shape with its real tokenizer (scripts/make_dummy_encoder.py)."""
    real = BUNDLE / "minilm-fp16"
    if (real / "model.safetensors").is_file():
        return {"dir": str(real), "weights": "real", "note": "all-MiniLM-L6-v2 in fp16"}
    shape = BUNDLE / "minilm-shape"
    if not (shape / "config.json").is_file():
        from models.encoder import default_model_path

        shape = Path(default_model_path())
    if not (target / "model.safetensors").is_file():
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "make_dummy_encoder.py"), str(shape), str(target)],
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )
    return {
        "dir": str(target),
        "weights": "dummy",
        "note": "random weights in all-MiniLM-L6-v2's shape (real config and tokenizer): speed as the shipped "
        "encoder, categories are noise. The real weights (46 MB in fp16) do not fit one device call beside the "
        "vLLM bundle (53 MB) within 64 MiB.",
    }


# -- the engines ----------------------------------------------------------------------------------------------


def engines_start(ctx: Context, budget_s: float) -> dict[str, Any]:
    ctx.stack = gpu_stack.start(ctx.work / "logs", ctx.base / "models", ctx.env, dry_run=ctx.dry_run)
    return {"config": ctx.stack.config, "pid": ctx.stack.process.pid}


def engines_ready(ctx: Context, budget_s: float) -> dict[str, Any]:
    """Wait for the router's /ready: every engine healthy and the classifier warm."""
    stack = need_stack(ctx)
    try:
        ready_s = gpu_stack.wait_ready(stack, budget_s)
    except RuntimeError as exc:
        raise StepFailed(str(exc)) from None
    argv = dict(re.findall(r"started engine for (\S+), pid \d+: (.+)", stack.log_text()))
    ctx.shortcuts["argv"] = argv
    return {
        "ready_s": ready_s,
        "started_together": "at the same time (fixed KV caches)" in stack.log_text(),
        "engine_healthy_after_s": gpu_stack.startup_times(stack),
        "argv": argv,
    }


def engines_memory(ctx: Context, budget_s: float) -> dict[str, Any]:
    """Each engine's GPU memory (NVML, by process) within its share of the card; idle, right after start-up."""
    memory = gpu_stack.memory_shares(need_stack(ctx))
    snapshot(ctx, "nvidia-smi-engines-ready")
    if not memory["checked"]:
        raise StepSkipped(memory["why"], memory)
    if not memory["all_within_share"]:
        raise StepFailed("an engine is over its memory share, or was not found on the GPU by process", memory)
    return memory


def snapshot(ctx: Context, name: str) -> None:
    """`nvidia-smi` as it is now, into the logs (nothing where there is no nvidia-smi)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        text = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
        ctx.log(name).write_text(text)


def need_stack(ctx: Context) -> gpu_stack.Stack:
    if ctx.stack is None or ctx.stack.process.poll() is not None:
        raise StepFailed("the router is not running")
    return ctx.stack


def need_prompts(ctx: Context) -> Path:
    if ctx.data is None:
        raise StepFailed("no prompts (the setup step did not find them)")
    return ctx.data


def teardown(ctx: Context) -> dict[str, Any]:
    """Stop the router if a step left it running; what was left behind."""
    if ctx.stack is None:
        return {}
    return gpu_stack.stop(ctx.stack, timeout_s=20.0)  # the engines stop in seconds; the deadline is near


# -- part 1: the classifier ------------------------------------------------------------------------------------


def classifier_tests(ctx: Context, budget_s: float) -> dict[str, Any]:
    """The kernel and model tests on the GPU (the weight-independent ones when the encoder is a dummy)."""
    if ctx.dry_run:  # a few fast CPU tests: the plumbing, not the kernels
        targets = ["tests/kernels/test_dispatch.py", "tests/models/test_encoder.py", "-k", "bound or bucket or plan"]
    elif ctx.encoder["weights"] == "real":
        targets = ["tests/kernels", "tests/models"]
    else:
        targets = ["tests/kernels", "tests/models/test_fused_bert.py", "tests/models/test_encoder.py"]
    return run_pytest(ctx, "classifier-tests", targets, budget_s)


def classifier_bench(ctx: Context, budget_s: float) -> dict[str, Any]:
    """benchmarks/classifier.py, trimmed: batch-1 p50 at 128 and 512 tokens and prompts/s at 128 tokens, each
    with tokenization, for Triton, eager and torch.compile, on the GPU the (idle) engines share. torch.compile
    runs in a second process after the other two, so that a compile that outruns the budget loses only itself."""
    t_end = time.monotonic() + budget_s
    if ctx.dry_run:
        runs = {"eager": ["--lengths", "32", "--batch-sizes", "1,4", "--max-iters", "2", "--warmup", "1"]}
        common = ["--max-case-s", "0.2", "--mix-n", "16", "--mix-batch", "8", "--device", "cpu", "--threads", "1"]
    else:
        runs = {"triton,eager": [], "compile": []}
        common = ["--lengths", "128,512", "--batch-sizes", "1,256", "--max-iters", "50", "--max-case-s", "1"]
        common += ["--warmup", "3", "--mix-n", "1024", "--device", "cuda"]
    details: dict[str, Any] = {"runs": {}, "headline": {}}
    for i, (impls, sweep) in enumerate(runs.items()):
        left_s = t_end - time.monotonic()
        share_s = left_s if i == len(runs) - 1 else min(left_s, 45.0)
        out = ctx.result(f"classifier-{impls.replace(',', '-')}.json")
        argv = [sys.executable, str(REPO / "benchmarks" / "classifier.py"), "--impls", impls, *sweep, *common]
        argv += ["--max-total-s", f"{max(3.0, share_s - 25):.0f}", "--data", str(need_prompts(ctx)), "--out", str(out)]
        rc = run_logged(ctx, f"classifier-bench-{impls.replace(',', '-')}", argv, share_s)
        if rc != 0 or not out.is_file():
            details["runs"][impls] = {"returncode": rc, "argv": argv[2:]}
            continue
        bench = json.loads(out.read_text())
        details["runs"][impls] = {"argv": argv[2:], "summary": bench["summary"], "notes": bench["notes"]}
        details["headline"] |= classifier_headline(bench)
    failed = [k for k, v in details["runs"].items() if "returncode" in v]
    if failed:
        raise StepFailed(f"classifier.py did not finish for {', '.join(failed)} (see its log)", details)
    return details


def run_logged(
    ctx: Context, name: str, argv: list[str], budget_s: float, env: dict[str, str] | None = None
) -> int | None:
    """Run argv in its own session with its output in logs/<name>.log; its exit code, None if cut at the budget."""
    with ctx.log(name).open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=REPO, env={**ctx.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return process.wait(max(1.0, budget_s))
        except subprocess.TimeoutExpired:
            return None
        finally:
            kill_session(process)


def classifier_headline(bench: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """impl -> the issue's figures, tokenization included: p50 at batch 1 (128, 512 tokens), prompts/s at 128."""

    def rows(impl: str, tokens: int) -> list[dict[str, Any]]:
        return [
            c for c in bench["cases"] if c["impl"] == impl and c["tokens"] == tokens and c["tokenization"] == "included"
        ]

    headline: dict[str, dict[str, float | None]] = {}
    for impl in dict.fromkeys(c["impl"] for c in bench["cases"]):
        b1 = {n: next((c["p50_ms"] for c in rows(impl, n) if c["batch"] == 1), None) for n in (128, 512)}
        widest = max(rows(impl, 128), key=lambda c: c["batch"], default=None)
        headline[impl] = {
            "p50_ms_batch1_128tok": b1[128],
            "p50_ms_batch1_512tok": b1[512],
            "prompts_per_s_128tok": widest["prompts_per_s"] if widest else None,
            "prompts_per_s_128tok_batch": widest["batch"] if widest else None,
        }
    return headline


# -- part 3: end to end -------------------------------------------------------------------------------------------


def e2e(ctx: Context, name: str, select: str, budget_s: float) -> dict[str, Any]:
    """tests/gpu/test_vllm_e2e.py, attached to the running router (it does not start its own)."""
    stack = need_stack(ctx)
    attach = {"TRIAGE_E2E_ATTACH": f"{stack.process.pid}:{stack.log_path}"}
    if ctx.dry_run:
        attach["TRIAGE_E2E_SIMULATED"] = "1"  # the engines are tests/gpu/sim_vllm.py: no NVML checks
    return run_pytest(ctx, name, [E2E_TESTS, "-k", select], budget_s, attach)


def e2e_live(ctx: Context, budget_s: float) -> dict[str, Any]:
    """Models listed, auto routing, streaming, cancel, vLLM /metrics and NVML under load."""
    return e2e(ctx, "e2e-live", "not killed and not sigterm", budget_s)


def e2e_restart(ctx: Context, budget_s: float) -> dict[str, Any]:
    """An engine killed: routed around, restarted by the supervisor, serving again."""
    return e2e(ctx, "e2e-restart", "killed", budget_s)


def e2e_shutdown(ctx: Context, budget_s: float) -> dict[str, Any]:
    """SIGTERM to the router: every engine process gone, the GPU released (the stack ends here)."""
    return e2e(ctx, "e2e-shutdown", "sigterm", budget_s)


# -- part 4: Triage vs direct -----------------------------------------------------------------------------------


def throughput(ctx: Context, budget_s: float) -> dict[str, Any]:
    """Output tokens/s direct vs through Triage (named model, and `auto`) at three concurrencies, the same
    prompts each way, the order of the ways rotated per level; gpu_throughput.py's client and statistics."""
    import multiprocessing as mp

    from benchmarks import gpu_throughput as gt

    stack, data = need_stack(ctx), need_prompts(ctx)
    levels = (1, 4, 8) if ctx.dry_run else (1, 16, 128)
    knobs = argparse.Namespace(
        model=THROUGHPUT_MODEL,
        max_tokens=16 if ctx.dry_run else 128,
        workers=2 if ctx.dry_run else 8,
        requests_per_slot=2,
        min_requests=8,
        max_requests=256,
        level_timeout_s=min(10.0, budget_s / 12),  # 3 levels x 3 ways + a warm-up, with room to spare
        request_timeout_s=30.0,
    )
    prompts = gt.load_prompts(data, 2000, 4096, seed=0)
    engine = stack.engines[THROUGHPUT_MODEL]
    urls = {"direct": engine + "/v1/chat/completions", "triage": stack.url + "/v1/chat/completions"}
    urls["triage-auto"] = urls["triage"]
    rng = random.Random(0)
    rows: list[dict[str, Any]] = []
    with mp.get_context("spawn").Pool(knobs.workers, initializer=gt._init_worker, initargs=(prompts,)) as pool:
        warm_ids = [rng.randrange(len(prompts)) for _ in range(16)]
        for way in gt.MODES:  # connections, the engine's batch shapes, the router's code paths
            gt.run_level(pool, knobs, way, urls[way], THROUGHPUT_MODEL, 4, warm_ids)
        for i, level in enumerate(levels):
            n = min(max(knobs.requests_per_slot * level, knobs.min_requests), knobs.max_requests)
            ids = [rng.randrange(len(prompts)) for _ in range(n)]
            order = gt.MODES[i % 3 :] + gt.MODES[: i % 3]
            ways = {way: gt.run_level(pool, knobs, way, urls[way], THROUGHPUT_MODEL, level, ids) for way in order}
            direct = ways["direct"]["output_tok_per_s"]
            row: dict[str, Any] = {"concurrency": level, "order": list(order), "modes": ways}
            for way in ("triage", "triage-auto"):
                row[f"{way}_throughput_ratio"] = round(ways[way]["output_tok_per_s"] / direct, 4) if direct else None
            rows.append(row)
    result = {
        "benchmark": "gpu_throughput (gpu_check: three levels on the check's engines)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": gt.environment(),
        "model": THROUGHPUT_MODEL,
        "model_shapes": gt.model_shapes(stack.config),
        "modes": list(gt.MODES),
        "args": vars(knobs),
        "levels": rows,
        "min_triage_throughput_ratio": min((r["triage_throughput_ratio"] or 0.0) for r in rows),
        "target_min_ratio": 0.98,
    }
    ctx.result("gpu_throughput.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    gt.plot(result, ctx.result("gpu_throughput.png"))
    errors = {f"{r['concurrency']}/{m}": v["first_errors"] for r in rows for m, v in r["modes"].items() if v["errors"]}
    brief = {
        "output_tok_per_s": {r["concurrency"]: {m: v["output_tok_per_s"] for m, v in r["modes"].items()} for r in rows},
        "triage_throughput_ratio": {r["concurrency"]: r["triage_throughput_ratio"] for r in rows},
        "triage-auto_throughput_ratio": {r["concurrency"]: r["triage-auto_throughput_ratio"] for r in rows},
        "min_triage_throughput_ratio": result["min_triage_throughput_ratio"],
        "errors": errors,
    }
    if errors:
        raise StepFailed(f"requests failed: {errors}", brief)
    return brief


# -- part 5: the routing-value replay ---------------------------------------------------------------------------


def replay(ctx: Context, budget_s: float) -> dict[str, Any]:
    """A routing-value trace through a static router and a Triage router over the check's engines."""
    from benchmarks import gpu_replay

    t0 = time.monotonic()
    stack, data = need_stack(ctx), need_prompts(ctx)
    trace_path = BUNDLE / "data" / gpu_replay.TRACE_NAME
    if ctx.dry_run:
        trace = gpu_replay.synthetic_trace(data, list(stack.engines), rates=(4.0, 8.0), duration_s=1.5)
    elif trace_path.is_file():
        trace = gpu_replay.load_trace(trace_path)
    else:
        ctx.todo.append(gpu_replay.TODO)
        raise StepSkipped(gpu_replay.TODO)
    try:
        gpu_stack.wait_ready(stack, min(60.0, budget_s / 3))
    except RuntimeError as exc:
        raise StepSkipped(f"an engine is not healthy (a restart still under way?): {exc}") from None
    budget_s -= time.monotonic() - t0
    result = gpu_replay.run(trace, stack.config, stack.engines, ctx.work / "logs", ctx.env, budget_s, ctx.dry_run)
    ctx.result("gpu_replay.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    summary: dict[str, Any] = result["summary"]
    return summary
