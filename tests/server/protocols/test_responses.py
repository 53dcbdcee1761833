"""`POST /v1/responses` through a running Triage, driven by the official `openai` SDK (and LangChain): what the
client gets back, and what the engine was sent (chat completions, or the client's own body for a native engine).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from server.sim.spec import SimEngineSpec

from ..conftest import RunningTriage, demo_like_config, run_triage
from .conftest import OpenAIClients, Scripted

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_create_translates_to_chat_and_back(scripted: Scripted, client: OpenAIClients) -> None:
    scripted.script(text="Hello there.", prompt_tokens=12, completion_tokens=3)
    raw = client(scripted.url).responses.with_raw_response.create(
        model="scripted", input="Say hi", instructions="Be brief.", max_output_tokens=20, temperature=0.2
    )
    response = raw.parse()
    assert raw.headers["x-triage-model"] == "scripted" and raw.headers["x-triage-request-id"]
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == "Hello there."
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.instructions == "Be brief." and response.max_output_tokens == 20
    sent = scripted.engine.last()
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
    assert (sent["max_tokens"], sent["temperature"], sent["stream"]) == (20, 0.2, False)


def test_stream_sends_the_typed_events_in_order(scripted: Scripted, client: OpenAIClients) -> None:
    scripted.script(text="Streaming answer here.")
    events = list(client(scripted.url).responses.create(model="scripted", input="Say hi", stream=True))
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 3  # the engine sent the text in pieces, and each piece went out as it came
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    completed = events[-1].response  # type: ignore[union-attr]
    assert text == "Streaming answer here." == completed.output_text
    assert completed.usage is not None and completed.usage.output_tokens == 7
    sent = scripted.engine.last()
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_a_stream_is_booked_as_answered(scripted: Scripted, client: OpenAIClients) -> None:
    scripted.script()

    def ok() -> float:
        metrics = httpx.get(scripted.url + "/metrics").text
        line = 'triage_requests_total{endpoint="responses",model="scripted",status="ok"} '
        return sum(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(line))

    before = ok()
    list(client(scripted.url).responses.create(model="scripted", input="Say hi", stream=True))
    assert ok() == before + 1  # not "cancelled": the engine's stream was read to its end


def test_function_tools_and_the_call_coming_back(scripted: Scripted, client: OpenAIClients) -> None:
    scripted.script(text="", tool_calls=[("get_weather", '{"city": "Paris"}')])
    response = client(scripted.url).responses.create(
        model="scripted",
        input="Weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
    )
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"} and call.call_id == "call_0"
    sent = scripted.engine.last()
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": WEATHER_TOOL["parameters"],
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_streamed_function_call_arguments(scripted: Scripted, client: OpenAIClients) -> None:
    scripted.script(text="Let me check.", tool_calls=[("get_weather", '{"city": "Paris"}')])
    with client(scripted.url).responses.stream(
        model="scripted",
        input="Weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds.count("response.function_call_arguments.delta") >= 2
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 2
    assert kinds.index("response.output_text.done") < kinds.index("response.function_call_arguments.delta")
    message, call = final.output
    assert message.type == "message" and final.output_text == "Let me check."
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}


def test_function_call_outputs_become_tool_messages(scripted: Scripted, client: OpenAIClients) -> None:
    scripted.script(text="It is sunny in Paris.")
    response = client(scripted.url).responses.create(
        model="scripted",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_7", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_7", "output": "sunny, 24 C"},
            {"type": "reasoning", "id": "rs_1", "summary": []},  # skipped: engines cannot replay it
        ],
    )
    assert response.output_text == "It is sunny in Paris."
    assert scripted.engine.last()["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": "sunny, 24 C"},
    ]


class City(BaseModel):
    name: str
    population: int


def test_structured_output_through_text_format(scripted: Scripted, client: OpenAIClients) -> None:
    scripted.script(text='{"name": "Paris", "population": 2100000}')
    parsed = client(scripted.url).responses.parse(model="scripted", input="Describe Paris", text_format=City)
    assert parsed.output_parsed == City(name="Paris", population=2100000)
    response_format = scripted.engine.last()["response_format"]
    assert response_format["type"] == "json_schema" and response_format["json_schema"]["name"] == "City"
    assert response_format["json_schema"]["schema"]["properties"]["population"] == {
        "title": "Population",
        "type": "integer",
    }


def test_previous_response_id_continues_the_conversation(scripted: Scripted, client: OpenAIClients) -> None:
    openai_client = client(scripted.url)
    scripted.script(text="My name is Triage.")
    first = openai_client.responses.create(model="scripted", input="What is your name?")
    scripted.script(text="I said Triage.")
    second = openai_client.responses.create(model="scripted", input="Say it again", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert scripted.engine.last()["messages"] == [
        {"role": "user", "content": "What is your name?"},
        {"role": "assistant", "content": "My name is Triage."},
        {"role": "user", "content": "Say it again"},
    ]
    openai_client.responses.create(model="scripted", input="And once more", previous_response_id=second.id)
    assert [m["content"] for m in scripted.engine.last()["messages"]] == [
        "What is your name?",
        "My name is Triage.",
        "Say it again",
        "I said Triage.",
        "And once more",
    ]


def test_previous_response_id_of_a_stream_and_of_store_false(scripted: Scripted, client: OpenAIClients) -> None:
    openai_client = client(scripted.url)
    scripted.script(text="streamed")
    events = list(openai_client.responses.create(model="scripted", input="one", stream=True))
    streamed_id = events[-1].response.id  # type: ignore[union-attr]
    openai_client.responses.create(model="scripted", input="two", previous_response_id=streamed_id)
    assert [m["content"] for m in scripted.engine.last()["messages"]] == ["one", "streamed", "two"]
    unstored = openai_client.responses.create(model="scripted", input="one", store=False)
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(model="scripted", input="two", previous_response_id=unstored.id)
    assert caught.value.code == "previous_response_not_found" and caught.value.param == "previous_response_id"


def test_stored_responses_belong_to_their_key(keyed: Scripted, client: OpenAIClients) -> None:
    first = client(keyed.url, keyed.keys["good"]).responses.create(model="scripted", input="secret plan")
    with pytest.raises(openai.BadRequestError, match="not stored for this key"):
        client(keyed.url, keyed.keys["other"]).responses.create(
            model="scripted", input="go on", previous_response_id=first.id
        )
    again = client(keyed.url, keyed.keys["good"]).responses.create(
        model="scripted", input="go on", previous_response_id=first.id
    )
    assert again.status == "completed"


def test_errors_take_openais_shape(scripted: Scripted, client: OpenAIClients) -> None:
    openai_client = client(scripted.url)
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client.responses.create(model="no-such-model", input="hi")
    assert missing.value.code == "model_not_found" and "aliases" in missing.value.message
    with pytest.raises(openai.BadRequestError) as invalid:
        openai_client.responses.create(model="scripted", input="hi", max_output_tokens=0)
    assert invalid.value.param == "max_output_tokens"
    r = httpx.get(scripted.url + "/v1/responses")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_a_stream_that_breaks_ends_with_error_and_response_failed(scripted: Scripted, client: OpenAIClients) -> None:
    scripted.script(text="a long answer that breaks", break_after_chunks=2)
    events = list(client(scripted.url).responses.create(model="scripted", input="hi", stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2].message == "engine fell over"  # type: ignore[union-attr]
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None and failed.error.message == "engine fell over"


def test_alias_and_key_from_x_api_key(keyed: Scripted, client: OpenAIClients) -> None:
    r = httpx.post(
        keyed.url + "/v1/responses",
        json={"model": "gpt-5-codex", "input": "hi"},
        headers={"x-api-key": keyed.keys["good"]},
        timeout=20,
    )
    assert r.status_code == 200 and r.headers["x-triage-model"] == "scripted"
    assert r.json()["model"] == "scripted"
    with pytest.raises(openai.AuthenticationError):
        client(keyed.url, "wrong").responses.create(model="scripted", input="hi")


def test_native_engine_gets_the_clients_body(scripted: Scripted, client: OpenAIClients) -> None:
    openai_client = client(scripted.url)
    scripted.script(text="first turn")
    first = openai_client.responses.create(model="scripted", input="one")
    native = openai_client.responses.create(
        model="native", input="two", instructions="sys", previous_response_id=first.id
    )
    assert native.id == "resp_native1" and native.output_text == "native answer"
    sent = scripted.engine.last("/v1/responses")
    assert sent["model"] == "native" and sent["instructions"] == "sys" and sent["store"] is False
    assert "previous_response_id" not in sent  # the stored conversation is expanded into input
    assert [i["content"] for i in sent["input"] if i.get("role")] == [
        "one",
        [{"type": "output_text", "text": "first turn", "annotations": []}],
        "two",
    ]
    events = list(openai_client.responses.create(model="native", input="three", stream=True))
    assert [e.type for e in events] == ["response.created", "response.output_text.delta", "response.completed"]
    # stored at response.completed, under the engine's id: the conversation can go on from it
    openai_client.responses.create(model="scripted", input="four", previous_response_id="resp_native1")
    assert [m["content"] for m in scripted.engine.last()["messages"]][-2:] == ["native answer", "four"]


def test_the_privacy_guard_reads_what_a_remote_native_engine_would_get(
    scripted: Scripted, client: OpenAIClients
) -> None:
    openai_client = client(scripted.url)
    secret = {"note": "my password is hunter22"}  # in a field the chat translation drops, sent on natively
    with pytest.raises(openai.BadRequestError) as kept:
        openai_client.responses.create(model="remote-native", input="hi", metadata=secret)
    assert kept.value.code == "sensitive_data_must_stay_local"
    assert openai_client.responses.create(model="native", input="hi", metadata=secret).status == "completed"


def test_langchain_chat_openai_on_the_responses_api(scripted: Scripted) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model="scripted", base_url=scripted.url + "/v1", api_key="unused", use_responses_api=True, max_retries=0
    )
    scripted.script(text="LangChain says hi.")
    assert llm.invoke("Say hi").text == "LangChain says hi."
    scripted.script(text="", tool_calls=[("get_weather", '{"city": "Oslo"}')])
    [call] = llm.bind_tools([WEATHER_TOOL]).invoke("Weather in Oslo?").tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "get_weather" and call["args"] == {"city": "Oslo"}
    scripted.script(text='{"name": "Oslo", "population": 700000}')
    city = llm.with_structured_output(City).invoke("Describe Oslo")
    assert city == City(name="Oslo", population=700000)


@pytest.fixture(scope="module")
def simulated() -> Iterator[RunningTriage]:
    config = demo_like_config(aliases={"gpt-*": "auto"})
    for model in config.models:
        assert isinstance(model.simulated, SimEngineSpec)
    with run_triage(config) as running:
        yield running


def test_model_auto_is_routed_through_the_simulated_engines(simulated: RunningTriage, client: OpenAIClients) -> None:
    openai_client = client(simulated.base_url)
    raw = openai_client.responses.with_raw_response.create(
        model="gpt-5", input="Write a Python function that reverses a list.", max_output_tokens=16
    )
    response = raw.parse()
    assert raw.headers["x-triage-category"] == "code" and raw.headers["x-triage-model"] == "coder"
    assert response.model == "coder" and "[simulated]" in response.output_text
    assert response.usage is not None and response.usage.output_tokens == 16
    with openai_client.responses.stream(model="auto", input="Tell me a story.", max_output_tokens=8) as stream:
        final = stream.get_final_response()
    assert final.status == "incomplete" and final.incomplete_details is not None  # max_output_tokens reached
    assert final.incomplete_details.reason == "max_output_tokens" and "[simulated]" in final.output_text
