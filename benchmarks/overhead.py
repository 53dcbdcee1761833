"""Router overhead, side by side: the same engine reached directly, through Triage, and through a LiteLLM proxy.

1. Zero-latency fake engine (benchmarks/fake_engine.py): the router's own cost. Sequential requests, one
   keep-alive connection, targets interleaved: added latency p50/p99 (non-streamed total; streamed time to
   first byte and total), and router CPU time per request read from /proc (the number that decides how many
   cores a deployment needs).
2. vLLM-like simulated engine (`triage sim-engine`, 7B shape, capacity 256): closed-loop streamed load at
   64-512 concurrent users from several client processes; throughput and TTFT percentiles, direct vs each
   router.

    python benchmarks/overhead.py            # writes benchmarks/results/overhead.json and overhead.png
    python benchmarks/overhead.py --console-ab 10   # writes benchmarks/results/overhead_console.json (and .png)
    python benchmarks/overhead.py --checkout-ab 40 --baseline-checkout DIR   # overhead_checkout_ab.json (and .png)

`--console-client` keeps one operator-console client (`console_client.py`: the console's live stream, read as
the page reads it) attached to every Triage process while it is measured. `--console-ab N` measures only what
that client costs: the zero-latency engine behind Triage (`model: auto`), N blocks of direct-vs-Triage request
pairs with the client's stream switched on and off between blocks (A B B A ...), percentiles pooled per condition.
`--checkout-ab N` compares two versions of Triage in the same way: this checkout and `--baseline-checkout` (a git
worktree of an older commit, run with this interpreter), both started behind the same engine, blocks alternating
between them, so that a change's cost is measured on the same box in the same minutes.

LiteLLM runs from its own virtual environment (created on first use: `--litellm-venv`), with one worker,
`LITELLM_LOCAL_MODEL_COST_MAP=True` and a master key, defaults otherwise. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):  # run as a file: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, Launch, cpu_s, free_port, machine, percentile, server_process, triage_serve
from benchmarks.console_client import ConsoleClient
from benchmarks.loadgen import SequentialProbe, Target, chat_body, concurrent_load

LITELLM_VERSION = "1.108.7"
MASTER_KEY = "sk-triage-bench-0000"
PROMPT_512_TOKENS = ("Explain how continuous batching works in an LLM inference server. " * 31)[:2048]


def ensure_litellm(venv: Path) -> Path:
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        print(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    return exe


def litellm_config(engine_port: int, model: str) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": f"http://127.0.0.1:{engine_port}/v1",
                    "api_key": "unused",
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


def triage_config(engine_port: int, model: str, port: int, classifier: str, policy: str = "static") -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warning"},
        "classifier": {"kind": classifier, "impl": "eager"},
        # static routing, as the results so far were measured (the single-model `auto` decision is trivial); older
        # checkouts called it `keyword`
        "policy": {"name": policy},
        "models": [
            {
                "name": model,
                "endpoints": [f"http://127.0.0.1:{engine_port}/v1"],
                "roles": ["chat"],
                "context_length": 32768,
                "max_in_flight": 4096,
            }
        ],
    }


class Routers:
    """Starts Triage (and LiteLLM) in front of an engine port; yields targets."""

    def __init__(self, workdir: Path, litellm_exe: Path | None, console_client: bool = False) -> None:
        self.workdir = workdir
        self.litellm_exe = litellm_exe
        self.console_client = console_client  # keep one console client attached to every Triage process

    def triage(
        self, engine_port: int, model: str, classifier: str = "keyword", checkout: Path = REPO, policy: str = "static"
    ) -> tuple[Any, str]:
        """Triage from `checkout` (this repository by default; its `server` package is imported, not ours)."""
        port = free_port()
        path = self.workdir / f"triage-{classifier}-{port}.yaml"
        path.write_text(yaml.safe_dump(triage_config(engine_port, model, port, classifier, policy)))
        url = f"http://127.0.0.1:{port}"
        launch = Launch(
            triage_serve(path),
            url + "/ready",
            f"triage-{classifier}",
            env={"PYTHONPATH": str(checkout)},
            ready_timeout_s=300,
            log_path=self.workdir / f"triage-{classifier}-{port}.log",
            cwd=checkout,
        )
        process = server_process(launch)
        return (with_console(process, url) if self.console_client else process), url

    def litellm(self, engine_port: int, model: str) -> tuple[Any, str]:
        assert self.litellm_exe is not None
        port = free_port()
        path = self.workdir / f"litellm-{port}.yaml"
        path.write_text(yaml.safe_dump(litellm_config(engine_port, model)))
        argv = [
            str(self.litellm_exe),
            "--config",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ]
        launch = Launch(
            argv,
            f"http://127.0.0.1:{port}/health/liveliness",
            "litellm",
            env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
            ready_timeout_s=180,
            log_path=self.workdir / "litellm.log",
        )
        return server_process(launch), f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def with_console(process: Any, url: str) -> Iterator[Any]:
    """A server process with one console client attached for its whole life."""
    with process as proc, ConsoleClient(url) as console:
        console.attach()
        yield proc


def fake_engine(args: argparse.Namespace, routers: Routers) -> tuple[Any, int]:
    """The zero-latency fake engine's process (a context manager) and its port."""
    port = free_port()
    launch = Launch(
        [sys.executable, "benchmarks/fake_engine.py", "--port", str(port), "--chunks", str(args.chunks)],
        f"http://127.0.0.1:{port}/health",
        "fake-engine",
        log_path=routers.workdir / "fake-engine.log",
    )
    return server_process(launch), port


