"""Small heads on the 384-d sentence embedding: task category, complexity and per-model quality.

One module class, `MLPHead` (linear when `hidden == 0`), configured by `HeadConfig` with named presets:
  - task:        embedding -> 11 logits, softmax = category distribution;
  - complexity:  embedding -> 1 logit, sigmoid = predicted share of the 7 open 7B/8B models in the RouterDC
                 outcomes that get the prompt wrong (0 = all of them answer it, 1 = none does);
  - quality:     embedding -> M logits, sigmoid = per-model probability of a good answer.
Weights are saved with safetensors under `<head name>.<param>` keys; configs go in the caller's JSON metadata.
This module knows nothing about tokenization, data files or training loops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from models.errors import ArtifactError

Output = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class HeadConfig:
    in_dim: int = 384  # sentence-embedding width
    out_dim: int = 11  # categories, 1 (complexity) or number of models (quality)
    hidden: int = 256  # hidden width of the single hidden layer; 0 = plain linear/logistic head
    dropout: float = 0.1  # on the input embedding and the hidden layer, training only
    output: Output = "softmax"  # activation that turns logits into the reported numbers

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> HeadConfig:
        if name not in HEAD_PRESETS:
            raise KeyError(f"Unknown head preset {name!r}; choose one of {sorted(HEAD_PRESETS)}.")
        return replace(HEAD_PRESETS[name], **overrides)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HeadConfig:
        try:
            return cls(**d)
        except TypeError as e:
            raise ArtifactError(f"Head config {d} does not match HeadConfig ({e}); retrain the artifact.") from e

    def n_params(self) -> int:
        if self.hidden == 0:
            return (self.in_dim + 1) * self.out_dim
        return (self.in_dim + 1) * self.hidden + (self.hidden + 1) * self.out_dim


HEAD_PRESETS: dict[str, HeadConfig] = {
    "task-mlp": HeadConfig(out_dim=11, hidden=256, dropout=0.1, output="softmax"),
    "task-linear": HeadConfig(out_dim=11, hidden=0, dropout=0.0, output="softmax"),
    "complexity": HeadConfig(out_dim=1, hidden=64, dropout=0.1, output="sigmoid"),
    "quality": HeadConfig(out_dim=7, hidden=128, dropout=0.1, output="sigmoid"),
}


class MLPHead(nn.Module):
    """x [B, in_dim] -> logits [B, out_dim]; `predict` applies the configured output activation."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        if config.hidden == 0:
            self.net: nn.Module = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.in_dim, config.out_dim))
        else:
            self.net = nn.Sequential(
                nn.Dropout(config.dropout),
                nn.Linear(config.in_dim, config.hidden),
                nn.GELU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden, config.out_dim),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    @torch.inference_mode()
    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """[B, in_dim] embeddings -> [B, out_dim] probabilities (softmax rows or independent sigmoids)."""
        self.eval()
        xt = torch.as_tensor(x, dtype=torch.float32)
        logits = self.forward(xt)
        probs = logits.softmax(dim=-1) if self.config.output == "softmax" else logits.sigmoid()
        return probs.numpy().astype(np.float32)


def save_heads(path: str | Path, heads: dict[str, MLPHead]) -> None:
    """Write all heads into one safetensors file with keys `<name>.<param>`."""
    from safetensors.torch import save_file

    tensors = {
        f"{name}.{k}": v.detach().cpu().contiguous() for name, h in heads.items() for k, v in h.state_dict().items()
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


def load_heads(path: str | Path, configs: dict[str, HeadConfig]) -> dict[str, MLPHead]:
    """Rebuild the heads named in `configs` from a safetensors file written by `save_heads`."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ArtifactError(f"Head weights {path} not found; run the training script that writes them.")
    tensors = load_file(str(path))
    heads: dict[str, MLPHead] = {}
    for name, cfg in configs.items():
        head = MLPHead(cfg)
        state = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{name}.")}
        try:
            head.load_state_dict(state)
        except RuntimeError as e:
            raise ArtifactError(
                f"{path}: weights for head {name!r} do not fit its config ({e}); "
                "the JSON metadata and safetensors file are out of sync, retrain."
            ) from e
        heads[name] = head.eval()
    return heads
