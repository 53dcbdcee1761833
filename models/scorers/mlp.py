"""Per-model MLP quality heads: embedding -> shared hidden layer -> one sigmoid per model, trained with binary
cross-entropy on the (soft) outcome scores, rows weighted so that every benchmark counts (`group_power`).

With `hidden = 0` it is one logistic regression per model. Weights are the `MLPHead` state dict
(models/heads.py). This module knows nothing about files, calibration or routing.
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
class MLPConfig:
    hidden: int = 256  # shared hidden width; 0 = logistic regression per model
    dropout: float = 0.1  # on the input and the hidden layer, training only
    epochs: int = 20  # passes over the training rows
    lr: float = 2e-3  # AdamW peak learning rate
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    group_power: float = 1.0  # row weight ∝ (1 / rows of its benchmark) ** power
    seed: int = 0


class MLPScorer(Scorer):
    kind: ClassVar[str] = "mlp"

    def __init__(self, config: MLPConfig, head: MLPHead) -> None:
        self.config, self.head = config, head

    @classmethod
    def build(cls, config: MLPConfig, in_dim: int, n_models: int) -> MLPScorer:
        head_cfg = HeadConfig(
            in_dim=in_dim, out_dim=n_models, hidden=config.hidden, dropout=config.dropout, output="sigmoid"
        )
        return cls(config, MLPHead(head_cfg))

    @classmethod
    def fit(cls, data: TrainSet, config: MLPConfig) -> MLPScorer:
        scorer = cls.build(config, data.emb.shape[1], data.n_models)
        fit_cfg = FitConfig(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay, seed=config.seed)
        fit_head(scorer.head, data.emb, data.scores, "bce", fit_cfg, data.group_balanced_weights(config.group_power))
        return scorer

    def predict(self, emb: np.ndarray) -> np.ndarray:
        return self.head.predict(emb)

    def config_json(self) -> dict[str, Any]:
        return {**asdict(self.config), "in_dim": self.head.config.in_dim, "n_models": self.head.config.out_dim}

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.head.state_dict().items()}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> MLPScorer:
        body = {k: v for k, v in config.items() if k not in ("in_dim", "n_models")}
        scorer = cls.build(MLPConfig(**body), int(config["in_dim"]), int(config["n_models"]))
        scorer.head.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
        scorer.head.eval()
        return scorer
