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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import orjson
from pydantic import ValidationError

from .auth import OPEN_TENANT, Tenant
from .backends import EngineClient, UpstreamStream
from .classify import Classification, Classifier
from .config import ModelConfig, TriageConfig
from .errors import (
    ClientDisconnected,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    InvalidRequest,
    KeptLocal,
    ModelNotFound,
    NoEligibleModel,
    RateLimited,
    TriageError,
)
from .inspect_request import estimate_prompt_tokens, needed_capabilities, prompt_text, requested_output_tokens
from .load import LoadBoard
from .policy import Decision, Policy, RouteRequest
from .policy.eligibility import ineligible_reason
from .protocol import (
    CandidateView,
    ChatCompletionRequest,
    CompletionRequest,
    FeedbackRequest,
    RouteDecisionResponse,
    RouteOptions,
)
from .safeguards import Safeguards, build_safeguards
from .telemetry.metrics import Metrics

log = logging.getLogger(__name__)

Endpoint = Literal["chat", "completions"]
UPSTREAM_PATHS: dict[Endpoint, str] = {"chat": "/chat/completions", "completions": "/completions"}
REQUEST_MODELS: dict[Endpoint, type[ChatCompletionRequest] | type[CompletionRequest]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
}
DisconnectWaiter = Callable[[], Awaitable[object]]  # returns once the client has gone away
UNCLASSIFIED = Classification("unclassified", {}, 0.0)
CANCELLED = "cancelled"  # request status when the client went away first
MAX_ATTEMPTS = 3  # the chosen model plus at most two fallbacks, all before the first byte


@dataclass(slots=True)
class Reply:
    headers: dict[str, str]
    body: bytes | None = None  # a whole JSON answer, or
    stream: AsyncIterator[bytes] | None = None  # SSE events, relayed as they arrive
    abandon: Callable[[], None] | None = None  # call after the stream is done with, started or not


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
    private: list[str] = field(default_factory=list)  # kinds the privacy guard found (never the text)


