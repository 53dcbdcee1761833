"""Committed classifier artifact: loads, classifies obvious prompts, shapes and ranges are right."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.classifier import DEFAULT_ARTIFACT, PromptClassifier
from models.errors import ArtifactError
from models.features import N_FEATURES
from models.heads import HEAD_PRESETS, MLPHead, load_heads, save_heads
from models.task_head import TaskHead

OBVIOUS = {
    "Write a Python function that returns the n-th Fibonacci number using memoization.": "code",
    "Tom has 3 boxes with 12 apples each. He gives away 15 apples. How many apples are left?": "math",
    "请用三句话介绍一下长城的历史。": "translation_multilingual",  # any non-English prompt
    "Summarize the following article in two sentences: The city council voted on Tuesday to expand the bike "
    "lane network by 40 miles over the next five years, citing safety and congestion.": "summarization",
}

SANITY = {
    "Write a Python function that merges two sorted lists.": "code",
    "Prove that sqrt(2) is irrational.": "math",
    "Summarize the following article: Scientists announced on Monday that a new battery chemistry could "
    "double the range of electric cars while cutting costs by a third.": "summarization",
    "Translate 'good morning' into Spanish": "translation_multilingual",
    "Write a haiku about the sea": "creative_writing",
    "Is this review positive or negative? The food was cold and the waiter ignored us all evening.": ("classification"),
}


def test_artifact_is_small_and_describes_itself() -> None:
    size = sum(p.stat().st_size for p in DEFAULT_ARTIFACT.iterdir())
    assert size < 5_000_000
    meta = json.loads((DEFAULT_ARTIFACT / "labels.json").read_text())
    assert len(meta["categories"]) == 11 and meta["max_tokens"] == 256
    metrics = json.loads((DEFAULT_ARTIFACT / "metrics.json").read_text())
    assert 0.0 < metrics["task"]["macro_f1"] <= 1.0
    assert metrics["task"]["split"]["val_families"]


def test_classifies_obvious_prompts(classifier: PromptClassifier) -> None:
    out = classifier.classify_batch(list(OBVIOUS))
    assert out.probs.shape == (len(OBVIOUS), 11) and out.embedding.shape == (len(OBVIOUS), 384)
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-5)
    assert ((out.complexity >= 0) & (out.complexity <= 1)).all()
    assert out.top() == list(OBVIOUS.values()), dict(zip(OBVIOUS.values(), out.top(), strict=True))


# "Prove that sqrt(2) is irrational" has no proof-style neighbour in the training data (GSM8K word problems,
# MMLU, BBH); it landed on general_qa until source families were balanced within each category.
@pytest.mark.parametrize(("prompt", "category"), SANITY.items())
def test_sanity_prompts(classifier: PromptClassifier, prompt: str, category: str) -> None:
    assert classifier.classify_batch([prompt]).top() == [category]


def test_artifact_records_the_tuning_protocol() -> None:
    task = json.loads((DEFAULT_ARTIFACT / "metrics.json").read_text())["task"]
    assert task["tuning"]["candidates"] and 0.0 < task["gold_only"]["macro_f1"] <= 1.0
    assert task["head"]["temperature"] == task["tuning"]["temperature"] > 0.0


def test_warmup_returns_seconds(classifier: PromptClassifier) -> None:
    assert classifier.warmup() >= 0.0


def test_heads_round_trip(tmp_path: Path) -> None:
    heads = {"task": MLPHead(HEAD_PRESETS["task-mlp"]), "complexity": MLPHead(HEAD_PRESETS["complexity"])}
    save_heads(tmp_path / "h.safetensors", heads)
    again = load_heads(tmp_path / "h.safetensors", {k: h.config for k, h in heads.items()})
    x = np.random.default_rng(0).normal(size=(3, 384)).astype(np.float32)
    for k in heads:
        np.testing.assert_allclose(again[k].predict(x), heads[k].predict(x), atol=1e-6)


def test_missing_artifact_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="train-classifier"):
        PromptClassifier.load(tmp_path)


def test_static_vectors_path_serves_and_checks_its_width(classifier: PromptClassifier) -> None:
    """A head that reads static word-piece vectors gets dense [B, 384 + 8 + 768] from one encoder pass."""
    rng = np.random.default_rng(0)
    base = classifier.task_head.config
    dim = classifier.encoder.dim + N_FEATURES + 2 * classifier.encoder.dim
    cfg = replace(base, dense_dim=dim, static_chars=150)
    weight = rng.normal(size=(dim, 11)).astype(np.float32)  # [D, C]
    head = TaskHead(cfg, weight, np.zeros(11, np.float32), classifier.task_head.lexical)
    parts = (classifier.complexity_head, classifier.labels, classifier.meta)
    clf = PromptClassifier(classifier.encoder, head, *parts)
    assert clf.static_table is not None and clf.static_table.shape[1] == classifier.encoder.dim
    out = clf.classify_batch(["Write a haiku about the sea", "x " * 400 + "Summarize the text above."])
    assert out.probs.shape == (2, 11)
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-5)
    narrow = TaskHead(replace(cfg, dense_dim=dim - 1), weight[:-1], head.bias, head.lexical)
    with pytest.raises(ArtifactError, match="static"):
        PromptClassifier(classifier.encoder, narrow, *parts)
