"""Plain-numpy evaluation metrics and aligned-text tables for the training scripts.

Classification: per-class precision/recall/F1, macro-F1, accuracy and the confusion matrix.
Regression: MAE, RMSE, Pearson and Spearman correlation, and the mean within-group Pearson (how well a score
ranks prompts *inside* one benchmark, not just between benchmarks). This module knows nothing about models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """y_true, y_pred: [N] int class ids. Confusion rows = true class, columns = predicted class."""
    k = len(labels)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (y_true, y_pred), 1)
    per: dict[str, dict[str, float]] = {}
    f1s = []
    for i, name in enumerate(labels):
        tp, support, predicted = conf[i, i], conf[i].sum(), conf[:, i].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per[name] = {
            "precision": round(float(p), 4),
            "recall": round(float(r), 4),
            "f1": round(float(f1), 4),
            "support": int(support),
        }
        if support:
            f1s.append(f1)
    return {
        "per_category": per,
        "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4),  # over classes present in y_true
        "accuracy": round(float((y_true == y_pred).mean()) if len(y_true) else 0.0, 4),
        "n": len(y_true),
        "confusion": conf.tolist(),
    }


def format_report(report: dict[str, Any], labels: Sequence[str]) -> str:
    """Aligned text: per-class P/R/F1/support, macro-F1, then the confusion matrix (rows true, cols pred)."""
    w = max(len(s) for s in labels) + 2
    lines = [f"{'category':<{w}}{'prec':>7}{'rec':>7}{'f1':>7}{'n':>7}"]
    for name in labels:
        m = report["per_category"][name]
        lines.append(f"{name:<{w}}{m['precision']:>7.3f}{m['recall']:>7.3f}{m['f1']:>7.3f}{m['support']:>7d}")
    lines.append(f"{'macro-F1':<{w}}{report['macro_f1']:>21.3f}{report['n']:>7d}   accuracy {report['accuracy']:.3f}")
    short = [s[:5] for s in labels]
    lines.append("")
    lines.append("confusion (rows = true, cols = predicted)")
    lines.append(" " * w + "".join(f"{s:>6}" for s in short))
    for name, row in zip(labels, report["confusion"], strict=True):
        lines.append(f"{name:<{w}}" + "".join(f"{v:>6d}" for v in row))
    return "\n".join(lines)


def _rank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x))
    # average ties so Spearman is correct for discrete targets
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return (sums / counts)[inv]


def _finite(x: float) -> float | None:
    """JSON-safe: NaN/inf -> None."""
    return round(float(x), 4) if np.isfinite(x) else None


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def regression_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """y_true, y_pred: [N] floats. groups: optional [N] group names for within-group correlation."""
    err = y_pred - y_true
    out: dict[str, Any] = {
        "n": len(y_true),
        "mae": round(float(np.abs(err).mean()), 4),
        "rmse": round(float(np.sqrt((err**2).mean())), 4),
        "pearson": _finite(pearson(y_true, y_pred)),
        "spearman": _finite(pearson(_rank(y_true), _rank(y_pred))),
        "mae_predict_mean": round(float(np.abs(y_true - y_true.mean()).mean()), 4),  # trivial baseline
    }
    if groups is not None:
        g = np.asarray(groups)
        per = {str(k): _finite(pearson(y_true[g == k], y_pred[g == k])) for k in sorted(set(g.tolist()))}
        out["pearson_within_group"] = per
        finite = [v for v in per.values() if v is not None]
        out["pearson_within_group_mean"] = _finite(float(np.mean(finite))) if finite else None
    return out
