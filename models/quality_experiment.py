"""The quality-predictor experiment: which scorer should `triage train-quality` ship? One protocol, every approach.

Approaches (models/scorers): the benchmark-average floor (`constant`), the benchmark-classifier prior
(`group_prior`), k-nearest neighbours (`knn`), per-model MLP heads (`mlp`), RouteLLM-style matrix factorisation
(`mf`), a RouterDC-like contrastive router (`contrastive`), uniform ensembles of the best of each, the
predictor shipped before issue 13 (`v1`: MLP head + benchmark prior, half each), and the best kNN behind an
abstention gate (`knn+gate(signal,mode)`, models/gate.py: where a confidence signal of the prompt is below a
threshold, answer with the prior, i.e. route like the best single model; signals max_sim, mean_sim, purity,
margin; hard or soft). Not gated: the ensembles with the benchmark prior, whose nested gate tuning would refit
the prior's classifier ~200 times (~2 min each here). Not tried: fine-tuning the
MiniLM encoder (an epoch over the classifier's prompts was measured at ~25 min on the 2-core CPU box, and a
fine-tuned encoder would have to replace the served one for category, complexity and quality together); every
approach here reads the frozen embedding the classifier already computes, so serving stays one encoder pass
per prompt.

Protocol (models/quality_eval.py): the held-out part (20% of every benchmark by a seeded prompt_id hash) is
never used to fit, calibrate or choose anything. Stage 0 picks the weight of the answer format (options vs
generated answer, models/answer_format.py) in every scorer's input: the weight whose best kNN setting has the
best inner criterion (below), all on the training part. Stage 1 scores every candidate setting on the training part
only: out-of-fold routing gain over the best single model in distribution (5 folds) and leave-one-benchmark-
out (LOBO), benchmark macro-average; criterion = their mean. The best setting of each approach is kept, the
ensembles are formed from those (their out-of-fold predictions are averages of the members'). A gated variant's
threshold is never chosen here: it is fitted inside every fitting set by nested cross-validation (models/
gate_fit.py: ID folds and leave-one-benchmark-out among that set's benchmarks only), so each inner fold's gate
was tuned without that fold, and each held-out LOBO gate without the held-out benchmark. Each approach gets the
calibration map (none / Platt per model / one shared Platt / isotonic per model) with the best criterion on
cross-fitted calibrated predictions, among the maps with cross-fitted ECE <= 0.05 for every model (ties: lower
mean ECE), because the policy routes on calibrated probabilities; the approach with the best such criterion is
the one to ship. Stage 2 reports each kept approach once on the held-out prompts: ID (fitted on the training
part) and LOBO (fitted on the other benchmarks' training part only), with calibration and gate fitted inside
every training set. Bounds (models/gate_bounds.py), to read and not to choose by: the oracle gate (closes on
exactly the unseen benchmark) and a hindsight per-benchmark gate, on the ungated kNN's predictions. Output:
one JSON (models/artifacts/quality/experiment.json).

Run (~10-17 min on the shared 2-core box, embeddings cached):
`PYTHONPATH=. nice -n 10 python -m models.quality_experiment --outcomes ../shared/data/outcomes_routerdc_train.jsonl.gz`
This script knows nothing about serving; it writes no artifact.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.calibration import Method
from models.data import REPO_ROOT
from models.encoder import EncoderConfig
from models.gate import GATE_SIGNALS, Mode
from models.gate_bounds import gate_bounds
from models.gate_fit import GateRule, GateTuner
from models.quality_cv import Fitter, bootstrap_macro_mean
from models.quality_eval import (
    HeldOut,
    InnerResult,
    OutcomeSplit,
    add_split_arguments,
    benchmark_references,
    heldout_eval,
    inner_scores,
    pick_calibration,
    prepare,
    routed_inner,
    score_oof,
    with_answer_format,
)
from models.scorers import spec_name

logger = logging.getLogger(__name__)
DEFAULT_OUT = REPO_ROOT / "models" / "artifacts" / "quality" / "experiment.json"

# Candidate settings per approach (stage 1). group_power 0 = every prompt weighs the same; 1 = every
# benchmark does. knn `local` mixes each neighbour's own scores with its benchmark's mean scores.
CANDIDATES: tuple[dict[str, Any], ...] = (
    {"kind": "constant"},
    {"kind": "group_prior", "epochs": 20},
    {"kind": "group_prior", "epochs": 60},
    {"kind": "group_prior", "epochs": 120},
    {"kind": "knn", "k": 25, "local": 1.0, "group_power": 0.0},
    {"kind": "knn", "k": 100, "local": 1.0, "group_power": 0.0},
    {"kind": "knn", "k": 100, "local": 0.5, "group_power": 0.0},
    {"kind": "knn", "k": 100, "local": 0.25, "group_power": 0.0},
    {"kind": "knn", "k": 400, "local": 0.5, "group_power": 0.0},
    {"kind": "knn", "k": 400, "local": 0.5, "group_power": 1.0},
    {"kind": "knn", "k": 100, "local": 0.5, "group_power": 0.0, "ood_sim": 0.5, "shrink": 1.0},
    {"kind": "mlp", "hidden": 0, "epochs": 40, "group_power": 0.0},
    {"kind": "mlp", "hidden": 256, "epochs": 20, "group_power": 0.0},
    {"kind": "mlp", "hidden": 256, "epochs": 20, "group_power": 1.0},
    {"kind": "mf", "dim": 32, "group_power": 0.0},
    {"kind": "mf", "dim": 128, "group_power": 1.0},
    {"kind": "contrastive"},
    {"kind": "contrastive", "sample_loss": 0.0, "top_k": 2, "last_k": 2},
)
# The predictor shipped before issue 13: MLP quality head and benchmark prior, blended half and half.
V1: dict[str, Any] = {
    "kind": "ensemble",
    "members": [
        {"kind": "mlp", "hidden": 256, "epochs": 20, "group_power": 0.0},
        {"kind": "group_prior", "epochs": 20, "group_power": 0.0},
    ],
    "weights": [0.5, 0.5],
}
# Uniform ensembles of the best setting of each named approach.
ENSEMBLES: dict[str, tuple[str, ...]] = {
    "knn+mlp": ("knn", "mlp"),
    "knn+group_prior": ("knn", "group_prior"),
    "knn+mlp+mf": ("knn", "mlp", "mf"),
    "knn+mlp+mf+contrastive": ("knn", "mlp", "mf", "contrastive"),
    "knn+mlp+group_prior": ("knn", "mlp", "group_prior"),
}
GATE_MODES: tuple[Mode, ...] = ("hard", "soft")
# Stage 0: how much the answer format (options vs generated answer) weighs beside the embedding; 0 = not at all.
ANSWER_FORMAT_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)


def pick_answer_format_weight(
    split: OutcomeSplit, weights: list[float], specs: list[dict[str, Any]]
) -> tuple[OutcomeSplit, dict[str, Any]]:
    """Stage 0, on the training part only: the weight whose best kNN setting has the best inner criterion (kNN
    fits are cheap, so the grid costs seconds); the rest of the experiment runs on the chosen inputs."""
    table: dict[str, Any] = {}
    best: tuple[float, float] | None = None
    for w in weights:
        trial = with_answer_format(split, w)
        fitter = Fitter(trial.data)
        results = {spec_name(s): inner_scores(fitter, s, trial).to_json() for s in specs}
        top = max(r["criterion"] for r in results.values())
        table[str(w)] = {"best_criterion": top, "knn": results}
        logger.info("stage 0: answer-format weight %s -> best kNN criterion %+.4f", w, top)
        if best is None or top > best[1]:
            best = (w, top)
    if best is None:
        raise ValueError("--answer-format-weights is empty")
    chosen = best[0]
    return with_answer_format(split, chosen), {
        "what": "the answer format (models/answer_format.py: >= 2 lettered option lines or an Answer: slot) "
        "appended to the embedding as weight * one-hot before the cosine; chosen before every other stage by "
        "the best inner criterion of the kNN settings (training part only)",
        "chosen_weight": chosen,
        "grid": table,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models.quality_experiment", description=__doc__.splitlines()[0])
    add_split_arguments(p)
    g = p.add_argument_group("runtime")
    g.add_argument("--max-tokens", type=int, default=256, help="encoder token budget (must match serving)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="encoder device")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    g.add_argument("--quick", action="store_true", help="first setting of each approach only (smoke runs)")
    g.add_argument("--kinds", default="", help="comma-separated scorer kinds to try ('' = all; smoke runs)")
    g.add_argument(
        "--answer-format-weights",
        default=",".join(str(w) for w in ANSWER_FORMAT_WEIGHTS),
        help="stage 0 grid: weights of the answer format in the scorers' input (models/answer_format.py)",
    )
    g.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    return p


def compact(report: dict[str, Any]) -> dict[str, Any]:
    """A held-out report without route shares and per-benchmark single-model tables."""
    per = {
        b: {
            "n": r["n"],
            "routed": r["routed"],
            "best_single": r["best_single"],
            "random": r["random"],
            "oracle": r["oracle"],
        }
        for b, r in report["per_benchmark"].items()
    }
    return {"per_benchmark": per, "average": report["average"], "calibration": report["calibration"]}


def ensemble_inner(split: OutcomeSplit, members: list[InnerResult]) -> InnerResult:
    """Inner scores of a uniform ensemble from its members' out-of-fold predictions (same folds, same order)."""
    id_oof = np.mean([m.id_oof for m in members], axis=0)
    lobo_oof = np.mean([m.lobo_oof for m in members], axis=0)
    return score_oof(split, id_oof, members[0].id_order, lobo_oof, members[0].lobo_order)


