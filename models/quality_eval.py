"""The protocol shared by `triage train-quality` and the quality experiment: data, split, inner scores, report.

  - `prepare`: outcomes file -> embeddings (cached) -> TrainSet over every prompt, the held-out mask (a seeded
    prompt_id hash holds out `heldout_frac` of every benchmark, models/splits.heldout_mask) and ID folds.
  - `inner_scores`: on the training part only, out-of-fold routing gain in distribution (k folds) and leave-one-
    benchmark-out (each training benchmark predicted by scorers fitted on the other benchmarks' training rows);
    the selection criterion is their mean. Held-out prompts are never touched here.
  - `heldout_eval`: the numbers to report, computed once per chosen setting. ID: fitted (and calibrated) on the
    whole training part, scored on the held-out prompts. LOBO: for each benchmark b, fitted and calibrated on
    the training part of the *other* benchmarks only, scored on b's held-out prompts; the per-benchmark
    predictions are pooled into one report (per benchmark and benchmark-macro, beside random, each single
    model and the oracle).
This module knows nothing about which scorers exist or which one ships.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import Method
from models.data import DEFAULT_OUTCOMES, OutcomeTable, load_outcomes
from models.embed_cache import DEFAULT_CACHE_DIR, embed_cached
from models.encoder import EncoderConfig
from models.quality_cv import Fitter, choose_calibration, heldout_report, routing_gain
from models.scorers import TrainSet
from models.splits import heldout_mask, id_folds


@dataclass
class OutcomeSplit:
    table: OutcomeTable
    data: TrainSet  # every prompt; fitting only ever sees rows of `train`
    heldout: np.ndarray  # [N] bool, reported once, never fitted or calibrated on
    folds: np.ndarray  # [N] ID fold per row (used on training rows)
    heldout_frac: float
    seed: int

    @property
    def train(self) -> np.ndarray:
        return ~self.heldout

    @property
    def benchmarks(self) -> np.ndarray:
        return np.asarray(self.table.benchmarks)

    def describe(self) -> dict[str, Any]:
        return {
            "method": "seeded sha256 of prompt_id, stratified by benchmark",
            "seed": self.seed,
            "heldout_frac": self.heldout_frac,
            "n_train": int(self.train.sum()),
            "n_heldout": int(self.heldout.sum()),
            "inner_folds": int(self.folds.max()) + 1,
        }


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """The data-and-split flags shared by train-quality and the experiment (same defaults = same split)."""
    g = parser.add_argument_group("data and split")
    g.add_argument("--outcomes", type=Path, default=DEFAULT_OUTCOMES, help="outcomes file (.jsonl[.gz])")
    g.add_argument("--heldout-frac", type=float, default=0.2, help="share of each benchmark held out")
    g.add_argument("--folds", type=int, default=5, help="inner folds on the training part (selection, calibration)")
    g.add_argument("--seed", type=int, default=0, help="split hash seed (inner folds use seed + 1)")
    g.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="embedding cache directory")


def prepare(
    outcomes: Path, encoder: EncoderConfig, cache_dir: Path, heldout_frac: float, seed: int, k: int
) -> OutcomeSplit:
    table = load_outcomes(outcomes)
    emb = embed_cached(table.texts, encoder, table.cache_id, cache_dir)  # [P, 384]
    names = sorted(set(table.benchmarks))
    groups = np.array([names.index(b) for b in table.benchmarks], dtype=np.int64)
    data = TrainSet(emb, table.scores, groups, names)
    heldout = heldout_mask(table.prompt_ids, table.benchmarks, heldout_frac, seed)
    folds = id_folds(table.prompt_ids, groups, k, seed + 1)
    return OutcomeSplit(table, data, heldout, folds, heldout_frac, seed)


@dataclass
class InnerResult:
    id_gain: float  # benchmark-macro routed - best single, out-of-fold on the training part
    lobo_gain: float  # the same with each benchmark predicted by scorers that never saw it
    id_oof: np.ndarray  # [n_train, M] out-of-fold predictions (for calibration choice and ensembles)
    id_order: np.ndarray  # [n_train, M] tie-break order per row
    lobo_oof: np.ndarray  # [n_train, M]
    lobo_order: np.ndarray  # [n_train, M]

    @property
    def criterion(self) -> float:
        return (self.id_gain + self.lobo_gain) / 2

    def to_json(self) -> dict[str, float]:
        return {
            "id_gain": round(self.id_gain, 4),
            "lobo_gain": round(self.lobo_gain, 4),
            "criterion": round(self.criterion, 4),
        }


def score_oof(
    split: OutcomeSplit, id_oof: np.ndarray, id_order: np.ndarray, lobo_oof: np.ndarray, lobo_order: np.ndarray
) -> InnerResult:
    """Routing gains of given out-of-fold predictions on the training part (also used for ensembles)."""
    tr = split.train
    scores, bench = split.data.scores[tr], split.benchmarks[tr].tolist()
    return InnerResult(
        routing_gain(id_oof, scores, bench, id_order),
        routing_gain(lobo_oof, scores, bench, lobo_order),
        id_oof,
        id_order,
        lobo_oof,
        lobo_order,
    )


def inner_scores(fitter: Fitter, spec: dict[str, Any], split: OutcomeSplit) -> InnerResult:
    tr = split.train
    id_oof, id_order = fitter.oof_predict(spec, tr, split.folds)
    lobo_oof, lobo_order = fitter.oof_predict(spec, tr, split.data.groups)
    return score_oof(split, id_oof, id_order, lobo_oof, lobo_order)


def benchmark_references(split: OutcomeSplit) -> dict[str, Any]:
    """What benchmark-level rules reach on the training part, as yardsticks for the learned scorers:
    - benchmark_oracle: every prompt goes to the best model of its own benchmark (needs the benchmark label;
      the ceiling of routing by benchmark alone, in distribution);
    - lobo_macro_fallback: every prompt of benchmark b goes to the model with the best macro mean over the
      *other* benchmarks (what a scorer that recognised every prompt of b as unfamiliar could do at best
      without per-prompt signal)."""
    tr = split.train
    data = split.data.take(tr)
    bench = split.benchmarks[tr].tolist()
    table = data.group_table()  # [G, M]
    oracle = table[data.groups].argmax(axis=1)
    fallback = np.zeros(len(data), dtype=np.int64)
    per_b: dict[str, str] = {}
    for g in data.present_groups():
        others = data.take(data.groups != g).macro_mean()
        fallback[data.groups == g] = int(others.argmax())
        per_b[data.group_names[g]] = split.table.models[int(others.argmax())]
    one_hot = np.eye(data.n_models, dtype=np.float32)
    order = np.zeros(data.n_models)
    oracle_gain = routing_gain(one_hot[oracle], data.scores, bench, order)
    fallback_gain = routing_gain(one_hot[fallback], data.scores, bench, order)
    return {
        "on": "training part",
        "benchmark_oracle_gain": round(oracle_gain, 4),
        "lobo_macro_fallback_gain": round(fallback_gain, 4),
        "lobo_macro_fallback_model": per_b,
    }


def pick_calibration(split: OutcomeSplit, inner: InnerResult) -> tuple[Method, dict[str, float]]:
    """Calibration method by cross-fitted ECE of the training part's out-of-fold predictions."""
    tr = split.train
    return choose_calibration(inner.id_oof, split.data.scores[tr], split.folds[tr])


