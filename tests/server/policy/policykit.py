"""Shared builders for the policy tests: the demo trio's profiles, classified requests, busy engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.classify import Classification
from server.config import ModelConfig, PolicyConfig, load_config
from server.load import LoadBoard
from server.policy import Decision, RouteRequest
from server.policy.triage import TriagePolicy
from server.protocol import RouteOptions

DEMO = Path(__file__).parents[3] / "configs" / "demo.yaml"


def trio(gpus: tuple[str, str, str] = ("0", "0", "0")) -> list[ModelConfig]:
    models = [m for m in load_config(DEMO).models if m.name in ("coder", "chat", "fast")]
    return [m.model_copy(update={"gpu": g, "simulated": None}) for m, g in zip(models, gpus, strict=True)]


def remote_model(**profile: Any) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "name": "remote",
            "kind": "openai",
            "endpoints": ["https://api.example.invalid/v1"],
            "remote": True,
            "profile": {
                "quality_default": 0.9,
                "base_ttft_ms": 400.0,
                "decode_tok_per_s": 80.0,
                "usd_per_1m_tokens": 0.6,
                **profile,
            },
        }
    )


def request(
    category: str = "code",
    complexity: float = 0.3,
    rid: str = "r1",
    prompt_tokens: int = 50,
    max_tokens: int = 256,
    **options: Any,
) -> RouteRequest:
    cls = Classification(category, {category: 1.0}, complexity)
    return RouteRequest(rid, cls, prompt_tokens, max_tokens, options=RouteOptions(**options))


def policy(models: list[ModelConfig] | None = None, load: LoadBoard | None = None, **settings: Any) -> TriagePolicy:
    settings.setdefault("explore_share", 0.0)
    options = settings.pop("options", {})
    options.setdefault("seed", 0)
    return TriagePolicy(models or trio(), load or LoadBoard(), PolicyConfig(name="triage", options=options, **settings))


def busy(load: LoadBoard, model: str, in_flight: int, prompt_each: int = 450, output_each: int = 250) -> None:
    """`model` has `in_flight` requests open, each `prompt_each` prompt and `output_each` requested output tokens."""
    state = load.engine(model)
    state.in_flight = in_flight
    state.in_flight_prompt_tokens = in_flight * prompt_each
    state.in_flight_output_tokens = in_flight * output_each


def commit(p: TriagePolicy, r: RouteRequest) -> Decision:
    """What the gateway does for a request that runs: the pure choice, then commit (exploration, audit)."""
    return p.commit(r, p.choose(r))
