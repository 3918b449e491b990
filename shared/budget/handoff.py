"""Slots a process released a moment ago, kept warm for its own next query.

A query costs the shared budget three storage calls taken cold: read the partition, take a slot,
free it. A worker's sub-queries follow each other within milliseconds on the same few slots, so a
freed slot is kept for ``grace`` seconds instead: the next query of this process takes it over
with one conditional write (its request logged, its expiry moved on; ``Budget._regrant``), and
only a slot nobody here wants within the grace is freed in storage. Other instances see the slot
held for that much longer, at most ``grace``: they never queue on it longer than that.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["WarmSlots"]

H = TypeVar("H")
_IDLE_S = 5.0  # the helper thread ends after this long with nothing kept


class WarmSlots(Generic[H]):
    """Released holds waiting ``grace`` seconds for a taker; ``cool`` frees each one nobody took
    (on one helper thread, outside the lock)."""

    def __init__(self, grace: float, cool: Callable[[H], None], *, clock: Callable[[], float] = time.monotonic):
        self.grace = grace
        self._cool = cool
        self._clock = clock
        self._cond = threading.Condition()
        self._held: deque[tuple[float, H]] = deque()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._cond:
            return len(self._held)

    def put(self, hold: H) -> None:
        with self._cond:
            self._held.append((self._clock() + self.grace, hold))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="budget-cool", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def take(self) -> H | None:
        """The hold released last (its slot's state is the freshest here), or ``None``."""
        with self._cond:
            return self._held.pop()[1] if self._held else None

    def flush(self) -> None:
        """Free every hold kept now (the process is about to stop, or go idle)."""
        while (hold := self.take()) is not None:
            self._cool(hold)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._held:
                    if not self._cond.wait(_IDLE_S) and not self._held:
                        self._thread = None  # idle: the next ``put`` starts another
                        return
                    continue
                due, hold = self._held[0]
                wait = due - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                self._held.popleft()
            self._cool(hold)
