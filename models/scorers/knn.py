"""k-nearest-neighbour quality scorer: a prompt gets the weighted mean target of its most similar training
prompts, shrunk toward a prior.

    p(x)  = (sum_i w_i * t_i + shrink * prior) / (sum_i w_i + shrink)      over the k nearest neighbours i
    t_i   = local * y_i + (1 - local) * mean_y(benchmark of i)            (local 1 = the neighbour's own scores)
    w_i   = exp((cos(x, x_i) - ref) / temperature) * row_weight_i          (temperature 0 = equal weights)
    ref   = max_j cos(x, x_j) (relative weights), or a fixed `ood_sim`, so that a prompt far from every
            training prompt gets little neighbour weight and falls back to the prior

`prior` is the benchmark-macro mean score of each model (each training benchmark counts once); `row_weight`
can balance benchmarks (`group_power`). Each neighbour's own 0/1 outcomes are noisy; mixing in its
benchmark's mean (`local` < 1) keeps the per-prompt signal while averaging most of the noise away.
`predict_with_signals` also returns, from the same neighbours, how familiar the prompt is (the abstention
gate's inputs, models/gate.py): `max_sim` and `mean_sim` (cosine to the nearest / mean over the k nearest)
and `purity` (share of the k nearest from their most common training benchmark).
Stored: the training embeddings as int8 with one float scale per row ([N, D] + [N]; cosine error ~1e-3, and
the fitted scorer already uses the quantised vectors, so a saved one predicts exactly the same), the targets
t ([N, M]), row weights, benchmark ids ([N]) and the prior. Serving cost per prompt: one [D] x [D, N] product
and a top-k.
This module knows nothing about files or routing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from models.scorers.base import Scorer, TrainSet


@dataclass(frozen=True)
class KNNConfig:
    k: int = 50  # neighbours per prompt
    temperature: float = 0.05  # softmax temperature on cosine similarity; 0 = plain mean
    shrink: float = 1.0  # pseudo-count of the prior, in units of neighbour weight
    group_power: float = 1.0  # row weight ∝ (1 / rows of its benchmark) ** power
    # what a neighbour contributes: local * its own scores + (1 - local) * its benchmark's mean scores
    local: float = 1.0
    # None: weights relative to the nearest neighbour (max weight 1, the prior is a fixed share); a number s0:
    # absolute weights exp((cos - s0) / temperature), so a prompt far from all training prompts gets the prior
    ood_sim: float | None = None


class KNNScorer(Scorer):
    kind: ClassVar[str] = "knn"

    def __init__(
        self,
        config: KNNConfig,
        emb: np.ndarray,
        scores: np.ndarray,
        row_weight: np.ndarray,
        prior: np.ndarray,
        groups: np.ndarray | None = None,
    ) -> None:
        self.config = config
        self.emb_q, self.emb_scale = quantize(emb)  # [N, D] int8, [N] float32
        self.emb = dequantize(self.emb_q, self.emb_scale)  # [N, D] float32, what predict() uses
        # the similarity product runs in torch: numpy's OpenBLAS spreads even a [1, D] x [D, N] product over
        # every core, which costs milliseconds per request on a busy host; torch obeys the process's thread
        # setting and takes ~0.3 ms for N = 6k
        self._emb_t = torch.from_numpy(self.emb)
        self.scores = scores.astype(np.float32)  # [N, M]
        self.row_weight = row_weight.astype(np.float32)  # [N]
        self.prior = prior.astype(np.float32)  # [M]
        # [N] benchmark id per training row (for `purity`); None in artifacts saved before the gate existed
        self.groups = None if groups is None else groups.astype(np.int64)

    @classmethod
    def fit(cls, data: TrainSet, config: KNNConfig) -> KNNScorer:
        targets = config.local * data.scores + (1.0 - config.local) * data.group_table()[data.groups]  # [N, M]
        weights = data.group_balanced_weights(config.group_power)
        return cls(config, data.emb, targets, weights, data.macro_mean(), data.groups)

    def neighbours(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B, D] -> (indices [B, k], cosine similarities [B, k]) of the nearest training prompts."""
        with torch.inference_mode():
            sims = (torch.as_tensor(emb, dtype=torch.float32) @ self._emb_t.T).numpy()  # [B, N]
        k = min(self.config.k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # [B, k] unordered
        return idx, np.take_along_axis(sims, idx, axis=1)

    def predict(self, emb: np.ndarray) -> np.ndarray:
        return self._combine(*self.neighbours(emb))

    def predict_with_signals(self, emb: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        idx, sims = self.neighbours(emb)  # [B, k], [B, k]
        signals = {"max_sim": sims.max(axis=1), "mean_sim": sims.mean(axis=1)}
        if self.groups is not None:
            g = self.groups[idx]  # [B, k] benchmark of each neighbour
            counts = (g[:, :, None] == np.arange(int(self.groups.max()) + 1)).sum(axis=1)  # [B, G]
            signals["purity"] = counts.max(axis=1) / idx.shape[1]
        return self._combine(idx, sims), {k: np.asarray(v, dtype=np.float32) for k, v in signals.items()}

    def _combine(self, idx: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """Neighbours (indices [B, k], cosines [B, k]) -> [B, M] probabilities (the formula above)."""
        c = self.config
        if c.temperature > 0:
            ref = sims.max(axis=1, keepdims=True) if c.ood_sim is None else c.ood_sim
            w = np.exp((sims - ref) / c.temperature)  # [B, k]
        else:
            w = np.ones_like(sims)
        w = w * self.row_weight[idx]  # [B, k]
        num = np.einsum("bk,bkm->bm", w, self.scores[idx]) + c.shrink * self.prior
        return np.asarray(num / (w.sum(axis=1, keepdims=True) + c.shrink), dtype=np.float32)

    def config_json(self) -> dict[str, Any]:
        return asdict(self.config)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "emb_q": self.emb_q,
            "emb_scale": self.emb_scale,
            "scores": self.scores,
            "row_weight": self.row_weight,
            "prior": self.prior,
            **({} if self.groups is None else {"groups": self.groups}),
        }

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> KNNScorer:
        emb = dequantize(arrays["emb_q"], arrays["emb_scale"])
        return cls(
            KNNConfig(**config), emb, arrays["scores"], arrays["row_weight"], arrays["prior"], arrays.get("groups")
        )


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, D] float -> ([N, D] int8, [N] float32 scale) with x ≈ q * scale; idempotent on its own output."""
    scale = np.maximum(np.abs(x).max(axis=1), 1e-12).astype(np.float32) / 127.0
    q = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.asarray(q.astype(np.float32) * scale[:, None], dtype=np.float32)
