"""kernels.pool_head: masked mean-pool + L2 normalise (+ linear head + softmax) against its reference."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

from kernels.pool_head import mean_pool_normalize, mean_pool_normalize_ref, pool_head, pool_head_ref

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="Triton kernels need a CUDA GPU or TRITON_INTERPRET=1",
)
CloseCheck = Callable[..., None]  # the conftest fixture
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Outputs are fp32 whatever the input dtype; both paths upcast before summing: only summation order differs.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {  # hidden dtype → (atol, rtol)
    torch.float32: (1e-6, 1e-5),
    torch.float16: (1e-6, 1e-5),
    torch.bfloat16: (1e-6, 1e-5),
}


def _inputs(
    lengths: list[int], s: int, h: int, c: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(len(lengths) * 1009 + s * 31 + h + c)
    hidden = torch.randn(len(lengths), s, h, generator=gen).to(device=device, dtype=dtype)  # [B, S, H]
    mask = (torch.arange(s)[None, :] < torch.tensor(lengths)[:, None]).to(device=device, dtype=torch.int64)
    weight = torch.randn(c, h, generator=gen).to(device)  # [C, H] fp32, as a trained head is kept
    bias = torch.randn(c, generator=gen).to(device)  # [C]
    return hidden, mask, weight, bias


CASES = [
    ([13, 1, 7], 13, 97, 5),
    ([1], 1, 384, 3),
    ([130, 64, 1, 100], 130, 64, 1),
    ([5, 12], 12, 384, 8),
    ([3], 7, 33, 128),
]


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize(("lengths", "s", "h", "c"), CASES)
def test_pool_head_matches_reference(
    lengths: list[int],
    s: int,
    h: int,
    c: int,
    dtype: torch.dtype,
    device: torch.device,
    check_close: CloseCheck,
) -> None:
    hidden, mask, weight, bias = _inputs(lengths, s, h, c, dtype, device)
    emb, probs = pool_head(hidden, mask, weight, bias)
    emb_ref, probs_ref = pool_head_ref(hidden, mask, weight, bias)
    atol, rtol = TOLERANCES[dtype]
    what = f"lengths={lengths} S={s} H={h} C={c} {dtype}"
    check_close(emb, emb_ref, atol=atol, rtol=rtol, what=f"embedding {what}")
    check_close(probs, probs_ref, atol=atol, rtol=rtol, what=f"probs {what}")
    check_close(probs.sum(-1), torch.ones_like(probs_ref[:, 0]), atol=1e-5, rtol=0, what="probs sum to 1")


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
def test_mean_pool_normalize_matches_reference(
    dtype: torch.dtype, device: torch.device, check_close: CloseCheck
) -> None:
    hidden, mask, _, _ = _inputs([13, 1, 7], 13, 97, 1, dtype, device)
    atol, rtol = TOLERANCES[dtype]
    actual = mean_pool_normalize(hidden, mask)
    check_close(actual, mean_pool_normalize_ref(hidden, mask), atol=atol, rtol=rtol, what=f"pool {dtype}")
    check_close(actual.norm(dim=-1), torch.ones(3, device=device), atol=1e-5, rtol=0, what="unit norm")


def test_empty_row_and_bool_mask(device: torch.device, check_close: CloseCheck) -> None:
    hidden, mask, weight, bias = _inputs([0, 4], 6, 40, 3, torch.float32, device)
    emb, probs = pool_head(hidden, mask.bool(), weight, bias)
    assert bool((emb[0] == 0).all()), "a sequence with no real tokens should pool to the zero vector"
    emb_ref, probs_ref = pool_head_ref(hidden, mask.bool(), weight, bias)
    check_close(emb, emb_ref, atol=1e-6, rtol=1e-5, what="embedding with empty row")
    check_close(probs, probs_ref, atol=1e-6, rtol=1e-5, what="probs with empty row")


def test_reference_matches_sentence_transformers_formula(device: torch.device, check_close: CloseCheck) -> None:
    hidden, mask, _, _ = _inputs([13, 1, 7], 13, 97, 1, torch.float32, device)
    expanded = mask.unsqueeze(-1).expand(hidden.size()).float()  # sentence_transformers.models.Pooling
    mean = (hidden * expanded).sum(1) / torch.clamp(expanded.sum(1), min=1e-9)
    expected = torch.nn.functional.normalize(mean, p=2, dim=1)
    check_close(mean_pool_normalize_ref(hidden, mask), expected, atol=1e-6, rtol=1e-5, what="ST formula")


def test_rejects_unsupported(device: torch.device) -> None:
    hidden, mask, weight, bias = _inputs([2], 2, 384, 200, torch.float32, device)
    with pytest.raises(RuntimeError, match="C=200"):
        pool_head(hidden, mask, weight, bias)
    with pytest.raises(ValueError, match="head bias"):
        pool_head(hidden, mask, weight, bias[:3])
    with pytest.raises(ValueError, match="attention_mask"):
        mean_pool_normalize(hidden, mask[:, :1])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_large_gpu(dtype: torch.dtype, check_close: CloseCheck) -> None:
    lengths = [512, 300, 129, 1] * 8
    hidden, mask, weight, bias = _inputs(lengths, 512, 384, 16, dtype, torch.device("cuda"))
    emb, probs = pool_head(hidden, mask, weight, bias)
    emb_ref, probs_ref = pool_head_ref(hidden, mask, weight, bias)
    check_close(emb, emb_ref, atol=1e-5, rtol=1e-4, what=f"embedding 32x512 {dtype}")
    check_close(probs, probs_ref, atol=1e-5, rtol=1e-4, what=f"probs 32x512 {dtype}")
