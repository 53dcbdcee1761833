"""`SimGPU`: the compute that simulated engines with the same gpu id share.

Engines register, report how many sequences they run after planning each step, and ask for their contention
factor. Knows nothing about requests, HTTP or time; the formula lives in `latency.contention_factor`.
"""

from __future__ import annotations

from server.sim.latency import contention_factor


class SimGPUError(ValueError):
    """An engine name is registered twice or was never registered."""


class SimGPU:
    """Load board of one simulated GPU; single event loop, so no locking."""

    def __init__(self, gpu_id: str) -> None:
        self.gpu_id = gpu_id
        self._running: dict[str, int] = {}  # engine name -> sequences in its current step

    def register(self, engine: str) -> None:
        if engine in self._running:
            raise SimGPUError(f"engine '{engine}' is already on {self.gpu_id}; engine names must be unique")
        self._running[engine] = 0

    def unregister(self, engine: str) -> None:
        self._running.pop(engine, None)

    def report(self, engine: str, running: int) -> None:
        """Record that `engine` now runs `running` sequences (0 when idle)."""
        if engine not in self._running:
            raise SimGPUError(f"engine '{engine}' reported load on {self.gpu_id} without registering")
        self._running[engine] = running

    def factor(self, engine: str, sensitivity: float) -> float:
        """Step-time multiplier for `engine`, given what its neighbours run now (1.0 when they idle)."""
        return contention_factor(sensitivity, (r for name, r in self._running.items() if name != engine))

    @property
    def engines(self) -> list[str]:
        return list(self._running)

    def load(self) -> dict[str, int]:
        """Engine name -> running sequences, a copy."""
        return dict(self._running)
