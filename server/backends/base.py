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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import orjson

from ..config import ModelConfig
from ..errors import EngineError, EngineTimeout, EngineUnavailable

if TYPE_CHECKING:
    from ..classify import Classifier

log = logging.getLogger(__name__)
SSE_SEPARATOR = b"\n\n"


@dataclass(slots=True)
class EngineStats:
    running: int
    waiting: int
    kv_cache_usage: float  # [0, 1]


class UpstreamStream:
    """An open streamed answer, yielding whole SSE events (one or more per yield, never a partial one)."""

    def __init__(self, response: aiohttp.ClientResponse, model: str, between_tokens_s: float) -> None:
        self.response = response
        self.model = model
        self.between_tokens_s = between_tokens_s
        self._buffer = b""

    async def next_events(self) -> bytes:
        """Bytes of the next complete events ('' at the end); raises EngineTimeout on a long silence."""
        content = self.response.content
        while True:
            cut = self._buffer.rfind(SSE_SEPARATOR)
            if cut >= 0:
                ready, self._buffer = self._buffer[: cut + 2], self._buffer[cut + 2 :]
                return ready
            try:
                chunk = await content.readany()
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                raise EngineUnavailable(f"engine for '{self.model}' dropped the stream: {exc}") from None
            except TimeoutError:
                raise EngineTimeout(
                    f"engine for '{self.model}' sent nothing for {self.between_tokens_s:g} s mid-stream"
                ) from None
            if not chunk:
                rest, self._buffer = self._buffer, b""
                if rest.strip():  # an unterminated last event: pass it on rather than lose it
                    return rest + SSE_SEPARATOR
                return b""
            self._buffer += chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while events := await self.next_events():
            yield events

    def close(self) -> None:
        # close(), not release(): dropping the connection is how vLLM learns to abort the request.
        self.response.close()


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
                payload = await response.read()
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

    async def open_stream(self, path: str, body: bytes) -> tuple[UpstreamStream, bytes]:
        """Streamed request: the open stream and its first events, read within the first-token timeout."""
        endpoint = self._pick_endpoint()
        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(self.model.timeouts.first_token_s):
                response = await self.session.post(
                    endpoint + path, data=body, headers=self.headers, timeout=self.stream_timeout
                )
                if response.status >= 400:
                    payload = await response.read()
                    response.release()
                    raise self._engine_error(response.status, payload)
                stream = UpstreamStream(response, self.model.name, self.model.timeouts.between_tokens_s)
                first = await stream.next_events()
                return stream, first
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            if response is not None:
                response.close()
            raise EngineUnavailable(f"engine for '{self.model.name}' at {endpoint} is unreachable: {exc}") from None
        except TimeoutError:
            if response is not None:
                response.close()
            raise EngineTimeout(
                f"engine for '{self.model.name}' sent no first token within {self.model.timeouts.first_token_s:g} s"
            ) from None
        except BaseException:
            if response is not None:
                response.close()
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
