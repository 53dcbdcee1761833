"""Every quality scorer on tiny synthetic outcomes: it must learn who is good where, and survive save/restore."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from models.scorers import SCORERS, TrainSet, fit_scorer, restore_scorer, spec_name

# Two kinds of prompt (two benchmarks): model 0 answers kind 0 well, model 1 kind 1; model 2 is mediocre everywhere.
D, N_PER = 16, 120


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(seed: int = 0) -> tuple[TrainSet, np.ndarray]:
    centres = _unit(np.random.default_rng(100).normal(size=(2, D)))  # the same two kinds in every sample
    rng = np.random.default_rng(seed)
    groups = np.repeat([0, 1], N_PER)
    emb = _unit(centres[groups] + 0.35 * rng.normal(size=(2 * N_PER, D)))
    p_good = np.array([[0.9, 0.2, 0.5], [0.2, 0.9, 0.5]])[groups]  # [N, 3]
    scores = (rng.random(p_good.shape) < p_good).astype(np.float32)
    return TrainSet(emb, scores, groups, ["a", "b"]), p_good


FAST: dict[str, dict[str, Any]] = {
    "knn": {"kind": "knn", "k": 40, "temperature": 0.0},
    "mlp": {"kind": "mlp", "hidden": 32, "epochs": 100, "lr": 1e-2},
    "mf": {"kind": "mf", "dim": 8, "epochs": 100, "lr": 1e-2},
    "contrastive": {
        "kind": "contrastive",
        "hidden": 32,
        "dim": 8,
        "epochs": 60,
        "lr": 1e-2,
        "batch_size": 64,
        "n_clusters": 2,
        "top_k": 1,
        "last_k": 1,
    },
    "group_prior": {"kind": "group_prior", "epochs": 40, "lr": 5e-2},
}


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def test_every_registered_kind_has_a_fast_spec() -> None:
    assert set(SCORERS) - {"constant"} == set(FAST)


@pytest.mark.parametrize("kind", sorted(FAST))
def test_scorer_routes_each_kind_of_prompt_to_its_specialist(kind: str) -> None:
    train, _ = synthetic(0)
    test, truth = synthetic(1)
    scorer = fit_scorer(FAST[kind], train)
    probs = scorer.predict(test.emb)
    assert probs.shape == (len(test), 3) and ((probs > 0) & (probs < 1)).all()
    routed = probs.argmax(axis=1)
    assert (routed == truth.argmax(axis=1)).mean() >= 0.9, f"{kind} routes {np.bincount(routed, minlength=3)}"
    # probabilities should be in the right region, not just ordered right
    assert abs(probs[:, 2].mean() - 0.5) < 0.15


@pytest.mark.parametrize("kind", [*sorted(FAST), "constant"])
def test_save_restore_gives_the_same_predictions(kind: str) -> None:
    data, _ = synthetic(0)
    scorer = fit_scorer(FAST.get(kind, {"kind": kind}), data)
    again = restore_scorer({"kind": scorer.kind, **scorer.config_json()}, scorer.arrays())
    np.testing.assert_allclose(again.predict(data.emb[:7]), scorer.predict(data.emb[:7]), atol=1e-3)


def test_constant_scorer_is_the_benchmark_macro_mean() -> None:
    data, _ = synthetic(0)
    unbalanced = data.take(np.r_[np.arange(N_PER), np.arange(N_PER, N_PER + 20)])  # far more rows of "a"
    probs = fit_scorer({"kind": "constant"}, unbalanced).predict(data.emb[:3])
    expect = (unbalanced.scores[unbalanced.groups == 0].mean(0) + unbalanced.scores[unbalanced.groups == 1].mean(0)) / 2
    np.testing.assert_allclose(probs, np.tile(expect, (3, 1)), atol=1e-6)


def test_ensemble_averages_members_and_round_trips() -> None:
    data, _ = synthetic(0)
    spec = {"kind": "ensemble", "members": [FAST["knn"], {"kind": "constant"}], "weights": [3.0, 1.0]}
    ens = fit_scorer(spec, data)
    knn, const = fit_scorer(FAST["knn"], data), fit_scorer({"kind": "constant"}, data)
    x = data.emb[:5]
    np.testing.assert_allclose(ens.predict(x), 0.75 * knn.predict(x) + 0.25 * const.predict(x), atol=1e-6)
    again = restore_scorer({"kind": "ensemble", **ens.config_json()}, ens.arrays())
    np.testing.assert_allclose(again.predict(x), ens.predict(x), atol=1e-3)
    assert spec_name(spec).startswith("ensemble[knn(")


def test_knn_far_prompt_falls_back_to_the_prior_with_absolute_weights() -> None:
    data, _ = synthetic(0)
    scorer = fit_scorer({"kind": "knn", "k": 20, "ood_sim": 0.9, "temperature": 0.02, "shrink": 1.0}, data)
    far = _unit(np.random.default_rng(5).normal(size=(1, D)))  # a random direction
    assert (far @ data.emb.T).max() < 0.8  # far from every training prompt
    np.testing.assert_allclose(scorer.predict(far)[0], data.macro_mean(), atol=0.05)


def test_unknown_kind_is_a_clear_error() -> None:
    data, _ = synthetic(0)
    with pytest.raises(ValueError, match="Unknown scorer kind"):
        fit_scorer({"kind": "forest"}, data)


def test_trainset_rejects_misaligned_rows() -> None:
    with pytest.raises(ValueError, match="must align"):
        TrainSet(np.zeros((3, 4), np.float32), np.zeros((2, 1), np.float32), np.zeros(3, np.int64), ["a"])
