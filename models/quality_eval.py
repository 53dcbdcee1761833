"""The protocol shared by `triage train-quality` and the quality experiment: data, split, inner scores, report.

  - `prepare`: outcomes file -> embeddings (cached) and answer formats -> the scorers' inputs (models/
    answer_format.quality_inputs at the given weight) -> TrainSet over every prompt, the held-out mask (a seeded
    prompt_id hash holds out `heldout_frac` of every benchmark, models/splits.heldout_mask) and ID folds.
    `with_answer_format` rebuilds the inputs at another weight (same split).
  - `inner_scores`: on the training part only, out-of-fold routing gain in distribution (k folds) and leave-one-
    benchmark-out (each training benchmark predicted by scorers fitted on the other benchmarks' training rows);
    the selection criterion is their mean. Held-out prompts are never touched here. With a gate rule
    (models/gate_fit.py) every inner fold's gate is itself tuned inside that fold's fitting rows (nested).
  - `pick_calibration`: the per-model map the policy will see, by the same criterion on calibrated predictions
    (each fold calibrated by maps fitted on the other folds' out-of-fold predictions), among the maps whose
    cross-fitted ECE is within `ECE_TARGET` for every model; ties -> lower mean ECE.
  - `heldout_eval`: the numbers to report, computed once per chosen setting. ID: fitted (and calibrated) on the
    whole training part, scored on the held-out prompts. LOBO: for each benchmark b, fitted, calibrated (and
    gated) on the training part of the *other* benchmarks only, scored on b's held-out prompts; the per-benchmark
    predictions are pooled into one report (per benchmark and benchmark-macro, beside random, each single
    model and the oracle).
This module knows nothing about which scorers exist or which one ships.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.answer_format import choice_flags, quality_inputs
from models.calibration import Calibrator, Method, ece_per_column
from models.data import DEFAULT_OUTCOMES, OutcomeTable, load_outcomes
from models.embed_cache import DEFAULT_CACHE_DIR, embed_cached
from models.encoder import EncoderConfig
from models.gate import blend
from models.gate_fit import GateRule
from models.quality import route_indices
from models.quality_cv import Fitter, heldout_report, routing_gain
from models.scorers import TrainSet
from models.splits import heldout_mask, id_folds

CALIBRATION_METHODS: tuple[Method, ...] = ("none", "platt", "shared_platt", "isotonic")
ECE_TARGET = 0.05  # issue 13: expected calibration error per model at most this


@dataclass
class OutcomeSplit:
    table: OutcomeTable
    data: TrainSet  # every prompt; fitting only ever sees rows of `train`
    heldout: np.ndarray  # [N] bool, reported once, never fitted or calibrated on
    folds: np.ndarray  # [N] ID fold per row (used on training rows)
    heldout_frac: float
    seed: int
    embedding: np.ndarray  # [N, 384] the encoder's unit embeddings
    choices: np.ndarray  # [N] bool: the prompt offers answer options (models/answer_format.py)
    answer_format_weight: float = 0.0  # data.emb = quality_inputs(embedding, choices, this weight)

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
            "answer_format_weight": self.answer_format_weight,
            "choice_share_per_benchmark": {
                b: round(float(self.choices[self.benchmarks == b].mean()), 4) for b in sorted(set(self.benchmarks))
            },
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
    outcomes: Path,
    encoder: EncoderConfig,
    cache_dir: Path,
    heldout_frac: float,
    seed: int,
    k: int,
    answer_format_weight: float = 0.0,
) -> OutcomeSplit:
    table = load_outcomes(outcomes)
    emb = embed_cached(table.texts, encoder, table.cache_id, cache_dir)  # [P, 384]
    choices = choice_flags(table.texts)  # [P]
    names = sorted(set(table.benchmarks))
    groups = np.array([names.index(b) for b in table.benchmarks], dtype=np.int64)
    data = TrainSet(quality_inputs(emb, choices, answer_format_weight), table.scores, groups, names)
    heldout = heldout_mask(table.prompt_ids, table.benchmarks, heldout_frac, seed)
    folds = id_folds(table.prompt_ids, groups, k, seed + 1)
    return OutcomeSplit(table, data, heldout, folds, heldout_frac, seed, emb, choices, answer_format_weight)


def with_answer_format(split: OutcomeSplit, weight: float) -> OutcomeSplit:
    """The same prompts, split and folds with the scorers' inputs built at another answer-format weight."""
    d = split.data
    data = TrainSet(quality_inputs(split.embedding, split.choices, weight), d.scores, d.groups, d.group_names)
    return replace(split, data=data, answer_format_weight=weight)


