"""What an engine client holds of an answer, against real HTTP engines on 127.0.0.1: CRLF-framed streams relayed
event by event, event and body sizes capped, and concurrent streams spread over a model's endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from server.backends import build_session
from server.backends.base import EngineClient, UpstreamStream
from server.backends.vllm import VllmClient
from server.config import ModelConfig
from server.errors import EngineAnswerTooLarge
from tests.server.conftest import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def engines(handler: Handler, count: int = 1) -> AsyncIterator[list[str]]:
    """`count` HTTP engines on 127.0.0.1 answering every POST with `handler`; yields their base URLs."""
    runners, urls = [], []
    for _ in range(count):
        app = web.Application()
        app.router.add_post("/v1/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}/v1")
    try:
        yield urls
    finally:
        for runner in runners:
            await runner.cleanup()


@asynccontextmanager
async def client_for(urls: list[str], **model: Any) -> AsyncIterator[EngineClient]:
    config = ModelConfig.model_validate({"name": "m", "endpoints": urls, **model})
    session = build_session()
    try:
        yield VllmClient(config, urls, session)
    finally:
        await session.close()


async def test_a_crlf_framed_stream_is_relayed_event_by_event() -> None:
    release = asyncio.Event()

    async def crlf(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"n":1}\r\n\r\ndata: {"n":2}\r\n\r\ndata: {"n":')
        await asyncio.wait_for(release.wait(), 10)  # the rest only after the client saw the first two events
        await response.write(b"3}\r\n\r\ndata: [DONE]\r\n\r\n")
        return response

    async with engines(crlf) as urls, client_for(urls) as client:
        stream, first = await asyncio.wait_for(client.open_stream("/chat/completions", b"{}"), 5)
        assert first == b'data: {"n":1}\r\n\r\ndata: {"n":2}\r\n\r\n'
        release.set()
        rest = [events async for events in stream]
        stream.close()
    assert b"".join(rest) == b'data: {"n":3}\r\n\r\ndata: [DONE]\r\n\r\n'


class _Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.read = 0

    async def readany(self) -> bytes:
        self.read += 1
        return self.chunks.pop(0) if self.chunks else b""


class _Response:
    def __init__(self, chunks: list[bytes]) -> None:
        self.content = _Content(chunks)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("end", [b"\n\n", b"\r\n\r\n", b"\r\r", b"\n\r\n"])
async def test_every_blank_line_ends_an_event_even_split_across_reads(end: bytes) -> None:
    wire = b"data: a" + end + b"data: b" + end
    for cut in range(1, len(wire)):
        stream = UpstreamStream(_Response([wire[:cut], wire[cut:]]), "m", 1.0)  # type: ignore[arg-type]
        yielded = [events async for events in stream]
        assert b"".join(yielded) == wire and all(y.endswith(end[-1:]) for y in yielded), (cut, yielded)


async def test_an_event_over_the_limit_ends_the_stream_without_reading_the_rest() -> None:
    chunks = [b"data: " + b"x" * 65536] * 2400  # 150 MB with no event end
    content = _Response(chunks)
    stream = UpstreamStream(content, "m", 1.0, max_event_bytes=1024 * 1024)  # type: ignore[arg-type]
    with pytest.raises(EngineAnswerTooLarge, match="max_event_bytes"):
        await stream.next_events()
    assert content.content.read <= 17  # stopped just past 1 MB


async def test_a_body_over_the_limit_is_refused_without_reading_the_rest() -> None:
    sent = []

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "application/json"})
        await response.prepare(request)
        for _ in range(200):  # 12.8 MB at most
            await response.write(b" " * 65536)
            sent.append(1)
        return response

    async with engines(huge) as urls, client_for(urls, limits={"max_body_bytes": 1024 * 1024}) as client:
        with pytest.raises(EngineAnswerTooLarge, match="max_body_bytes"):
            await client.complete("/chat/completions", b"{}")
        assert client.in_flight == {urls[0]: 0}


async def test_concurrent_streams_spread_over_the_endpoints_until_they_close() -> None:
    hold = asyncio.Event()
    served: list[str] = []

    async def slow(request: web.Request) -> web.StreamResponse:
        served.append(request.host)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: {}\n\n")
        await asyncio.wait_for(hold.wait(), 10)
        await response.write(b"data: [DONE]\n\n")
        return response

    async with engines(slow, count=2) as urls, client_for(urls) as client:
        streams = [(await client.open_stream("/chat/completions", b"{}"))[0] for _ in range(4)]
        assert sorted(client.in_flight.values()) == [2, 2]  # each open stream counted on its endpoint
        assert len(set(served)) == 2
        hold.set()
        for stream in streams:
            async for _ in stream:
                pass
            stream.close()
            stream.close()  # idempotent: counted down once
        assert client.in_flight == dict.fromkeys(urls, 0)
