"""POST /v1/embeddings through the front door: `auto` routes among embedding models only, named models are checked,
the privacy guard, keys and budgets (input tokens) apply, and the answer carries the x-triage-* headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from server.auth.keys import KeyStore
from server.config import parse_config
from server.intake import receive

from .conftest import SDK, RunningTriage, free_port, run_triage, sim_model
from .test_errors import assert_openai_error


def embedder(name: str, **fields: object) -> dict[str, object]:
    model = sim_model(name, ["embed"], free_port(), task="embed", embedding_dim=16)
    return {**model, "capabilities": ["embeddings"], **fields}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningTriage, dict[str, str]]]:
    db = str(Path(tmp_path_factory.mktemp("embed")) / "triage.db")
    store = KeyStore.open(db)
    keys = {"all": store.create("all")[0], "small": store.create("small", daily_tokens=50)[0]}
    models = [sim_model("chat", ["chat"], free_port()), embedder("embed"), embedder("cloud-embed", remote=True)]
    config = parse_config({"models": models, "auth": {"mode": "keys", "db": db}, "policy": {"name": "static"}})
    with run_triage(config) as triage:
        yield triage, keys
    store.close()


def test_auto_embeddings_go_to_an_embedding_model(keyed: tuple[RunningTriage, dict[str, str]], sdk: SDK) -> None:
    triage, keys = keyed
    raw = sdk(triage, keys["all"]).embeddings.with_raw_response.create(model="auto", input=["one", "two"])
    out = raw.parse()
    assert raw.headers["x-triage-model"] == "embed" and raw.headers["x-triage-request-id"]
    assert out.model == "embed" and [len(d.embedding) for d in out.data] == [16, 16]
    chat = sdk(triage, keys["all"]).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert chat.headers["x-triage-model"] == "chat"  # embedding models never answer a chat


def test_named_models_must_fit_the_route(keyed: tuple[RunningTriage, dict[str, str]], sdk: SDK) -> None:
    triage, keys = keyed
    client = sdk(triage, keys["all"])
    with pytest.raises(openai.BadRequestError, match="serves chat or completions only"):
        client.embeddings.create(model="chat", input="x")
    with pytest.raises(openai.BadRequestError, match="serves POST /v1/embeddings only"):
        client.chat.completions.create(model="embed", messages=[{"role": "user", "content": "hi"}])
    assert client.embeddings.create(model="embed", input=[[1, 2, 3]]).usage.prompt_tokens == 3


def test_keys_budgets_and_privacy_apply(keyed: tuple[RunningTriage, dict[str, str]]) -> None:
    triage, keys = keyed
    url = triage.base_url + "/v1/embeddings"
    assert_openai_error(httpx.post(url, json={"model": "auto", "input": "x"}), 401)
    small = {"authorization": f"Bearer {keys['small']}"}
    long_input = {"model": "auto", "input": ["word " * 80, "word " * 80]}  # ~200 input tokens > 50 a day
    over = httpx.post(url, json=long_input, headers=small, timeout=20)
    assert assert_openai_error(over, 429, "local tokens today")["code"] == "insufficient_quota"
    secret = {"model": "auto", "input": "mail jane.doe@example.com", "route": {"models": ["cloud-embed"]}}
    everyone = {"authorization": f"Bearer {keys['all']}"}
    kept = httpx.post(url, json={**secret, "route": {**secret["route"], "allow_remote": True}}, headers=everyone)
    assert assert_openai_error(kept, 400, "must stay on a local model")["code"] == "sensitive_data_must_stay_local"


def test_embedding_intake_counts_every_input() -> None:
    incoming = receive(b'{"model": "auto", "input": ["' + b"a" * 400 + b'", "bb"]}', "embeddings")
    assert incoming.output_tokens == 0 and not incoming.stream
    assert incoming.billed_prompt_tokens == 102 and incoming.prompt_tokens == 101  # all inputs; the longest one
    assert incoming.tokens == 102  # what budgets and rate limits count: every input, no output
    assert incoming.needs() == frozenset({"embeddings"}) and incoming.upstream_path == "/embeddings"
