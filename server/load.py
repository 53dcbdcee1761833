"""Live load per model and per GPU, fresh for every decision.

Router-side counters move on every request start and finish (engine metrics lag by a scrape interval);
scraped engine gauges and NVML readings are written here by `telemetry/`. The policy only reads. Prompt work
(prefill) and output work (decode) are counted apart: they cost an engine very different time per token.
Request failures are counted by the circuit breakers (`health/breaker.py`), which publish an open breaker here.
Single event loop, so plain attributes need no locks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class EngineLoad:
    healthy: bool = True
    in_flight: int = 0  # requests this router has open to the model
    in_flight_prompt_tokens: int = 0  # their estimated prompt tokens: prefill work
    in_flight_output_tokens: int = 0  # their requested output tokens (max_tokens, an upper bound): decode work
    engine_running: int = 0  # vllm:num_requests_running at the last scrape
    engine_waiting: int = 0  # vllm:num_requests_waiting at the last scrape
    kv_cache_usage: float = 0.0  # vllm:kv_cache_usage_perc, [0, 1]
    kv_cache_tokens: int = 0  # KV-cache capacity (vllm:cache_config_info num_gpu_blocks x block_size); 0: unknown
    generation_tok_per_s: float = 0.0  # output tokens/s over the last two scrapes (vllm:generation_tokens_total)
    scraped_at_s: float = 0.0  # time.monotonic() of the last successful scrape
    unhealthy_reason: str = ""
    breaker_open_until_s: float = 0.0  # time.monotonic() until which the circuit breaker keeps requests away


@dataclass(slots=True)
class GpuLoad:
    utilization: float = 0.0  # [0, 1], NVML
    memory_used_bytes: int = 0
    memory_total_bytes: int = 0
    read_at_s: float = 0.0


@dataclass
class LoadBoard:
    engines: dict[str, EngineLoad] = field(default_factory=dict)
    gpus: dict[str, GpuLoad] = field(default_factory=dict)

    def engine(self, model: str) -> EngineLoad:
        load = self.engines.get(model)
        if load is None:
            load = self.engines[model] = EngineLoad()
        return load

    def started(self, model: str, prompt_tokens: int, output_tokens: int) -> None:
        """A request went to `model`: `prompt_tokens` to prefill, at most `output_tokens` to generate."""
        load = self.engine(model)
        load.in_flight += 1
        load.in_flight_prompt_tokens += prompt_tokens
        load.in_flight_output_tokens += output_tokens

    def finished(self, model: str, prompt_tokens: int, output_tokens: int) -> None:
        """The request `started` with the same numbers ended (however it ended)."""
        load = self.engine(model)
        load.in_flight -= 1
        load.in_flight_prompt_tokens -= prompt_tokens
        load.in_flight_output_tokens -= output_tokens

    def mark_unhealthy(self, model: str, reason: str) -> None:
        load = self.engine(model)
        load.healthy = False
        load.unhealthy_reason = reason

    def mark_healthy(self, model: str) -> None:
        load = self.engine(model)
        load.healthy = True
        load.unhealthy_reason = ""

    def record_scrape(
        self, model: str, running: int, waiting: int, kv_cache_usage: float, kv_cache_tokens: int = 0
    ) -> None:
        """Engine gauges as just read; `kv_cache_tokens` 0 (not published) keeps the capacity known before."""
        load = self.engine(model)
        load.engine_running, load.engine_waiting, load.kv_cache_usage = running, waiting, kv_cache_usage
        if kv_cache_tokens > 0:
            load.kv_cache_tokens = kv_cache_tokens
        load.scraped_at_s = time.monotonic()
