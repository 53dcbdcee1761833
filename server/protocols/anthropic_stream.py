"""Anthropic's Messages stream events from an engine's chat-completions stream, event by event.

Order: `message_start` (usage: the router's input estimate), `ping`; per content block `content_block_start`,
`content_block_delta` ... (`text_delta` for text, `input_json_delta` for a tool call's arguments as they come),
`content_block_stop`; then `message_delta` (stop_reason, stop_sequence, usage as the engine counted it) and
`message_stop`. An error inside the stream (the engine's, or the relay's when the engine broke) becomes an
`error` event, typed as Anthropic types errors (`overloaded_error`, `timeout_error`, `api_error`, ...).
A native stream (the engine serves the Messages API) passes through, its relay errors translated the same way.
Knows nothing about routing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import anthropic_error, status_of
from .adapter import ChunkWalker, native_stream, sse, translated_stream

if TYPE_CHECKING:
    from .anthropic import MessagesAnswer


def translated_events(answer: MessagesAnswer, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    return translated_stream(_Events(answer), events)


def error_event(error: dict[str, Any]) -> bytes:
    """An OpenAI-shaped error object as Anthropic's `error` event."""
    _, body = anthropic_error(status_of(str(error.get("type", ""))), str(error.get("message", "")))
    return b"event: error\ndata: " + body + b"\n\n"


class _Events(ChunkWalker):
    """The state of one translated stream: the content blocks so far and the one still open."""

    def __init__(self, answer: MessagesAnswer) -> None:
        self.answer = answer
        self.model = ""
        self.started = False
        self.blocks = 0  # content blocks started so far
        self.open: int | None = None  # index of the block receiving deltas
        self.open_is_text = False
        self.calls: dict[int, int] = {}  # the chat stream's tool-call index -> its block index
        self.finish_reason: str | None = None
        self.matched: Any = None  # vLLM's `stop_reason`: the stop string met, if any
        self.usage: Any = None

    def start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        message = self.answer.message(self.model, [])
        return sse("message_start", {"type": "message_start", "message": message}) + sse("ping", {"type": "ping"})

    def keep_usage(self, usage: dict[str, Any]) -> None:
        self.usage = usage

    def finished(self, choice: dict[str, Any]) -> None:
        self.finish_reason, self.matched = choice["finish_reason"], choice.get("stop_reason")

    def begin(self, block: dict[str, Any], text: bool) -> bytes:
        out = self.close()
        self.open, self.open_is_text = self.blocks, text
        self.blocks += 1
        return out + sse(
            "content_block_start", {"type": "content_block_start", "index": self.open, "content_block": block}
        )

    def delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def text(self, text: str) -> bytes:
        out = b""
        if self.open is None or not self.open_is_text:
            out = self.begin({"type": "text", "text": ""}, True)
        return out + self.delta(self.blocks - 1, {"type": "text_delta", "text": text})

    def call(self, call: dict[str, Any]) -> bytes:
        out = b""
        function = call.get("function") or {}
        index = self.calls.get(call.get("index", 0))
        if index is None:
            out += self.begin(tool_use(call.get("id"), function.get("name"), {}), False)
            index = self.calls[call.get("index", 0)] = self.blocks - 1
        if function.get("arguments"):
            out += self.delta(index, {"type": "input_json_delta", "partial_json": function["arguments"]})
        return out

    def close(self) -> bytes:
        index, self.open = self.open, None
        return b"" if index is None else sse("content_block_stop", {"type": "content_block_stop", "index": index})

    def failed(self, error: dict[str, Any]) -> bytes:
        return self.start() + error_event(error)

    async def finish(self) -> bytes:
        return self.start() + self.close() + self.stop()

    def stop(self) -> bytes:
        stop_reason, stop_sequence = self.answer.stop_reason(self.finish_reason, self.matched, bool(self.calls))
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": self.answer.usage(self.usage),
        }
        return sse("message_delta", delta) + sse("message_stop", {"type": "message_stop"})


def tool_use(call_id: str | None, name: str | None, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id or "toolu_triage", "name": name or "", "input": arguments}


def native_events(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """An engine's own Messages stream, passed through; relay errors become Anthropic's `error` event."""
    return native_stream(events, error_event)
