"""Azure Storage SDK errors → the engine's taxonomy, once for the blob-export sources."""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import FatalError, MoverError, RetriableError, StorageDenied

__all__ = ["translate"]


def translate(exc: AzureError, what: str) -> MoverError:
    """Unreachable / 408 / 429 / 5xx → ``RetriableError``; auth, missing container, other 4xx → ``FatalError``."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return RetriableError(f"{what}: storage unreachable: {exc.message}")
    if isinstance(exc, ClientAuthenticationError):
        return StorageDenied(f"{what}: authentication failed: {exc.message}")
    if isinstance(exc, ResourceNotFoundError):
        code = getattr(exc, "error_code", None) or exc.status_code
        return FatalError(f"{what}: not found ({code}); check 'container' and the connection setting")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        error_code = getattr(exc, "error_code", None) or ""
        if status in (408, 429) or status >= 500:
            return RetriableError(f"{what}: storage error {status} {error_code}".rstrip())
        if status in (401, 403):
            return StorageDenied(f"{what}: access denied ({status}); the identity needs Storage Blob Data Reader")
        return FatalError(f"{what}: storage error {status} {error_code}".rstrip())
    return RetriableError(f"{what}: {type(exc).__name__}: {exc.message}")
