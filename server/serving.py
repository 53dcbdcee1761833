"""The request path, top to bottom: receive → plan → commit → relay.

`Gateway.serve()` runs it for one generation request inside a `Relay` the front door made and will close:

- **receive** (`intake.py`, through the route's adapter in `protocols/`): parse and validate the body once, in
  chat form whatever the client's protocol; model aliases; the key's per-minute limits.
- **plan**: classify the prompt and let the policy decide. Pure: no writes, no waiting, no randomness drawn,
  no metric moved, so the dry run `/v1/route` is exactly this step.
- **commit**, for requests that run: the global admission slot, a bounded wait when every candidate is at its
  cap (then plan again), the tenant's budget reservation, the policy's commit (exploration, audit row), metrics.
- **relay** (`relay.py`): the engine request with fallbacks before the first byte, then the answer.

Knows nothing about HTTP: `frontdoor.py` turns the `Relay` into a response. Engine wire details stay in
`backends/`; how a model is chosen stays in `policy/`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import orjson
from pydantic import ValidationError

from .aliases import ModelAliases
from .auth import OPEN_TENANT, Tenant
from .backends import EngineClient
from .classify import Classification, Classifier
from .config import ModelConfig, TriageConfig
from .console.recent import RecentDecisions
from .errors import (
    AtCapacity,
    EngineUnavailable,
    Forbidden,
    InvalidRequest,
    KeptLocal,
    ModelNotFound,
    NoEligibleModel,
    retry_after,
)
from .intake import Endpoint, Incoming, invalid_request, receive
from .load import LoadBoard
from .policy import Policy, RouteRequest
from .protocol import CandidateView, FeedbackRequest, RouteDecisionResponse
from .protocols import Adapter, ReceiveContext
from .protocols.response_store import ResponseStore
from .relay import DisconnectWaiter, Plan, Relay, RequestIds
from .safeguards import Safeguards, build_safeguards
from .telemetry.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
UNCLASSIFIED = Classification("unclassified", {}, 0.0)


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
        responses: ResponseStore | None = None,
    ) -> None:
        self.config = config
        self.classifier = classifier
        self.policy = policy
        self.clients = clients
        self.load = load
        self.metrics = metrics
        self.guard = safeguards or build_safeguards(config, load, metrics)
        self.models = {m.name: m for m in config.models}
        self.aliases = ModelAliases(config)
        # APIs a remote model serves natively: a body in one of them may leave as sent, so the guard reads it too
        self.remote_native_apis = frozenset(api for m in config.models if m.remote for api in m.native_apis)
        self.responses = responses  # stored Responses-API answers (None: previous_response_id is refused)
        self.started_at = int(time.time())
        self.recent = RecentDecisions()  # what the operator console shows: committed requests, newest last
        # Byte patterns for the `model` rewrite, built once: engines write compact JSON (`"model":"x"`).
        self.rewrites = {m.name: _model_rewrite(m) for m in config.models}
        # The privacy guard decides where a prompt may go and whether the audit log may keep its hash; with no
        # remote model and no audit log its answer changes nothing, so it does not run (it is most of the
        # router's own work on a small request).
        self.screen_prompts = any(m.remote for m in config.models) or config.policy.store is not None

    def models_for(self, tenant: Tenant) -> list[ModelConfig]:
        """The configured models this caller may use: its key's allow list, and remote ones only if allowed."""
        key = tenant.key
        if key is None:
            return list(self.config.models)
        allowed = key.models
        return [
            m
            for m in self.config.models
            if (allowed is None or m.name in allowed) and (not m.remote or tenant.allow_remote)
        ]

    def relay(self, adapter: Adapter, ids: RequestIds, tenant: Tenant, received_s: float) -> Relay:
        """A new request's owner of everything it will hold; the caller must `aclose()` it."""
        return Relay(self, adapter, ids, tenant, received_s)

    async def serve(self, relay: Relay, raw: bytes, until_disconnect: DisconnectWaiter | None = None) -> None:
        """receive → plan → commit → relay for one generation request; on return `relay` holds the answer."""
        self.guard.drain.check()
        context = ReceiveContext(relay.request_id, relay.tenant.key_id, self.aliases.resolve, self.responses)
        incoming = await relay.adapter.receive(raw, context)
        self.guard.tenancy.admit(relay.tenant, incoming.tokens)
        # While every candidate is at its in-flight cap, wait (bounded) for one to finish and plan again.
        plan = await self.guard.admission.when_room(lambda: self.plan(incoming, relay.ids, relay.tenant))
        plan = await self.commit(relay, incoming, plan)
        await relay.start(plan, incoming, until_disconnect)

    # -- plan: classify + decide, no side effects --------------------------------------------------------------

    async def plan(self, incoming: Incoming, ids: RequestIds, tenant: Tenant = OPEN_TENANT) -> Plan:
        """Where this request would go and why; raises AtCapacity when every candidate is at its cap. Changes
        nothing; the privacy scan and the classification are kept on `incoming`, so planning again is cheap."""
        if incoming.screening is None and self.screen_prompts:  # large bodies off the event loop; fails closed
            incoming.screening = await self.guard.privacy.screen(incoming.sent_bodies(self.remote_native_apis))
        private = list(incoming.screening.kinds) if incoming.screening is not None else []
        if incoming.model != "auto":
            return self._plan_named(incoming, tenant, private)
        t0 = time.perf_counter()
        text = incoming.text()
        if incoming.classification is None:
            incoming.classification = await self.classifier.classify(text)
        classification = incoming.classification
        t1 = time.perf_counter()
        route_request = RouteRequest(
            request_id=ids.request_id,
            classification=classification,
            prompt_tokens=incoming.prompt_tokens,
            max_output_tokens=incoming.output_tokens,
            options=self.guard.tenancy.restrict(tenant, incoming.route),
            needs=incoming.needs(),
            tenant_allow_remote=tenant.allow_remote,
            local_only=bool(private),
            prompt_text="" if private else text,  # nothing the guard flagged reaches the store, not even a hash
            key_id=tenant.key_id,
            client_request_id=ids.client_request_id,
            prefixes=incoming.prefixes(),
        )
        try:
            decision = self.policy.choose(route_request)
        except NoEligibleModel as exc:
            if private:
                raise KeptLocal(
                    f"the prompt contains {', '.join(private)}, so it must stay on a local model, and none can "
                    f"serve it: {exc.message}"
                ) from None
            raise
        t2 = time.perf_counter()
        reason = decision.reason + (f"; kept local: {', '.join(private)}" if private else "")
        return Plan(
            self.models[decision.model],
            reason,
            classification,
            route_request,
            decision,
            (t1 - t0) * 1e3,
            (t2 - t1) * 1e3,
            private,
        )

    def _plan_named(self, incoming: Incoming, tenant: Tenant, private: list[str]) -> Plan:
        model = self.models.get(incoming.model)
        if model is None:
            raise ModelNotFound(
                f"model '{incoming.model}' does not exist; use 'auto' or one of: {', '.join(self.models)} "
                "(GET /v1/models lists them), or map it to one with an alias (config `aliases`)",
                param="model",
            )
        self.guard.tenancy.check_model(tenant, model)
        if model.remote and not self.policy.settings.allow_remote:
            raise Forbidden(
                f"model '{model.name}' is a remote provider and policy.allow_remote is false; name a local model",
                param="model",
            )
        if ("embeddings" in incoming.needs()) != ("embeddings" in model.capabilities):
            route = "POST /v1/embeddings" if "embeddings" in model.capabilities else "chat or completions"
            raise InvalidRequest(f"model '{model.name}' serves {route} only; name another model", param="model")
        if private and model.remote:
            raise KeptLocal(
                f"the prompt contains {', '.join(private)}, so it may not go to remote model '{model.name}'; "
                "name a local model or use 'auto'",
                param="model",
            )
        if not self.guard.breakers.available(model.name):
            retry_after_s = self.guard.breakers.retry_after_s(model.name)
            raise EngineUnavailable(
                f"engine for '{model.name}' is failing (circuit breaker open); retry later or use 'auto'",
                headers=retry_after(retry_after_s),  # at least 1 s: a 0 would invite an immediate retry
            )
        if self.load.engine(model.name).in_flight >= model.max_in_flight:
            raise AtCapacity(
                f"model '{model.name}' is at its cap of {model.max_in_flight} requests in flight; retry later "
                "or use 'auto'"
            )
        return Plan(model, "requested by name", UNCLASSIFIED, private=private)

    # -- commit: what only a request that runs takes ------------------------------------------------------

    async def commit(self, relay: Relay, incoming: Incoming, plan: Plan) -> Plan:
        """Book the plan for a request that will run; returns the plan it runs (exploration may change it)."""
        guard = self.guard
        relay.ticket = await guard.admission.enter()
        relay.prompt_tokens = incoming.billed_prompt_tokens or incoming.prompt_tokens
        relay.output_tokens = incoming.sequences * incoming.output_tokens
        reservation = await guard.tenancy.reserve(
            relay.tenant, relay.request_id, plan.model, incoming.demand(plan.model.context_length)
        )
        relay.reservation = reservation
        if reservation is not None:  # a key's request: cap what its budget allows, and learn what it used
            if reservation.max_tokens is not None:
                incoming.cap_output(reservation.max_tokens)
                relay.output_tokens = incoming.sequences * min(incoming.output_tokens, reservation.max_tokens)
            if incoming.stream:
                relay.client_asked_usage = incoming.ask_usage()
        if plan.decision is not None and plan.route_request is not None:
            decision = self.policy.commit(plan.route_request, plan.decision)
            if decision is not plan.decision:
                plan.decision, plan.model, plan.reason = decision, self.models[decision.model], decision.reason
        metrics = self.metrics
        if plan.route_request is not None:
            metrics.classify_seconds.observe(plan.classify_ms / 1e3)
            metrics.child(metrics.decisions, plan.category, plan.model.name).inc()
        if incoming.screening is not None:
            metrics.privacy_scan_seconds.observe(incoming.screening.elapsed_s)
        for kind in plan.private:
            metrics.privacy_findings.labels(kind).inc()
        relay.recorded = self.recent.add(relay.request_id, relay.endpoint, incoming.stream, plan, relay.tenant.key_id)
        return plan

    # -- the dry run and feedback -------------------------------------------------------------------------------

    async def dry_run(self, raw: bytes, ids: RequestIds, tenant: Tenant = OPEN_TENANT) -> RouteDecisionResponse:
        """The plan `serve()` would make for this body, explained; changes nothing but its own counter."""
        self.metrics.dry_runs.inc()
        endpoint: Endpoint = "chat" if b'"messages"' in raw else "completions"
        if endpoint == "completions" and b'"input"' in raw and b'"prompt"' not in raw:
            endpoint = "embeddings"
        incoming = receive(raw, endpoint, default_model="auto", resolve_model=self.aliases.resolve)
        plan = await self.plan(incoming, ids, tenant)
        decision = plan.decision
        c = plan.classification
        return RouteDecisionResponse(
            request_id=ids.request_id,
            model=plan.model.name,
            category=c.category,
            category_scores={k: round(v, 5) for k, v in c.category_scores.items()},
            complexity=c.complexity,
            offers_choices=c.offers_choices,
            reason=plan.reason,
            overflow=bool(decision and decision.overflow),
            candidates=[CandidateView(**c.as_dict()) for c in decision.candidates] if decision else [],
            classify_ms=round(plan.classify_ms, 4),
            decide_ms=round(plan.decide_ms, 4),
        )

    async def feedback(self, raw: bytes, tenant: Tenant = OPEN_TENANT, client: str | None = None) -> bytes:
        """A score for a committed request, from the key that made it, once; rate-limited per key (open mode:
        per `client` address)."""
        self.guard.tenancy.admit_feedback(tenant, client)
        try:
            feedback = FeedbackRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise invalid_request(exc) from None
        accepted = self.policy.feedback(feedback.request_id, feedback.score, tenant.key_id)
        if accepted:
            self.recent.feedback(feedback.request_id, feedback.score)
        return orjson.dumps({"request_id": feedback.request_id, "accepted": accepted})


def _model_rewrite(model: ModelConfig) -> Callable[[bytes], bytes]:
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
