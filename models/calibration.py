"""Calibration of per-model probabilities: error measures and the maps that fix them.

Measures (plain numpy, scores may be soft targets in [0, 1] such as the probability of the gold option):
  - `reliability(p, y)`: equal-width bins of predicted probability -> count, mean prediction, mean outcome;
  - `ece(p, y)`: expected calibration error = sum over bins of (bin share) * |mean prediction - mean outcome|.
Maps, fitted on out-of-fold predictions and applied per model column:
  - `fit_platt`: logit(p') = a * logit(p) + b (a = 1 / temperature when b = 0), by Newton steps on the
    (soft-label) log-loss; `platt` fits one (a, b) per model, `shared_platt` one for all models together
    (pooled columns), which keeps every prompt's ranking of the models (a > 0), so it calibrates without
    changing where an argmax routes;
  - `fit_isotonic`: monotone step function by pool-adjacent-violators, stored as breakpoints and applied
    by linear interpolation (`np.interp`) so serving needs nothing but numpy.
`Calibrator` bundles one map per model column and round-trips through JSON (it lives in meta.json).
This module knows nothing about embeddings, models' names or routing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Method = Literal["none", "platt", "shared_platt", "isotonic"]
_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(np.log(q) - np.log1p(-q))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0))))


def reliability(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """p, y: [N] predictions and (soft) outcomes. Equal-width bins on [0, 1]; empty bins are dropped."""
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)  # [N] bin of each prediction
    count = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    keep = count > 0
    return {
        "bin_lo": [round(b / n_bins, 4) for b in np.flatnonzero(keep)],
        "count": count[keep].astype(int).tolist(),
        "mean_pred": np.round(sum_p[keep] / count[keep], 4).tolist(),
        "mean_outcome": np.round(sum_y[keep] / count[keep], 4).tolist(),
    }


def ece(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of [N] predictions against [N] (soft) outcomes, equal-width bins."""
    if len(p) == 0:
        raise ValueError("ECE of zero predictions is undefined; pass at least one row.")
    r = reliability(p, y, n_bins)
    count = np.asarray(r["count"], dtype=np.float64)
    gap = np.abs(np.asarray(r["mean_pred"]) - np.asarray(r["mean_outcome"]))
    return float((count * gap).sum() / count.sum())


def ece_per_column(probs: np.ndarray, scores: np.ndarray, n_bins: int = 10) -> list[float]:
    """probs, scores: [N, M] -> M ECE values, one per model column."""
    return [ece(probs[:, j], scores[:, j], n_bins) for j in range(probs.shape[1])]


def fit_platt(p: np.ndarray, y: np.ndarray, steps: int = 50, l2: float = 1e-3) -> tuple[float, float]:
    """(a, b) minimising mean log-loss of sigmoid(a * logit(p) + b) against soft targets y, plus l2 * (a - 1)^2 / 2;
    Newton's method with step halving (the loss never goes up)."""
    z = logit(p)

    def loss(a: float, b: float) -> float:
        t = a * z + b
        return float((np.logaddexp(0.0, t) - y * t).mean() + 0.5 * l2 * (a - 1.0) ** 2)

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(steps):
        q = sigmoid(a * z + b)
        r, w = q - y, q * (1 - q)  # d loss / d logit, d^2 loss / d logit^2
        g = np.array([(r * z).mean() + l2 * (a - 1.0), r.mean()])
        h = np.array([[(w * z * z).mean() + l2, (w * z).mean()], [(w * z).mean(), w.mean() + _EPS]])
        step = np.linalg.solve(h, g)
        scale = 1.0
        while scale > 1e-4 and loss(a - scale * step[0], b - scale * step[1]) > current:
            scale /= 2
        new = loss(a - scale * step[0], b - scale * step[1])
        if new > current:
            break
        a, b, current = a - scale * float(step[0]), b - scale * float(step[1]), new
        if scale * np.abs(step).max() < 1e-8:
            break
    return a, b


def pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing sequence closest to y [N] in w-weighted squared error."""
    vals: list[float] = []
    wts: list[float] = []
    lens: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        vals.append(yi)
        wts.append(wi)
        lens.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wsum = wts[-2] + wts[-1]
            merged = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum
            n = lens[-2] + lens[-1]
            del vals[-1], wts[-1], lens[-1]
            vals[-1], wts[-1], lens[-1] = merged, wsum, n
    return np.repeat(np.asarray(vals), lens)


def fit_isotonic(p: np.ndarray, y: np.ndarray, max_points: int = 64) -> tuple[list[float], list[float]]:
    """Breakpoints (x, f(x)) of a monotone map p -> E[y | p]; at most `max_points` of them (quantiles of p)."""
    order = np.argsort(p, kind="stable")
    xs, fit = p[order], pav(y[order], np.ones(len(p)))
    # keep the fitted value at up to max_points quantiles of p; np.interp joins them linearly
    pick = np.unique(np.linspace(0, len(xs) - 1, min(max_points, len(xs))).round().astype(np.int64))
    x_pts, f_pts = xs[pick], fit[pick]
    x_pts, first = np.unique(x_pts, return_index=True)
    return [round(float(v), 6) for v in x_pts], [round(float(v), 6) for v in f_pts[first]]


@dataclass
class ColumnMap:
    method: Method = "none"
    a: float = 1.0  # platt slope on logit(p)
    b: float = 0.0  # platt intercept
    x: list[float] = field(default_factory=list)  # isotonic breakpoints (predicted p)
    f: list[float] = field(default_factory=list)  # isotonic values at the breakpoints

    def apply(self, p: np.ndarray) -> np.ndarray:
        if self.method == "platt":
            return sigmoid(self.a * logit(p) + self.b)
        if self.method == "isotonic":
            # clip away from 0/1: the policy multiplies these, and a hard 0 can never be explored
            return np.asarray(np.clip(np.interp(p, self.x, self.f), 0.005, 0.995))
        return p


@dataclass
class Calibrator:
    """One map per model column. probs [B, M] -> calibrated [B, M]."""

    columns: list[ColumnMap]

    @classmethod
    def identity(cls, n_models: int) -> Calibrator:
        return cls([ColumnMap() for _ in range(n_models)])

    @classmethod
    def fit(cls, probs: np.ndarray, scores: np.ndarray, method: Method) -> Calibrator:
        """Fit on out-of-fold predictions probs [N, M] against scores [N, M]."""
        if method == "shared_platt":
            a, b = fit_platt(probs.ravel(), scores.ravel())  # pooled over models: one monotone map for all
            return cls([ColumnMap("platt", a=round(a, 6), b=round(b, 6)) for _ in range(probs.shape[1])])
        maps = []
        for j in range(probs.shape[1]):
            if method == "platt":
                a, b = fit_platt(probs[:, j], scores[:, j])
                maps.append(ColumnMap("platt", a=round(a, 6), b=round(b, 6)))
            elif method == "isotonic":
                x, f = fit_isotonic(probs[:, j], scores[:, j])
                maps.append(ColumnMap("isotonic", x=x, f=f))
            else:
                maps.append(ColumnMap())
        return cls(maps)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        if probs.shape[1] != len(self.columns):
            raise ValueError(f"calibrator has {len(self.columns)} columns, predictions have {probs.shape[1]}.")
        out = np.stack([m.apply(probs[:, j]) for j, m in enumerate(self.columns)], axis=1)
        return np.asarray(out, dtype=np.float32)

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(m) for m in self.columns]

    @classmethod
    def from_json(cls, d: list[dict[str, Any]]) -> Calibrator:
        return cls([ColumnMap(**m) for m in d])
