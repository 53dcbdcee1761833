"""OpenAI wire models: what clients send and what Triage answers with (pydantic and stdlib only).

Request models validate the fields Triage reads or must reject early and allow every other field, which is
relayed to the engine untouched (vLLM's sampling extras, `guided_json`, ...). Validation is strict: a field is
of its type or the request is a 400 naming it (`"stream": "yes"`, `"max_tokens": "2"`), never coerced, since
the router would act on the coerced value while the engine receives the original. Nothing here knows about
routing or HTTP; `serving.py` decides what to do with a validated request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The one list of weight preset names (config `policy.preset`, a request's `route.priority`); their weights are
# server.policy.presets.PRESETS.
Priority = Literal["balanced", "quality", "speed", "cost"]


class OpenAIBase(BaseModel):
    # Unknown fields are kept (and relayed): engines accept many extensions we need not know about. Known ones
    # are strict: no "2" for 2, no "yes" for true.
    model_config = ConfigDict(extra="allow", strict=True)


class StreamOptions(OpenAIBase):
    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None


class RouteOptions(BaseModel):
    """Per-request routing controls, sent as the `route` object in the body (never relayed)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    priority: Priority | None = Field(None, description="Weight preset: balanced, quality, speed or cost.")
    weights: dict[Literal["quality", "latency", "cost"], float] | None = Field(
        None, description="Explicit utility weights; override the preset's."
    )
    max_latency_ms: float | None = Field(None, gt=0, description="Predicted end-to-end latency target.")
    max_cost: float | None = Field(None, ge=0, description="Upper bound on predicted cost for this request.")
    models: list[str] | None = Field(None, min_length=1, description="Allow list of model names.")
    allow_remote: bool | None = Field(None, description="Whether overflow to a remote provider is allowed.")


class ContentPart(OpenAIBase):
    type: str
    text: str | None = None


class ChatMessage(OpenAIBase):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class SamplingFields(OpenAIBase):
    """Fields shared by both generation endpoints."""

    model: str = Field(description="A configured model name, or 'auto' to let Triage choose.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    route: RouteOptions | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text, a batch of texts, token ids, or a batch of token-id lists."
    )
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=20)
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=128, description="Sequences generated per prompt; n are returned.")


class EmbeddingRequest(OpenAIBase):
    model: str = Field(description="An embedding model's name, or 'auto' to let Triage choose among them.")
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text, a batch of texts, token ids, or a batch of token-id lists."
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    route: RouteOptions | None = None

    @property
    def stream(self) -> bool:
        return False  # embeddings are answered whole


class Embedding(BaseModel):
    index: int
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str = Field(description="The vector, or its little-endian float32 bytes in base64.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "triage"
    roles: list[str] = Field(default_factory=list)
    context_length: int | None = None
    remote: bool = False
    capabilities: list[str] = Field(default_factory=list, description="tools, json_mode, vision, embeddings.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class CandidateView(BaseModel):
    model_config = ConfigDict(extra="allow")  # the policy adds whatever terms it used

    model: str
    score: float | None
    eligible: bool
    reason: str


class RouteDecisionResponse(BaseModel):
    request_id: str
    model: str
    category: str
    category_scores: dict[str, float]
    complexity: float
    # the prompt lists answer options or ends in an "Answer:" slot (the learned quality predictor weighs it;
    # models/answer_format.py); False where the keyword classifier looked
    offers_choices: bool = False
    reason: str
    overflow: bool = False
    candidates: list[CandidateView]
    classify_ms: float
    decide_ms: float


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(min_length=1)
    score: float = Field(ge=0, le=1, description="1 = good answer, 0 = bad answer.")
