"""Load generators: a sequential latency probe (one keep-alive connection, requests interleaved across
targets) and a closed-loop concurrent load spread over several client processes (one Python process tops out
at a few thousand SSE events/s, so one process would measure itself). Every loop is bounded in count and
time, and targets are 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson


@dataclass
class Target:
    name: str
    base_url: str  # http://127.0.0.1:PORT (no /v1)
    model: str
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        host = urlsplit(self.base_url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"benchmarks only send traffic to loopback, not {host}")


@dataclass
class Sample:
    ttfb_s: float
    total_s: float
    overhead_header_ms: float | None


def chat_body(
    model: str, stream: bool, max_tokens: int, prompt: str = "Say hello.", extra: dict[str, Any] | None = None
) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "stream": stream,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
        **(extra or {}),
    }
    return orjson.dumps(body)


class SequentialProbe:
    """One keep-alive connection per target; `run` interleaves targets so drift hits all of them alike."""

    def __init__(self, targets: list[Target]) -> None:
        self.targets = targets
        self.conns = {
            t.name: http.client.HTTPConnection(urlsplit(t.base_url).hostname, urlsplit(t.base_url).port, timeout=30)
            for t in targets
        }

    def one(self, target: Target, body: bytes, stream: bool) -> Sample:
        conn = self.conns[target.name]
        headers = {"content-type": "application/json", **target.headers}
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{target.name}: HTTP {response.status}: {response.read()[:300]!r}")
        first = response.read1(65536) if stream else b""
        ttfb = time.perf_counter() - t0
        rest = response.read()
        total = time.perf_counter() - t0
        if stream and b"[DONE]" not in first + rest:
            raise RuntimeError(f"{target.name}: stream ended without [DONE]")
        overhead = response.getheader("x-triage-overhead-ms")
        return Sample(ttfb if stream else total, total, float(overhead) if overhead else None)

    def run(
        self, bodies: dict[str, bytes], stream: bool, count: int, warmup: int, budget_s: float
    ) -> dict[str, list[Sample]]:
        samples: dict[str, list[Sample]] = {t.name: [] for t in self.targets}
        deadline = time.monotonic() + budget_s
        for i in range(warmup + count):
            if time.monotonic() > deadline:
                break
            for target in self.targets:
                sample = self.one(target, bodies[target.name], stream)
                if i >= warmup:
                    samples[target.name].append(sample)
        return samples

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


# -- concurrent load -------------------------------------------------------------------------------------


async def _worker_loop(
    target: Target, body: bytes, concurrency: int, duration_s: float, max_requests: int
) -> dict[str, Any]:
    import aiohttp

    ttft: list[float] = []
    latency: list[float] = []
    errors: dict[str, int] = {}
    tokens = 0
    sent = 0
    deadline = time.monotonic() + duration_s
    headers = {"content-type": "application/json", **target.headers}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=max(60.0, duration_s * 2))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def user() -> None:
            nonlocal tokens, sent
            while time.monotonic() < deadline and sent < max_requests:
                sent += 1
                t0 = time.perf_counter()
                first: float | None = None
                try:
                    async with session.post(
                        target.base_url + "/v1/chat/completions", data=body, headers=headers
                    ) as response:
                        if response.status != 200:
                            errors[str(response.status)] = errors.get(str(response.status), 0) + 1
                            await response.read()
                            continue
                        async for chunk in response.content.iter_any():
                            if first is None:
                                first = time.perf_counter() - t0
                            tokens += chunk.count(b'"delta"')
                except (TimeoutError, aiohttp.ClientError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                end = time.perf_counter()
                if end - t0 <= duration_s * 3 and first is not None:
                    ttft.append(first)
                    latency.append(end - t0)

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"ttft": ttft, "latency": latency, "errors": errors, "tokens": tokens, "wall_s": wall}


def _worker(args: tuple[Target, bytes, int, float, int], out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_worker_loop(*args)))


def concurrent_load(
    target: Target, body: bytes, concurrency: int, processes: int, duration_s: float, max_requests: int
) -> dict[str, Any]:
    """Closed loop: `concurrency` users spread over `processes` client processes, each user sending its next
    streamed request as soon as the last ends, until `duration_s` or `max_requests` in total."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    per = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    procs = [
        ctx.Process(target=_worker, args=((target, body, n, duration_s, max_requests // processes), queue))
        for n in per
        if n > 0
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=duration_s * 4 + 60) for _ in procs]
    for p in procs:
        p.join(10)
    ttft = [x for r in results for x in r["ttft"]]
    latency = [x for r in results for x in r["latency"]]
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    wall = max(r["wall_s"] for r in results)
    return {
        "completed": len(latency),
        "errors": errors,
        "wall_s": wall,
        "req_per_s": len(latency) / wall,
        "output_tokens_per_s": sum(r["tokens"] for r in results) / wall,
        "ttft_s": ttft,
        "latency_s": latency,
    }
