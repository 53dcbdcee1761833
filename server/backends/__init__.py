"""Engine kinds and their registry: a model's `kind` in the config picks one here.

Each kind lives in its own module as `KIND = EngineKind(...)` (`kind.py`): the client class that speaks its wire
dialect, its typed settings block, and optionally a provisioner that starts its engines and returns where they
listen. `ENGINE_KINDS` names the modules; a kind's module is imported only when a config names it, so the
simulator stays out of the gateway unless a model is `kind: simulated`.

To add a kind: write `server/backends/NAME.py` with a client (subclass `EngineClient`) and `KIND`, and add it to
`ENGINE_KINDS`. Nothing here chooses models.
"""

from __future__ import annotations

import importlib
from contextlib import AsyncExitStack

import aiohttp

from ..classify import Classifier
from ..config import ModelConfig
from ..load import LoadBoard
from ..telemetry.metrics import Metrics
from .base import EngineClient, EngineStats, UpstreamStream
from .kind import EngineKind, StartedEngines

ENGINE_KINDS: dict[str, str] = {  # config name -> module defining KIND
    "vllm": "server.backends.vllm",  # vLLM, SGLang, llama.cpp server; a `launch:` block starts vLLM here
    "openai": "server.backends.openai",  # any other OpenAI-compatible API, remote providers included
    "simulated": "server.backends.simulated",  # Triage's own simulator (server/sim), in-process
    "minilm": "server.backends.minilm",  # the classifier's own encoder as an embedding model, in-process
}


def engine_kind(name: str) -> EngineKind:
    """The kind a config calls `name`, its module imported now; ValueError names the known kinds."""
    module = ENGINE_KINDS.get(name)
    if module is None:
        raise ValueError(f"unknown engine kind '{name}'; use one of: {', '.join(ENGINE_KINDS)}")
    kind = importlib.import_module(module).KIND
    if not isinstance(kind, EngineKind):
        raise TypeError(f"{module}.KIND is a {type(kind).__name__}, not an EngineKind")
    return kind


async def start_engines(
    models: list[ModelConfig], stack: AsyncExitStack, load: LoadBoard, metrics: Metrics
) -> StartedEngines:
    """Start the engines Triage runs itself, kind by kind in config order; every model's endpoints.

    Each provisioner pushes its own stop onto `stack`, so engines started before a failure are stopped with it.
    Models whose engines run elsewhere keep their configured `endpoints`.
    """
    by_kind: dict[str, list[ModelConfig]] = {}
    for model in models:
        by_kind.setdefault(model.kind, []).append(model)
    endpoints = {m.name: list(m.endpoints) for m in models}
    groups: list[StartedEngines] = []
    for name, members in by_kind.items():
        provision = engine_kind(name).provision
        if provision is not None:
            started = await provision(members, stack, load, metrics)
            endpoints.update(started.endpoints)
            groups.append(started)

    def process_groups() -> dict[str, int]:
        return {model: pgid for started in groups for model, pgid in started.process_groups().items()}

    return StartedEngines(endpoints, process_groups)


def build_clients(
    models: list[ModelConfig], endpoints: dict[str, list[str]], session: aiohttp.ClientSession
) -> dict[str, EngineClient]:
    """One client per model, of its kind's class, sending to `endpoints[model.name]`."""
    return {m.name: engine_kind(m.kind).client(m, endpoints.get(m.name, []), session) for m in models}


def attach_classifier(clients: dict[str, EngineClient], classifier: Classifier) -> None:
    """Give every client the running classifier (in-process kinds answer with it; the others ignore it)."""
    for client in clients.values():
        client.use_classifier(classifier)


def build_session(limit_per_host: int = 0) -> aiohttp.ClientSession:
    """The one pooled upstream session: keep-alive, no connection cap (admission control caps load)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=limit_per_host, keepalive_timeout=60)
    return aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))


__all__ = [
    "ENGINE_KINDS",
    "EngineClient",
    "EngineKind",
    "EngineStats",
    "StartedEngines",
    "UpstreamStream",
    "attach_classifier",
    "build_clients",
    "build_session",
    "engine_kind",
    "start_engines",
]
