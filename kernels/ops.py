"""The public kernel API: each op runs its Triton kernel or its ``*_ref`` as ``dispatch.choose_impl`` decides.

Callers (``models/fused_bert.py``) import this module and never a kernel file directly, so a CPU-only box
runs the same code path on the references. Signatures match the per-op launchers exactly; see each op's
module for shapes, limits and why it is fused.

This module knows nothing about BERT or routing; it only forwards calls.
"""

from __future__ import annotations

import torch

from kernels import attention as _attention
from kernels import gelu as _gelu
from kernels import layernorm as _layernorm
from kernels import pool_head as _pool_head
from kernels.attention import prepare_key_mask
from kernels.dispatch import choose_impl

__all__ = [
    "add_bias_residual_layernorm",
    "attention",
    "bias_gelu",
    "mean_pool_normalize",
    "pool_head",
    "prepare_key_mask",
]


def add_bias_residual_layernorm(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """LN(x + bias + residual) · weight + beta. x: [..., N]; residual rows broadcast as row m % R."""
    if choose_impl(x) == "triton":
        return _layernorm.add_bias_residual_layernorm(x, bias, residual, weight, beta, eps)
    return _layernorm.add_bias_residual_layernorm_ref(x, bias, residual, weight, beta, eps)


def bias_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Exact-erf gelu(x + bias). x: [..., N], bias: [N]."""
    if choose_impl(x) == "triton":
        return _gelu.bias_gelu(x, bias)
    return _gelu.bias_gelu_ref(x, bias)


def attention(qkv: torch.Tensor, key_mask: torch.Tensor, kv_len: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Masked multi-head self-attention. qkv: [B, S, 3·H·D] → [B, S, H·D]; masks from ``prepare_key_mask``."""
    if choose_impl(qkv) == "triton":
        return _attention.attention(qkv, key_mask, kv_len, num_heads)
    return _attention.attention_ref(qkv, key_mask, kv_len, num_heads)


def mean_pool_normalize(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over S, then L2 normalise. hidden: [B, S, H] → [B, H] fp32."""
    if choose_impl(hidden) == "triton":
        return _pool_head.mean_pool_normalize(hidden, attention_mask)
    return _pool_head.mean_pool_normalize_ref(hidden, attention_mask)


def pool_head(
    hidden: torch.Tensor, attention_mask: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pool + normalise + linear + softmax → (embedding [B, H] fp32, probs [B, C] fp32)."""
    if choose_impl(hidden) == "triton":
        return _pool_head.pool_head(hidden, attention_mask, weight, bias)
    return _pool_head.pool_head_ref(hidden, attention_mask, weight, bias)
