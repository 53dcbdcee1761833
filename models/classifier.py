"""PromptClassifier: texts -> category distribution, complexity and embedding, in one synchronous call.

Loads the artifact written by `models/train_classifier.py` (heads.safetensors + labels.json) and a
`SentenceEncoder` whose max_tokens/truncation match what the heads were trained with. The task head
(models/task_head.py) is one linear model over the prompt embedding, 8 surface features (models/features.py),
when the artifact asks for them the static word-piece vectors of the prompt's start and end (a lookup in the
encoder's input embedding table, models/static_vectors.py; the transformer still runs once per prompt) and
hashed word n-grams of the prompt's start and end (models/lexical.py), with a fitted softmax temperature;
the complexity head reads the embedding only.
`classify_batch` is blocking: call it from a worker thread (models/batcher.py does) or the GPU thread.
This module knows nothing about asyncio, HTTP or routing policy.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.data import REPO_ROOT
from models.encoder import EncoderConfig, SentenceEncoder
from models.errors import ArtifactError
from models.features import N_FEATURES, task_inputs
from models.heads import HeadConfig, MLPHead, load_heads
from models.lexical import lexical_rows
from models.static_vectors import input_table, static_vectors
from models.task_head import TaskHead, TaskHeadConfig

logger = logging.getLogger(__name__)
DEFAULT_ARTIFACT = REPO_ROOT / "models" / "artifacts" / "classifier"
SUPPORTED_VERSIONS = (2,)


@dataclass
class ClassifierOutput:
    labels: list[str]  # category order = columns of probs
    probs: np.ndarray  # [B, C] float32, rows sum to 1
    complexity: np.ndarray  # [B] float32 in [0, 1]; see labels.json "complexity_meaning"
    embedding: np.ndarray  # [B, 384] float32, unit rows

    def top(self) -> list[str]:
        """Most likely category per row."""
        return [self.labels[i] for i in self.probs.argmax(axis=1)]


def read_meta(artifact_dir: Path) -> dict[str, Any]:
    path = artifact_dir / "labels.json"
    if not path.is_file():
        raise ArtifactError(f"{path} not found; run `triage train-classifier --out {artifact_dir}` first.")
    meta: dict[str, Any] = json.loads(path.read_text())
    if meta.get("format_version") not in SUPPORTED_VERSIONS:
        raise ArtifactError(
            f"{path} has format_version {meta.get('format_version')}, this code reads "
            f"{SUPPORTED_VERSIONS}; retrain with `triage train-classifier`."
        )
    return meta


def load_task_head(path: Path, config: TaskHeadConfig) -> TaskHead:
    """The task head's tensors from the artifact's safetensors file."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ArtifactError(f"Head weights {path} not found; run `triage train-classifier`.")
    return TaskHead.from_tensors(config, load_file(str(path)), path)


class PromptClassifier:
    """Encoder + task head + complexity head. Build with `PromptClassifier.load()`."""

    def __init__(
        self,
        encoder: SentenceEncoder,
        task_head: TaskHead,
        complexity_head: MLPHead,
        labels: list[str],
        meta: dict[str, Any],
    ) -> None:
        if task_head.config.n_classes != len(labels):
            raise ArtifactError(f"task head has {task_head.config.n_classes} outputs but {len(labels)} labels.")
        static_dim = 2 * encoder.dim if task_head.config.static_chars > 0 else 0
        if (
            encoder.dim + N_FEATURES + static_dim != task_head.config.dense_dim
            or encoder.dim != complexity_head.config.in_dim
        ):
            raise ArtifactError(
                f"encoder gives {encoder.dim}-d embeddings, heads expect task {task_head.config.dense_dim} = "
                f"dim + {N_FEATURES} (+ 2 x dim static vectors when static_chars > 0) and complexity "
                f"{complexity_head.config.in_dim}; use the encoder named in labels.json."
            )
        self.encoder, self.task_head, self.complexity_head = encoder, task_head, complexity_head
        self.labels, self.meta = labels, meta
        # [V, H] float32 input word-piece table, only when the task head reads static vectors
        self.static_table = input_table(encoder.hf_model) if static_dim else None

    @classmethod
    def load(
        cls,
        artifact_dir: str | Path | None = None,
        encoder: EncoderConfig | None = None,
    ) -> PromptClassifier:
        """Read the artifact; encoder model and max_tokens default to those the heads were trained with."""
        adir = Path(artifact_dir) if artifact_dir is not None else DEFAULT_ARTIFACT
        meta = read_meta(adir)
        trained = EncoderConfig(model=meta.get("encoder_model", ""), max_tokens=int(meta["max_tokens"]))
        enc_cfg = encoder or trained
        if enc_cfg.encoder_id != trained.encoder_id or enc_cfg.max_tokens != trained.max_tokens:
            logger.warning(
                "encoder %s/max_tokens=%d differs from training (%s/%d); scores may drift",
                enc_cfg.encoder_id,
                enc_cfg.max_tokens,
                trained.encoder_id,
                trained.max_tokens,
            )
        if "task" not in meta["heads"] or "complexity" not in meta["heads"]:
            raise ArtifactError(f"{adir}/labels.json must describe 'task' and 'complexity' heads; retrain.")
        weights = adir / "heads.safetensors"
        cx = load_heads(weights, {"complexity": HeadConfig.from_json(meta["heads"]["complexity"])})
        task = load_task_head(weights, TaskHeadConfig.from_json(meta["heads"]["task"]))
        return cls(SentenceEncoder(enc_cfg), task, cx["complexity"], list(meta["categories"]), meta)

    def classify_embeddings(self, texts: list[str], embedding: np.ndarray) -> ClassifierOutput:
        """Heads only: texts [B] (for surface and lexical features) and their embeddings [B, 384]."""
        cfg = self.task_head.config
        dense = task_inputs(embedding, texts)  # [B, 384 + N_FEATURES]
        if self.static_table is not None:
            static = static_vectors(texts, self.encoder.tokenizer, self.static_table, cfg.static_chars)
            dense = np.hstack([dense, static])  # [B, 384 + N_FEATURES + 768]
        return ClassifierOutput(
            labels=self.labels,
            probs=self.task_head.predict(dense, lexical_rows(texts, cfg.lexical)),
            complexity=self.complexity_head.predict(embedding)[:, 0],
            embedding=embedding,
        )

    def classify_batch(self, texts: list[str]) -> ClassifierOutput:
        """Blocking: texts -> probs [B, C], complexity [B], embedding [B, 384]. One encoder call per batch."""
        return self.classify_embeddings(texts, self.encoder.encode(texts))

    def warmup(self) -> float:
        """Encoder warm-up (one batch per bucket) plus one real classification; returns seconds."""
        t0 = time.perf_counter()
        self.encoder.warmup()
        self.classify_batch(["def add(a, b): return a + b", "What is 12 * 7?"])
        seconds = time.perf_counter() - t0
        logger.info(
            "classifier warm-up took %.2f s (impl=%s, device=%s)",
            seconds,
            self.encoder.impl,
            self.encoder.device,
        )
        return seconds

    def with_encoder(self, config: EncoderConfig) -> PromptClassifier:
        """Same heads, another encoder implementation (e.g. impl='triton')."""
        return PromptClassifier(
            SentenceEncoder(replace(config)), self.task_head, self.complexity_head, self.labels, self.meta
        )
