"""The minilm kind: the classifier's own encoder answers POST /v1/embeddings in-process (CPU, eager), through the
same front door as every routed request, with the classifier's vectors."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from server.config import ConfigError, parse_config

from ..conftest import SDK, RunningTriage, free_port, run_triage, sim_model

ENCODER = {"name": "triage-minilm", "kind": "minilm", "capabilities": ["embeddings"], "context_length": 1_000_000}


@pytest.fixture(scope="module")
def minilm() -> Iterator[RunningTriage]:
    config = parse_config(
        {
            "classifier": {"kind": "minilm", "device": "cpu", "impl": "eager"},
            "models": [sim_model("chat", ["chat"], free_port()), ENCODER],
        }
    )
    with run_triage(config) as running:
        yield running


def test_auto_embeddings_use_the_classifier_encoder(minilm: RunningTriage, sdk: SDK) -> None:
    client = sdk(minilm)
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Quarterly earnings beat forecasts."]
    raw = client.embeddings.with_raw_response.create(model="auto", input=texts)  # base64 on the wire
    out = raw.parse()
    assert raw.headers["x-triage-model"] == "triage-minilm" and out.model == "triage-minilm"
    vectors = np.array([d.embedding for d in out.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2
    direct = minilm.call(minilm.gateway.classifier.embed(texts[0]))  # type: ignore[attr-defined]
    assert np.allclose(vectors[0], direct, atol=1e-5)
    floats = httpx.post(
        minilm.base_url + "/v1/embeddings", json={"model": "triage-minilm", "input": texts[0]}, timeout=30
    ).json()
    assert np.allclose(floats["data"][0]["embedding"], direct, atol=1e-5)
    assert floats["usage"]["prompt_tokens"] > 0


def test_long_inputs_are_cut_head_and_tail_and_bad_ones_refused(minilm: RunningTriage, sdk: SDK) -> None:
    client = sdk(minilm)
    long = client.embeddings.create(model="triage-minilm", input="word " * 20_000, encoding_format="float")
    assert len(long.data[0].embedding) == 384 and long.usage.prompt_tokens == 256
    with pytest.raises(openai.BadRequestError, match="text only"):
        client.embeddings.create(model="triage-minilm", input=[[1, 2, 3]])
    with pytest.raises(openai.BadRequestError, match="384 dimensions"):
        client.embeddings.create(model="triage-minilm", input="x", dimensions=64)


def test_config_needs_the_minilm_classifier_and_no_endpoints() -> None:
    with pytest.raises(ConfigError, match=r"set classifier\.kind: minilm"):
        parse_config({"models": [ENCODER]})
    with pytest.raises(ConfigError, match="drop endpoints and launch"):
        parse_config(
            {"classifier": {"kind": "minilm"}, "models": [{**ENCODER, "endpoints": ["http://127.0.0.1:1/v1"]}]}
        )
    with pytest.raises(ConfigError, match="add capabilities: \\[embeddings\\]"):
        parse_config({"classifier": {"kind": "minilm"}, "models": [{**ENCODER, "capabilities": []}]})