def parse_body(
    raw: bytes, endpoint: Endpoint, default_model: str | None = None
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
    def __init__(
        self,
        config: TriageConfig,
        classifier: Classifier,
        policy: Policy,
        clients: dict[str, EngineClient],
        load: LoadBoard,
        metrics: Metrics,
        safeguards: Safeguards | None = None,
    ) -> None:
        self.config = config
        self.classifier = classifier
        self.policy = policy
        self.clients = clients
        self.load = load
        self.metrics = metrics
        self.guard = safeguards or build_safeguards(config, load, metrics)
        self.models = {m.name: m for m in config.models}
        self.started_at = int(time.time())
        # Byte patterns for the `model` rewrite, built once: engines write compact JSON (`"model":"x"`).
        self._rewrites = {m.name: _model_rewrite(m) for m in config.models}

    # -- receive → classify → decide ---------------------------------------------------------------------

    async def plan(
        self,
        endpoint: Endpoint,
        payload: dict[str, object],
        request: ChatCompletionRequest | CompletionRequest,
        request_id: str,
        prompt_tokens: int,
        output_tokens: int,
        tenant: Tenant = OPEN_TENANT,
    ) -> Plan:
        private = self._screen(payload)
        if request.model != "auto":
            model = self.models.get(request.model)
            if model is None:
                raise ModelNotFound(
                    f"model '{request.model}' does not exist; use 'auto' or one of: "
                    f"{', '.join(self.models)} (GET /v1/models lists them)",
                    param="model",
                )
            self.guard.tenancy.check_model(tenant, model)
            if private and model.remote:
                raise KeptLocal(
                    f"the prompt contains {', '.join(private)}, so it may not go to remote model "
                    f"'{model.name}'; name a local model or use 'auto'",
                    param="model",
                )
            await self._named_capacity(model)
            return Plan(request_id, model, UNCLASSIFIED, "requested by name", private=private)

        t0 = time.perf_counter()
        text = prompt_text(request)
        classification = await self.classifier.classify(text)
        t1 = time.perf_counter()
        route_request = RouteRequest(
            request_id=request_id,
            classification=classification,
            prompt_tokens=prompt_tokens,
            max_output_tokens=output_tokens,
            options=self.guard.tenancy.restrict(tenant, request.route or RouteOptions()),
            needs=needed_capabilities(request),
            tenant_allow_remote=tenant.allow_remote,
            local_only=bool(private),
            prompt_text="" if private else text,
        )  # nothing the guard flagged reaches the store, not even a hash
        try:
            decision = await self.guard.admission.choose(lambda: self.policy.choose(route_request))
        except NoEligibleModel as exc:
            if private:
                raise KeptLocal(
                    f"the prompt contains {', '.join(private)}, so it must stay on a local model, "
                    f"and none can serve it: {exc.message}"
                ) from None
            raise
        t2 = time.perf_counter()
        self.metrics.classify_seconds.observe(t1 - t0)
        self.metrics.child(self.metrics.decisions, classification.category, decision.model).inc()
        reason = decision.reason + (f"; kept local: {', '.join(private)}" if private else "")
        return Plan(
            request_id,
            self.models[decision.model],
            classification,
            reason,
            route_request,
            decision,
            (t1 - t0) * 1e3,
            (t2 - t1) * 1e3,
            decision.fallbacks,
            private,
        )

    def _screen(self, payload: dict[str, object]) -> list[str]:
        """The privacy guard's findings (kinds only), counted in /metrics."""
        t0 = time.perf_counter()
        private = self.guard.privacy.scan_payload(payload)
        self.metrics.privacy_scan_seconds.observe(time.perf_counter() - t0)
        for kind in private:
            self.metrics.privacy_findings.labels(kind).inc()
        return private

    async def _named_capacity(self, model: ModelConfig) -> None:
        """A model the client named: fail fast while its breaker is open; wait (bounded) while it is at cap."""
        if not self.guard.breakers.available(model.name):
            raise EngineUnavailable(
                f"engine for '{model.name}' is failing (circuit breaker open); retry later or use 'auto'",
                headers={"retry-after": str(round(self.guard.breakers.retry_after_s(model.name)))},
            )

        def at_cap() -> None:
            if self.load.engine(model.name).in_flight >= model.max_in_flight:
                raise RateLimited(
                    f"model '{model.name}' is at its cap of {model.max_in_flight} requests in "
                    "flight; retry later or use 'auto'",
                    retry_after_s=1.0,
                )

        await self.guard.admission.choose(at_cap)

    async def dry_run(self, raw: bytes, request_id: str, tenant: Tenant = OPEN_TENANT) -> RouteDecisionResponse:
        """The decision `generate()` would take for this body, explained, without generating."""
        endpoint: Endpoint = "chat" if b'"messages"' in raw else "completions"
        payload, request = parse_body(raw, endpoint, default_model="auto")
        plan = await self.plan(
            endpoint,
            payload,
            request,
            request_id,
            estimate_prompt_tokens(request),
            requested_output_tokens(request),
            tenant,
        )
        candidates = [CandidateView(**c.as_dict()) for c in plan.decision.candidates] if plan.decision else []
        c = plan.classification
        return RouteDecisionResponse(
            request_id=request_id,
            model=plan.model.name,
            category=c.category,
            category_scores={k: round(v, 5) for k, v in c.category_scores.items()},
            complexity=c.complexity,
            reason=plan.reason,
            overflow=bool(plan.decision and plan.decision.overflow),
            candidates=candidates,
            classify_ms=round(plan.classify_ms, 4),
            decide_ms=round(plan.decide_ms, 4),
        )

    async def feedback(self, raw: bytes) -> bytes:
        try:
            feedback = FeedbackRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise invalid_request(exc) from None
        accepted = self.policy.feedback(feedback.request_id, feedback.score)
        return orjson.dumps({"request_id": feedback.request_id, "accepted": accepted})

    # -- relay -----------------------------------------------------------------------------------------

    async def generate(
        self,
        endpoint: Endpoint,
        raw: bytes,
        received_s: float,
        request_id: str,
        until_disconnect: DisconnectWaiter | None = None,
        tenant: Tenant = OPEN_TENANT,
    ) -> Reply:
        """Admission (a global slot, held until the answer or its stream ends), then `_generate`."""
        self.guard.drain.check()
        ticket = await self.guard.admission.enter()
        try:
            reply = await self._generate(endpoint, raw, received_s, request_id, until_disconnect, tenant)
        except BaseException:
            ticket.release()
            raise
        if reply.stream is None:
            ticket.release()
            return reply
        reply.stream = ticket.guard(self.guard.drain.guard(reply.stream))
        release_relay = reply.abandon

        def abandon() -> None:  # also frees the slot of a stream the server never started
            ticket.release()
            if release_relay is not None:
                release_relay()

        reply.abandon = abandon
        return reply

    async def _generate(
        self,
        endpoint: Endpoint,
        raw: bytes,
        received_s: float,
        request_id: str,
        until_disconnect: DisconnectWaiter | None,
        tenant: Tenant,
    ) -> Reply:
        payload, request = parse_body(raw, endpoint)
        prompt_tokens, output_tokens = estimate_prompt_tokens(request), requested_output_tokens(request)
        tokens = prompt_tokens + output_tokens
        self.guard.tenancy.admit(tenant, tokens)
        plan = await self.plan(endpoint, payload, request, request_id, prompt_tokens, output_tokens, tenant)
        payload.pop("route", None)
        path = UPSTREAM_PATHS[endpoint]
        tried: list[str] = []
        failures: list[TriageError] = []
        # One deadline across every attempt until the first byte, counted from receipt.
        budget_s = self.config.server.request_deadline_s
        deadline_s = asyncio.get_running_loop().time() + budget_s - (time.perf_counter() - received_s)
        for name in self._attempts(plan):
            model = self.models[name]
            payload["model"] = model.upstream_name
            body = orjson.dumps(payload)
            self.guard.breakers.attempt(name)
            try:
                async with asyncio.timeout_at(deadline_s):
                    if request.stream:
                        reply = await self._open_stream(endpoint, plan, model, path, body, tokens, received_s, tried)
                    else:
                        reply = await self._complete(
                            endpoint, plan, model, path, body, tokens, received_s, tried, until_disconnect
                        )
            except TimeoutError:
                self._note_failure(
                    model,
                    EngineTimeout(
                        f"no engine answered within the overall deadline of {budget_s:g} s (server.request_deadline_s)"
                    ),
                    tried,
                    failures,
                )
                break
            except (EngineUnavailable, EngineTimeout) as exc:
                self._note_failure(model, exc, tried, failures)
                continue
            except EngineError as exc:
                if exc.status < 500:
                    self.guard.breakers.success(name)  # the engine is fine: the request itself was refused
                    raise  # the request's own fault: another model would refuse it too
                self._note_failure(model, exc, tried, failures)
                continue
            self.guard.breakers.success(name)
            self.guard.tenancy.charge(tenant, request_id, model, tokens)
            return reply
        if not failures:
            raise EngineUnavailable(
                f"no engine can take '{plan.model.name}' now (circuit breaker open or unhealthy); retry later"
            )
        if len(failures) == 1:
            raise failures[0]
        if all(isinstance(f, EngineTimeout) for f in failures):
            raise EngineTimeout(f"every engine tried timed out: {'; '.join(tried)}")
        raise EngineUnavailable(f"every engine tried failed before answering: {'; '.join(tried)}")

    def _attempts(self, plan: Plan) -> Iterator[str]:
        """The chosen model, then fallbacks still eligible now (health, breaker, cap can change mid-request)."""
        yield plan.model.name
        route_request = plan.route_request
        for n, name in enumerate(plan.fallbacks, start=2):
            if n > MAX_ATTEMPTS:
                return
            model = self.models[name]
            if (
                route_request is not None
                and ineligible_reason(model, self.load.engine(name), route_request, self.policy.settings.allow_remote)
                is not None
            ):
                continue
            yield name

    def _note_failure(
        self, model: ModelConfig, exc: TriageError, tried: list[str], failures: list[TriageError]
    ) -> None:
        log.warning("engine for %s failed before the first byte: %s", model.name, exc.message)
        self.guard.breakers.failure(model.name)
        self.metrics.fallbacks.labels(model.name).inc()
        tried.append(f"{model.name}: {exc.message}")
        failures.append(exc)

    def _headers(self, plan: Plan, model: ModelConfig, tried: list[str], overhead_s: float) -> dict[str, str]:
        failed = ", ".join(t.split(":", 1)[0] for t in tried)
        reason = plan.reason if not tried else f"{plan.reason}; fell back to {model.name} after {failed} failed"
        return {
            "x-triage-request-id": plan.request_id,
            "x-triage-model": model.name,
            "x-triage-category": plan.classification.category,
            "x-triage-reason": reason.encode("ascii", "replace").decode(),
            "x-triage-overhead-ms": f"{overhead_s * 1e3:.3f}",
        }

    async def _complete(
        self,
        endpoint: Endpoint,
        plan: Plan,
        model: ModelConfig,
        path: str,
        body: bytes,
        tokens: int,
        received_s: float,
        tried: list[str],
        until_disconnect: DisconnectWaiter | None,
    ) -> Reply:
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
        except ClientDisconnected:
            status = CANCELLED
            raise
        finally:
            self._finished(plan.request_id, model.name, tokens, endpoint, status, received_s)
        overhead_s = (sent_s - received_s) + (time.perf_counter() - back_s)
        self.metrics.overhead_seconds.observe(overhead_s)
        return Reply(self._headers(plan, model, tried, overhead_s), body=answer)

    async def _open_stream(
        self,
        endpoint: Endpoint,
        plan: Plan,
        model: ModelConfig,
        path: str,
        body: bytes,
        tokens: int,
        received_s: float,
        tried: list[str],
    ) -> Reply:
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

        def abandon() -> None:  # the client left before the relay began: its `finally` never runs
            self._end_relay(plan.request_id, stream, model, tokens, endpoint, CANCELLED, received_s)

        return Reply(self._headers(plan, model, tried, overhead_s), stream=events, abandon=abandon)

    async def _relay(
        self,
        request_id: str,
        stream: UpstreamStream,
        first: bytes,
        model: ModelConfig,
        tokens: int,
        endpoint: Endpoint,
        received_s: float,
    ) -> AsyncIterator[bytes]:
        rewrite = self._rewrites[model.name]
        status = CANCELLED  # unless the stream ends or breaks, the client left (generator closed)
        try:
            yield rewrite(first)
            async for events in stream:
                yield rewrite(events)
            status = "ok"
        except (EngineUnavailable, EngineTimeout) as exc:
            status = "error"
            # Bytes already went out: no fallback is possible, so end the stream with an error the SDKs see.
            log.warning("stream from %s broke after the first byte: %s", model.name, exc.message)
            self.guard.breakers.failure(model.name)
            self.metrics.errors.labels(exc.type).inc()
            self.metrics.stream_errors.labels(model.name).inc()
            yield b"data: " + exc.body() + b"\n\ndata: [DONE]\n\n"
        finally:
            self._end_relay(request_id, stream, model, tokens, endpoint, status, received_s)

    def _end_relay(
        self,
        request_id: str,
        stream: UpstreamStream,
        model: ModelConfig,
        tokens: int,
        endpoint: Endpoint,
        status: str,
        received_s: float,
    ) -> None:
        """Release the engine stream and the accounting, once, whether or not the relay ever started."""
        if stream.ended:
            return
        stream.ended = True
        stream.close()  # on client disconnect this aborts the engine's request too
        self._finished(request_id, model.name, tokens, endpoint, status, received_s)

    def _started(self, model: str, tokens: int) -> None:
        self.load.started(model, tokens)
        self.metrics.child(self.metrics.in_flight, model).inc()

    def _finished(
        self, request_id: str, model: str, tokens: int, endpoint: Endpoint, status: str, received_s: float
    ) -> None:
        elapsed_s = time.perf_counter() - received_s
        self.load.finished(model, tokens)
        self.guard.admission.model_finished()
        metrics = self.metrics
        metrics.child(metrics.in_flight, model).dec()
        metrics.child(metrics.requests, endpoint, model, status).inc()
        metrics.child(metrics.request_seconds, endpoint, model).observe(elapsed_s)
        if status != CANCELLED:  # a client that hangs up says nothing about the model
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
