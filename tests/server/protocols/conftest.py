"""A running Triage in front of the scripted engine (tests/server/protocols/scripted_engine.py), for the protocol
adapters' tests: the official SDKs talk to the router, the test scripts what the engine answers and reads what
the engine was sent.

Models: `scripted` (chat completions only; tools, JSON mode and vision), `native` (the same engine, declaring
that it serves the Responses and Messages APIs itself) and `remote-native` (a remote provider serving the
Responses API). Aliases: `claude-*` and `gpt-5*` -> scripted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from server.auth.keys import KeyStore
from server.config import parse_config

from ..conftest import RunningTriage, run_triage
from .scripted_engine import Reply, ScriptedEngine, scripted_engine


@dataclass
class Scripted:
    triage: RunningTriage
    engine: ScriptedEngine
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return self.triage.base_url

    def script(self, **reply: Any) -> None:
        """What the engine answers next (and from then on)."""
        fresh = Reply(**reply)
        for name in vars(fresh):
            setattr(self.engine.reply, name, getattr(fresh, name))


OpenAIClients = Callable[..., openai.OpenAI]  # (base_url, key="unused") -> a client, closed after the test
AnthropicClients = Callable[..., anthropic.Anthropic]


@pytest.fixture
def client() -> Iterator[OpenAIClients]:
    """The official OpenAI SDK (no retries), closed after the test."""
    made: list[openai.OpenAI] = []

    def make(base_url: str, key: str = "unused") -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=20))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture
def claude() -> Iterator[AnthropicClients]:
    """The official Anthropic SDK (no retries), closed after the test."""
    made: list[anthropic.Anthropic] = []

    def make(base_url: str, key: str | None = "unused", **headers: str) -> anthropic.Anthropic:
        made.append(
            anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=20, default_headers=headers)
        )
        return made[-1]

    yield make
    for one in made:
        one.close()


def scripted_config(engine_url: str, **overrides: Any) -> dict[str, Any]:
    caps = ["tools", "json_mode", "vision"]
    return {
        "models": [
            {"name": "scripted", "kind": "openai", "endpoints": [engine_url], "roles": ["chat"], "capabilities": caps},
            {
                "name": "native",
                "kind": "openai",
                "endpoints": [engine_url],
                "roles": ["native"],
                "capabilities": caps,
                "native_apis": ["responses", "messages"],
            },
            {
                "name": "remote-native",
                "kind": "openai",
                "endpoints": [engine_url],
                "roles": ["remote"],
                "remote": True,
                "native_apis": ["responses"],
            },
        ],
        "policy": {"name": "static", "allow_remote": True},  # remote-native may be named (the ceiling is open)
        "aliases": {"claude-*": "scripted", "gpt-5*": "scripted"},
        **overrides,
    }


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    with scripted_engine() as engine, run_triage(parse_config(scripted_config(engine.url))) as triage:
        yield Scripted(triage, engine, {})


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scripted]:
    """The same, with API keys required: `good`, `other` (a second key), `slow` (1 request per minute)."""
    db = str(Path(tmp_path_factory.mktemp("keys")) / "triage.db")
    store = KeyStore.open(db)
    keys = {"good": store.create("good")[0], "other": store.create("other")[0], "slow": store.create("slow", rpm=1)[0]}
    with scripted_engine() as engine:
        config = parse_config(scripted_config(engine.url, auth={"mode": "keys", "db": db}))
        with run_triage(config) as triage:
            yield Scripted(triage, engine, keys)
    store.close()
