"""`POST /v1/messages` (Anthropic's Messages API) as an adapter, and `/v1/messages/count_tokens`.

Request: `system` (and `system` turns among the messages, as Claude Code sends them) -> system messages; content
blocks -> chat content (text, images as data or https URLs); an assistant's `tool_use` blocks -> its `tool_calls`
(input as JSON text); a user's `tool_result` blocks -> `tool` messages, ahead of the rest of that turn; client
`tools` (their `input_schema`) -> function tools, server tools dropped; `tool_choice` auto/any/tool/none ->
auto/required/named/none; `stop_sequences` -> `stop`; `output_config.format` (structured outputs) -> a JSON-schema
`response_format` (so it needs `json_mode`); `max_tokens`, `temperature`, `top_p`, `top_k` as they are;
`metadata.user_id` -> `user`.
Answer: the text -> a `text` block, each tool call -> a `tool_use` block (arguments parsed), `finish_reason`
-> `stop_reason` (stop: end_turn, or stop_sequence when the engine names the stop string it met; length:
max_tokens; tool_calls: tool_use); usage from the engine's, the input estimated where the engine gives none.
Streams: `anthropic_stream.py`. `count_tokens` answers with the router's estimate (characters / 4, the same
figure the router plans with), not a tokenizer's count. Errors on these routes take Anthropic's shape
(`errors.http_error(..., dialect="anthropic")`). Knows nothing about routing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel

from ..errors import Dialect, ModelNotFound
from ..inspect_request import CHARS_PER_TOKEN
from ..intake import Endpoint, Incoming, incoming, parse_object
from .adapter import Adapter, ReceiveContext, Translation, engine_json, validated
from .anthropic_models import (
    AnthropicImageBlock,
    AnthropicTextBlock,
    AnthropicToolResultBlock,
    AnthropicToolUseBlock,
    CountTokensRequest,
    MessagesRequest,
)
from .anthropic_stream import native_events, tool_use, translated_events

log = logging.getLogger(__name__)
_TOOL_CHOICE: dict[str, str] = {"auto": "auto", "any": "required", "none": "none"}


class Messages(Adapter):
    name = "messages"
    endpoint: ClassVar[Endpoint] = "chat"
    dialect: ClassVar[Dialect] = "anthropic"
    request_model: ClassVar[type[BaseModel]] = MessagesRequest
    summary = "Anthropic Messages API, translated to chat completions; model 'auto' (or an alias) is routed"

    async def receive(self, raw: bytes, context: ReceiveContext) -> Incoming:
        payload = parse_object(raw)
        request = validated(MessagesRequest, payload)
        answer = MessagesAnswer(request, payload, context.request_id)
        received = incoming(to_chat(request), "chat", context.resolve_model, answer)
        answer.estimated_input_tokens = received.prompt_tokens
        return received


def count_tokens(raw: bytes, resolve_model: Callable[[str], str], models: Collection[str]) -> bytes:
    """`{"input_tokens": N}`: the router's estimate for the prompt, system and tools of a Messages body."""
    request = validated(CountTokensRequest, parse_object(raw))
    model = resolve_model(request.model)
    if model != "auto" and model not in models:
        raise ModelNotFound(
            f"model '{request.model}' does not exist; use 'auto', a configured model ({', '.join(models)}) or "
            "add an alias for it (config `aliases`)",
            param="model",
        )
    chat = to_chat(request)
    chars = sum(len(orjson.dumps(m.get("content"))) for m in chat["messages"]) + len(orjson.dumps(chat.get("tools")))
    return orjson.dumps({"input_tokens": chars // CHARS_PER_TOKEN + 4 * len(chat["messages"])})


# -- request: Messages -> chat -----------------------------------------------------------------------------


def to_chat(request: CountTokensRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    system = request.system
    if system:
        messages.append({"role": "system", "content": system if isinstance(system, str) else _text(system)})
    for message in request.messages:
        if isinstance(message.content, str):
            messages.append({"role": message.role, "content": message.content})
        elif message.role == "system":
            messages.append(
                {"role": "system", "content": _text([b for b in message.content if isinstance(b, AnthropicTextBlock)])}
            )
        elif message.role == "assistant":
            text = _text([b for b in message.content if isinstance(b, AnthropicTextBlock)])
            calls = [
                {
                    "id": b.id,
                    "type": "function",
                    "function": {"name": b.name, "arguments": orjson.dumps(b.input).decode()},
                }
                for b in message.content
                if isinstance(b, AnthropicToolUseBlock)
            ]
            turn: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                turn["tool_calls"] = calls
            messages.append(turn)
        else:
            parts: list[dict[str, Any]] = []
            for block in message.content:
                if isinstance(block, AnthropicToolResultBlock):
                    messages.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": _result(block)})
                elif isinstance(block, AnthropicTextBlock):
                    parts.append({"type": "text", "text": block.text})
                elif isinstance(block, AnthropicImageBlock):
                    parts.append({"type": "image_url", "image_url": {"url": _image_url(block)}})
                else:
                    log.debug("skipping a '%s' block (not translated)", block.type)
            if parts:
                only_text = all(p["type"] == "text" for p in parts)
                messages.append(
                    {"role": "user", "content": "\n".join(p["text"] for p in parts) if only_text else parts}
                )
    chat: dict[str, Any] = {"model": request.model, "messages": messages}
    tools = [
        {
            "type": "function",
            "function": {
                "name": t.name,
                **({"description": t.description} if t.description else {}),
                "parameters": t.input_schema,
            },
        }
        for t in request.tools or []
        if t.type in (None, "custom") and t.input_schema is not None
    ]
    if tools:
        chat["tools"] = tools
        choice = request.tool_choice
        if choice is not None:
            chat["tool_choice"] = (
                {"type": "function", "function": {"name": choice.name}}
                if choice.type == "tool"
                else _TOOL_CHOICE[choice.type]
            )
            if choice.disable_parallel_tool_use:
                chat["parallel_tool_calls"] = False
    if isinstance(request, MessagesRequest):
        chat["max_tokens"] = request.max_tokens
        chat["stream"] = request.stream
        if request.stream:
            chat["stream_options"] = {"include_usage": True}
        form = request.output_config.format if request.output_config else None
        optional = {
            "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": form.schema_}}
            if form
            else None,
            "stop": request.stop_sequences or None,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "top_k": request.top_k,
            "user": request.metadata.user_id if request.metadata else None,
            "route": request.route.model_dump(exclude_none=True) if request.route else None,
        }
        chat.update((k, v) for k, v in optional.items() if v is not None)
    return chat


def _text(blocks: list[AnthropicTextBlock]) -> str:
    return "\n".join(b.text for b in blocks)


def _result(block: AnthropicToolResultBlock) -> str:
    content = block.content
    text = (
        content if isinstance(content, str) else _text([b for b in content or [] if isinstance(b, AnthropicTextBlock)])
    )
    return f"Error: {text}" if block.is_error else text


def _image_url(block: AnthropicImageBlock) -> str:
    source = block.source
    if source.type == "url":
        return source.url or ""
    return f"data:{source.media_type or 'image/png'};base64,{source.data or ''}"


# -- answer: chat -> Messages ------------------------------------------------------------------------------


class MessagesAnswer(Translation):
    native_api = "messages"
    native_path = "/messages"

    def __init__(self, request: MessagesRequest, payload: dict[str, Any], request_id: str) -> None:
        self.message_id = f"msg_{request_id}"
        self.payload = payload  # the client's body, for an engine that serves the Messages API itself
        self.stop_sequences = request.stop_sequences or []
        self.estimated_input_tokens = 0  # the router's estimate, until the engine counts

    def client_body(self) -> object:
        return self.payload

    def native_body(self, upstream_model: str) -> bytes:
        body = {k: v for k, v in self.payload.items() if k != "route"}
        body["model"] = upstream_model
        return orjson.dumps(body)

    def stop_reason(self, finish_reason: str | None, matched: Any, tool_calls: bool) -> tuple[str, str | None]:
        """Anthropic's stop_reason and stop_sequence for a chat choice's finish_reason (and vLLM's
        `stop_reason`, the stop string it met)."""
        if finish_reason == "length":
            return "max_tokens", None
        if finish_reason == "tool_calls" or tool_calls:
            return "tool_use", None
        if isinstance(matched, str) and matched in self.stop_sequences:
            return "stop_sequence", matched
        return "end_turn", None

    def usage(self, chat_usage: Any) -> dict[str, int]:
        if not isinstance(chat_usage, dict):
            return {"input_tokens": self.estimated_input_tokens, "output_tokens": 0}
        return {
            "input_tokens": int(chat_usage.get("prompt_tokens") or 0),
            "output_tokens": int(chat_usage.get("completion_tokens") or 0),
        }

    def message(self, model: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.estimated_input_tokens, "output_tokens": 0},
        }

    async def answer(self, body: bytes, native: bool) -> bytes:
        if native:
            return body
        chat = engine_json(body, "chat completion")
        choice = (chat.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        content: list[dict[str, Any]] = []
        if message.get("content"):
            content.append({"type": "text", "text": message["content"]})
        calls = message.get("tool_calls") or []
        for call in calls:
            function = call.get("function") or {}
            content.append(tool_use(call.get("id"), function.get("name"), tool_input(function.get("arguments"))))
        answer = self.message(str(chat.get("model", "")), content)
        answer["stop_reason"], answer["stop_sequence"] = self.stop_reason(
            choice.get("finish_reason"), choice.get("stop_reason"), bool(calls)
        )
        answer["usage"] = self.usage(chat.get("usage"))
        return orjson.dumps(answer)

    def events(self, events: AsyncIterator[bytes], native: bool) -> AsyncIterator[bytes]:
        return native_events(events) if native else translated_events(self, events)


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments (JSON text) as the object Anthropic's `input` must be; {} if they are not one."""
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        log.warning("tool call arguments are not a JSON object; sending {} as its input: %r", str(arguments)[:200])
        return {}
    return parsed
