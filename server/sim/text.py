"""Token counting and filler text for simulated replies.

Prompt tokens are estimated (ceil(chars / 4)) or counted exactly for token-id prompts. Reply tokens are
deterministic filler words; the first is always "[simulated]" so nobody mistakes a reply for a model's.
Knows nothing about engines, HTTP or JSON framing beyond the tokens' JSON-escaped bytes.
"""

from __future__ import annotations

from typing import Any

SIM_MARKER = "[simulated]"
SYSTEM_FINGERPRINT = "triage-sim"
CHARS_PER_TOKEN = 4  # rough average of BPE tokenizers on English text
CHAT_TOKENS_PER_MESSAGE = 4  # role and separators a chat template adds per message
CHAT_TOKENS_REPLY_PRIMER = 2  # "<|im_start|>assistant\n"

_WORDS: tuple[str, ...] = (
    "the",
    "router",
    "sends",
    "this",
    "request",
    "to",
    "a",
    "simulated",
    "engine",
    "that",
    "answers",
    "with",
    "filler",
    "words",
    "while",
    "it",
    "models",
    "queueing",
    "prefill",
    "and",
    "decode",
    "time",
    "on",
    "one",
    "shared",
    "gpu",
    "so",
    "load",
    "tests",
    "see",
    "latency",
    "like",
    "vllm",
    "under",
    "pressure",
    "but",
    "no",
    "real",
    "model",
    "runs",
    "here",
    "each",
    "step",
    "emits",
    "token",
    "for",
    "every",
    "sequence",
)


class PromptError(ValueError):
    """The prompt or messages have a shape the simulator cannot count."""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def text_tokens(text: str) -> int:
    """Estimated tokens of `text`: ceil(len / 4)."""
    return _ceil_div(len(text), CHARS_PER_TOKEN)


def _content_chars(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": ...}, ...]
        return sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    raise PromptError("message content must be a string or a list of content parts")


def chat_prompt_tokens(messages: Any) -> int:
    """Estimated prompt tokens of a chat request's `messages` list, template overhead included."""
    if not isinstance(messages, list) or not messages:
        raise PromptError("'messages' must be a non-empty list of {role, content} objects")
    total = CHAT_TOKENS_REPLY_PRIMER
    for message in messages:
        if not isinstance(message, dict):
            raise PromptError("each entry of 'messages' must be an object with 'role' and 'content'")
        total += CHAT_TOKENS_PER_MESSAGE + _ceil_div(_content_chars(message.get("content")), CHARS_PER_TOKEN)
    return total


def completion_prompt_tokens(prompt: Any) -> int:
    """Tokens of a completions `prompt`: a string, a list of token ids, or a one-element list of either."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return max(1, text_tokens(prompt))
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    raise PromptError("'prompt' must be a string or a list of token ids; batched prompts are not simulated")


class Filler:
    """Deterministic reply tokens: token i of a reply whose `offset` was drawn per request."""

    def __init__(self) -> None:
        self.words: tuple[str, ...] = (SIM_MARKER, *(" " + w for w in _WORDS))
        # JSON-escaped UTF-8 of each token, ready to splice inside a JSON string (plain ASCII: no escapes).
        self.word_bytes: tuple[bytes, ...] = tuple(w.encode() for w in self.words)

    def index(self, i: int, offset: int) -> int:
        """Index into `words` of reply token i: the marker first, then words cycling from `offset`."""
        return 0 if i == 0 else 1 + (offset + i) % (len(self.words) - 1)

    def token_bytes(self, i: int, offset: int) -> bytes:
        return self.word_bytes[self.index(i, offset)]

    def text(self, n_tokens: int, offset: int) -> str:
        """The first `n_tokens` tokens of a reply, joined."""
        return "".join(self.words[self.index(i, offset)] for i in range(n_tokens))
