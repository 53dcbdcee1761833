"""Truncation, bucketing and numerical agreement of SentenceEncoder with a direct transformers computation."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.encoder import (
    EncoderConfig,
    SentenceEncoder,
    bound_chars,
    bucket_length,
    head_tail_ids,
    plan_batches,
)

SENTENCES = [
    "Write a Python function that reverses a linked list.",
    "What is the capital of France?",
    "Summarize the following article in three bullet points: the economy grew by 2% last quarter.",
    "Translate 'good morning' into Japanese.",
    "hi",
]


def test_bound_chars_keeps_head_and_tail() -> None:
    text = "HEAD" + "x" * 100_000 + "TAIL"
    out = bound_chars(text, head_chars=1536, tail_chars=512)
    assert len(out) == 1536 + 1 + 512
    assert out.startswith("HEAD") and out.endswith("TAIL")
    assert bound_chars("short", 10, 10) == "short"


def test_head_tail_ids() -> None:
    ids = list(range(1000))
    out = head_tail_ids(ids, budget=100, head_frac=0.75)
    assert out == list(range(75)) + list(range(975, 1000))
    assert head_tail_ids([1, 2, 3], budget=100, head_frac=0.75) == [1, 2, 3]


def test_long_prompt_is_bounded_and_keeps_head_and_tail(encoder: SentenceEncoder) -> None:
    text = "alpha bravo charlie " + "filler words here " * 6000 + " yankee zulu"  # ~108k characters
    assert len(text) > 100_000
    (ids,) = encoder.tokenize([text])
    assert len(ids) == encoder.config.max_tokens
    tok = encoder.tokenizer
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    decoded_head = tok.decode(ids[1:4])
    decoded_tail = tok.decode(ids[-3:-1])
    assert decoded_head == "alpha bravo charlie"
    assert decoded_tail == "yankee zulu"
    emb = encoder.encode([text])
    assert emb.shape == (1, 384) and np.isfinite(emb).all()


@pytest.mark.parametrize(("n", "expected"), [(1, 16), (16, 16), (17, 32), (100, 128), (256, 256), (300, 256)])
def test_bucket_length(n: int, expected: int) -> None:
    assert bucket_length(n, (16, 32, 64, 128, 256, 512), max_tokens=256) == expected


def test_bucket_length_caps_at_max_tokens_not_in_buckets() -> None:
    assert bucket_length(150, (16, 32, 64, 128, 256), max_tokens=200) == 200


def test_plan_batches_bucket_groups_and_covers_every_row() -> None:
    lengths = [5, 300, 20, 17, 64, 65, 3, 128, 31, 250]
    plan = plan_batches(lengths, batch_size=2, padding="bucket", buckets=(16, 32, 64, 128, 256), max_tokens=256)
    rows = sorted(i for batch, _ in plan for i in batch)
    assert rows == list(range(len(lengths)))
    for batch, pad in plan:
        assert len(batch) <= 2
        assert all(min(lengths[i], 256) <= pad for i in batch)
        assert {bucket_length(lengths[i], (16, 32, 64, 128, 256), 256) for i in batch} == {pad}
    padded = plan_batches(lengths, 2, "max", (16, 32), 256)
    assert all(pad == 256 for _, pad in padded)
    longest = plan_batches(lengths, 4, "longest", (16, 32), 256)
    assert [pad for _, pad in longest] == [300, 128, 250]  # callers pass already-truncated lengths


def test_encoder_matches_direct_transformers_mean_pool(encoder: SentenceEncoder) -> None:
    tok, model = encoder.tokenizer, encoder.hf_model
    batch = tok(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state  # [B, T, 384]
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    for padding in ("bucket", "longest", "max"):
        ours = encoder.encode(SENTENCES, padding=padding, batch_size=2)
        assert ours.dtype == np.float32 and ours.shape == (len(SENTENCES), 384)
        diff = np.abs(ours - ref)
        assert diff.max() < 1e-5, f"{padding}: max diff {diff.max():.2e}, mean {diff.mean():.2e}"
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_triton_impl_falls_back_to_eager_when_fused_bert_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "models.fused_bert", None)  # makes the lazy import raise ImportError
    enc = SentenceEncoder(EncoderConfig(impl="triton", device="cpu"))
    assert enc.impl == "eager"
    assert "falling back to eager" in caplog.text
    assert enc.encode(["hello"]).shape == (1, 384)


def test_encoder_config_presets() -> None:
    cfg = EncoderConfig.from_name("minilm-512")
    assert cfg.max_tokens == 512 and cfg.head_chars + cfg.tail_chars == 512 * cfg.chars_per_token
    with pytest.raises(KeyError, match="choose one of"):
        EncoderConfig.from_name("nope")