@dataclass
class Approach:
    """One kept approach: its spec, inner scores, optional gate rule, and the calibration chosen for it."""

    spec: dict[str, Any]
    inner: InnerResult
    gate: GateRule | None = None
    method: Method = "none"
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)  # pick_calibration's table

    @property
    def criterion(self) -> float:
        """The selection criterion with the chosen calibration (what the policy routes on)."""
        return self.calibration[self.method]["criterion"] if self.calibration else self.inner.criterion


def margins(split: OutcomeSplit, approaches: dict[str, Approach], chosen: str) -> dict[str, Any]:
    """How sure the choice is: the chosen approach's inner criterion minus the runner-up's and the ungated
    kNN's, with a paired bootstrap over training prompts (the same resample for both routers)."""
    ranked = sorted(approaches, key=lambda n: -approaches[n].criterion)
    mine = routed_inner(split, approaches[chosen].inner, approaches[chosen].method)
    bench = split.benchmarks[split.train].tolist()
    out: dict[str, Any] = {}
    for other in dict.fromkeys(n for n in (ranked[1] if len(ranked) > 1 else None, "knn") if n and n != chosen):
        theirs = routed_inner(split, approaches[other].inner, approaches[other].method)
        out[f"vs {other}"] = bootstrap_macro_mean(mine - theirs, bench)
    return out


