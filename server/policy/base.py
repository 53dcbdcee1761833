"""The Policy interface: one method, `choose(request) -> Decision`, and the value types around it.

A policy sees the configured models, the live `LoadBoard` and one classified request; it returns the model to
use, why, and every candidate with the terms it weighed (this is what `/v1/route` and the `x-triage-*` headers
explain). It knows nothing about HTTP or engines' wire formats, and must stay well under a millisecond.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..classify import Classification
from ..config import ModelConfig, PolicyConfig
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
    explored: bool = False  # chosen by exploration rather than the best score


class Policy(ABC):
    """Base class; subclasses register themselves in `POLICIES` under `name`."""

    name: ClassVar[str]
    uses_store: ClassVar[bool] = False  # True: the app opens the SQLite store and calls `attach_store`

    def __init__(self, models: list[ModelConfig], load: LoadBoard, settings: PolicyConfig) -> None:
        self.models = models
        self.by_name = {m.name: m for m in models}
        self.load = load
        self.settings = settings

    @abstractmethod
    def choose(self, request: RouteRequest) -> Decision:
        """Pick a model for `request`; raise `NoEligibleModel` or `EngineUnavailable` if none can serve it."""

    def feedback(self, request_id: str, score: float) -> bool:
        """Learn from a client's score of an answer; False where this policy does not learn."""
        return False

    def observe(self, request_id: str, model: str, ok: bool, latency_s: float) -> None:
        """Implicit outcome of one request (served, or failed with an error or timeout); default: ignore."""
        return None

    def attach_store(self, store: Store) -> None:
        """Receive the opened decision/feedback store (only called when `uses_store`)."""
        return None
