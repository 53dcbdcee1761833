"""What the router reads from a validated request body: the text to classify, token estimates, the
capabilities the request needs (`embeddings` for an embeddings request), the hashes of its message prefixes
(conversation affinity). Pure functions over protocol models; no I/O.
"""

from __future__ import annotations

import orjson

from .protocol import ChatCompletionRequest, ChatMessage, CompletionRequest, EmbeddingRequest

Request = ChatCompletionRequest | CompletionRequest | EmbeddingRequest  # a validated body of a routed endpoint

CHARS_PER_TOKEN = 4  # a deliberate over-estimate for English BPE (~4.2): context checks err on the safe side
DEFAULT_OUTPUT_TOKENS = 256  # what a request that sets no max_tokens is assumed to generate, for planning
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's (and vLLM's) max_tokens for /v1/completions when none is sent
_MESSAGE_OVERHEAD_TOKENS = 4  # role and separators per chat message
PREFIX_HASH_CHARS = 256  # of a long message, its length and its first and last this many characters are hashed:
# enough to tell conversations apart


def _message_text(message: ChatMessage) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part.text for part in content if part.text)


def prompt_text(request: Request) -> str:
    """The text the classifier sees: the last user turn of a chat, or the (first) text prompt or input."""
    if isinstance(request, ChatCompletionRequest):
        for message in reversed(request.messages):
            if message.role == "user":
                return _message_text(message)
        return _message_text(request.messages[-1])
    prompt = request.prompt if isinstance(request, CompletionRequest) else request.input
    if isinstance(prompt, str):
        return prompt
    if prompt and isinstance(prompt[0], str):
        return str(prompt[0])
    return ""  # token ids: nothing to read


def estimate_prompt_tokens(request: Request) -> int:
    """One sequence's prompt: the longest of a batch (what must fit a model's context)."""
    if isinstance(request, ChatCompletionRequest):
        chars = sum(len(_message_text(m)) for m in request.messages)
        return chars // CHARS_PER_TOKEN + _MESSAGE_OVERHEAD_TOKENS * len(request.messages)
    if isinstance(request, EmbeddingRequest):
        return max(_input_tokens(request.input))
    prompt = request.prompt
    if isinstance(prompt, str):
        return len(prompt) // CHARS_PER_TOKEN + 1
    if not prompt:
        return 1
    first = prompt[0]
    if isinstance(first, int):
        return len(prompt)
    if isinstance(first, str):
        return max(len(str(p)) for p in prompt) // CHARS_PER_TOKEN + 1
    return max(len(p) for p in prompt if isinstance(p, list))


def billed_prompt_tokens(request: Request) -> int:
    """Every prompt of the request together: a batch of prompts is billed in full, not as its longest."""
    if isinstance(request, ChatCompletionRequest):
        return estimate_prompt_tokens(request)
    if isinstance(request, EmbeddingRequest):
        return sum(_input_tokens(request.input))
    prompt = request.prompt
    if isinstance(prompt, str) or not prompt or isinstance(prompt[0], int):
        return estimate_prompt_tokens(request)
    return sum(len(p) // CHARS_PER_TOKEN + 1 if isinstance(p, str) else len(p) for p in prompt)


def sequences(request: Request) -> int:
    """Completions the engine generates: one per prompt of a batch, times `n` (or `best_of`, when larger)."""
    if isinstance(request, EmbeddingRequest):
        return 1  # one vector per input, no generation: its inputs are billed as prompt
    if not isinstance(request, CompletionRequest):
        return request.n or 1
    per_prompt = max(request.n or 1, request.best_of or 1)
    prompt = request.prompt
    batch = len(prompt) if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else 1
    return per_prompt * batch


def _input_tokens(value: str | list[str] | list[int] | list[list[int]]) -> list[int]:
    """Estimated tokens of each embedding input."""
    if isinstance(value, str):
        return [len(value) // CHARS_PER_TOKEN + 1]
    if not value or isinstance(value[0], int):
        return [max(1, len(value))]
    return [len(v) // CHARS_PER_TOKEN + 1 if isinstance(v, str) else max(1, len(v)) for v in value]


def output_cap(request: Request) -> int | None:
    """Output tokens per sequence as requested (max_completion_tokens, max_tokens), or None when none is set;
    0 for embeddings (nothing is generated)."""
    if isinstance(request, EmbeddingRequest):
        return 0
    if isinstance(request, ChatCompletionRequest) and request.max_completion_tokens:
        return request.max_completion_tokens
    return request.max_tokens


def default_output_cap(request: Request) -> int | None:
    """What engines generate when no cap is sent: 16 on completions; on chat, up to the context (None)."""
    if isinstance(request, EmbeddingRequest):
        return 0
    return COMPLETIONS_DEFAULT_MAX_TOKENS if isinstance(request, CompletionRequest) else None


def requested_output_tokens(request: Request) -> int:
    """Output tokens per sequence, for planning: as requested, or a default (0 for embeddings)."""
    cap = output_cap(request)
    return DEFAULT_OUTPUT_TOKENS if cap is None else cap


def needed_capabilities(request: Request) -> frozenset[str]:
    if isinstance(request, EmbeddingRequest):
        return frozenset({"embeddings"})
    if not isinstance(request, ChatCompletionRequest):
        return frozenset()
    needs: set[str] = set()
    if request.tools:
        needs.add("tools")
    if request.response_format and request.response_format.get("type") in ("json_object", "json_schema"):
        needs.add("json_mode")
    for message in request.messages:
        if isinstance(message.content, list) and any(p.type == "image_url" for p in message.content):
            needs.add("vision")
    return frozenset(needs)


def message_prefixes(request: Request) -> tuple[tuple[int, int], ...]:
    """(hash of messages[:k], estimated tokens of messages[:k]) for k = 1..n, each hash chained on the last.

    The last entry identifies this whole conversation so far; the next turn carries it among its prefixes. A
    message counts by its role, name, length, head and tail and its tool calls, not in full, so two messages that
    differ only in their middle collide: the cost of that is one misplaced affinity preference, never a wrong
    answer. Python's `hash` (64-bit, seeded per process like the in-memory map it keys): about 0.7 us a message,
    where blake2b cost three times that. Completions (no turns) return ().
    """
    if not isinstance(request, ChatCompletionRequest):
        return ()
    out: list[tuple[int, int]] = []
    chained = 0
    chars = 0
    for k, message in enumerate(request.messages, start=1):
        text = _message_text(message)
        size = len(text)
        chars += size
        if size > 2 * PREFIX_HASH_CHARS:  # a 4 MB message costs what a 512-character one does
            text = text[:PREFIX_HASH_CHARS] + text[-PREFIX_HASH_CHARS:]
        extra = message.model_extra
        calls = call_id = None
        if extra:
            if extra.get("tool_calls"):
                calls = _bounded(orjson.dumps(extra["tool_calls"]))
            call_id = extra.get("tool_call_id")
        chained = hash((chained, message.role, message.name, size, text, calls, call_id))
        out.append((chained, chars // CHARS_PER_TOKEN + _MESSAGE_OVERHEAD_TOKENS * k))  # as estimate_prompt_tokens
    return tuple(out)


def _bounded(data: bytes) -> bytes:
    """`data` itself, or its length, head and tail when long: what tool calls add to a prefix hash."""
    if len(data) <= 2 * PREFIX_HASH_CHARS:
        return data
    return len(data).to_bytes(8, "little") + data[:PREFIX_HASH_CHARS] + data[-PREFIX_HASH_CHARS:]
