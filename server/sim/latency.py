"""The latency model of a simulated vLLM engine, calibrated on one H100 run (vLLM 0.26, 2026-11-25).

Pure arithmetic: knows nothing about asyncio, HTTP or requests. All times are unscaled H100 milliseconds;
the engine multiplies them by `time_scale`, the `slowdown` fault and the GPU contention factor.

Formulas (b = sequences in the step's forward pass, p = prompt tokens prefilled in the step):

    decode_step_ms(b) = t1 + k1 * (b - 1) + k2 * (b - 1) ** 2
        a quadratic through three anchors, the step time at b = 1, 64 and 256;
    step_ms(b, p)     = decode_step_ms(max(b, 1)) + 1000 * p / prefill_tok_per_s
        chunked prefill: prompt tokens ride in the same step and lengthen it;
    frontend_ms       = max(0, base_ttft_ms - decode_step_ms(1))
        the fixed part of TTFT (API server, tokenizer, scheduler) before the engine sees the request, so an
        idle engine's TTFT is base_ttft_ms + 1000 * p / prefill_tok_per_s;
    contention        = 1 + sensitivity * sum(min(1, running_o / 64) for each other engine o on the GPU)
        multiplies the step time; an idle neighbour (running_o = 0) costs nothing.

Where the constants come from (`calibration-h100-2026-11-25.json`, sections "engines" and
"contention_nonstreamed_mps"):

- qwen2.5-7b: tpot 5.54 ms (conc 1), 7.11 ms (conc 64), 17.35 ms (conc 256) are the anchors. TTFT at
  conc 1 is 15.0 / 39.6 / 87.1 ms for 128 / 1024 / 4096 prompt tokens, i.e. ~55k tok/s including overhead,
  while the 64-in-flight throughput (6698 tok/s alone, 512 in / 128 out) needs ~100k tok/s of prefill next
  to the 7.1 ms decode step (identical token-id prompts may have hit the prefix cache). 80k tok/s is the
  compromise: it gives TTFT 15 / 26 / 65 ms and 6.2k tok/s at 64 in flight (-7%).
  base_ttft_ms 13.4 = 15.0 - 128 / 80k.
- qwen2.5-1.5b / 0.5b: their streamed 16-64 rows are client-limited, so the 64 anchor comes from the
  non-streamed alone throughput: 64 / 9915 tok/s = 6.45 ms per step (1.5b) and 64 / 9066 = 7.06 ms (0.5b),
  less the prefill share of 256 tokens per step (p / prefill_tok_per_s with 250k and 400k tok/s, scaled
  from the 7b by parameter count and damped for the small models' lower efficiency). The 1 and 256 anchors
  are the streamed tpot rows (2.7 / 2.16 ms and 19.9 / 24.0 ms). base_ttft_ms 33 is the measured conc-1
  TTFT at 128 tokens; it is flat in prompt length (62 ms at 1k and 4k), i.e. front-end bound rather than
  prefill bound.
- contention: with all three engines busy at 64 in flight each lost 15.6% (7b), 34.8% (1.5b) and 25.7%
  (0.5b) of its alone output rate. With two saturated neighbours the stretch is 1 + 2 * sensitivity, so
  sensitivity = (alone / together - 1) / 2: 0.096 (rounded up to land at 16%), 0.266 and 0.173.
- kv_cache_tokens: free memory at the run's gpu_memory_utilization (0.45 / 0.2 / 0.15 of 80 GiB) over the
  KV bytes per token of each shape, rounded down: 300k / 400k / 800k tokens.
- tiny-fast: not calibrated; a fast preset for tests with strong, visible contention.

Not modelled: preemption when the KV cache fills (admission simply waits), prefix caching, speculative
decoding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Batch at which a neighbour counts as saturating the GPU: the contention run had 64 in flight per engine.
SATURATION_BATCH = 64


@dataclass(frozen=True)
class ShapePreset:
    """Calibrated constants of one model shape on an H100 (see the module docstring for their sources)."""

    prefill_tok_per_s: float  # batched prompt tokens per second
    base_ttft_ms: float  # TTFT of a tiny prompt on an idle engine
    step_ms_at: tuple[float, float, float]  # decode step time at batch 1, 64 and 256, ms
    contention_sensitivity: float  # step-time stretch per saturated neighbour on the same GPU
    kv_cache_tokens: int  # default KV-cache capacity, tokens


SHAPES: dict[str, ShapePreset] = {
    "qwen2.5-7b": ShapePreset(80_000.0, 13.4, (5.5, 7.1, 17.35), 0.096, 300_000),
    "qwen2.5-1.5b": ShapePreset(250_000.0, 33.0, (2.7, 5.4, 19.9), 0.266, 400_000),
    "qwen2.5-0.5b": ShapePreset(400_000.0, 33.0, (2.2, 6.4, 24.0), 0.173, 800_000),
    "tiny-fast": ShapePreset(2_000_000.0, 1.0, (1.0, 1.5, 4.0), 0.5, 65_536),
}


class LatencyModelError(ValueError):
    """A preset name or override does not make a usable latency model."""


def _fit_quadratic(anchors: tuple[float, float, float]) -> tuple[float, float, float]:
    """(t1, k1, k2) of t1 + k1 * x + k2 * x**2 through x = 0, 63, 255 (batch 1, 64, 256)."""
    t1, t64, t256 = anchors
    x1, x2 = 63.0, 255.0
    d1, d2 = t64 - t1, t256 - t1
    # Solve d1 = k1*x1 + k2*x1^2, d2 = k1*x2 + k2*x2^2.
    k2 = (d2 / x2 - d1 / x1) / (x2 - x1)
    k1 = d1 / x1 - k2 * x1
    if k1 < 0 or k2 < 0:
        raise LatencyModelError(f"step anchors {anchors} do not give a step time that grows with batch size")
    return t1, k1, k2


@dataclass(frozen=True)
class LatencyModel:
    """Step and TTFT times of one engine, in unscaled milliseconds."""

    prefill_tok_per_s: float
    base_ttft_ms: float
    t1_ms: float  # decode step at batch 1
    k1_ms: float  # per extra sequence
    k2_ms: float  # per extra sequence, squared
    contention_sensitivity: float

    @classmethod
    def from_shape(
        cls,
        shape: str,
        *,
        prefill_tok_per_s: float | None = None,
        base_tpot_ms: float | None = None,
        base_ttft_ms: float | None = None,
    ) -> LatencyModel:
        """The preset `shape`, with optional overrides; `base_tpot_ms` rescales the whole batch curve."""
        preset = SHAPES.get(shape)
        if preset is None:
            raise LatencyModelError(f"unknown shape '{shape}'; use one of {', '.join(SHAPES)}")
        t1, k1, k2 = _fit_quadratic(preset.step_ms_at)
        if base_tpot_ms is not None:
            scale = base_tpot_ms / t1
            t1, k1, k2 = t1 * scale, k1 * scale, k2 * scale
        return cls(
            prefill_tok_per_s=prefill_tok_per_s or preset.prefill_tok_per_s,
            base_ttft_ms=preset.base_ttft_ms if base_ttft_ms is None else base_ttft_ms,
            t1_ms=t1,
            k1_ms=k1,
            k2_ms=k2,
            contention_sensitivity=preset.contention_sensitivity,
        )

    def decode_step_ms(self, batch: int) -> float:
        """One decode step with `batch` sequences (>= 1) in the forward pass."""
        x = max(batch, 1) - 1
        return self.t1_ms + self.k1_ms * x + self.k2_ms * x * x

    def prefill_ms(self, prompt_tokens: int) -> float:
        return 1000.0 * prompt_tokens / self.prefill_tok_per_s

    def step_ms(self, batch: int, prefill_tokens: int) -> float:
        """A step that decodes `batch` sequences and prefills `prefill_tokens` prompt tokens."""
        return self.decode_step_ms(batch) + self.prefill_ms(prefill_tokens)

    @property
    def frontend_ms(self) -> float:
        """Fixed delay before the engine sees a request, so that idle TTFT = base_ttft_ms + prefill."""
        return max(0.0, self.base_ttft_ms - self.decode_step_ms(1))

    def idle_ttft_ms(self, prompt_tokens: int) -> float:
        """TTFT on an idle, uncontended engine, for prompts within one step's token budget."""
        return self.frontend_ms + self.step_ms(1, prompt_tokens)


def neighbour_load(running: int) -> float:
    """How hard a neighbour engine with `running` sequences presses on the shared GPU, 0..1."""
    return min(1.0, running / SATURATION_BATCH)


def contention_factor(sensitivity: float, neighbour_running: Iterable[int]) -> float:
    """Step-time multiplier for an engine whose GPU neighbours run `neighbour_running` sequences each."""
    return 1.0 + sensitivity * sum(neighbour_load(r) for r in neighbour_running)


def steady_out_tok_per_s(
    model: LatencyModel, in_flight: int, prompt_tokens: int, output_tokens: int, factor: float = 1.0
) -> float:
    """Closed-loop output rate with `in_flight` requests always present (tokens/s, unscaled time).

    Each step decodes `in_flight` sequences and, on average, prefills in_flight / output_tokens new prompts.
    """
    prefill_per_step = in_flight * prompt_tokens / output_tokens
    step_s = model.step_ms(in_flight, round(prefill_per_step)) * factor / 1000.0
    return in_flight / step_s