@dataclass
class InnerResult:
    id_gain: float  # benchmark-macro routed - best single, out-of-fold on the training part
    lobo_gain: float  # the same with each benchmark predicted by scorers that never saw it
    id_oof: np.ndarray  # [n_train, M] out-of-fold scorer output, before any gate (for calibration, ensembles)
    id_order: np.ndarray  # [n_train, M] tie-break order per row = the prior a closed gate answers with
    lobo_oof: np.ndarray  # [n_train, M]
    lobo_order: np.ndarray  # [n_train, M]
    id_conf: np.ndarray | None = None  # [n_train] gate confidence per row (None: no gate)
    lobo_conf: np.ndarray | None = None

    @property
    def criterion(self) -> float:
        return (self.id_gain + self.lobo_gain) / 2

    def gated(self, kind: str, probs: np.ndarray | None = None) -> np.ndarray:
        """[n_train, M] `probs` (default: the raw out-of-fold output) of kind "id"/"lobo" after the gate."""
        raw, order, conf = (
            (self.id_oof, self.id_order, self.id_conf)
            if kind == "id"
            else (self.lobo_oof, self.lobo_order, self.lobo_conf)
        )
        probs = raw if probs is None else probs
        return probs if conf is None else blend(probs, conf, order)

    def to_json(self) -> dict[str, float]:
        out = {
            "id_gain": round(self.id_gain, 4),
            "lobo_gain": round(self.lobo_gain, 4),
            "criterion": round(self.criterion, 4),
        }
        for kind, conf in (("id", self.id_conf), ("lobo", self.lobo_conf)):
            if conf is not None:
                out[f"{kind}_closed_share"] = round(float((conf < 0.5).mean()), 4)
        return out


def score_oof(
    split: OutcomeSplit,
    id_oof: np.ndarray,
    id_order: np.ndarray,
    lobo_oof: np.ndarray,
    lobo_order: np.ndarray,
    id_conf: np.ndarray | None = None,
    lobo_conf: np.ndarray | None = None,
) -> InnerResult:
    """Routing gains of given out-of-fold predictions (and gate confidences) on the training part."""
    tr = split.train
    scores, bench = split.data.scores[tr], split.benchmarks[tr].tolist()
    res = InnerResult(0.0, 0.0, id_oof, id_order, lobo_oof, lobo_order, id_conf, lobo_conf)
    res.id_gain = routing_gain(res.gated("id"), scores, bench, id_order)
    res.lobo_gain = routing_gain(res.gated("lobo"), scores, bench, lobo_order)
    return res


def inner_scores(
    fitter: Fitter, spec: dict[str, Any], split: OutcomeSplit, gate: GateRule | None = None
) -> InnerResult:
    tr = split.train
    id_oof, id_order = fitter.oof_predict(spec, tr, split.folds)
    lobo_oof, lobo_order = fitter.oof_predict(spec, tr, split.data.groups)
    if gate is None:
        return score_oof(split, id_oof, id_order, lobo_oof, lobo_order)
    return score_oof(
        split,
        id_oof,
        id_order,
        lobo_oof,
        lobo_order,
        nested_confidence(gate, split, "id"),
        nested_confidence(gate, split, "lobo"),
    )


def nested_confidence(gate: GateRule, split: OutcomeSplit, kind: str) -> np.ndarray:
    """[n_train] gate confidence of every training row, out of fold: the row is predicted by a scorer fitted
    without its fold (kind "id") or benchmark ("lobo"), gated by a threshold tuned inside those fitting rows."""
    tr = split.train
    held = split.folds if kind == "id" else split.data.groups
    idx = np.flatnonzero(tr)
    conf = np.ones(len(idx), dtype=np.float32)
    for h in np.unique(held[idx]):
        out = held[idx] == h
        rows = tr & (held != h)
        cfg, _ = gate.fit(rows)
        o = gate.tuner.predict(rows, idx[out])
        conf[out] = cfg.confidence(o.raw, o.signals, o.prior)
    return conf


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


def cross_fit(
    fit_on: np.ndarray, apply_to: np.ndarray, scores: np.ndarray, held: np.ndarray, method: Method
) -> np.ndarray:
    """[n, M]: the rows of each `held` label in `apply_to`, calibrated by `method` fitted on the other labels'
    rows of `fit_on` (out-of-fold predictions) against `scores`; no row calibrates itself."""
    out = np.zeros_like(apply_to)
    for h in np.unique(held):
        rows = held == h
        out[rows] = Calibrator.fit(fit_on[~rows], scores[~rows], method).apply(apply_to[rows])
    return out


