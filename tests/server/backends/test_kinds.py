"""The engine-kind registry: one module per kind, the simulator loaded only when a config names it, and
`start_engines` returning every model's endpoints (configured, simulated or launched) and stopping with the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.backends import ENGINE_KINDS, build_clients, build_session, engine_kind, start_engines
from server.backends.minilm import MiniLMClient
from server.backends.openai import OpenAIClient
from server.backends.vllm import VllmClient
from server.config import ConfigError, parse_config
from server.load import LoadBoard
from server.sim.spec import SimEngineSpec
from server.telemetry.metrics import Metrics
from tests.server.conftest import free_port

REPO = Path(__file__).resolve().parents[3]
FAKE_VLLM = str(REPO / "tests" / "server" / "fake_vllm.py")

# Builds and runs an app in a fresh interpreter; prints whether `server.sim` was imported after loading the
# config and after serving one chat completion.
PROBE = """
import json, sys
from starlette.testclient import TestClient
import server.app
from server.config import parse_config

kind, port = sys.argv[1], int(sys.argv[2])
model = {"name": "m", "kind": kind, "endpoints": [f"http://127.0.0.1:{port}/v1"]}
if kind == "simulated":
    model["simulated"] = {"shape": "tiny-fast", "time_scale": 0.1, "default_output_tokens": 4}
config = parse_config({"models": [model], "policy": {"store": None}})
loaded = "server.sim" in sys.modules
with TestClient(server.app.build_app(config)) as client:
    body = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    status = client.post("/v1/chat/completions", json=body).status_code
print(json.dumps({"after_config": loaded, "after_serving": "server.sim" in sys.modules, "status": status}))
"""


def probe(kind: str, tmp_path: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, kind, str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_every_kind_names_its_client() -> None:
    clients = {name: engine_kind(name).client for name in ENGINE_KINDS}
    assert clients == {"vllm": VllmClient, "openai": OpenAIClient, "simulated": VllmClient, "minilm": MiniLMClient}
    assert all(engine_kind(name).name == name for name in ENGINE_KINDS)
    with pytest.raises(ValueError, match="unknown engine kind 'tgi'; use one of: vllm, openai, simulated, minilm"):
        engine_kind("tgi")


def test_the_simulator_stays_out_unless_a_config_names_it(tmp_path: Path) -> None:
    # no engine listens there: the request fails, but the app was built, started and served it
    assert probe("vllm", tmp_path) == {"after_config": False, "after_serving": False, "status": 503}
    assert probe("simulated", tmp_path) == {"after_config": True, "after_serving": True, "status": 200}


def test_simulated_block_is_typed_by_its_kind() -> None:
    config = parse_config(
        {
            "models": [
                {
                    "name": "coder",
                    "kind": "simulated",
                    "served_name": "qwen-coder",
                    "endpoints": ["http://127.0.0.1:8101/v1"],
                    "gpu": "1",
                    "context_length": 4096,
                    "simulated": {"shape": "qwen2.5-1.5b"},
                }
            ]
        }
    )
    spec = config.models[0].simulated
    assert isinstance(spec, SimEngineSpec)
    assert (spec.name, spec.port, spec.gpu, spec.max_model_len, spec.shape) == (
        "qwen-coder",
        8101,
        "1",
        4096,
        "qwen2.5-1.5b",
    )
    assert parse_config(config.model_dump()) == config  # the typed block survives a dump/parse round trip


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"kind": "tgi"}, r"models\[0\]\.kind: .*unknown engine kind 'tgi'"),
        ({"simulated": {}}, r"models\[0\]\.simulated: .*set kind: simulated or drop it"),
        ({"kind": "simulated", "simulated": {"shape": "llama"}}, r"models\[0\]\.simulated: .*unknown shape 'llama'"),
        ({"kind": "openai", "launch": {"model": "m"}, "endpoints": []}, "kind must be 'vllm'"),
    ],
)
def test_kind_errors_name_the_key(model: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"models": [{"name": "m", "endpoints": ["http://127.0.0.1:8101/v1"], **model}]})


async def test_start_engines_returns_endpoints_and_stops_with_the_stack(tmp_path: Path) -> None:
    remote = {"name": "cloud", "kind": "openai", "remote": True, "endpoints": ["https://api.example.invalid/v1"]}
    # port 0: the simulator picks a free port, so its endpoint is known only once it listens
    simulated = {"name": "sim", "kind": "simulated", "endpoints": ["http://127.0.0.1:9/v1"], "simulated": {"port": 0}}
    launched = {
        "name": "launched",
        "launch": {
            "model": "org/fake",
            "command": [sys.executable, FAKE_VLLM, "serve"],
            "gpu_memory_utilization": 0.1,
            "startup_timeout_s": 15,
            "stop_timeout_s": 3,
        },
    }
    config = parse_config({"models": [remote, simulated, launched]})
    load = LoadBoard()
    async with AsyncExitStack() as stack:
        engines = await start_engines(config.models, stack, load, Metrics())
        assert engines.endpoints["cloud"] == ["https://api.example.invalid/v1"]
        assert engines.endpoints["sim"] != ["http://127.0.0.1:9/v1"]
        assert config.models[2].endpoints == []  # nothing wrote the started endpoints into the config
        assert set(engines.process_groups()) == {"launched"}
        session = build_session()
        stack.push_async_callback(session.close)
        clients = build_clients(config.models, engines.endpoints, session)
        assert [type(c) for c in clients.values()] == [OpenAIClient, VllmClient, VllmClient]
        assert await clients["sim"].health() and await clients["launched"].health()
        started = [engines.endpoints[name][0] for name in ("sim", "launched")]
    async with httpx.AsyncClient() as client:
        for endpoint in started:
            with pytest.raises(httpx.TransportError):
                await client.get(endpoint + "/models", timeout=2)
