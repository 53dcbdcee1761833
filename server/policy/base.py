"""The Policy interface: `choose(request) -> Decision` (pure), `commit` (books a real request), and the value
types around them.

A policy sees the configured models, the live `LoadBoard` and one classified request; `choose` returns the
model to use, why, and every candidate with the terms it weighed (this is what `/v1/route` and the
`x-triage-*` headers explain) and changes nothing, so a dry run can call it freely. `commit` is called only for
a request that will run: it may swap in an exploration choice and records the decision. Outcomes come back
through `observe` (four-valued: only engine failures say something bad about a model) and `feedback`. It knows
nothing about HTTP or engines' wire formats, and must stay well under a millisecond.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..classify import Classification
from ..config import ConfigError, ModelConfig, PolicyConfig
from ..load import LoadBoard
from ..protocol import RouteOptions

if TYPE_CHECKING:
    from ..store import Store


@dataclass(slots=True)
class RouteRequest:
    """What a policy knows about one request."""

    request_id: str
    classification: Classification
    prompt_tokens: int  # estimated from characters; engines count exactly
    max_output_tokens: int  # as requested, or a default
    options: RouteOptions = field(default_factory=RouteOptions)
    needs: frozenset[str] = frozenset()  # capabilities the body uses: tools, json_mode, vision
    tenant_allow_remote: bool = True  # the caller's key may forbid remote providers
    local_only: bool = False  # e.g. the privacy guard found personal data
    prompt_text: str = ""  # what the classifier read; the audit log keeps only its hash unless configured
    key_id: str | None = None  # the API key that sent it (None in open mode): only it may give feedback
    client_request_id: str | None = None  # the client's own x-request-id, kept beside ours, never a key
    context_tokens: int | None = None  # what one sequence must fit in the context; None: prompt + output


@dataclass(slots=True)
class Candidate:
    model: str
    eligible: bool
    reason: str
    score: float | None = None
    terms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "score": self.score,
            "eligible": self.eligible,
            "reason": self.reason,
            **self.terms,
        }


@dataclass(slots=True)
class Decision:
    model: str
    reason: str
    candidates: list[Candidate]
    fallbacks: list[str] = field(default_factory=list)  # next-best eligible models, best first
    overflow: bool = False  # sent to a remote provider because local capacity could not serve it
    explored: bool = False  # chosen by exploration rather than the best score (set by `commit`)
    preset: str = ""  # the weights' name: a preset, or "custom"
    explorable: list[str] = field(default_factory=list)  # near-best candidates `commit` may explore, best first
    quality_weight: float = 0.0  # w_q * (0.5 + complexity): what exploration redraws quality under


class Outcome(enum.StrEnum):
    """How one attempt on one model ended. Only `ENGINE_FAILURE` says something bad about the model."""

    OK = "ok"  # answered (streams: ran to the end)
    ENGINE_FAILURE = "engine_failure"  # engine 5xx, timeout, unreachable, or a stream dropped mid-way
    REFUSED = "refused"  # engine 4xx: the request's own fault (bad tool schema, context too long)
    CANCELLED = "cancelled"  # the client went away first


class NoOptions(BaseModel):
    """`policy.options` of a policy that takes none."""

    model_config = ConfigDict(extra="forbid")


class Policy(ABC):
    """Base class; subclasses register themselves in `POLICIES` under `name` and type `policy.options` as
    `Options` (validated at start-up, so a misspelt option fails with its key named)."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    uses_store: ClassVar[bool] = False  # True: the app opens the SQLite store and calls `attach_store`

    def __init__(self, models: list[ModelConfig], load: LoadBoard, settings: PolicyConfig) -> None:
        self.models = models
        self.by_name = {m.name: m for m in models}
        self.load = load
        self.settings = settings

    @classmethod
    def options_of(cls, settings: PolicyConfig) -> Any:
        """`settings.options` validated as this policy's `Options`; `ConfigError` names the bad key."""
        try:
            return cls.Options.model_validate(settings.options)
        except ValidationError as exc:
            problems = "; ".join(
                f"policy.options.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            known = ", ".join(cls.Options.model_fields) or "none"
            raise ConfigError(f"{problems} (the {cls.name} policy's options: {known})") from None

    @abstractmethod
    def choose(self, request: RouteRequest) -> Decision:
        """Pick a model for `request` without changing any state; raise `NoEligibleModel`, `RateLimited` (every
        candidate at its cap) or `EngineUnavailable` if none can serve it."""

    def commit(self, request: RouteRequest, decision: Decision) -> Decision:
        """Book `decision` for a request that will run; may return another choice (exploration). Default: as is."""
        return decision

    def feedback(self, request_id: str, score: float, key_id: str | None = None) -> bool:
        """Learn from a client's score of an answer; False where this policy does not learn or does not know
        the request (or `key_id` is not the key that made it)."""
        return False

    def observe(self, request_id: str, model: str, outcome: Outcome, latency_s: float) -> None:
        """How one attempt on `model` ended; default: ignore."""
        return None

    def attach_store(self, store: Store) -> None:
        """Receive the opened decision/feedback store (only called when `uses_store`)."""
        return None
