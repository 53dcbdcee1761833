"""A model's `output_limit_field`: the output cap reaches each engine under the name its chat API reads, through
the official openai SDK and scripted HTTP engines that record what they were sent (fallbacks included)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from server.config import parse_config

from .conftest import RunningTriage, run_triage
from .protocols.scripted_engine import ScriptedEngine, scripted_engine


@pytest.fixture()
def engines() -> Iterator[dict[str, ScriptedEngine]]:
    with scripted_engine() as reasoning, scripted_engine() as legacy, scripted_engine() as asis:
        yield {"reasoning": reasoning, "legacy": legacy, "asis": asis}


def _bodies(engine: ScriptedEngine) -> list[dict[str, Any]]:
    return [body for path, body in engine.requests if path == "/v1/chat/completions"]


def _triage(engines: dict[str, ScriptedEngine], fields: dict[str, str | None]) -> Any:
    """Triage over the engines named in `fields`, the first one preferred by quality (so `auto` tries it first)."""
    models = [
        {
            "name": name,
            "kind": "openai",
            "endpoints": [engines[name].url],
            "output_limit_field": field,
            "profile": {"quality_default": 0.9 if k == 0 else 0.2},
        }
        for k, (name, field) in enumerate(fields.items())
    ]
    return run_triage(parse_config({"classifier": {"kind": "keyword"}, "models": models}))


def _client(triage: RunningTriage) -> openai.OpenAI:
    return openai.OpenAI(base_url=triage.base_url + "/v1", api_key="none", max_retries=0, timeout=20)


def test_each_engine_gets_the_cap_under_its_own_name(engines: dict[str, ScriptedEngine]) -> None:
    fields = {"reasoning": "max_completion_tokens", "legacy": "max_tokens", "asis": None}
    with _triage(engines, fields) as triage, _client(triage) as client:
        messages: Any = [{"role": "user", "content": "hi"}]
        client.chat.completions.create(model="reasoning", messages=messages, max_tokens=40)
        client.chat.completions.create(model="legacy", messages=messages, max_completion_tokens=30)
        client.chat.completions.create(model="asis", messages=messages, max_tokens=20, max_completion_tokens=10)
        client.chat.completions.create(model="reasoning", messages=messages, max_tokens=50, max_completion_tokens=60)
        client.chat.completions.create(model="legacy", messages=messages)  # no cap: none is invented
    reasoning, legacy, asis = (_bodies(engines[n]) for n in ("reasoning", "legacy", "asis"))
    assert reasoning[0]["max_completion_tokens"] == 40 and "max_tokens" not in reasoning[0]
    assert reasoning[1]["max_completion_tokens"] == 50 and "max_tokens" not in reasoning[1]  # the smaller
    assert legacy[0]["max_tokens"] == 30 and "max_completion_tokens" not in legacy[0]
    assert not set(legacy[1]) & {"max_tokens", "max_completion_tokens"}
    assert (asis[0]["max_tokens"], asis[0]["max_completion_tokens"]) == (20, 10)  # unset: relayed as written


def test_a_fallback_renames_the_cap_for_the_model_that_answers(engines: dict[str, ScriptedEngine]) -> None:
    engines["reasoning"].reply.status = 500
    fields = {"reasoning": "max_completion_tokens", "legacy": "max_tokens"}
    with _triage(engines, fields) as triage, _client(triage) as client:
        answer = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=25
        )
    assert answer.headers["x-triage-model"] == "legacy" and "fell back" in answer.headers["x-triage-reason"]
    (failed,), (answered,) = _bodies(engines["reasoning"]), _bodies(engines["legacy"])
    assert failed["max_completion_tokens"] == 25 and "max_tokens" not in failed
    assert answered["max_tokens"] == 25 and "max_completion_tokens" not in answered
