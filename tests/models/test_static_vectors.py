"""Static word-piece vectors: shapes, unit rows, head vs tail spans, empty prompts, and the real tokenizer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.static_vectors import input_table, static_vectors


class _WordTokenizer:
    """Stand-in for a HF fast tokenizer: one id per whitespace word, from a fixed vocabulary."""

    def __init__(self, vocab: list[str]) -> None:
        self.ids = {w: i for i, w in enumerate(vocab)}

    def __call__(self, texts: list[str], **_: Any) -> dict[str, list[list[int]]]:
        return {"input_ids": [[self.ids[w] for w in t.split() if w in self.ids] for t in texts]}


def test_head_and_tail_spans_are_mean_vectors_with_unit_norm() -> None:
    table = np.eye(4, dtype=np.float32) * 3.0  # [V=4, H=4]
    tok = _WordTokenizer(["write", "poem", "sea", "summarize"])
    out = static_vectors(["write poem " + "x " * 20 + "summarize", ""], tok, table, chars=10)
    assert out.shape == (2, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :4], np.array([1, 1, 0, 0]) / np.sqrt(2), atol=1e-6)  # "write poem"
    np.testing.assert_allclose(out[0, 4:], [0, 0, 0, 1], atol=1e-6)  # "summarize"
    np.testing.assert_array_equal(out[1], 0.0)  # nothing to read: a zero vector, not NaN


def test_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        static_vectors(["x"], _WordTokenizer(["x"]), np.ones((1, 2), dtype=np.float32), chars=0)


def test_real_encoder_table_and_tokenizer(encoder: Any) -> None:
    table = input_table(encoder.hf_model)
    assert table.shape == (encoder.tokenizer.vocab_size, encoder.dim) and table.dtype == np.float32
    out = static_vectors(["Summarize this article.", "请翻译这句话"], encoder.tokenizer, table, chars=150)
    assert out.shape == (2, 2 * encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(out[:, : encoder.dim], axis=1), 1.0, rtol=1e-5)
