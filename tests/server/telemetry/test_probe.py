"""The engine probe: health into the load board, and the generated-token counter turned into tokens/s."""

from __future__ import annotations

import pytest

from server.backends.base import EngineStats
from server.load import LoadBoard
from server.telemetry.metrics import Metrics
from server.telemetry.probe import EngineProbe


class ScriptedClient:
    """Answers health checks and scrapes from a script (no HTTP)."""

    def __init__(self, counters: list[float]) -> None:
        self.counters = counters
        self.healthy = True

    async def health(self) -> bool:
        return self.healthy

    async def stats(self) -> EngineStats:
        return EngineStats(running=2, waiting=1, kv_cache_usage=0.5, generation_tokens=self.counters.pop(0))


async def test_token_rate_between_scrapes_and_after_a_restart() -> None:
    clock = iter([10.0, 12.0, 13.0])
    load = LoadBoard()
    client = ScriptedClient([100.0, 500.0, 40.0])  # 200 tokens/s, then the counter restarts from zero
    probe = EngineProbe({"m": client}, load, Metrics())  # type: ignore[dict-item]
    probe.clock = lambda: next(clock)
    await probe.poll_once()
    assert load.engine("m").generation_tok_per_s == 0.0  # one scrape: no rate yet
    await probe.poll_once()
    assert load.engine("m").generation_tok_per_s == pytest.approx(200.0)
    await probe.poll_once()
    assert load.engine("m").generation_tok_per_s == 0.0
    assert (load.engine("m").engine_running, load.engine("m").engine_waiting) == (2, 1)
