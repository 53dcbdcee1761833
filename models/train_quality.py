"""`triage train-quality`: learn per-model answer quality from an outcomes file and write the artifact.

Split: a seeded hash of prompt_id holds out `--heldout-frac` of every benchmark (models/splits.py). The
held-out prompts are never used for fitting or for choosing anything. Inside the training part a second
seeded split (`--inner-frac`) chooses the blend weight between the quality head and the group prior; then
both heads are refit on the whole training part. The artifact (models/artifacts/quality/) therefore never saw
the held-out prompts, and `triage eval-routing --split heldout` re-derives the same split from meta.json.
This script knows nothing about serving.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.data import DEFAULT_OUTCOMES, OutcomeTable, load_outcomes
from models.embed_cache import DEFAULT_CACHE_DIR, embed_cached
from models.encoder import EncoderConfig
from models.eval_routing import routing_report
from models.fit import FitConfig, fit_head
from models.heads import HeadConfig, MLPHead
from models.quality import DEFAULT_QUALITY_ARTIFACT, QualityPredictor
from models.splits import heldout_mask

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="triage train-quality", description=__doc__.splitlines()[0])
    g = p.add_argument_group("data and split")
    g.add_argument("--outcomes", type=Path, default=DEFAULT_OUTCOMES, help="outcomes file (.jsonl[.gz])")
    g.add_argument("--heldout-frac", type=float, default=0.2, help="share of each benchmark held out")
    g.add_argument(
        "--inner-frac",
        type=float,
        default=0.25,
        help="share of the training part used to choose the blend weight",
    )
    g.add_argument("--seed", type=int, default=0, help="split hash seed, init and shuffling")
    g.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="embedding cache directory")
    g = p.add_argument_group("encoder")
    g.add_argument("--max-tokens", type=int, default=256, help="token budget per prompt incl. [CLS]/[SEP]")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="encoder device")
    g.add_argument("--encoder-model", default="", help="local BERT dir or hub id ('' = bundled MiniLM)")
    g.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=int, default=256, help="quality head hidden width (0 = logistic)")
    g.add_argument("--epochs", type=int, default=20, help="training epochs per head")
    g.add_argument(
        "--prior-weights",
        default="0,0.25,0.5,0.75,1",
        help="blend weights tried on the inner split (0 = head only, 1 = group prior only)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=DEFAULT_QUALITY_ARTIFACT, help="artifact directory")
    return p


def fit_predictor(
    emb: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    group_names: list[str],
    models: list[str],
    args: argparse.Namespace,
    prior_weight: float = 0.5,
) -> QualityPredictor:
    """emb [N, D], scores [N, M], groups [N] int -> predictor fitted on these rows only."""
    fit_cfg = FitConfig(epochs=args.epochs, seed=args.seed)
    head = MLPHead(HeadConfig.from_name("quality", in_dim=emb.shape[1], out_dim=len(models), hidden=args.hidden))
    fit_head(head, emb, scores, "bce", fit_cfg)
    group_head = MLPHead(HeadConfig(in_dim=emb.shape[1], out_dim=len(group_names), hidden=0, dropout=0.0))
    fit_head(group_head, emb, groups, "ce", fit_cfg)
    prior = np.stack(
        [
            scores[groups == g].mean(axis=0) if (groups == g).any() else scores.mean(axis=0)
            for g in range(len(group_names))
        ]
    )  # [G, M]
    return QualityPredictor(head, group_head, prior, models, group_names, prior_weight, meta={})


def choose_prior_weight(
    ot: OutcomeTable,
    emb: np.ndarray,
    train: np.ndarray,
    groups: np.ndarray,
    group_names: list[str],
    args: argparse.Namespace,
) -> tuple[float, dict[str, float]]:
    """Pick the blend weight with the best routed accuracy on an inner split of the training rows."""
    tr_idx = np.where(train)[0]
    inner = heldout_mask(
        [ot.prompt_ids[i] for i in tr_idx], [ot.benchmarks[i] for i in tr_idx], args.inner_frac, args.seed + 1
    )
    fit_i, val_i = tr_idx[~inner], tr_idx[inner]
    pred = fit_predictor(emb[fit_i], ot.scores[fit_i], groups[fit_i], group_names, ot.models, args)
    bench = [ot.benchmarks[i] for i in val_i]
    results = {}
    for w in (float(x) for x in args.prior_weights.split(",")):
        chosen = pred.predict(emb[val_i], prior_weight=w).argmax(axis=1)
        results[f"{w:g}"] = routing_report(ot.scores[val_i], chosen, bench, ot.models)["average"]["prompt_weighted"][
            "routed"
        ]
    best = max(results, key=lambda k: (results[k], -float(k)))
    return float(best), results


def calibration(probs: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Brier score and mean log-loss of predicted probabilities against (soft) scores."""
    p = np.clip(probs, 1e-6, 1 - 1e-6)
    bce = -(scores * np.log(p) + (1 - scores) * np.log(1 - p))
    return {
        "brier": round(float(((probs - scores) ** 2).mean()), 4),
        "bce": round(float(bce.mean()), 4),
        "brier_predict_train_mean": None,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ot = load_outcomes(args.outcomes)
    enc_cfg = EncoderConfig(model=args.encoder_model, max_tokens=args.max_tokens, device=args.device)
    emb = embed_cached(ot.texts, enc_cfg, ot.cache_id, args.cache_dir)  # [P, 384]
    group_names = sorted(set(ot.benchmarks))
    groups = np.array([group_names.index(b) for b in ot.benchmarks])
    ho = heldout_mask(ot.prompt_ids, ot.benchmarks, args.heldout_frac, args.seed)
    w, inner = choose_prior_weight(ot, emb, ~ho, groups, group_names, args)
    print(f"inner-split routed accuracy by prior weight: {inner} -> prior_weight={w:g}")
    pred = fit_predictor(emb[~ho], ot.scores[~ho], groups[~ho], group_names, ot.models, args, w)
    probs = pred.predict(emb[ho])
    report = routing_report(
        ot.scores[ho],
        probs.argmax(axis=1),
        [b for b, h in zip(ot.benchmarks, ho, strict=True) if h],
        ot.models,
    )
    cal = calibration(probs, ot.scores[ho])
    cal["brier_predict_train_mean"] = round(float(((ot.scores[~ho].mean(axis=0) - ot.scores[ho]) ** 2).mean()), 4)
    avg = report["average"]
    for kind in ("prompt_weighted", "benchmark_macro"):
        a = avg[kind]
        print(
            f"held-out {kind:>15}: routed {a['routed']:.4f}  best single {a['best_single']['accuracy']:.4f} "
            f"({a['best_single']['model']})  random {a['random']:.4f}  oracle {a['oracle']:.4f}  "
            f"gain {a['routed_minus_best_single'] * 100:+.2f} pts"
        )
    pred.meta = {
        "encoder_id": enc_cfg.encoder_id,
        "encoder_model": enc_cfg.model,
        "max_tokens": enc_cfg.max_tokens,
        "split": {
            "method": "seeded sha256 of prompt_id, stratified by benchmark",
            "seed": args.seed,
            "heldout_frac": args.heldout_frac,
            "n_train": int((~ho).sum()),
            "n_heldout": int(ho.sum()),
        },
        "inner_split": {"frac": args.inner_frac, "seed": args.seed + 1, "routed_by_prior_weight": inner},
        "metrics_heldout": {
            "calibration": cal,
            "average": avg,
            "per_benchmark_routed": {b: r["routed"] for b, r in report["per_benchmark"].items()},
        },
        "data": {"outcomes_sha256": ot.sha256, "n_prompts": len(ot)},
        "training": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    pred.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
