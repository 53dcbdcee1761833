"""Quality predictor artifact: the committed one loads and predicts; save/load round trip; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.calibration import Calibrator, ColumnMap
from models.errors import ArtifactError
from models.quality import QualityPredictor
from models.scorers import TrainSet, fit_scorer


def _unit(n: int, seed: int = 0, dim: int = 384) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_committed_artifact_predicts_seven_calibrated_probabilities() -> None:
    pred = QualityPredictor.load()
    assert len(pred.models) == 7
    choices = np.array([True, False, True, False, False])  # the answer format it was trained with
    probs = pred.predict(_unit(5), choices)
    assert probs.shape == (5, 7) and ((probs > 0) & (probs < 1)).all()
    assert all(m in pred.models for m in pred.route(_unit(3), choices[:3]))
    assert pred.meta["split"]["heldout_frac"] > 0
    ece = pred.meta["metrics_heldout"]["id"]["calibration"]["ece"]
    assert set(ece) == set(pred.models)


def _small_predictor() -> QualityPredictor:
    rng = np.random.default_rng(0)
    data = TrainSet(_unit(40, dim=8), rng.random((40, 3)).astype(np.float32), np.repeat([0, 1], 20), ["g1", "g2"])
    scorer = fit_scorer({"kind": "knn", "k": 5}, data)
    cal = Calibrator([ColumnMap("platt", a=0.8, b=0.1), ColumnMap(), ColumnMap("isotonic", x=[0.0, 1.0], f=[0.2, 0.6])])
    return QualityPredictor(scorer, cal, ["m1", "m2", "m3"], data.macro_mean(), meta={"split": {"seed": 3}})


def test_round_trip(tmp_path: Path) -> None:
    pred = _small_predictor()
    pred.save(tmp_path)
    again = QualityPredictor.load(tmp_path)
    x = _unit(4, seed=1, dim=8)
    np.testing.assert_allclose(again.predict(x), pred.predict(x), atol=1e-3)
    assert again.models == ["m1", "m2", "m3"] and again.meta["split"] == {"seed": 3}
    assert again.route(x) == pred.route(x)
    # the calibration maps are applied on top of the scorer
    np.testing.assert_allclose(pred.predict(x)[:, 1], pred.predict_raw(x)[:, 1])
    assert not np.allclose(pred.predict(x)[:, 0], pred.predict_raw(x)[:, 0])


def test_missing_artifact_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="train-quality"):
        QualityPredictor.load(tmp_path)


def test_old_format_is_refused_with_a_retrain_hint(tmp_path: Path) -> None:
    _small_predictor().save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["format_version"] = 1
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="retrain"):
        QualityPredictor.load(tmp_path)


def test_mismatched_weights_are_an_artifact_error(tmp_path: Path) -> None:
    _small_predictor().save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["scorer"]["kind"] = "mlp"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="does not match"):
        QualityPredictor.load(tmp_path)
