"""Engine clients: one object per configured model that relays requests to its endpoint(s).

`EngineClient` owns the wire details of one dialect — URLs, auth, per-phase timeouts, error bodies, how load is
read — so `serving.py` never branches on engine quirks. Subclasses live one per file, each beside the engine kind
that uses it (`kind.py`). A client is given its endpoints: they come from the config or from whatever started the
engine. Nothing here chooses models or starts engines.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import orjson

from ..config import ModelConfig
from ..errors import EngineAnswerTooLarge, EngineError, EngineTimeout, EngineUnavailable

if TYPE_CHECKING:
    from ..classify import Classifier

log = logging.getLogger(__name__)
SSE_SEPARATOR = b"\n\n"
# An event ends with a blank line; lines end with LF, CRLF or CR (the SSE spec), so these end an event. The
# engines Triage knows send LF; sse-starlette and llama.cpp's server send CRLF.
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\n\r\n", b"\r\n\n", b"\r\r")
_END_REACH = 3  # the longest end less one: how far back a search must start so that an end split across reads is seen


@dataclass(slots=True)
class EngineStats:
    running: int
    waiting: int
    kv_cache_usage: float  # [0, 1]
    kv_cache_tokens: int = 0  # KV-cache capacity of one engine core, in tokens; 0: not published
    generation_tokens: float = 0.0  # vllm:generation_tokens_total, a counter (tokens since the engine started)


class UpstreamStream:
    """An open streamed answer, yielding whole SSE events (one or more per yield, never a partial one).

    Bytes are buffered only until the last complete event in them; each read is searched once (plus a few bytes
    before it, for an event end split across reads), so the cost is linear in the stream's length. An event
    longer than `max_event_bytes` ends the stream with `EngineAnswerTooLarge`."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        model: str,
        between_tokens_s: float,
        max_event_bytes: int = 4 * 1024 * 1024,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.response = response
        self.model = model
        self.between_tokens_s = between_tokens_s
        self.max_event_bytes = max_event_bytes
        self._on_close = on_close  # called once, at close (the client's per-endpoint in-flight count)
        self._buffer = bytearray()

    async def next_events(self) -> bytes:
        """Bytes of the next complete events ('' at the end); raises EngineTimeout on a long silence."""
        content = self.response.content
        buffer = self._buffer
        while True:
            try:
                chunk = await content.readany()
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                raise EngineUnavailable(f"engine for '{self.model}' dropped the stream: {exc}") from None
            except TimeoutError:
                raise EngineTimeout(
                    f"engine for '{self.model}' sent nothing for {self.between_tokens_s:g} s mid-stream"
                ) from None
            if not chunk:
                rest = bytes(buffer)
                buffer.clear()
                if rest.strip():  # an unterminated last event: pass it on rather than lose it
                    return rest + SSE_SEPARATOR
                return b""
            searched_from = max(0, len(buffer) - _END_REACH)
            buffer += chunk
            cut = _last_event_end(buffer, searched_from)
            if cut > 0:
                ready = bytes(buffer[:cut])
                del buffer[:cut]
                if len(buffer) > self.max_event_bytes:
                    raise self._too_large()
                return ready
            if len(buffer) > self.max_event_bytes:
                raise self._too_large()

    def _too_large(self) -> EngineAnswerTooLarge:
        return EngineAnswerTooLarge(
            f"engine for '{self.model}' sent an event over {self.max_event_bytes} bytes "
            "(models[].limits.max_event_bytes)"
        )

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while events := await self.next_events():
            yield events

    def close(self) -> None:
        # close(), not release(): dropping the connection is how vLLM learns to abort the request.
        self.response.close()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


def _last_event_end(buffer: bytearray, start: int) -> int:
    """The index just past the last event end in `buffer[start:]`, or -1."""
    best = -1
    for end in _EVENT_ENDS:
        at = buffer.rfind(end, start)
        if at >= 0:
            best = max(best, at + len(end))
    return best


