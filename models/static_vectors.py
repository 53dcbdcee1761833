"""Static word-piece vectors of a prompt's start and end, read from the encoder's input embedding table.

The sentence embedding mean-pools the transformer's output over the whole (truncated) prompt, so a pasted
passage drowns the few words that say what to do with it ("The sentiment expressed for the movie is",
"Based on these bullet points, write a short biography"). This featurizer tokenizes the first and the last
`chars` characters of the prompt with the encoder's own tokenizer and averages the rows of the encoder's
input (layer-0) word-piece embedding table for each span: two [H] vectors, L2-normalised, a zero vector for an
empty span. It is a table lookup, not a second encoder pass: the transformer layers run once per prompt.
Cost: one fast-tokenizer call on at most 2 x `chars` characters and a gather, tens of microseconds a prompt.
This module knows nothing about labels, heads or the transformer layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def input_table(hf_model: Any) -> np.ndarray:
    """[V, H] float32 copy of a HF model's input word-piece embedding table (the layer-0 lookup)."""
    return np.ascontiguousarray(hf_model.get_input_embeddings().weight.detach().float().cpu().numpy())


def _span_means(spans: Sequence[str], tokenizer: Any, table: np.ndarray) -> np.ndarray:
    ids = tokenizer(list(spans), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    out = np.zeros((len(spans), table.shape[1]), dtype=np.float32)  # [B, H]
    for i, row in enumerate(ids):
        if row:
            v = table[row].mean(axis=0)
            out[i] = v / max(float(np.linalg.norm(v)), 1e-6)
    return out


def static_vectors(texts: Sequence[str], tokenizer: Any, table: np.ndarray, chars: int) -> np.ndarray:
    """[B, 2H] float32: the mean input vector of the first `chars` characters, then of the last `chars`.

    tokenizer: a HF fast tokenizer (callable on a list of strings); table: [V, H] from `input_table`.
    """
    if chars <= 0:
        raise ValueError(f"chars must be positive, got {chars}.")
    b = len(texts)
    spans = _span_means([t[:chars] for t in texts] + [t[-chars:] for t in texts], tokenizer, table)  # [2B, H]
    return np.hstack([spans[:b], spans[b:]]).astype(np.float32)
