"""`triage eval-routing`: how much accuracy does routing by the quality predictor buy?

Reads an outcomes file (prompt_id, prompt, model, score, benchmark), embeds its prompts (cached) and reads their
answer format (models/answer_format.py; used when the predictor was trained with it), routes each
prompt to the model with the highest predicted quality (ties -> the model with the better training average)
and prints one JSON object: per benchmark and on average (prompt-weighted and benchmark-macro) the routed
accuracy, every single model, the best single model, random routing (expected accuracy of a uniform pick) and
the oracle (best model per prompt), plus the expected calibration error of each model's predicted probability
and the predictor's abstention gate with the share of prompts it fell back on (per benchmark).
`--split heldout` applies the predictor's own seeded prompt_id split (models/splits.py) so only prompts the
predictor never trained on are scored. This module knows nothing about how the predictor was trained.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.answer_format import choice_flags
from models.calibration import ece_per_column
from models.data import DEFAULT_OUTCOMES, load_outcomes
from models.embed_cache import DEFAULT_CACHE_DIR, embed_cached
from models.encoder import EncoderConfig
from models.errors import DataError
from models.quality import DEFAULT_QUALITY_ARTIFACT, QualityPredictor, route_indices
from models.splits import heldout_mask


def _summary(scores: np.ndarray, chosen: np.ndarray, models: Sequence[str]) -> dict[str, Any]:
    """scores [P, M] in [0, 1]; chosen [P] model index -> accuracies on these prompts."""
    single = scores.mean(axis=0)  # [M]
    best = int(single.argmax())
    routed = float(scores[np.arange(len(scores)), chosen].mean())
    return {
        "n": len(scores),
        "routed": round(routed, 4),
        "single": {m: round(float(s), 4) for m, s in zip(models, single, strict=True)},
        "best_single": {"model": models[best], "accuracy": round(float(single[best]), 4)},
        "random": round(float(scores.mean()), 4),
        "oracle": round(float(scores.max(axis=1).mean()), 4),
        "routed_minus_best_single": round(routed - float(single[best]), 4),
        "route_share": {m: round(float((chosen == j).mean()), 4) for j, m in enumerate(models)},
    }


def routing_report(
    scores: np.ndarray, chosen: np.ndarray, benchmarks: Sequence[str], models: Sequence[str]
) -> dict[str, Any]:
    """Per-benchmark and average routing accuracy. scores [P, M]; chosen [P] int; benchmarks [P]."""
    if len(scores) == 0:
        raise DataError("No prompts to evaluate; check the outcomes file and --split.")
    bench = np.asarray(benchmarks)
    names = sorted(set(bench.tolist()))
    per = {b: _summary(scores[bench == b], chosen[bench == b], models) for b in names}
    # benchmark-macro: each benchmark counts once; best single = best macro-mean model
    macro_single = np.mean([[per[b]["single"][m] for m in models] for b in names], axis=0)  # [M]
    best = int(macro_single.argmax())
    macro_routed = float(np.mean([per[b]["routed"] for b in names]))
    macro = {
        "routed": round(macro_routed, 4),
        "single": {m: round(float(s), 4) for m, s in zip(models, macro_single, strict=True)},
        "best_single": {"model": models[best], "accuracy": round(float(macro_single[best]), 4)},
        "random": round(float(np.mean([per[b]["random"] for b in names])), 4),
        "oracle": round(float(np.mean([per[b]["oracle"] for b in names])), 4),
        "routed_minus_best_single": round(macro_routed - float(macro_single[best]), 4),
    }
    return {
        "per_benchmark": per,
        "average": {"prompt_weighted": _summary(scores, chosen, models), "benchmark_macro": macro},
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="triage eval-routing", description=__doc__.splitlines()[0])
    g = p.add_argument_group("inputs")
    g.add_argument("--outcomes", type=Path, default=DEFAULT_OUTCOMES, help="outcomes file (.jsonl[.gz])")
    g.add_argument("--predictor", type=Path, default=DEFAULT_QUALITY_ARTIFACT, help="quality artifact directory")
    g.add_argument(
        "--split",
        choices=["heldout", "all"],
        default="heldout",
        help="heldout: only prompts the predictor's split kept out of training; all: every prompt",
    )
    g = p.add_argument_group("runtime")
    g.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="embedding cache directory")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="encoder device")
    g.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    g.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    predictor = QualityPredictor.load(args.predictor)
    ot = load_outcomes(args.outcomes)
    missing = [m for m in predictor.models if m not in ot.models]
    if missing:
        raise DataError(
            f"{args.outcomes} has no scores for predictor models {missing}; "
            "evaluate on a file with the same models or retrain the predictor."
        )
    cols = [ot.models.index(m) for m in predictor.models]
    scores = ot.scores[:, cols]  # [P, M] in predictor order
    mask = np.ones(len(ot), dtype=bool)
    if args.split == "heldout":
        split = predictor.meta["split"]
        mask = heldout_mask(ot.prompt_ids, ot.benchmarks, split["heldout_frac"], split["seed"])
    enc_cfg = EncoderConfig(
        model=predictor.meta.get("encoder_model", ""),
        max_tokens=int(predictor.meta["max_tokens"]),
        device=args.device,
    )
    emb = embed_cached(ot.texts, enc_cfg, ot.cache_id, args.cache_dir)[mask]
    choices = choice_flags([t for t, k in zip(ot.texts, mask, strict=True) if k])  # [P] answer format
    probs, confidence = predictor.predict_with_confidence(emb, choices)  # [P, M] calibrated and gated, [P]
    chosen = route_indices(probs, predictor.overall)
    ece = ece_per_column(probs, scores[mask])
    bench = np.asarray(ot.benchmarks)[mask]
    closed = confidence < 0.5  # [P] the prior outweighs the scorer
    report = {
        "outcomes": str(args.outcomes),
        "outcomes_sha256": ot.sha256,
        "predictor": str(args.predictor),
        "split": args.split,
        "models": predictor.models,
        **routing_report(
            scores[mask], chosen, [b for b, k in zip(ot.benchmarks, mask, strict=True) if k], predictor.models
        ),
        "calibration": {"ece": {m: round(e, 4) for m, e in zip(predictor.models, ece, strict=True)}},
        "gate": {
            **predictor.gate.to_json(),
            "closed_share": round(float(closed.mean()), 4),
            "shrunk_share": round(float((confidence < 1).mean()), 4),  # soft gates: any pull toward the prior
            "mean_confidence": round(float(confidence.mean()), 4),
            "closed_share_per_benchmark": {b: round(float(closed[bench == b].mean()), 4) for b in sorted(set(bench))},
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
