"""Engine health as the request path sees it: per-engine circuit breakers (active probing is telemetry/probe)."""

from .breaker import Breakers, BreakerState, CircuitBreaker

__all__ = ["BreakerState", "Breakers", "CircuitBreaker"]
