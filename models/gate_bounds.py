"""Upper bounds for any abstention gate on leave-one-benchmark-out routing, from predictions already made.

Given leave-one-benchmark-out predictions (each benchmark's prompts scored by fits that never saw it) and the
prior of each of those fits (what a closed gate answers with, models/gate.py):
  - `oracle_gate`: the gate closes on exactly the unseen benchmark's prompts, i.e. on every LOBO prompt, so each
    benchmark is routed to the best single model of the *other* benchmarks (in distribution such a gate never
    closes, so the ID numbers are the ungated ones);
  - `hindsight_benchmark_gate`: for each unseen benchmark, whichever of the scorer's routing and the fallback
    turned out better on it (a gate that knew which unfamiliar benchmarks the scorer gets wrong);
  - `ungated`: the scorer's own routing, for comparison.
Gains are benchmark-macro routed accuracy minus the best single model's (chosen on all benchmarks together,
as in every report), in accuracy units, with the per-benchmark terms. These are bounds to read, never
settings to choose. This module knows nothing about scorers, files or how the predictions were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.eval_routing import routing_report
from models.quality import route_indices


def _per_benchmark_gain(report: dict[str, Any]) -> dict[str, float]:
    """routed - (the benchmark-macro best single model's accuracy) on each benchmark."""
    best = report["average"]["benchmark_macro"]["best_single"]["model"]
    return {b: r["routed"] - r["single"][best] for b, r in report["per_benchmark"].items()}


def gate_bounds(probs: np.ndarray, order: np.ndarray, scores: np.ndarray, benchmarks: Sequence[str]) -> dict[str, Any]:
    """probs, order, scores: [N, M] LOBO predictions, their fits' priors, outcomes; benchmarks: [N]."""
    columns = [str(j) for j in range(scores.shape[1])]
    scorer = _per_benchmark_gain(routing_report(scores, route_indices(probs, order), benchmarks, columns))
    fallback = _per_benchmark_gain(routing_report(scores, route_indices(order, order), benchmarks, columns))
    hindsight = {b: max(scorer[b], fallback[b]) for b in scorer}

    def row(per: dict[str, float]) -> dict[str, Any]:
        return {
            "lobo_gain": round(float(np.mean(list(per.values()))), 4),
            "per_benchmark": {b: round(v, 4) for b, v in per.items()},
        }

    return {"ungated": row(scorer), "oracle_gate": row(fallback), "hindsight_benchmark_gate": row(hindsight)}
