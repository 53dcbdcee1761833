"""QualityPredictor: prompt embedding -> per-model probability of a good answer, and the argmax route.

Two small heads on the 384-d embedding, blended:
  - quality head: M sigmoid outputs (one per candidate model), trained with binary cross-entropy on the
    RouterDC outcome scores (0/1, or the probability of the gold option);
  - group prior: a softmax head that recognises which benchmark-like group a prompt resembles, times a
    table prior[g, m] = mean training score of model m on group g.
`predict = (1 - w) * head + w * p(group | x) @ prior`, with w chosen on an inner split of the training
prompts. Per-prompt head estimates are noisy (7 models that differ by a few points); the prior carries the
stable "MetaMath is best on grade-school maths" signal and the head the rest.
Artifact: `<dir>/quality.safetensors` + `<dir>/meta.json` (model names, groups, head configs, split, metrics).
This module knows nothing about text, data files or training; it maps embeddings to scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.data import REPO_ROOT
from models.errors import ArtifactError
from models.heads import HeadConfig, MLPHead

DEFAULT_QUALITY_ARTIFACT = REPO_ROOT / "models" / "artifacts" / "quality"
QUALITY_VERSION = 1


class QualityPredictor:
    """`predict(emb) -> [B, M]` probabilities; `route(emb) -> model names`."""

    def __init__(
        self,
        head: MLPHead,
        group_head: MLPHead,
        prior: np.ndarray,
        models: list[str],
        groups: list[str],
        prior_weight: float,
        meta: dict[str, Any],
    ) -> None:
        # prior: [G, M] mean score of each model on each group
        if head.config.out_dim != len(models) or prior.shape != (len(groups), len(models)):
            raise ArtifactError(
                f"quality artifact shapes disagree: head {head.config.out_dim} outputs, prior "
                f"{prior.shape}, {len(groups)} groups x {len(models)} models; retrain."
            )
        if group_head.config.out_dim != len(groups):
            raise ArtifactError(f"group head has {group_head.config.out_dim} outputs for {len(groups)} groups.")
        if not 0.0 <= prior_weight <= 1.0:
            raise ArtifactError(f"prior_weight must be in [0, 1], got {prior_weight}.")
        self.head, self.group_head, self.prior = head, group_head, prior.astype(np.float32)
        self.models, self.groups, self.prior_weight, self.meta = models, groups, prior_weight, meta

    def predict_parts(self, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B, 384] -> (head probabilities [B, M], group-prior scores [B, M])."""
        return self.head.predict(embedding), self.group_head.predict(embedding) @ self.prior

    def predict(self, embedding: np.ndarray, prior_weight: float | None = None) -> np.ndarray:
        """[B, 384] unit embeddings -> [B, M] probability that each model answers well."""
        w = self.prior_weight if prior_weight is None else prior_weight
        head, prior = self.predict_parts(embedding)
        return np.asarray((1.0 - w) * head + w * prior, dtype=np.float32)

    def route(self, embedding: np.ndarray) -> list[str]:
        """Argmax model per prompt."""
        return [self.models[i] for i in self.predict(embedding).argmax(axis=1)]

    def save(self, out: str | Path) -> None:
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        tensors |= {f"group_head.{k}": v.detach().cpu().contiguous() for k, v in self.group_head.state_dict().items()}
        tensors["prior"] = torch.as_tensor(self.prior, dtype=torch.float32)
        save_file(tensors, str(out / "quality.safetensors"))
        meta = {
            **self.meta,
            "format_version": QUALITY_VERSION,
            "models": self.models,
            "groups": self.groups,
            "prior_weight": self.prior_weight,
            "head": self.head.config.to_json(),
            "group_head": self.group_head.config.to_json(),
        }
        (out / "meta.json").write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")

    @classmethod
    def load(cls, artifact_dir: str | Path | None = None) -> QualityPredictor:
        from safetensors.torch import load_file

        adir = Path(artifact_dir) if artifact_dir is not None else DEFAULT_QUALITY_ARTIFACT
        meta_path, weights = adir / "meta.json", adir / "quality.safetensors"
        if not meta_path.is_file() or not weights.is_file():
            raise ArtifactError(f"{adir} lacks meta.json or quality.safetensors; run `triage train-quality`.")
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if meta.get("format_version") != QUALITY_VERSION:
            raise ArtifactError(
                f"{meta_path}: format_version {meta.get('format_version')} != {QUALITY_VERSION}; "
                "retrain with `triage train-quality`."
            )
        tensors = load_file(str(weights))
        heads = {}
        for name in ("head", "group_head"):
            h = MLPHead(HeadConfig.from_json(meta[name]))
            try:
                h.load_state_dict({k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{name}.")})
            except RuntimeError as e:
                raise ArtifactError(f"{weights} does not match {meta_path} ({e}); retrain.") from e
            heads[name] = h.eval()
        if "prior" not in tensors:
            raise ArtifactError(f"{weights} has no 'prior' table; retrain with `triage train-quality`.")
        return cls(
            heads["head"],
            heads["group_head"],
            tensors["prior"].numpy(),
            list(meta["models"]),
            list(meta["groups"]),
            float(meta["prior_weight"]),
            meta,
        )
