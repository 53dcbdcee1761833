"""Load behaviour over HTTP: queueing past max_num_seqs, and disconnects that free the running set."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.server.sim.simkit import StartCluster, metric, spec


async def _ttft_s(client: httpx.AsyncClient, url: str, max_tokens: int) -> float:
    """Seconds from sending a streamed request until its first token event."""
    t0 = time.perf_counter()
    payload = {"prompt": "abcd" * 8, "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    ttft = -1.0
    async with client.stream("POST", url, json=payload) as r:
        async for line in r.aiter_lines():
            if ttft < 0 and line.startswith("data: {"):
                ttft = time.perf_counter() - t0
    return ttft


async def test_queueing_past_capacity(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    capacity, extra = 4, 3
    # tiny-fast steps ~1 ms; time_scale 5 -> ~5 ms, so 80 tokens keep a batch busy ~0.4 s.
    cluster = await start_cluster(spec(max_num_seqs=capacity, time_scale=5.0))
    base = cluster.base_url("sim-a")
    tasks = []
    for _ in range(capacity):
        tasks.append(asyncio.create_task(_ttft_s(client, base + "/completions", 80)))
    await asyncio.sleep(0.05)  # the first batch is admitted before the rest arrive
    for _ in range(extra):
        tasks.append(asyncio.create_task(_ttft_s(client, base + "/completions", 80)))
    await asyncio.sleep(0.15)
    text = (await client.get(base.removesuffix("/v1") + "/metrics")).text
    assert metric(text, "vllm:num_requests_running") == capacity
    assert metric(text, "vllm:num_requests_waiting") == extra
    assert 0 < metric(text, "vllm:kv_cache_usage_perc") < 1
    ttfts = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    first, queued = ttfts[:capacity], ttfts[capacity:]
    assert max(first) < 0.2
    # The queued ones wait for a whole batch (80 steps of ~5 ms).
    assert min(queued) > 0.25 > max(first)
    text = (await client.get(base.removesuffix("/v1") + "/metrics")).text
    assert metric(text, "vllm:num_requests_waiting") == 0
    assert metric(text, "vllm:time_to_first_token_seconds_count") == capacity + extra


async def test_disconnect_mid_stream_frees_slot(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec(time_scale=10.0))
    engine = cluster.engines["sim-a"]
    url = cluster.base_url("sim-a") + "/chat/completions"
    payload = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2000,
        "ignore_eos": True,
        "stream": True,
    }
    async with client.stream("POST", url, json=payload) as r:
        seen = 0
        async for line in r.aiter_lines():
            seen += line.startswith("data: {")
            if seen >= 3:
                break
        assert engine.num_running == 1
    t0 = time.perf_counter()  # leaving the block closed the connection mid-stream
    while engine.num_running and time.perf_counter() - t0 < 1.0:
        await asyncio.sleep(0.005)
    assert engine.num_running == 0
    assert time.perf_counter() - t0 < 1.0
    assert engine.stats.request_success_total["abort"] == 1


async def test_disconnect_while_queued_and_not_streamed(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec(max_num_seqs=1, time_scale=10.0))
    engine = cluster.engines["sim-a"]
    url = cluster.base_url("sim-a") + "/completions"
    body = {"prompt": "abcd", "max_tokens": 2000, "ignore_eos": True}
    hog = asyncio.create_task(client.post(url, json=body))  # holds the only slot
    queued = asyncio.create_task(client.post(url, json=body))
    t0 = time.perf_counter()
    # poll for the state itself: both may sit in the queue for a moment before the step loop admits the first
    while not (engine.num_running == 1 and engine.num_waiting == 1) and time.perf_counter() - t0 < 2:
        await asyncio.sleep(0.005)
    assert engine.num_running == 1 and engine.num_waiting == 1
    queued.cancel()  # the client gives up while waiting in the queue
    hog.cancel()  # and the running, non-streamed one too
    t0 = time.perf_counter()
    while (engine.num_running or engine.num_waiting) and time.perf_counter() - t0 < 1.0:
        await asyncio.sleep(0.005)
    assert engine.num_running == 0 and engine.num_waiting == 0
