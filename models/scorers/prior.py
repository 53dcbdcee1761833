"""Benchmark-prior quality scorers: what the training benchmarks say about each model, without per-prompt detail.

  - `constant`: every prompt gets each model's benchmark-macro mean score (routing by it = the best single
    model of the training data); the floor every other scorer must beat.
  - `group_prior`: a softmax classifier guesses which training benchmark a prompt resembles, and the prompt
    gets p(benchmark | x) @ table[benchmark, model], the mean score of each model on each benchmark.
    This is the prior half of the predictor shipped before issue 13. On a prompt from a benchmark it has never
    seen, it still answers with some training benchmark's table row, however unlike that benchmark the prompt is.
This module knows nothing about files or routing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from models.fit import FitConfig, fit_head
from models.heads import HeadConfig, MLPHead
from models.scorers.base import Scorer, TrainSet


@dataclass(frozen=True)
class ConstantConfig:
    pass


class ConstantScorer(Scorer):
    kind: ClassVar[str] = "constant"

    def __init__(self, prior: np.ndarray) -> None:
        self.prior = prior.astype(np.float32)  # [M]

    @classmethod
    def fit(cls, data: TrainSet, config: ConstantConfig) -> ConstantScorer:
        return cls(data.macro_mean())

    def predict(self, emb: np.ndarray) -> np.ndarray:
        return np.tile(self.prior, (len(emb), 1))

    def config_json(self) -> dict[str, Any]:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"prior": self.prior}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> ConstantScorer:
        return cls(arrays["prior"])


@dataclass(frozen=True)
class GroupPriorConfig:
    epochs: int = 20  # benchmark classifier (linear softmax) training epochs
    lr: float = 2e-3  # AdamW peak learning rate
    group_power: float = 1.0  # row weight ∝ (1 / rows of its benchmark) ** power: balanced classes
    seed: int = 0


class GroupPriorScorer(Scorer):
    kind: ClassVar[str] = "group_prior"

    def __init__(self, config: GroupPriorConfig, head: MLPHead, table: np.ndarray) -> None:
        if head.config.out_dim != len(table):
            raise ValueError(f"benchmark classifier has {head.config.out_dim} outputs, table {len(table)} rows.")
        self.config, self.head, self.table = config, head, table.astype(np.float32)  # table: [G', M]

    @classmethod
    def fit(cls, data: TrainSet, config: GroupPriorConfig) -> GroupPriorScorer:
        present = data.present_groups()  # classes = benchmarks with rows (a held-out one has none)
        y = np.searchsorted(present, data.groups)
        head = MLPHead(HeadConfig(in_dim=data.emb.shape[1], out_dim=len(present), hidden=0, dropout=0.0))
        fit_head(
            head,
            data.emb,
            y,
            "ce",
            FitConfig(epochs=config.epochs, lr=config.lr, seed=config.seed),
            data.group_balanced_weights(config.group_power),
        )
        return cls(config, head, data.group_table()[present])

    def predict(self, emb: np.ndarray) -> np.ndarray:
        return np.asarray(self.head.predict(emb) @ self.table, dtype=np.float32)

    def config_json(self) -> dict[str, Any]:
        return {**asdict(self.config), "in_dim": self.head.config.in_dim, "n_groups": len(self.table)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"table": self.table, **{f"head.{k}": v.numpy() for k, v in self.head.state_dict().items()}}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> GroupPriorScorer:
        cfg = GroupPriorConfig(**{k: v for k, v in config.items() if k not in ("in_dim", "n_groups")})
        head = MLPHead(HeadConfig(in_dim=int(config["in_dim"]), out_dim=int(config["n_groups"]), hidden=0, dropout=0.0))
        head.load_state_dict({k[5:]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("head.")})
        return cls(cfg, head.eval(), arrays["table"])
