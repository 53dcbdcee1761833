"""End to end: a running Triage with simulated engines moves code traffic off a busy code model and back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from server.config import parse_config
from tests.server.conftest import free_port, run_triage, sim_model
from tests.server.policy.policykit import trio

CODE_PROMPT = "Write a Python function that merges two sorted lists; add a unit test."


def config(tmp_path: Path) -> Any:
    profiles = {m.name: m.profile.model_dump() for m in trio()}
    coder = sim_model("coder", ["code"], free_port(), shape="qwen2.5-7b", max_num_seqs=4, time_scale=0.5)
    coder["profile"] = {**profiles["coder"], "max_num_seqs": 4}
    models = [coder]
    for name, role in (("chat", "chat"), ("fast", "fast")):
        model = sim_model(name, [role], free_port())
        model["profile"] = {**profiles[name], "max_num_seqs": 64}
        models.append(model)
    return parse_config(
        {"models": models, "policy": {"name": "triage", "explore_share": 0.0, "store": str(tmp_path / "triage.db")}}
    )


def route(base_url: str) -> dict[str, Any]:
    response = httpx.post(
        base_url + "/v1/route",
        timeout=10,
        json={"model": "auto", "messages": [{"role": "user", "content": CODE_PROMPT}]},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_traffic_moves_away_from_a_busy_engine_and_back(tmp_path: Path) -> None:
    with run_triage(config(tmp_path)) as triage:
        assert route(triage.base_url)["model"] == "coder"  # idle: the best fit

        def occupy(i: int) -> int:  # long answers pinned to the code model by name
            return httpx.post(
                triage.base_url + "/v1/completions",
                timeout=60,
                json={"model": "coder", "prompt": f"def f{i}(x):", "max_tokens": 300, "ignore_eos": True},
            ).status_code

        with ThreadPoolExecutor(16) as pool:
            pending = [pool.submit(occupy, i) for i in range(16)]
            deadline = time.monotonic() + 10
            while triage.gateway.load.engine("coder").in_flight < 16 and time.monotonic() < deadline:
                time.sleep(0.02)
            busy = route(triage.base_url)
            assert busy["model"] != "coder", busy
            assert "coder fits better but is busier" in busy["reason"]
            coder = next(c for c in busy["candidates"] if c["model"] == "coder")
            assert coder["ttft_ms"] > 1000 and coder["in_flight"] >= 16
            served = httpx.post(
                triage.base_url + "/v1/chat/completions",
                timeout=30,
                json={"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": CODE_PROMPT}]},
            )
            assert served.status_code == 200 and served.headers["x-triage-model"] != "coder"
            assert [f.result(timeout=60) for f in pending] == [200] * 16

        deadline = time.monotonic() + 5  # the answer reaches the client a moment before its accounting ends
        while triage.gateway.load.engine("coder").in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert triage.gateway.load.engine("coder").in_flight == 0
        # Idle again: back to the best fit once the engine's own gauges, scraped each second, say so too.
        deadline = time.monotonic() + 5
        while (model := route(triage.base_url)["model"]) != "coder" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert model == "coder"
