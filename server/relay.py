"""One generation request from its commit to its last byte: the `Relay` owns everything the request holds.

A `Relay` is made by the front door before any work and closed by it in one `finally`. In between it acquires,
in this order, the global admission slot (`Ticket`), the tenant's budget reservation, and per attempt the
model's load accounting (router in-flight counters, Prometheus gauges) and the engine's open answer. An
attempt's load accounting ends once, as soon as the engine is done with it (answer complete, refused, failed);
`aclose()` releases whatever is still held, exactly once, whatever happened: answered, refused, failed, or the
client hung up half way. Nothing else releases these resources, and nothing relies on garbage collection.

Attempts: the planned model first, then the decision's fallbacks that are still eligible, all before the first
byte and under one deadline. Each attempt ends with one `Outcome`; only `ENGINE_FAILURE` opens breakers and
teaches the policy. After the first byte there is no fallback: a broken stream ends with an SSE error event.
A request that arrived in another protocol carries its `Translation` (`protocols/`): the answer, whole or
event by event, goes back through it; an engine that serves that protocol itself gets the client's body.
Knows nothing about HTTP framing (the front door sends what `events()` yields) or how the model was chosen.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .admission import Ticket
from .auth import Tenant
from .auth.tenancy import Reservation
from .backends import UpstreamStream
from .classify import Classification
from .config import ModelConfig
from .console.recent import Recorded
from .errors import ClientDisconnected, EngineError, EngineTimeout, EngineUnavailable, TriageError
from .intake import Incoming
from .policy import Decision, Outcome, RouteRequest
from .policy.eligibility import ineligible_reason
from .usage import StreamUsage, body_usage

if TYPE_CHECKING:
    from .protocols import Adapter, Translation
    from .serving import Gateway

log = logging.getLogger(__name__)

DisconnectWaiter = Callable[[], Awaitable[object]]  # returns once the client has gone away
MAX_ATTEMPTS = 3  # the chosen model plus at most two fallbacks, all before the first byte


_ID_PREFIX = os.urandom(6).hex()  # per process, so that ids from replicas sharing a store never collide
_ids = itertools.count(1)


@dataclass(slots=True)
class RequestIds:
    """Ours (minted by the router, unique, the audit key) and the client's (echoed and stored, never a key)."""

    request_id: str
    client_request_id: str | None = None

    @classmethod
    def mint(cls, client_request_id: str | None = None) -> RequestIds:
        """A new process-unique id (cheaper than uuid4), beside the client's `x-request-id` when it is sane."""
        given = client_request_id if client_request_id and len(client_request_id) <= 128 else None
        if given is not None and not given.isprintable():
            given = None
        return cls(f"{_ID_PREFIX}{next(_ids):010x}", given)


@dataclass(slots=True)
class Plan:
    """Where one request goes and why: the output of classify + decide."""

    model: ModelConfig
    reason: str
    classification: Classification
    route_request: RouteRequest | None = None  # None when the client named the model
    decision: Decision | None = None
    classify_ms: float = 0.0
    decide_ms: float = 0.0
    private: list[str] = field(default_factory=list)  # kinds the privacy guard found (never the text)

    @property
    def category(self) -> str:
        return self.classification.category


@dataclass(slots=True)
class _Attempt:
    model: ModelConfig
    started_s: float  # perf_counter() when the engine request went out


