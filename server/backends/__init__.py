"""Engine clients by kind; a model's `kind` in the config picks its class here."""

from __future__ import annotations

import aiohttp

from ..config import ModelConfig
from .base import EngineClient, EngineStats, UpstreamStream
from .openai import OpenAIClient
from .vllm import VllmClient

ENGINE_CLIENTS: dict[str, type[EngineClient]] = {
    VllmClient.kind: VllmClient,
    OpenAIClient.kind: OpenAIClient,
}


def build_client(model: ModelConfig, session: aiohttp.ClientSession) -> EngineClient:
    return ENGINE_CLIENTS[model.kind](model, session)


def build_session(limit_per_host: int = 0) -> aiohttp.ClientSession:
    """The one pooled upstream session: keep-alive, no connection cap (admission control caps load)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=limit_per_host, keepalive_timeout=60)
    return aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))


__all__ = ["ENGINE_CLIENTS", "EngineClient", "EngineStats", "UpstreamStream", "build_client", "build_session"]
