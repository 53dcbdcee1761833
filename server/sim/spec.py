"""Settings of one simulated vLLM engine: pydantic models only (pydantic + stdlib).

The main Triage config embeds these, so this module imports nothing else from Triage. It knows the names
of the latency presets (the numbers live in `latency.py`) but nothing about how they are used, nor about
HTTP.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Names of the latency presets in `latency.SHAPES`; kept here so the spec stays free of other imports.
SHAPE_NAMES: tuple[str, ...] = ("qwen2.5-7b", "qwen2.5-1.5b", "qwen2.5-0.5b", "tiny-fast")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaultSpec(_Strict):
    """Faults the engine injects; replaceable at runtime through `POST /sim/faults`."""

    error_rate: float = Field(
        default=0.0,
        description="Share of requests answered at once with HTTP 500 in vLLM's error JSON shape, 0..1.",
    )
    hang: bool = Field(default=False, description="Accept requests and never send a byte until the client gives up.")
    drop_mid_stream_rate: float = Field(
        default=0.0, description="Share of streams whose connection is cut after a few tokens, 0..1."
    )
    slowdown: float = Field(
        default=1.0, description="Multiplies every engine step time (2.0 = half speed); must be > 0."
    )

    @field_validator("error_rate", "drop_mid_stream_rate")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{value} is not a share; use a number in [0, 1] (0.1 = one request in ten)")
        return value

    @field_validator("slowdown")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not 0.0 < value <= 1000.0:
            raise ValueError(f"slowdown {value} must lie in (0, 1000]; 1.0 is normal speed, 2.0 half speed")
        return value


class SimEngineSpec(_Strict):
    """One simulated engine: where it listens, which preset it copies, and its capacity."""

    name: str = Field(min_length=1, description="Served model name: requests must name it, /v1/models lists it.")
    host: str = Field(default="127.0.0.1", description="Address to bind; keep it on loopback.")
    port: int = Field(ge=0, le=65535, description="TCP port; 0 picks a free one (see SimCluster.base_url).")
    gpu: str = Field(default="gpu0", min_length=1, description="Simulated GPU id; engines on one id share its compute.")
    shape: str = Field(default="qwen2.5-7b", description=f"Latency preset, one of {', '.join(SHAPE_NAMES)}.")
    prefill_tok_per_s: float | None = Field(
        default=None, gt=0, description="Override: batched prompt tokens per second of the preset."
    )
    base_tpot_ms: float | None = Field(
        default=None,
        gt=0,
        description="Override: decode step time at batch 1, ms; the batch curve is scaled with it.",
    )
    base_ttft_ms: float | None = Field(
        default=None,
        ge=0,
        description="Override: time to first token of a tiny prompt on an idle engine, ms.",
    )
    max_num_seqs: int = Field(default=256, ge=1, le=65536, description="Continuous-batching capacity (running seqs).")
    max_num_batched_tokens: int = Field(
        default=8192,
        ge=16,
        description="Token budget per step (decode tokens + chunked prefill), as vLLM's flag.",
    )
    max_model_len: int = Field(default=8192, ge=16, description="Prompt + output tokens allowed per request.")
    kv_cache_tokens: int | None = Field(
        default=None,
        ge=16,
        description="KV-cache size in tokens; default from the preset. Drives kv_cache_usage_perc.",
    )
    default_output_tokens: int = Field(
        default=128,
        ge=1,
        description="Typical reply length when the request does not set ignore_eos (0.5x-1.5x).",
    )
    task: Literal["generate", "embed"] = Field(
        default="generate",
        description="generate: chat and completions; embed: an embedding model serving only /v1/embeddings "
        "(vLLM's --task embed).",
    )
    embedding_dim: int = Field(default=1024, ge=1, le=8192, description="task embed: length of each vector.")
    seed: int = Field(default=0, description="Seeds reply lengths, filler text and fault draws.")
    time_scale: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="Multiplies every simulated duration; tests use e.g. 0.1 to run fast.",
    )
    faults: FaultSpec = Field(default_factory=FaultSpec)

    @field_validator("shape")
    @classmethod
    def _known_shape(cls, value: str) -> str:
        if value not in SHAPE_NAMES:
            raise ValueError(f"unknown shape '{value}'; use one of {', '.join(SHAPE_NAMES)}")
        return value

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if value not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"host '{value}' is not loopback; simulated engines bind 127.0.0.1 only")
        return value
