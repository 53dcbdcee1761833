"""Quality predictor: committed artifact loads and predicts; save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.errors import ArtifactError
from models.heads import HeadConfig, MLPHead
from models.quality import QualityPredictor


def _unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 384)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_committed_artifact_predicts_seven_probabilities() -> None:
    pred = QualityPredictor.load()
    assert len(pred.models) == 7
    probs = pred.predict(_unit(5))
    assert probs.shape == (5, 7) and ((probs >= 0) & (probs <= 1)).all()
    assert all(m in pred.models for m in pred.route(_unit(3)))
    assert pred.meta["split"]["heldout_frac"] > 0


def test_round_trip(tmp_path: Path) -> None:
    models, groups = ["m1", "m2", "m3"], ["g1", "g2"]
    head = MLPHead(HeadConfig(out_dim=3, hidden=8, output="sigmoid"))
    group_head = MLPHead(HeadConfig(out_dim=2, hidden=0, dropout=0.0))
    prior = np.array([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5]], dtype=np.float32)
    pred = QualityPredictor(head, group_head, prior, models, groups, 0.5, meta={"split": {"seed": 3}})
    pred.save(tmp_path)
    again = QualityPredictor.load(tmp_path)
    x = _unit(4, seed=1)
    np.testing.assert_allclose(again.predict(x), pred.predict(x), atol=1e-6)
    assert again.models == models and again.meta["split"] == {"seed": 3}
    np.testing.assert_allclose(again.predict(x, prior_weight=1.0), group_head.predict(x) @ prior, atol=1e-6)


def test_missing_artifact_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="train-quality"):
        QualityPredictor.load(tmp_path)
