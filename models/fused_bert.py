"""Inference-only BERT encoder built from ``kernels.ops``: the prompt classifier's sentence embedder.

``FusedBertEncoder.from_hf(bert_model)`` takes a transformers ``BertModel`` (all-MiniLM-L6-v2 in production)
and returns a module whose ``forward`` yields the sentence-transformers embedding: mean over real tokens of
``last_hidden_state``, L2-normalised, fp32. ``forward_with_head`` adds the router's linear + softmax head
in the same pooling kernel.

Per layer the forward is 8 launches: QKV GEMM (one fused [3H, H] weight, bias in the cuBLAS epilogue) →
attention (reads the packed QKV output in place) → out-proj GEMM → bias+residual+LN → FFN-up GEMM →
bias+GELU → FFN-down GEMM → bias+residual+LN. Add the embedding gather, the embedding LN, ~5 tiny mask ops
and the pool kernel: about 55 launches for MiniLM's 6 layers.

Why the GEMMs stay on cuBLAS: at serving shapes (M = B·S up to a few thousand tokens, K, N ≤ 1536) they are
small, and a Triton GEMM with a bias+GELU epilogue would save only one launch and one [M, 1536] round trip
per layer (~0.8 MB at batch 1 × 128 tokens: well under a microsecond of H100 bandwidth) while adding an
autotuned kernel to maintain. (Not yet measured here: there was no GPU when this was written.) At batch 1
launch latency dominates, and CUDA graphs address that: every shape is static per (batch, length bucket)
and nothing syncs with the host, so ``forward`` can be captured with ``torch.cuda.CUDAGraph`` per bucket
(target ~0.3 ms for batch 1 × 128 tokens). Capturing is the caller's job; nothing here touches a GPU at
import.

On a CPU box without ``TRITON_INTERPRET=1`` every op falls back to its PyTorch reference, so the service
still runs. Padding may be on either side; query rows past a row's last real token are written as zeros.

What it does not know: tokenisation, routing, training, dropout, cross-attention or the BERT pooler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from kernels import ops


@dataclass(frozen=True)
class BertEncoderConfig:
    """The shapes the fused encoder needs; everything else in a HF ``BertConfig`` is training-only."""

    vocab_size: int = 30522  # WordPiece vocabulary
    hidden_size: int = 384  # H, model width
    num_layers: int = 6  # encoder layers
    num_heads: int = 12  # attention heads; head dim = hidden_size / num_heads
    intermediate_size: int = 1536  # FFN width
    max_position_embeddings: int = 512  # longest sequence, in tokens
    type_vocab_size: int = 2  # segment ids
    layer_norm_eps: float = 1e-12  # added to the variance in every LayerNorm

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_name(cls, name: str) -> BertEncoderConfig:
        if name not in BERT_CONFIGS:
            raise KeyError(f"Unknown encoder config {name!r}; known: {sorted(BERT_CONFIGS)}")
        return BERT_CONFIGS[name]

    @classmethod
    def from_hf(cls, hf_config: Any) -> BertEncoderConfig:
        """Read the fields from a transformers ``BertConfig``; rejects what the fused path cannot run."""
        act = getattr(hf_config, "hidden_act", "gelu")
        if act != "gelu":
            raise ValueError(f"FusedBertEncoder implements exact-erf 'gelu' only, got hidden_act={act!r}")
        pos_type = getattr(hf_config, "position_embedding_type", "absolute")
        if pos_type != "absolute":
            raise ValueError(f"FusedBertEncoder supports absolute positions only, got {pos_type!r}")
        return cls(
            vocab_size=int(hf_config.vocab_size),
            hidden_size=int(hf_config.hidden_size),
            num_layers=int(hf_config.num_hidden_layers),
            num_heads=int(hf_config.num_attention_heads),
            intermediate_size=int(hf_config.intermediate_size),
            max_position_embeddings=int(hf_config.max_position_embeddings),
            type_vocab_size=int(hf_config.type_vocab_size),
            layer_norm_eps=float(hf_config.layer_norm_eps),
        )

    def flops_per_forward(self, batch: int, seq_len: int) -> float:
        """Matmul FLOPs of one full-length forward (2 per MAC): GEMMs plus QKᵀ and PV."""
        h, i, tokens = self.hidden_size, self.intermediate_size, batch * seq_len
        gemm = 2.0 * tokens * (3 * h * h + h * h + 2 * h * i)
        attn = 4.0 * batch * seq_len * seq_len * h
        return self.num_layers * (gemm + attn)


BERT_CONFIGS: dict[str, BertEncoderConfig] = {
    "all-MiniLM-L6-v2": BertEncoderConfig(),
    "tiny-test": BertEncoderConfig(
        vocab_size=128,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
    ),
}


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone().contiguous(), requires_grad=False)


class _FusedLayer(nn.Module):
    """One encoder layer's weights in fused layout; ``FusedBertEncoder.forward`` runs it."""

    def __init__(self, hf_layer: Any, dtype: torch.dtype) -> None:
        super().__init__()
        attn = hf_layer.attention
        q, k, v = attn.self.query, attn.self.key, attn.self.value
        # qkv_weight: [3H, H], rows [q heads | k heads | v heads]: the layout kernels.attention reads
        self.qkv_weight = _frozen(torch.cat([q.weight, k.weight, v.weight], dim=0).to(dtype))
        self.qkv_bias = _frozen(torch.cat([q.bias, k.bias, v.bias], dim=0).to(dtype))  # [3H]
        self.out_weight = _frozen(attn.output.dense.weight.to(dtype))  # [H, H]
        self.out_bias = _frozen(attn.output.dense.bias.to(dtype))  # [H]
        self.ln1_weight = _frozen(attn.output.LayerNorm.weight.to(dtype))  # [H]
        self.ln1_bias = _frozen(attn.output.LayerNorm.bias.to(dtype))  # [H]
        self.up_weight = _frozen(hf_layer.intermediate.dense.weight.to(dtype))  # [I, H]
        self.up_bias = _frozen(hf_layer.intermediate.dense.bias.to(dtype))  # [I]
        self.down_weight = _frozen(hf_layer.output.dense.weight.to(dtype))  # [H, I]
        self.down_bias = _frozen(hf_layer.output.dense.bias.to(dtype))  # [H]
        self.ln2_weight = _frozen(hf_layer.output.LayerNorm.weight.to(dtype))  # [H]
        self.ln2_bias = _frozen(hf_layer.output.LayerNorm.bias.to(dtype))  # [H]


