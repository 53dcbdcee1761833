"""Receive: a generation request's raw body becomes an `Incoming` — the JSON to relay, its validated view, and
what the router reads from it (token estimates, needed capabilities, message-prefix hashes, whether it streams).

The body is validated once with pydantic, and the original JSON (minus Triage's own `route` object) is what
goes upstream, so fields Triage does not know are relayed untouched. A body in another protocol (Responses,
Anthropic Messages) arrives here already translated to chat form by its adapter (`server/protocols/`), with the
`Translation` that carries the answer back. Model aliases are resolved here. Pure functions; no I/O, no
routing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import ValidationError

from .errors import InvalidRequest
from .inspect_request import (
    Request,
    billed_prompt_tokens,
    default_output_cap,
    estimate_prompt_tokens,
    message_prefixes,
    needed_capabilities,
    output_cap,
    prompt_text,
    requested_output_tokens,
    sequences,
)
from .protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RouteOptions

if TYPE_CHECKING:
    from collections.abc import Callable

    from .classify import Classification
    from .config import ModelConfig
    from .privacy import Screening
    from .protocols.adapter import Translation

Endpoint = Literal["chat", "completions", "embeddings"]


@dataclass(frozen=True, slots=True)
class Demand:
    """What one request may cost in tokens, as a budget sees it (no routing state)."""

    prompt_tokens: int  # all prompts together, estimated
    sequences: int  # completions generated
    output_cap: int | None  # per sequence, as requested; None: not set
    default_cap: int | None  # per sequence when none is set and the engine's default applies; None: the context
    room: int  # per sequence: the model's context less the (longest) prompt
    estimate: int  # the planning estimate (a default output length where none is set)


UPSTREAM_PATHS: dict[Endpoint, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}
REQUEST_MODELS: dict[Endpoint, type[Request]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
    "embeddings": EmbeddingRequest,
}


@dataclass(slots=True)
class Incoming:
    endpoint: Endpoint
    payload: dict[str, Any]  # the JSON as sent, less `route`: relayed with `model` replaced
    request: Request  # the validated view of the same body
    prompt_tokens: int  # one sequence's, estimated from characters (a batch's longest); engines count exactly
    output_tokens: int  # per sequence: max_tokens as requested, or a planning default
    billed_prompt_tokens: int = 0  # every prompt of a batch together (0: as prompt_tokens)
    sequences: int = 1  # completions generated: prompts of a batch x max(n, best_of)
    # Kept by the first plan, so that planning again after a wait for capacity costs only the decision:
    screening: Screening | None = None  # what the privacy guard found (kinds only)
    classification: Classification | None = None
    translation: Translation | None = None  # how the answer goes back to a client of another protocol

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return self.request.stream

    @property
    def tokens(self) -> int:
        """Everything the request may cost, for rate limits and load: all prompts plus every sequence's output."""
        return (self.billed_prompt_tokens or self.prompt_tokens) + self.sequences * self.output_tokens

    def demand(self, context_length: int) -> Demand:
        """What a budget must hold for this request on a model with `context_length` tokens of context."""
        return Demand(
            prompt_tokens=self.billed_prompt_tokens or self.prompt_tokens,
            sequences=self.sequences,
            output_cap=output_cap(self.request),
            default_cap=default_output_cap(self.request),
            room=max(0, context_length - self.prompt_tokens),
            estimate=self.tokens,
        )

    def cap_output(self, max_tokens: int) -> None:
        """Send `max_tokens` upstream (the request set none; its budget allows no more)."""
        self.payload["max_tokens"] = max_tokens

    def ask_usage(self) -> bool:
        """Have a streamed answer end with the engine's usage; returns whether the client asked for it itself."""
        options = self.payload.get("stream_options")
        if not isinstance(options, dict):
            options = self.payload["stream_options"] = {}
        asked = options.get("include_usage") is True
        options["include_usage"] = True
        return asked

    @property
    def route(self) -> RouteOptions:
        return self.request.route or RouteOptions()

    @property
    def upstream_path(self) -> str:
        return UPSTREAM_PATHS[self.endpoint]

    def text(self) -> str:
        """What the classifier reads."""
        return prompt_text(self.request)

    def needs(self) -> frozenset[str]:
        return needed_capabilities(self.request)

    def prefixes(self) -> tuple[tuple[int, int], ...]:
        """(hash, estimated tokens) of each message prefix, shortest first: conversation affinity's key."""
        return message_prefixes(self.request)

    def upstream_body(self, upstream_model: str) -> bytes:
        self.payload["model"] = upstream_model
        try:
            return orjson.dumps(self.payload)
        except orjson.JSONEncodeError as exc:  # nesting orjson will not write (255 levels): the client's doing
            raise InvalidRequest(f"the request body cannot be relayed: {exc}; flatten its nesting") from None

    def sent_bodies(self, remote_native_apis: frozenset[str]) -> object:
        """What the privacy guard reads: the chat body, and the client's own too where a remote model serves
        its protocol natively (then it may leave untranslated)."""
        translation = self.translation
        if translation is not None and translation.native_api in remote_native_apis:
            return {"chat": self.payload, "client": translation.client_body()}
        return self.payload

    def upstream(self, model: ModelConfig) -> tuple[str, bytes, bool]:
        """Path and body for `model`, and whether they are the client's own (the engine serves its protocol)."""
        translation = self.translation
        if translation is not None and translation.native_api in model.native_apis:
            return translation.native_path, translation.native_body(model.upstream_name), True
        if self.endpoint == "chat" and model.output_limit_field is not None:
            name_output_limit(self.payload, model.output_limit_field)
        return self.upstream_path, self.upstream_body(model.upstream_name), False


