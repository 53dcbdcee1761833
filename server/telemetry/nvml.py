"""GPU readings from NVML, about once a second: utilisation, memory, and which engine processes sit on each GPU.

`Nvml.open()` returns a handle or None: on a machine without NVML (no `pynvml`, no driver) it logs once and the
router runs on without GPU readings. `NvmlReader` runs the blocking NVML calls in a worker thread, writes
`LoadBoard.gpus` and the `triage_gpu_*` gauges, and maps engine processes to GPUs by PID (a launched engine's
process group) or, for engines it did not launch, by the config's `gpu` field. It knows nothing about routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

from ..load import GpuLoad, LoadBoard
from ..ticker import Ticker
from .metrics import Metrics

log = logging.getLogger(__name__)
GIB = 1024**3


@dataclass(slots=True)
class GpuReading:
    gpu: str  # NVML index as a string: the key of LoadBoard.gpus and the config's `gpu`
    name: str
    utilization: float  # [0, 1] over NVML's last sample period
    memory_used_bytes: int
    memory_free_bytes: int
    memory_total_bytes: int
    processes: dict[int, int] = field(default_factory=dict)  # compute pid -> GPU bytes (0: NVML can't say)


class Nvml:
    """An initialised NVML library. Every method blocks: call it from a worker thread."""

    def __init__(self, pynvml: ModuleType) -> None:
        self.pynvml = pynvml

    @classmethod
    def open(cls) -> Nvml | None:
        """Initialise NVML, or log why not and return None (CPU machine, no driver, no nvidia-ml-py)."""
        try:
            import pynvml
        except ImportError:
            log.info("NVML unavailable (nvidia-ml-py is not installed); no GPU readings")
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            log.info("NVML unavailable (%s); no GPU readings", exc)
            return None
        return cls(pynvml)

    def close(self) -> None:
        with contextlib.suppress(self.pynvml.NVMLError):
            self.pynvml.nvmlShutdown()

    def read(self) -> list[GpuReading]:
        nv = self.pynvml
        readings = []
        for index in range(nv.nvmlDeviceGetCount()):
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            name = nv.nvmlDeviceGetName(handle)
            memory = nv.nvmlDeviceGetMemoryInfo(handle)
            utilization = nv.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0  # NVML gives percent
            processes = {p.pid: int(p.usedGpuMemory or 0) for p in nv.nvmlDeviceGetComputeRunningProcesses(handle)}
            readings.append(
                GpuReading(
                    str(index),
                    name.decode() if isinstance(name, bytes) else str(name),
                    utilization,
                    int(memory.used),
                    int(memory.free),
                    int(memory.total),
                    processes,
                )
            )
        return readings


def read_gpus_once() -> list[GpuReading] | None:
    """One reading of every GPU, opening and closing NVML; None where NVML is unavailable. Blocks."""
    nvml = Nvml.open()
    if nvml is None:
        return None
    try:
        return nvml.read()
    except nvml.pynvml.NVMLError as exc:
        log.warning("NVML read failed (%s); no GPU readings", exc)
        return None
    finally:
        nvml.close()


def process_group(pid: int) -> int | None:
    """The process group of `pid`, or None for a process outside our PID namespace or already gone."""
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


class NvmlReader:
    """Background task: NVML readings into `LoadBoard.gpus` and the metrics; engines mapped to GPUs."""

    def __init__(
        self,
        load: LoadBoard,
        metrics: Metrics,
        *,
        engine_groups: Callable[[], dict[str, int]] = dict,
        configured_gpus: dict[str, list[str]] | None = None,
        interval_s: float = 1.0,
    ) -> None:
        """`engine_groups()` gives launched model -> process group id (its leader's pid); `configured_gpus`
        gives model -> the GPU ids its config names, used for engines not found by PID."""
        self.load = load
        self.metrics = metrics
        self.engine_groups = engine_groups
        self.configured_gpus = configured_gpus or {}
        self.engines_on_gpu: dict[str, list[str]] = {}  # gpu -> model names, after the last reading
        self.engine_memory: dict[tuple[str, str], int] = {}  # (model, gpu) -> bytes, launched engines only
        self._nvml: Nvml | None = None
        self._ticker = Ticker(interval_s, self.poll_once, "nvml-reader")
        self._failing = False

    @property
    def available(self) -> bool:
        return self._nvml is not None

    async def start(self) -> None:
        self._nvml = await asyncio.to_thread(Nvml.open)
        if self._nvml is None:
            return
        await self.poll_once()
        for gpu, models in self.engines_on_gpu.items():
            reading = self.load.gpus[gpu]
            log.info(
                "GPU %s: %.1f of %.1f GiB used; engines: %s",
                gpu,
                reading.memory_used_bytes / GIB,
                reading.memory_total_bytes / GIB,
                ", ".join(models) or "none",
            )
        self._ticker.start()

    async def stop(self) -> None:
        await self._ticker.stop()
        if self._nvml is not None:
            await asyncio.to_thread(self._nvml.close)
            self._nvml = None

    async def poll_once(self) -> None:
        if self._nvml is None:
            return
        try:
            readings = await asyncio.to_thread(self._nvml.read)
        except self._nvml.pynvml.NVMLError as exc:
            if not self._failing:  # once per failure streak, not once a second
                log.warning("NVML read failed (%s); keeping the last GPU readings", exc)
            self._failing = True
            return
        if self._failing:
            log.info("NVML reads work again")
        self._failing = False
        self.apply(readings)

    def apply(self, readings: list[GpuReading]) -> None:
        now_s = time.monotonic()
        groups = {pgid: model for model, pgid in self.engine_groups().items()}
        engines: dict[str, set[str]] = {}
        memory: dict[tuple[str, str], int] = {}
        for r in readings:
            self.load.gpus[r.gpu] = GpuLoad(r.utilization, r.memory_used_bytes, r.memory_total_bytes, now_s)
            self.metrics.gpu_utilization.labels(r.gpu).set(r.utilization)
            self.metrics.gpu_memory_used.labels(r.gpu).set(r.memory_used_bytes)
            self.metrics.gpu_memory_total.labels(r.gpu).set(r.memory_total_bytes)
            on_gpu = engines.setdefault(r.gpu, set())
            for pid, used_bytes in r.processes.items():
                # vLLM's GPU work runs in a child (EngineCore), which shares its supervisor-made process group.
                model = groups.get(pid) or groups.get(process_group(pid) or -1)
                if model is not None:
                    on_gpu.add(model)
                    memory[model, r.gpu] = memory.get((model, r.gpu), 0) + used_bytes
        seen = {model for models in engines.values() for model in models}
        for model, gpus in self.configured_gpus.items():
            if model not in seen:  # not launched here, or its PIDs live in another PID namespace (containers)
                for gpu in gpus:
                    engines.setdefault(gpu, set()).add(model)
        for key in self.engine_memory.keys() - memory.keys():
            self.metrics.engine_gpu_memory.remove(*key)  # an engine that left the GPU (crashed, stopped)
        for (model, gpu), used_bytes in memory.items():
            self.metrics.engine_gpu_memory.labels(model, gpu).set(used_bytes)
        self.engine_memory = memory
        self.engines_on_gpu = {gpu: sorted(models) for gpu, models in engines.items()}
