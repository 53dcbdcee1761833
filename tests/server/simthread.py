"""Simulated engines in their own thread and event loop, apart from the router, so a test can kill, restart
and fault them while Triage (`run_triage(config, start_simulated=False)`) keeps running."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from server.config import TriageConfig
from server.sim.runner import SimCluster, serve_engines
from server.sim.spec import FaultSpec, SimEngineSpec


class SimThread:
    def __init__(self, loop: asyncio.AbstractEventLoop, cluster: SimCluster) -> None:
        self.loop = loop
        self.cluster = cluster

    def call(self, coro: Any, timeout_s: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def kill(self, name: str) -> None:
        self.call(self.cluster.kill_engine(name))

    def restart(self, name: str) -> None:
        self.call(self.cluster.restart_engine(name))

    def faults(self, name: str, **faults: Any) -> None:
        self.loop.call_soon_threadsafe(self.cluster.set_faults, name, FaultSpec(**faults))

    def served(self, name: str) -> int:
        """Requests engine `name` finished (any finish reason)."""
        finished: dict[str, int] = self.cluster.engines[name].state()["request_success_total"]  # type: ignore[assignment]
        return sum(finished.values())


@contextmanager
def sim_engines(config: TriageConfig) -> Iterator[SimThread]:
    specs = [m.simulated for m in config.models if isinstance(m.simulated, SimEngineSpec)]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sim-engines", daemon=True)
    thread.start()
    cluster = asyncio.run_coroutine_threadsafe(serve_engines(specs), loop).result(20)
    try:
        yield SimThread(loop, cluster)
    finally:
        asyncio.run_coroutine_threadsafe(cluster.stop(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