OUTPUT_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")  # chat's two names for the output cap


def name_output_limit(payload: dict[str, Any], field: str) -> None:
    """Put a chat body's output cap under `field` only: the smaller of the two names' values when both are set.
    Idempotent, so each attempt of a request (fallbacks to models that name it differently) can apply its own."""
    caps = [payload.pop(name) for name in OUTPUT_LIMIT_FIELDS if name in payload]
    values = [c for c in caps if c is not None]  # validated as positive ints; null means no cap
    if values:
        payload[field] = min(values)


def receive(
    raw: bytes,
    endpoint: Endpoint,
    default_model: str | None = None,
    resolve_model: Callable[[str], str] | None = None,
) -> Incoming:
    """Parse and validate one body; `InvalidRequest` (400) names the first bad field."""
    payload = parse_object(raw)
    if default_model is not None:
        payload.setdefault("model", default_model)
    return incoming(payload, endpoint, resolve_model)


def parse_object(raw: bytes) -> dict[str, Any]:
    """A body that must be a JSON object; `InvalidRequest` (400) otherwise."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    return payload


def incoming(
    payload: dict[str, Any],
    endpoint: Endpoint,
    resolve_model: Callable[[str], str] | None = None,
    translation: Translation | None = None,
) -> Incoming:
    """Validate a chat or completions body (as sent, or translated from another protocol)."""
    model = payload.get("model")
    if resolve_model is not None and isinstance(model, str):
        payload["model"] = resolve_model(model)
    try:
        request = REQUEST_MODELS[endpoint].model_validate(payload)
    except ValidationError as exc:
        raise invalid_request(exc) from None
    payload.pop("route", None)  # Triage's own routing controls never reach an engine
    return Incoming(
        endpoint,
        payload,
        request,
        estimate_prompt_tokens(request),
        requested_output_tokens(request),
        billed_prompt_tokens(request),
        sequences(request),
        translation=translation,
    )


def invalid_request(exc: ValidationError) -> InvalidRequest:
    """The first validation problem, named by its field path, as a 400."""
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return InvalidRequest(f"invalid '{param}': {first['msg']}{more}", param=param)
