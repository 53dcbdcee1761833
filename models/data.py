"""Readers for the two training files: labelled prompts and per-model outcomes (gzipped JSON Lines).

`load_prompts` returns parallel lists for the category data; `load_outcomes` pivots (prompt, model) rows into
a score matrix [P, M]. Default paths are relative to the repository root. This module knows nothing about
embeddings or models; it only parses, validates and hashes files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROMPTS = REPO_ROOT / "../shared/data/prompts_train.jsonl.gz"
DEFAULT_OUTCOMES = REPO_ROOT / "../shared/data/outcomes_routerdc_train.jsonl.gz"
GOLD_LABEL_METHODS = frozenset({"source_label", "source_label_mapped", "source_language"})


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (streamed, 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a .jsonl or .jsonl.gz file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Data file {p} does not exist; pass the right path (see --help).")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{p}:{n} is not valid JSON ({e}); fix or regenerate the file.") from e


@dataclass
class PromptSet:
    """Labelled prompts, one entry per row in file order."""

    ids: list[str]
    texts: list[str]
    categories: list[str]
    sources: list[str]
    label_methods: list[str]
    task_labels: list[str | None]
    sha256: str

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def cache_id(self) -> str:
        """Key for the embedding cache: the file hash (rows are embedded in file order)."""
        return f"prompts:{self.sha256}"

    def is_gold(self) -> np.ndarray:
        """[N] bool: the label is the source's own (not a regex rule)."""
        return np.array([m in GOLD_LABEL_METHODS for m in self.label_methods])


def load_prompts(path: str | Path = DEFAULT_PROMPTS) -> PromptSet:
    cols: dict[str, list[Any]] = {k: [] for k in ("id", "prompt", "category", "source", "label_method", "task_label")}
    for row in iter_jsonl(path):
        missing = {"prompt", "category"} - row.keys()
        if missing:
            raise DataError(f"{path}: row {row.get('id')!r} lacks fields {sorted(missing)}.")
        for k in cols:
            v = row.get(k)
            cols[k].append(None if k == "task_label" and v in (None, "None") else v)
    if not cols["prompt"]:
        raise DataError(f"{path} holds no rows.")
    n = len(cols["prompt"])
    return PromptSet(
        ids=[i or str(k) for k, i in enumerate(cols["id"])],
        texts=cols["prompt"],
        categories=cols["category"],
        sources=[s or "unknown" for s in cols["source"]],
        label_methods=[m or "unknown" for m in cols["label_method"]],
        task_labels=cols["task_label"] if len(cols["task_label"]) == n else [None] * n,
        sha256=file_sha256(path),
    )


@dataclass
class OutcomeTable:
    """Scores pivoted to one row per prompt: scores[p, m] in [0, 1] (mean over duplicate rows)."""

    prompt_ids: list[str]
    texts: list[str]
    benchmarks: list[str]
    models: list[str]  # sorted model names = column order
    scores: np.ndarray  # [P, M] float32
    sha256: str

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def cache_id(self) -> str:
        """Key for the embedding cache: the file hash (one text per unique prompt_id, first-seen order)."""
        return f"outcomes:{self.sha256}"


def load_outcomes(path: str | Path = DEFAULT_OUTCOMES) -> OutcomeTable:
    sums: dict[tuple[str, str], list[float]] = {}
    first: dict[str, tuple[str, str]] = {}  # prompt_id -> (text, benchmark)
    for row in iter_jsonl(path):
        try:
            pid, model, score = str(row["prompt_id"]), str(row["model"]), float(row["score"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: each row needs prompt_id, model and a numeric score ({e}).") from e
        if not 0.0 <= score <= 1.0:
            raise DataError(f"{path}: score {score} for {pid}/{model} is outside [0, 1].")
        acc = sums.setdefault((pid, model), [0.0, 0.0])
        acc[0] += score
        acc[1] += 1.0
        first.setdefault(pid, (str(row.get("prompt", "")), str(row.get("benchmark", "unknown"))))
    if not first:
        raise DataError(f"{path} holds no rows.")
    models = sorted({m for _, m in sums})
    pids = list(first)
    col = {m: j for j, m in enumerate(models)}
    scores = np.full((len(pids), len(models)), np.nan, dtype=np.float32)
    row_of = {p: i for i, p in enumerate(pids)}
    for (pid, model), (s, c) in sums.items():
        scores[row_of[pid], col[model]] = s / c
    if np.isnan(scores).any():
        holes = int(np.isnan(scores).any(axis=1).sum())
        raise DataError(
            f"{path}: {holes} prompts lack a score for some model; every prompt needs all {len(models)} models."
        )
    return OutcomeTable(
        prompt_ids=pids,
        texts=[first[p][0] for p in pids],
        benchmarks=[first[p][1] for p in pids],
        models=models,
        scores=scores,
        sha256=file_sha256(path),
    )
