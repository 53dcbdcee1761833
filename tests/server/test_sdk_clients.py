"""`model: "auto"` with tools and structured output through configs/demo.yaml, driven by the clients people use:
the official `openai` SDK (tool calls forced, auto and streamed; `chat.completions.parse` with a pydantic model)
and LangChain's `ChatOpenAI` (`bind_tools` in an agent loop, `with_structured_output` both ways)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import jsonschema
import openai
import pytest
import yaml
from pydantic import BaseModel, Field

from server.config import parse_config

from .conftest import RunningTriage, free_port, run_triage

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMS}}
ASK = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]


class Film(BaseModel):
    title: str
    year: int = Field(ge=1888, le=2030)
    genres: list[Literal["drama", "comedy", "horror"]]
    rating: float | None


class GetWeather(BaseModel):
    """Current weather in a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]


@pytest.fixture(scope="module")
def demo() -> Iterator[RunningTriage]:
    """configs/demo.yaml as shipped, on free ports, without its SQLite store, ten times faster."""
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    data["policy"]["store"] = None
    for model in data["models"]:
        model["endpoints"] = [f"http://127.0.0.1:{free_port()}/v1"]
        model["simulated"]["time_scale"] = 0.1
    with run_triage(parse_config(data, str(DEMO))) as running:
        yield running


@pytest.fixture
def client(demo: RunningTriage) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=demo.base_url + "/v1", api_key="unused-in-open-mode", max_retries=0) as sdk:
        yield sdk


def test_forced_tool_calls_are_schema_valid(client: openai.OpenAI) -> None:
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=ASK,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice=choice,  # type: ignore[arg-type]
        )
        reply = raw.parse()
        assert raw.headers["x-triage-model"] in ("coder", "chat", "fast")
        calls = reply.choices[0].message.tool_calls
        assert calls and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
        jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER_PARAMS)  # type: ignore[union-attr]


def test_auto_tool_loop_and_streamed_call(client: openai.OpenAI) -> None:
    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    first = client.chat.completions.create(model="auto", messages=ASK, tools=[tool])  # type: ignore[arg-type]
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    GetWeather.model_validate_json(call.function.arguments)  # type: ignore[union-attr]
    history = [*ASK, first.choices[0].message.model_dump(exclude_none=True)]
    history.append({"role": "tool", "tool_call_id": call.id, "content": "18 degrees, sunny"})
    answer = client.chat.completions.create(model="auto", messages=history, tools=[tool])  # type: ignore[arg-type]
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls
    with client.chat.completions.stream(model="auto", messages=ASK, tools=[tool], tool_choice="required") as stream:  # type: ignore[arg-type]
        final = stream.get_final_completion()
    parsed = final.choices[0].message.tool_calls[0].function.parsed_arguments  # type: ignore[index, union-attr]
    assert isinstance(parsed, GetWeather)


def test_structured_output_parse(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Describe a film as JSON."}]
    reply = client.chat.completions.parse(model="auto", messages=messages, response_format=Film)  # type: ignore[arg-type]
    film = reply.choices[0].message.parsed
    assert isinstance(film, Film) and 1888 <= film.year <= 2030
    streamed = client.chat.completions.create(
        model="auto",
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "film", "schema": Film.model_json_schema()}},
    )
    Film.model_validate_json("".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices))
    obj = client.chat.completions.create(model="auto", messages=messages, response_format={"type": "json_object"})  # type: ignore[arg-type]
    assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)


def test_langchain_bind_tools_and_structured_output(demo: RunningTriage) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
        """Current weather in a city."""
        return f"18 degrees {unit} in {city}"

    llm = ChatOpenAI(model="auto", base_url=demo.base_url + "/v1", api_key="unused", max_retries=0, timeout=30)  # type: ignore[arg-type]
    with_tools = llm.bind_tools([get_weather])
    history: list[Any] = [HumanMessage("What is the weather in Paris?")]
    ai = with_tools.invoke(history)
    assert ai.tool_calls and ai.tool_calls[0]["name"] == "get_weather"  # type: ignore[attr-defined]
    GetWeather.model_validate(ai.tool_calls[0]["args"])  # type: ignore[attr-defined]
    history += [ai, ToolMessage(get_weather.invoke(ai.tool_calls[0]["args"]), tool_call_id=ai.tool_calls[0]["id"])]  # type: ignore[attr-defined]
    final = with_tools.invoke(history)
    assert isinstance(final.content, str) and final.content and not final.tool_calls  # type: ignore[attr-defined]
    for method in ("json_schema", "function_calling"):
        film = llm.with_structured_output(Film, method=method).invoke("Describe a film.")  # type: ignore[arg-type]
        assert isinstance(film, Film)
