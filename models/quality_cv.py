"""Honest evaluation of quality scorers on an outcomes table: out-of-fold predictions, calibration, routing gain.

Two questions, both answered per benchmark and as the benchmark macro-average:
  - in distribution (ID): prompts of benchmarks the scorer was trained on, but not these prompts;
  - leave-one-benchmark-out (LOBO): prompts of a benchmark the scorer never saw, trained on the other
    benchmarks, as the stand-in for a new kind of traffic.
A `Fitter` owns the training rows and fits scorers on row subsets (boolean masks), remembering expensive fits
so an ensemble and its members, or a selection round and a report, never train the same thing twice.
`oof_predict` gives every row a prediction from a scorer fitted without its fold (ID, models/splits.id_folds)
or without its benchmark (LOBO). `fit_calibrated` fits a scorer plus per-model calibration learned from that
scorer's own out-of-fold predictions on the same rows, so a LOBO model's calibration never sees the held-out
benchmark either. Routing ties go to the model with the better benchmark-macro mean on the fitting rows.
This module knows nothing about files, the encoder or which scorer is shipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from models.calibration import Calibrator, Method, ece_per_column
from models.eval_routing import routing_report
from models.quality import route_indices
from models.scorers import Scorer, TrainSet, fit_scorer
from models.scorers.ensemble import EnsembleScorer

CHEAP_KINDS = frozenset({"constant", "knn"})  # refitting is faster than keeping copies of the training rows


class Fitter:
    """Fits scorers on subsets of one TrainSet; memoises fits of the expensive kinds by (spec, rows)."""

    def __init__(self, data: TrainSet, on_fit: Callable[[], None] | None = None) -> None:
        self.data, self.on_fit = data, on_fit
        self._cache: dict[tuple[str, str], Scorer] = {}
        self.n_fits = 0

    def fit(self, spec: dict[str, Any], rows: np.ndarray) -> Scorer:
        """Scorer described by `spec`, trained on data rows where the [N] bool mask `rows` is True."""
        if spec.get("kind") == "ensemble":
            members = [self.fit(m, rows) for m in spec["members"]]
            return EnsembleScorer(members, list(spec.get("weights") or [1.0] * len(members)))
        key = (json.dumps(spec, sort_keys=True), hashlib.sha1(np.packbits(rows).tobytes()).hexdigest())
        if key in self._cache:
            return self._cache[key]
        scorer = fit_scorer(spec, self.data.take(rows))
        self.n_fits += 1
        if self.on_fit is not None:
            self.on_fit()
        if spec.get("kind") not in CHEAP_KINDS:
            self._cache[key] = scorer
        return scorer

    def overall(self, rows: np.ndarray) -> np.ndarray:
        """[M] benchmark-macro mean score of each model on these rows (the routing tie-break order)."""
        return self.data.take(rows).macro_mean()

    def oof_predict(self, spec: dict[str, Any], rows: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the rows in `rows` (in order): predictions [n, M] from scorers fitted on `rows` minus the row's
        `held` label, and the matching tie-break order [n, M]. held: [N] fold ids (ID) or benchmark ids (LOBO)."""
        idx = np.flatnonzero(rows)
        probs = np.zeros((len(idx), self.data.n_models), dtype=np.float32)
        order = np.zeros_like(probs)
        for h in np.unique(held[idx]):
            out = held[idx] == h
            train = rows & (held != h)
            if not train.any():
                raise ValueError("Only one fold/benchmark present: nothing left to train on.")
            probs[out] = self.fit(spec, train).predict(self.data.emb[idx[out]])
            order[out] = self.overall(train)
        return probs, order

    def fit_calibrated(
        self, spec: dict[str, Any], rows: np.ndarray, folds: np.ndarray, method: Method
    ) -> tuple[Scorer, Calibrator]:
        """Scorer fitted on `rows`, calibrated by maps fitted on its out-of-fold predictions over `folds`."""
        if method == "none":
            cal = Calibrator.identity(self.data.n_models)
        else:
            oof, _ = self.oof_predict(spec, rows, folds)
            cal = Calibrator.fit(oof, self.data.scores[rows], method)
        return self.fit(spec, rows), cal


