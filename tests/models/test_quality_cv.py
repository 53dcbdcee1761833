"""The evaluation protocol: folds, tie-breaking, and that nothing held out ever reaches a fit or a calibration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

from models.data import OutcomeTable
from models.gate_fit import GateRule, GateTuner
from models.quality import route_indices
from models.quality_cv import Fitter, bootstrap_gain, routing_gain
from models.quality_eval import OutcomeSplit, heldout_eval, inner_scores, pick_calibration, score_oof
from models.scorers import SCORERS, Scorer, TrainSet
from models.splits import heldout_mask, id_folds

FIT_LOG: list[set[str]] = []  # prompt ids each spy fit was trained on


@dataclass(frozen=True)
class SpyConfig:
    pass


class SpyScorer(Scorer):
    """Records the prompt ids it is fitted on (the embedding's first coordinate is the row number)."""

    kind: ClassVar[str] = "spy"

    def __init__(self, prior: np.ndarray) -> None:
        self.prior = prior

    @classmethod
    def fit(cls, data: TrainSet, config: SpyConfig) -> SpyScorer:
        FIT_LOG.append({f"p{int(r)}" for r in data.emb[:, 0]})
        return cls(data.scores.mean(axis=0))

    def predict(self, emb: np.ndarray) -> np.ndarray:
        return np.tile(self.prior, (len(emb), 1)).astype(np.float32)

    def predict_with_signals(self, emb: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.predict(emb), {"max_sim": np.linspace(0.0, 1.0, len(emb), dtype=np.float32)}

    def config_json(self) -> dict[str, Any]:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"prior": self.prior}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> SpyScorer:
        return cls(arrays["prior"])


def _split(n_per: int = 30) -> OutcomeSplit:
    names = ["a", "b", "c"]
    groups = np.repeat(np.arange(3), n_per)
    ids = [f"p{i}" for i in range(len(groups))]
    emb = np.c_[np.arange(len(groups)), np.zeros((len(groups), 3))].astype(np.float32)  # row number in column 0
    rng = np.random.default_rng(0)
    scores = rng.random((len(groups), 2)).astype(np.float32)
    bench = [names[g] for g in groups]
    table = OutcomeTable(ids, ["x"] * len(ids), bench, ["m0", "m1"], scores, sha256="0")
    heldout = heldout_mask(ids, bench, 0.2, 0)
    folds = id_folds(ids, groups, 3, 1)
    choices = np.zeros(len(ids), dtype=bool)
    return OutcomeSplit(table, TrainSet(emb, scores, groups, names), heldout, folds, 0.2, 0, emb, choices)


def test_no_fit_ever_sees_a_heldout_prompt_and_lobo_never_sees_its_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCORERS, "spy", (SpyScorer, SpyConfig))
    FIT_LOG.clear()
    split = _split()
    heldout_ids = {p for p, h in zip(split.table.prompt_ids, split.heldout, strict=True) if h}
    bench_of = dict(zip(split.table.prompt_ids, split.table.benchmarks, strict=True))
    fitter = Fitter(split.data)
    inner_scores(fitter, {"kind": "spy"}, split)
    reports = heldout_eval(fitter, {"kind": "spy"}, "platt", split).reports  # platt: calibration needs OOF fits
    assert FIT_LOG and all(not (fit & heldout_ids) for fit in FIT_LOG)
    # every LOBO report row was predicted by a model (and calibrated on OOF fits) without its benchmark: there
    # are fits missing exactly one whole benchmark, and for each benchmark some fit lacks it entirely
    train_benches = [{bench_of[p] for p in fit} for fit in FIT_LOG]
    for b in ("a", "b", "c"):
        assert any(b not in seen and len(seen) == 2 for seen in train_benches)
    assert reports["lobo"]["average"]["prompt_weighted"]["n"] == int(split.heldout.sum())


def test_lobo_models_and_their_calibration_exclude_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCORERS, "spy", (SpyScorer, SpyConfig))
    split = _split()
    fitter = Fitter(split.data)
    calls: list[np.ndarray] = []
    real = fitter.fit_calibrated

    def spy_fit_calibrated(spec: dict[str, Any], rows: np.ndarray, folds: np.ndarray, method: Any) -> Any:
        calls.append(rows.copy())
        return real(spec, rows, folds, method)

    monkeypatch.setattr(fitter, "fit_calibrated", spy_fit_calibrated)
    heldout_eval(fitter, {"kind": "spy"}, "isotonic", split)
    lobo_calls = calls[1:]  # the first is the ID model on the whole training part
    assert len(lobo_calls) == 3
    for rows in lobo_calls:
        seen = set(split.data.groups[rows].tolist())
        assert len(seen) == 2 and not (rows & split.heldout).any()


