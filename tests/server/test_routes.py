"""The FastAPI routes beside the front door: GET /v1/models (filtered by key) and /v1/models/{id}, HEAD on the
probes; and relayed engine errors in OpenAI's shape with the x-triage-* headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from server.auth.keys import KeyStore
from server.config import parse_config

from .conftest import SDK, RunningTriage, free_port, run_triage, sim_model


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningTriage, dict[str, str]]]:
    db = str(Path(tmp_path_factory.mktemp("routes")) / "triage.db")
    store = KeyStore.open(db)
    keys = {"all": store.create("all")[0], "fast": store.create("fast-only", models=["fast"])[0]}
    chat = {**sim_model("chat", ["chat"], free_port()), "capabilities": ["tools", "json_mode"]}
    models = [chat, sim_model("fast", ["fast"], free_port())]
    config = parse_config({"models": models, "auth": {"mode": "keys", "db": db}, "policy": {"name": "static"}})
    with run_triage(config) as triage:
        yield triage, keys
    store.close()


def test_models_are_listed_and_retrieved_per_key(keyed: tuple[RunningTriage, dict[str, str]], sdk: SDK) -> None:
    triage, keys = keyed
    everyone = sdk(triage, keys["all"])
    assert [m.id for m in everyone.models.list()] == ["auto", "chat", "fast"]
    card = everyone.models.retrieve("chat")
    assert card.id == "chat" and card.object == "model"
    assert card.model_extra is not None and card.model_extra["capabilities"] == ["tools", "json_mode"]
    assert everyone.models.retrieve("auto").id == "auto"
    with pytest.raises(openai.NotFoundError, match="GET /v1/models lists"):
        everyone.models.retrieve("nope")
    restricted = sdk(triage, keys["fast"])
    assert [m.id for m in restricted.models.list()] == ["auto", "fast"]
    with pytest.raises(openai.NotFoundError):
        restricted.models.retrieve("chat")  # exists, but not for this key
    with pytest.raises(openai.AuthenticationError):
        sdk(triage, "tri-wrong").models.retrieve("chat")


def test_probes_answer_head(keyed: tuple[RunningTriage, dict[str, str]]) -> None:
    triage, _ = keyed
    for path in ("/health", "/ready"):
        r = httpx.head(triage.base_url + path)
        assert r.status_code == 200 and r.content == b""
        assert httpx.get(triage.base_url + path).status_code == 200


def test_engine_errors_are_normalised_and_say_where_they_went(
    keyed: tuple[RunningTriage, dict[str, str]], sdk: SDK
) -> None:
    triage, keys = keyed
    headers = {"authorization": f"Bearer {keys['all']}", "x-request-id": "mine-1"}
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}
    for stream in (False, True):
        r = httpx.post(triage.base_url + "/v1/chat/completions", json={**body, "stream": stream}, headers=headers)
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] is None  # vLLM: BadRequestError, "400"
        assert "`tools` must be set" in error["message"] and error["param"] == "tool_choice"
        assert r.headers["x-triage-model"] == "chat" and r.headers["x-triage-reason"] == "requested by name"
        assert r.headers["x-triage-category"] and r.headers["x-triage-request-id"]
        assert r.headers["x-request-id"] == "mine-1"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(triage, keys["all"]).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=9000
        )
    assert "maximum context length" in caught.value.message and caught.value.type == "invalid_request_error"