def routing_gain(probs: np.ndarray, scores: np.ndarray, benchmarks: Sequence[str], order: np.ndarray) -> float:
    """Benchmark-macro routed accuracy minus the best single model's; argmax routing, ties -> `order` ([M] or
    [N, M])."""
    columns = [str(j) for j in range(scores.shape[1])]
    report = routing_report(scores, route_indices(probs, order), benchmarks, columns)
    return float(report["average"]["benchmark_macro"]["routed_minus_best_single"])


def bootstrap_gain(
    scores: np.ndarray, chosen: np.ndarray, benchmarks: Sequence[str], n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Sampling spread of the benchmark-macro gain over the best single model: prompts are resampled with
    replacement within each benchmark (the best single model is re-picked in every resample).
    scores [N, M], chosen [N] -> {"mean", "ci95": [2.5%, 97.5%], "p_gain_le_0"} in accuracy units."""
    rng = np.random.default_rng(seed)
    bench = np.asarray(benchmarks)
    routed = scores[np.arange(len(scores)), chosen]  # [N]
    macro_routed = np.zeros(n_boot)
    macro_single = np.zeros((n_boot, scores.shape[1]))
    names = sorted(set(bench.tolist()))
    for b in names:
        rows = np.flatnonzero(bench == b)
        idx = rows[rng.integers(0, len(rows), size=(n_boot, len(rows)))]  # [R, n_b]
        macro_routed += routed[idx].mean(axis=1) / len(names)
        macro_single += scores[idx].mean(axis=1) / len(names)  # [R, M]
    gain = macro_routed - macro_single.max(axis=1)
    return {
        "mean": round(float(gain.mean()), 4),
        "ci95": [round(float(np.quantile(gain, 0.025)), 4), round(float(np.quantile(gain, 0.975)), 4)],
        "p_gain_le_0": round(float((gain <= 0).mean()), 4),
        "n_boot": n_boot,
    }


def bootstrap_macro_mean(
    values: np.ndarray, benchmarks: Sequence[str], n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Sampling spread of the benchmark-macro mean of per-row `values` [N] (e.g. one router's routed score
    minus another's on the same prompts: a paired difference); rows resampled within each benchmark."""
    rng = np.random.default_rng(seed)
    bench = np.asarray(benchmarks)
    names = sorted(set(bench.tolist()))
    macro = np.zeros(n_boot)
    for b in names:
        rows = np.flatnonzero(bench == b)
        macro += values[rows[rng.integers(0, len(rows), size=(n_boot, len(rows)))]].mean(axis=1) / len(names)
    point = float(np.mean([values[bench == b].mean() for b in names]))
    return {
        "mean": round(point, 4),
        "ci95": [round(float(np.quantile(macro, 0.025)), 4), round(float(np.quantile(macro, 0.975)), 4)],
        "p_le_0": round(float((macro <= 0).mean()), 4),
        "n_boot": n_boot,
    }


def heldout_report(
    probs: np.ndarray,
    scores: np.ndarray,
    benchmarks: Sequence[str],
    models: Sequence[str],
    order: np.ndarray,
    confidence: np.ndarray | None = None,
) -> dict[str, Any]:
    """Routing report (per benchmark + averages) plus per-model ECE and Brier score of the probabilities, and
    with a gate's [N] confidence, the share of prompts it closed on (fell back to the prior), per benchmark."""
    chosen = route_indices(probs, order)
    report = routing_report(scores, chosen, benchmarks, models)
    report["average"]["benchmark_macro"]["bootstrap_gain"] = bootstrap_gain(scores, chosen, benchmarks)
    ece = ece_per_column(probs, scores)
    report["calibration"] = {
        "ece": {m: round(e, 4) for m, e in zip(models, ece, strict=True)},
        "ece_max": round(max(ece), 4),
        "brier": round(float(((probs - scores) ** 2).mean()), 4),
    }
    if confidence is not None:
        closed = confidence < 0.5  # [N] soft gates: the prior outweighs the scorer
        bench = np.asarray(benchmarks)
        report["gate"] = {
            "closed_share": round(float(closed.mean()), 4),
            "mean_confidence": round(float(confidence.mean()), 4),
            "closed_share_per_benchmark": {
                b: round(float(closed[bench == b].mean()), 4) for b in sorted(set(benchmarks))
            },
        }
    return report
