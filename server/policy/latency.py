"""Predicted time to first token and end-to-end latency of one request on each model, from live load.

Inputs per decision: each model's speed profile, the router's own in-flight counters (fresh on every request
start and finish; prompt and output tokens kept apart), the engines' scraped gauges (queue, KV-cache use and
capacity; a second old at most; used while younger than `STALE_S`), NVML utilisation of their GPU where read,
the load of every engine sharing that GPU, and how much of this prompt an engine already holds in its prefix
cache (conversation affinity, `affinity.py`). Output: `Prediction(ttft_s, total_s, neighbour_s)`. Pure
arithmetic over plain floats (no numpy: three models cost a few microseconds); knows nothing about quality,
cost, HTTP or how the simulator times its engines (no code or constant is shared with `server/sim`).

The model, for an engine with n requests open and room for B running sequences, a request of P prompt tokens
of which C are cached on that engine, and max_tokens M:

    b          = min(n + 1, B)                        sequences in a step once this request is admitted
    pressure_o = min(1, running_o / SATURATION)       how hard neighbour o presses on the shared GPU
    f          = 1 + sensitivity * sum(pressure_o)    step-time stretch from co-located engines (H100: with
                                                      both neighbours saturated each engine lost 16-35%)
    tpot(b)    = (tpot_1 + (b - 1) * (tpot_B - tpot_1) / (B - 1)) * f
    queue      = max(0, n + 1 - B, scraped waiting)   requests ahead that hold no slot yet
    out        = OUTPUT_FILL * mean requested output tokens of the open requests     decode work per request
    prompt     = mean prompt tokens of the open requests                             prefill work per request
    slot_wait  = queue * (out * tpot(B) / B + prompt * f / prefill_rate)
                 a slot frees every out * tpot(B) / B seconds, then the request ahead that takes it is prefilled
    kv_short   = (P - C) + OUTPUT_FILL * M - (free KV tokens - queue * (prompt + out))
    kv_wait    = max(0, kv_short) / (prompt + out) * out * tpot(b) / running
                 tokens this request would lack in the KV cache, freed as running sequences finish (each frees
                 prompt + out tokens; `running` of them finish every out * tpot(b) seconds); without that wait
                 vLLM would queue the request or preempt one mid-answer
    wait       = max(slot_wait, kv_wait)
    ttft       = base_ttft + (P - C) * f / prefill_rate + tpot(b) + wait
    total      = ttft + OUTPUT_FILL * M * tpot(b)

The KV term needs the engine's cache capacity (vLLM publishes it as `vllm:cache_config_info`) and a fresh
scrape; without them only the slot term applies. `neighbour_s` is what this request would cost the neighbours:
while it runs it adds 1/SATURATION to its engine's pressure, stretching each of their running sequences by
sensitivity_o / SATURATION for `total` seconds. An idle neighbour on a busy GPU therefore looks slower than its
own queue says (f > 1) and not free (neighbour_s > 0).
"""

from __future__ import annotations

from typing import NamedTuple

from ..config import ModelConfig
from ..load import LoadBoard

SATURATION = 64  # running sequences at which an engine presses fully on its GPU (the calibration's load)
OUTPUT_FILL = 0.6  # share of max_tokens an answer uses on average (answers stop at EOS before the limit)
STALE_S = 5.0  # scraped engine gauges and NVML readings older than this are ignored
PEAK_STRETCH = 3.0  # default tpot at max_num_seqs over tpot at batch 1 (H100, 7B: 17.35 / 5.5 ms)
UNKNOWN = -1.0  # kv_free_tokens of an engine whose cache capacity is not known or whose scrape is stale


class Prediction(NamedTuple):
    ttft_s: float
    total_s: float
    neighbour_s: float  # latency this request adds to requests on co-located engines, summed


class Snapshot(NamedTuple):
    """Each engine's load as one decision sees it; one entry per model, in config order."""

    occupancy: list[int]  # requests open (router counters, or the fresh scrape's running + waiting if more)
    queued: list[int]  # of those, requests without a batch slot
    output_tokens: list[float]  # mean requested output tokens of the open requests (0.0: none open)
    prompt_tokens: list[float]  # mean prompt tokens of the open requests (0.0: none open)
    kv_free_tokens: list[float]  # free KV-cache tokens at the last fresh scrape, or UNKNOWN


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

    def snapshot(self, now_s: float) -> Snapshot:
        snap = Snapshot([], [], [], [], [])
        engines = self.load.engines
        for name, speed in zip(self.names, self.speeds, strict=True):
            state = engines.get(name)
            if state is None:
                snap.occupancy.append(0)
                snap.queued.append(0)
                snap.output_tokens.append(0.0)
                snap.prompt_tokens.append(0.0)
                snap.kv_free_tokens.append(UNKNOWN)
                continue
            n = state.in_flight
            waiting = 0
            free = UNKNOWN
            if now_s - state.scraped_at_s <= STALE_S:
                waiting = state.engine_waiting
                n = max(n, state.engine_running + waiting)
                if state.kv_cache_tokens > 0:
                    free = max(0.0, 1.0 - state.kv_cache_usage) * state.kv_cache_tokens
            open_requests = state.in_flight
            snap.occupancy.append(n)
            snap.queued.append(max(waiting, n + 1 - speed.max_num_seqs, 0))
            snap.output_tokens.append(state.in_flight_output_tokens / open_requests if open_requests > 0 else 0.0)
            snap.prompt_tokens.append(state.in_flight_prompt_tokens / open_requests if open_requests > 0 else 0.0)
            snap.kv_free_tokens.append(free)
        return snap

    def predict(
        self,
        i: int,
        snap: Snapshot,
        now_s: float,
        prompt_tokens: int,
        max_output_tokens: int,
        cached_tokens: int = 0,
    ) -> Prediction:
        """Latency of a request on model `i`; `cached_tokens` of its prompt are in that engine's prefix cache."""
        s = self.speeds[i]
        out_tokens = OUTPUT_FILL * max_output_tokens
        new_tokens = max(0, prompt_tokens - cached_tokens)  # what the engine still has to prefill
        if s.remote:  # elastic capacity: the profile's idle speed
            ttft = s.base_ttft_s + new_tokens * s.prefill_s_per_token
            return Prediction(ttft, ttft + out_tokens * s.tpot_1_s, 0.0)
        occupancy = snap.occupancy
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
        out_mean = OUTPUT_FILL * (snap.output_tokens[i] or max_output_tokens)  # decode tokens per open request
        prompt_mean = snap.prompt_tokens[i] or float(prompt_tokens)  # prefill tokens per open request
        queued = snap.queued[i]
        wait = 0.0
        if queued > 0:
            wait = queued * (out_mean * s.tpot_max_s / batch + prompt_mean * s.prefill_s_per_token) * stretch
        free = snap.kv_free_tokens[i]
        if free != UNKNOWN:
            held = prompt_mean + out_mean  # KV tokens one sequence frees when it finishes
            short = new_tokens + out_tokens - (free - queued * held)
            if short > 0.0:
                wait = max(wait, short / held * out_mean * tpot / max(1, own_running))
        ttft = s.base_ttft_s + new_tokens * s.prefill_s_per_token * stretch + tpot + wait
        total = ttft + out_tokens * tpot
        neighbour = 0.0
        if own_running < SATURATION:
            for j in self.neighbours[i]:
                running_j = min(occupancy[j], self.speeds[j].max_num_seqs)
                neighbour += running_j * self.speeds[j].sensitivity / SATURATION * total
        return Prediction(ttft, total, neighbour)
