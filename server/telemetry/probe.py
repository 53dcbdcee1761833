"""Background reader of engine health, queue and KV-cache gauges, about once a second, into the `LoadBoard`.

Engine metrics lag; router-side counters in `LoadBoard` are the fresh part. A model whose health check fails
is marked unhealthy (the policy routes around it) until a check passes again. The engine's generated-token
counter becomes a rate (tokens/s between two scrapes) for the operator console.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..backends import EngineClient
from ..load import LoadBoard
from ..ticker import Ticker
from .metrics import Metrics

log = logging.getLogger(__name__)


class EngineProbe:
    def __init__(
        self, clients: dict[str, EngineClient], load: LoadBoard, metrics: Metrics, interval_s: float = 1.0
    ) -> None:
        self.clients = clients
        self.load = load
        self.metrics = metrics
        self._ticker = Ticker(interval_s, self.poll_once, "engine-probe")
        self._generated: dict[str, tuple[float, float]] = {}  # model -> (clock s, tokens) at the last scrape
        self.clock: Callable[[], float] = time.monotonic  # tests swap in their own

    async def start(self) -> None:
        await self.poll_once()
        self._ticker.start()

    async def stop(self) -> None:
        await self._ticker.stop()

    async def poll_once(self) -> None:
        await asyncio.gather(*(self._poll(name, client) for name, client in self.clients.items()))

    async def _poll(self, name: str, client: EngineClient) -> None:
        healthy = await client.health()
        state = self.load.engine(name)
        if healthy and not state.healthy:
            log.info("engine for %s is healthy again", name)
            self.load.mark_healthy(name)
        elif not healthy and state.healthy:
            log.warning("engine for %s failed its health check; routing around it", name)
            self.load.mark_unhealthy(name, "health check failed")
        self.metrics.engine_healthy.labels(name).set(1.0 if healthy else 0.0)
        if healthy:
            stats = await client.stats()
            if stats is not None:
                self.load.record_scrape(name, stats.running, stats.waiting, stats.kv_cache_usage, stats.kv_cache_tokens)
                self.metrics.engine_waiting.labels(name).set(stats.waiting)
                self.metrics.engine_running.labels(name).set(stats.running)
                self.metrics.engine_kv_cache_usage.labels(name).set(stats.kv_cache_usage)
                self._token_rate(name, stats.generation_tokens)

    def _token_rate(self, name: str, tokens: float) -> None:
        """Tokens/s since the previous scrape (0 when the counter went down: the engine restarted)."""
        now_s = self.clock()
        last = self._generated.get(name)
        self._generated[name] = (now_s, tokens)
        if last is not None and now_s > last[0]:
            rate = (tokens - last[1]) / (now_s - last[0]) if tokens >= last[1] else 0.0
            self.load.engine(name).generation_tok_per_s = rate