class Relay:
    def __init__(self, gateway: Gateway, adapter: Adapter, ids: RequestIds, tenant: Tenant, received_s: float) -> None:
        self.gateway = gateway
        self.adapter = adapter  # the route's client protocol
        self.endpoint = adapter.name  # chat, completions, responses, messages: a metrics label
        self.ids = ids
        self.tenant = tenant
        self.received_s = received_s  # perf_counter() when the request arrived
        self.headers: dict[str, str] = {"x-triage-request-id": ids.request_id}
        self.body: bytes | None = None  # a whole JSON answer, or
        self.stream: UpstreamStream | None = None  # an open streamed answer (first events in `_first`)
        self.outcome = Outcome.CANCELLED  # until the answer is complete, a close means the client left
        self.ticket: Ticket | None = None
        self.reservation: Reservation | None = None
        self.prompt_tokens = 0  # estimated prompt tokens: the load accounting's prefill work
        self.output_tokens = 0  # requested output tokens: its decode work
        self.recorded: Recorded | None = None  # the console's entry for it, set at commit, finished at close
        self.first_byte_s: float | None = None  # perf_counter() when the answer's first byte was ready
        self.last_outcome: Outcome | None = None  # how the latest attempt ended
        self.client_asked_usage = True  # False: the router asked for the stream's usage event, and strips it
        self.reported_tokens: int | None = None  # the engine's own count (`usage`), when it gave one
        self._first = b""
        self._attempt: _Attempt | None = None
        self._last_model: ModelConfig | None = None  # the model of the latest attempt, whom usage is booked on
        self._events: AsyncIterator[bytes] | None = None  # what the client gets, or
        self._upstream_events: AsyncIterator[bytes] | None = None  # what the engine sent, when it is translated
        self._translation: Translation | None = None
        self._native = False  # whether the answering engine spoke the client's protocol itself
        self._first_byte = False
        self._closed = False

    @property
    def request_id(self) -> str:
        return self.ids.request_id

    @property
    def tokens(self) -> int:
        """What the budget reservation counts: prompt and output tokens together."""
        return self.prompt_tokens + self.output_tokens

    # -- attempts until the first byte -------------------------------------------------------------------

    async def start(self, plan: Plan, incoming: Incoming, until_disconnect: DisconnectWaiter | None) -> None:
        """Send the request to the planned model, falling back before the first byte; raises when none answers."""
        gateway = self.gateway
        tried: list[str] = []
        failures: list[TriageError] = []
        budget_s = gateway.config.server.request_deadline_s  # one deadline across every attempt, from receipt
        deadline_s = asyncio.get_running_loop().time() + budget_s - (time.perf_counter() - self.received_s)
        self._translation = incoming.translation
        for model in self._attempts(plan):
            path, body, self._native = incoming.upstream(model)
            gateway.guard.breakers.attempt(model.name)
            attempt = self._begin(model)
            try:
                async with asyncio.timeout_at(deadline_s):
                    if incoming.stream:
                        await self._open_stream(attempt, path, body)
                    else:
                        await self._complete(attempt, path, body, until_disconnect)
            except TimeoutError:
                timeout = EngineTimeout(
                    f"no engine answered within the overall deadline of {budget_s:g} s (server.request_deadline_s)"
                )
                self._failed(attempt, timeout, tried, failures)
                break
            except (EngineUnavailable, EngineTimeout) as exc:
                self._failed(attempt, exc, tried, failures)
                continue
            except EngineError as exc:
                if exc.status >= 500:
                    self._failed(attempt, exc, tried, failures)
                    continue
                gateway.guard.breakers.success(model.name)  # the engine is fine: the request itself was refused
                self.outcome = Outcome.REFUSED
                self._end_attempt(Outcome.REFUSED)
                self._set_headers(plan, model, tried)  # the client sees who refused it, and why it went there
                raise  # another model would refuse it too
            gateway.guard.breakers.success(model.name)
            self._set_headers(plan, model, tried)
            return
        self.outcome = Outcome.ENGINE_FAILURE  # every attempt failed, or none could be made
        if not failures:
            raise EngineUnavailable(
                f"no engine can take '{plan.model.name}' now (circuit breaker open or unhealthy); retry later"
            )
        if len(failures) == 1:
            raise failures[0]
        if all(isinstance(f, EngineTimeout) for f in failures):
            raise EngineTimeout(f"every engine tried timed out: {'; '.join(tried)}")
        raise EngineUnavailable(f"every engine tried failed before answering: {'; '.join(tried)}")

    def _attempts(self, plan: Plan) -> Iterator[ModelConfig]:
        """The planned model, then fallbacks still eligible now (health, breaker, cap change mid-request)."""
        yield plan.model
        gateway = self.gateway
        route_request = plan.route_request
        fallbacks = plan.decision.fallbacks if plan.decision is not None else []
        for n, name in enumerate(fallbacks, start=2):
            if n > MAX_ATTEMPTS:
                return
            model = gateway.models[name]
            allow_remote = gateway.policy.settings.allow_remote
            if route_request is not None and ineligible_reason(
                model, gateway.load.engine(name), route_request, allow_remote
            ):
                continue
            yield model

    async def _complete(
        self, attempt: _Attempt, path: str, body: bytes, until_disconnect: DisconnectWaiter | None
    ) -> None:
        name = attempt.model.name
        work = self.gateway.clients[name].complete(path, body)
        answer = await (work if until_disconnect is None else _unless_disconnected(work, until_disconnect))
        back_s = time.perf_counter()
        answer = self.gateway.rewrites[name](answer)
        if self.reservation is not None:
            self.reported_tokens = body_usage(answer)
        if self._translation is not None:
            answer = await self._translation.answer(answer, self._native)
        self.body = answer
        self.outcome = Outcome.OK
        self._first_byte = True
        self._observe_overhead(attempt, back_s)
        self._end_attempt(Outcome.OK)  # the engine's work is done: its load ends now, not when the client has it

    async def _open_stream(self, attempt: _Attempt, path: str, body: bytes) -> None:
        name = attempt.model.name
        self.stream, self._first = await self.gateway.clients[name].open_stream(path, body)
        first_s = time.perf_counter()
        self._first_byte = True
        metrics = self.gateway.metrics
        metrics.child(metrics.ttft_seconds, name).observe(first_s - self.received_s)
        self._observe_overhead(attempt, first_s)

    def _observe_overhead(self, attempt: _Attempt, back_s: float) -> None:
        """Router time: receipt until the engine request went out, plus the engine's answer until now."""
        self.first_byte_s = back_s
        overhead_s = (attempt.started_s - self.received_s) + (time.perf_counter() - back_s)
        self.gateway.metrics.overhead_seconds.observe(overhead_s)
        self.headers["x-triage-overhead-ms"] = f"{overhead_s * 1e3:.3f}"

    def _failed(self, attempt: _Attempt, exc: TriageError, tried: list[str], failures: list[TriageError]) -> None:
        name = attempt.model.name
        log.warning("engine for %s failed before the first byte: %s", name, exc.message)
        self.gateway.metrics.fallbacks.labels(name).inc()
        tried.append(f"{name}: {exc.message}")
        failures.append(exc)
        self._end_attempt(Outcome.ENGINE_FAILURE)

    def _set_headers(self, plan: Plan, model: ModelConfig, tried: list[str]) -> None:
        failed = ", ".join(t.split(":", 1)[0] for t in tried)
        reason = plan.reason if not tried else f"{plan.reason}; fell back to {model.name} after {failed} failed"
        headers = self.headers
        if self.ids.client_request_id is not None:
            headers["x-request-id"] = self.ids.client_request_id
        else:
            headers["x-request-id"] = self.ids.request_id  # the OpenAI SDKs read this one
        headers["x-triage-model"] = model.name
        headers["x-triage-category"] = plan.category
        headers["x-triage-reason"] = reason.encode("ascii", "replace").decode()

    # -- after the first byte ----------------------------------------------------------------------------

    def events(self) -> AsyncIterator[bytes]:
        """The streamed answer, event by event, `model` rewritten, in the client's protocol; call once, after
        `start()`."""
        if self._events is None:
            self._events = self._relay_events()
            if self._translation is not None:
                self._upstream_events = self._events
                self._events = self._translation.events(self._upstream_events, self._native)
        return self._events

    async def _relay_events(self) -> AsyncIterator[bytes]:
        stream = self.stream
        attempt = self._attempt
        if stream is None or attempt is None:
            return
        rewrite = self.gateway.rewrites[attempt.model.name]
        if self.reservation is not None:  # a key's request: read the usage, and drop what only the router asked
            meter = StreamUsage(keep_usage_event=self.client_asked_usage)
            model_rewrite = rewrite

            def rewrite(events: bytes) -> bytes:
                events = model_rewrite(meter.feed(events))
                self.reported_tokens = meter.total
                return events

        drain = self.gateway.guard.drain
        yield rewrite(self._first)
        try:
            while events := await stream.next_events():
                yield rewrite(events)
                if drain.expired:  # shutting down: end it cleanly before the server cuts it
                    yield _error_event(
                        EngineUnavailable(
                            "Triage shut down before this stream finished; retry the request", code="shutting_down"
                        )
                    )
                    return  # the outcome stays CANCELLED: the model did nothing wrong
        except (EngineUnavailable, EngineTimeout) as exc:
            # Bytes already went out: no fallback is possible, so end the stream with an error the SDKs see.
            self.outcome = Outcome.ENGINE_FAILURE
            self._end_attempt(Outcome.ENGINE_FAILURE)
            log.warning("stream from %s broke after the first byte: %s", attempt.model.name, exc.message)
            metrics = self.gateway.metrics
            metrics.errors.labels(exc.type).inc()
            metrics.stream_errors.labels(attempt.model.name).inc()
            yield _error_event(exc)
            return
        self.outcome = Outcome.OK
        self._end_attempt(Outcome.OK)  # the engine is done; the last bytes may still be on their way out

    # -- accounting and release ----------------------------------------------------------------------------

    def _begin(self, model: ModelConfig) -> _Attempt:
        attempt = self._attempt = _Attempt(model, time.perf_counter())
        self._last_model = model
        gateway = self.gateway
        gateway.load.started(model.name, self.prompt_tokens, self.output_tokens)
        gateway.metrics.child(gateway.metrics.in_flight, model.name).inc()
        return attempt

    def _end_attempt(self, outcome: Outcome) -> None:
        """End the current attempt's accounting with `outcome` (idempotent: a second call finds none)."""
        attempt, self._attempt = self._attempt, None
        if attempt is None:
            return
        self.last_outcome = outcome
        gateway = self.gateway
        name = attempt.model.name
        elapsed_s = time.perf_counter() - self.received_s
        gateway.load.finished(name, self.prompt_tokens, self.output_tokens)
        gateway.guard.admission.model_finished()
        metrics = gateway.metrics
        metrics.child(metrics.in_flight, name).dec()
        metrics.child(metrics.requests, self.endpoint, name, outcome.value).inc()
        metrics.child(metrics.request_seconds, self.endpoint, name).observe(elapsed_s)
        if outcome is Outcome.ENGINE_FAILURE:
            gateway.guard.breakers.failure(name)
        gateway.policy.observe(self.request_id, name, outcome, elapsed_s)

    async def aclose(self) -> None:
        """Release everything this request holds, once; safe to call at any point, and again."""
        if self._closed:
            return
        self._closed = True
        try:
            for events in (self._events, self._upstream_events):
                if events is not None:
                    await events.aclose()  # type: ignore[attr-defined]
        finally:
            if self.stream is not None:
                self.stream.close()  # before the first byte is read in full, this aborts the engine's work too
            self._end_attempt(self.outcome)
            try:
                if self.reservation is not None:
                    # What the engine reported, else the reservation in full once an engine worked on the answer;
                    # a request that never got an answer costs nothing.
                    used = self.reported_tokens if self.reported_tokens is not None else self.reservation.tokens
                    if not self._first_byte:
                        used = 0
                    await self.gateway.guard.tenancy.settle(self.reservation, self._last_model, used)
            finally:
                if self.ticket is not None:
                    self.ticket.release()
                if self.recorded is not None:
                    self._finish_record(self.recorded)

    def _finish_record(self, recorded: Recorded) -> None:
        """Tell the console's ring how the request ended: names and floats, nothing serialised."""
        model = self._last_model.name if self._last_model is not None else recorded.planned
        ttft_s = None if self.first_byte_s is None else self.first_byte_s - self.received_s
        outcome = self.last_outcome or self.outcome
        self.gateway.recent.finish(recorded, outcome.value, model, ttft_s, time.perf_counter() - self.received_s)


def _error_event(exc: TriageError) -> bytes:
    return b"data: " + exc.body() + b"\n\ndata: [DONE]\n\n"


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
