"""OpenAI request parsing and error bytes for the simulated engine, shaped like vLLM's.

Parses only the fields the simulator acts on (model, messages/prompt, max_tokens, stream, stream_options,
ignore_eos, n, and what shapes the reply: stop, logprobs, tools, response_format — see `reply.py`) and ignores
the rest, as vLLM does with sampling knobs it does not need here. Reply bytes are `framing.py`'s. Knows nothing
about the engine's scheduling or about sockets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from server.sim.reply import ReplyError, ReplySpec
from server.sim.text import PromptError, chat_prompt_tokens, completion_prompt_tokens

Kind = Literal["chat", "completion"]
MAX_N = 128  # choices per request (the router's own bound too)
DONE = b"data: [DONE]\n\n"


class ApiError(Exception):
    """An error answered in OpenAI/vLLM shape: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, type_: str = "BadRequestError", param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}}
        )


@dataclass(frozen=True, slots=True)
class SimRequest:
    """What the simulator needs from a chat or completions request."""

    kind: Kind
    prompt_tokens: int
    max_tokens: int | None  # None: up to max_model_len
    stream: bool
    include_usage: bool
    ignore_eos: bool
    n: int  # choices, each its own sequence in the engine
    reply: ReplySpec


def _int_field(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"'{key}' must be a positive integer, got {value!r}", param=key)
    return value


def load_body(raw: bytes, served_name: str) -> dict[str, Any]:
    """The body as a JSON object naming this engine's model (or none); ApiError otherwise."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != served_name:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    return body


def parse_request(kind: Kind, raw: bytes, served_name: str) -> SimRequest:
    """Validate a request body; raises ApiError with vLLM's status codes."""
    body = load_body(raw, served_name)
    n = body.get("n")
    n = 1 if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise ApiError(400, f"'n' must be an integer in [1, {MAX_N}], got {n!r}", param="n")
    try:
        if kind == "chat":
            prompt_tokens = chat_prompt_tokens(body.get("messages"))
        else:
            prompt_tokens = completion_prompt_tokens(body.get("prompt"))
    except PromptError as exc:
        raise ApiError(400, str(exc), param="messages" if kind == "chat" else "prompt") from exc
    max_tokens = _int_field(body, "max_tokens")
    if kind == "chat":
        max_tokens = _int_field(body, "max_completion_tokens") or max_tokens
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise ApiError(400, "Stream options can only be defined when `stream=True`.", param="stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    try:
        reply = ReplySpec.parse(kind, body)
    except ReplyError as exc:
        raise ApiError(400, str(exc), param=exc.param) from exc
    ignore_eos = body.get("ignore_eos") is True
    return SimRequest(kind, prompt_tokens, max_tokens, stream, include_usage, ignore_eos, n, reply)


def request_id(kind: Kind, tag: str, serial: int) -> str:
    """vLLM-style id: chatcmpl-/cmpl- plus an app tag and a serial number, unique per engine run."""
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{tag}{serial:012x}"


def error_event(error: ApiError) -> bytes:
    """An error inside an open stream: one SSE event with the error JSON."""
    return b"data: " + error.body() + b"\n\n"


def models_body(served_name: str, max_model_len: int, created: int) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {
                    "id": served_name,
                    "object": "model",
                    "created": created,
                    "owned_by": "triage-sim",
                    "root": served_name,
                    "parent": None,
                    "max_model_len": max_model_len,
                }
            ],
        }
    )
