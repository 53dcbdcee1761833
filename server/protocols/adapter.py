"""What a protocol adapter is: a client's protocol on one route, translated to and from chat completions.

An `Adapter` receives a body in its client's protocol and returns an `Incoming` in the internal chat (or
completions) form, so that everything after receive — privacy scan, classification, capabilities, budgets, the
policy, the relay — sees one kind of request. The `Translation` it attaches carries the answer back: a whole
chat completion (JSON) or its SSE events, event by event, become the client's protocol. An engine that serves
the client's protocol itself (`ModelConfig.native_apis`) gets the client's own body instead, and its answer
passes through.

Also here: the SSE reading and writing every streamed translation uses. Knows nothing about routing or HTTP
framing; the front door sends what the translation yields.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from ..errors import Dialect, EngineError
from ..intake import Endpoint, Incoming, invalid_request

if TYPE_CHECKING:
    from .response_store import ResponseStore

log = logging.getLogger(__name__)
NativeApi = str  # a value of ModelConfig.native_apis: "responses" | "messages"
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ReceiveContext:
    """What an adapter may consult while it receives one request."""

    request_id: str  # ours, minted by the router: translated answers take their ids from it
    key_id: str | None  # the caller's API key (None in open mode): stored responses belong to it
    resolve_model: Callable[[str], str]  # model aliases: the name a client sent -> a model name or "auto"
    responses: ResponseStore | None = None  # stored Responses-API answers, for previous_response_id


class Adapter(ABC):
    """One client protocol on one route."""

    name: ClassVar[str]  # the metrics label and `Relay.endpoint`: chat, completions, responses, messages
    endpoint: ClassVar[Endpoint]  # the internal form engines are sent
    dialect: ClassVar[Dialect] = "openai"  # the error shape of this route
    request_model: ClassVar[type[BaseModel]]  # the body, for the OpenAPI schema
    summary: ClassVar[str]

    @abstractmethod
    async def receive(self, raw: bytes, context: ReceiveContext) -> Incoming:
        """Parse, validate and translate one body; `InvalidRequest` (400) names the first bad field."""


class Translation(ABC):
    """How one request's answer goes back to its client, from the engine's chat completion or natively."""

    native_api: ClassVar[NativeApi | None] = None  # engines that declare it get `native_body()` untranslated
    native_path: ClassVar[str] = ""  # its path under the engine's base URL

    def native_body(self, upstream_model: str) -> bytes:
        raise NotImplementedError(f"{type(self).__name__} has no native form")

    def client_body(self) -> object:
        """The body as the client sent it (what `native_body` sends on), for the privacy guard."""
        return None

    @abstractmethod
    async def answer(self, body: bytes, native: bool) -> bytes:
        """The client's whole answer from the engine's (`native`: already in the client's protocol)."""

    @abstractmethod
    def events(self, events: AsyncIterator[bytes], native: bool) -> AsyncIterator[bytes]:
        """The client's stream from the engine's SSE bytes, yielded as they come."""


def validated(model: type[M], payload: dict[str, Any]) -> M:
    try:
        request = model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request(exc) from None
    if request.model_extra:
        log.debug("%s: fields ignored (not translated): %s", model.__name__, ", ".join(request.model_extra))
    return request


def engine_json(body: bytes, what: str) -> dict[str, Any]:
    """An engine's JSON answer; a malformed one is the engine's failure (502), so the relay may fall back."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise EngineError(f"the engine's answer is not a JSON {what}: {body[:200]!r}", status=502)
    return data


# -- SSE ---------------------------------------------------------------------------------------------------


class SseReader:
    """Splits SSE bytes, which may arrive in any pieces, into (event name, data) pairs."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[tuple[bytes | None, bytes]]:
        buffer = self._buffer + chunk.replace(b"\r\n", b"\n")
        *complete, self._buffer = buffer.split(b"\n\n")
        for block in complete:
            parsed = _event(block)
            if parsed is not None:
                yield parsed

    def rest(self) -> Iterator[tuple[bytes | None, bytes]]:
        """The last event of a stream that ended without a blank line."""
        block, self._buffer = self._buffer, b""
        parsed = _event(block)
        if parsed is not None:
            yield parsed


def _event(block: bytes) -> tuple[bytes | None, bytes] | None:
    name: bytes | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return (name, b"\n".join(data)) if data else None


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One named SSE event."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def chat_chunks(events: AsyncIterator[bytes]) -> AsyncGenerator[dict[str, Any]]:
    """The JSON objects of a chat-completions stream, until `[DONE]`; an error event is yielded as
    `{"error": {...}}` like any other object (the caller turns it into its protocol's error event). `events` is
    left open at `[DONE]`: the caller sends its last events first, then `drain`s it."""
    reader = SseReader()
    async for chunk in events:
        for _, data in reader.feed(chunk):
            if data == b"[DONE]":
                return
            parsed = json_object(data)
            if parsed is not None:
                yield parsed
    for _, data in reader.rest():
        parsed = json_object(data) if data != b"[DONE]" else None
        if parsed is not None:
            yield parsed


async def drain(events: AsyncIterator[bytes]) -> None:
    """Read the engine's stream to its end (it closes right after `[DONE]`), so that the relay books the answer
    as complete rather than abandoned."""
    async for _ in events:
        pass


def json_object(data: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        log.warning("skipping an engine stream event that is not JSON: %r", data[:200])
        return None
    return parsed if isinstance(parsed, dict) else None


class StreamState(Protocol):
    """One translated stream's state: turns chat chunks into the client's events."""

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        """The client's events for one chat chunk (b"" for none)."""

    def failed(self, error: dict[str, Any]) -> bytes:
        """The client's last events when the stream ends in an (OpenAI-shaped) error."""

    async def finish(self) -> bytes:
        """The client's last events after `[DONE]`."""


class ChunkWalker:
    """The part of a translated stream that reads chat chunks, the same for every client protocol: the first chunk
    names the model and opens the client's stream, usage is kept, and choice 0's text, tool-call deltas and finish
    go to the subclass's events. Other choices are dropped: `n > 1` has no form in the Responses or Messages
    streams, and the first choice is the answer."""

    model: str
    started: bool
    finish_reason: str | None

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        if not self.started:
            self.model = str(chunk.get("model", ""))
        out = [self.start()]
        if chunk.get("usage"):
            self.keep_usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out.append(self.text(delta["content"]))
            for call in delta.get("tool_calls") or []:
                out.append(self.call(call))
            if choice.get("finish_reason"):
                self.finished(choice)
                out.append(self.close())
        return b"".join(out)

    def finished(self, choice: dict[str, Any]) -> None:
        """Remember how the answer ended (a choice with `finish_reason`)."""
        self.finish_reason = choice["finish_reason"]

    def start(self) -> bytes:
        """The client's opening events, once (b"" after)."""
        raise NotImplementedError

    def keep_usage(self, usage: dict[str, Any]) -> None:
        raise NotImplementedError

    def text(self, text: str) -> bytes:
        raise NotImplementedError

    def call(self, call: dict[str, Any]) -> bytes:
        """Events for one tool-call delta of the chat stream."""
        raise NotImplementedError

    def close(self) -> bytes:
        """Events that close the open block or item, if any."""
        raise NotImplementedError


async def translated_stream(state: StreamState, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The client's stream from an engine's chat-completions stream, event by event."""
    async with aclosing(chat_chunks(events)) as chunks:
        async for chunk in chunks:
            error = stream_error(chunk)
            if error is not None:
                yield state.failed(error)
                break
            out = state.chunk(chunk)
            if out:
                yield out
        else:
            yield await state.finish()
    await drain(events)


async def native_stream(
    events: AsyncIterator[bytes],
    failed: Callable[[dict[str, Any]], bytes],
    seen: Callable[[bytes | None, dict[str, Any]], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """An engine's own stream in the client's protocol, passed through event by event (`seen` gets each event
    first); a chat-shaped error event from the relay (the engine broke mid-stream) becomes `failed(error)`."""
    reader = SseReader()
    async for chunk in events:
        out: list[bytes] = []
        for name, data in reader.feed(chunk):
            if data == b"[DONE]":
                continue
            parsed = json_object(data) or {}
            error = stream_error(parsed) if name is None else None
            if error is not None:
                yield b"".join(out) + failed(error)
                await drain(events)
                return
            if seen is not None:
                await seen(name, parsed)
            out.append((b"event: " + name + b"\n" if name else b"") + b"data: " + data + b"\n\n")
        if out:
            yield b"".join(out)


def stream_error(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """The `error` object of an OpenAI-shaped error event, or None for an ordinary chunk."""
    error = chunk.get("error")
    if error is None:
        return None
    return error if isinstance(error, dict) else {"message": str(error), "type": "engine_error"}
