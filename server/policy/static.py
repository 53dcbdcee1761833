"""Static task routing: each category goes to a model whose role tags name it, least busy first.

The baseline Triage is measured against, and what semantic routers do: task fit, blind to load except as a
tie-break. The category -> role map is `policy.options.category_roles` (defaults below); a category whose role
no eligible model has falls back to the least busy eligible local model. Pure: nothing to commit or learn.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..config import CATEGORIES, ModelConfig, PolicyConfig
from ..load import LoadBoard
from .base import Candidate, Decision, Policy, RouteRequest
from .eligibility import ineligible_reason, raise_no_candidate

DEFAULT_CATEGORY_ROLES: dict[str, str] = {
    "code": "code",
    "math": "chat",
    "reasoning": "chat",
    "creative_writing": "chat",
    "summarization": "chat",
    "extraction": "fast",
    "translation_multilingual": "chat",
    "roleplay_chat": "chat",
    "general_qa": "fast",
    "brainstorming": "chat",
    "classification": "fast",
}


class StaticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category_roles: dict[str, str] = Field(
        default_factory=dict, description="Category -> role tag; overrides the defaults for the categories named."
    )

    def model_post_init(self, context: object) -> None:
        unknown = set(self.category_roles) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"category_roles: unknown categories {sorted(unknown)}; use {', '.join(CATEGORIES)}")


class StaticPolicy(Policy):
    name: ClassVar[str] = "static"
    Options: ClassVar[type[BaseModel]] = StaticOptions

    def __init__(self, models: list[ModelConfig], load: LoadBoard, settings: PolicyConfig) -> None:
        super().__init__(models, load, settings)
        self.roles = {**DEFAULT_CATEGORY_ROLES, **self.options_of(settings).category_roles}

    def choose(self, request: RouteRequest) -> Decision:
        roles = self.roles
        wanted = roles.get(request.classification.category, "chat")
        candidates: list[Candidate] = []
        for model in self.models:
            load = self.load.engine(model.name)
            why_not = ineligible_reason(model, load, request, self.settings.allow_remote)
            if why_not is not None:
                candidates.append(Candidate(model.name, False, why_not))
                continue
            role_match = 1.0 if wanted in model.roles else 0.0
            busy = load.in_flight / model.max_in_flight
            remote_penalty = 2.0 if model.remote else 0.0  # local first, always
            score = role_match - 0.1 * busy - remote_penalty
            reason = f"role '{wanted}'" if role_match else f"no '{wanted}' role"
            candidates.append(
                Candidate(model.name, True, reason, round(score, 4), {"role_match": role_match, "busy": round(busy, 4)})
            )
        ranked = sorted((c for c in candidates if c.eligible), key=lambda c: c.score or 0.0, reverse=True)
        if not ranked:
            raise_no_candidate(candidates, request, self.models)
        best = ranked[0]
        reason = f"{request.classification.category} -> {best.reason}"
        return Decision(
            best.model,
            reason,
            candidates,
            fallbacks=[c.model for c in ranked[1:]],
            overflow=self.by_name[best.model].remote,
        )
