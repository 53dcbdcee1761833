"""Utility weights: the named presets and how a request's `route` object overrides them.

A preset is three weights, on quality, latency and cost, read by `triage.py`'s utility
U = w_q * quality - w_l * ln(1 + latency / latency_scale) - w_c * cost / cost_scale. Knows nothing about
models or load.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import Priority, RouteOptions


@dataclass(frozen=True, slots=True)
class Weights:
    quality: float  # per unit of predicted quality in [0, 1]
    latency: float  # per unit of ln(1 + predicted latency / latency scale)
    cost: float  # per cost scale of predicted cost

    def as_dict(self) -> dict[str, float]:
        return {"quality": self.quality, "latency": self.latency, "cost": self.cost}


# balanced: a 2x slower answer is worth about 0.1 quality points at typical latencies; quality: latency only
# breaks near-ties and avoids queues; speed: latency first, quality still breaks ties; cost: spend GPU time
# (or dollars) only where quality pays for it.
PRESETS: dict[Priority, Weights] = {  # every Priority has weights: tests/server/policy checks the keys
    "balanced": Weights(quality=1.0, latency=0.25, cost=0.05),
    "quality": Weights(quality=1.0, latency=0.08, cost=0.01),
    "speed": Weights(quality=0.5, latency=0.6, cost=0.02),
    "cost": Weights(quality=0.8, latency=0.15, cost=0.5),
}


def resolve_weights(default_preset: Priority, options: RouteOptions) -> tuple[str, Weights]:
    """(label, weights) for one request: the request's priority or the configured preset, then its weights."""
    preset = options.priority or default_preset
    weights = PRESETS[preset]
    if not options.weights:
        return preset, weights
    w = options.weights  # a negative weight would reward what the caller wants less of: clamp at zero
    return "custom", Weights(
        quality=max(0.0, w.get("quality", weights.quality)),
        latency=max(0.0, w.get("latency", weights.latency)),
        cost=max(0.0, w.get("cost", weights.cost)),
    )
