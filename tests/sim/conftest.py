"""Fixtures for the simulated-engine tests: clusters on free loopback ports, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from server.sim.runner import SimCluster, serve_engines
from server.sim.spec import SimEngineSpec

StartCluster = Callable[..., Awaitable[SimCluster]]


def spec(name: str = "sim-a", **kw: Any) -> SimEngineSpec:
    """A fast test engine on a free port unless told otherwise."""
    kw.setdefault("port", 0)
    kw.setdefault("shape", "tiny-fast")
    return SimEngineSpec(name=name, **kw)


@pytest.fixture
async def start_cluster() -> AsyncIterator[StartCluster]:
    clusters: list[SimCluster] = []

    async def start(*specs: SimEngineSpec) -> SimCluster:
        cluster = await serve_engines(list(specs))
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        await cluster.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=200)) as c:
        yield c


def metric(text: str, name: str) -> float:
    """Value of the first sample `name{...}` in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)
