"""Hard constraints every policy applies before weighing anything: can this model serve this request at all.

`ineligible_reason` returns why a model is ruled out, or `None`. `raise_no_candidate` turns a decision with no
eligible candidate into the right client error. Pure functions of config, load and the request; no scoring.
"""

from __future__ import annotations

import time
from typing import NoReturn

from ..config import ModelConfig
from ..errors import AtCapacity, EngineUnavailable, NoEligibleModel
from ..load import EngineLoad
from .base import Candidate, RouteRequest

UNHEALTHY = "unhealthy"
AT_CAP = "at its in-flight cap"


def ineligible_reason(
    model: ModelConfig, load: EngineLoad, request: RouteRequest, default_allow_remote: bool
) -> str | None:
    options = request.options
    if options.models is not None and model.name not in options.models:
        return "not in the request's allow list"
    if model.remote:
        allowed = options.allow_remote if options.allow_remote is not None else default_allow_remote
        if request.local_only:
            return "request must stay local"
        if not (allowed and request.tenant_allow_remote):
            return "remote not allowed"
    if ("embeddings" in request.needs) != ("embeddings" in model.capabilities):
        return "an embedding model" if "embeddings" in model.capabilities else "not an embedding model"
    missing = request.needs.difference(model.capabilities)
    if missing:
        return f"lacks {', '.join(sorted(missing))}"
    needed = request.context_tokens or request.prompt_tokens + request.max_output_tokens
    if needed > model.context_length:
        return f"context {model.context_length} < {needed} tokens needed"
    if not load.healthy:
        return f"{UNHEALTHY}: {load.unhealthy_reason or 'failed health check'}"
    if load.breaker_open_until_s and load.breaker_open_until_s > time.monotonic():
        return f"{UNHEALTHY}: circuit breaker open after repeated failures"
    if load.in_flight >= model.max_in_flight:
        return f"{AT_CAP} ({model.max_in_flight})"
    return None


def raise_no_candidate(candidates: list[Candidate]) -> NoReturn:
    """No candidate is eligible: say whether that is the request's fault, capacity, or engine health."""
    details = "; ".join(f"{c.model}: {c.reason}" for c in candidates)
    reasons = [c.reason for c in candidates]
    if any(r.startswith(AT_CAP) for r in reasons):
        raise AtCapacity(f"every model that could serve this request is at capacity ({details}); retry later")
    if any(r.startswith(UNHEALTHY) for r in reasons):
        raise EngineUnavailable(f"no healthy engine can serve this request ({details})")
    raise NoEligibleModel(
        f"no configured model can serve this request ({details}); relax the request's constraints or name a model"
    )
