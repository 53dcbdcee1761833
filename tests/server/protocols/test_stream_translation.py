"""The stream translations read SSE however the engine's bytes are cut, and end on the engine's error events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from server.protocols import Adapter, ReceiveContext, Translation
from server.protocols.anthropic import Messages
from server.protocols.responses import Responses

from .scripted_engine import Reply, chat_stream

CONTEXT = ReceiveContext("r1", None, lambda model: model)
BODIES: list[tuple[Adapter, dict[str, Any]]] = [
    (Messages(), {"model": "m", "max_tokens": 32, "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
    (Responses(), {"model": "m", "stream": True, "input": "hi"}),
]


async def _pieces(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def translation(adapter: Adapter, body: dict[str, Any]) -> Translation:
    incoming = await adapter.receive(orjson.dumps(body), CONTEXT)
    assert incoming.translation is not None
    return incoming.translation


async def translate(answer: Translation, chunks: list[bytes]) -> bytes:
    return b"".join([out async for out in answer.events(_pieces(chunks), native=False)])


@pytest.mark.parametrize(("adapter", "body"), BODIES, ids=["messages", "responses"])
async def test_the_same_events_however_the_bytes_are_cut(adapter: Adapter, body: dict[str, Any]) -> None:
    reply = Reply(text="Hi there, friend.", tool_calls=[("lookup", '{"query": "weather"}')])
    stream = b"".join(chat_stream("m", reply, include_usage=True))
    answer = await translation(adapter, body)
    whole = await translate(answer, [stream])
    assert whole.count(b"event: ") > 15
    for size in (1, 7, 64):
        assert await translate(answer, [stream[i : i + size] for i in range(0, len(stream), size)]) == whole
    crlf = stream.replace(b"\n", b"\r\n")  # SSE allows CRLF line ends
    assert await translate(answer, [crlf]) == whole


@pytest.mark.parametrize(("adapter", "body"), BODIES, ids=["messages", "responses"])
async def test_an_engine_error_event_ends_the_stream_in_the_clients_protocol(
    adapter: Adapter, body: dict[str, Any]
) -> None:
    stream = b"".join(chat_stream("m", Reply(text="partial answer", break_after_chunks=1), include_usage=True))
    events = await translate(await translation(adapter, body), [stream])
    names = [line[7:] for line in events.split(b"\n") if line.startswith(b"event: ")]
    if isinstance(adapter, Messages):
        assert names[-1] == b"error" and b'"overloaded_error"' in events
    else:
        assert names[-2:] == [b"error", b"response.failed"] and b"engine fell over" in events
