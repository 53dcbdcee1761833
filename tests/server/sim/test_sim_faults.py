"""Fault injection: 500s, hangs, cut streams, slowdowns, runtime changes, and crashed engines."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from server.sim.spec import FaultSpec
from tests.server.sim.simkit import StartCluster, spec

PROMPT = {"prompt": "abcd", "max_tokens": 50, "ignore_eos": True}


async def test_error_rate_one_gives_500(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec(faults=FaultSpec(error_rate=1.0)))
    r = await client.post(cluster.base_url("sim-a") + "/completions", json=PROMPT)
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["type"] == "InternalServerError" and err["code"] == 500 and "simulated" in err["message"]
    assert cluster.engines["sim-a"].stats.request_success_total == {"stop": 0, "length": 0, "abort": 0}


async def test_drop_mid_stream(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec(faults=FaultSpec(drop_mid_stream_rate=1.0)))
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream(
            "POST", cluster.base_url("sim-a") + "/completions", json={**PROMPT, "stream": True}
        ) as r:
            async for line in r.aiter_lines():
                lines.append(line)
    events = [x for x in lines if x.startswith("data: ")]
    assert 1 <= len(events) < 50
    assert "data: [DONE]" not in lines
    assert cluster.engines["sim-a"].num_running == 0


async def test_hang_never_answers(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec(faults=FaultSpec(hang=True)))
    t0 = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        await client.post(cluster.base_url("sim-a") + "/completions", json=PROMPT, timeout=0.3)
    assert time.perf_counter() - t0 >= 0.3
    engine = cluster.engines["sim-a"]
    assert engine.num_running == 0 and engine.num_waiting == 0
    r = await client.get(cluster.base_url("sim-a").removesuffix("/v1") + "/health")
    assert r.status_code == 200  # health still answers: only generation hangs


async def test_faults_change_at_runtime(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec())
    base = cluster.base_url("sim-a")
    root = base.removesuffix("/v1")
    assert (await client.post(base + "/completions", json=PROMPT)).status_code == 200
    r = await client.post(root + "/sim/faults", json={"error_rate": 1.0})
    assert r.status_code == 200 and r.json()["error_rate"] == 1.0
    assert (await client.post(base + "/completions", json=PROMPT)).status_code == 500
    assert (await client.get(root + "/sim/state")).json()["faults"]["error_rate"] == 1.0
    r = await client.post(root + "/sim/faults", json={"error_rate": 2.0})
    assert r.status_code == 400 and "share" in r.json()["error"]["message"]
    await client.post(root + "/sim/faults", json={})
    assert (await client.post(base + "/completions", json=PROMPT)).status_code == 200


async def test_slowdown_stretches_steps(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec(time_scale=2.0))
    url = cluster.base_url("sim-a") + "/completions"

    async def timed() -> float:
        t0 = time.perf_counter()
        r = await client.post(url, json=PROMPT)
        assert r.status_code == 200
        return time.perf_counter() - t0

    normal = await timed()
    cluster.set_faults("sim-a", FaultSpec(slowdown=3.0))
    slow = await timed()
    assert slow > 2.0 * normal


async def test_kill_resets_connections(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec("a", time_scale=10.0), spec("b"))
    url = cluster.base_url("a") + "/completions"
    body = {**PROMPT, "max_tokens": 2000, "stream": True}

    async def read_all() -> int:
        n = 0
        async with client.stream("POST", url, json=body) as r:
            async for _ in r.aiter_lines():
                n += 1
        return n

    stream = asyncio.create_task(read_all())
    await asyncio.sleep(0.1)
    await cluster.kill_engine("a")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await asyncio.wait_for(stream, 2)
    with pytest.raises(httpx.ConnectError):
        await client.post(url, json=PROMPT)
    assert cluster.engines["a"].num_running == 0
    # The other engine is untouched.
    r = await client.post(cluster.base_url("b") + "/completions", json=PROMPT)
    assert r.status_code == 200
    port = cluster.port("a")
    await cluster.restart_engine("a")
    assert cluster.port("a") == port
    r = await client.post(url, json={**PROMPT, "max_tokens": 2})
    assert r.status_code == 200


async def test_graceful_stop_ends_streams(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec(time_scale=10.0))
    url = cluster.base_url("sim-a") + "/completions"
    lines: list[str] = []

    async def read_all() -> None:
        async with client.stream("POST", url, json={**PROMPT, "max_tokens": 2000, "stream": True}) as r:
            async for line in r.aiter_lines():
                lines.append(line)

    stream = asyncio.create_task(read_all())
    await asyncio.sleep(0.1)
    await cluster.stop_engine("sim-a")
    await asyncio.wait_for(stream, 3)
    assert any('"ServiceUnavailableError"' in x for x in lines)
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
