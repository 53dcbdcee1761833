"""Fixtures for the simulated-engine tests: clusters on free loopback ports, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from server.sim.runner import SimCluster, serve_engines
from server.sim.spec import SimEngineSpec
from tests.server.sim.simkit import StartCluster


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
