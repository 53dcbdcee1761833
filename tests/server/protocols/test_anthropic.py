"""`POST /v1/messages` and `/v1/messages/count_tokens` through a running Triage, driven by the official `anthropic`
SDK: what the client gets back (messages, events, errors as the SDK's exception classes), and what the engine was
sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from pydantic import BaseModel

from server.config import parse_config

from ..conftest import RunningTriage, demo_like_config, free_port, run_triage, sim_model
from .conftest import AnthropicClients, Scripted

MODEL = "claude-triage-test"  # an Anthropic-looking name the `claude-*` alias maps to `scripted`
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
HI = [{"role": "user", "content": "Say hi"}]


def test_create_translates_to_chat_and_back(scripted: Scripted, claude: AnthropicClients) -> None:
    scripted.script(text="Hello there.", prompt_tokens=12, completion_tokens=3)
    raw = claude(scripted.url).messages.with_raw_response.create(
        model=MODEL,
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief."}],
        messages=HI,  # type: ignore[arg-type]
        stop_sequences=["END"],
        metadata={"user_id": "u1"},
        extra_body={"temperature": 0.3, "top_k": 5},  # older clients send them; this SDK no longer does
    )
    message = raw.parse()
    assert raw.headers["x-triage-model"] == "scripted"
    assert message.id.startswith("msg_") and message.model == "scripted" and message.role == "assistant"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "Hello there.")]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 3)
    sent = scripted.engine.last()
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
    assert (sent["model"], sent["max_tokens"], sent["stop"], sent["temperature"], sent["top_k"], sent["user"]) == (
        "scripted",
        64,
        ["END"],
        0.3,
        5,
        "u1",
    )


def test_stop_sequence_and_max_tokens(scripted: Scripted, claude: AnthropicClients) -> None:
    client = claude(scripted.url)
    scripted.script(text="Counting 1 2", stop_reason="END")
    message = client.messages.create(model=MODEL, max_tokens=64, messages=HI, stop_sequences=["END"])  # type: ignore[arg-type]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    scripted.script(text="cut", finish_reason="length")
    assert client.messages.create(model=MODEL, max_tokens=1, messages=HI).stop_reason == "max_tokens"  # type: ignore[arg-type]


def test_stream_sends_the_events_in_order(scripted: Scripted) -> None:
    scripted.script(text="Streaming answer here.", completion_tokens=5)
    body = {"model": MODEL, "max_tokens": 64, "messages": HI, "stream": True}
    with httpx.stream("POST", scripted.url + "/v1/messages", json=body, timeout=20) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [(e, json.loads(d)) for e, d in _sse(r.iter_lines())]
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert deltas >= 3
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "Streaming answer here."
    message_delta = events[-2][1]
    assert message_delta["delta"]["stop_reason"] == "end_turn" and message_delta["usage"]["output_tokens"] == 5


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, line[6:]


def test_sdk_stream_helper(scripted: Scripted, claude: AnthropicClients) -> None:
    scripted.script(text="Streaming answer here.", prompt_tokens=9, completion_tokens=5)
    with claude(scripted.url).messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Streaming answer here." == final.content[0].text  # type: ignore[union-attr]
    assert (final.usage.input_tokens, final.usage.output_tokens, final.stop_reason) == (9, 5, "end_turn")


def test_tools_tool_use_and_tool_result(scripted: Scripted, claude: AnthropicClients) -> None:
    client = claude(scripted.url)
    scripted.script(text="", tool_calls=[("get_weather", '{"city": "Paris"}')])
    message = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )
    [use] = message.content
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    assert message.stop_reason == "tool_use"
    sent = scripted.engine.last()
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False

    scripted.script(text="Sunny.")
    client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "any"},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, use.model_dump()]},  # type: ignore[list-item]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": "24 C"}]},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
    )
    sent = scripted.engine.last()
    assert sent["tool_choice"] == "required"
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": use.id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": use.id, "content": "24 C"},
        {"role": "user", "content": "And tomorrow?"},
    ]


def test_streamed_tool_use_arrives_as_input_json_deltas(scripted: Scripted, claude: AnthropicClients) -> None:
    scripted.script(text="Let me check.", tool_calls=[("get_weather", '{"city": "Paris"}')])
    with claude(scripted.url).messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    json_deltas = [e for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(json_deltas) >= 2 and all(e.index == 1 for e in json_deltas)  # type: ignore[union-attr]
    text, use = final.content
    assert text.type == "text" and text.text == "Let me check."
    assert use.type == "tool_use" and use.input == {"city": "Paris"} and final.stop_reason == "tool_use"


def test_system_turns_among_the_messages(scripted: Scripted, claude: AnthropicClients) -> None:
    claude(scripted.url).messages.create(
        model=MODEL,
        max_tokens=16,
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "Agents: none."}]},  # type: ignore[typeddict-item]
        ],
    )
    assert scripted.engine.last()["messages"][1] == {"role": "system", "content": "Agents: none."}


def test_images_become_image_urls(scripted: Scripted, claude: AnthropicClients) -> None:
    scripted.script(text="A cat.")
    claude(scripted.url).messages.create(
        model=MODEL,
        max_tokens=16,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert scripted.engine.last()["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": "What is this?"},
            ],
        }
    ]


class City(BaseModel):
    name: str
    population: int


def test_structured_output_through_output_config(scripted: Scripted, claude: AnthropicClients) -> None:
    scripted.script(text='{"name": "Paris", "population": 2100000}')
    parsed = claude(scripted.url).messages.parse(model=MODEL, max_tokens=64, messages=HI, output_format=City)  # type: ignore[arg-type]
    assert parsed.parsed_output == City(name="Paris", population=2100000)
    response_format = scripted.engine.last()["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"]["properties"]["population"]["type"] == "integer"


def test_count_tokens_is_the_routers_estimate(scripted: Scripted, claude: AnthropicClients) -> None:
    client = claude(scripted.url)
    short = client.messages.count_tokens(model=MODEL, messages=HI)  # type: ignore[arg-type]
    long = client.messages.count_tokens(
        model=MODEL,
        messages=[{"role": "user", "content": "word " * 400}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert 0 < short.input_tokens < 20 and 500 <= long.input_tokens <= 600  # 2,000 characters / 4, plus the tool
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="no-such-model", messages=HI)  # type: ignore[arg-type]


def test_errors_map_to_the_sdks_exception_classes(scripted: Scripted, claude: AnthropicClients) -> None:
    client = claude(scripted.url)
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert missing.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": missing.value.body["error"]["message"]},
    }  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as invalid:
        client.messages.create(model=MODEL, max_tokens=0, messages=HI)  # type: ignore[arg-type]
    assert invalid.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in invalid.value.body["error"]["message"]  # type: ignore[index]
    r = httpx.get(scripted.url + "/v1/messages")
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(scripted.url + "/v1/messages/nope", json={})
    assert r.status_code == 404 and r.json()["type"] == "error"


def test_keys_from_x_api_key_and_auth_errors(keyed: Scripted, claude: AnthropicClients) -> None:
    good = claude(keyed.url, keyed.keys["good"])
    assert good.messages.create(model=MODEL, max_tokens=8, messages=HI).role == "assistant"  # type: ignore[arg-type]
    assert good.messages.count_tokens(model=MODEL, messages=HI).input_tokens > 0  # type: ignore[arg-type]
    models = httpx.get(keyed.url + "/v1/models", headers={"x-api-key": keyed.keys["good"]})
    assert models.status_code == 200
    with pytest.raises(anthropic.AuthenticationError) as wrong:
        claude(keyed.url, "sk-wrong").messages.create(model=MODEL, max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert wrong.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    bearer = claude(keyed.url, None, authorization=f"Bearer {keyed.keys['good']}")  # ANTHROPIC_AUTH_TOKEN's way
    assert bearer.messages.create(model=MODEL, max_tokens=8, messages=HI).role == "assistant"  # type: ignore[arg-type]


def test_rate_limit_is_rate_limit_error(keyed: Scripted, claude: AnthropicClients) -> None:
    slow = claude(keyed.url, keyed.keys["slow"])
    slow.messages.create(model=MODEL, max_tokens=8, messages=HI)  # type: ignore[arg-type]
    with pytest.raises(anthropic.RateLimitError) as limited:
        slow.messages.create(model=MODEL, max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_a_stream_that_breaks_ends_with_an_error_event(scripted: Scripted, claude: AnthropicClients) -> None:
    scripted.script(text="a long answer that breaks", break_after_chunks=2)
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        claude(scripted.url).messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream,  # type: ignore[arg-type]
    ):
        for _ in stream:
            pass


def test_native_engine_gets_the_clients_body(scripted: Scripted, claude: AnthropicClients) -> None:
    client = claude(scripted.url)
    message = client.messages.create(model="native", max_tokens=8, messages=HI, system="sys")  # type: ignore[arg-type]
    assert message.id == "msg_native1" and message.content[0].text == "native answer"  # type: ignore[union-attr]
    sent = scripted.engine.last("/v1/messages")
    assert (sent["model"], sent["system"], sent["messages"]) == ("native", "sys", HI)
    with client.messages.stream(model="native", max_tokens=8, messages=HI) as stream:  # type: ignore[arg-type]
        assert stream.get_final_message().id == "msg_native1"


@pytest.fixture(scope="module")
def no_engine() -> Iterator[RunningTriage]:
    model = sim_model("gone", ["chat"], free_port())
    model["kind"] = "vllm"  # nobody listens at its endpoint
    model.pop("simulated")
    with run_triage(parse_config({"models": [model], "aliases": {"claude-*": "auto"}})) as running:
        yield running


def test_no_engine_is_overloaded_error(no_engine: RunningTriage, claude: AnthropicClients) -> None:
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude(no_engine.base_url).messages.create(model=MODEL, max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert overloaded.value.status_code == 529 and overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


@pytest.fixture(scope="module")
def simulated() -> Iterator[RunningTriage]:
    with run_triage(demo_like_config(aliases={"claude-*": "auto"})) as running:
        yield running


def test_model_auto_is_routed_through_the_simulated_engines(simulated: RunningTriage, claude: AnthropicClients) -> None:
    client = claude(simulated.base_url)
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "Write a Python function that sorts a list."}]
    )
    message = raw.parse()
    assert raw.headers["x-triage-category"] == "code" and message.model == "coder"
    assert "[simulated]" in message.content[0].text and message.usage.output_tokens == 16  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"
    with client.messages.stream(model=MODEL, max_tokens=8, messages=HI) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert "[simulated]" in final.content[0].text and final.usage.output_tokens == 8  # type: ignore[union-attr]
