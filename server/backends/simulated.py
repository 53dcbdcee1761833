"""The simulated kind: Triage's own vLLM-like simulator (`server/sim`), run inside the router's event loop.

For demos, tests and benchmarks on machines without a GPU. A model of `kind: simulated` gets a `server.sim`
engine on its endpoint's port; engines that name the same `gpu` share its simulated compute. The simulator speaks
vLLM's dialect, so the client is `VllmClient`. The registry imports this module, and with it `server.sim`, only
when a config names the kind; nothing else in the gateway imports the simulator.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from ..config import ModelConfig
from ..load import LoadBoard
from ..sim.config import spec_for_model
from ..sim.runner import serve_engines
from ..sim.spec import SimEngineSpec
from ..telemetry.metrics import Metrics
from .kind import EngineKind, StartedEngines
from .vllm import VllmClient


def spec_of(model: ModelConfig) -> SimEngineSpec:
    spec = model.simulated
    if not isinstance(spec, SimEngineSpec):
        raise TypeError(f"model '{model.name}' has no simulated spec; build ModelConfig through validation")
    return spec


async def start_simulated(
    models: list[ModelConfig], stack: AsyncExitStack, load: LoadBoard, metrics: Metrics
) -> StartedEngines:
    """Start one simulated engine per model, all in this event loop; they stop with the app."""
    specs = {m.name: spec_of(m) for m in models}
    cluster = await serve_engines(list(specs.values()))  # raises SimClusterError on a taken port or a repeated name
    stack.push_async_callback(cluster.stop)
    return StartedEngines({name: [cluster.base_url(spec.name)] for name, spec in specs.items()})


# settings: the `simulated:` block becomes the engine's whole SimEngineSpec, its gaps filled from the model (name
# from served_name, port from the endpoint, gpu, context length)
KIND = EngineKind(name="simulated", client=VllmClient, settings=spec_for_model, provision=start_simulated)
