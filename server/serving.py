"""The request path, top to bottom: receive → classify → decide → relay.

`Gateway.generate()` takes the raw body of a chat or completions request and returns a `Reply` (a whole JSON
body, or an async stream of SSE bytes) plus the `x-triage-*` headers. It knows nothing about the web
framework: `routes.py` turns a `Reply` into a response. Engine wire details stay in `backends/`; how a model
is chosen stays in `policy/`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import orjson
from pydantic import ValidationError

from .backends import EngineClient, UpstreamStream
from .classify import Classification, Classifier
from .config import ModelConfig, TriageConfig
from .errors import (
    ClientDisconnected,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    TriageError,
)
from .inspect_request import estimate_prompt_tokens, needed_capabilities, prompt_text, requested_output_tokens
from .load import LoadBoard
from .policy import Decision, Policy, RouteRequest
from .protocol import (
    CandidateView,
    ChatCompletionRequest,
    CompletionRequest,
    FeedbackRequest,
    RouteDecisionResponse,
    RouteOptions,
)
from .telemetry.metrics import Metrics

log = logging.getLogger(__name__)

Endpoint = Literal["chat", "completions"]
UPSTREAM_PATHS: dict[Endpoint, str] = {"chat": "/chat/completions", "completions": "/completions"}
REQUEST_MODELS: dict[Endpoint, type[ChatCompletionRequest] | type[CompletionRequest]] = {
    "chat": ChatCompletionRequest, "completions": CompletionRequest}
DisconnectWaiter = Callable[[], Awaitable[object]]  # returns once the client has gone away
UNCLASSIFIED = Classification("unclassified", {}, 0.0)
MAX_ATTEMPTS = 3  # the chosen model plus at most two fallbacks, all before the first byte


@dataclass(slots=True)
class Reply:
    headers: dict[str, str]
    body: bytes | None = None  # a whole JSON answer, or
    stream: AsyncIterator[bytes] | None = None  # SSE events, relayed as they arrive


@dataclass(slots=True)
class Plan:
    """Where one request goes and why: the output of classify + decide."""

    request_id: str
    model: ModelConfig
    classification: Classification
    reason: str
    route_request: RouteRequest | None = None  # None when the client named the model
    decision: Decision | None = None
    classify_ms: float = 0.0
    decide_ms: float = 0.0
    fallbacks: list[str] = field(default_factory=list)


def parse_body(raw: bytes, endpoint: Endpoint, default_model: str | None = None
               ) -> tuple[dict[str, object], ChatCompletionRequest | CompletionRequest]:
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    if default_model is not None:
        payload.setdefault("model", default_model)
    try:
        request = REQUEST_MODELS[endpoint].model_validate(payload)
    except ValidationError as exc:
        raise invalid_request(exc) from None
    return payload, request


def invalid_request(exc: ValidationError) -> InvalidRequest:
    """The first validation problem, named by its field path, as a 400."""
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return InvalidRequest(f"invalid '{param}': {first['msg']}{more}", param=param)


class Gateway:
    def __init__(self, config: TriageConfig, classifier: Classifier, policy: Policy,
                 clients: dict[str, EngineClient], load: LoadBoard, metrics: Metrics) -> None:
        self.config = config
        self.classifier = classifier
        self.policy = policy
        self.clients = clients
        self.load = load
        self.metrics = metrics
        self.models = {m.name: m for m in config.models}
        self.started_at = int(time.time())
        # Byte patterns for the `model` rewrite, built once: engines write compact JSON (`"model":"x"`).
        self._rewrites = {m.name: _model_rewrite(m) for m in config.models}

    # -- receive → classify → decide ---------------------------------------------------------------------

    async def plan(self, endpoint: Endpoint, payload: dict[str, object],
                   request: ChatCompletionRequest | CompletionRequest, request_id: str) -> Plan:
        if request.model != "auto":
            model = self.models.get(request.model)
            if model is None:
                raise ModelNotFound(f"model '{request.model}' does not exist; use 'auto' or one of: "
                                    f"{', '.join(self.models)} (GET /v1/models lists them)", param="model")
            return Plan(request_id, model, UNCLASSIFIED, "requested by name")

        t0 = time.perf_counter()
        text = prompt_text(request)
        classification = await self.classifier.classify(text)
        t1 = time.perf_counter()
        route_request = RouteRequest(
            request_id=request_id, classification=classification,
            prompt_tokens=estimate_prompt_tokens(request), max_output_tokens=requested_output_tokens(request),
            options=request.route or RouteOptions(), needs=needed_capabilities(request), prompt_text=text)
        decision = self.policy.choose(route_request)
        t2 = time.perf_counter()
        self.metrics.classify_seconds.observe(t1 - t0)
        self.metrics.child(self.metrics.decisions, classification.category, decision.model).inc()
        return Plan(request_id, self.models[decision.model], classification, decision.reason, route_request,
                    decision, (t1 - t0) * 1e3, (t2 - t1) * 1e3, decision.fallbacks)

    async def dry_run(self, raw: bytes, request_id: str) -> RouteDecisionResponse:
        """The decision `generate()` would take for this body, explained, without generating."""
        endpoint: Endpoint = "chat" if b'"messages"' in raw else "completions"
        payload, request = parse_body(raw, endpoint, default_model="auto")
        plan = await self.plan(endpoint, payload, request, request_id)
        candidates = [CandidateView(**c.as_dict()) for c in plan.decision.candidates] if plan.decision else []
        c = plan.classification
        return RouteDecisionResponse(
            request_id=request_id, model=plan.model.name, category=c.category,
            category_scores={k: round(v, 5) for k, v in c.category_scores.items()},
            complexity=c.complexity, reason=plan.reason, overflow=bool(plan.decision and plan.decision.overflow),
            candidates=candidates, classify_ms=round(plan.classify_ms, 4), decide_ms=round(plan.decide_ms, 4))

    async def feedback(self, raw: bytes) -> bytes:
        try:
            feedback = FeedbackRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise invalid_request(exc) from None
        accepted = self.policy.feedback(feedback.request_id, feedback.score)
        return orjson.dumps({"request_id": feedback.request_id, "accepted": accepted})

    # -- relay -----------------------------------------------------------------------------------------

    async def generate(self, endpoint: Endpoint, raw: bytes, received_s: float, request_id: str,
                       until_disconnect: DisconnectWaiter | None = None) -> Reply:
        payload, request = parse_body(raw, endpoint)
        plan = await self.plan(endpoint, payload, request, request_id)
        payload.pop("route", None)
        tokens = estimate_prompt_tokens(request) + requested_output_tokens(request)
        path = UPSTREAM_PATHS[endpoint]
        tried: list[str] = []
        failures: list[TriageError] = []
        for name in [plan.model.name, *plan.fallbacks][:MAX_ATTEMPTS]:
            model = self.models[name]
            payload["model"] = model.upstream_name
            body = orjson.dumps(payload)
            try:
                if request.stream:
                    return await self._open_stream(endpoint, plan, model, path, body, tokens, received_s,
                                                   tried)
                return await self._complete(endpoint, plan, model, path, body, tokens, received_s, tried,
                                            until_disconnect)
            except (EngineUnavailable, EngineTimeout) as exc:
                self._note_failure(model, exc, tried, failures)
            except EngineError as exc:
                if exc.status < 500:
                    raise  # the request's own fault: another model would refuse it too
                self._note_failure(model, exc, tried, failures)
        if len(failures) == 1:
            raise failures[0]
        if all(isinstance(f, EngineTimeout) for f in failures):
            raise EngineTimeout(f"every engine tried timed out: {'; '.join(tried)}")
        raise EngineUnavailable(f"every engine tried failed before answering: {'; '.join(tried)}")

    def _note_failure(self, model: ModelConfig, exc: TriageError, tried: list[str],
                      failures: list[TriageError]) -> None:
        log.warning("engine for %s failed before the first byte: %s", model.name, exc.message)
        tried.append(f"{model.name}: {exc.message}")
        failures.append(exc)

    def _headers(self, plan: Plan, model: ModelConfig, tried: list[str], overhead_s: float) -> dict[str, str]:
        reason = plan.reason if not tried else f"{plan.reason}; fell back after {len(tried)} failure(s)"
        return {
            "x-triage-request-id": plan.request_id,
            "x-triage-model": model.name,
            "x-triage-category": plan.classification.category,
            "x-triage-reason": reason.encode("ascii", "replace").decode(),
            "x-triage-overhead-ms": f"{overhead_s * 1e3:.3f}",
        }

    async def _complete(self, endpoint: Endpoint, plan: Plan, model: ModelConfig, path: str, body: bytes,
                        tokens: int, received_s: float, tried: list[str],
                        until_disconnect: DisconnectWaiter | None) -> Reply:
        client = self.clients[model.name]
        self._started(model.name, tokens)
        status = "error"
        try:
            sent_s = time.perf_counter()
            work = client.complete(path, body)
            answer = await (work if until_disconnect is None else _unless_disconnected(work, until_disconnect))
            back_s = time.perf_counter()
            answer = self._rewrites[model.name](answer)
            status = "ok"
        finally:
            self._finished(plan.request_id, model.name, tokens, endpoint, status, received_s)
        overhead_s = (sent_s - received_s) + (time.perf_counter() - back_s)
        self.metrics.overhead_seconds.observe(overhead_s)
        return Reply(self._headers(plan, model, tried, overhead_s), body=answer)

    async def _open_stream(self, endpoint: Endpoint, plan: Plan, model: ModelConfig, path: str, body: bytes,
                           tokens: int, received_s: float, tried: list[str]) -> Reply:
        client = self.clients[model.name]
        self._started(model.name, tokens)
        try:
            sent_s = time.perf_counter()
            stream, first = await client.open_stream(path, body)
            first_s = time.perf_counter()
        except BaseException:
            self._finished(plan.request_id, model.name, tokens, endpoint, "error", received_s)
            raise
        overhead_s = (sent_s - received_s) + (time.perf_counter() - first_s)
        self.metrics.overhead_seconds.observe(overhead_s)
        self.metrics.child(self.metrics.ttft_seconds, model.name).observe(first_s - received_s)
        events = self._relay(plan.request_id, stream, first, model, tokens, endpoint, received_s)
        return Reply(self._headers(plan, model, tried, overhead_s), stream=events)

    async def _relay(self, request_id: str, stream: UpstreamStream, first: bytes, model: ModelConfig,
                     tokens: int, endpoint: Endpoint, received_s: float) -> AsyncIterator[bytes]:
        rewrite = self._rewrites[model.name]
        status = "error"
        try:
            yield rewrite(first)
            async for events in stream:
                yield rewrite(events)
            status = "ok"
        except (EngineUnavailable, EngineTimeout) as exc:
            # Bytes already went out: no fallback is possible, so end the stream with an error the SDKs see.
            log.warning("stream from %s broke after the first byte: %s", model.name, exc.message)
            self.metrics.errors.labels(exc.type).inc()
            yield b"data: " + exc.body() + b"\n\ndata: [DONE]\n\n"
        finally:
            stream.close()  # on client disconnect this aborts the engine's request too
            self._finished(request_id, model.name, tokens, endpoint, status, received_s)

    def _started(self, model: str, tokens: int) -> None:
        self.load.started(model, tokens)
        self.metrics.child(self.metrics.in_flight, model).inc()

    def _finished(self, request_id: str, model: str, tokens: int, endpoint: Endpoint, status: str,
                  received_s: float) -> None:
        elapsed_s = time.perf_counter() - received_s
        self.load.finished(model, tokens)
        metrics = self.metrics
        metrics.child(metrics.in_flight, model).dec()
        metrics.child(metrics.requests, endpoint, model, status).inc()
        metrics.child(metrics.request_seconds, endpoint, model).observe(elapsed_s)
        self.policy.observe(request_id, model, status == "ok", elapsed_s)


async def _unless_disconnected(work: Awaitable[bytes], until_disconnect: DisconnectWaiter) -> bytes:
    """Await `work`, cancelling it (and so the engine's request) if the client disconnects first.

    One watcher task per request, which cancels this task on disconnect: cheaper on the hot path than
    racing two tasks with asyncio.wait.
    """
    me = asyncio.current_task()
    if me is None:  # not inside a task: nothing to cancel
        return await work
    gone = False

    async def watch() -> None:
        nonlocal gone
        await until_disconnect()
        gone = True
        me.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        me.uncancel()
        raise ClientDisconnected("client disconnected before the answer was ready") from None
    finally:
        watcher.cancel()


def _model_rewrite(model: ModelConfig):  # type: ignore[no-untyped-def]
    """A bytes -> bytes function that shows the configured name where the engine wrote its served name."""
    if model.upstream_name == model.name:
        return _identity
    served, name = orjson.dumps(model.upstream_name), orjson.dumps(model.name)
    patterns = [(b'"model":' + served, b'"model":' + name), (b'"model": ' + served, b'"model": ' + name)]

    def rewrite(data: bytes) -> bytes:
        for old, new in patterns:
            data = data.replace(old, new)
        return data

    return rewrite


def _identity(data: bytes) -> bytes:
    return data
