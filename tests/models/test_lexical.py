"""Hashed start/end n-grams: tagging, bounded reads, unit rows, subsetting and the numpy sparse matmul."""

from __future__ import annotations

import numpy as np

from models.lexical import LexicalConfig, hashed_ids, lexical_rows, ngram_strings, shared_ngrams


def test_ngrams_are_tagged_by_position() -> None:
    cfg = LexicalConfig(head_chars=20, tail_chars=12)
    feats = ngram_strings("Write a poem " + "x " * 50 + "about the sea", cfg)
    assert {"h:write", "h:write a", "f:write", "t:the sea"} <= set(feats)
    assert "t:write" not in feats and "h:sea" not in feats


def test_short_prompt_has_no_tail() -> None:
    assert not [f for f in ngram_strings("Prove it.", LexicalConfig()) if f.startswith("t:")]


def test_rows_are_unit_norm_and_take_matches() -> None:
    cfg = LexicalConfig(n_buckets=257)
    texts = ["Translate 'good morning' into Spanish", "", "Summarize the following article: " * 30, "请翻译"]
    rows = lexical_rows(texts, cfg)
    assert len(rows) == 4 and rows.ids.max() < 257
    norms = np.sqrt(np.add.reduceat(rows.weights**2, rows.offsets[:-1][np.diff(rows.offsets) > 0]))
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    np.testing.assert_array_equal(hashed_ids(texts[0], cfg), rows.ids[: rows.offsets[1]])
    table = np.random.default_rng(0).normal(size=(257, 3)).astype(np.float32)
    dense = np.zeros((4, 257), dtype=np.float32)
    for i in range(4):
        sl = slice(rows.offsets[i], rows.offsets[i + 1])
        dense[i, rows.ids[sl]] = rows.weights[sl]
    np.testing.assert_allclose(rows.matmul(table), dense @ table, atol=1e-5)
    sub = rows.take(np.array([3, 0]))
    np.testing.assert_allclose(sub.matmul(table), (dense @ table)[[3, 0]], atol=1e-5)
    np.testing.assert_allclose(
        rows.take(np.array([False, True, True, False])).matmul(table), (dense @ table)[1:3], atol=1e-5
    )


def test_shared_ngrams_keep_words_of_several_families_and_filter_rows() -> None:
    cfg = LexicalConfig(n_buckets=1 << 12)
    texts = ["Summarize the movie review", "Summarize the news story", "The sentiment expressed is"]
    shared = shared_ngrams(texts, ["imdb", "news", "imdb"], cfg, min_groups=2)
    assert "h:summarize" in shared and "h:summarize the" in shared  # in both families
    assert "h:sentiment" not in shared and "h:movie" not in shared  # one family only
    filtered, full = lexical_rows(texts, cfg, shared), lexical_rows(texts, cfg)
    assert len(filtered.ids) < len(full.ids) and len(filtered) == len(full) == 3
    np.testing.assert_array_equal(hashed_ids(texts[0], cfg, shared), filtered.ids[: filtered.offsets[1]])
