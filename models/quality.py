"""QualityPredictor: prompt embedding -> calibrated per-model probability of a good answer, and the argmax route.

    x            = quality_inputs(emb, choices, w)  [B, 384] + answer format [B] -> [B, 386] (w = 0: x = emb)
    raw, signals = scorer(x)                        [B, D] -> [B, M], confidence signals [B] each
    c            = gate(raw, signals)               [B] in [0, 1]: how much the scorer knows this prompt
    predict(emb) = c * calibrator(raw) + (1 - c) * overall          [B, M]
    route(emb)   = argmax over models of predict(emb), ties -> the model with the better `overall` score

`scorer` is any registered quality scorer (models/scorers: kNN, MLP heads, matrix factorisation, contrastive,
benchmark prior, or an ensemble of them), `calibrator` one monotone map per model fitted on out-of-fold
predictions (models/calibration.py), `overall` each model's benchmark-macro mean score on the training rows,
`w` the artifact's answer-format weight (models/answer_format.py: option-scored and generated answers rank the
models differently, so same-format neighbours count more), and `gate` the abstention rule (models/gate.py):
where it closes (c = 0) the prompt gets `overall`, so the policy prefers the best single model with honest
probabilities; an open gate (no signal) leaves calibrated output.
One similarity product per prompt gives both the prediction and the signals.
Artifact (format 2): `<dir>/quality.safetensors` (the scorer's arrays) + `<dir>/meta.json` (scorer config,
calibration maps, gate, model names, overall scores, `inputs.answer_format_weight`, split, metrics, the command
that made it; an artifact without a `gate` entry has none, one without `inputs` reads embeddings alone).
This module knows nothing about text, data files or training; it maps embeddings (and format flags) to scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from models.answer_format import quality_inputs
from models.calibration import Calibrator
from models.data import REPO_ROOT
from models.errors import ArtifactError
from models.gate import GateConfig, blend
from models.scorers import Scorer, restore_scorer

DEFAULT_QUALITY_ARTIFACT = REPO_ROOT / "models" / "artifacts" / "quality"
QUALITY_VERSION = 2


def route_indices(probs: np.ndarray, overall: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """[B, M] probabilities -> [B] argmax column; among columns within `tol` of the max, the best `overall`
    ([M], or [B, M] when rows were predicted by different models)."""
    top = probs >= probs.max(axis=1, keepdims=True) - tol  # [B, M] tied for first
    tie_rank = np.where(top, np.broadcast_to(overall, probs.shape), -np.inf)
    return np.asarray(tie_rank.argmax(axis=1), dtype=np.int64)


class QualityPredictor:
    """`predict(emb) -> [B, M]` calibrated probabilities; `route(emb) -> model names`."""

    def __init__(
        self,
        scorer: Scorer,
        calibrator: Calibrator,
        models: list[str],
        overall: np.ndarray,
        meta: dict[str, Any],
        gate: GateConfig | None = None,
    ) -> None:
        if len(calibrator.columns) != len(models) or overall.shape != (len(models),):
            raise ArtifactError(
                f"quality artifact disagrees with itself: {len(models)} models, {len(calibrator.columns)} "
                f"calibration maps, overall scores of shape {overall.shape}; retrain with `triage train-quality`."
            )
        self.scorer, self.calibrator, self.models = scorer, calibrator, models
        self.overall = overall.astype(np.float32)  # [M]
        self.meta = meta
        self.gate = gate if gate is not None else GateConfig()
        self.answer_format_weight = float(meta.get("inputs", {}).get("answer_format_weight", 0.0))

    def inputs(self, embedding: np.ndarray, choices: np.ndarray | None) -> np.ndarray:
        """The scorer's input for [B, 384] unit embeddings and [B] answer-format flags (models/answer_format.py
        `choice_flags`; required when the artifact was trained with the format, ignored otherwise)."""
        if self.answer_format_weight == 0:
            return embedding
        if choices is None:
            raise ValueError(
                "this quality predictor was trained with the answer format (inputs.answer_format_weight = "
                f"{self.answer_format_weight}); pass models.answer_format.choice_flags(texts) with the embeddings"
            )
        return quality_inputs(embedding, choices, self.answer_format_weight)

    def predict_raw(self, embedding: np.ndarray, choices: np.ndarray | None = None) -> np.ndarray:
        """[B, 384] (+ [B] answer formats) -> [B, M] scorer output before calibration and gate."""
        return self.scorer.predict(self.inputs(embedding, choices))

    def predict_with_confidence(
        self, embedding: np.ndarray, choices: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """[B, 384] unit embeddings (+ [B] answer formats) -> ([B, M] probability that each model answers well,
        [B] gate confidence; 0 = the prompt got the prior `overall`)."""
        raw, signals = self.scorer.predict_with_signals(self.inputs(embedding, choices))
        confidence = self.gate.confidence(raw, signals, self.overall)
        return blend(self.calibrator.apply(raw), confidence, self.overall), confidence

    def predict(self, embedding: np.ndarray, choices: np.ndarray | None = None) -> np.ndarray:
        """[B, 384] unit embeddings (+ [B] answer formats) -> [B, M] calibrated, gated probability that each
        model answers well."""
        return self.predict_with_confidence(embedding, choices)[0]

    def route_indices(self, embedding: np.ndarray, choices: np.ndarray | None = None) -> np.ndarray:
        """[B] index of the routed model per prompt."""
        return route_indices(self.predict(embedding, choices), self.overall)

    def route(self, embedding: np.ndarray, choices: np.ndarray | None = None) -> list[str]:
        """Routed model name per prompt."""
        return [self.models[i] for i in self.route_indices(embedding, choices)]

    def save(self, out: str | Path) -> None:
        import torch
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.scorer.arrays().items()}
        save_file(tensors, str(out / "quality.safetensors"))
        meta = {
            **self.meta,
            "format_version": QUALITY_VERSION,
            "models": self.models,
            "overall": [round(float(v), 6) for v in self.overall],
            "scorer": {"kind": self.scorer.kind, **self.scorer.config_json()},
            "calibration": self.calibrator.to_json(),
            "gate": {**self.meta.get("gate", {}), **self.gate.to_json()},
            "inputs": {**self.meta.get("inputs", {}), "answer_format_weight": self.answer_format_weight},
        }
        (out / "meta.json").write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")

    @classmethod
    def load(cls, artifact_dir: str | Path | None = None) -> QualityPredictor:
        from safetensors.numpy import load_file

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
        try:
            scorer = restore_scorer(meta["scorer"], load_file(str(weights)))
            calibrator = Calibrator.from_json(meta["calibration"])
            gate = GateConfig.from_json(meta.get("gate"))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ArtifactError(
                f"{weights} does not match {meta_path} ({e!r}); retrain with `triage train-quality`."
            ) from e
        overall = np.asarray(meta["overall"], dtype=np.float32)
        return cls(scorer, calibrator, list(meta["models"]), overall, meta, gate)