def summarize_sequential(samples: dict[str, list[Any]], stream: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    direct_ttfb = [s.ttfb_s for s in samples["direct"]]
    direct_total = [s.total_s for s in samples["direct"]]
    for name, rows in samples.items():
        ttfb = [s.ttfb_s for s in rows]
        total = [s.total_s for s in rows]
        entry: dict[str, Any] = {"n": len(rows)}
        for label, values, base in (("total", total, direct_total), ("ttfb", ttfb, direct_ttfb)):
            if label == "ttfb" and not stream:
                continue
            entry[f"{label}_p50_ms"] = percentile(values, 50) * 1e3
            entry[f"{label}_p99_ms"] = percentile(values, 99) * 1e3
            if name != "direct":
                entry[f"{label}_added_p50_ms"] = (percentile(values, 50) - percentile(base, 50)) * 1e3
                entry[f"{label}_added_p99_ms"] = (percentile(values, 99) - percentile(base, 99)) * 1e3
        headers = [s.overhead_header_ms for s in rows if s.overhead_header_ms is not None]
        if headers:
            entry["x_triage_overhead_ms_p50"] = percentile(headers, 50)
            entry["x_triage_overhead_ms_p99"] = percentile(headers, 99)
        out[name] = entry
    return out


def cpu_per_request(probe: SequentialProbe, target: Target, pid: int, body: bytes, stream: bool, count: int) -> float:
    for _ in range(50):
        probe.one(target, body, stream)
    before = cpu_s(pid)
    for _ in range(count):
        probe.one(target, body, stream)
    return (cpu_s(pid) - before) / count * 1e3


def phase_zero_latency(args: argparse.Namespace, routers: Routers) -> dict[str, Any]:
    engine, engine_port = fake_engine(args, routers)
    result: dict[str, Any] = {"engine": f"zero-latency fake, {args.chunks} streamed events per answer"}
    with engine:
        triage_cm, triage_url = routers.triage(engine_port, "fake")
        with triage_cm as triage_proc:
            targets = [
                Target("direct", f"http://127.0.0.1:{engine_port}", "fake"),
                Target("triage", triage_url, "fake"),
                Target("triage_auto", triage_url, "auto"),
            ]
            pids = {"triage": triage_proc.pid, "triage_auto": triage_proc.pid}
            litellm_cm = routers.litellm(engine_port, "fake") if routers.litellm_exe else None
            if litellm_cm is not None:
                litellm_proc = litellm_cm[0].__enter__()
                targets.append(Target("litellm", litellm_cm[1], "fake", {"authorization": f"Bearer {MASTER_KEY}"}))
                pids["litellm"] = litellm_proc.pid
            try:
                # Each router is measured in its own A/B run against direct, requests alternating one by one:
                # mixing a slow router into the rotation would leave the fast ones idle (and cold) for tens
                # of milliseconds between requests, which is not what it measures.
                for stream in (False, True):
                    mode: dict[str, Any] = {}
                    for router in targets[1:]:
                        pair = SequentialProbe([targets[0], router])
                        bodies = {t.name: chat_body(t.model, stream, args.chunks) for t in pair.targets}
                        samples = pair.run(bodies, stream, args.requests, warmup=50, budget_s=args.budget_s)
                        pair.close()
                        summary = summarize_sequential(samples, stream)
                        mode[router.name] = summary[router.name]
                        mode.setdefault("direct_runs", {})[router.name] = summary["direct"]
                    result["streamed" if stream else "non_streamed"] = mode
                probe = SequentialProbe(targets)
                cpu: dict[str, dict[str, float]] = {}
                for target in targets[1:]:
                    cpu[target.name] = {
                        "non_streamed_ms": cpu_per_request(
                            probe,
                            target,
                            pids[target.name],
                            chat_body(target.model, False, args.chunks),
                            False,
                            args.cpu_requests,
                        ),
                        "streamed_ms": cpu_per_request(
                            probe,
                            target,
                            pids[target.name],
                            chat_body(target.model, True, args.chunks),
                            True,
                            args.cpu_requests,
                        ),
                    }
                result["router_cpu_ms_per_request"] = cpu
                probe.close()
            finally:
                if litellm_cm is not None:
                    litellm_cm[0].__exit__(None, None, None)
    return result


def added_p50_ms(samples: dict[str, list[Any]]) -> float:
    """Triage's p50 minus direct's p50 (total time, non-streamed), milliseconds."""
    triage = [x.total_s for x in samples["triage_auto"]]
    direct = [x.total_s for x in samples["direct"]]
    return (percentile(triage, 50) - percentile(direct, 50)) * 1e3


Pooled = dict[bool, dict[str, list[Any]]]  # condition -> target name -> samples


def abba_blocks(
    args: argparse.Namespace, count: int, flag: str, run_block: Callable[[bool], dict[str, list[Any]]]
) -> tuple[Pooled, list[dict[str, Any]]]:
    """`count` blocks in the order A B B A ... (False, True, True, False, ...), within `--budget-s`:
    `run_block(condition)` measures one block; its samples are pooled per condition, and each block's added p50
    is kept under the key `flag` for its condition."""
    pooled: Pooled = {condition: {"direct": [], "triage_auto": []} for condition in (False, True)}
    blocks: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for n in range(count):
        condition = n % 4 in (1, 2)
        got = run_block(condition)
        for name, rows in got.items():
            pooled[condition][name] += rows
        blocks.append({"block": n, flag: condition, "added_p50_ms": round(added_p50_ms(got), 4)})
        if time.monotonic() - t0 > args.budget_s:
            break
    return pooled, blocks


def phase_console_ab(args: argparse.Namespace, routers: Routers) -> dict[str, Any]:
    """Triage's added latency (non-streamed, `model: auto`) with and without one console client attached.

    One Triage, one console client process; blocks of `--console-block` request pairs (direct and Triage
    alternating request by request) switch the client's stream on and off in an ABBA pattern, so that both
    conditions sample the same stretches of a noisy machine. Percentiles are pooled over all blocks of a
    condition; the interval is a bootstrap over blocks.
    """
    engine, engine_port = fake_engine(args, routers)
    with engine:
        triage_cm, triage_url = routers.triage(engine_port, "fake")
        with triage_cm, ConsoleClient(triage_url) as console:
            direct = Target("direct", f"http://127.0.0.1:{engine_port}", "fake")
            triage = Target("triage_auto", triage_url, "auto")
            bodies = {t.name: chat_body(t.model, False, args.chunks) for t in (direct, triage)}
            probe = SequentialProbe([direct, triage])
            probe.run(bodies, False, 0, warmup=200, budget_s=args.budget_s)

            def block(attached: bool) -> dict[str, list[Any]]:
                if attached != console.attached:
                    console.attach() if attached else console.detach()
                return probe.run(bodies, False, args.console_block, warmup=0, budget_s=args.budget_s)

            pooled, blocks = abba_blocks(args, args.console_ab, "console", block)
            probe.close()
    read = console.read

    def summary_of(flag: bool) -> dict[str, float]:
        rows = pooled[flag]
        headers = [x.overhead_header_ms for x in rows["triage_auto"] if x.overhead_header_ms is not None]
        return {
            "requests": len(rows["triage_auto"]),
            "added_p50_ms": round(added_p50_ms(rows), 4),
            "triage_p50_ms": round(percentile([x.total_s for x in rows["triage_auto"]], 50) * 1e3, 4),
            "direct_p50_ms": round(percentile([x.total_s for x in rows["direct"]], 50) * 1e3, 4),
            "x_triage_overhead_ms_p50": round(percentile(headers, 50), 4),
        }

    without, with_ = summary_of(False), summary_of(True)
    delta = with_["added_p50_ms"] - without["added_p50_ms"]
    low, high = bootstrap_delta(blocks, pooled, args.seed)
    summary = {
        "blocks": len(blocks),
        "requests_per_block": args.console_block,
        "added_p50_ms_without_console": without["added_p50_ms"],
        "added_p50_ms_with_console": with_["added_p50_ms"],
        "console_delta_added_p50_ms": round(delta, 4),
        "console_delta_added_p50_ms_95ci": [round(low, 4), round(high, 4)],
        "console_delta_overhead_header_p50_ms": round(
            with_["x_triage_overhead_ms_p50"] - without["x_triage_overhead_ms_p50"], 4
        ),
        "within_0_05_ms": abs(delta) <= 0.05,
    }
    return {
        "engine": f"zero-latency fake, {args.chunks} streamed events per answer",
        "without_console": without,
        "with_console": with_,
        "console_client_read": read,
        "blocks": blocks,
        "summary": summary,
    }


def phase_checkout_ab(args: argparse.Namespace, routers: Routers) -> dict[str, Any]:
    """Triage's added latency (non-streamed, `model: auto`) from `--baseline-checkout` (False) and from this
    checkout (True), both running behind one zero-latency engine.

    Each version has its own probe (direct and that Triage alternating request by request); blocks of
    `--console-block` pairs go to one version or the other in an ABBA pattern, so that both sample the same
    stretches of a noisy machine. Percentiles are pooled per version; the interval is a bootstrap over blocks.
    """
    engine, engine_port = fake_engine(args, routers)
    with engine:
        base_cm, base_url = routers.triage(
            engine_port, "fake", checkout=args.baseline_checkout, policy=args.baseline_policy
        )
        this_cm, this_url = routers.triage(engine_port, "fake")
        with base_cm, this_cm:
            direct = Target("direct", f"http://127.0.0.1:{engine_port}", "fake")
            probes: dict[bool, tuple[SequentialProbe, dict[str, bytes]]] = {}
            for flag, url in ((False, base_url), (True, this_url)):
                triage = Target("triage_auto", url, "auto")
                bodies = {t.name: chat_body(t.model, False, args.chunks) for t in (direct, triage)}
                probe = SequentialProbe([direct, triage])
                probe.run(bodies, False, 0, warmup=200, budget_s=args.budget_s)
                probes[flag] = (probe, bodies)

            def block(this_checkout: bool) -> dict[str, list[Any]]:
                probe, bodies = probes[this_checkout]
                return probe.run(bodies, False, args.console_block, warmup=0, budget_s=args.budget_s)

            pooled, blocks = abba_blocks(args, args.checkout_ab, "this_checkout", block)
            for probe, _ in probes.values():
                probe.close()

    def summary_of(flag: bool) -> dict[str, float]:
        rows = pooled[flag]
        return {
            "requests": len(rows["triage_auto"]),
            "added_p50_ms": round(added_p50_ms(rows), 4),
            "triage_p50_ms": round(percentile([x.total_s for x in rows["triage_auto"]], 50) * 1e3, 4),
            "direct_p50_ms": round(percentile([x.total_s for x in rows["direct"]], 50) * 1e3, 4),
        }

    before, after = summary_of(False), summary_of(True)
    delta = after["added_p50_ms"] - before["added_p50_ms"]
    low, high = bootstrap_delta(blocks, pooled, args.seed, flag="this_checkout")
    return {
        "engine": f"zero-latency fake, {args.chunks} streamed events per answer",
        "checkouts": {"baseline": commit_of(args.baseline_checkout), "this": commit_of(REPO)},
        "baseline_policy": args.baseline_policy,
        "baseline": before,
        "this_checkout": after,
        "blocks": blocks,
        "summary": {
            "blocks": len(blocks),
            "requests_per_block": args.console_block,
            "added_p50_ms_baseline": before["added_p50_ms"],
            "added_p50_ms_this_checkout": after["added_p50_ms"],
            "delta_added_p50_ms": round(delta, 4),
            "delta_added_p50_ms_95ci": [round(low, 4), round(high, 4)],
            "within_0_05_ms": abs(delta) <= 0.05,
        },
    }


def commit_of(checkout: Path) -> str:
    """`git describe`-like id of a checkout: its HEAD commit, `+dirty` when it has uncommitted changes."""
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def bootstrap_delta(
    blocks: list[dict[str, Any]],
    pooled: dict[bool, dict[str, list[Any]]],
    seed: int,
    draws: int = 300,
    flag: str = "console",
) -> tuple[float, float]:
    """95% interval of (True - False condition) pooled added p50, resampling whole blocks of each condition;
    `flag` is the blocks' key that says which condition a block measured."""
    import random

    rng = random.Random(seed)
    size = blocks and len(pooled[False]["direct"]) // max(1, sum(not b[flag] for b in blocks))
    if not size:
        return float("nan"), float("nan")

    def by_block(flag: bool) -> list[dict[str, list[Any]]]:
        rows = pooled[flag]
        count = len(rows["direct"]) // size
        return [{k: v[i * size : (i + 1) * size] for k, v in rows.items()} for i in range(count)]

    parts = {flag: by_block(flag) for flag in (False, True)}
    deltas = []
    for _ in range(draws):
        added = {}
        for condition, chunks in parts.items():
            drawn = [rng.choice(chunks) for _ in chunks]
            added[condition] = added_p50_ms({k: [x for c in drawn for x in c[k]] for k in ("direct", "triage_auto")})
        deltas.append(added[True] - added[False])
    return percentile(deltas, 2.5), percentile(deltas, 97.5)


def plot_console_ab(result: dict[str, Any], path: Path) -> None:
    s = result["summary"]
    low, high = s["console_delta_added_p50_ms_95ci"]
    title = (
        f"Console client: pooled added p50 {s['added_p50_ms_without_console']:.3f} -> "
        f"{s['added_p50_ms_with_console']:.3f} ms (delta {s['console_delta_added_p50_ms']:+.3f}, "
        f"95% CI {low:+.3f}..{high:+.3f})"
    )
    plot_ab(result["blocks"], "console", ("no console client", "one console client attached"), title, s, path)


def plot_checkout_ab(result: dict[str, Any], path: Path) -> None:
    s = result["summary"]
    low, high = s["delta_added_p50_ms_95ci"]
    base, this = (result["checkouts"][k][:9] for k in ("baseline", "this"))
    title = (
        f"Triage {base} -> {this}: pooled added p50 {s['added_p50_ms_baseline']:.3f} -> "
        f"{s['added_p50_ms_this_checkout']:.3f} ms (delta {s['delta_added_p50_ms']:+.3f}, "
        f"95% CI {low:+.3f}..{high:+.3f})"
    )
    plot_ab(result["blocks"], "this_checkout", (f"Triage at {base}", f"Triage at {this}"), title, s, path)


def plot_ab(
    blocks: list[dict[str, Any]], flag: str, labels: tuple[str, str], title: str, s: dict[str, Any], path: Path
) -> None:
    """Each block's added p50, coloured by the condition (`flag`) it measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for condition, colour in ((False, "tab:blue"), (True, "tab:orange")):
        rows = [b for b in blocks if b[flag] is condition]
        ax.scatter(
            [b["block"] for b in rows], [b["added_p50_ms"] for b in rows], s=12, color=colour, label=labels[condition]
        )
    ax.set_xlabel(f"block of {s['requests_per_block']} request pairs (A B B A ...)")
    ax.set_ylabel("Triage's added latency, block p50 (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def phase_simulated(args: argparse.Namespace, routers: Routers) -> dict[str, Any]:
    engine_port = free_port()
    argv = [
        sys.executable,
        "-m",
        "server.cli",
        "sim-engine",
        "--name",
        "sim",
        "--port",
        str(engine_port),
        "--shape",
        "qwen2.5-7b",
        "--max-num-seqs",
        "256",
        "--default-output-tokens",
        str(args.sim_tokens),
        "--log-level",
        "warning",
    ]
    result: dict[str, Any] = {
        "engine": "triage sim-engine, qwen2.5-7b shape (H100-calibrated), max_num_seqs 256",
        "prompt_tokens": len(PROMPT_512_TOKENS) // 4,
        "max_tokens": args.sim_tokens,
        "duration_s": args.duration_s,
        "client_processes": args.processes,
        "runs": [],
    }
    body = {"fake": chat_body("sim", True, args.sim_tokens, PROMPT_512_TOKENS)}
    sim_engine = Launch(
        argv, f"http://127.0.0.1:{engine_port}/health", "sim-engine", log_path=routers.workdir / "sim-engine.log"
    )
    with server_process(sim_engine):
        triage_cm, triage_url = routers.triage(engine_port, "sim")
        with triage_cm:
            targets = [Target("direct", f"http://127.0.0.1:{engine_port}", "sim"), Target("triage", triage_url, "sim")]
            litellm_cm = routers.litellm(engine_port, "sim") if routers.litellm_exe else None
            if litellm_cm is not None:
                litellm_cm[0].__enter__()
                targets.append(Target("litellm", litellm_cm[1], "sim", {"authorization": f"Bearer {MASTER_KEY}"}))
            try:
                for concurrency in args.concurrency:
                    for target in targets:
                        time.sleep(1.0)  # let the engine drain between runs
                        run = concurrent_load(
                            target,
                            body["fake"],
                            concurrency,
                            args.processes,
                            args.duration_s,
                            max_requests=concurrency * 200,
                        )
                        row = {
                            "target": target.name,
                            "concurrency": concurrency,
                            "completed": run["completed"],
                            "errors": run["errors"],
                            "req_per_s": run["req_per_s"],
                            "output_tokens_per_s": run["output_tokens_per_s"],
                            "ttft_p50_ms": percentile(run["ttft_s"], 50) * 1e3,
                            "ttft_p99_ms": percentile(run["ttft_s"], 99) * 1e3,
                            "latency_p50_ms": percentile(run["latency_s"], 50) * 1e3,
                        }
                        print(json.dumps(row), flush=True)
                        result["runs"].append(row)
            finally:
                if litellm_cm is not None:
                    litellm_cm[0].__exit__(None, None, None)
    return result


def summary_of(zero: dict[str, Any], sim: dict[str, Any]) -> dict[str, Any]:
    ns = zero["non_streamed"]
    cpu = zero["router_cpu_ms_per_request"]
    top = max(r["concurrency"] for r in sim["runs"]) if sim["runs"] else None
    at_top = {r["target"]: r for r in sim["runs"] if r["concurrency"] == top}
    out: dict[str, Any] = {
        "triage_added_p50_ms": round(ns["triage"]["total_added_p50_ms"], 3),
        "triage_added_p99_ms": round(ns["triage"]["total_added_p99_ms"], 3),
        "triage_cpu_ms_per_request": round(cpu["triage"]["non_streamed_ms"], 3),
        "throughput_ratio_vs_direct": (
            round(at_top["triage"]["req_per_s"] / at_top["direct"]["req_per_s"], 3) if "triage" in at_top else None
        ),
        "throughput_concurrency": top,
    }
    if "litellm" in ns:
        out["litellm_added_p50_ms"] = round(ns["litellm"]["total_added_p50_ms"], 3)
        out["litellm_over_triage_p50"] = round(
            ns["litellm"]["total_added_p50_ms"] / max(ns["triage"]["total_added_p50_ms"], 1e-6), 1
        )
        out["litellm_cpu_ms_per_request"] = round(cpu["litellm"]["non_streamed_ms"], 3)
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    ns = results["zero_latency"]["non_streamed"]
    names = [n for n in ns if n != "direct_runs"]
    left.bar([f"{n}\np50" for n in names], [ns[n]["total_added_p50_ms"] for n in names], color="tab:blue")
    left.bar([f"{n}\np99" for n in names], [ns[n]["total_added_p99_ms"] for n in names], color="tab:orange")
    left.set_yscale("log")
    left.set_ylabel("added latency per request (ms, log)")
    left.set_title("Zero-latency engine: what the router adds")
    runs = results["simulated"]["runs"]
    for target in sorted({r["target"] for r in runs}):
        rows = [r for r in runs if r["target"] == target]
        right.plot([r["concurrency"] for r in rows], [r["req_per_s"] for r in rows], marker="o", label=target)
    right.set_xscale("log", base=2)
    right.set_xlabel("concurrent streams")
    right.set_ylabel("completed requests/s")
    right.set_title("vLLM-like simulated engine (7B shape, 256 slots)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "overhead.json")
    parser.add_argument("--requests", type=int, default=1000, help="sequential requests per target and mode")
    parser.add_argument("--cpu-requests", type=int, default=500, help="requests per CPU-time measurement")
    parser.add_argument("--budget-s", type=float, default=240, help="time cap of each sequential run")
    parser.add_argument("--chunks", type=int, default=16, help="streamed events per fake answer")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--duration-s", type=float, default=20, help="length of each concurrent run")
    parser.add_argument("--processes", type=int, default=2, help="client processes for concurrent load")
    parser.add_argument("--sim-tokens", type=int, default=64, help="max_tokens of simulated-engine requests")
    parser.add_argument("--litellm-venv", type=Path, default=REPO / ".bench" / "litellm")
    parser.add_argument("--no-litellm", action="store_true", help="measure direct and Triage only")
    parser.add_argument("--skip-simulated", action="store_true")
    parser.add_argument("--console-client", action="store_true", help="keep a console client on every Triage")
    parser.add_argument("--console-ab", type=int, metavar="BLOCKS", help="only measure a console client's cost")
    parser.add_argument("--console-block", type=int, default=100, help="request pairs per --console-ab block")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (--console-ab, --checkout-ab)")
    parser.add_argument("--checkout-ab", type=int, metavar="BLOCKS", help="only compare with --baseline-checkout")
    parser.add_argument("--baseline-checkout", type=Path, help="another checkout of Triage (e.g. a git worktree)")
    parser.add_argument("--baseline-policy", default="static", help="its name of static routing (older: keyword)")
    args = parser.parse_args(argv)

    workdir = Path("/tmp/triage-bench-overhead")
    workdir.mkdir(exist_ok=True)
    started = time.time()
    if args.checkout_ab and args.baseline_checkout is None:
        parser.error("--checkout-ab needs --baseline-checkout")
    for wanted, name, phase, plot_ab_result in (
        (args.checkout_ab, "overhead_checkout_ab", phase_checkout_ab, plot_checkout_ab),
        (args.console_ab, "overhead_console", phase_console_ab, plot_console_ab),
    ):
        if wanted:
            out = args.out.with_name(f"{name}.json") if args.out.name == "overhead.json" else args.out
            measured = phase(args, Routers(workdir, None))
            result = {"benchmark": name, "machine": machine(), "started_unix": int(started), **measured}
            result["duration_s"] = round(time.time() - started, 1)
            out.write_text(json.dumps(result, indent=1))
            plot_ab_result(result, out.with_suffix(".png"))
            print(json.dumps(result["summary"]))
            return 0
    litellm_exe = None if args.no_litellm else ensure_litellm(args.litellm_venv)
    routers = Routers(workdir, litellm_exe, console_client=args.console_client)
    zero = phase_zero_latency(args, routers)
    print(json.dumps({"zero_latency": zero}, indent=1), flush=True)
    sim = {"runs": []} if args.skip_simulated else phase_simulated(args, routers)
    results: dict[str, Any] = {
        "benchmark": "overhead",
        "machine": machine(),
        "started_unix": int(started),
        "duration_s": round(time.time() - started, 1),
        "versions": {"litellm": LITELLM_VERSION if litellm_exe else None, "triage": "0.1.0"},
        "console_client_attached": args.console_client,
        "litellm_config": litellm_config(0, "fake") | {"env": {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}, "workers": 1},
        "zero_latency": zero,
        "simulated": sim,
    }
    results["summary"] = summary_of(zero, sim)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(results["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
