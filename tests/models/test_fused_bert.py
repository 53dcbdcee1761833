"""models.fused_bert: FusedBertEncoder against transformers' BertModel + sentence-transformers pooling.

Triton-path tests need CUDA or ``TRITON_INTERPRET=1`` and skip otherwise; the reference-path tests run
everywhere, because the reference path is what a CPU-only service box executes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from kernels import dispatch
from models.encoder import default_model_path
from models.fused_bert import BERT_CONFIGS, BertEncoderConfig, FusedBertEncoder

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
needs_triton = pytest.mark.skipif(
    not (torch.cuda.is_available() or INTERPRET),
    reason="Triton kernels need a CUDA GPU or TRITON_INTERPRET=1",
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TRITON_DEVICE = torch.device("cpu" if INTERPRET or not torch.cuda.is_available() else "cuda")

SENTENCES = [
    "Write a Python function that merges two sorted lists.",
    "hi",
    "Summarise this lease agreement in three bullet points, please.",
    "What is 17 * 23?",
]


def _hf_sentence_embedding(hf: Any, ids: torch.Tensor, mask: torch.Tensor, **kw: torch.Tensor) -> torch.Tensor:
    """sentence-transformers all-MiniLM-L6-v2: masked mean of last_hidden_state, then L2 normalise. [B, H]."""
    with torch.no_grad():
        hidden = hf(input_ids=ids, attention_mask=mask, **kw).last_hidden_state.float()
    expanded = mask.unsqueeze(-1).float()
    return F.normalize((hidden * expanded).sum(1) / expanded.sum(1).clamp(min=1e-9), p=2, dim=1)


def _check_embeddings(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, min_cos: float) -> None:
    assert actual.dtype == torch.float32 and actual.shape == expected.shape
    diff = (actual.cpu() - expected.cpu()).abs()
    cos = F.cosine_similarity(actual.cpu(), expected.cpu(), dim=-1)
    detail = (
        f"max abs diff {diff.max().item():.3e}, mean abs diff {diff.mean().item():.3e}, "
        f"min cosine {cos.min().item():.7f}"
    )
    assert cos.min().item() > min_cos, detail
    assert diff.max().item() <= atol, detail


@pytest.fixture
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[dispatch.Impl]:
    """Force one kernels path for the test; parametrize indirectly with "triton" or "torch"."""
    choice: dispatch.Impl = request.param
    if choice == "triton" and not (torch.cuda.is_available() or INTERPRET):
        pytest.skip("Triton kernels need a CUDA GPU or TRITON_INTERPRET=1")
    monkeypatch.setattr(dispatch, "_override_impl", choice)
    yield choice


BOTH_PATHS = pytest.mark.parametrize("impl", ["triton", "torch"], indirect=True)


def _device(impl: dispatch.Impl) -> torch.device:
    return TRITON_DEVICE if impl == "triton" else torch.device("cpu")


# ---------------------------------------------------------------- tiny random BERT (2 layers, hidden 64)


@pytest.fixture(scope="module")
def tiny_hf() -> Any:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=128,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    model: Any = BertModel(cfg)
    return model.eval()  # dropout off


def _tiny_batch(lengths: list[int], s: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(sum(lengths) + s)
    ids = torch.randint(1, 128, (len(lengths), s), generator=gen)
    mask = (torch.arange(s)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask  # padding id 0, as a tokenizer would emit


@BOTH_PATHS
@pytest.mark.parametrize(("lengths", "s"), [([13, 5, 1], 13), ([1], 1), ([40, 33], 40)])
def test_tiny_matches_hf(tiny_hf: Any, impl: dispatch.Impl, lengths: list[int], s: int) -> None:
    ids, mask = _tiny_batch(lengths, s)
    dev = _device(impl)
    actual = FusedBertEncoder.from_hf(tiny_hf).to(dev)(ids.to(dev), mask.to(dev))
    _check_embeddings(actual, _hf_sentence_embedding(tiny_hf, ids, mask), atol=1e-5, min_cos=0.99999)


@BOTH_PATHS
def test_tiny_token_types_and_left_padding(tiny_hf: Any, impl: dispatch.Impl) -> None:
    ids, mask = _tiny_batch([9, 9, 4], 9)
    mask[1] = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1])  # left-padded row
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    dev = _device(impl)
    actual = FusedBertEncoder.from_hf(tiny_hf).to(dev)(ids.to(dev), mask.to(dev), token_type_ids=types.to(dev))
    expected = _hf_sentence_embedding(tiny_hf, ids, mask, token_type_ids=types)
    _check_embeddings(actual, expected, atol=1e-5, min_cos=0.99999)


@BOTH_PATHS
def test_tiny_forward_with_head(tiny_hf: Any, impl: dispatch.Impl) -> None:
    ids, mask = _tiny_batch([13, 5, 1], 13)
    gen = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(6, 64, generator=gen), torch.randn(6, generator=gen)  # [C, H], [C]
    dev = _device(impl)
    model = FusedBertEncoder.from_hf(tiny_hf).to(dev)
    emb, probs = model.forward_with_head(ids.to(dev), mask.to(dev), weight.to(dev), bias.to(dev))
    expected_emb = _hf_sentence_embedding(tiny_hf, ids, mask)
    _check_embeddings(emb, expected_emb, atol=1e-5, min_cos=0.99999)
    expected_probs = torch.softmax(expected_emb @ weight.t() + bias, dim=-1)
    torch.testing.assert_close(probs.cpu(), expected_probs, atol=1e-5, rtol=1e-4)


@needs_triton
def test_tiny_fp16(tiny_hf: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "_override_impl", "triton")
    ids, mask = _tiny_batch([13, 5, 1], 13)
    model = FusedBertEncoder.from_hf(tiny_hf, dtype=torch.float16).to(TRITON_DEVICE)
    assert model.word_embeddings.dtype == torch.float16
    actual = model(ids.to(TRITON_DEVICE), mask.to(TRITON_DEVICE))
    _check_embeddings(actual, _hf_sentence_embedding(tiny_hf, ids, mask), atol=5e-3, min_cos=0.9995)


def test_config_and_validation(tiny_hf: Any) -> None:
    assert BertEncoderConfig.from_hf(tiny_hf.config) == BERT_CONFIGS["tiny-test"]
    assert BertEncoderConfig.from_name("all-MiniLM-L6-v2").head_dim == 32
    assert BERT_CONFIGS["all-MiniLM-L6-v2"].flops_per_forward(1, 128) > 0
    with pytest.raises(KeyError, match="Unknown encoder config"):
        BertEncoderConfig.from_name("bert-large")
    with pytest.raises(ValueError, match="gelu"):
        BertEncoderConfig.from_hf(BertConfig(hidden_act="relu"))
    ids, mask = _tiny_batch([65], 65)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        FusedBertEncoder.from_hf(tiny_hf)(ids, mask)


# ---------------------------------------------------------------- the real all-MiniLM-L6-v2 weights


@pytest.fixture(scope="module")
def minilm() -> tuple[Any, Any]:
    """The encoder Triage loads: the installed package, or TRIAGE_ENCODER (on the GPU machine a folder of random
    weights in the same shape: these tests compare two paths over the same weights, whatever they are)."""
    model_dir = Path(default_model_path())
    return AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()


@pytest.mark.slow
@BOTH_PATHS
def test_minilm_matches_hf(minilm: tuple[Any, Any], impl: dispatch.Impl) -> None:
    tokenizer, hf = minilm
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert hf.config.hidden_size == 384 and hf.config.num_hidden_layers == 6
    device = _device(impl)
    model = FusedBertEncoder.from_hf(hf).to(device)
    actual = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
    expected = _hf_sentence_embedding(hf, batch["input_ids"], batch["attention_mask"])
    _check_embeddings(actual, expected, atol=1e-5, min_cos=0.9999)


@pytest.mark.gpu
@needs_cuda
def test_minilm_cuda_graph_fp16(minilm: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """One static (batch, length) bucket captured into a CUDA graph and replayed on new inputs."""
    monkeypatch.setattr(dispatch, "_override_impl", "triton")
    tokenizer, hf = minilm
    batch = tokenizer(SENTENCES, padding="max_length", max_length=128, return_tensors="pt")
    model = FusedBertEncoder.from_hf(hf, dtype=torch.float16).cuda()
    ids, mask = batch["input_ids"].cuda(), batch["attention_mask"].cuda()
    static_ids, static_mask = torch.zeros_like(ids), torch.zeros_like(mask)
    stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm up: compile kernels and let cuBLAS pick its algorithms outside capture
            model(ids, mask)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = model(static_ids, static_mask)
    static_ids.copy_(ids)
    static_mask.copy_(mask)
    graph.replay()
    torch.cuda.synchronize()
    expected = _hf_sentence_embedding(hf, batch["input_ids"], batch["attention_mask"])
    _check_embeddings(static_out, expected, atol=2e-3, min_cos=0.999)
