"""kernels.dispatch and kernels.ops: the Triton-or-reference choice, its override, and its one-time log."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import torch

from kernels import dispatch, ops

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="Triton kernels need a CUDA GPU or TRITON_INTERPRET=1",
)


@pytest.fixture(autouse=True)
def _fresh_dispatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(dispatch, "_override_impl", None)
    dispatch._log_choice.cache_clear()
    yield
    dispatch._log_choice.cache_clear()


def test_cpu_without_interpreter_uses_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert dispatch.choose_impl(torch.zeros(1)) == "torch"


def test_interpreter_uses_triton_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert dispatch.choose_impl(torch.zeros(1)) == "triton"


def test_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(dispatch, "_override_impl", "torch")
    assert dispatch.choose_impl(torch.zeros(1)) == "torch"


def test_choice_is_logged_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with caplog.at_level(logging.INFO, logger="kernels.dispatch"):
        for _ in range(3):
            dispatch.choose_impl(torch.zeros(1))
    messages = [r.getMessage() for r in caplog.records if r.name == "kernels.dispatch"]
    assert len(messages) == 1, messages
    assert "torch" in messages[0]


def _chain(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every public op once, in encoder order, on small fixed inputs → (embedding, probs)."""
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 64, generator=gen).to(device)  # [B, S, H]
    vec = torch.randn(64, generator=gen).to(device)  # [H]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], device=device)
    key_mask, kv_len = ops.prepare_key_mask(mask)
    normed = ops.add_bias_residual_layernorm(hidden, vec, hidden, vec, vec, 1e-12)
    act = ops.bias_gelu(normed, vec)
    ctx = ops.attention(torch.cat([act, act, act], dim=-1), key_mask, kv_len, 4)  # 4 heads of 16
    emb, probs = ops.pool_head(ctx, key_mask, hidden[0, :3], vec[:3])
    torch.testing.assert_close(ops.mean_pool_normalize(ctx, key_mask), emb)
    return emb, probs


def test_ops_triton_and_reference_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    device = torch.device("cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda")
    monkeypatch.setattr(dispatch, "_override_impl", "triton")
    emb, probs = _chain(device)
    monkeypatch.setattr(dispatch, "_override_impl", "torch")
    emb_ref, probs_ref = _chain(device)
    torch.testing.assert_close(emb, emb_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs, probs_ref, atol=1e-5, rtol=1e-5)
