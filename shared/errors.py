"""The error taxonomy, applied once per boundary.

Every adapter translates the failures of the service it talks to into one of
these, so the runner decides retry/quarantine/fail in one place.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "FatalError",
    "MoverError",
    "RetriableError",
    "StorageDenied",
    "not_the_windows_fault",
]


class MoverError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(MoverError):
    """Settings or pipeline JSON are invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


class RetriableError(MoverError):
    """A transient failure (429, 5xx, timeout, reset): the same call may succeed later.

    ``retry_after`` carries the server's hint in seconds when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(MoverError):
    """A failure that repeating will not fix (bad query, auth, missing resource)."""


class StorageDenied(FatalError):
    """Storage refused the engine's own identity (401/403): a role not granted yet, a key rotated.

    Repeating will not fix it until someone does, but it is not the window's fault either: a
    window that meets it is retried with backoff and never closed (docs/reliability.md).
    """


def not_the_windows_fault(exc: BaseException) -> bool:
    """Transient faults (429, 5xx, timeouts, outages) and refused storage: the window keeps its attempts."""
    return isinstance(exc, RetriableError | StorageDenied)


class DataError(MoverError):
    """One input record or blob cannot be read; it is quarantined, the window goes on."""
