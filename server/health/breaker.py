"""Per-engine circuit breakers: consecutive request failures open a breaker, a cool-down later one probe
request may pass (half-open), and its result closes the breaker or opens it again for twice as long.

Failures are what the request path observed (connect errors, engine 5xx, timeouts, broken streams), not the
active `/health` probe, which marks engines unhealthy on its own (`telemetry/probe.py`). An open breaker is
published as `EngineLoad.breaker_open_until_s`, so every policy routes around it through `eligibility.py`.
Knows nothing about HTTP, policies or which request failed; single event loop, so no locks.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass

from ..config import BreakerConfig
from ..load import LoadBoard
from ..telemetry.metrics import Metrics

log = logging.getLogger(__name__)
PROBE_HOLD_S = 30.0  # while the half-open probe runs, others stay away this long at most


class BreakerState(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(slots=True)
class CircuitBreaker:
    """The state machine of one engine; `now_s` is time.monotonic()."""

    failures_to_open: int
    cooldown_s: float
    max_cooldown_s: float
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    open_until_s: float = 0.0  # while OPEN (or a probe runs): no request before this time
    current_cooldown_s: float = 0.0

    def available(self, now_s: float) -> bool:
        """Whether a request may go to the engine now (an OPEN breaker past its cool-down turns HALF_OPEN)."""
        if self.state is BreakerState.OPEN and now_s >= self.open_until_s:
            self.state = BreakerState.HALF_OPEN
        return now_s >= self.open_until_s

    def on_attempt(self, now_s: float) -> None:
        """A request is going to the engine; in HALF_OPEN it is the probe, so hold the others back."""
        if self.available(now_s) and self.state is BreakerState.HALF_OPEN:
            self.open_until_s = now_s + PROBE_HOLD_S

    def on_success(self) -> None:
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.open_until_s = 0.0
        self.current_cooldown_s = 0.0

    def on_failure(self, now_s: float) -> bool:
        """Count a failure; True when this failure opened the breaker."""
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self.current_cooldown_s = min(self.max_cooldown_s, 2 * self.current_cooldown_s or self.cooldown_s)
        elif self.state is BreakerState.CLOSED and self.consecutive_failures >= self.failures_to_open:
            self.current_cooldown_s = self.cooldown_s
        else:
            return False
        self.state = BreakerState.OPEN
        self.open_until_s = now_s + self.current_cooldown_s
        return True


class Breakers:
    """One breaker per model, mirrored into the `LoadBoard` and the metrics."""

    def __init__(self, models: list[str], config: BreakerConfig, load: LoadBoard, metrics: Metrics) -> None:
        self.load = load
        self.metrics = metrics
        self.breakers = {
            name: CircuitBreaker(config.failures, config.cooldown_s, config.max_cooldown_s) for name in models
        }
        for name in models:
            metrics.breaker_state.labels(name).set(0)

    def available(self, model: str) -> bool:
        return self.breakers[model].available(time.monotonic())

    def retry_after_s(self, model: str) -> float:
        return max(1.0, self.breakers[model].open_until_s - time.monotonic())

    def attempt(self, model: str) -> None:
        breaker = self.breakers[model]
        if breaker.state is not BreakerState.CLOSED:
            breaker.on_attempt(time.monotonic())
            self._publish(model, breaker)

    def success(self, model: str) -> None:
        breaker = self.breakers[model]
        if breaker.state is BreakerState.CLOSED:
            breaker.consecutive_failures = 0
            return
        log.info("circuit breaker for %s closed: the probe request succeeded", model)
        breaker.on_success()
        self._publish(model, breaker)

    def failure(self, model: str) -> None:
        breaker = self.breakers[model]
        if breaker.on_failure(time.monotonic()):
            log.warning(
                "circuit breaker for %s open for %.1f s after %d consecutive failures",
                model,
                breaker.current_cooldown_s,
                breaker.consecutive_failures,
            )
            self.metrics.breaker_opens.labels(model).inc()
            self._publish(model, breaker)

    def _publish(self, model: str, breaker: CircuitBreaker) -> None:
        self.load.engine(model).breaker_open_until_s = breaker.open_until_s
        self.metrics.breaker_state.labels(model).set(int(breaker.state))
