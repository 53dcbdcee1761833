"""HTTP routes served by FastAPI, kept thin: read the body, await the gateway, return its answer.

The generation routes are served by the front door (`frontdoor.py`), not here; `_declare_generation_routes`
describes them in the OpenAPI schema so clients and schema tools still see them. Errors raised here reach the
client through `errors.http_error`, like every other error (`app.install_error_handlers`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from .auth import Tenant
from .errors import EngineUnavailable, ModelNotFound
from .frontdoor import read_body
from .protocol import (
    ChatCompletionRequest,
    ErrorResponse,
    FeedbackRequest,
    ModelCard,
    ModelList,
    RouteDecisionResponse,
)
from .protocols import ROUTE_ADAPTERS
from .protocols.anthropic import count_tokens
from .protocols.anthropic_models import CountTokensRequest, TokenCount
from .relay import RequestIds
from .serving import Gateway

router = APIRouter()
JSON = "application/json"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "Invalid request"),
        (401, "Missing or invalid API key"),
        (403, "Not allowed for this key"),
        (404, "Unknown model"),
        (413, "Body too large"),
        (429, "Over capacity or rate limit"),
        (502, "Engine error"),
        (503, "No healthy engine"),
        (504, "Engine timeout"),
    )
}


def ids_for(request: Request) -> RequestIds:
    ids = RequestIds.mint(request.headers.get("x-request-id"))
    request.state.request_id = ids.request_id
    return ids


async def caller_and_body(request: Request, gateway: Gateway) -> tuple[Tenant, bytes]:
    """The caller (authenticated first: a refused key reads no body), then the body within the configured limit."""
    tenant = tenant_of(request, gateway)
    raw = await read_body(request.stream(), request.headers.get("content-length"), gateway.config.server.max_body_bytes)
    return tenant, raw


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def tenant_of(request: Request, gateway: Gateway) -> Tenant:
    """The caller, from its API key (401 when keys are required and it has none)."""
    return gateway.guard.tenancy.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))


def _body_schema(model: type[Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


@router.post(
    "/v1/route",
    response_model=RouteDecisionResponse,
    responses=_ERRORS,
    openapi_extra=_body_schema(ChatCompletionRequest),
)
async def route(request: Request) -> Response:
    """Dry run: the routing decision for a chat or completions body, without generating or changing anything."""
    ids = ids_for(request)
    gateway = gateway_of(request)
    tenant, raw = await caller_and_body(request, gateway)
    decision = await gateway.dry_run(raw, ids, tenant)
    return Response(decision.model_dump_json(), media_type=JSON)


@router.post("/v1/feedback", responses=_ERRORS, openapi_extra=_body_schema(FeedbackRequest))
async def feedback(request: Request) -> Response:
    """Tell the router how good an answer was (once per request, by the key that made it)."""
    ids_for(request)
    gateway = gateway_of(request)
    tenant, raw = await caller_and_body(request, gateway)
    client = request.client.host if request.client else None
    return Response(await gateway.feedback(raw, tenant, client), media_type=JSON)


def _cards(gateway: Gateway, tenant: Tenant) -> list[ModelCard]:
    """`auto` and every model the caller's key may use."""
    created = gateway.started_at
    cards = [ModelCard(id="auto", created=created, roles=["router"])]
    cards += [
        ModelCard(
            id=m.name,
            created=created,
            roles=m.roles,
            context_length=m.context_length,
            remote=m.remote,
            capabilities=list(m.capabilities),
        )
        for m in gateway.models_for(tenant)
    ]
    return cards


@router.post(
    "/v1/messages/count_tokens",
    response_model=TokenCount,
    responses=_ERRORS,
    openapi_extra=_body_schema(CountTokensRequest),
)
async def messages_count_tokens(request: Request) -> Response:
    """Anthropic's token count for a Messages body: the router's estimate (characters / 4), not a tokenizer's."""
    gateway = gateway_of(request)
    _, raw = await caller_and_body(request, gateway)
    return Response(count_tokens(raw, gateway.aliases.resolve, gateway.models), media_type=JSON)


@router.get("/v1/models", response_model=ModelList, responses={401: _ERRORS[401]})
async def list_models(request: Request) -> ModelList:
    """`auto` and the models this key may use (a key limited to some models sees only those)."""
    gateway = gateway_of(request)
    return ModelList(data=_cards(gateway, tenant_of(request, gateway)))


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses={401: _ERRORS[401], 404: _ERRORS[404]})
async def retrieve_model(model_id: str, request: Request) -> ModelCard:
    """One model, as listed by GET /v1/models; 404 for a model that does not exist or this key may not use."""
    gateway = gateway_of(request)
    for card in _cards(gateway, tenant_of(request, gateway)):
        if card.id == model_id:
            return card
    raise ModelNotFound(
        f"model '{model_id}' does not exist; GET /v1/models lists the models you may use", param="model"
    )


@router.get("/health")
@router.head("/health", include_in_schema=False)
async def health() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get("/ready", responses={503: {"model": ErrorResponse}})
@router.head("/ready", include_in_schema=False)
async def ready(request: Request) -> Response:
    gateway = gateway_of(request)
    healthy = [name for name, load in gateway.load.engines.items() if load.healthy]
    if healthy:
        return Response(f'{{"status":"ready","healthy_models":{len(healthy)}}}'.encode(), media_type=JSON)
    raise EngineUnavailable("no engine is healthy yet; see GET /metrics triage_engine_healthy")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(gateway_of(request).metrics.render(), media_type="text/plain; version=0.0.4")


def _declare_generation_routes(spec: dict[str, Any]) -> None:
    """The front door's routes in the schema: request body, the answer (JSON or SSE) and the error answers."""
    errors = {
        str(code): {
            "description": entry["description"],
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
        }
        for code, entry in _ERRORS.items()
    }
    answer = {
        "description": "The answer: a JSON object, or server-sent events when the body says stream: true",
        "content": {JSON: {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}},
    }
    for path, adapter in ROUTE_ADAPTERS.items():
        operation = {
            "summary": adapter.summary,
            "operationId": path.strip("/").replace("/", "_"),
            **_body_schema(adapter.request_model),
        }
        spec.setdefault("paths", {})[path] = {"post": {**operation, "responses": {"200": answer, **errors}}}


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
    models = [a.request_model for a in ROUTE_ADAPTERS.values()] + [CountTokensRequest, FeedbackRequest, ErrorResponse]
    schemas = {m.__name__: m for m in models}
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = base_openapi()
            _declare_generation_routes(spec)
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            for name, model in schemas.items():
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[name] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
