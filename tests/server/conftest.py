"""Runs a real Triage server (uvicorn, real sockets) with simulated engines for the gateway tests.

The server runs in a background thread with its own event loop, so tests can use the official synchronous
`openai` client and plain httpx against it, as users do.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import uvicorn

from server.app import build_app
from server.config import TriageConfig, parse_config
from server.connections import uvicorn_options
from server.serving import Gateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningTriage:
    base_url: str
    server: uvicorn.Server
    loop: asyncio.AbstractEventLoop
    config: TriageConfig

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.server.config.app.state.gateway  # type: ignore[attr-defined]
        return gateway

    def call(self, coro: Any, timeout_s: float = 10.0) -> Any:
        """Run a coroutine on the server's loop (e.g. to read simulated engine state)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)


def served_elsewhere(config: TriageConfig) -> TriageConfig:
    """`config` as seen by a router that does not start its simulated engines: each becomes the vLLM engine it
    imitates (same dialect), at the same endpoints."""
    models = [
        m.model_copy(update={"kind": "vllm", "simulated": None}) if m.kind == "simulated" else m for m in config.models
    ]
    return config.model_copy(update={"models": models})


@contextmanager
def run_triage(config: TriageConfig, start_simulated: bool = True) -> Iterator[RunningTriage]:
    """Serve `config`; with `start_simulated=False` its simulated engines run elsewhere (`simthread.sim_engines`)."""
    app = build_app(config if start_simulated else served_elsewhere(config))
    port = free_port()
    uv_config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        log_level="warning",
        access_log=False,
        lifespan="on",
        **uvicorn_options(config.server),  # the protocol and connection limits `triage serve` uses
    )
    server = uvicorn.Server(uv_config)
    loop_box: dict[str, asyncio.AbstractEventLoop] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        loop_box["loop"] = loop
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=serve, name="triage-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 90  # MiniLM start-up takes seconds, more on a busy machine
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("triage test server did not start")
        time.sleep(0.02)
    try:
        yield RunningTriage(f"http://127.0.0.1:{port}", server, loop_box["loop"], config)
    finally:
        server.should_exit = True
        thread.join(20)


def sim_model(name: str, roles: list[str], port: int, **simulated: Any) -> dict[str, Any]:
    sim = {"shape": "qwen2.5-1.5b", "gpu": "0", "time_scale": 0.05, "max_num_seqs": 64, "default_output_tokens": 16}
    sim.update(simulated)
    return {
        "name": name,
        "kind": "simulated",
        "roles": roles,
        "endpoints": [f"http://127.0.0.1:{port}/v1"],
        "gpu": "0",
        "context_length": 8192,
        "simulated": sim,
    }


def demo_like_config(**overrides: Any) -> TriageConfig:
    models = [
        sim_model("coder", ["code"], free_port()),
        sim_model("chat", ["chat"], free_port()),
        sim_model("fast", ["fast"], free_port()),
    ]
    # static task routing by role tags: these tests check the gateway, not the triage policy's choices
    data: dict[str, Any] = {"models": models, "policy": {"name": "static"}}
    data.update(overrides)
    return parse_config(data)


@pytest.fixture(scope="module")
def triage() -> Iterator[RunningTriage]:
    with run_triage(demo_like_config()) as running:
        yield running


SDK = Callable[..., openai.OpenAI]


@pytest.fixture
def sdk() -> Iterator[SDK]:
    """Makes official `openai` clients for a running Triage (`sdk(triage, key)`), closed after the test."""
    made: list[openai.OpenAI] = []

    def make(triage: RunningTriage, key: str = "unused-in-open-mode") -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=triage.base_url + "/v1", api_key=key, max_retries=0))
        return made[-1]

    yield make
    for client in made:
        client.close()
