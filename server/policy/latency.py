"""Predicted time to first token and end-to-end latency of one request on each model, from live load.

Inputs per decision: each model's speed profile, the router's own in-flight counters (fresh on every request
start and finish), the engines' scraped queue gauges (a second old at most; used while younger than
`STALE_S`), NVML utilisation of their GPU where read, and the load of every engine sharing that GPU. Output:
`Prediction(ttft_s, total_s, neighbour_s)`. Pure arithmetic over plain floats (no numpy: three models cost a
few microseconds); knows nothing about quality, cost or HTTP.

The model, for an engine with n requests open and room for B running sequences:

    b          = min(n + 1, B)                        sequences in a step once this request is admitted
    pressure_o = min(1, running_o / SATURATION)       how hard neighbour o presses on the shared GPU
    f          = 1 + sensitivity * sum(pressure_o)    step-time stretch from co-located engines (H100: with
                                                      both neighbours saturated each engine lost 16-35%)
    tpot(b)    = (tpot_1 + (b - 1) * (tpot_B - tpot_1) / (B - 1)) * f
    queue      = max(0, n + 1 - B, scraped waiting)   requests ahead that hold no slot yet
    wait       = queue * out_mean * tpot(B) / B       slots free at B / (out_mean * tpot(B)) per second
    ttft       = base_ttft + prompt * f / prefill_rate + tpot(b) + wait
    total      = ttft + OUTPUT_FILL * max_tokens * tpot(b)

`out_mean` is OUTPUT_FILL times the open requests' mean planned tokens (router counters). `neighbour_s` is
what this request would cost the neighbours: while it runs it adds 1/SATURATION to its engine's pressure,
stretching each of their running sequences by sensitivity_o / SATURATION for `total` seconds. An idle
neighbour on a busy GPU therefore looks slower than its own queue says (f > 1) and not free (neighbour_s > 0).
"""

from __future__ import annotations

from typing import NamedTuple

from ..config import ModelConfig
from ..load import LoadBoard

SATURATION = 64  # running sequences at which an engine presses fully on its GPU (the calibration's load)
OUTPUT_FILL = 0.6  # share of max_tokens an answer uses on average (answers stop at EOS before the limit)
STALE_S = 5.0  # scraped engine gauges and NVML readings older than this are ignored
PEAK_STRETCH = 3.0  # default tpot at max_num_seqs over tpot at batch 1 (H100, 7B: 17.35 / 5.5 ms)


class Prediction(NamedTuple):
    ttft_s: float
    total_s: float
    neighbour_s: float  # latency this request adds to requests on co-located engines, summed


class _Speed(NamedTuple):
    """Per-model constants, computed once from the profile."""

    base_ttft_s: float
    prefill_s_per_token: float
    tpot_1_s: float
    tpot_slope_s: float  # extra tpot per extra running sequence
    tpot_max_s: float  # tpot at max_num_seqs, uncontended
    max_num_seqs: int
    sensitivity: float
    remote: bool


def _speed(model: ModelConfig) -> _Speed:
    p = model.profile
    batch = p.max_num_seqs
    tpot_1 = 1.0 / p.decode_tok_per_s
    tpot_max = batch / p.peak_decode_tok_per_s if p.peak_decode_tok_per_s else tpot_1 * PEAK_STRETCH
    tpot_max = max(tpot_max, tpot_1)
    slope = (tpot_max - tpot_1) / (batch - 1) if batch > 1 else 0.0
    return _Speed(
        p.base_ttft_ms / 1e3,
        1.0 / p.prefill_tok_per_s,
        tpot_1,
        slope,
        tpot_max,
        batch,
        p.contention_sensitivity,
        model.remote,
    )


class LatencyPredictor:
    """Predicts per-model latency from a `LoadBoard`; build once, call `snapshot` then `predict` per decision."""

    def __init__(self, models: list[ModelConfig], load: LoadBoard) -> None:
        self.load = load
        self.names = [m.name for m in models]
        self.speeds = [_speed(m) for m in models]
        self.gpus = [None if m.remote else m.gpu for m in models]
        # neighbours[i]: indices of the other local engines on model i's GPU
        self.neighbours: list[tuple[int, ...]] = [
            tuple(j for j, g in enumerate(self.gpus) if j != i and g is not None and g == self.gpus[i])
            for i in range(len(models))
        ]

    def snapshot(self, now_s: float) -> tuple[list[int], list[int], list[float]]:
        """(open requests, queued requests, mean planned tokens per open request), one entry per model."""
        occupancy: list[int] = []
        queued: list[int] = []
        mean_tokens: list[float] = []
        engines = self.load.engines
        for name, speed in zip(self.names, self.speeds, strict=True):
            state = engines.get(name)
            if state is None:
                occupancy.append(0)
                queued.append(0)
                mean_tokens.append(0.0)
                continue
            n = state.in_flight
            waiting = 0
            if now_s - state.scraped_at_s <= STALE_S:
                waiting = state.engine_waiting
                n = max(n, state.engine_running + waiting)
            occupancy.append(n)
            queued.append(max(waiting, n + 1 - speed.max_num_seqs, 0))
            mean_tokens.append(state.in_flight_tokens / state.in_flight if state.in_flight > 0 else 0.0)
        return occupancy, queued, mean_tokens

    def predict(
        self,
        i: int,
        snap: tuple[list[int], list[int], list[float]],
        now_s: float,
        prompt_tokens: int,
        max_output_tokens: int,
    ) -> Prediction:
        s = self.speeds[i]
        out_tokens = OUTPUT_FILL * max_output_tokens
        if s.remote:  # elastic capacity: the profile's idle speed
            ttft = s.base_ttft_s + prompt_tokens * s.prefill_s_per_token
            return Prediction(ttft, ttft + out_tokens * s.tpot_1_s, 0.0)
        occupancy, queued, mean_tokens = snap
        n = occupancy[i]
        batch = s.max_num_seqs
        own_running = min(n, batch)
        external = 0.0
        for j in self.neighbours[i]:
            external += min(1.0, min(occupancy[j], self.speeds[j].max_num_seqs) / SATURATION)
        gpu_id = self.gpus[i]
        gpu = self.load.gpus.get(gpu_id) if gpu_id is not None else None
        if gpu is not None and now_s - gpu.read_at_s <= STALE_S:
            # NVML sees work the router does not (other clients, foreign processes): count what exceeds ours
            foreign = (gpu.utilization - min(1.0, own_running / SATURATION)) * max(1, len(self.neighbours[i]))
            external = max(external, foreign)
        stretch = 1.0 + s.sensitivity * external
        b = min(n + 1, batch)
        tpot = (s.tpot_1_s + (b - 1) * s.tpot_slope_s) * stretch
        wait = 0.0
        if queued[i] > 0:
            out_mean = OUTPUT_FILL * (mean_tokens[i] or max_output_tokens)
            wait = queued[i] * out_mean * s.tpot_max_s * stretch / batch
        ttft = s.base_ttft_s + prompt_tokens * s.prefill_s_per_token * stretch + tpot + wait
        total = ttft + out_tokens * tpot
        neighbour = 0.0
        if own_running < SATURATION:
            for j in self.neighbours[i]:
                running_j = min(occupancy[j], self.speeds[j].max_num_seqs)
                neighbour += running_j * self.speeds[j].sensitivity / SATURATION * total
        return Prediction(ttft, total, neighbour)