def test_id_folds_are_stratified_and_deterministic() -> None:
    ids = [f"q{i}" for i in range(100)]
    groups = np.repeat([0, 1], [60, 40])
    folds = id_folds(ids, groups, 5, 3)
    assert (folds == id_folds(ids, groups, 5, 3)).all()
    for g, n in ((0, 60), (1, 40)):
        assert np.bincount(folds[groups == g], minlength=5).tolist() == [n // 5] * 5
    with pytest.raises(ValueError, match="at least 2"):
        id_folds(ids, groups, 1, 0)


def test_ties_go_to_the_better_model_overall() -> None:
    probs = np.array([[0.5, 0.5, 0.2], [0.1, 0.3, 0.3], [0.9, 0.1, 0.1]], dtype=np.float32)
    overall = np.array([0.4, 0.6, 0.5])
    assert route_indices(probs, overall).tolist() == [1, 1, 0]
    per_row = np.array([[0.9, 0.1, 0.0], [0.0, 0.1, 0.9], [0.0, 0.0, 0.0]])
    assert route_indices(probs, per_row).tolist() == [0, 2, 0]


def test_routing_gain_is_zero_for_the_best_single_model_and_positive_for_the_oracle() -> None:
    scores = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    bench = ["x", "x", "y", "y"]
    best_single = np.tile([0.9, 0.1], (4, 1))  # always model 0
    assert routing_gain(best_single, scores, bench, np.zeros(2)) == pytest.approx(0.0)
    assert routing_gain(scores, scores, bench, np.zeros(2)) > 0


def test_calibration_choice_keeps_the_routing_when_a_shared_map_calibrates() -> None:
    # the scorer ranks models well but is over-confident in the same way for every model: one shared map fixes
    # that without moving any argmax; per-model maps fix it too but reorder models and lose routing
    split = _split(n_per=1000)
    rng = np.random.default_rng(3)
    tr = split.train
    n = int(tr.sum())
    truth = np.clip(rng.beta(2, 2, size=(n, 2)), 0.05, 0.95)  # [n, 2] true P(good)
    split.data.scores[tr] = (rng.random((n, 2)) < truth).astype(np.float32)
    over = truth**3 / (truth**3 + (1 - truth) ** 3)  # sharpened: same monotone distortion for both models
    inner = score_oof(split, over, np.zeros_like(over), over, np.zeros_like(over))
    method, table = pick_calibration(split, inner)
    assert table["none"]["max_ece"] > 0.05  # uncalibrated: not eligible
    assert table["shared_platt"]["max_ece"] <= 0.05
    assert table["shared_platt"]["criterion"] == pytest.approx(inner.criterion)  # same argmax everywhere
    assert method in ("shared_platt", "platt", "isotonic") and table[method]["max_ece"] <= 0.05
    assert table[method]["criterion"] >= table["shared_platt"]["criterion"]


def test_nested_gate_tuning_never_sees_the_benchmark_or_prompts_it_is_judged_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(SCORERS, "spy", (SpyScorer, SpyConfig))
    split = _split()
    fitter = Fitter(split.data)
    fit_rows: list[np.ndarray] = []  # the rows of every scorer fit, in order
    real_fit = fitter.fit

    def spy_fit(spec: dict[str, Any], rows: np.ndarray) -> Scorer:
        fit_rows.append(rows.copy())
        return real_fit(spec, rows)

    monkeypatch.setattr(fitter, "fit", spy_fit)
    tuner = GateTuner(fitter, {"kind": "spy"}, split.folds)
    windows: list[tuple[np.ndarray, list[np.ndarray]]] = []  # (rows a gate was fitted on, fits made meanwhile)
    real_gate_fit = tuner.fit

    def spy_gate_fit(rows: np.ndarray, signal: str, mode: Any) -> Any:
        start = len(fit_rows)
        out = real_gate_fit(rows, signal, mode)
        windows.append((rows.copy(), fit_rows[start:]))
        return out

    monkeypatch.setattr(tuner, "fit", spy_gate_fit)
    rule = GateRule(tuner, "max_sim", "hard")
    inner_scores(fitter, {"kind": "spy"}, split, rule)
    n_inner = len(windows)
    heldout_eval(fitter, {"kind": "spy"}, "platt", split, rule)
    assert n_inner == 3 + 3  # one gate per inner ID fold and per inner left-out benchmark
    assert sum(len(f) for _, f in windows) > 0
    for outer, fits in windows:
        assert all(not (r & ~outer).any() for r in fits)  # nested: every fit inside the gate's own rows
    assert all(not (r & split.heldout).any() for r in fit_rows)
    # held-out: the ID gate on the whole training part, then one LOBO gate per benchmark without that benchmark
    held_gates = [outer for outer, _ in windows[n_inner:]]
    assert len(held_gates) == 4 and (held_gates[0] == split.train).all()
    groups = split.data.groups
    for b, outer in enumerate(held_gates[1:]):
        assert (outer == (split.train & (groups != b))).all()


def test_bootstrap_gain_brackets_the_oracle_above_zero_and_the_best_single_at_or_below() -> None:
    rng = np.random.default_rng(6)
    scores = (rng.random((300, 3)) < [0.5, 0.6, 0.4]).astype(np.float32)
    bench = ["x"] * 150 + ["y"] * 150
    oracle = bootstrap_gain(scores, scores.argmax(axis=1), bench, n_boot=300)
    assert oracle["ci95"][0] > 0.1 and oracle["p_gain_le_0"] == 0.0
    single = bootstrap_gain(scores, np.ones(300, dtype=np.int64), bench, n_boot=300)
    assert single["ci95"][1] <= 1e-9 and single["mean"] <= 0