def pick_calibration(split: OutcomeSplit, inner: InnerResult) -> tuple[Method, dict[str, dict[str, float]]]:
    """The calibration map to ship with a scorer (see the module docstring) and the table it was chosen from:
    per method, cross-fitted ECE (mean and max over models) and the inner gains of calibrated, gated routing.
    ID rows are calibrated by maps fitted on the other ID folds, LOBO rows of benchmark b by maps fitted on the
    other benchmarks' ID out-of-fold predictions (as a LOBO model's calibration is)."""
    tr = split.train
    scores = split.data.scores[tr]
    table: dict[str, dict[str, float]] = {}
    for method in CALIBRATION_METHODS:
        id_cal = cross_fit(inner.id_oof, inner.id_oof, scores, split.folds[tr], method)
        lobo_cal = cross_fit(inner.id_oof, inner.lobo_oof, scores, split.data.groups[tr], method)
        ece = ece_per_column(id_cal, scores)
        gains = score_oof(split, id_cal, inner.id_order, lobo_cal, inner.lobo_order, inner.id_conf, inner.lobo_conf)
        table[method] = {"mean_ece": round(float(np.mean(ece)), 4), "max_ece": round(max(ece), 4), **gains.to_json()}
    ok = [m for m in CALIBRATION_METHODS if table[m]["max_ece"] <= ECE_TARGET] or list(CALIBRATION_METHODS)
    best = max(ok, key=lambda m: (table[m]["criterion"], -table[m]["mean_ece"]))
    return best, table


def routed_inner(split: OutcomeSplit, inner: InnerResult, method: Method) -> np.ndarray:
    """[n_train] per training prompt, the mean of its ID and LOBO out-of-fold routed score with `method`'s
    cross-fitted calibration and the gate, as `pick_calibration` scores it (for paired comparisons)."""
    tr = split.train
    scores = split.data.scores[tr]
    id_cal = cross_fit(inner.id_oof, inner.id_oof, scores, split.folds[tr], method)
    lobo_cal = cross_fit(inner.id_oof, inner.lobo_oof, scores, split.data.groups[tr], method)
    rows = np.arange(len(scores))
    id_pick = route_indices(inner.gated("id", id_cal), inner.id_order)
    lobo_pick = route_indices(inner.gated("lobo", lobo_cal), inner.lobo_order)
    return np.asarray((scores[rows, id_pick] + scores[rows, lobo_pick]) / 2)


@dataclass
class HeldOut:
    """What `heldout_eval` measured on the held-out prompts."""

    reports: dict[str, Any]  # {"id": report, "lobo": report}, plus "gate" (the fitted gates) when gated
    id_probs: np.ndarray  # [n_heldout, M] calibrated (and gated) ID probabilities
    lobo_probs: np.ndarray  # [n_heldout, M] the same from the leave-one-benchmark-out fits
    lobo_order: np.ndarray  # [n_heldout, M] the prior of each row's LOBO fit (its fallback and tie-break)


def heldout_eval(
    fitter: Fitter, spec: dict[str, Any], method: Method, split: OutcomeSplit, gate: GateRule | None = None
) -> HeldOut:
    """The held-out numbers of `spec` (+ calibration `method`, + a gate tuned inside every fitting set); see
    the module docstring."""
    data, tr, ho, models = split.data, split.train, split.heldout, split.table.models
    bench = split.benchmarks[ho].tolist()
    fitted: dict[str, Any] = {}

    def predict(fit_rows: np.ndarray, at: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        scorer, cal = fitter.fit_calibrated(spec, fit_rows, split.folds, method)
        raw, signals = scorer.predict_with_signals(data.emb[at])
        prior = fitter.overall(fit_rows)
        conf = np.ones(len(at), dtype=np.float32)
        if gate is not None:
            cfg, inner = gate.fit(fit_rows)
            conf = cfg.confidence(raw, signals, prior)
            fitted[name] = {**cfg.to_json(), "nested": inner}
        return blend(cal.apply(raw), conf, prior), conf

    id_probs, id_conf = predict(tr, np.flatnonzero(ho), "id")
    id_report = heldout_report(id_probs, data.scores[ho], bench, models, fitter.overall(tr), id_conf)

    idx = np.flatnonzero(ho)
    lobo_probs = np.zeros((len(idx), data.n_models), dtype=np.float32)
    lobo_order = np.zeros_like(lobo_probs)
    lobo_conf = np.ones(len(idx), dtype=np.float32)
    for g in np.unique(data.groups[idx]):
        out = data.groups[idx] == g
        fit_rows = tr & (data.groups != g)  # the other benchmarks' training part; nothing of benchmark g
        lobo_probs[out], lobo_conf[out] = predict(fit_rows, idx[out], data.group_names[g])
        lobo_order[out] = fitter.overall(fit_rows)
    lobo_report = heldout_report(lobo_probs, data.scores[ho], bench, models, lobo_order, lobo_conf)
    reports: dict[str, Any] = {"id": id_report, "lobo": lobo_report}
    if gate is not None:
        reports["gate"] = {"rule": gate.name, "fitted": fitted}
    return HeldOut(reports, id_probs, lobo_probs, lobo_order)
