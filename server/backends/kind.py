"""What an engine kind declares: its client (wire dialect), its typed settings, and how Triage starts it.

A kind is one `EngineKind` value named `KIND` in its own module (`vllm.py`, `openai.py`, `simulated.py`); the
registry in `__init__.py` maps config names to those modules and imports one only when a config names it. This
module knows nothing about any particular kind, nor about requests or routing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..config import ModelConfig
from ..load import LoadBoard
from ..telemetry.metrics import Metrics
from .base import EngineClient


@dataclass(slots=True)
class StartedEngines:
    """What a provisioner hands back: where the engines it started listen, and how to find their processes."""

    endpoints: dict[str, list[str]] = field(default_factory=dict)  # model name -> OpenAI base URLs it serves on
    # model name -> process group id of its engine now (NVML attributes GPU memory per engine by it)
    process_groups: Callable[[], dict[str, int]] = dict


# The models of one kind, the app's exit stack (a provisioner pushes its own stop onto it), the load board (engines
# that crash are marked down there) and the metrics; returns the endpoints of the engines it started.
Provisioner = Callable[[list[ModelConfig], AsyncExitStack, LoadBoard, Metrics], Awaitable[StartedEngines]]

# The model's config keys as validated so far, its own block (the key named like the kind) included as written;
# returns that block typed, or raises ValueError saying what to fix.
Settings = Callable[[Mapping[str, Any]], BaseModel]


@dataclass(frozen=True, slots=True)
class EngineKind:
    """One engine kind, as a config's `kind:` names it."""

    name: str
    client: type[EngineClient]  # the wire dialect: relays requests and reads health and load
    settings: Settings | None = None  # types the model's `<name>:` block; None: the kind takes no block
    provision: Provisioner | None = None  # starts engines for its models; None: they run elsewhere
    in_process: bool = False  # answered inside the router (no endpoints); its client is given the classifier
