"""The simulated engine honours what shapes a reply, as vLLM does: stop strings, n, logprobs, tool calls,
response_format JSON (schema-valid), and embeddings on a `task: embed` engine — over real HTTP, streamed and not."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import jsonschema
import openai
import orjson

from server.sim.text import SIM_MARKER, Filler
from tests.server.sim.simkit import StartCluster, spec

CHAT = {"model": "sim-a", "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "year": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "year", "tags"],
    "additionalProperties": False,
}


def events(body: str) -> list[dict[str, Any]]:
    data = [line[len("data: ") :] for line in body.split("\n\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [orjson.loads(d) for d in data[:-1]]


async def post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> httpx.Response:
    r = await client.post(url, json=body)
    assert r.status_code == 200, r.text
    return r


async def test_stop_string_cuts_the_filler(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec())
    url = cluster.base_url("sim-a") + "/chat/completions"
    stop = Filler().words[3].strip()  # some filler word: every long enough reply holds it
    body = (await post(client, url, {**CHAT, "max_tokens": 200, "ignore_eos": True, "stop": [stop, "zzz"]})).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == stop
    text = choice["message"]["content"]
    assert text.startswith(SIM_MARKER) and stop not in text
    assert body["usage"]["completion_tokens"] < 200
    streamed = events((await post(client, url, {**CHAT, "max_tokens": 200, "stop": stop, "stream": True})).text)
    pieces = "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed)
    assert stop not in pieces and streamed[-1]["choices"][0]["finish_reason"] == "stop"


async def test_n_choices_and_usage(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec())
    url = cluster.base_url("sim-a") + "/chat/completions"
    body = (await post(client, url, {**CHAT, "n": 3, "max_tokens": 5, "ignore_eos": True})).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] == 15
    req = {
        **CHAT,
        "n": 2,
        "max_tokens": 4,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = events((await post(client, url, req)).text)
    per_choice: dict[int, str] = {0: "", 1: ""}
    finishes = {}
    for c in chunks[:-1]:
        choice = c["choices"][0]
        per_choice[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert all(t.startswith(SIM_MARKER) for t in per_choice.values()) and finishes == {0: "length", 1: "length"}
    assert chunks[-1]["usage"]["completion_tokens"] == 8


async def test_logprobs_in_vllm_shape(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec())
    base = cluster.base_url("sim-a")
    body = (
        await post(
            client,
            base + "/chat/completions",
            {**CHAT, "max_tokens": 4, "ignore_eos": True, "logprobs": True, "top_logprobs": 3},
        )
    ).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == 4 and content[0]["token"] == SIM_MARKER
    for entry in content:
        tops = entry["top_logprobs"]
        assert len(tops) == 3 and tops[0]["token"] == entry["token"] and entry["logprob"] <= 0
        assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
        assert bytes(entry["bytes"]).decode() == entry["token"]
    streamed = events(
        (
            await post(
                client,
                base + "/chat/completions",
                {**CHAT, "max_tokens": 3, "ignore_eos": True, "logprobs": True, "stream": True},
            )
        ).text
    )
    lp = [c["choices"][0]["logprobs"] for c in streamed if c["choices"][0]["delta"].get("content")]
    assert len(lp) == 3 and all(len(x["content"]) == 1 and x["content"][0]["top_logprobs"] == [] for x in lp)
    comp = {"model": "sim-a", "prompt": "hello", "max_tokens": 3, "ignore_eos": True, "logprobs": 2}
    logprobs = (await post(client, base + "/completions", comp)).json()["choices"][0]["logprobs"]
    assert logprobs["tokens"][0] == SIM_MARKER and logprobs["text_offset"][:2] == [0, len(SIM_MARKER)]
    assert len(logprobs["token_logprobs"]) == 3 and all(len(t) == 2 for t in logprobs["top_logprobs"])
    bad = await client.post(base + "/chat/completions", json={**CHAT, "top_logprobs": 2})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "top_logprobs"


async def test_forced_tool_calls_fit_the_schema(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(spec())
    client = openai.AsyncOpenAI(base_url=cluster.base_url("sim-a"), api_key="x", max_retries=0)
    params = WEATHER["function"]["parameters"]
    for choice, finish in (
        ("required", "tool_calls"),
        ({"type": "function", "function": {"name": "get_weather"}}, "stop"),
    ):
        reply = await client.chat.completions.create(
            model="sim-a", messages=CHAT["messages"], tools=[CLOCK, WEATHER], tool_choice=choice
        )
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason == finish and message.tool_calls
        call = message.tool_calls[0]
        assert call.function.name == "get_weather" and call.id.startswith("chatcmpl-tool-")
        jsonschema.validate(json.loads(call.function.arguments), params)
    stream = await client.chat.completions.create(
        model="sim-a", messages=CHAT["messages"], tools=[WEATHER], tool_choice="required", stream=True
    )
    name, arguments, finish_reason = "", "", None
    async for chunk in stream:
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            name += delta_call.function.name or "" if delta_call.function else ""
            arguments += delta_call.function.arguments or "" if delta_call.function else ""
        finish_reason = chunk.choices[0].finish_reason or finish_reason
    assert name == "get_weather" and finish_reason == "tool_calls"
    jsonschema.validate(json.loads(arguments), params)
    await client.close()


async def test_auto_tool_choice_calls_then_answers(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(spec())
    client = openai.AsyncOpenAI(base_url=cluster.base_url("sim-a"), api_key="x", max_retries=0)
    asked = [{"role": "user", "content": "what time is it? use get_time"}]
    first = await client.chat.completions.create(model="sim-a", messages=asked, tools=[WEATHER, CLOCK])
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_time" and first.choices[0].finish_reason == "tool_calls"
    followed = [
        *asked,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "noon"},
    ]
    second = await client.chat.completions.create(model="sim-a", messages=followed, tools=[WEATHER, CLOCK])
    assert second.choices[0].message.content.startswith(SIM_MARKER) and not second.choices[0].message.tool_calls
    none = await client.chat.completions.create(model="sim-a", messages=asked, tools=[CLOCK], tool_choice="none")
    assert none.choices[0].message.content and not none.choices[0].message.tool_calls
    await client.close()


async def test_response_format_json(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec())
    url = cluster.base_url("sim-a") + "/chat/completions"
    fmt = {"type": "json_schema", "json_schema": {"name": "film", "schema": SCHEMA, "strict": True}}
    body = (await post(client, url, {**CHAT, "response_format": fmt})).json()
    assert body["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), SCHEMA)
    assert body["usage"]["completion_tokens"] == -(-len(body["choices"][0]["message"]["content"]) // 4)
    chunks = events((await post(client, url, {**CHAT, "response_format": fmt, "stream": True})).text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    jsonschema.validate(json.loads(text), SCHEMA)
    obj = (await post(client, url, {**CHAT, "response_format": {"type": "json_object"}})).json()
    assert json.loads(obj["choices"][0]["message"]["content"])["simulated"] is True
    bad = await client.post(
        url, json={**CHAT, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "response_format"


async def test_embeddings_engine(start_cluster: StartCluster, client: httpx.AsyncClient) -> None:
    cluster = await start_cluster(spec("emb", task="embed", embedding_dim=8), spec("gen"))
    sdk = openai.AsyncOpenAI(base_url=cluster.base_url("emb"), api_key="x", max_retries=0)
    out = await sdk.embeddings.create(model="emb", input=["hello", "world", "hello"])  # base64 on the wire
    vectors = [d.embedding for d in out.data]
    assert len(vectors) == 3 and all(len(v) == 8 for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert abs(sum(x * x for x in vectors[0]) - 1) < 1e-5
    assert out.usage.prompt_tokens == 6
    r = await post(
        client,
        cluster.base_url("emb") + "/embeddings",
        {"model": "emb", "input": [1, 2, 3], "encoding_format": "base64"},
    )
    packed = base64.b64decode(r.json()["data"][0]["embedding"])
    assert len(struct.unpack("<8f", packed)) == 8
    refused = await client.post(cluster.base_url("emb") + "/chat/completions", json={**CHAT, "model": "emb"})
    assert refused.status_code == 400
    refused = await client.post(cluster.base_url("gen") + "/embeddings", json={"model": "gen", "input": "x"})
    assert refused.status_code == 400 and "Embeddings" in refused.json()["error"]["message"]
    await sdk.close()
