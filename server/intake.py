"""Receive: a generation request's raw body becomes an `Incoming` — the JSON to relay, its validated view, and
what the router reads from it (token estimates, needed capabilities, whether it streams).

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
from .inspect_request import estimate_prompt_tokens, needed_capabilities, prompt_text, requested_output_tokens
from .protocol import ChatCompletionRequest, CompletionRequest, RouteOptions

if TYPE_CHECKING:
    from collections.abc import Callable

    from .classify import Classification
    from .config import ModelConfig
    from .privacy import Screening
    from .protocols.adapter import Translation

Endpoint = Literal["chat", "completions"]
UPSTREAM_PATHS: dict[Endpoint, str] = {"chat": "/chat/completions", "completions": "/completions"}
REQUEST_MODELS: dict[Endpoint, type[ChatCompletionRequest] | type[CompletionRequest]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
}


@dataclass(slots=True)
class Incoming:
    endpoint: Endpoint
    payload: dict[str, Any]  # the JSON as sent, less `route`: relayed with `model` replaced
    request: ChatCompletionRequest | CompletionRequest  # the validated view of the same body
    prompt_tokens: int  # estimated from characters; engines count exactly
    output_tokens: int  # max_tokens as requested, or a planning default
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
        return self.prompt_tokens + self.output_tokens

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
        return self.upstream_path, self.upstream_body(model.upstream_name), False


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
    prompt_tokens, output_tokens = estimate_prompt_tokens(request), requested_output_tokens(request)
    return Incoming(endpoint, payload, request, prompt_tokens, output_tokens, translation=translation)


def invalid_request(exc: ValidationError) -> InvalidRequest:
    """The first validation problem, named by its field path, as a 400."""
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return InvalidRequest(f"invalid '{param}': {first['msg']}{more}", param=param)