class EngineClient(ABC):
    """Relays OpenAI requests for one model to the least busy of its endpoints."""

    def __init__(self, model: ModelConfig, endpoints: list[str], session: aiohttp.ClientSession) -> None:
        """`endpoints`: the engine's OpenAI base URLs, e.g. ["http://127.0.0.1:8001/v1"]; at least one."""
        if not endpoints:
            raise ValueError(f"model '{model.name}' has no endpoint to send requests to")
        self.model = model
        self.endpoints = list(endpoints)
        self.session = session
        self.in_flight = dict.fromkeys(self.endpoints, 0)
        timeouts = model.timeouts
        self.stream_timeout = aiohttp.ClientTimeout(
            total=timeouts.total_s,
            connect=timeouts.connect_s,
            sock_connect=timeouts.connect_s,
            sock_read=timeouts.between_tokens_s,
        )
        self.unary_timeout = aiohttp.ClientTimeout(
            total=timeouts.total_s, connect=timeouts.connect_s, sock_connect=timeouts.connect_s
        )
        self.headers = {"content-type": "application/json"}
        if model.api_key:
            self.headers["authorization"] = f"Bearer {model.api_key}"

    def _pick_endpoint(self) -> str:
        return min(self.in_flight, key=self.in_flight.__getitem__)

    async def complete(self, path: str, body: bytes) -> bytes:
        """Non-streamed request: the engine's whole JSON answer."""
        endpoint = self._pick_endpoint()
        self.in_flight[endpoint] += 1
        try:
            async with self.session.post(
                endpoint + path, data=body, headers=self.headers, timeout=self.unary_timeout
            ) as response:
                payload = await self._read_capped(response)
                if response.status >= 400:
                    raise self._engine_error(response.status, payload)
                return payload
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise EngineUnavailable(f"engine for '{self.model.name}' at {endpoint} is unreachable: {exc}") from None
        except TimeoutError:
            raise EngineTimeout(
                f"engine for '{self.model.name}' did not answer within {self.model.timeouts.total_s:g} s"
            ) from None
        finally:
            self.in_flight[endpoint] -= 1

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, or EngineAnswerTooLarge once it passes `limits.max_body_bytes` (not read further)."""
        limit = self.model.limits.max_body_bytes
        if response.content_length is not None and response.content_length > limit:
            raise self._body_too_large(limit)
        parts: list[bytes] = []
        size = 0
        while chunk := await response.content.readany():
            size += len(chunk)
            if size > limit:
                raise self._body_too_large(limit)
            parts.append(chunk)
        return b"".join(parts)

    def _body_too_large(self, limit: int) -> EngineAnswerTooLarge:
        return EngineAnswerTooLarge(
            f"engine for '{self.model.name}' answered with more than {limit} bytes (models[].limits.max_body_bytes)"
        )

    async def open_stream(self, path: str, body: bytes) -> tuple[UpstreamStream, bytes]:
        """Streamed request: the open stream and its first events, read within the first-token timeout. The
        endpoint counts the stream in flight until it is closed, so concurrent streams spread over endpoints."""
        endpoint = self._pick_endpoint()
        self.in_flight[endpoint] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight[endpoint] -= 1

        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(self.model.timeouts.first_token_s):
                response = await self.session.post(
                    endpoint + path, data=body, headers=self.headers, timeout=self.stream_timeout
                )
                if response.status >= 400:
                    payload = await self._read_capped(response)
                    response.release()
                    raise self._engine_error(response.status, payload)
                limits, timeouts = self.model.limits, self.model.timeouts
                stream = UpstreamStream(
                    response, self.model.name, timeouts.between_tokens_s, limits.max_event_bytes, release
                )
                first = await stream.next_events()
                return stream, first
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            if response is not None:
                response.close()
            release()
            raise EngineUnavailable(f"engine for '{self.model.name}' at {endpoint} is unreachable: {exc}") from None
        except TimeoutError:
            if response is not None:
                response.close()
            release()
            raise EngineTimeout(
                f"engine for '{self.model.name}' sent no first token within {self.model.timeouts.first_token_s:g} s"
            ) from None
        except BaseException:
            if response is not None:
                response.close()
            release()
            raise

    def _engine_error(self, status: int, payload: bytes) -> EngineError:
        message, etype, param, code = f"engine answered HTTP {status}", None, None, None
        try:
            error = orjson.loads(payload)
            detail = error.get("error", error) if isinstance(error, dict) else {}
            if isinstance(detail, dict):
                message = str(detail.get("message") or message)
                etype, param = detail.get("type"), detail.get("param")
                code = str(detail["code"]) if detail.get("code") is not None else None
        except orjson.JSONDecodeError:
            if payload:
                message = f"{message}: {payload[:200].decode(errors='replace')}"
        return EngineError(
            f"{self.model.name}: {message}",
            status=status,
            param=param,
            code=code,
            etype=etype if isinstance(etype, str) else None,
        )

    def use_classifier(self, classifier: Classifier) -> None:
        """Called once the router's classifier runs: in-process kinds answer with it; engines elsewhere ignore it."""
        return None

    @abstractmethod
    async def health(self) -> bool:
        """Whether some endpoint answers its health check now."""

    async def stats(self) -> EngineStats | None:
        """Queue gauges read from the engine, or None where the engine kind exposes none."""
        return None
