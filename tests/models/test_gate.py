"""The abstention gate: it falls back to the prior on unfamiliar prompts and not on familiar ones, its threshold
is learned by nested cross-validation that never sees what it is judged on, and the artifact keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.calibration import Calibrator
from models.gate import GateConfig
from models.gate_fit import GateRule, GateTuner
from models.quality import QualityPredictor
from models.quality_cv import Fitter
from models.scorers import TrainSet, fit_scorer

D, N_PER = 16, 60
# three kinds of prompt; model 2 is decent everywhere (the best single model), models 0 and 1 are specialists
# of kinds 0 and 1 and bad on kind 2, so routing an unseen kind by its nearest neighbours' specialist is wrong
P_GOOD = np.array([[0.95, 0.05, 0.6], [0.05, 0.95, 0.6], [0.05, 0.05, 0.6]])


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _data(seed: int = 0) -> TrainSet:
    centres = np.eye(D, dtype=np.float32)[:3]  # orthogonal: each kind is far from the others
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(3), N_PER)
    emb = _unit(centres[groups] + 0.15 * rng.normal(size=(len(groups), D)))
    scores = (rng.random((len(groups), 3)) < P_GOOD[groups]).astype(np.float32)
    return TrainSet(emb, scores, groups, ["a", "b", "c"])


def _near_and_far(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    near = _unit(np.eye(D)[[0, 1]] + 0.15 * rng.normal(size=(2, D)))  # like kinds 0 and 1
    far = _unit(np.eye(D)[[5, 9]] + 0.05 * rng.normal(size=(2, D)))  # like nothing in training
    return near, far


def _predictor(data: TrainSet, gate: GateConfig) -> QualityPredictor:
    scorer = fit_scorer({"kind": "knn", "k": 20, "local": 1.0}, data)
    return QualityPredictor(scorer, Calibrator.identity(3), ["m0", "m1", "m2"], data.macro_mean(), {}, gate)


@pytest.mark.parametrize("signal", ["max_sim", "mean_sim", "purity"])
def test_hard_gate_falls_back_on_far_prompts_and_not_on_near_ones(signal: str) -> None:
    # kinds 0 and 1 only: a far prompt's neighbours are split between them (low purity), a near one's are not
    data = _data().take(_data().groups < 2)
    pred = _predictor(data, GateConfig(signal, "hard", {"max_sim": 0.5, "mean_sim": 0.5, "purity": 0.9}[signal]))
    near, far = _near_and_far()
    probs, conf = pred.predict_with_confidence(np.r_[near, far])
    assert conf.tolist() == [1.0, 1.0, 0.0, 0.0]
    np.testing.assert_allclose(probs[:2], pred.calibrator.apply(pred.predict_raw(near)), atol=1e-6)
    np.testing.assert_allclose(probs[2:], np.tile(pred.overall, (2, 1)), atol=1e-6)  # honest prior rates
    assert pred.route(near) == ["m0", "m1"]
    assert pred.route(far) == [pred.models[int(pred.overall.argmax())]] * 2 == ["m2", "m2"]


def test_soft_gate_shrinks_toward_the_prior_by_its_confidence() -> None:
    data = _data()
    pred = _predictor(data, GateConfig("max_sim", "soft", 0.8))
    near, far = _near_and_far()
    x = np.r_[near, far]
    probs, conf = pred.predict_with_confidence(x)
    raw = pred.predict_raw(x)
    assert ((conf > 0) & (conf <= 1)).all() and conf[:2].min() > conf[2:].max()
    np.testing.assert_allclose(probs, conf[:, None] * raw + (1 - conf[:, None]) * pred.overall, atol=1e-6)


def test_an_open_gate_changes_nothing_and_margin_needs_no_scorer_signal() -> None:
    data = _data()
    near, far = _near_and_far()
    x = np.r_[near, far]
    open_gate = _predictor(data, GateConfig())
    np.testing.assert_allclose(open_gate.predict(x), open_gate.calibrator.apply(open_gate.predict_raw(x)))
    margin = _predictor(data, GateConfig("margin", "hard", 1.0))  # no margin reaches 1: always the prior
    np.testing.assert_allclose(margin.predict(x), np.tile(margin.overall, (len(x), 1)), atol=1e-6)
    with pytest.raises(ValueError, match="signal"):
        GateConfig("loudness", "hard", 0.5)


def test_nested_tuning_closes_the_gate_where_an_unseen_kind_is_misrouted() -> None:
    data = _data()
    folds = np.arange(len(data)) % 3
    tuner = GateTuner(Fitter(data), {"kind": "knn", "k": 20, "local": 1.0}, folds)
    everything = np.ones(len(data), dtype=bool)
    gate, score = tuner.fit(everything, "max_sim", "hard")
    # leaving any kind out sends its prompts to a specialist of another kind; the gate fixes that
    open_score = tuner.criterion(everything, GateConfig())
    assert gate.threshold > 0 and score["lobo_gain"] > open_score["lobo_gain"] + 0.1
    assert score["id_gain"] == pytest.approx(open_score["id_gain"], abs=0.02)  # familiar prompts keep routing
    pred = _predictor(data, gate)
    near, far = _near_and_far()
    _, conf = pred.predict_with_confidence(np.r_[near, far])
    assert conf.tolist() == [1.0, 1.0, 0.0, 0.0]
    # one benchmark alone has nothing to leave out: the gate stays open
    lone, empty = tuner.fit(data.groups == 0, "max_sim", "hard")
    assert lone.is_open and empty == {}


def test_gate_round_trips_through_the_artifact(tmp_path: Path) -> None:
    data = _data()
    pred = _predictor(data, GateConfig("purity", "hard", 0.9))
    pred.save(tmp_path)
    again = QualityPredictor.load(tmp_path)
    assert again.gate == pred.gate
    near, far = _near_and_far()
    np.testing.assert_allclose(again.predict(np.r_[near, far]), pred.predict(np.r_[near, far]), atol=1e-3)
    # an artifact from before the gate has no "gate" entry: it loads without one
    meta = json.loads((tmp_path / "meta.json").read_text())
    del meta["gate"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert QualityPredictor.load(tmp_path).gate.is_open


def test_gate_rule_is_named_by_signal_and_mode() -> None:
    data = _data()
    rule = GateRule(GateTuner(Fitter(data), {"kind": "knn", "k": 5}, np.arange(len(data)) % 2), "purity", "soft")
    assert rule.name == "gate(purity,soft)"
