"""A model's `output_limit_field`: the output cap reaches each engine under the name its chat API reads, through
the official openai SDK and real HTTP engines that record what they were sent (fallbacks included)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest

from server.config import parse_config

from .conftest import RunningTriage, run_triage

ANSWER = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


class RecordingEngine:
    """An OpenAI-compatible engine on 127.0.0.1 that keeps every chat body it is sent; `failing` answers 500."""

    def __init__(self, failing: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # health: GET /v1/models
                self._answer(200, {"object": "list", "data": []})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                engine.bodies.append(json.loads(self.rfile.read(length)))
                self._answer(500, {"error": {"message": "boom"}}) if failing else self._answer(200, ANSWER)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def engines() -> Iterator[dict[str, RecordingEngine]]:
    made = {"reasoning": RecordingEngine(), "legacy": RecordingEngine(), "asis": RecordingEngine()}
    yield made
    for engine in made.values():
        engine.close()


def _triage(engines: dict[str, RecordingEngine], fields: dict[str, str | None]) -> Any:
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


def test_each_engine_gets_the_cap_under_its_own_name(engines: dict[str, RecordingEngine]) -> None:
    fields = {"reasoning": "max_completion_tokens", "legacy": "max_tokens", "asis": None}
    with _triage(engines, fields) as triage:
        client = _client(triage)
        messages: Any = [{"role": "user", "content": "hi"}]
        client.chat.completions.create(model="reasoning", messages=messages, max_tokens=40)
        client.chat.completions.create(model="legacy", messages=messages, max_completion_tokens=30)
        client.chat.completions.create(model="asis", messages=messages, max_tokens=20, max_completion_tokens=10)
        client.chat.completions.create(model="reasoning", messages=messages, max_tokens=50, max_completion_tokens=60)
        client.chat.completions.create(model="legacy", messages=messages)  # no cap: none is invented
    reasoning, legacy, asis = (engines[n].bodies for n in ("reasoning", "legacy", "asis"))
    assert reasoning[0]["max_completion_tokens"] == 40 and "max_tokens" not in reasoning[0]
    assert reasoning[1]["max_completion_tokens"] == 50 and "max_tokens" not in reasoning[1]  # the smaller
    assert legacy[0]["max_tokens"] == 30 and "max_completion_tokens" not in legacy[0]
    assert not set(legacy[1]) & {"max_tokens", "max_completion_tokens"}
    assert (asis[0]["max_tokens"], asis[0]["max_completion_tokens"]) == (20, 10)  # unset: relayed as written


def test_a_fallback_renames_the_cap_for_the_model_that_answers(engines: dict[str, RecordingEngine]) -> None:
    engines["reasoning"].close()
    engines["reasoning"] = RecordingEngine(failing=True)
    fields = {"reasoning": "max_completion_tokens", "legacy": "max_tokens"}
    with _triage(engines, fields) as triage:
        answer = _client(triage).chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=25
        )
    assert answer.headers["x-triage-model"] == "legacy" and "fell back" in answer.headers["x-triage-reason"]
    (failed,), (answered,) = engines["reasoning"].bodies, engines["legacy"].bodies
    assert failed["max_completion_tokens"] == 25 and "max_tokens" not in failed
    assert answered["max_tokens"] == 25 and "max_completion_tokens" not in answered
