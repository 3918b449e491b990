"""Azure SDK failures → the engine's error taxonomy, and create-once helpers (containers, pools).

The SDK's own retry policy has already retried transient faults when these are
raised; what is left is classified once here so the runner decides in one place.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import FatalError, MoverError, RetriableError, StorageDenied

__all__ = ["ensure_once", "shared_pool", "translate"]

log = logging.getLogger(__name__)
_RETRIABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_created: set[tuple[str, str]] = set()
_created_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _retry_after(exc: HttpResponseError) -> float | None:
    """Server hint in seconds (``Retry-After`` or ``x-ms-retry-after-ms``), if any."""
    headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
    for header, scale in (("Retry-After", 1.0), ("x-ms-retry-after-ms", 0.001)):
        value = headers.get(header)
        if value:
            try:
                return float(value) * scale
            except ValueError:
                return None
    return None


def translate(exc: BaseException, what: str) -> MoverError:
    """The domain error for an SDK failure while doing ``what`` (raise it ``from exc``).

    5xx, 408, 429 and 409 (a lease or a container/table being deleted), connection
    errors and timeouts are retriable; authentication and other 4xx are fatal.
    """
    if isinstance(exc, MoverError):
        return exc
    if isinstance(exc, ClientAuthenticationError):
        return StorageDenied(f"{what}: not authorised ({_short(exc)}); check the identity's storage data role")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = int(exc.status_code)
        code = getattr(exc, "error_code", None) or ""
        message = f"{what}: HTTP {status}{f' {code}' if code else ''}: {_short(exc)}"
        if status in (401, 403):
            return StorageDenied(f"{message}; check the identity's storage data role or the SAS/key")
        if status in _RETRIABLE_STATUS:
            return RetriableError(message, retry_after=_retry_after(exc))
        return FatalError(message)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return RetriableError(f"{what}: connection failed ({_short(exc)})")
    if isinstance(exc, AzureError):
        return RetriableError(f"{what}: {_short(exc)}")
    if isinstance(exc, OSError | TimeoutError):
        return RetriableError(f"{what}: {exc}")
    return FatalError(f"{what}: unexpected {type(exc).__name__}: {exc}")


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return str(text).split("\n", 1)[0][:300]


def ensure_once(key: tuple[str, str], create: Callable[[], object], what: str) -> None:
    """Run ``create`` once per process per ``key`` (account, container/table).

    "Already exists" is success. A 403 is tolerated: a data-plane role or SAS scoped
    to an existing container may write blobs but not create containers, and the
    next real call reports a genuine authorisation problem anyway.
    """
    with _created_lock:
        if key in _created:
            return
    try:
        create()
    except ResourceExistsError:
        pass
    except HttpResponseError as exc:
        if exc.status_code != 403:
            raise translate(exc, what) from exc
        log.warning("%s: not allowed to create it (403); assuming it exists", what)
    except AzureError as exc:
        raise translate(exc, what) from exc
    with _created_lock:
        _created.add(key)


def shared_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """One process-wide pool per ``name`` for sink I/O, created on first use (no import-time threads)."""
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        return pool
