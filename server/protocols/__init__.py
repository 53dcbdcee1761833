"""Client protocols and their routes: `ROUTE_ADAPTERS` maps each generation route to the adapter that speaks its
client's protocol (`adapter.Adapter`): OpenAI chat completions, completions and embeddings (the internal forms,
untranslated), OpenAI's Responses API and Anthropic's Messages API (translated to chat completions and back).

Every route in it is served by the front door through the same path (receive → plan → commit → relay). To add a
protocol: write its adapter and `Translation` in a module of its own, with its wire models beside it, and add its
route here. Knows nothing about routing.
"""

from __future__ import annotations

from ..errors import Dialect
from .adapter import Adapter, ReceiveContext, Translation
from .anthropic import Messages
from .chat import ChatCompletions, Completions, Embeddings
from .responses import Responses

__all__ = ["ROUTE_ADAPTERS", "Adapter", "ReceiveContext", "Translation", "dialect_of"]

ROUTE_ADAPTERS: dict[str, Adapter] = {
    "/v1/chat/completions": ChatCompletions(),
    "/v1/completions": Completions(),
    "/v1/embeddings": Embeddings(),
    "/v1/responses": Responses(),
    "/v1/messages": Messages(),
}
ANTHROPIC_PREFIX = "/v1/messages"  # its count_tokens, and any unknown path under it, answer Anthropic-shaped errors


def dialect_of(path: str) -> Dialect:
    """The error shape of any path."""
    return "anthropic" if path == ANTHROPIC_PREFIX or path.startswith(ANTHROPIC_PREFIX + "/") else "openai"
