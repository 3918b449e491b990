"""OneAPI error bodies, shaped like the service's (see shared/samples/query-api/*.json).

Every failure the HTTP layer reports is an :class:`ApiError`: status, JSON payload and
extra headers (``Retry-After``), raised once and rendered once by the server.
"""

from __future__ import annotations

from typing import Any

from .kql import KqlError

__all__ = [
    "ApiError",
    "bad_argument",
    "forbidden",
    "gateway_timeout",
    "invalid_token",
    "kql_error",
    "method_not_allowed",
    "not_found",
    "partial_error",
    "partial_other",
    "service_unavailable",
    "status_error",
    "throttled",
    "unauthorized",
]


class ApiError(Exception):
    """An HTTP error response with a OneAPI body."""

    def __init__(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {payload.get('error', {}).get('code', '')}")
        self.status = status
        self.payload = payload
        self.headers = headers or {}

    @property
    def code(self) -> str:
        return str(self.payload["error"]["code"])


def _body(code: str, message: str, inner: dict[str, Any] | None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "code": code}
    if inner is not None:
        error["innererror"] = inner
    return {"error": error}


def bad_argument(inner_code: str, inner_message: str, detail: dict[str, Any] | None = None) -> ApiError:
    inner: dict[str, Any] = {"code": inner_code, "message": inner_message}
    if detail is not None:
        inner["innererror"] = detail
    return ApiError(400, _body("BadArgumentError", "The request had some invalid properties", inner))


def kql_error(exc: KqlError, query: str) -> ApiError:
    """400 for a query the emulator cannot answer: SyntaxError or SemanticError."""
    line = query.count("\n", 0, exc.pos) + 1
    col = exc.pos - (query.rfind("\n", 0, exc.pos) + 1)
    if exc.kind == "SyntaxError":
        detail = {
            "code": "SYN0002",
            "message": f"Query could not be parsed at '{exc.token}' on line [{line},{col}]: {exc.message}",
            "line": line,
            "pos": col,
            "token": exc.token,
        }
        return bad_argument("SyntaxError", "Syntax Error", detail)
    detail = {"code": "SEM0100", "message": exc.message}
    return bad_argument("SemanticError", "A semantic error occurred.", detail)


def unauthorized() -> ApiError:
    return ApiError(
        401,
        _body(
            "AuthorizationRequiredError",
            "Valid authentication was not provided",
            {"code": "AuthorizationRequiredError", "message": "No credentials were provided."},
        ),
        {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", '
         'error="invalid_token", error_description="No token or API key was provided"'},
    )  # fmt: skip


def invalid_token(inner_code: str, inner_message: str) -> ApiError:
    """401 for a bearer token the service will not take (wrong audience, expired, bad signature):
    the query API's ``InvalidTokenError`` with the reason as the inner error (ARM's codes)."""
    return ApiError(
        401,
        _body("InvalidTokenError", "The provided authentication is not valid for this resource",
              {"code": inner_code, "message": inner_message}),
        {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", '
         f'error="invalid_token", error_description="{inner_code}"'},
    )  # fmt: skip


def forbidden() -> ApiError:
    return ApiError(
        403,
        _body(
            "InsufficientAccessError",
            "The provided credentials have insufficient access to perform the requested operation",
            {"code": "UnauthorizedClient", "message": "The client does not have access to this resource."},
        ),
    )  # fmt: skip


def not_found(what: str) -> ApiError:
    return ApiError(
        404,
        _body("PathNotFoundError", "The requested path does not exist",
              {"code": "PathNotFoundError", "message": what}),
    )  # fmt: skip


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405,
        _body("MethodNotAllowed", f"The requested method {method} is not allowed",
              {"code": "MethodNotAllowed", "message": "Use GET or POST."}),
    )  # fmt: skip


def throttled(retry_after: float) -> ApiError:
    return ApiError(
        429,
        _body("ThrottledError", "Rate limit is exceeded",
              {"code": "ThrottledError", "message": "Rate limit is exceeded.",
               "moreInfo": "https://aka.ms/api-limits"}),
        {"Retry-After": _seconds(retry_after)},
    )  # fmt: skip


def service_unavailable(retry_after: float | None = None) -> ApiError:
    return ApiError(
        503,
        _body("ServiceUnavailableError", "The service is temporarily unavailable",
              {"code": "ServiceUnavailable", "message": "The service is temporarily "
               "unavailable. Please try again later."}),
        {"Retry-After": _seconds(retry_after)} if retry_after is not None else None,
    )  # fmt: skip


def gateway_timeout() -> ApiError:
    return ApiError(
        504,
        _body("GatewayTimeout", "Gateway timeout",
              {"code": "GatewayTimeout", "message": "The query did not complete within the "
               "allotted time. Narrow the time range or raise the server timeout (Prefer: wait=)."}),
    )  # fmt: skip


def status_error(status: int, retry_after: float | None = None) -> ApiError:
    """The emulator's body for an arbitrary injected status."""
    if status == 429:
        return throttled(1 if retry_after is None else retry_after)
    if status == 503:
        return service_unavailable(retry_after)
    if status == 504:
        return gateway_timeout()
    if status == 401:
        return unauthorized()
    if status == 403:
        return forbidden()
    if status == 404:
        return not_found("injected fault")
    if status == 400:
        return bad_argument("SyntaxError", "Syntax Error")
    headers = {"Retry-After": _seconds(retry_after)} if retry_after is not None else None
    code = "InternalServerError" if status >= 500 else "BadRequest"
    return ApiError(
        status,
        _body(code, "An injected fault occurred", {"code": code, "message": f"HTTP {status}"}),
        headers,
    )


def partial_error(limit_kind: str, limit: int) -> dict[str, Any]:
    """The top-level ``error`` of a truncated HTTP 200 result (``PartialError``)."""
    if limit_kind == "rows":
        inner_message = (
            f"The results of this query exceed the set limit of {limit} records, so not all "
            "records were returned (E_QUERY_RESULT_SET_TOO_LARGE, 0x80DA0003)."
        )
    else:
        inner_message = (
            f"Query result set has exceeded the internal data size limit {limit} "
            "(E_QUERY_RESULT_SET_TOO_LARGE, 0x80DA0003)."
        )
    return _partial({"code": "-2133196797", "message": inner_message, "severity": 2, "severityName": "Error"})


def partial_other(kind: str) -> dict[str, Any]:
    """A ``PartialError`` that is not truncation: ``overflow`` (severity 2, Error: the rows are not
    to be used) or ``warning`` (severity 3, Warning: the result is complete), as recorded responses carry."""
    if kind == "overflow":
        inner = {
            "code": "-2133196794",
            "message": "Arithmetic overflow occurred while evaluating the query (E_OVERFLOW, 0x80DA0006).",
            "severity": 2,
            "severityName": "Error",
        }
    else:
        inner = {
            "code": "-2133196780",
            "message": "The query used approximations on part of the data; results are complete (W_APPROXIMATION).",
            "severity": 3,
            "severityName": "Warning",
        }
    return _partial(inner)


def _partial(inner: dict[str, Any]) -> dict[str, Any]:
    """The ``PartialError`` envelope around one engine error (``innererror``)."""
    return {
        "code": "PartialError",
        "message": "There were some errors when processing your query.",
        "details": [
            {
                "code": "EngineError",
                "message": "Something went wrong processing your query on the server.",
                "innererror": inner,
            }
        ],
    }


def _seconds(value: float | None) -> str:
    """Retry-After is whole seconds on the wire; never 0 for a positive wait."""
    if value is None:
        return "1"
    whole = int(value)
    return str(whole if whole == value or value <= 0 else whole + 1)
