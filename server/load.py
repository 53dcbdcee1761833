"""Live load per model and per GPU, fresh for every decision.

Router-side counters move on every request start and finish (engine metrics lag by a scrape interval);
scraped engine gauges and NVML readings are written here by `telemetry/`. The policy only reads. Single event
loop, so plain attributes need no locks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class EngineLoad:
    healthy: bool = True
    in_flight: int = 0  # requests this router has open to the model
    in_flight_tokens: int = 0  # their prompt + requested output tokens
    engine_running: int = 0  # vllm:num_requests_running at the last scrape
    engine_waiting: int = 0  # vllm:num_requests_waiting at the last scrape
    kv_cache_usage: float = 0.0  # vllm:kv_cache_usage_perc, [0, 1]
    generation_tok_per_s: float = 0.0  # output tokens/s over the last two scrapes (vllm:generation_tokens_total)
    scraped_at_s: float = 0.0  # time.monotonic() of the last successful scrape
    consecutive_failures: int = 0
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

    def started(self, model: str, tokens: int) -> None:
        load = self.engine(model)
        load.in_flight += 1
        load.in_flight_tokens += tokens

    def finished(self, model: str, tokens: int) -> None:
        load = self.engine(model)
        load.in_flight -= 1
        load.in_flight_tokens -= tokens

    def mark_unhealthy(self, model: str, reason: str) -> None:
        load = self.engine(model)
        load.healthy = False
        load.unhealthy_reason = reason

    def mark_healthy(self, model: str) -> None:
        load = self.engine(model)
        load.healthy = True
        load.unhealthy_reason = ""
        load.consecutive_failures = 0

    def record_scrape(self, model: str, running: int, waiting: int, kv_cache_usage: float) -> None:
        load = self.engine(model)
        load.engine_running, load.engine_waiting, load.kv_cache_usage = running, waiting, kv_cache_usage
        load.scraped_at_s = time.monotonic()
