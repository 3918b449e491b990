"""Bounded retries with jittered exponential backoff that honour ``Retry-After`` (one place)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from shared.errors import RetriableError

__all__ = ["backoff_delay", "with_retries"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0, retry_after: float | None = None) -> float:
    """Full-jitter exponential delay for retry ``attempt`` (1-based); a server hint wins if larger."""
    delay = random.uniform(0, min(cap, base * (2 ** (attempt - 1))))
    if retry_after is not None:
        delay = max(delay, min(retry_after, 300.0))
    return delay


def with_retries(
    call: Callable[[], T],
    *,
    what: str,
    max_retries: int,
    sleep: Callable[[float], None] = time.sleep,
    base: float = 0.5,
    cap: float = 30.0,
) -> T:
    """Run ``call``; on ``RetriableError`` wait and try again, at most ``max_retries`` times.

    The last ``RetriableError`` propagates; any other error propagates at once.
    """
    attempt = 0
    while True:
        try:
            return call()
        except RetriableError as exc:
            attempt += 1
            if attempt > max_retries:
                raise
            delay = backoff_delay(attempt, base=base, cap=cap, retry_after=exc.retry_after)
            log.warning("%s: %s; retry %d/%d in %.1fs", what, exc, attempt, max_retries, delay)
            sleep(delay)
