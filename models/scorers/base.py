"""What every quality scorer shares: the training set it sees, the interface it implements, and two tables.

A scorer maps prompt embeddings [B, D] to per-model probabilities of a good answer [B, M]. It is fitted on a
`TrainSet` (embeddings, scores, benchmark ids, per-row weights) and saved as a JSON config plus named float
arrays (the caller puts them in safetensors and meta.json). Scorers know nothing about files, calibration,
splits or routing rules; `models/quality.py` wraps one in the served predictor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass
class TrainSet:
    emb: np.ndarray  # [N, D] float32, unit rows (MiniLM sentence embeddings)
    scores: np.ndarray  # [N, M] float32 in [0, 1]: per-model outcome (0/1 or probability of the gold option)
    groups: np.ndarray  # [N] int64 benchmark id, index into group_names
    group_names: list[str]

    def __post_init__(self) -> None:
        if not len(self.emb) == len(self.scores) == len(self.groups):
            raise ValueError(
                f"emb, scores, groups have {len(self.emb)}, {len(self.scores)}, {len(self.groups)} rows; "
                "they must align."
            )
        if len(self.emb) == 0:
            raise ValueError("TrainSet is empty; there is nothing to fit.")

    def __len__(self) -> int:
        return len(self.emb)

    def take(self, rows: np.ndarray) -> TrainSet:
        """Subset (bool mask or indices); group names are kept so group ids stay stable."""
        return TrainSet(self.emb[rows], self.scores[rows], self.groups[rows], self.group_names)

    @property
    def n_models(self) -> int:
        return int(self.scores.shape[1])

    def present_groups(self) -> np.ndarray:
        """Sorted group ids that have at least one row."""
        return np.unique(self.groups)

    def group_balanced_weights(self, power: float) -> np.ndarray:
        """[N] row weights ∝ (1 / rows of the row's benchmark) ** power, mean 1. 1 = every benchmark weighs the same
        (what a benchmark-macro average rewards), 0 = every prompt weighs the same."""
        counts = np.bincount(self.groups, minlength=len(self.group_names)).astype(np.float64)
        w = (1.0 / np.maximum(counts[self.groups], 1.0)) ** power
        return np.asarray(w / w.mean(), dtype=np.float32)

    def group_table(self) -> np.ndarray:
        """[G, M] mean score of each model on each benchmark; rows of absent benchmarks are NaN."""
        table = np.full((len(self.group_names), self.n_models), np.nan, dtype=np.float32)
        for g in self.present_groups():
            table[g] = self.scores[self.groups == g].mean(axis=0)
        return table

    def macro_mean(self) -> np.ndarray:
        """[M] mean over present benchmarks of each model's mean score (each benchmark counts once)."""
        return np.asarray(np.nanmean(self.group_table(), axis=0), dtype=np.float32)


class Scorer(ABC):
    """emb [B, D] -> P(good answer) [B, M]. Subclasses register in `models.scorers.SCORERS` under `kind`."""

    kind: ClassVar[str]

    @abstractmethod
    def predict(self, emb: np.ndarray) -> np.ndarray:
        """[B, D] unit embeddings -> [B, M] float32 in (0, 1)."""

    def predict_with_signals(self, emb: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """[B, D] -> ([B, M] as `predict`, confidence signals name -> [B]) from the same pass (models/gate.py
        lists the names). A scorer without such signals returns none."""
        return self.predict(emb), {}

    @abstractmethod
    def config_json(self) -> dict[str, Any]:
        """Everything besides the arrays needed to rebuild the scorer (JSON-safe)."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """Named float arrays to save (safetensors)."""

    @classmethod
    @abstractmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Scorer:
        """Inverse of (config_json, arrays)."""
