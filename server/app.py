"""Builds the app uvicorn runs: the FastAPI app (its lifespan wires config → engines → classifier → policy →
gateway), behind the front door and the middleware stack, with FastAPI's own errors mapped through
`errors.http_error` like every other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from .backends import attach_classifier, build_clients, build_session, start_engines
from .classify import Classifier, KeywordClassifier, build_classifier
from .config import ConfigError, TriageConfig
from .console import Console, attach_console
from .errors import InvalidRequest, MethodNotAllowed, RouteNotFound, TriageError, http_error
from .frontdoor import TriageApp
from .gatekeeper import Gatekeeper
from .load import LoadBoard
from .policy import POLICIES
from .protocols import dialect_of
from .protocols.response_store import ResponseStore
from .routes import attach_router
from .safeguards import build_safeguards, start_tenancy
from .serving import Gateway
from .shutdown import Drain
from .store import Store
from .telemetry.metrics import Metrics
from .telemetry.nvml import NvmlReader
from .telemetry.probe import EngineProbe

log = logging.getLogger("triage")
# What browsers may read from an answer beyond the CORS-safelisted headers.
EXPOSED_HEADERS = [
    "x-request-id",
    "x-triage-request-id",
    "x-triage-model",
    "x-triage-reason",
    "x-triage-category",
    "x-triage-overhead-ms",
    "retry-after",
]


def check_config(config: TriageConfig) -> None:
    """Start-up checks that need the registries (the schema itself is checked in config.py)."""
    if config.policy.name not in POLICIES:
        raise ConfigError(f"policy.name: unknown policy '{config.policy.name}'; use one of: {', '.join(POLICIES)}")
    POLICIES[config.policy.name].options_of(config.policy)  # ConfigError names a bad policy.options key


async def start_classifier(config: TriageConfig) -> Classifier:
    """Load and warm the configured classifier. A classifier that cannot load falls back to keywords (logged);
    one whose categories are not the router's fails start-up (`ConfigError`)."""
    classifier = build_classifier(config.classifier)
    t0 = time.perf_counter()
    try:
        await classifier.start()
    except ConfigError:
        raise  # wrong categories: routing on them would be silently wrong, unlike routing on keywords
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        log.error("classifier '%s' failed to load (%s); falling back to keyword rules", config.classifier.kind, exc)
        classifier = KeywordClassifier()
    log.info("classifier %s ready in %.0f ms", type(classifier).__name__, (time.perf_counter() - t0) * 1e3)
    return classifier


def build_app(config: TriageConfig, *, middleware: Sequence[Middleware] = ()) -> TriageApp:
    """The app uvicorn serves; `middleware` (outermost first) wraps every route, the generating ones included."""
    check_config(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            load = LoadBoard()
            metrics = Metrics()
            engines = await start_engines(config.models, stack, load, metrics)  # kinds that Triage runs itself
            session = build_session()
            stack.push_async_callback(session.close)
            clients = build_clients(config.models, engines.endpoints, session)
            classifier = await start_classifier(config)
            stack.push_async_callback(classifier.stop)
            attach_classifier(clients, classifier)  # the minilm kind answers embeddings with it
            policy = POLICIES[config.policy.name](config.models, load, config.policy)
            if policy.uses_store and config.policy.store:
                store = Store.open(config.policy.store, keep_prompts=config.policy.store_prompts)
                stack.callback(store.close)
                policy.attach_store(store)
            probe = EngineProbe(clients, load, metrics)
            await probe.start()
            stack.push_async_callback(probe.stop)
            nvml = NvmlReader(
                load,
                metrics,
                engine_groups=engines.process_groups,
                configured_gpus={m.name: m.gpu_ids for m in config.models if m.gpu and not m.remote},
            )
            await nvml.start()
            stack.push_async_callback(nvml.stop)
            safeguards = build_safeguards(config, load, metrics, app.state.drain)
            stack.callback(safeguards.privacy.close)
            safeguards.tenancy = await start_tenancy(config, metrics, stack)
            responses = ResponseStore.open(config.responses)
            stack.callback(responses.close)
            app.state.gateway = gateway = Gateway(
                config, classifier, policy, clients, load, metrics, safeguards, responses
            )
            app.state.console = console = Console(gateway, lambda: nvml.engines_on_gpu)
            await console.start()
            stack.push_async_callback(console.stop)
            log.info("triage ready: %d models, policy %s", len(config.models), config.policy.name)
            yield

    app = FastAPI(
        title="Triage",
        version="0.1.0",
        lifespan=lifespan,
        description="OpenAI-compatible router that picks a local model by task fit and live load.",
    )
    app.state.drain = Drain(config.server.drain_s)  # SIGTERM reaches it through shutdown.DrainingServer
    attach_router(app)
    attach_console(app)
    install_error_handlers(app)
    # CORS outermost (preflights and answers on every route get its headers); the gatekeeper innermost
    gate = Middleware(Gatekeeper, state=app.state, server=config.server)
    return TriageApp(app, [*cors(config.server.cors_origins), *middleware, gate])


def cors(origins: list[str]) -> list[Middleware]:
    """Starlette's CORS middleware for `server.cors_origins` (none: no CORS headers, browsers on other origins are
    refused); outermost, so preflights and answers on every route get their headers, the front door's included."""
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "HEAD", "OPTIONS"],
            allow_headers=["*"],  # the SDKs send their own (x-stainless-*, openai-beta, anthropic-version, ...)
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    ]


def _error_response(request: Request, exc: BaseException) -> Response:
    error = http_error(exc, f"{request.method} {request.url.path}", dialect_of(request.url.path))
    headers = dict(error.headers)
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        headers["x-triage-request-id"] = request_id
    return Response(error.body, status_code=error.status, media_type="application/json", headers=headers)


def _route_list(app: FastAPI) -> str:
    """Every API route, from the OpenAPI schema (which declares the front door's routes too)."""
    return ", ".join(sorted(app.openapi().get("paths", {})))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TriageError)
    async def triage_error(request: Request, exc: TriageError) -> Response:
        gateway = getattr(request.app.state, "gateway", None)
        if gateway is not None:
            gateway.metrics.errors.labels(exc.type).inc()
        return _error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_exception(request: Request, exc: StarletteHTTPException) -> Response:
        where = f"{request.method} {request.url.path}"
        error: TriageError
        if exc.status_code == 404:
            error = RouteNotFound(f"no route {where}; the routes are: {_route_list(request.app)}")
        elif exc.status_code == 405:
            allowed = dict(exc.headers or {}).get("allow", "")
            error = MethodNotAllowed(f"method {request.method} is not allowed on {request.url.path}; use {allowed}")
            error.headers = dict(exc.headers or {})
        else:
            error = TriageError(str(exc.detail))
            error.status = exc.status_code
        return _error_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error_response(request, InvalidRequest(f"invalid request: {exc.errors()[0]['msg']}"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return _error_response(request, exc)