class FusedBertEncoder(nn.Module):
    """BERT encoder + mean pooling + L2 normalisation, on ``kernels.ops``. Build it with ``from_hf``."""

    def __init__(self, config: BertEncoderConfig, hf_model: Any, dtype: torch.dtype) -> None:
        super().__init__()
        self.config = config
        emb = hf_model.embeddings
        self.word_embeddings = _frozen(emb.word_embeddings.weight.to(dtype))  # [V, H]
        self.position_embeddings = _frozen(emb.position_embeddings.weight.to(dtype))  # [P, H]
        self.token_type_embeddings = _frozen(emb.token_type_embeddings.weight.to(dtype))  # [T, H]
        self.emb_ln_weight = _frozen(emb.LayerNorm.weight.to(dtype))  # [H]
        self.emb_ln_bias = _frozen(emb.LayerNorm.bias.to(dtype))  # [H]
        self.layers = nn.ModuleList(_FusedLayer(layer, dtype) for layer in hf_model.encoder.layer)

    @classmethod
    def from_hf(cls, hf_model: Any, dtype: torch.dtype | None = None) -> FusedBertEncoder:
        """Copy a transformers ``BertModel``'s weights (on its device) into fused layout, cast to ``dtype``
        (default: the HF model's dtype). The HF model is not modified and can be freed afterwards."""
        config = BertEncoderConfig.from_hf(hf_model.config)
        if config.hidden_size % config.num_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not divisible by {config.num_heads} heads")
        param = next(hf_model.parameters())
        model = cls(config, hf_model, dtype if dtype is not None else param.dtype)
        return model.eval()

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids, attention_mask: [B, S] → last_hidden_state [B, S, H] in the model dtype. Rows past a
        sequence's last real token differ from HF's (attention writes zeros there); pooling never reads
        them."""
        return self._encode(input_ids, attention_mask, token_type_ids)[0]

    def _encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (last_hidden_state [B, S, H], key_mask [B, S] int32, reused by the pool kernel)."""
        cfg = self.config
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be [B, S]; got {tuple(input_ids.shape)} and "
                f"{tuple(attention_mask.shape)}"
            )
        b, s = input_ids.shape
        if s > cfg.max_position_embeddings:
            raise ValueError(f"sequence length {s} exceeds max_position_embeddings {cfg.max_position_embeddings}")
        key_mask, kv_len = ops.prepare_key_mask(attention_mask)  # [B, S] int32, [B] int32

        # Embeddings: word + token type + position, then LN, as one gather and one fused kernel. With no
        # segment ids, type row 0 is a per-column bias and positions[:S] a residual broadcast over the batch.
        x = F.embedding(input_ids, self.word_embeddings)  # [B, S, H]
        type_bias: torch.Tensor | None = self.token_type_embeddings[0]
        if token_type_ids is not None:
            x = x + F.embedding(token_type_ids, self.token_type_embeddings)
            type_bias = None
        hidden = ops.add_bias_residual_layernorm(
            x,
            type_bias,
            self.position_embeddings[:s],
            self.emb_ln_weight,
            self.emb_ln_bias,
            cfg.layer_norm_eps,
        ).view(b * s, cfg.hidden_size)  # [B·S, H]

        for layer in cast(list[_FusedLayer], self.layers):
            qkv = F.linear(hidden, layer.qkv_weight, layer.qkv_bias)  # [B·S, 3H]
            ctx = ops.attention(qkv.view(b, s, -1), key_mask, kv_len, cfg.num_heads)  # [B, S, H]
            attn_out = F.linear(ctx.view(b * s, -1), layer.out_weight)  # [B·S, H], bias fused below
            hidden = ops.add_bias_residual_layernorm(
                attn_out, layer.out_bias, hidden, layer.ln1_weight, layer.ln1_bias, cfg.layer_norm_eps
            )
            inter = ops.bias_gelu(F.linear(hidden, layer.up_weight), layer.up_bias)  # [B·S, I]
            ffn_out = F.linear(inter, layer.down_weight)  # [B·S, H], bias fused below
            hidden = ops.add_bias_residual_layernorm(
                ffn_out, layer.down_bias, hidden, layer.ln2_weight, layer.ln2_bias, cfg.layer_norm_eps
            )
        return hidden.view(b, s, cfg.hidden_size), key_mask

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids, attention_mask: [B, S] → sentence embedding [B, H] fp32, L2-normalised."""
        hidden, key_mask = self._encode(input_ids, attention_mask, token_type_ids)
        return ops.mean_pool_normalize(hidden, key_mask)

    @torch.inference_mode()
    def forward_with_head(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding plus class probabilities from a linear head. weight: [C, H], bias: [C]
        → (embedding [B, H] fp32, probs [B, C] fp32)."""
        hidden, key_mask = self._encode(input_ids, attention_mask, token_type_ids)
        return ops.pool_head(hidden, key_mask, weight, bias)
