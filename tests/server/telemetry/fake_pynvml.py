"""A fake `pynvml` module for CI: the few NVML calls Triage makes, over GPUs described in Python.

`install(monkeypatch, gpus)` puts it in `sys.modules`, so `import pynvml` inside Triage finds it;
`install(monkeypatch, init_error="...")` makes `nvmlInit` fail as on a machine without a driver.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import pytest


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    total: int
    used: int
    utilization_percent: int = 0
    name: str = "Fake H100"
    processes: dict[int, int | None] = field(default_factory=dict)  # pid -> usedGpuMemory (None: unknown)


def install(
    monkeypatch: pytest.MonkeyPatch,
    gpus: list[FakeGpu] | None = None,
    *,
    init_error: str | None = None,
    read_error: list[str] | None = None,
) -> types.ModuleType:
    """A fake pynvml in sys.modules. `read_error` is a one-element list: while it holds a message, every
    device query raises NVMLError with it (empty the list to make reads work again)."""
    gpus = gpus or []
    state = {"initialised": 0}
    module = types.ModuleType("pynvml")

    def check() -> None:
        if not state["initialised"]:
            raise NVMLError("Uninitialized")
        if read_error:
            raise NVMLError(read_error[0])

    def init() -> None:
        if init_error is not None:
            raise NVMLError(init_error)
        state["initialised"] += 1

    def shutdown() -> None:
        state["initialised"] -= 1

    def count() -> int:
        check()
        return len(gpus)

    def handle(index: int) -> FakeGpu:
        check()
        return gpus[index]

    def memory(gpu: FakeGpu) -> types.SimpleNamespace:
        check()
        return types.SimpleNamespace(total=gpu.total, used=gpu.used, free=gpu.total - gpu.used)

    def processes(gpu: FakeGpu) -> list[types.SimpleNamespace]:
        check()
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=b) for pid, b in gpu.processes.items()]

    module.NVMLError = NVMLError  # type: ignore[attr-defined]
    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlShutdown = shutdown  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = count  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = handle  # type: ignore[attr-defined]

    def name(gpu: FakeGpu) -> str:
        check()
        return gpu.name

    def utilization(gpu: FakeGpu) -> types.SimpleNamespace:
        check()
        return types.SimpleNamespace(gpu=gpu.utilization_percent, memory=0)

    module.nvmlDeviceGetName = name  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = memory  # type: ignore[attr-defined]
    module.nvmlDeviceGetUtilizationRates = utilization  # type: ignore[attr-defined]
    module.nvmlDeviceGetComputeRunningProcesses = processes  # type: ignore[attr-defined]
    module.state = state  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "pynvml", module)
    return module
