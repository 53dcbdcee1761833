"""Task head: learns a toy problem from n-grams alone, round-trips through tensors, temperature is sane."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import ArtifactError
from models.lexical import LexicalConfig, lexical_rows
from models.task_head import TaskFitConfig, TaskHead, TaskHeadConfig, fit_task_head, fit_temperature

TEXTS = ["Prove that x is even.", "Translate this into French.", "Prove the lemma.", "Translate to German."] * 5


def _fit() -> tuple[TaskHead, np.ndarray]:
    cfg = TaskHeadConfig(dense_dim=4, n_classes=2, lexical=LexicalConfig(n_buckets=512))
    y = np.array([0, 1, 0, 1] * 5)
    dense = np.zeros((len(TEXTS), 4), dtype=np.float32)  # no signal in the dense part
    head = fit_task_head(cfg, dense, lexical_rows(TEXTS, cfg.lexical), y, np.ones(len(y)), TaskFitConfig(steps=50))
    return head, y


def test_learns_from_ngrams_and_round_trips() -> None:
    head, y = _fit()
    rows = lexical_rows(TEXTS, head.config.lexical)
    probs = head.predict(np.zeros((len(TEXTS), 4), dtype=np.float32), rows)
    assert (probs.argmax(1) == y).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    again = TaskHead.from_tensors(head.config, head.save_tensors(), "mem")
    np.testing.assert_array_equal(again.lexical, head.lexical)
    assert TaskHeadConfig.from_json(head.config.to_json()) == head.config


def test_wrong_shapes_say_retrain() -> None:
    head, _ = _fit()
    with pytest.raises(ArtifactError, match="retrain"):
        TaskHead.from_tensors(TaskHeadConfig(dense_dim=5, n_classes=2), head.save_tensors(), "mem")


def test_temperature_softens_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=2000)
    logits = rng.normal(size=(2000, 3)).astype(np.float32)
    logits[np.arange(2000), y] += 1.0
    assert fit_temperature(logits * 10, y) > 5.0
    assert 0.5 < fit_temperature(logits, y) < 2.0


def _dense_and_lexical_signal(fit: TaskFitConfig) -> tuple[TaskHead, np.ndarray, np.ndarray]:
    """Both the n-grams and dense feature 0 carry the label; returns the head, dense inputs and labels."""
    cfg = TaskHeadConfig(dense_dim=4, n_classes=2, lexical=LexicalConfig(n_buckets=512))
    y = np.array([0, 1, 0, 1] * 5)
    dense = np.zeros((len(TEXTS), 4), dtype=np.float32)
    dense[:, 0] = np.where(y == 1, 0.3, -0.3)
    head = fit_task_head(cfg, dense, lexical_rows(TEXTS, cfg.lexical), y, np.ones(len(y)), fit)
    return head, dense, y


def test_lexical_row_dropout_makes_the_dense_features_carry_the_label() -> None:
    plain, dense, y = _dense_and_lexical_signal(TaskFitConfig(steps=80, l2_lexical=0.0))
    dropped, _, _ = _dense_and_lexical_signal(TaskFitConfig(steps=80, l2_lexical=0.0, lexical_row_dropout=0.7))
    no_ngrams = lexical_rows([""] * len(TEXTS), plain.config.lexical)
    margin = [h.logits(dense, no_ngrams) for h in (plain, dropped)]
    gap = [float((m[y == 1, 1] - m[y == 1, 0]).mean()) for m in margin]  # dense-only logit margin, true class
    assert gap[1] > gap[0] > 0


def test_label_smoothing_keeps_probabilities_off_the_edges() -> None:
    sharp, _ = _fit()
    smooth_head = fit_task_head(
        sharp.config,
        np.zeros((len(TEXTS), 4), dtype=np.float32),
        lexical_rows(TEXTS, sharp.config.lexical),
        np.array([0, 1, 0, 1] * 5),
        np.ones(len(TEXTS)),
        TaskFitConfig(steps=50, label_smoothing=0.3),
    )
    rows, zeros = lexical_rows(TEXTS, sharp.config.lexical), np.zeros((len(TEXTS), 4), dtype=np.float32)
    assert smooth_head.predict(zeros, rows).max() < sharp.predict(zeros, rows).max()
