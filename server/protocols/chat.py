"""OpenAI's chat completions, completions and embeddings: the internal forms themselves, so their adapters
translate nothing.

The body is validated and relayed as sent (`intake.receive`), the engine's answer goes back byte for byte.
Knows nothing about routing.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from ..intake import Endpoint, Incoming, receive
from ..protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from .adapter import Adapter, ReceiveContext


class ChatCompletions(Adapter):
    name = "chat"
    endpoint: ClassVar[Endpoint] = "chat"
    request_model: ClassVar[type[BaseModel]] = ChatCompletionRequest
    summary = "Chat completion; model 'auto' is routed"

    async def receive(self, raw: bytes, context: ReceiveContext) -> Incoming:
        return receive(raw, self.endpoint, resolve_model=context.resolve_model)


class Completions(ChatCompletions):
    name = "completions"
    endpoint: ClassVar[Endpoint] = "completions"
    request_model: ClassVar[type[BaseModel]] = CompletionRequest
    summary = "Text completion; model 'auto' is routed"


class Embeddings(ChatCompletions):
    name = "embeddings"
    endpoint: ClassVar[Endpoint] = "embeddings"
    request_model: ClassVar[type[BaseModel]] = EmbeddingRequest
    summary = "Embeddings; model 'auto' is routed among the embedding models"
