"""The evaluation protocol: folds, tie-breaking, and that nothing held out ever reaches a fit or a calibration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

from models.data import OutcomeTable
from models.quality import route_indices
from models.quality_cv import Fitter, bootstrap_gain, choose_calibration, routing_gain
from models.quality_eval import OutcomeSplit, heldout_eval, inner_scores
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
    return OutcomeSplit(table, TrainSet(emb, scores, groups, names), heldout, id_folds(ids, groups, 3, 1), 0.2, 0)


def test_no_fit_ever_sees_a_heldout_prompt_and_lobo_never_sees_its_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCORERS, "spy", (SpyScorer, SpyConfig))
    FIT_LOG.clear()
    split = _split()
    heldout_ids = {p for p, h in zip(split.table.prompt_ids, split.heldout, strict=True) if h}
    bench_of = dict(zip(split.table.prompt_ids, split.table.benchmarks, strict=True))
    fitter = Fitter(split.data)
    inner_scores(fitter, {"kind": "spy"}, split)
    reports, _ = heldout_eval(fitter, {"kind": "spy"}, "platt", split)  # platt: calibration needs its own OOF fits
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


def test_calibration_choice_prefers_the_map_that_fixes_the_out_of_fold_predictions() -> None:
    rng = np.random.default_rng(4)
    truth = rng.random((400, 3))
    y = (rng.random(truth.shape) < truth).astype(np.float32)
    method, table = choose_calibration(truth**4, y, np.arange(len(y)) % 4)
    assert method in ("platt", "isotonic") and table[method] < table["none"]
    assert table["none"] > 0.1
    _, calibrated = choose_calibration(truth, y, np.arange(len(y)) % 4)  # already calibrated
    assert calibrated["none"] < 0.06


def test_bootstrap_gain_brackets_the_oracle_above_zero_and_the_best_single_at_or_below() -> None:
    rng = np.random.default_rng(6)
    scores = (rng.random((300, 3)) < [0.5, 0.6, 0.4]).astype(np.float32)
    bench = ["x"] * 150 + ["y"] * 150
    oracle = bootstrap_gain(scores, scores.argmax(axis=1), bench, n_boot=300)
    assert oracle["ci95"][0] > 0.1 and oracle["p_gain_le_0"] == 0.0
    single = bootstrap_gain(scores, np.ones(300, dtype=np.int64), bench, n_boot=300)
    assert single["ci95"][1] <= 1e-9 and single["mean"] <= 0
