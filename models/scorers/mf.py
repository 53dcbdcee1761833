"""Matrix-factorisation quality scorer, after RouteLLM's MF router (`routers/matrix_factorization/model.py`):

    logit(q, m) = w2 . (normalize(v_m) ⊙ (W1 q)) + b_m

q [D] is the prompt embedding, W1 [dim, D] projects it into a latent space shared with one learned vector
v_m [dim] per model, w2 [dim] reads the affinity out. RouteLLM learns it from pairwise win labels (the
difference of two models' logits); our outcomes give every model's score on every prompt, so each (prompt,
model) cell is trained with binary cross-entropy directly and a per-model bias b_m (absent in RouteLLM, where
it cancels in the difference) carries each model's base rate. This module knows nothing about files or routing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.fit import FitConfig, fit_head
from models.scorers.base import Scorer, TrainSet


@dataclass(frozen=True)
class MFConfig:
    dim: int = 128  # latent width (RouteLLM: 128)
    dropout: float = 0.1  # on the projected prompt, training only
    epochs: int = 20
    lr: float = 2e-3
    weight_decay: float = 1e-4
    group_power: float = 1.0  # row weight ∝ (1 / rows of its benchmark) ** power
    seed: int = 0


class MFNet(nn.Module):
    """q [B, D] -> logits [B, M]."""

    def __init__(self, in_dim: int, n_models: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim, bias=False)  # W1
        self.models = nn.Parameter(torch.randn(n_models, dim) / dim**0.5)  # v_m, [M, dim]
        self.readout = nn.Linear(dim, 1, bias=False)  # w2
        self.bias = nn.Parameter(torch.zeros(n_models))  # b_m
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        z = self.drop(self.proj(q))  # [B, dim]
        v = F.normalize(self.models, dim=1)  # [M, dim]
        return self.readout(z[:, None, :] * v[None, :, :])[..., 0] + self.bias  # type: ignore[no-any-return]


class MFScorer(Scorer):
    kind: ClassVar[str] = "mf"

    def __init__(self, config: MFConfig, net: MFNet) -> None:
        self.config, self.net = config, net

    @classmethod
    def fit(cls, data: TrainSet, config: MFConfig) -> MFScorer:
        torch.manual_seed(config.seed)
        net = MFNet(data.emb.shape[1], data.n_models, config.dim, config.dropout)
        fit_cfg = FitConfig(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay, seed=config.seed)
        fit_head(net, data.emb, data.scores, "bce", fit_cfg, data.group_balanced_weights(config.group_power))
        return cls(config, net)

    @torch.inference_mode()
    def predict(self, emb: np.ndarray) -> np.ndarray:
        self.net.eval()
        return np.asarray(self.net(torch.as_tensor(emb, dtype=torch.float32)).sigmoid().numpy(), dtype=np.float32)

    def config_json(self) -> dict[str, Any]:
        return {**asdict(self.config), "in_dim": self.net.proj.in_features, "n_models": len(self.net.bias)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> MFScorer:
        cfg = MFConfig(**{k: v for k, v in config.items() if k not in ("in_dim", "n_models")})
        net = MFNet(int(config["in_dim"]), int(config["n_models"]), cfg.dim, cfg.dropout)
        net.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
        return cls(cfg, net.eval())
