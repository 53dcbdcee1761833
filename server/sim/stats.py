"""Cheap in-process counters and histograms that a simulated engine updates on its hot path.

Plain lists and ints: one `bisect` per observation and an optional count, so a step can record the
inter-token latency of all its sequences at once. Knows nothing about Prometheus text; `metrics.py` turns
these into vLLM-named metric families at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Bucket bounds in seconds, copied from vLLM's v1 PrometheusStatLogger.
# Packed by hand: one bound per line would hide which bounds the families share.
# fmt: off
TTFT_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0, 160.0, 640.0, 2560.0,
)
ITL_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)
REQUEST_LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)
# fmt: on
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "abort")


class Histo:
    """A fixed-bucket histogram: non-cumulative counts per bucket (+Inf last), sum and count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # [len(bounds) + 1]; last is the +Inf bucket
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        """Record `n` observations of `value` (Prometheus buckets are `le`, hence bisect_left)."""
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def cumulative(self) -> list[tuple[str, int]]:
        """[(le, cumulative count)] in Prometheus order, ending with ('+Inf', count)."""
        out: list[tuple[str, int]] = []
        acc = 0
        for bound, c in zip(self.bounds, self.counts, strict=False):
            acc += c
            out.append((repr(float(bound)), acc))
        out.append(("+Inf", self.count))
        return out


@dataclass
class EngineStats:
    """Everything `/metrics` reports beyond the live gauges (which the engine computes on demand)."""

    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    preemptions_total: int = 0
    request_success_total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0))
    ttft_s: Histo = field(default_factory=lambda: Histo(TTFT_BUCKETS_S))
    itl_s: Histo = field(default_factory=lambda: Histo(ITL_BUCKETS_S))
    e2e_s: Histo = field(default_factory=lambda: Histo(REQUEST_LATENCY_BUCKETS_S))
    queue_s: Histo = field(default_factory=lambda: Histo(REQUEST_LATENCY_BUCKETS_S))
