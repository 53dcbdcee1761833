"""Typed errors for the request path and their one mapping to each protocol's error shape.

Every failure a client can see is one of these classes. Handlers raise them early; `http_error()` is the one
place that turns any exception into an HTTP answer with the class's status (an unexpected exception becomes a
500 that says it is a bug), in the shape of the route's protocol (`Dialect`): OpenAI's
`{"error": {"message", "type", "param", "code"}}` or Anthropic's `{"type": "error", "error": {"type",
"message"}}`. Nothing here knows about routing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import orjson

log = logging.getLogger(__name__)


class TriageError(Exception):
    """Base class: an error that reaches the client with `status` and an OpenAI-style body."""

    status: int = 500
    type: str = "internal_error"
    default_code: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.param, self.code)


def retry_after(wait_s: float) -> dict[str, str]:
    """The Retry-After header for a wait of `wait_s` (whole seconds, at least 1)."""
    return {"retry-after": str(max(1, round(wait_s)))}


class InvalidRequest(TriageError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(TriageError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class Forbidden(TriageError):
    status = 403
    type = "permission_error"
    default_code = "forbidden"


class RouteNotFound(TriageError):
    status = 404
    type = "invalid_request_error"
    default_code = "unknown_route"


class MethodNotAllowed(TriageError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class ModelNotFound(TriageError):
    status = 404
    type = "invalid_request_error"
    default_code = "model_not_found"


class DecisionNotFound(TriageError):
    """The console was asked about a decision that is no longer (or never was) among the recent ones it keeps."""

    status = 404
    type = "invalid_request_error"
    default_code = "decision_not_found"


class ClientDisconnected(TriageError):
    """The client went away before the answer was ready; the upstream request was cancelled."""

    status = 499  # nginx's "client closed request": nobody reads it, but logs and metrics do
    type = "client_disconnected"


class RequestTooLarge(TriageError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RequestTimeout(TriageError):
    """The client did not send its headers or body in time (server.header_timeout_s, server.body_timeout_s)."""

    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"


class HeadersTooLarge(TriageError):
    """The request's headers together exceed server.max_header_bytes."""

    status = 431
    type = "invalid_request_error"
    default_code = "request_header_fields_too_large"


class RateLimited(TriageError):
    """Too much in flight or over a key's limits; `retry_after_s` goes into the Retry-After header."""

    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0, code: str | None = None) -> None:
        super().__init__(message, code=code, headers=retry_after(retry_after_s))


class AtCapacity(RateLimited):
    """Every model that could serve the request is at its in-flight cap: a real request waits (bounded) for one
    to finish and is decided again; a dry run reports it as a 429."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after_s=1.0)


class NestingTooDeep(InvalidRequest):
    """The body nests lists and objects deeper than the router reads (see `server.privacy.walk.MAX_DEPTH`)."""

    default_code = "nesting_too_deep"


class NoEligibleModel(TriageError):
    """Every configured model was ruled out by the request's own constraints (context, allow list, ...)."""

    status = 400
    type = "invalid_request_error"
    default_code = "no_eligible_model"


class KeptLocal(TriageError):
    """The privacy guard found secrets or personal data and only a remote model could serve the request."""

    status = 400
    type = "invalid_request_error"
    default_code = "sensitive_data_must_stay_local"


class EngineUnavailable(TriageError):
    """The chosen engine (and every fallback) could not be reached or is marked unhealthy."""

    status = 503
    type = "engine_unavailable"
    default_code = "engine_unavailable"


class Overloaded(TriageError):
    """server.limit_concurrency connections or requests are open, the new one counted: refused before the app
    reads the request, with a Retry-After (Anthropic's 529 overloaded_error on its routes)."""

    status = 503
    type = "engine_unavailable"  # as our other 503s: SDKs read the status, and retry it
    default_code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, headers=retry_after(retry_after_s))


class EngineAnswerTooLarge(EngineUnavailable):
    """The engine sent more than the router holds (models[].limits): treated as a failing engine, with a 502."""

    status = 502
    type = "engine_error"
    default_code = "engine_answer_too_large"


class EngineTimeout(TriageError):
    status = 504
    type = "engine_timeout"
    default_code = "engine_timeout"


# OpenAI's error types by HTTP status, for engine errors relayed to the client. vLLM writes its exception class
# instead ("BadRequestError", "NotFoundError") and the status as the code ("400"): neither is what SDKs expect.
OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_KNOWN_TYPES = {*OPENAI_ERROR_TYPES.values(), "not_found_error", "server_error", "insufficient_quota"}


class EngineError(TriageError):
    """The engine answered with an error we relay, in OpenAI's shape: `status` mirrors the engine's own 4xx (5xx
    becomes 502); the type is OpenAI's for that status unless the engine already wrote one of OpenAI's; a numeric
    code is dropped. The engine's message is kept."""

    type = "engine_error"
    default_code = "engine_error"

    def __init__(
        self, message: str, *, status: int, param: str | None = None, code: str | None = None, etype: str | None = None
    ) -> None:
        refused = 400 <= status < 500
        if code is not None and code.isdigit():
            code = None
        super().__init__(message, param=param, code=code)
        if refused:
            self.code = code  # the request's fault: no made-up code (OpenAI's own are mostly null too)
        self.status = status if refused else 502
        if etype in _KNOWN_TYPES:
            self.type = etype
        elif refused:
            self.type = OPENAI_ERROR_TYPES.get(status, "invalid_request_error")


def error_body(message: str, etype: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": etype, "param": param, "code": code}})


# Which error shape a route answers in: OpenAI's (chat, completions, responses, everything else) or Anthropic's.
Dialect = Literal["openai", "anthropic"]

# Anthropic's error types by HTTP status (docs.anthropic.com, "Errors"); any other 4xx is invalid_request_error,
# any other 5xx api_error. Our 503 (no engine can take it now) is Anthropic's 529 overloaded_error.
_ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}
_ANTHROPIC_STATUS = {503: 529}
# The status behind an OpenAI-shaped error that arrives without one (an error event inside a stream).
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "rate_limit_error": 429,
    "engine_unavailable": 503,
    "engine_timeout": 504,
}


def anthropic_error(status: int, message: str) -> tuple[int, bytes]:
    """Anthropic's status and body for an error we would answer with `status`."""
    etype = _ANTHROPIC_TYPES.get(status) or ("invalid_request_error" if 400 <= status < 500 else "api_error")
    body = orjson.dumps({"type": "error", "error": {"type": etype, "message": message}})
    return _ANTHROPIC_STATUS.get(status, status), body


def status_of(openai_type: str) -> int:
    """The HTTP status an OpenAI error `type` stands for, for errors met inside a stream (500 when unknown)."""
    return _STATUS_OF_TYPE.get(openai_type, 500)


@dataclass(frozen=True, slots=True)
class HttpError:
    status: int
    headers: dict[str, str]
    body: bytes


def http_error(exc: BaseException, where: str = "", dialect: Dialect = "openai") -> HttpError:
    """The HTTP answer for any exception raised while serving `where` (e.g. "POST /v1/chat/completions"), in
    the error shape of the route's `dialect`."""
    if not isinstance(exc, TriageError):
        log.error("unexpected error on %s", where or "a request", exc_info=exc)
        exc = TriageError(f"internal error in the router ({type(exc).__name__}); this is a bug, please report it")
    if dialect == "anthropic":
        status, body = anthropic_error(exc.status, exc.message)
        return HttpError(status, exc.headers, body)
    return HttpError(exc.status, exc.headers, exc.body())
