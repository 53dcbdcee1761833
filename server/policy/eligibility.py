"""Hard constraints every policy applies before weighing anything: can this model serve this request at all.

`ineligible_reason` returns why a model is ruled out, or `None`. `raise_no_candidate` turns a decision with no
eligible candidate into the right client error; when no configured model declares a capability the request
uses, the error names the config key that would fix it. Pure functions of config, load and the request; no
scoring.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NoReturn

from ..config import CAPABILITY_NEEDS, ModelConfig
from ..errors import AtCapacity, EngineUnavailable, NoEligibleModel
from ..load import EngineLoad
from .base import Candidate, RouteRequest

UNHEALTHY = "unhealthy"
AT_CAP = "at its in-flight cap"
LACKS = "lacks"


def ineligible_reason(
    model: ModelConfig, load: EngineLoad, request: RouteRequest, default_allow_remote: bool
) -> str | None:
    options = request.options
    if options.models is not None and model.name not in options.models:
        return "not in the request's allow list"
    if model.remote:
        # policy.allow_remote is a ceiling: a request may opt out of remote providers, never into them
        allowed = default_allow_remote and options.allow_remote is not False
        if request.local_only:
            return "request must stay local"
        if not (allowed and request.tenant_allow_remote):
            return "remote not allowed"
    if ("embeddings" in request.needs) != ("embeddings" in model.capabilities):
        return "an embedding model" if "embeddings" in model.capabilities else "not an embedding model"
    missing = request.needs.difference(model.capabilities)
    if missing:
        return f"{LACKS} {', '.join(sorted(missing))}"
    needed = request.prompt_tokens + request.max_output_tokens
    if needed > model.context_length:
        return f"context {model.context_length} < {needed} tokens needed"
    if not load.healthy:
        return f"{UNHEALTHY}: {load.unhealthy_reason or 'failed health check'}"
    if load.breaker_open_until_s and load.breaker_open_until_s > time.monotonic():
        return f"{UNHEALTHY}: circuit breaker open after repeated failures"
    if load.in_flight >= model.max_in_flight:
        return f"{AT_CAP} ({model.max_in_flight})"
    return None


def raise_no_candidate(
    candidates: list[Candidate], request: RouteRequest | None = None, models: Sequence[ModelConfig] = ()
) -> NoReturn:
    """No candidate is eligible: say whether that is the config's, the request's, capacity's or health's fault.

    `candidates` and `models` are in config order, one candidate per model; without `request` and `models` no
    capability is checked against the config."""
    details = "; ".join(f"{c.model}: {c.reason}" for c in candidates)
    declared = {cap for m in models for cap in m.capabilities}
    unserved = sorted(request.needs - declared) if request is not None and models else []
    if unserved:
        # the first model ruled out only by the capability (it passed the allow lists), else the first one
        i = next((k for k, c in enumerate(candidates) if c.reason.startswith(LACKS)), 0)
        fixes = "; ".join(
            f"add '{cap}' to models[{i}].capabilities ({CAPABILITY_NEEDS.get(cap, 'an engine that serves it')})"
            for cap in unserved
        )
        raise NoEligibleModel(
            f"no model can serve {' and '.join(unserved)}: {fixes} ({details})", code="capability_not_configured"
        )
    reasons = [c.reason for c in candidates]
    if any(r.startswith(AT_CAP) for r in reasons):
        raise AtCapacity(f"every model that could serve this request is at capacity ({details}); retry later")
    if any(r.startswith(UNHEALTHY) for r in reasons):
        raise EngineUnavailable(f"no healthy engine can serve this request ({details})")
    raise NoEligibleModel(
        f"no configured model can serve this request ({details}); relax the request's constraints or name a model"
    )
