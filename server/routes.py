"""HTTP routes, kept thin: read the body, await the gateway, turn its `Reply` into a response.

The generation routes read the raw body themselves (no FastAPI body parsing: the gateway validates once with
pydantic and relays the original JSON), but declare their request and error schemas for OpenAPI.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from .auth import Tenant
from .errors import EngineUnavailable, InvalidRequest, RequestTooLarge
from .protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ErrorResponse,
    FeedbackRequest,
    ModelCard,
    ModelList,
    RouteDecisionResponse,
)
from .serving import Endpoint, Gateway, Reply

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


_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)


def new_request_id(given: str | None = None) -> str:
    """The client's `x-request-id` when it is sane, else a process-unique id (cheaper than uuid4)."""
    if given and len(given) <= 128 and given.isprintable():
        return given
    return f"{_ID_PREFIX}{next(_ids):010x}"


def request_id_for(request: Request) -> str:
    request_id = new_request_id(request.headers.get("x-request-id"))
    request.state.request_id = request_id
    return request_id


async def collect_body(chunks: AsyncIterator[bytes], declared_length: str | None, limit_bytes: int) -> bytes:
    """The whole request body, refusing early (413) when it is, or says it is, over the limit."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit_bytes:
        raise RequestTooLarge(
            f"request body is {declared_length} bytes; the limit is {limit_bytes} bytes (server.max_body_bytes)"
        )
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit_bytes:
            raise RequestTooLarge(f"request body exceeds the limit of {limit_bytes} bytes (server.max_body_bytes)")
        parts.append(chunk)
    if size == 0:
        raise InvalidRequest("request body is empty; send a JSON object")
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def wait_for_disconnect(receive: Callable[[], Awaitable[MutableMapping[str, Any]]]) -> None:
    """Returns once the ASGI server reports that the client has gone (call after the body is read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_body(request: Request, limit_bytes: int) -> bytes:
    return await collect_body(request.stream(), request.headers.get("content-length"), limit_bytes)


def to_response(reply: Reply) -> Response:
    if reply.stream is not None:
        headers = {**reply.headers, "cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(
            reply.stream,
            media_type="text/event-stream",
            headers=headers,
            background=BackgroundTask(reply.abandon) if reply.abandon else None,
        )
    return Response(reply.body, media_type=JSON, headers=reply.headers)


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def tenant_of(request: Request, gateway: Gateway) -> Tenant:
    """The caller, from its API key (401 when keys are required and it has none)."""
    return gateway.guard.tenancy.authenticate(request.headers.get("authorization"))


async def _generate(request: Request, endpoint: Endpoint) -> Response:
    received_s = time.perf_counter()
    request_id = request_id_for(request)
    gateway = gateway_of(request)
    tenant = tenant_of(request, gateway)
    raw = await read_body(request, gateway.config.server.max_body_bytes)
    return to_response(
        await gateway.generate(
            endpoint, raw, received_s, request_id, functools.partial(wait_for_disconnect, request.receive), tenant
        )
    )


def _body_schema(model: type[Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


@router.post("/v1/chat/completions", responses=_ERRORS, openapi_extra=_body_schema(ChatCompletionRequest))
async def chat_completions(request: Request) -> Response:
    return await _generate(request, "chat")


@router.post("/v1/completions", responses=_ERRORS, openapi_extra=_body_schema(CompletionRequest))
async def completions(request: Request) -> Response:
    return await _generate(request, "completions")


@router.post(
    "/v1/route",
    response_model=RouteDecisionResponse,
    responses=_ERRORS,
    openapi_extra=_body_schema(ChatCompletionRequest),
)
async def route(request: Request) -> Response:
    """Dry run: the routing decision for a chat or completions body, without generating."""
    request_id = request_id_for(request)
    gateway = gateway_of(request)
    tenant = tenant_of(request, gateway)
    raw = await read_body(request, gateway.config.server.max_body_bytes)
    decision = await gateway.dry_run(raw, request_id, tenant)
    return Response(decision.model_dump_json(), media_type=JSON)


@router.post("/v1/feedback", responses=_ERRORS, openapi_extra=_body_schema(FeedbackRequest))
async def feedback(request: Request) -> Response:
    """Tell the router how good an answer was; the policy learns from it where it can."""
    request_id_for(request)
    gateway = gateway_of(request)
    tenant_of(request, gateway)
    raw = await read_body(request, gateway.config.server.max_body_bytes)
    accepted = await gateway.feedback(raw)
    return Response(accepted, media_type=JSON)


@router.get("/v1/models", response_model=ModelList, responses={401: _ERRORS[401]})
async def list_models(request: Request) -> ModelList:
    gateway = gateway_of(request)
    tenant_of(request, gateway)
    created = gateway.started_at
    cards = [ModelCard(id="auto", created=created, roles=["router"])]
    cards += [
        ModelCard(id=m.name, created=created, roles=m.roles, context_length=m.context_length, remote=m.remote)
        for m in gateway.config.models
    ]
    return ModelList(data=cards)


@router.get("/health")
async def health() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get("/ready", responses={503: {"model": ErrorResponse}})
async def ready(request: Request) -> Response:
    gateway = gateway_of(request)
    healthy = [name for name, load in gateway.load.engines.items() if load.healthy]
    if healthy:
        return Response(f'{{"status":"ready","healthy_models":{len(healthy)}}}'.encode(), media_type=JSON)
    raise EngineUnavailable("no engine is healthy yet; see GET /metrics triage_engine_healthy")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(gateway_of(request).metrics.render(), media_type="text/plain; version=0.0.4")


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
    schemas = {m.__name__: m for m in (ChatCompletionRequest, CompletionRequest, FeedbackRequest)}
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = base_openapi()
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            for name, model in schemas.items():
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[name] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
