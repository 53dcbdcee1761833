"""Starts the simulated engines a config asks for, inside the router's own event loop (demo and tests).

A model with a `simulated:` mapping gets a `server.sim` engine listening on its endpoint's port. Engines that
name the same `gpu` share its simulated compute. Real deployments have no `simulated:` entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ModelConfig

if TYPE_CHECKING:
    from .sim.runner import SimCluster


async def start_simulated_engines(models: list[ModelConfig]) -> SimCluster | None:
    simulated = [m for m in models if m.simulated is not None]
    if not simulated:
        return None
    from .sim.config import specs_from_models
    from .sim.runner import serve_engines

    specs = specs_from_models([m.model_dump() for m in simulated])
    return await serve_engines(specs)
