"""What the router reads from a validated request body: the text to classify, token estimates, the
capabilities the request needs (`embeddings` for an embeddings request). Pure functions over protocol models; no I/O.
"""

from __future__ import annotations

from .protocol import ChatCompletionRequest, ChatMessage, CompletionRequest, EmbeddingRequest

Request = ChatCompletionRequest | CompletionRequest | EmbeddingRequest  # a validated body of a routed endpoint

CHARS_PER_TOKEN = 4  # a deliberate over-estimate for English BPE (~4.2): context checks err on the safe side
DEFAULT_OUTPUT_TOKENS = 256  # what a request that sets no max_tokens is assumed to generate, for planning
_MESSAGE_OVERHEAD_TOKENS = 4  # role and separators per chat message


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
    """Prompt tokens of the request: a chat's messages, a completion's longest prompt, all embedding inputs."""
    if isinstance(request, ChatCompletionRequest):
        chars = sum(len(_message_text(m)) for m in request.messages)
        return chars // CHARS_PER_TOKEN + _MESSAGE_OVERHEAD_TOKENS * len(request.messages)
    if isinstance(request, EmbeddingRequest):
        return sum(_input_tokens(request.input))
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


def longest_prompt_tokens(request: Request) -> int:
    """Tokens of the longest single prompt: what one sequence must fit in the model's context."""
    if isinstance(request, EmbeddingRequest):
        return max(_input_tokens(request.input))
    return estimate_prompt_tokens(request)


def _input_tokens(value: str | list[str] | list[int] | list[list[int]]) -> list[int]:
    """Estimated tokens of each embedding input."""
    if isinstance(value, str):
        return [len(value) // CHARS_PER_TOKEN + 1]
    if not value or isinstance(value[0], int):
        return [max(1, len(value))]
    return [len(v) // CHARS_PER_TOKEN + 1 if isinstance(v, str) else max(1, len(v)) for v in value]


def requested_output_tokens(request: Request) -> int:
    if isinstance(request, EmbeddingRequest):
        return 0
    if isinstance(request, ChatCompletionRequest) and request.max_completion_tokens:
        return request.max_completion_tokens
    return request.max_tokens or DEFAULT_OUTPUT_TOKENS


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
