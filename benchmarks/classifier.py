"""Prompt-encoder benchmark: latency p50/p99 and prompts/s by batch size and prompt length.

Paths: Triton (`impl="triton"`, models.fused_bert), PyTorch eager, torch.compile and sentence-transformers
(the baseline a user reaches for). Each is timed with tokenization included (texts in, embeddings out) and,
for our encoder, excluded (padded token tensors in). A second section measures prompts/s on the real length
mix of the prompts file with fixed padding to max_tokens, padding to the longest prompt in arrival-order
batches, and length bucketing. Results go to benchmarks/results/classifier.json (+ .png) with the device
and versions.

    python benchmarks/classifier.py            # full sweep on a GPU, reduced sweep on CPU
    python benchmarks/classifier.py --quick    # reduced sweep anywhere

Every loop is bounded by iteration count and seconds (per case and in total); skipped cases say why.
This script knows nothing about routing; it measures models/encoder.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from models.data import DEFAULT_PROMPTS, REPO_ROOT, load_prompts
from models.encoder import EncoderConfig, Padding, SentenceEncoder, default_model_path

logger = logging.getLogger("bench")
RESULTS = REPO_ROOT / "benchmarks" / "results"
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "and",
    "then",
    "runs",
    "into",
    "old",
    "forest",
    "to",
    "find",
    "some",
    "food",
]


@dataclass
class CaseResult:
    impl: str  # triton | eager | compile | sentence-transformers
    tokenization: str  # included | excluded
    batch: int  # prompts per call
    tokens: int  # tokens per prompt incl. [CLS]/[SEP]
    iters: int
    p50_ms: float  # per batch call
    p99_ms: float
    prompts_per_s: float  # batch / mean latency


@dataclass
class Bench:
    device: dict[str, Any]
    sweep: dict[str, Any]
    cases: list[CaseResult] = field(default_factory=list)
    length_mix: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def device_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for mod in ("transformers", "tokenizers", "triton", "sentence_transformers"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


def synthetic_text(encoder: SentenceEncoder, n_tokens: int) -> str:
    """A prompt that tokenizes to exactly n_tokens including [CLS]/[SEP] (one word = one token here)."""
    text = " ".join(WORDS[i % len(WORDS)] for i in range(n_tokens - 2))
    if len(encoder.tokenize([text])[0]) != n_tokens:
        raise RuntimeError(f"synthetic prompt does not give {n_tokens} tokens; check the tokenizer")
    return text


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], object], max_iters: int, max_s: float, warmup: int) -> list[float]:
    """Seconds per call: `warmup` untimed calls, then up to max_iters timed calls within max_s."""
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    t_end = time.perf_counter() + max_s
    while len(times) < max_iters and (len(times) < 3 or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def result(impl: str, tok: str, batch: int, tokens: int, times: list[float]) -> CaseResult:
    t = np.array(times)
    return CaseResult(
        impl,
        tok,
        batch,
        tokens,
        len(t),
        round(float(np.percentile(t, 50)) * 1e3, 3),
        round(float(np.percentile(t, 99)) * 1e3, 3),
        round(batch / float(t.mean()), 1),
    )


def build_impls(args: argparse.Namespace, max_tokens: int, bench: Bench) -> dict[str, Any]:
    """Name -> encoder object (SentenceEncoder, or SentenceTransformer for the baseline)."""
    impls: dict[str, Any] = {}
    for name in args.impls.split(","):
        if name in ("eager", "compile", "triton"):
            cfg = EncoderConfig(max_tokens=max_tokens, device=args.device, dtype=args.dtype, impl=name)
            enc = SentenceEncoder(cfg)
            if enc.impl != name:
                bench.notes.append(f"{name}: unavailable (models.fused_bert missing or failed), skipped")
                continue
            impls[name] = enc
        elif name == "st":
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                bench.notes.append("sentence-transformers: not installed, skipped (pip install sentence-transformers)")
                continue
            st = SentenceTransformer(
                default_model_path(),
                device=str(impls["eager"].device)
                if "eager" in impls
                else ("cuda" if torch.cuda.is_available() else "cpu"),
            )
            st.max_seq_length = max_tokens
            if args.dtype == "float16" or (args.dtype == "auto" and torch.cuda.is_available()):
                st.half()
            impls["sentence-transformers"] = st
        else:
            raise SystemExit(f"unknown impl {name!r}; use eager, compile, triton, st")
    return impls


def run_sweep(args: argparse.Namespace, bench: Bench, impls: dict[str, Any], ref: SentenceEncoder) -> None:
    t_stop = time.perf_counter() + args.max_total_s
    texts_by_len = {n: synthetic_text(ref, n) for n in args.lengths}
    for name, enc in impls.items():
        for n in args.lengths:
            per_prompt_s: float | None = None
            for b in args.batch_sizes:
                if time.perf_counter() > t_stop:
                    bench.notes.append(f"total budget {args.max_total_s}s reached: {name} {n}tok b{b}+ skipped")
                    break
                if per_prompt_s is not None and per_prompt_s * b > args.max_case_s:
                    bench.notes.append(f"{name} {n}tok b{b}: skipped, one call would take ~{per_prompt_s * b:.1f}s")
                    break
                texts = [texts_by_len[n]] * b
                if name == "sentence-transformers":

                    def call(t: list[str] = texts, st: Any = enc, b: int = b) -> object:
                        return st.encode(
                            t,
                            batch_size=b,
                            normalize_embeddings=True,
                            convert_to_numpy=True,
                            show_progress_bar=False,
                        )

                    times = time_calls(call, args.max_iters, args.max_case_s, args.warmup)
                    bench.cases.append(result(name, "included", b, n, times))
                else:
                    ids, mask = enc.collate(enc.tokenize(texts), n)
                    excl = time_calls(
                        partial(enc.forward_ids, ids, mask),
                        args.max_iters,
                        args.max_case_s,
                        args.warmup,
                    )
                    bench.cases.append(result(name, "excluded", b, n, excl))
                    incl = time_calls(
                        partial(enc.encode, texts, batch_size=b),
                        args.max_iters,
                        args.max_case_s,
                        1,
                    )
                    bench.cases.append(result(name, "included", b, n, incl))
                per_prompt_s = float(np.median(times if name == "sentence-transformers" else incl)) / b
                logger.info("%s", bench.cases[-1])


def run_length_mix(args: argparse.Namespace, bench: Bench, impls: dict[str, Any]) -> None:
    """prompts/s on real prompts: pad to max_tokens, to the longest in batch, or to buckets."""
    ps = load_prompts(args.data)
    rng = np.random.default_rng(0)
    texts = [ps.texts[i] for i in rng.choice(len(ps), size=min(args.mix_n, len(ps)), replace=False)]
    for name in ("triton", "eager"):
        if name not in impls:
            continue
        enc: SentenceEncoder = impls[name]
        enc.config = replace(enc.config, max_tokens=args.mix_max_tokens)  # the shipped budget, not the sweep's
        lengths = [len(r) for r in enc.tokenize(texts)]
        modes: tuple[Padding, ...] = ("max", "longest", "bucket")
        for padding in modes:
            enc.encode(texts[: args.mix_batch], padding=padding, batch_size=args.mix_batch)  # warm
            sync()
            t0 = time.perf_counter()
            enc.encode(texts, padding=padding, batch_size=args.mix_batch)
            sync()
            dt = time.perf_counter() - t0
            bench.length_mix.append(
                {
                    "impl": name,
                    "padding": padding,
                    "n_prompts": len(texts),
                    "batch": args.mix_batch,
                    "max_tokens": enc.config.max_tokens,
                    "prompts_per_s": round(len(texts) / dt, 1),
                    "wall_s": round(dt, 2),
                    "median_tokens": int(np.median(lengths)),
                    "p90_tokens": int(np.percentile(lengths, 90)),
                }
            )
            logger.info("%s", bench.length_mix[-1])


def summarize(bench: Bench, artifact: Path) -> dict[str, Any]:
    def find(impl: str, n: int, b: int | None, tok: str = "included") -> CaseResult | None:
        rows = [
            c
            for c in bench.cases
            if c.impl == impl and c.tokens == n and c.tokenization == tok and (b is None or c.batch == b)
        ]
        return max(rows, key=lambda c: c.batch) if rows else None

    # the serving path: fused Triton on a GPU, eager PyTorch on CPU (where models.fused_bert has no kernels)
    on_gpu = bench.device["gpu"] is not None
    main_impl = "triton" if on_gpu and any(c.impl == "triton" for c in bench.cases) else "eager"
    b1_128, b1_512, big_128 = find(main_impl, 128, 1), find(main_impl, 512, 1), find(main_impl, 128, None)
    speedup = None  # only meaningful on a GPU: on a CPU "triton" runs the kernels' PyTorch references
    tri, eag = find("triton", 128, None, "excluded"), None
    if tri is not None and on_gpu:
        eag = find("eager", 128, tri.batch, "excluded")
        speedup = round(tri.prompts_per_s / eag.prompts_per_s, 2) if eag else None
    macro_f1 = None
    if (artifact / "metrics.json").is_file():
        macro_f1 = json.loads((artifact / "metrics.json").read_text())["task"]["macro_f1"]
    return {
        "gpu": bench.device["gpu"],
        "impl": main_impl,
        "tokenization": "included",
        "p50_ms_128tok_batch1": b1_128.p50_ms if b1_128 else None,
        "p50_ms_512tok_batch1": b1_512.p50_ms if b1_512 else None,
        "prompts_per_s_128tok": big_128.prompts_per_s if big_128 else None,
        "prompts_per_s_128tok_batch": big_128.batch if big_128 else None,
        "triton_speedup_vs_eager": speedup,
        "macro_f1_validation": macro_f1,
    }


def plot(bench: Bench, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        bench.notes.append("matplotlib not installed: no plot")
        return
    lengths = sorted({c.tokens for c in bench.cases})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), squeeze=False)
    for ax, n in zip(axes[0], lengths, strict=True):
        for impl in sorted({c.impl for c in bench.cases}):
            for tok, style in (("included", "-"), ("excluded", "--")):
                rows = sorted(
                    (c for c in bench.cases if c.impl == impl and c.tokens == n and c.tokenization == tok),
                    key=lambda c: c.batch,
                )
                if rows:
                    ax.plot(
                        [c.batch for c in rows],
                        [c.prompts_per_s for c in rows],
                        style,
                        marker="o",
                        label=f"{impl} ({tok} tok.)",
                    )
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="prompts/s", title=f"{n} tokens")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    where = bench.device["gpu"] or f"CPU: {bench.device['cpu']} ({bench.device['torch_threads']} threads)"
    fig.suptitle(f"Prompt encoder throughput — {where}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_argument_group("sweep")
    g.add_argument("--quick", action="store_true", help="reduced sweep (default when no GPU is visible)")
    g.add_argument("--full", action="store_true", help="full sweep even on CPU (slow)")
    g.add_argument("--impls", default="triton,eager,compile,st", help="comma list: triton,eager,compile,st")
    g.add_argument("--batch-sizes", default=None, help="comma list (default depends on --quick)")
    g.add_argument("--lengths", default=None, help="comma list of tokens per prompt (default depends on --quick)")
    g = p.add_argument_group("bounds")
    g.add_argument("--max-iters", type=int, default=None, help="timed calls per case")
    g.add_argument("--max-case-s", type=float, default=None, help="seconds per case (and per single call)")
    g.add_argument("--max-total-s", type=float, default=None, help="seconds for the whole sweep")
    g.add_argument("--warmup", type=int, default=2, help="untimed calls per case")
    g = p.add_argument_group("length mix")
    g.add_argument("--data", type=Path, default=DEFAULT_PROMPTS, help="prompts file for the real length mix")
    g.add_argument("--mix-n", type=int, default=None, help="prompts sampled from the file")
    g.add_argument("--mix-batch", type=int, default=64, help="batch size for the length-mix runs")
    g.add_argument("--mix-max-tokens", type=int, default=256, help="token budget for the length-mix runs")
    g = p.add_argument_group("runtime and output")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="encoder device")
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"], help="weights")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument(
        "--artifact",
        type=Path,
        default=REPO_ROOT / "models" / "artifacts" / "classifier",
        help="classifier artifact whose metrics.json gives macro_f1_validation",
    )
    g.add_argument("--out", type=Path, default=RESULTS / "classifier.json", help="JSON output (PNG next to it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick or (not args.full and not torch.cuda.is_available())
    args.batch_sizes = _ints(args.batch_sizes or ("1,8,64" if quick else "1,2,4,8,16,32,64,128,256,512,1024"))
    args.lengths = _ints(args.lengths or ("32,128,512" if quick else "32,64,128,256,512"))
    args.max_iters = args.max_iters or (10 if quick else 100)
    args.max_case_s = args.max_case_s or (3.0 if quick else 5.0)
    args.max_total_s = args.max_total_s or (300.0 if quick else 420.0)
    args.mix_n = args.mix_n or (512 if quick else 4096)
    max_tokens = max(args.lengths)
    bench = Bench(
        device=device_info(),
        sweep={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("out", "artifact")}
        | {"quick": quick},
    )
    impls = build_impls(args, max_tokens, bench)
    ref = next((e for e in impls.values() if isinstance(e, SentenceEncoder)), None)
    if ref is None:
        raise SystemExit("no SentenceEncoder path to benchmark; include eager in --impls")
    run_sweep(args, bench, impls, ref)
    run_length_mix(args, bench, impls)
    out = {"summary": summarize(bench, args.artifact), **asdict(bench)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    plot(bench, args.out.with_suffix(".png"))
    print(json.dumps(out["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
