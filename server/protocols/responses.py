"""`POST /v1/responses` (OpenAI's Responses API) as an adapter: the request becomes a chat completion, the chat
answer becomes a `response` object (or its typed events, `responses_stream.py`).

Request: `instructions` -> a system message; `input` (text, or items: messages, `function_call`,
`function_call_output`) -> messages, with the items of `previous_response_id`'s conversation (this key's, from
the `ResponseStore`) in front; function `tools` and `tool_choice`; `max_output_tokens` -> `max_tokens`;
`text.format` -> `response_format` (so a JSON schema needs the `json_mode` capability, tools `tools`).
Answer: the message's text -> a `message` item with one `output_text` part, each tool call -> a
`function_call` item; `finish_reason: length` -> status `incomplete`. With `store` (the default) the request's
new items and the output are stored under the response's id before the answer is sent.
An engine that declares `native_apis: [responses]` gets the client's body (with the stored conversation
expanded into `input`) and its answer passes through; it is still stored. Knows nothing about routing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..errors import InvalidRequest
from ..intake import Endpoint, Incoming, incoming, parse_object
from .adapter import Adapter, ReceiveContext, Translation, engine_json, validated
from .response_store import ResponseStore
from .responses_models import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputContentPart,
    InputItem,
    InputMessageItem,
    ResponsesRequest,
)
from .responses_stream import native_events, translated_events, usage

log = logging.getLogger(__name__)
_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])
_ROLES = {"developer": "system"}  # chat templates of open models know system, user, assistant and tool
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


class Responses(Adapter):
    name = "responses"
    endpoint: ClassVar[Endpoint] = "chat"
    request_model: ClassVar[type[BaseModel]] = ResponsesRequest
    summary = "OpenAI Responses API, translated to chat completions; model 'auto' is routed"

    async def receive(self, raw: bytes, context: ReceiveContext) -> Incoming:
        payload = parse_object(raw)
        request = validated(ResponsesRequest, payload)
        history = await _history(request, context)
        if isinstance(request.input, str):
            new_items: list[Any] = [{"type": "message", "role": "user", "content": request.input}]
            items: list[Any] = [InputMessageItem(role="user", content=request.input)]
        else:
            new_items, items = payload["input"], list(request.input)
        translation = ResponsesAnswer(request, payload, history, new_items, context)
        return incoming(to_chat(request, _stored_items(history) + items), "chat", context.resolve_model, translation)


async def _history(request: ResponsesRequest, context: ReceiveContext) -> list[Any]:
    previous = request.previous_response_id
    if previous is None:
        return []
    found = None if context.responses is None else await context.responses.conversation(previous, context.key_id)
    if found is None:
        raise InvalidRequest(
            f"previous response '{previous}' is not stored for this key (unknown, expired, sent with store: "
            "false, or made with another key)",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return found


def _stored_items(history: list[Any]) -> list[Any]:
    try:
        return _ITEMS.validate_python(history)
    except ValidationError as exc:  # stored from a native engine's answer that is not the Responses API's shape
        raise InvalidRequest(f"the stored conversation cannot be read back ({exc.errors()[0]['msg']})") from None


# -- request: Responses -> chat ----------------------------------------------------------------------------


def to_chat(request: ResponsesRequest, items: list[Any]) -> dict[str, Any]:
    """The chat-completions body for `request`, whose whole conversation is `items`."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for item in items:
        if isinstance(item, InputMessageItem):
            messages.append({"role": _ROLES.get(item.role, item.role), "content": _content(item.content)})
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # parallel calls, or text then calls: one turn
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": _content(item.output)})
        else:
            log.debug("skipping a '%s' input item (engines cannot replay it)", item.type)
    chat: dict[str, Any] = {"model": request.model, "messages": messages, "stream": request.stream}
    if request.stream:
        chat["stream_options"] = {"include_usage": True}
    optional = {
        "max_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "user": request.user,
        "parallel_tool_calls": request.parallel_tool_calls,
        "response_format": _response_format(request),
        "route": request.route.model_dump(exclude_none=True) if request.route else None,
    }
    chat.update((k, v) for k, v in optional.items() if v is not None)
    tools = [
        {
            "type": "function",
            "function": {
                k: v
                for k, v in (
                    ("name", t.name),
                    ("description", t.description),
                    ("parameters", t.parameters or {"type": "object", "properties": {}}),
                    ("strict", t.strict),
                )
                if v is not None
            },
        }
        for t in request.tools or []
        if t.type == "function" and t.name
    ]
    dropped = [t.type for t in request.tools or [] if t.type != "function" or not t.name]
    if dropped:
        log.debug("dropping tools engines cannot run: %s", ", ".join(dropped))
    if tools:
        chat["tools"] = tools
        choice = request.tool_choice
        if isinstance(choice, str):
            chat["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
            chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    return chat


def _content(content: str | list[InputContentPart]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        text = part.text if part.text is not None else part.refusal
        if text is not None:
            parts.append({"type": "text", "text": text})
        elif part.type == "input_image" and part.image_url:
            image = {"url": part.image_url, **({"detail": part.detail} if part.detail else {})}
            parts.append({"type": "image_url", "image_url": image})
        else:
            log.debug("skipping a '%s' content part (not translated)", part.type)
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _response_format(request: ResponsesRequest) -> dict[str, Any] | None:
    form = request.text.format if request.text else None
    if form is None or form.type == "text":
        return None
    if form.type == "json_object":
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": form.name or "response", "schema": form.schema_ or {}}
    schema.update((k, v) for k, v in (("description", form.description), ("strict", form.strict)) if v is not None)
    return {"type": "json_schema", "json_schema": schema}


# -- answer: chat -> Responses -----------------------------------------------------------------------------


class ResponsesAnswer(Translation):
    """One request's answer as a `response`; also what the stream translator builds on."""

    native_api = "responses"
    native_path = "/responses"

    def __init__(
        self,
        request: ResponsesRequest,
        payload: dict[str, Any],
        history: list[Any],
        new_items: list[Any],
        context: ReceiveContext,
    ) -> None:
        self.request_id = context.request_id
        self.response_id = f"resp_{context.request_id}"
        self.created_at = int(time.time())
        self.payload = payload  # the client's body, for an engine that serves the Responses API itself
        self.history = history
        self.new_items = new_items
        self.store: ResponseStore | None = context.responses if request.store else None
        self.key_id = context.key_id
        self.previous_response_id = request.previous_response_id
        form = (
            request.text.format.model_dump(by_alias=True, exclude_none=True)
            if request.text and request.text.format
            else {"type": "text"}
        )
        self.echo: dict[str, Any] = {  # request fields every response object repeats
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "metadata": request.metadata or {},
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "store": request.store,
            "temperature": request.temperature if request.temperature is not None else 1.0,
            "text": {"format": form},
            "tool_choice": request.tool_choice or "auto",
            "tools": payload.get("tools") or [],
            "top_p": request.top_p if request.top_p is not None else 1.0,
            "truncation": "disabled",
            "user": request.user,
        }

    def client_body(self) -> object:
        return self.payload

    def native_body(self, upstream_model: str) -> bytes:
        body = {k: v for k, v in self.payload.items() if k not in ("route", "previous_response_id")}
        body["model"] = upstream_model
        body["input"] = self.history + self.new_items  # the conversation is ours to keep, not the engine's
        body["store"] = False
        return orjson.dumps(body)

    def response(
        self,
        model: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        finish_reason: str | None = None,
        status: str = "completed",
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The `response` object; `finish_reason` (the engine's) makes a completed one incomplete."""
        reason = _INCOMPLETE.get(finish_reason or "")
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": "incomplete" if reason and status == "completed" else status,
            "error": error,
            "incomplete_details": {"reason": reason} if reason else None,
            "model": model,
            "output": output,
            "usage": usage,
            **self.echo,
        }

    def item_id(self, prefix: str, n: int) -> str:
        return f"{prefix}_{self.request_id}{n:03d}"

    async def save(self, response_id: str, output: list[Any]) -> None:
        if self.store is not None:
            await self.store.save(response_id, self.key_id, self.previous_response_id, self.new_items + output)

    async def answer(self, body: bytes, native: bool) -> bytes:
        if native:
            data = engine_json(body, "response")
            await self.save(str(data.get("id") or self.response_id), list(data.get("output") or []))
            return body
        chat = engine_json(body, "chat completion")
        choice = (chat.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        output: list[dict[str, Any]] = []
        if message.get("content"):
            output.append(self.message_item(0, message["content"]))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            output.append(self.call_item(len(output), call.get("id"), function.get("name"), function.get("arguments")))
        response = self.response(
            str(chat.get("model", "")), output, usage(chat.get("usage")), choice.get("finish_reason")
        )
        await self.save(self.response_id, output)
        return orjson.dumps(response)

    def message_item(self, n: int, text: str, status: str = "completed") -> dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
        return {
            "id": self.item_id("msg", n),
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def call_item(
        self, n: int, call_id: str | None, name: str | None, arguments: str | None, status: str = "completed"
    ) -> dict[str, Any]:
        return {
            "id": self.item_id("fc", n),
            "type": "function_call",
            "status": status,
            "call_id": call_id or self.item_id("call", n),
            "name": name or "",
            "arguments": arguments or "",
        }

    def events(self, events: AsyncIterator[bytes], native: bool) -> AsyncIterator[bytes]:
        return native_events(self, events) if native else translated_events(self, events)
