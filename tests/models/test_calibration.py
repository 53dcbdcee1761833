"""Calibration measures and maps: ECE on known cases, PAV against brute force, Platt and isotonic fits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.calibration import Calibrator, ece, ece_per_column, fit_isotonic, fit_platt, pav, reliability, sigmoid


def test_ece_of_a_constant_overconfident_prediction() -> None:
    p = np.full(1000, 0.8)
    y = np.r_[np.ones(500), np.zeros(500)]
    assert ece(p, y) == pytest.approx(0.3)


def test_ece_is_zero_when_each_bin_matches_its_outcomes() -> None:
    p = np.r_[np.full(10, 0.15), np.full(10, 0.75)]
    y = np.r_[np.full(10, 0.15), np.full(10, 0.75)]  # soft outcomes are allowed
    assert ece(p, y) == pytest.approx(0.0, abs=1e-12)
    r = reliability(p, y)
    assert r["count"] == [10, 10] and r["bin_lo"] == [0.1, 0.7]


def test_ece_weights_bins_by_count() -> None:
    p = np.r_[np.full(30, 0.05), np.full(10, 0.95)]
    y = np.r_[np.zeros(30), np.zeros(10)]
    assert ece(p, y) == pytest.approx((30 * 0.05 + 10 * 0.95) / 40)
    assert ece_per_column(np.c_[p, p], np.c_[y, y]) == pytest.approx([ece(p, y)] * 2)


def test_ece_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="zero predictions"):
        ece(np.zeros(0), np.zeros(0))


def test_pav_matches_brute_force_on_small_sequences() -> None:
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, 11)
    for _ in range(20):
        y, w = rng.random(4), rng.random(4) + 0.1
        fit = pav(y, w)
        assert (np.diff(fit) >= -1e-12).all()
        best = min(
            (np.array(c) for c in itertools.combinations_with_replacement(grid, 4)),
            key=lambda c: float((w * (c - y) ** 2).sum()),
        )
        # PAV is the exact optimum; the grid search only approximates it from above
        assert (w * (fit - y) ** 2).sum() <= (w * (best - y) ** 2).sum() + 1e-12


def test_platt_recovers_a_temperature() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(scale=2.0, size=20000)
    y = (rng.random(len(z)) < sigmoid(z / 2.0)).astype(float)  # true probability: logits / 2
    a, b = fit_platt(sigmoid(z), y)  # the model reports sigmoid(z): overconfident by a factor 2
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrators_fix_a_miscalibrated_column_and_round_trip(method: str) -> None:
    rng = np.random.default_rng(2)
    truth = rng.random((4000, 2))
    y = (rng.random(truth.shape) < truth).astype(np.float32)
    reported = np.c_[truth[:, 0] ** 3, truth[:, 1]]  # column 0 is under-confident-ish, column 1 is right
    fit_half, test_half = slice(0, 2000), slice(2000, None)
    cal = Calibrator.fit(reported[fit_half], y[fit_half], method)  # type: ignore[arg-type]
    fixed = cal.apply(reported[test_half])
    before, after = ece_per_column(reported[test_half], y[test_half]), ece_per_column(fixed, y[test_half])
    assert before[0] > 0.1 and after[0] < 0.05 and after[1] < 0.05
    again = Calibrator.from_json(cal.to_json())
    np.testing.assert_allclose(again.apply(reported[:50]), cal.apply(reported[:50]), atol=1e-6)


def test_isotonic_keeps_at_most_max_points_and_is_monotone() -> None:
    rng = np.random.default_rng(3)
    p = rng.random(5000)
    x, f = fit_isotonic(p, (rng.random(5000) < p).astype(float), max_points=32)
    assert len(x) <= 32 and (np.diff(x) > 0).all() and (np.diff(f) >= 0).all()


def test_identity_calibrator_changes_nothing_and_checks_width() -> None:
    probs = np.array([[0.2, 0.7]], dtype=np.float32)
    np.testing.assert_array_equal(Calibrator.identity(2).apply(probs), probs)
    with pytest.raises(ValueError, match="2 columns"):
        Calibrator.identity(2).apply(np.zeros((1, 3), dtype=np.float32))
