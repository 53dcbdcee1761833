"""Row weights for training the heads: class balancing and source-family balancing within a class."""

from __future__ import annotations

import numpy as np
import pytest

from models.fit import balanced_weights, family_balanced_weights

LABELS = np.array([0] * 10 + [1] * 4)
FAMILIES = np.array(["big"] * 8 + ["small"] * 2 + ["x"] * 3 + ["y"])


def _total(w: np.ndarray, mask: np.ndarray) -> float:
    return float(w[mask].sum())


def test_power_one_gives_every_family_of_a_class_the_same_total() -> None:
    w = family_balanced_weights(LABELS, FAMILIES, power=1.0)
    assert _total(w, FAMILIES == "big") == pytest.approx(_total(w, FAMILIES == "small"))
    assert _total(w, FAMILIES == "x") == pytest.approx(_total(w, FAMILIES == "y"))
    # each class keeps its share of the total weight, so class balancing composes by multiplication
    assert _total(w, LABELS == 0) / _total(w, LABELS == 1) == pytest.approx(10 / 4)
    assert w.mean() == pytest.approx(1.0)


def test_power_zero_changes_nothing_and_half_is_in_between() -> None:
    np.testing.assert_allclose(family_balanced_weights(LABELS, FAMILIES, power=0.0), np.ones(len(LABELS)))
    half = family_balanced_weights(LABELS, FAMILIES, power=0.5)
    full = family_balanced_weights(LABELS, FAMILIES, power=1.0)
    ratio = lambda w: _total(w, FAMILIES == "small") / _total(w, FAMILIES == "big")  # noqa: E731
    assert ratio(family_balanced_weights(LABELS, FAMILIES, 0.0)) < ratio(half) < ratio(full)


def test_composes_with_class_balancing() -> None:
    w = balanced_weights(LABELS, 2, power=1.0) * family_balanced_weights(LABELS, FAMILIES, power=1.0)
    assert _total(w, LABELS == 0) == pytest.approx(_total(w, LABELS == 1))
    assert _total(w, FAMILIES == "big") == pytest.approx(_total(w, FAMILIES == "small"))
