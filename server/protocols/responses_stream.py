"""The Responses API's typed stream events from an engine's chat-completions stream, event by event.

Order, each event with its `sequence_number` (from 0): `response.created`, `response.in_progress`; per output
item `response.output_item.added`, then for a message `response.content_part.added`, `response.output_text.delta`
..., `response.output_text.done`, `response.content_part.done`, and for a tool call
`response.function_call_arguments.delta` ..., `response.function_call_arguments.done`; `response.output_item.done`;
finally `response.completed` (the whole response, with usage), sent after the response is stored. An error
inside the stream (the engine's, or the relay's when the engine broke) becomes `error` then `response.failed`.
A native stream (the engine serves the Responses API) passes through; it is stored at its `response.completed`.
Knows nothing about routing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .adapter import ChunkWalker, native_stream, sse, translated_stream

if TYPE_CHECKING:
    from .responses import ResponsesAnswer


def translated_events(answer: ResponsesAnswer, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    return translated_stream(_Events(answer), events)


class _Events(ChunkWalker):
    """The state of one translated stream: the output items so far and the one still open."""

    def __init__(self, answer: ResponsesAnswer) -> None:
        self.answer = answer
        self.sequence = 0
        self.model = ""
        self.started = False
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item receiving deltas, also in `output`
        self.calls: dict[int, dict[str, Any]] = {}  # the chat stream's tool-call index -> its item
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(kind, data)

    def start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        response = self.answer.response(self.model, [], status="in_progress")
        return self.event("response.created", response=response) + self.event("response.in_progress", response=response)

    def keep_usage(self, usage_: dict[str, Any]) -> None:
        self.usage = usage(usage_)

    def text(self, text: str) -> bytes:
        out = b""
        item = self.open
        if item is None or item["type"] != "message":
            out += self.close()
            index = len(self.output)
            item = self.open = self.answer.message_item(index, "", status="in_progress")
            item["text"] = ""  # accumulated here, moved into its part at close
            self.output.append(item)
            added = {k: v for k, v in item.items() if k != "text"}
            out += self.event("response.output_item.added", output_index=index, item=added)
            out += self.event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            )
        item["text"] += text
        return out + self.event(
            "response.output_text.delta",
            item_id=item["id"],
            output_index=len(self.output) - 1,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def call(self, call: dict[str, Any]) -> bytes:
        out = b""
        function = call.get("function") or {}
        item = self.calls.get(call.get("index", 0))
        if item is None:
            out += self.close()
            index = len(self.output)
            item = self.open = self.answer.call_item(index, call.get("id"), function.get("name"), "", "in_progress")
            self.calls[call.get("index", 0)] = item
            self.output.append(item)
            out += self.event("response.output_item.added", output_index=index, item=dict(item))
        arguments = function.get("arguments")
        if arguments:
            item["arguments"] += arguments
            out += self.event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=self.output.index(item),
                delta=arguments,
            )
        return out

    def close(self) -> bytes:
        """The `...done` events of the open item, if any."""
        item, self.open = self.open, None
        if item is None:
            return b""
        index = self.output.index(item)
        item["status"] = "completed"
        out = b""
        if item["type"] == "message":
            text = item.pop("text")
            part = {"type": "output_text", "text": text, "annotations": []}
            item["content"] = [part]
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out += self.event("response.output_text.done", **where, text=text, logprobs=[])
            out += self.event("response.content_part.done", **where, part=part)
        else:
            out += self.event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
        return out + self.event("response.output_item.done", output_index=index, item=item)

    async def finish(self) -> bytes:
        """The open item's `...done` events, then `response.completed` once the response is stored."""
        out = self.start() + self.close()
        await self.answer.save(self.answer.response_id, self.output)
        response = self.answer.response(self.model, self.output, self.usage, self.finish_reason)
        return out + self.event("response.completed", response=response)

    def failed(self, error: dict[str, Any]) -> bytes:
        out = self.start()
        if self.open is not None:
            self.open.pop("text", None)
            self.open["status"] = "incomplete"
            self.open = None
        code, message = error.get("code") or error.get("type") or "server_error", str(error.get("message", ""))
        out += self.event("error", code=code, message=message, param=error.get("param"))
        failed = self.answer.response(
            self.model, self.output, self.usage, status="failed", error={"code": code, "message": message}
        )
        return out + self.event("response.failed", response=failed)


def native_events(answer: ResponsesAnswer, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """An engine's own Responses stream, passed through; stored at its `response.completed`."""
    state = _Events(answer)
    state.started = True  # the engine sent its own response.created

    async def seen(name: bytes | None, event: dict[str, Any]) -> None:
        if isinstance(event.get("sequence_number"), int):
            state.sequence = event["sequence_number"] + 1  # an error event of ours continues the numbering
        if name == b"response.completed":
            response = event.get("response") or {}
            await answer.save(str(response.get("id") or answer.response_id), list(response.get("output") or []))

    return native_stream(events, state.failed, seen)


def usage(chat_usage: Any) -> dict[str, Any] | None:
    """A chat `usage` object as the Responses API counts it."""
    if not isinstance(chat_usage, dict):
        return None
    prompt, completion = int(chat_usage.get("prompt_tokens") or 0), int(chat_usage.get("completion_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }
