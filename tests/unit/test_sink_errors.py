"""Azure SDK failures map onto the error taxonomy (real SDK exception types, a stand-in response)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseTimeoutError,
)

from shared.errors import DataError, FatalError, RetriableError, StorageDenied
from shared.sinks._azure import translate


class Response:
    """The few attributes ``HttpResponseError`` reads from a response."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.reason = "reason"
        self.headers = headers or {}
        self.request = None

    def text(self, encoding: str | None = None) -> str:
        return ""

    def body(self) -> bytes:
        return b""


def http(status: int, headers: dict[str, str] | None = None, cls: Any = HttpResponseError) -> Exception:
    return cls(message=f"status {status}\nsecond line", response=Response(status, headers))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (http(500), RetriableError),
        (http(503), RetriableError),
        (http(429), RetriableError),
        (http(408), RetriableError),
        (http(409), RetriableError),
        (http(400), FatalError),
        (http(404, cls=ResourceNotFoundError), FatalError),
        (http(401), StorageDenied),  # refused storage is not the window's fault (docs/reliability.md)
        (http(403), StorageDenied),
        (http(403, cls=ClientAuthenticationError), StorageDenied),
        (ServiceRequestError("connection refused"), RetriableError),
        (ServiceResponseTimeoutError("read timed out"), RetriableError),
        (AzureError("something odd"), RetriableError),
        (ConnectionResetError("reset"), RetriableError),
        (KeyError("bug"), FatalError),
    ],
    ids=[
        "500",
        "503",
        "429",
        "408",
        "409",
        "400",
        "404",
        "401",
        "403",
        "auth",
        "connect",
        "read-timeout",
        "azure-other",
        "os-error",
        "non-azure",
    ],
)
def test_translate(exc: Exception, kind: type[Exception]) -> None:
    error = translate(exc, "staging x")
    assert type(error) is kind
    assert str(error).startswith("staging x")
    assert "second line" not in str(error)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"Retry-After": "7"}, 7.0), ({"x-ms-retry-after-ms": "1500"}, 1.5), ({}, None), ({"Retry-After": "soon"}, None)],
    ids=["retry-after", "retry-after-ms", "none", "unparseable"],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    error = translate(http(503, headers), "x")
    assert isinstance(error, RetriableError) and error.retry_after == seconds


def test_domain_errors_pass_through() -> None:
    original = DataError("bad row")
    assert translate(original, "x") is original
