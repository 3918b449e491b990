"""Service-side throttling: requests per window per identity, and concurrent queries.

Both run on the real monotonic clock (not the emulator clock): throttling is about how
fast the client calls, not about which telemetry is visible.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

__all__ = ["ConcurrencyGate", "RateLimiter"]


class RateLimiter:
    """Sliding window: at most ``limit`` requests per ``window`` seconds per identity."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def check(self, identity: str, limit: int | None, window: float) -> float | None:
        """Record a request; ``None`` if allowed, else seconds until a slot frees up."""
        if limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(identity, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return max(1.0, math.ceil(hits[0] + window - now))
            hits.append(now)
            return None

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


class ConcurrencyGate:
    """Counts in-flight queries; over the limit the service answers 429 instead of queueing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.first: float | None = None  # monotonic time the first query (since a reset) entered
        self.last: float | None = None  # … and the last one left: the span the queries covered

    def try_enter(self, limit: int | None) -> bool:
        with self._lock:
            if limit is not None and self.active >= limit:
                return False
            self.active += 1
            self.peak = max(self.peak, self.active)
            if self.first is None:
                self.first = time.monotonic()
            return True

    def leave(self) -> None:
        with self._lock:
            self.active -= 1
            self.last = time.monotonic()

    def span_ms(self) -> int:
        """Milliseconds from the first query in to the last one out (0 before any)."""
        with self._lock:
            return round((self.last - self.first) * 1000) if self.first is not None and self.last else 0

    def reset(self) -> None:
        with self._lock:
            self.peak = self.active
            self.first = self.last = None
