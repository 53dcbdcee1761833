"""The operator console's state: one JSON snapshot of engines, GPUs, rolling windows and the decisions a client
has not seen yet, built only when a client asks.

`Console` reads what the router already keeps: the `LoadBoard` (router counters, scraped vLLM gauges, NVML
readings), the circuit breakers, NVML's engine-to-GPU map and the gateway's ring of recent decisions
(`recent.py`). Its one background task folds finished requests into the rolling windows about once a second,
so a console with no client attached costs a few microseconds a second and the request path nothing beyond the
ring's O(1) appends. Knows nothing about HTTP (`routes.py` serves it) or how the page draws it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from ..config import TriageConfig
from ..policy import POLICIES
from ..ticker import Ticker
from .views import decision_detail, decision_summary, engine_views, gpu_views
from .window import Windows

if TYPE_CHECKING:
    from ..serving import Gateway

FOLD_S = 1.0  # how often finished requests are folded into the windows
FIRST_DECISIONS = 100  # rows a new client gets; later snapshots carry only what changed, at most this many
DEFAULT_TTFT_TARGET_MS = 1000.0  # for policies without a `ttft_target_ms` option


def ttft_target_s(config: TriageConfig) -> float:
    """The TTFT target the console measures attainment against: the policy's own, where it has one."""
    options = POLICIES[config.policy.name].options_of(config.policy)
    target_ms = getattr(options, "ttft_target_ms", None)
    return float(target_ms if isinstance(target_ms, int | float) else DEFAULT_TTFT_TARGET_MS) / 1e3


class Console:
    def __init__(self, gateway: Gateway, engines_on_gpu: Callable[[], dict[str, list[str]]] = dict) -> None:
        """`engines_on_gpu()`: GPU id -> models NVML found there (empty without NVML)."""
        self.gateway = gateway
        self.recent = gateway.recent
        self.engines_on_gpu = engines_on_gpu
        self.windows = Windows(ttft_target_s(gateway.config))
        self.started_unix = time.time()
        self._folded_total = 0  # finished requests the windows have seen, or missed
        self._folder = Ticker(FOLD_S, self.fold, "console-fold")

    async def start(self) -> None:
        self._folder.start()

    async def stop(self) -> None:
        await self._folder.stop()

    def fold(self) -> None:
        """Move finished requests from the ring's queue into the windows (and count any it dropped)."""
        closed = self.recent.drain_closed()
        queued = self.recent.closed_total - self._folded_total
        self.windows.missed += queued - len(closed)
        self._folded_total = self.recent.closed_total
        self.windows.fold(closed, time.monotonic())

    def state(self, since_version: int = 0) -> dict[str, Any]:
        """Everything the page shows; `decisions` holds the entries changed after `since_version`."""
        self.fold()
        gateway = self.gateway
        now_s = time.monotonic()
        models = gateway.config.models
        admission = gateway.guard.admission
        changed = self.recent.changed_since(since_version, FIRST_DECISIONS)
        return {
            "version": self.recent.version,
            "now_unix": round(time.time(), 3),
            "uptime_s": round(time.time() - self.started_unix, 1),
            "policy": {"name": gateway.config.policy.name, "preset": gateway.config.policy.preset},
            "admission": {"in_flight": admission.in_flight, "max_in_flight": admission.max_in_flight},
            "engines": engine_views(models, gateway.load, gateway.guard.breakers, self.windows, now_s),
            "gpus": gpu_views(models, gateway.load, self.engines_on_gpu()),
            "window": self.windows.view(now_s),
            "decisions": [decision_summary(e) for e in changed],
        }

    def snapshot(self, since_version: int = 0) -> tuple[bytes, int]:
        """`state()` as JSON bytes, and the version the client has now seen."""
        state = self.state(since_version)
        return orjson.dumps(state), int(state["version"])

    def detail(self, request_id: str) -> bytes | None:
        """One decision with every candidate's terms, or None when it has left the ring."""
        entry = self.recent.by_id.get(request_id)
        return None if entry is None else orjson.dumps(decision_detail(entry))
