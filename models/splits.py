"""Deterministic train/validation splits that do not flatter the model.

Prompts: hold out whole *source families*. Several `source` values are slices of one data set
(`sharegpt` / `sharegpt_followup`, `instructionwild_user_1..3`, `arc_easy_train` / `arc_challenge_train`),
and a slice seen in training would leak its phrasing into validation, so they are grouped first.
`auto_val_families` then picks families greedily, hardest category first (fewest families), until each
category has at least `min_val_share` of its rows in validation, never taking a family that would leave any
category with less than `min_train_share` of its rows for training. A category whose rows come from one or
two big families cannot be validated without losing its training data; it ends up with a thin validation
set, which `SourceSplit.thin_val_categories` reports rather than hides.

Tuning: `inner_family_folds` cuts the *training* part into k folds for grouped cross-validation, so that
hyper-parameters are chosen without ever looking at the reported validation split. Whole families go to one
fold each (largest first, onto the lightest fold). The one exception is ShareGPT: user-written conversations
without templates, and the only training source of brainstorming (and most of the chat-style code, creative
writing and general QA). Holding it out whole would delete those categories from one fold's training data, so
its rows are spread over the folds by a seeded hash of their id.

Outcomes: split by prompt_id with a seeded hash, stratified by benchmark, so the same rule applied to any
outcomes file gives the same held-out prompts. This module knows nothing about embeddings or models.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_FAMILY_RULES: tuple[tuple[str, str], ...] = (
    (r"^sharegpt(_followup)?$", "sharegpt"),
    (r"^instructionwild_user_\d+$", "instructionwild"),
    (r"^arc_(easy|challenge)(_train)?$", "arc"),
)


def source_family(source: str) -> str:
    """Group slices of one data set: `instructionwild_user_2` -> `instructionwild`."""
    for pattern, family in _FAMILY_RULES:
        if re.match(pattern, source):
            return family
    return source


def _hash01(seed: int, key: str) -> float:
    """Uniform-looking number in [0, 1) from (seed, key), stable across runs and platforms."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class SourceSplit:
    val_families: list[str]
    val_mask: np.ndarray  # [N] bool
    thin_val_categories: list[str] = field(default_factory=list)  # val share < min_val_share

    def describe(self, categories: Sequence[str]) -> dict[str, object]:
        cats = np.asarray(categories)
        per = {}
        for c in sorted(set(categories)):
            in_c = cats == c
            per[c] = {"train": int((in_c & ~self.val_mask).sum()), "val": int((in_c & self.val_mask).sum())}
        return {
            "method": "hold out whole source families (auto_val_families)",
            "val_families": self.val_families,
            "n_train": int((~self.val_mask).sum()),
            "n_val": int(self.val_mask.sum()),
            "per_category": per,
            "thin_val_categories": self.thin_val_categories,
        }


def auto_val_families(
    categories: Sequence[str],
    sources: Sequence[str],
    seed: int = 0,
    min_val_share: float = 0.1,
    target_val_share: float = 0.2,
    min_train_share: float = 0.6,
    min_rows: int = 5,
) -> list[str]:
    """Choose whole source families to hold out (see module docstring). Deterministic for a given seed."""
    fam = [source_family(s) for s in sources]
    counts: Counter[tuple[str, str]] = Counter(zip(fam, categories, strict=True))
    totals: Counter[str] = Counter(categories)
    families = sorted(set(fam))
    held: list[str] = []

    def val_rows(c: str, chosen: Sequence[str]) -> int:
        return sum(counts[(f, c)] for f in chosen)

    def feasible(f: str) -> bool:
        chosen = [*held, f]
        return all(totals[c] - val_rows(c, chosen) >= min_train_share * totals[c] for c in totals)

    n_families = {c: sum(1 for f in families if counts[(f, c)] >= min_rows) for c in totals}
    for c in sorted(totals, key=lambda c: (n_families[c], c)):
        while val_rows(c, held) < min_val_share * totals[c]:
            cands = [f for f in families if f not in held and counts[(f, c)] >= min_rows and feasible(f)]
            if not cands:
                break
            # closest to the target share for this category; ties broken by the seeded hash
            best = min(
                cands,
                key=lambda f: (
                    abs((val_rows(c, held) + counts[(f, c)]) / totals[c] - target_val_share),
                    _hash01(seed, f),
                ),
            )
            held.append(best)
    return sorted(held)


def split_by_families(
    categories: Sequence[str], sources: Sequence[str], val_families: Sequence[str], min_val_share: float = 0.1
) -> SourceSplit:
    """Validation mask for the given families (a raw `source` value is accepted too)."""
    wanted = set(val_families)
    mask = np.array([source_family(s) in wanted or s in wanted for s in sources])
    cats = np.asarray(categories)
    thin = [c for c in sorted(set(categories)) if (mask & (cats == c)).sum() < min_val_share * (cats == c).sum()]
    return SourceSplit(val_families=sorted(wanted), val_mask=mask, thin_val_categories=thin)


def inner_family_folds(
    sources: Sequence[str],
    ids: Sequence[str],
    k: int = 5,
    seed: int = 0,
    row_split_families: Sequence[str] = ("sharegpt",),
) -> np.ndarray:
    """[N] fold id in [0, k) per row: whole families balanced by size, `row_split_families` hashed by id."""
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}.")
    fam = [source_family(s) for s in sources]
    sizes = Counter(f for f in fam if f not in row_split_families)
    fold_of: dict[str, int] = {}
    load = [0] * k
    for f in sorted(sizes, key=lambda f: (-sizes[f], _hash01(seed, f))):
        j = min(range(k), key=lambda j: load[j])
        fold_of[f] = j
        load[j] += sizes[f]
    return np.array(
        [int(_hash01(seed, i) * k) if f in row_split_families else fold_of[f] for f, i in zip(fam, ids, strict=True)],
        dtype=np.int64,
    )


def heldout_mask(prompt_ids: Sequence[str], strata: Sequence[str], frac: float = 0.2, seed: int = 0) -> np.ndarray:
    """[N] bool: the `frac` of each stratum (benchmark) with the smallest seeded hash of its prompt_id."""
    if not 0.0 < frac < 1.0:
        raise ValueError(f"frac must be in (0, 1), got {frac}.")
    mask = np.zeros(len(prompt_ids), dtype=bool)
    by_stratum: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(i)
    for rows in by_stratum.values():
        rows.sort(key=lambda i: _hash01(seed, prompt_ids[i]))
        mask[rows[: round(frac * len(rows))]] = True
    return mask


def id_folds(prompt_ids: Sequence[str], groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """[N] fold in [0, k): within each benchmark, rows sorted by a seeded hash of prompt_id are dealt round-robin,
    so every fold holds ~1/k of every benchmark."""
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}.")
    fold = np.zeros(len(prompt_ids), dtype=np.int64)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        order = sorted(rows.tolist(), key=lambda i: _hash01(seed, prompt_ids[i]))
        fold[order] = np.arange(len(order)) % k
    return fold
