"""OpenAI request parsing and response bytes for the simulated engine, shaped like vLLM's.

Parses only the fields the simulator acts on (model, messages/prompt, max_tokens, stream, stream_options,
ignore_eos, n) and ignores the rest, as vLLM does with sampling knobs it does not need here. Response JSON is
built from per-request byte templates so a streamed token costs two concatenations. Knows nothing about the
engine's scheduling or about sockets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from server.sim.text import (
    SYSTEM_FINGERPRINT,
    Filler,
    PromptError,
    chat_prompt_tokens,
    completion_prompt_tokens,
)

Kind = Literal["chat", "completion"]
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


def _int_field(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"'{key}' must be a positive integer, got {value!r}", param=key)
    return value


def parse_request(kind: Kind, raw: bytes, served_name: str) -> SimRequest:
    """Validate a request body; raises ApiError with vLLM's status codes."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != served_name:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    n = body.get("n", 1)
    if n != 1:
        raise ApiError(400, f"n={n!r} is not simulated; send n=1", param="n")
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
    return SimRequest(kind, prompt_tokens, max_tokens, stream, include_usage, body.get("ignore_eos") is True)


def request_id(kind: Kind, tag: str, serial: int) -> str:
    """vLLM-style id: chatcmpl-/cmpl- plus an app tag and a serial number, unique per engine run."""
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{tag}{serial:012x}"


class ReplyFramer:
    """Bytes of one reply: SSE chunks per token, the usage chunk, or the whole non-streamed JSON."""

    __slots__ = ("_filler", "_head", "_kind", "_model", "_offset", "_rid", "_tail", "created")

    def __init__(self, kind: Kind, rid: str, model: str, filler: Filler, offset: int) -> None:
        self._kind = kind
        self._model = model
        self._rid = rid
        self.created = int(time.time())
        self._filler = filler
        self._offset = offset
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        common = (
            b'data: {"id":"'
            + self._rid.encode()
            + b'","object":"'
            + obj.encode()
            + b'","created":'
            + str(self.created).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b',"system_fingerprint":"'
            + SYSTEM_FINGERPRINT.encode()
            + b'","choices":['
        )
        if kind == "chat":
            self._head = common + b'{"index":0,"delta":{"content":"'
            self._tail = b'"},"logprobs":null,"finish_reason":'
        else:
            self._head = common + b'{"index":0,"text":"'
            self._tail = b'","logprobs":null,"finish_reason":'

    def role_chunk(self) -> bytes:
        """Chat streams open with the assistant role, as vLLM's do; completions have none."""
        if self._kind != "chat":
            return b""
        return self._head[: -len(b'{"content":"')] + (
            b'{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
        )

    def token_chunks(self, start: int, end: int, finish_reason: str | None) -> bytes:
        """SSE events for reply tokens [start, end); the last carries `finish_reason` when given."""
        head, tail, fill, off = self._head, self._tail, self._filler, self._offset
        parts = [head + fill.token_bytes(i, off) + tail + b"null}]}\n\n" for i in range(start, end)]
        if finish_reason is not None and parts:
            parts[-1] = parts[-1][: -len(b"null}]}\n\n")] + b'"' + finish_reason.encode() + b'"}]}\n\n'
        return b"".join(parts)

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The include_usage chunk: empty choices and the totals, as vLLM sends before [DONE]."""
        head = self._head[: self._head.index(b'"choices":[')]
        return head + b'"choices":[],"usage":' + orjson.dumps(_usage(prompt_tokens, completion_tokens)) + b"}\n\n"

    def full_body(self, n_tokens: int, finish_reason: str, prompt_tokens: int) -> bytes:
        text = self._filler.text(n_tokens, self._offset)
        choice: dict[str, Any]
        if self._kind == "chat":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "tool_calls": []},
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        return orjson.dumps(
            {
                "id": self._rid,
                "object": "chat.completion" if self._kind == "chat" else "text_completion",
                "created": self.created,
                "model": self._model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [choice],
                "usage": _usage(prompt_tokens, n_tokens),
            }
        )


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


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
