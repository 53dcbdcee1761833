"""The vLLM kind (also SGLang and llama.cpp's server): its client, and `launch:` blocks started by the supervisor.

vLLM serves the OpenAI API under `/v1` and its own `/health` and Prometheus `/metrics` at the root. Gauges are
summed across label sets (one per engine core / model name) and across this model's endpoints. The simulated
engine speaks the same dialect, so its kind uses `VllmClient` too. Process management lives in `supervisor.py`.
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack

import aiohttp

from ..config import ModelConfig
from ..load import LoadBoard
from ..supervisor import Supervisor
from ..telemetry.metrics import Metrics
from .base import EngineClient, EngineStats
from .kind import EngineKind, StartedEngines

_GAUGES = {
    b"vllm:num_requests_running": "running",
    b"vllm:num_requests_waiting": "waiting",
    b"vllm:kv_cache_usage_perc": "kv",
    b"vllm:gpu_cache_usage_perc": "kv",  # name before vLLM 0.10
    b"vllm:generation_tokens_total": "generated",  # a counter: the probe turns it into tokens/s
}
# vLLM's info gauge of its CacheConfig (every field a label; value 1): the KV capacity is blocks x block size.
_CACHE_INFO = b"vllm:cache_config_info"
_BLOCK_SIZE = re.compile(rb'[{,]block_size="(\d+)"')
_GPU_BLOCKS = re.compile(rb'[{,]num_gpu_blocks="(\d+)"')
_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2.0)


def root_of(endpoint: str) -> str:
    return endpoint[: -len("/v1")] if endpoint.endswith("/v1") else endpoint


def parse_vllm_metrics(text: bytes) -> EngineStats:
    """Running and waiting requests (summed over engine cores), KV-cache use (the fullest core) and capacity
    (the smallest core's: a request lands on one)."""
    values = {"running": 0.0, "waiting": 0.0, "kv": 0.0, "generated": 0.0}
    capacity = 0
    for line in text.splitlines():
        if not line.startswith(b"vllm:"):
            continue
        name = line.split(b"{", 1)[0].split(b" ", 1)[0]
        if name == _CACHE_INFO:
            tokens = _cache_tokens(line)
            if tokens > 0:
                capacity = tokens if capacity == 0 else min(capacity, tokens)
            continue
        key = _GAUGES.get(name)
        if key is not None:
            try:
                value = float(line.rsplit(b" ", 1)[1])
            except (IndexError, ValueError):
                continue
            values[key] = max(values[key], value) if key == "kv" else values[key] + value
    return EngineStats(int(values["running"]), int(values["waiting"]), values["kv"], capacity, values["generated"])


def _cache_tokens(line: bytes) -> int:
    """Tokens the KV cache of one `vllm:cache_config_info` line holds; 0 before the engine sized it ("None")."""
    block_size, blocks = _BLOCK_SIZE.search(line), _GPU_BLOCKS.search(line)
    if block_size is None or blocks is None:
        return 0
    return int(block_size.group(1)) * int(blocks.group(1))


class VllmClient(EngineClient):
    async def health(self) -> bool:
        for endpoint in self.endpoints:
            try:
                async with self.session.get(root_of(endpoint) + "/health", timeout=_PROBE_TIMEOUT) as r:
                    if r.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                continue
        return False

    async def stats(self) -> EngineStats | None:
        total: EngineStats | None = None
        for endpoint in self.endpoints:
            try:
                async with self.session.get(root_of(endpoint) + "/metrics", timeout=_PROBE_TIMEOUT) as r:
                    if r.status != 200:
                        continue
                    stats = parse_vllm_metrics(await r.read())
            except (aiohttp.ClientError, TimeoutError):
                continue
            if total is None:
                total = stats
            else:
                known = [c for c in (total.kv_cache_tokens, stats.kv_cache_tokens) if c > 0]
                total = EngineStats(
                    total.running + stats.running,
                    total.waiting + stats.waiting,
                    max(total.kv_cache_usage, stats.kv_cache_usage),
                    min(known, default=0),
                    total.generation_tokens + stats.generation_tokens,
                )
        return total


async def start_launched(
    models: list[ModelConfig], stack: AsyncExitStack, load: LoadBoard, metrics: Metrics
) -> StartedEngines:
    """Start a supervised `vllm serve` for each model with a `launch:` block (the others run elsewhere)."""
    launched = [m for m in models if m.launch is not None]
    if not launched:
        return StartedEngines()
    supervisor = Supervisor(launched, load, metrics)
    endpoints = await supervisor.start()  # stops what it started and raises LaunchError on any failure
    stack.push_async_callback(supervisor.stop)
    return StartedEngines(endpoints, supervisor.process_groups)


KIND = EngineKind(name="vllm", client=VllmClient, provision=start_launched)
