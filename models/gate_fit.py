"""Fitting the abstention gate's threshold on the fitting rows alone, by nested cross-validation inside them.

The gate (models/gate.py) learns one number, the threshold on its signal. `GateTuner.fit(rows, signal, mode)`
picks it from a fixed grid (`GRIDS`) by the experiment's criterion computed *inside* `rows`: the mean of
  - the out-of-fold routing gain in distribution (the ID folds, restricted to `rows`), and
  - the leave-one-benchmark-out routing gain over the benchmarks present in `rows` (each one predicted by a
    scorer fitted on the others' rows of `rows`, falling back to the prior of those rows),
both benchmark-macro over the best single model of `rows`. A gate fitted for the leave-one-benchmark-out
evaluation of benchmark b is therefore tuned on nested LOBO among the other benchmarks and never sees b; a gate
fitted on the whole training part never sees the held-out prompts. Ties go to the lowest threshold (the gate
that falls back least; threshold 0 = no gate); rows from a single benchmark (or ID fold) give no evidence,
and the gate stays open. Routing during tuning uses the scorer's raw output (the shipped
calibration map is shared by all models, so it does not change an argmax).
Out-of-fold predictions and signals of each (rows, split) pair are computed once and shared by every signal
and mode. This module knows nothing about files or which gate ships.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.gate import GATE_SIGNALS, GateConfig, Mode, blend
from models.quality_cv import Fitter, routing_gain

logger = logging.getLogger(__name__)

# candidate thresholds per signal; the first (0) never closes the gate
GRIDS: dict[str, np.ndarray] = {
    "max_sim": np.r_[0.0, np.arange(0.20, 0.801, 0.01)],
    "mean_sim": np.r_[0.0, np.arange(0.10, 0.601, 0.01)],
    "purity": np.r_[0.0, np.arange(0.20, 1.001, 0.02)],
    "margin": np.r_[0.0, np.arange(0.005, 0.301, 0.005)],
}


@dataclass
class GateOOF:
    """Out-of-fold predictions on some rows, with what the gate needs."""

    rows: np.ndarray  # [n] row indices into the Fitter's TrainSet
    raw: np.ndarray  # [n, M] raw scorer output from a fit that did not see the row's fold / benchmark
    signals: dict[str, np.ndarray]  # signal name -> [n]
    prior: np.ndarray  # [n, M] benchmark-macro means of that fit's rows (fallback and tie-break)

    def gated(self, gate: GateConfig) -> np.ndarray:
        """[n, M] probabilities after the gate."""
        return blend(self.raw, gate.confidence(self.raw, self.signals, self.prior), self.prior)


def _key(rows: np.ndarray) -> str:
    return hashlib.sha1(np.packbits(rows).tobytes()).hexdigest()


class GateTuner:
    """Fits gate thresholds for one scorer spec on any subset of the Fitter's rows (see module docstring)."""

    def __init__(self, fitter: Fitter, spec: dict[str, Any], folds: np.ndarray) -> None:
        self.fitter, self.spec, self.folds = fitter, spec, folds  # folds: [N] ID fold per row
        self._oof: dict[tuple[str, str], GateOOF] = {}

    def predict(self, fit_rows: np.ndarray, at: np.ndarray) -> GateOOF:
        """Scorer fitted on `fit_rows` ([N] bool), predicting rows `at` ([n] indices)."""
        scorer = self.fitter.fit(self.spec, fit_rows)
        raw, signals = scorer.predict_with_signals(self.fitter.data.emb[at])
        prior = np.tile(self.fitter.overall(fit_rows), (len(at), 1))
        return GateOOF(at, raw, signals, prior)

    def oof(self, rows: np.ndarray, by: str) -> GateOOF:
        """Out-of-fold predictions for the rows in `rows`; by = "id" (ID folds) or "lobo" (benchmarks)."""
        key = (_key(rows), by)
        if key not in self._oof:
            held = self.folds if by == "id" else self.fitter.data.groups
            idx = np.flatnonzero(rows)
            parts = [self.predict(rows & (held != h), idx[held[idx] == h]) for h in np.unique(held[idx])]
            self._oof[key] = GateOOF(
                np.concatenate([p.rows for p in parts]),
                np.concatenate([p.raw for p in parts]),
                {k: np.concatenate([p.signals[k] for p in parts]) for k in parts[0].signals},
                np.concatenate([p.prior for p in parts]),
            )
        return self._oof[key]

    def criterion(self, rows: np.ndarray, gate: GateConfig) -> dict[str, float]:
        """Nested ID and LOBO routing gain of `gate` inside `rows`, and their mean."""
        out: dict[str, float] = {}
        for by in ("id", "lobo"):
            o = self.oof(rows, by)
            bench = [self.fitter.data.group_names[g] for g in self.fitter.data.groups[o.rows]]
            out[f"{by}_gain"] = routing_gain(o.gated(gate), self.fitter.data.scores[o.rows], bench, o.prior)
        out["criterion"] = (out["id_gain"] + out["lobo_gain"]) / 2
        return out

    def fit(self, rows: np.ndarray, signal: str, mode: Mode) -> tuple[GateConfig, dict[str, float]]:
        """The threshold of `signal` with the best nested criterion inside `rows` ([N] bool)."""
        if signal not in GATE_SIGNALS:
            raise ValueError(f"Unknown gate signal {signal!r}; choose one of {sorted(GATE_SIGNALS)}.")
        if min(len(np.unique(self.fitter.data.groups[rows])), len(np.unique(self.folds[rows]))) < 2:
            logger.warning("gate %s/%s: one benchmark or ID fold only, nothing to leave out; gate open", signal, mode)
            return GateConfig(signal, mode, 0.0), {}
        grid = [GateConfig(signal, mode, float(t)) for t in GRIDS[signal]]
        scores = [self.criterion(rows, gate) for gate in grid]
        best = max(range(len(grid)), key=lambda j: (round(scores[j]["criterion"], 9), -j))  # ties: lowest
        return grid[best], {k: round(v, 4) for k, v in scores[best].items()}


@dataclass
class GateRule:
    """How a gate is made for any fitting rows: the threshold of `signal` tuned inside them (GateTuner)."""

    tuner: GateTuner
    signal: str
    mode: Mode

    @property
    def name(self) -> str:
        return f"gate({self.signal},{self.mode})"

    def fit(self, rows: np.ndarray) -> tuple[GateConfig, dict[str, float]]:
        return self.tuner.fit(rows, self.signal, self.mode)
