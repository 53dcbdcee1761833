"""Minibatch AdamW training of one small head (`MLPHead` or any logits module) on precomputed embeddings.

`fit_head` supports the three losses the heads need: cross-entropy on class ids (task), and binary
cross-entropy on soft targets in [0, 1] (complexity, quality). Per-row weights carry class balancing and
label-quality weighting. This module knows nothing about files, categories or models' names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Loss = Literal["ce", "bce"]


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 40  # passes over the training rows
    lr: float = 2e-3  # AdamW peak learning rate, cosine-decayed to 0
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    batch_size: int = 256  # rows per step
    label_smoothing: float = 0.0  # ce only
    seed: int = 0  # init + shuffling


def fit_head(
    head: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    loss: Loss,
    config: FitConfig,
    sample_weight: np.ndarray | None = None,
) -> list[float]:
    """Train `head` (any module mapping [B, D] -> [B, K] logits) in place. x: [N, D] float32; y: [N] int (ce)
    or [N, K] float in [0, 1] (bce). Linear layers are re-initialised from the seed first.

    sample_weight: [N] non-negative, normalised to mean 1. Returns the mean loss per epoch.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}; they must align.")
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    for m in head.modules():  # re-init deterministically from the seed
        if isinstance(m, torch.nn.Linear):
            m.reset_parameters()
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long if loss == "ce" else torch.float32)
    if loss == "bce" and yt.dim() == 1:
        yt = yt.unsqueeze(1)
    w = torch.ones(len(x)) if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32)
    w = w / w.mean()
    steps_per_epoch = max(1, (len(x) + config.batch_size - 1) // config.batch_size)
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    history: list[float] = []
    head.train()
    for _ in range(config.epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for s in range(0, len(x), config.batch_size):
            idx = perm[s : s + config.batch_size]
            logits = head(xt[idx])
            if loss == "ce":
                per_row = F.cross_entropy(logits, yt[idx], reduction="none", label_smoothing=config.label_smoothing)
            else:
                per_row = F.binary_cross_entropy_with_logits(logits, yt[idx], reduction="none").mean(dim=1)
            batch_loss = (per_row * w[idx]).mean()
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            total += batch_loss.detach().item() * len(idx)
        history.append(total / len(x))
    head.eval()
    return history


def balanced_weights(labels: np.ndarray, n_classes: int, power: float = 0.5) -> np.ndarray:
    """[N] row weights ∝ (1 / class count) ** power: 0 = none, 1 = fully balanced, 0.5 = in between."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    per_class = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    return np.asarray(per_class[labels] / per_class[labels].mean(), dtype=np.float32)


def family_balanced_weights(labels: np.ndarray, families: Sequence[str] | np.ndarray, power: float = 1.0) -> np.ndarray:
    """[N] row weights that share each class's weight among its source families: ∝ (n_c / (k_c · n_cf)) ** power.

    n_c rows of class c come from k_c families, n_cf of them from family f. power 0 = no change, 1 = every
    family of a class weighs the same in total, so one big templated source cannot define the class. Each
    class keeps its total weight (n_c), so this composes with `balanced_weights` by multiplication.
    """
    fam = np.asarray(families)
    w = np.ones(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        in_c = labels == c
        names, inverse, counts = np.unique(fam[in_c], return_inverse=True, return_counts=True)
        raw = (in_c.sum() / (len(names) * counts[inverse])) ** power
        w[in_c] = raw * in_c.sum() / raw.sum()
    return np.asarray(w / w.mean(), dtype=np.float32)
