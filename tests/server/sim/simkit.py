"""Helpers shared by the simulated-engine tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from server.sim.runner import SimCluster
from server.sim.spec import SimEngineSpec

StartCluster = Callable[..., Awaitable[SimCluster]]


def spec(name: str = "sim-a", **kw: Any) -> SimEngineSpec:
    """A fast test engine on a free port unless told otherwise."""
    kw.setdefault("port", 0)
    kw.setdefault("shape", "tiny-fast")
    return SimEngineSpec(name=name, **kw)


def metric(text: str, name: str) -> float:
    """Value of the first sample `name{...}` in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)