def bounds(split: OutcomeSplit, knn: Approach, held: HeldOut) -> dict[str, Any]:
    """Gate bounds (models/gate_bounds.py) for the ungated kNN: on the training part's inner LOBO predictions
    and on the held-out LOBO predictions (calibrated as shipped)."""
    tr, ho = split.train, split.heldout
    return {
        "note": "bounds to read, not settings to choose; ID is unchanged by the oracle gate (it never closes there)",
        "inner": gate_bounds(
            knn.inner.lobo_oof, knn.inner.lobo_order, split.data.scores[tr], split.benchmarks[tr].tolist()
        ),
        "heldout": gate_bounds(held.lobo_probs, held.lobo_order, split.data.scores[ho], split.benchmarks[ho].tolist()),
        "heldout_id_gain_ungated": held.reports["id"]["average"]["benchmark_macro"]["routed_minus_best_single"],
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    enc = EncoderConfig(max_tokens=args.max_tokens, device=args.device)
    split = prepare(args.outcomes, enc, args.cache_dir, args.heldout_frac, args.seed, args.folds)
    weights = [float(w) for w in args.answer_format_weights.split(",") if w.strip()]
    knn_specs = [c for c in CANDIDATES if c["kind"] == "knn"]
    split, answer_format = pick_answer_format_weight(split, weights, knn_specs)
    from tqdm import tqdm

    bar = tqdm(desc="fits", unit="fit")
    fitter = Fitter(split.data, on_fit=lambda: bar.update(1))
    candidates = list(CANDIDATES)
    if args.kinds:
        candidates = [c for c in candidates if c["kind"] in args.kinds.split(",")]
    if args.quick:
        candidates = [c for i, c in enumerate(candidates) if all(d["kind"] != c["kind"] for d in candidates[:i])]
    candidates = [{**c, "seed": args.seed} if c["kind"] not in ("constant", "knn") else c for c in candidates]

    # stage 1: every candidate on the training part only
    inner: dict[str, tuple[dict[str, Any], InnerResult]] = {}
    for spec in [*candidates, *([] if args.kinds else [V1])]:
        inner[spec_name(spec)] = (spec, inner_scores(fitter, spec, split))
        logger.info("inner %s: %s", spec_name(spec), inner[spec_name(spec)][1].to_json())
    approaches: dict[str, Approach] = {}
    for kind in dict.fromkeys(c["kind"] for c in candidates):
        spec, res = max((v for v in inner.values() if v[0].get("kind") == kind), key=lambda v: v[1].criterion)
        approaches[kind] = Approach(spec, res)
    if spec_name(V1) in inner:
        approaches["v1"] = Approach(*inner[spec_name(V1)])
    for name, kinds in ENSEMBLES.items():
        if all(k in approaches for k in kinds):
            specs = [approaches[k].spec for k in kinds]
            spec = {"kind": "ensemble", "members": specs, "weights": [1.0] * len(specs)}
            approaches[name] = Approach(spec, ensemble_inner(split, [approaches[k].inner for k in kinds]))
    if "knn" in approaches:  # the best kNN setting behind each gate; thresholds tuned nested inside every fold
        tuner = GateTuner(fitter, approaches["knn"].spec, split.folds)
        for signal in GATE_SIGNALS:
            for mode in GATE_MODES:
                rule = GateRule(tuner, signal, mode)
                res = inner_scores(fitter, tuner.spec, split, rule)
                approaches[f"knn+{rule.name}"] = Approach(tuner.spec, res, rule)
                logger.info("inner knn+%s: %s", rule.name, res.to_json())
    for a in approaches.values():
        a.method, a.calibration = pick_calibration(split, a.inner)
    chosen = max(approaches, key=lambda n: approaches[n].criterion)
    logger.info("chosen by inner criterion (calibrated): %s", chosen)

    # stage 2: held-out report of each kept approach, once
    table: dict[str, Any] = {}
    heldout: dict[str, HeldOut] = {}
    for name, a in approaches.items():
        heldout[name] = h = heldout_eval(fitter, a.spec, a.method, split, a.gate)
        table[name] = {
            "spec": a.spec,
            "gate": None if a.gate is None else {"signal": a.gate.signal, "mode": a.gate.mode, "threshold": "nested"},
            "inner": a.inner.to_json(),
            "calibration": {"method": a.method, "inner_cross_fitted": a.calibration},
            "criterion": a.criterion,
            "heldout": {k: (v if name == chosen or k == "gate" else compact(v)) for k, v in h.reports.items()},
        }
        hid, hlo = (h.reports[k]["average"]["benchmark_macro"] for k in ("id", "lobo"))
        ece_max = h.reports["id"]["calibration"]["ece_max"]
        print(
            f"{name:>26}: inner ID {a.inner.id_gain * 100:+.2f} LOBO {a.inner.lobo_gain * 100:+.2f} | criterion "
            f"{a.criterion * 100:+.2f} ({a.method}) | held-out ID {hid['routed_minus_best_single'] * 100:+.2f} "
            f"LOBO {hlo['routed_minus_best_single'] * 100:+.2f} | ECE max {ece_max:.3f}"
        )
    bar.close()
    out: dict[str, Any] = {
        "command": "python -m models.quality_experiment " + shlex.join(sys.argv[1:] if argv is None else argv),
        "protocol": __doc__.split("Protocol (models/quality_eval.py): ")[1].split("\n\nRun")[0].replace("\n", " "),
        "data": {"outcomes": str(args.outcomes), "outcomes_sha256": split.table.sha256, "n_prompts": len(split.table)},
        "split": split.describe(),
        "encoder": {"id": enc.encoder_id, "max_tokens": enc.max_tokens},
        "answer_format": answer_format,
        "references": benchmark_references(split),
        "candidates": [{"name": n, "spec": s, "inner": r.to_json()} for n, (s, r) in inner.items()],
        "approaches": table,
        "chosen": {
            "approach": chosen,
            "spec": approaches[chosen].spec,
            "by": "max inner criterion = mean of inner ID and LOBO gain, calibrated as shipped (gated if gated)",
            "criterion": {n: a.criterion for n, a in sorted(approaches.items(), key=lambda kv: -kv[1].criterion)},
        },
        "n_fits": fitter.n_fits,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out["chosen"]["margin"] = margins(split, approaches, chosen)
    if "knn" in approaches:
        out["gate_bounds"] = bounds(split, approaches["knn"], heldout["knn"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, allow_nan=False) + "\n")
    print(f"chosen: {chosen}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