def heldout_eval(
    fitter: Fitter, spec: dict[str, Any], method: Method, split: OutcomeSplit
) -> tuple[dict[str, Any], np.ndarray]:
    """({"id": report, "lobo": report} on the held-out prompts, ID probabilities [n_heldout, M]); see the module
    docstring."""
    data, tr, ho, models = split.data, split.train, split.heldout, split.table.models
    scorer, cal = fitter.fit_calibrated(spec, tr, split.folds, method)
    id_probs = cal.apply(scorer.predict(data.emb[ho]))
    id_report = heldout_report(id_probs, data.scores[ho], split.benchmarks[ho].tolist(), models, fitter.overall(tr))

    idx = np.flatnonzero(ho)
    lobo_probs = np.zeros((len(idx), data.n_models), dtype=np.float32)
    lobo_order = np.zeros_like(lobo_probs)
    for g in np.unique(data.groups[idx]):
        out = data.groups[idx] == g
        fit_rows = tr & (data.groups != g)  # the other benchmarks' training part; nothing of benchmark g
        scorer, cal = fitter.fit_calibrated(spec, fit_rows, split.folds, method)
        lobo_probs[out] = cal.apply(scorer.predict(data.emb[idx[out]]))
        lobo_order[out] = fitter.overall(fit_rows)
    lobo_report = heldout_report(lobo_probs, data.scores[ho], split.benchmarks[ho].tolist(), models, lobo_order)
    return {"id": id_report, "lobo": lobo_report}, id_probs
