"""Injected failures: scripted ("the next N queries get a 429") and random rates.

A fault is consumed by a query request after routing and authentication succeed, so a
test's auth or 404 checks never eat a scripted fault.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

__all__ = ["FAULT_KINDS", "SCOPED_KINDS", "Fault", "FaultInjector", "FaultKind", "ScopedFault"]

FaultKind = Literal["reset", "truncate", "partial", "overflow", "warning", "delay", "echo"]
FAULT_KINDS: tuple[str, ...] = ("reset", "truncate", "partial", "overflow", "warning", "delay", "echo")
SCOPED_KINDS: tuple[str, ...] = ("partial", "overflow", "warning")  # besides HTTP statuses


@dataclass(frozen=True)
class Fault:
    """What happens to one query.

    ``status`` is an HTTP error status (429, 503, 504, …) or a kind: ``reset`` closes the
    connection abruptly (TCP RST, no response), ``truncate`` sends headers and half the
    body then resets, ``partial`` forces an HTTP 200 PartialError with half the rows,
    ``overflow`` an HTTP 200 PartialError that is not truncation (``E_OVERFLOW``, severity
    Error, half the rows), ``warning`` one with a Warning-severity inner error and every row,
    ``delay`` only waits, ``echo`` answers 400 with the request's credentials (``Authorization``,
    ``x-api-key``, plain and URL-encoded) in the error text, like a misbehaving proxy.
    ``delay`` seconds are waited before any of them.
    """

    status: int | str
    retry_after: float | None = None
    delay: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(status: int | str) -> int | str:
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, int):
        if not 400 <= status <= 599:
            raise ValueError(f"fault status must be 4xx/5xx, got {status}")
        return status
    if status not in FAULT_KINDS:
        raise ValueError(f"unknown fault {status!r}; use an HTTP status or one of {FAULT_KINDS}")
    return status


@dataclass(frozen=True)
class ScopedFault:
    """A fault every query of ``table`` whose timespan overlaps ``[start, end)`` (ticks) gets, until lifted.

    What the data of one window causes on the service (an ``overflow`` its rows always hit, say)
    rather than a passing fault: it follows the window whichever runner asks, and only then.
    """

    status: int | str
    table: str
    start: int
    end: int

    def matches(self, table: str, span: tuple[int, int] | None) -> bool:
        if table.lower() != self.table.lower():
            return False
        return span is None or (span[0] < self.end and self.start < span[1])


class FaultInjector:
    """Thread-safe queue of scripted faults plus optional random fault rates and scoped faults."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._queue: deque[list[Any]] = deque()  # [Fault, remaining]
        self._rates: list[tuple[float, Fault]] = []
        self._scoped: list[ScopedFault] = []
        self._rng = random.Random(seed)

    def push(
        self,
        status: int | str = "delay",
        *,
        count: int = 1,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next ``count`` queries fail with ``status`` (after ``delay`` seconds).

        ``status``: an HTTP status (429 adds ``Retry-After: retry_after or 1``; 503 adds
        it when given) or ``"reset"``, ``"truncate"``, ``"partial"``, ``"delay"``, ``"echo"``.
        """
        if count < 1:
            raise ValueError("count must be >= 1")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        fault = Fault(_check(status), retry_after, float(delay))
        with self._lock:
            self._queue.append([fault, count])

    def set_rates(self, rates: Mapping[int | str, float], *, seed: int | None = None) -> None:
        """Random faults: each query independently gets fault ``k`` with probability ``p``.

        e.g. ``{429: 0.1, 503: 0.05, "partial": 0.05}``; probabilities must sum to ≤ 1.
        """
        table = [(float(p), Fault(_check(k), 1.0 if _check(k) == 429 else None)) for k, p in rates.items()]
        if any(p < 0 for p, _ in table) or sum(p for p, _ in table) > 1:
            raise ValueError("fault rates must be >= 0 and sum to <= 1")
        with self._lock:
            self._rates = [(p, f) for p, f in table if p > 0]
            if seed is not None:
                self._rng.seed(seed)

    def set_scoped(self, faults: list[ScopedFault]) -> None:
        """Replace the scoped faults (an empty list lifts them all)."""
        for fault in faults:
            if _check(fault.status) not in SCOPED_KINDS and not isinstance(_check(fault.status), int):
                raise ValueError(f"a scoped fault is an HTTP status or one of {SCOPED_KINDS}, not {fault.status!r}")
            if fault.end <= fault.start:
                raise ValueError("a scoped fault needs start < end")
        with self._lock:
            self._scoped = [replace(f, status=_check(f.status)) for f in faults]

    def scoped(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._scoped]

    def scoped_for(self, table: str, span: tuple[int, int] | None) -> Fault | None:
        """The scoped fault of a query of ``table`` over ``span`` (ticks), if one applies."""
        with self._lock:
            hit = next((f for f in self._scoped if f.matches(table, span)), None)
        return None if hit is None else Fault(hit.status, 1.0 if hit.status == 429 else None)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rates = []
            self._scoped = []

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**f.as_dict(), "count": n} for f, n in self._queue]

    def rates(self) -> dict[str, float]:
        with self._lock:
            return {str(f.status): p for p, f in self._rates}

    def next(self) -> Fault | None:
        """The fault for the query being served now, if any (consumes one)."""
        with self._lock:
            if self._queue:
                entry = self._queue[0]
                entry[1] -= 1
                if entry[1] <= 0:
                    self._queue.popleft()
                fault: Fault = entry[0]
                return fault
            if self._rates:
                r = self._rng.random()
                acc = 0.0
                for p, f in self._rates:
                    acc += p
                    if r < acc:
                        return f
        return None
