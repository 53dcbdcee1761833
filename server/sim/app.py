"""The HTTP face of one simulated engine: a raw ASGI app with vLLM's OpenAI routes, `/metrics` and `/sim/*`.

Raw ASGI rather than Starlette because hundreds of concurrent streams share two CPU cores: a token costs one
future wake-up, two byte concatenations and one `send`. Each generation request gets one watcher task that
awaits `receive()`; when the server reports `http.disconnect` it cancels the sequence, which leaves the
engine's running set at once (queued requests too). Knows nothing about sockets or servers (`runner.py`)
nor about scheduling (`engine.py`).

Routes: POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings (`task: embed`), GET /v1/models,
GET /health, GET /version, GET /metrics, GET /sim/state, POST /sim/faults (a FaultSpec JSON; replaces the
engine's faults).
Faults touch only the generation and embedding routes, so health checks and scrapes still answer. A request
with `n` choices runs `n` sequences in the engine (no prefix sharing, which makes `n > 1` a little slow).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from pydantic import ValidationError

from server.sim.embed import embeddings_body, parse_embed_request
from server.sim.engine import EngineStoppedError, RequestTooLongError, SimEngine
from server.sim.framing import ReplyFramer
from server.sim.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from server.sim.metrics import make_registry, render
from server.sim.protocol import (
    DONE,
    ApiError,
    Kind,
    SimRequest,
    error_event,
    models_body,
    parse_request,
    request_id,
)
from server.sim.reply import ReplyError
from server.sim.sequence import Sequence
from server.sim.spec import FaultSpec
from server.sim.text import Filler

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
MAX_BODY_BYTES = 32 * 1024 * 1024
SIM_VERSION = b'{"version":"0.26.0+triage-sim"}'
# A dropped stream is cut after this many tokens plus a per-request draw of 0..5.
DROP_AFTER_TOKENS = 3
# uvicorn's message when an app returns mid-response; that is how a dropped stream cuts its connection.
INCOMPLETE_RESPONSE_LOG = "ASGI callable returned without completing response."


class _QuietDroppedStreams(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != INCOMPLETE_RESPONSE_LOG


def quiet_dropped_stream_logs() -> None:
    """Silence uvicorn's error line for streams this simulator cuts on purpose (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDroppedStreams) for f in logger.filters):
        logger.addFilter(_QuietDroppedStreams())


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = JSON) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionResetError("client went away while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _watch(receive: Receive, seqs: list[Sequence]) -> None:
    """Cancel `seqs` when the client disconnects; the task is done iff the client went away."""
    await _wait_disconnect(receive)
    for seq in seqs:
        seq.cancel()


class SimApp:
    """ASGI callable serving one `SimEngine`."""

    def __init__(self, engine: SimEngine) -> None:
        self.engine = engine
        self._filler = Filler()
        self._registry = make_registry(engine)
        self._rng = random.Random(engine.spec.seed + 1)  # fault draws and filler offsets
        self._created = int(time.time())
        self._id_tag = os.urandom(4).hex()  # ids differ across restarts of the same engine
        self._serial = 0
        self._routes: dict[tuple[str, str], Callable[[Receive, Send], Awaitable[None]]] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
            ("GET", "/health"): self._health,
            ("GET", "/version"): self._version,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/sim/state"): self._state,
            ("POST", "/sim/faults"): self._set_faults,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off in runner.py; websockets are not served
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None:
            known = any(path == scope["path"] for _, path in self._routes)
            err = (
                ApiError(405, "Method Not Allowed", "MethodNotAllowed")
                if known
                else ApiError(404, f"no route {scope['path']}", "NotFoundError")
            )
            await _respond(send, err.status, err.body())
            return
        try:
            await handler(receive, send)
        except ApiError as err:
            await _respond(send, err.status, err.body())
        except ConnectionResetError:
            return

    # ---- small routes ----------------------------------------------------------------------------------

    async def _health(self, receive: Receive, send: Send) -> None:
        await _respond(send, 200, b"", b"text/plain; charset=utf-8")

    async def _version(self, receive: Receive, send: Send) -> None:
        await _respond(send, 200, SIM_VERSION)

    async def _models(self, receive: Receive, send: Send) -> None:
        await _respond(send, 200, models_body(self.engine.name, self.engine.spec.max_model_len, self._created))

    async def _metrics(self, receive: Receive, send: Send) -> None:
        await _respond(send, 200, render(self._registry), METRICS_CONTENT_TYPE.encode())

    async def _state(self, receive: Receive, send: Send) -> None:
        await _respond(send, 200, orjson.dumps(self.engine.state()))

    async def _set_faults(self, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        try:
            faults = FaultSpec.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            raise ApiError(400, f"invalid FaultSpec: {exc}", param="faults") from exc
        self.engine.faults = faults
        await _respond(send, 200, faults.model_dump_json().encode())

    # ---- generation ------------------------------------------------------------------------------------

    async def _chat(self, receive: Receive, send: Send) -> None:
        await self._generate("chat", receive, send)

    async def _completions(self, receive: Receive, send: Send) -> None:
        await self._generate("completion", receive, send)

    async def _faulted(self, receive: Receive) -> bool:
        """Apply the injected faults to a request: True when it hung (and the client left); raises on an error."""
        faults = self.engine.faults
        if faults.hang:
            await _wait_disconnect(receive)  # never a byte; the client's timeout ends it
            return True
        if faults.error_rate > 0 and self._rng.random() < faults.error_rate:
            raise ApiError(500, "simulated engine error (fault injection)", "InternalServerError")
        return False

    def _submit(self, prompts: list[int], max_tokens: int | None, ignore_eos: bool) -> list[Sequence]:
        """One sequence per prompt (per choice, or per embedding input); all or none."""
        seqs: list[Sequence] = []
        try:
            for prompt_tokens in prompts:
                seqs.append(self.engine.submit(prompt_tokens, max_tokens, ignore_eos))
        except RequestTooLongError as exc:
            raise ApiError(400, str(exc), param="max_tokens") from exc
        except EngineStoppedError as exc:
            raise ApiError(503, str(exc), "ServiceUnavailableError") from exc
        finally:
            if len(seqs) < len(prompts):
                for seq in seqs:
                    seq.cancel()
        return seqs

    async def _generate(self, kind: Kind, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        if await self._faulted(receive):
            return
        if self.engine.spec.task != "generate":
            api = "Chat Completions" if kind == "chat" else "Completions"
            raise ApiError(400, f"The model does not support {api} API (it is an embedding model)")
        req = parse_request(kind, raw, self.engine.name)
        seqs = self._submit([req.prompt_tokens] * req.n, req.max_tokens, req.ignore_eos)
        watcher = asyncio.get_running_loop().create_task(_watch(receive, seqs))
        try:
            scripts = []
            for seq in seqs:
                offset = self._rng.randrange(1 << 16)
                try:
                    script = req.reply.script(self._filler, offset, seq.target_tokens, offset)
                except ReplyError as exc:
                    raise ApiError(400, str(exc), param=exc.param) from exc
                if script.length is not None:  # the text is fixed (JSON, or cut at a stop string): so is its length
                    seq.target_tokens = max(1, min(script.length, seq.max_tokens))
                scripts.append(script)
            self._serial += 1
            rid = request_id(kind, self._id_tag, self._serial)
            framer = ReplyFramer(kind, rid, self.engine.name, req.reply, scripts)
            if req.stream:
                await self._stream(send, seqs, framer, req, watcher)
                return
            for seq in seqs:
                await seq.wait_done()
            if any(seq.aborted for seq in seqs):
                if not watcher.done():  # engine stopped under a client that is still there
                    raise ApiError(503, "simulated engine stopped", "ServiceUnavailableError")
                return
            pairs = zip(scripts, seqs, strict=True)
            reasons = [req.reply.finish_reason(script, seq.finish_reason or "stop") for script, seq in pairs]
            body = framer.full_body([seq.generated for seq in seqs], reasons, req.prompt_tokens)
            await _respond(send, 200, body)
        finally:
            for seq in seqs:
                seq.cancel()
            watcher.cancel()

    async def _stream(
        self, send: Send, seqs: list[Sequence], framer: ReplyFramer, req: SimRequest, watcher: asyncio.Task[None]
    ) -> None:
        """One SSE event per token and choice, as produced; usage chunk and [DONE] at the end."""
        drop_after: int | None = None
        faults = self.engine.faults
        if faults.drop_mid_stream_rate > 0 and self._rng.random() < faults.drop_mid_stream_rate:
            drop_after = DROP_AFTER_TOKENS + self._rng.randrange(6)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        sent = [0] * len(seqs)
        finished = [False] * len(seqs)
        opening = framer.role_chunk()
        while True:
            chunk, opening = opening, b""
            for j, seq in enumerate(seqs):
                if finished[j]:
                    continue
                total = await seq.next_tokens(sent[j])
                if seq.aborted:
                    if not watcher.done():  # the engine stopped; tell the client in-band
                        err = ApiError(503, "simulated engine stopped", "ServiceUnavailableError")
                        await send({"type": "http.response.body", "body": error_event(err) + DONE})
                    return
                end = total if drop_after is None else min(total, drop_after)
                finished[j] = seq.done and end == seq.generated
                reason = None
                if finished[j]:
                    reason = req.reply.finish_reason(framer.scripts[j], seq.finish_reason or "stop")
                chunk += framer.token_chunks(j, sent[j], end, reason)
                sent[j] = end
            if drop_after is not None and sent[0] >= drop_after and not finished[0]:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                return  # response left incomplete: the server closes the connection mid-stream
            if all(finished):
                if req.include_usage:
                    chunk += framer.usage_chunk(req.prompt_tokens, sum(sent))
                await send({"type": "http.response.body", "body": chunk + DONE})
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    # ---- embeddings ------------------------------------------------------------------------------------

    async def _embeddings(self, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        if await self._faulted(receive):
            return
        spec = self.engine.spec
        if spec.task != "embed":
            raise ApiError(400, "The model does not support Embeddings API (start it with task: embed)")
        req = parse_embed_request(raw, self.engine.name, spec.embedding_dim)
        seqs = self._submit(req.tokens, 1, True)  # prefill only: one step after each input's prompt
        watcher = asyncio.get_running_loop().create_task(_watch(receive, seqs))
        try:
            for seq in seqs:
                await seq.wait_done()
            if any(seq.aborted for seq in seqs):
                if not watcher.done():
                    raise ApiError(503, "simulated engine stopped", "ServiceUnavailableError")
                return
            await _respond(send, 200, embeddings_body(req, self.engine.name, spec.embedding_dim, int(time.time())))
        finally:
            for seq in seqs:
                seq.cancel()
            watcher.cancel()
