"""Hashed bag of word n-grams from the start and the end of a prompt, in plain Python + numpy.

The instruction verb of a prompt ("Prove", "Summarize", "Translate", "Write a poem", "Is this review positive
or negative?") usually sits in its first or last few hundred characters, and a mean-pooled sentence embedding
blurs it under a pasted passage. This featurizer lowercases the first `head_chars` and last `tail_chars`
characters, splits them into word tokens (`\\w+`, so CJK runs count as words), and emits position-tagged
uni- and bi-grams ("h:write", "h:write a", "t:summarize", plus "f:<first word>"). Each feature is hashed with
crc32 into `n_buckets` buckets; a prompt becomes a sparse row of unique bucket ids with equal weights that sum
to 1 in L2 norm. No vocabulary is stored, so the artifact stays small and serving needs no scikit-learn.
Cost: about 10-40 µs per prompt (bounded: at most head_chars + tail_chars characters are read).
This module knows nothing about labels, heads or the encoder.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class LexicalConfig:
    n_buckets: int = 1 << 14  # hash space; collisions are rare for the ~100k n-grams in the training data
    head_chars: int = 300  # characters read from the start of the prompt
    tail_chars: int = 300  # characters read from the end (skipped when the prompt fits in head_chars)
    bigrams: bool = True  # add word bi-grams next to uni-grams

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LexicalConfig:
        return cls(**d)


def _grams(tag: str, words: list[str], bigrams: bool) -> list[str]:
    out = [f"{tag}:{w}" for w in words]
    if bigrams:
        out += [f"{tag}:{a} {b}" for a, b in itertools.pairwise(words)]
    return out


def ngram_strings(text: str, config: LexicalConfig) -> list[str]:
    """Position-tagged n-gram strings of one prompt (unhashed; for tests and inspection)."""
    head = _WORD.findall(text[: config.head_chars].lower())
    feats = _grams("h", head, config.bigrams)
    if head:
        feats.append(f"f:{head[0]}")
    if len(text) > config.head_chars:
        tail = _WORD.findall(text[-config.tail_chars :].lower())
        feats += _grams("t", tail, config.bigrams)
    return feats


def hashed_ids(text: str, config: LexicalConfig, allowed: frozenset[str] | None = None) -> np.ndarray:
    """[K] int64 sorted unique bucket ids of one prompt (K may be 0 for an empty prompt).

    allowed: keep only these n-gram strings (training-time filter, see `shared_ngrams`); None keeps all.
    """
    grams = ngram_strings(text, config)
    if allowed is not None:
        grams = [g for g in grams if g in allowed]
    ids = {zlib.crc32(f.encode("utf-8", "surrogatepass")) % config.n_buckets for f in grams}
    return np.fromiter(sorted(ids), dtype=np.int64, count=len(ids))


@dataclass
class SparseRows:
    """CSR-style batch: row i owns ids[offsets[i]:offsets[i+1]] with weights[...] (L2 norm 1 per row)."""

    ids: np.ndarray  # [NNZ] int64 bucket ids
    weights: np.ndarray  # [NNZ] float32
    offsets: np.ndarray  # [B + 1] int64, offsets[0] = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def take(self, rows: np.ndarray) -> SparseRows:
        """Subset of rows (bool mask or int indices), in the given order."""
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows
        starts = self.offsets[idx]
        lens = self.offsets[idx + 1] - starts
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        # position j of the output comes from starts[row(j)] + (j - offsets[row(j)])
        gather = np.repeat(starts - offsets[:-1], lens) + np.arange(offsets[-1])
        return SparseRows(self.ids[gather], self.weights[gather], offsets)

    def matmul(self, table: np.ndarray) -> np.ndarray:
        """[B, C] = sum over each row's ids of weight * table[id]; table: [n_buckets, C]."""
        contrib = table[self.ids] * self.weights[:, None]  # [NNZ, C]
        out = np.zeros((len(self), table.shape[1]), dtype=np.float32)
        row = np.repeat(np.arange(len(self)), np.diff(self.offsets))
        np.add.at(out, row, contrib)
        return out


def shared_ngrams(
    texts: Sequence[str], groups: Sequence[str], config: LexicalConfig, min_groups: int
) -> frozenset[str]:
    """The n-gram strings that occur in prompts of at least `min_groups` distinct groups (source families).

    A template's own words ("the sentiment expressed for the movie is") occur in one source family only; a
    head trained on them learns that family, not the task. Training rows featurized with this set keep the
    words that several sources share ("sentiment", "summarize", "write a"). Serving featurizes unfiltered:
    the buckets of dropped n-grams were never trained and carry (near-)zero weight, up to hash collisions.
    """
    seen: dict[str, set[str]] = {}
    for text, group in zip(texts, groups, strict=True):
        for g in set(ngram_strings(text, config)):
            s = seen.setdefault(g, set())
            if len(s) < min_groups:
                s.add(group)
    return frozenset(g for g, s in seen.items() if len(s) >= min_groups)


def lexical_rows(texts: Sequence[str], config: LexicalConfig, allowed: frozenset[str] | None = None) -> SparseRows:
    """Featurize a batch: unique hashed n-grams per prompt, each weighted 1/sqrt(K) (unit L2 rows).

    allowed: keep only these n-gram strings (see `shared_ngrams`); None keeps all (serving).
    """
    per = [hashed_ids(t, config, allowed) for t in texts]
    lens = np.array([len(p) for p in per], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    ids = np.concatenate(per) if per else np.zeros(0, dtype=np.int64)
    weights = np.repeat((1.0 / np.sqrt(np.maximum(lens, 1))).astype(np.float32), lens)
    return SparseRows(ids.astype(np.int64), weights, offsets)
