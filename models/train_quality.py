"""`triage train-quality`: learn per-model answer quality from an outcomes file and write the artifact.

The scorer (`--spec`, default `SHIPPED_SPEC`: the approach models/quality_experiment.py chose by inner
cross-validation, with benchmark-balanced weights for traffic no benchmark covers, see SHIPPED_SPEC; the table
is models/artifacts/quality/experiment.json) is fitted on the training part of a
seeded prompt_id split (`--heldout-frac` of every benchmark held out, models/splits.py), with per-model
calibration fitted on its out-of-fold predictions over `--folds` inner folds (`--calibration auto` picks the map
by the inner criterion on cross-fitted calibrated predictions among those with ECE <= 0.05 per model,
models/quality_eval.pick_calibration), behind the abstention gate `--gate` (`SHIPPED_GATE`; its threshold is
fitted on the training part by nested ID + leave-one-benchmark-out cross-validation, models/gate_fit.py). The
held-out prompts are then scored once: in
distribution, and leave-one-benchmark-out (each benchmark's held-out prompts routed by a scorer fitted and
calibrated (and gated) on the other benchmarks' training part only), see models/quality_eval.py. Writes
  <out>/quality.safetensors   the scorer's arrays
  <out>/meta.json             scorer config, calibration maps, gate, split, held-out metrics incl. ECE per
                              model, reliability bins, the command
  <out>/reliability.png       reliability diagram per model on the held-out prompts (if matplotlib is installed)
The artifact is the model fitted on the training part, so `triage eval-routing --split heldout` reproduces the
held-out ID numbers. This script knows nothing about serving.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from models.calibration import Method, reliability
from models.encoder import EncoderConfig
from models.gate import GateConfig
from models.gate_fit import GateRule, GateTuner
from models.quality import DEFAULT_QUALITY_ARTIFACT, QualityPredictor
from models.quality_cv import Fitter
from models.quality_eval import add_split_arguments, heldout_eval, inner_scores, pick_calibration, prepare
from models.scorers import spec_name

logger = logging.getLogger(__name__)

# The kNN setting with benchmark-balanced row weights, one step from the inner-criterion best of
# models/quality_experiment.py (experiment.json "chosen": k=100, local=0.25, rows unweighted; inner criterion
# +1.66 vs +1.59 here, held-out ID/LOBO +4.50/+0.69 vs +4.46/+0.67), chosen on purpose: prompts unlike every
# benchmark (chat, writing) follow their same-format neighbours, and unweighted those are GSM8K's by its size
# alone, so open-ended chat went 50-80% to MetaMath, a maths model; with every benchmark weighing the same it
# goes to dolphin-2.9-llama3-8b, the best single model overall and on both generated benchmarks
# (models/artifacts/quality/extrapolation.json, `python -m models.quality_extrapolation`). Ungated: with the
# answer format in its input no gate raised the inner criterion.
SHIPPED_SPEC: dict[str, Any] = {"kind": "knn", "k": 400, "local": 0.5, "group_power": 1.0}
# {"signal": "none"} = no gate; else a models/gate.GATE_SIGNALS key and "hard" | "soft" (threshold: fitted)
SHIPPED_GATE: dict[str, Any] = {"signal": "none"}
# Chosen by the same experiment's stage 0 (experiment.json "answer_format"): the weight of the answer format in
# the scorer's input (models/answer_format.py) with the best inner criterion of the kNN settings.
SHIPPED_ANSWER_FORMAT_WEIGHT = 2.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="triage train-quality", description=__doc__.splitlines()[0])
    add_split_arguments(p)
    g = p.add_argument_group("encoder")
    g.add_argument("--max-tokens", type=int, default=256, help="token budget per prompt incl. [CLS]/[SEP]")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="encoder device")
    g.add_argument("--encoder-model", default="", help="local BERT dir or hub id ('' = bundled MiniLM)")
    g.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    g = p.add_argument_group("model")
    g.add_argument("--spec", default=json.dumps(SHIPPED_SPEC), help="scorer spec as JSON (models/scorers)")
    g.add_argument(
        "--answer-format-weight",
        type=float,
        default=SHIPPED_ANSWER_FORMAT_WEIGHT,
        help="weight of the answer format (options vs generated, models/answer_format.py) in the scorer's input; "
        "0 = embedding alone; the default is the quality experiment's choice by inner cross-validation",
    )
    g.add_argument(
        "--calibration",
        default="auto",
        choices=["auto", "none", "platt", "isotonic"],
        help="per-model calibration map; auto = best inner criterion among maps with cross-fitted ECE <= 0.05",
    )
    g.add_argument(
        "--gate",
        default=json.dumps(SHIPPED_GATE),
        help='abstention gate as JSON: {"signal": "none"} or {"signal": "purity", "mode": "hard"} (models/gate.py); '
        "the threshold is fitted by nested cross-validation on the training part",
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=DEFAULT_QUALITY_ARTIFACT, help="artifact directory")
    return p


def plot_reliability(
    probs: np.ndarray, scores: np.ndarray, models: list[str], ece: dict[str, float], path: Path
) -> None:
    """One reliability curve per model (predicted probability vs mean outcome, 10 bins) into a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed; skipping %s (pip install matplotlib)", path)
        return
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for j, m in enumerate(models):
        r = reliability(probs[:, j], scores[:, j])
        ax.plot(
            r["mean_pred"], r["mean_outcome"], marker="o", markersize=3, label=f"{m.split('/')[-1]} (ECE {ece[m]:.3f})"
        )
    ax.set(xlabel="predicted P(good answer)", ylabel="observed mean score", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Quality predictor on held-out prompts (10 equal-width bins)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    spec: dict[str, Any] = json.loads(args.spec)
    enc = EncoderConfig(model=args.encoder_model, max_tokens=args.max_tokens, device=args.device)
    split = prepare(
        args.outcomes, enc, args.cache_dir, args.heldout_frac, args.seed, args.folds, args.answer_format_weight
    )
    from tqdm import tqdm

    with tqdm(desc="fits", unit="fit") as bar:
        fitter = Fitter(split.data, on_fit=lambda: bar.update(1))
        gate_arg: dict[str, Any] = json.loads(args.gate)
        rule = None
        if gate_arg.get("signal", "none") != "none":
            rule = GateRule(GateTuner(fitter, spec, split.folds), gate_arg["signal"], gate_arg.get("mode", "hard"))
        calibration_table: dict[str, dict[str, float]] = {}
        method = cast(Method, args.calibration)
        if args.calibration == "auto":
            method, calibration_table = pick_calibration(split, inner_scores(fitter, spec, split, rule))
        held = heldout_eval(fitter, spec, method, split, rule)
        reports, id_probs = held.reports, held.id_probs
        scorer, cal = fitter.fit_calibrated(spec, split.train, split.folds, method)  # cached: the ID model
        gate, gate_fit = (GateConfig(), {}) if rule is None else rule.fit(split.train)  # OOF cached: cheap
    models, ho = split.table.models, split.heldout
    ho_scores = split.data.scores[ho]  # [n_heldout, M]
    for kind in ("id", "lobo"):
        a = reports[kind]["average"]["benchmark_macro"]
        print(
            f"held-out {kind:>4} (benchmark macro): routed {a['routed']:.4f}  best single "
            f"{a['best_single']['accuracy']:.4f} ({a['best_single']['model']})  random {a['random']:.4f}  "
            f"oracle {a['oracle']:.4f}  gain {a['routed_minus_best_single'] * 100:+.2f} pts"
        )
    ece = reports["id"]["calibration"]["ece"]
    print("held-out ECE per model: " + ", ".join(f"{m.split('/')[-1]} {e:.3f}" for m, e in ece.items()))
    meta = {
        "command": "triage train-quality " + shlex.join(sys.argv[1:] if argv is None else argv),
        "encoder_id": enc.encoder_id,
        "encoder_model": enc.model,
        "max_tokens": enc.max_tokens,
        "split": split.describe(),
        "spec_name": spec_name(spec),
        "inputs": {
            "answer_format_weight": args.answer_format_weight,
            "answer_format": "models/answer_format.py offers_choices: >= 2 lettered option lines or an Answer: slot",
        },
        "calibration_choice": {"method": method, "inner_cross_fitted": calibration_table},
        "gate": {"fit": "nested ID + LOBO criterion on the training part (models/gate_fit.py)", "nested": gate_fit},
        "metrics_heldout": reports,
        "reliability_heldout": {m: reliability(id_probs[:, j], ho_scores[:, j]) for j, m in enumerate(models)},
        "data": {"outcomes_sha256": split.table.sha256, "n_prompts": len(split.table)},
        "training": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    predictor = QualityPredictor(scorer, cal, models, fitter.overall(split.train), meta, gate)
    predictor.save(args.out)
    plot_reliability(id_probs, ho_scores, models, ece, args.out / "reliability.png")
    size = sum(f.stat().st_size for f in args.out.iterdir() if f.name in ("quality.safetensors", "meta.json"))
    print(f"wrote {args.out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
