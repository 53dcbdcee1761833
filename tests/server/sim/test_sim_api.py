"""OpenAI shapes of the simulated engine over real HTTP: chat and completions, streamed and not."""

from __future__ import annotations

import httpx
import openai
import orjson

from server.backends.vllm import parse_vllm_metrics
from server.sim.text import SIM_MARKER
from tests.server.sim.simkit import StartCluster, metric, spec

CHAT = {"model": "sim-a", "messages": [{"role": "user", "content": "x" * 40}]}


def sse_events(body: str) -> list[str]:
    return [line[len("data: ") :] for line in body.split("\n\n") if line.startswith("data: ")]


async def test_chat_not_streamed(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec())
    r = await client.post(
        cluster.base_url("sim-a") + "/chat/completions", json={**CHAT, "max_tokens": 7, "ignore_eos": True}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["system_fingerprint"] == "triage-sim"
    assert body["choices"][0]["message"]["content"].startswith(SIM_MARKER)
    assert body["choices"][0]["finish_reason"] == "length"
    # 40 chars -> 10 tokens, + 4 per message + 2 reply primer
    assert body["usage"] == {"prompt_tokens": 16, "completion_tokens": 7, "total_tokens": 23}


async def test_chat_streamed_with_usage(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec())
    r = await client.post(
        cluster.base_url("sim-a") + "/chat/completions",
        json={
            **CHAT,
            "max_tokens": 5,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    tokens = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(tokens) == 5  # one SSE event per token
    assert tokens[0]["choices"][0]["delta"]["content"] == SIM_MARKER
    assert tokens[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    usage = chunks[-1]
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 16, "completion_tokens": 5, "total_tokens": 21}


async def test_completions_both_ways(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec())
    url = cluster.base_url("sim-a") + "/completions"
    r = await client.post(url, json={"model": "sim-a", "prompt": list(range(33)), "max_tokens": 4, "ignore_eos": True})
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"].startswith(SIM_MARKER)
    assert body["usage"] == {"prompt_tokens": 33, "completion_tokens": 4, "total_tokens": 37}
    r = await client.post(url, json={"model": "sim-a", "prompt": "abcdefgh", "max_tokens": 3, "stream": True})
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    texts = [orjson.loads(e)["choices"][0]["text"] for e in events[:-1]]
    assert texts[0] == SIM_MARKER and len(texts) <= 3
    assert orjson.loads(events[-2])["choices"][0]["finish_reason"] in ("length", "stop")


async def test_default_length_without_ignore_eos(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec(default_output_tokens=20))
    r = await client.post(cluster.base_url("sim-a") + "/chat/completions", json=CHAT)
    usage = r.json()["usage"]
    assert 10 <= usage["completion_tokens"] <= 30
    assert r.json()["choices"][0]["finish_reason"] == "stop"


async def test_official_client(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(spec())
    async with openai.AsyncOpenAI(base_url=cluster.base_url("sim-a"), api_key="none") as oa:
        reply = await oa.chat.completions.create(
            model="sim-a", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert reply.choices[0].message.content is not None
        assert reply.choices[0].message.content.startswith(SIM_MARKER)
        stream = await oa.chat.completions.create(
            model="sim-a",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
        text = ""
        usage = None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            usage = chunk.usage or usage
        assert text.startswith(SIM_MARKER)
        assert usage is not None and usage.completion_tokens >= 1
        models = await oa.models.list()
        assert [m.id for m in models.data] == ["sim-a"]


async def test_errors_in_openai_shape(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec(max_model_len=64))
    base = cluster.base_url("sim-a")
    cases = [
        ({**CHAT, "model": "nope"}, 404),
        ({**CHAT, "n": 0}, 400),  # n below 1
        ({"model": "sim-a", "messages": "hi"}, 400),
        ({**CHAT, "max_tokens": 1000}, 400),  # over max_model_len
        ({**CHAT, "stream_options": {"include_usage": True}}, 400),  # without stream
    ]
    for payload, status in cases:
        r = await client.post(base + "/chat/completions", json=payload)
        assert r.status_code == status, payload
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == status
    r = await client.post(base + "/completions", content=b"{not json")
    assert r.status_code == 400
    r = await client.get(base + "/chat/completions")
    assert r.status_code == 405


async def test_health_metrics_state(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec())
    root = cluster.base_url("sim-a").removesuffix("/v1")
    r = await client.get(root + "/health")
    assert r.status_code == 200 and r.content == b""
    await client.post(root + "/v1/completions", json={"prompt": "abcd", "max_tokens": 3, "ignore_eos": True})
    text = (await client.get(root + "/metrics")).text
    assert metric(text, "vllm:num_requests_running") == 0
    assert metric(text, "vllm:generation_tokens_total") == 3
    assert metric(text, "vllm:prompt_tokens_total") == 1
    assert metric(text, "vllm:time_to_first_token_seconds_count") == 1
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="sim-a"} 1.0' in text
    assert "vllm:kv_cache_usage_perc" in text and "vllm:e2e_request_latency_seconds_bucket" in text
    stats = parse_vllm_metrics(text.encode())  # what the router's probe reads, KV capacity included
    assert stats.kv_cache_tokens > 0 and stats.kv_cache_tokens % 16 == 0
    state = (await client.get(root + "/sim/state")).json()
    assert state["running"] == 0 and state["generation_tokens_total"] == 3
