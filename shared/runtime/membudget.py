"""The per-process byte budget for rows held in memory between the service and the sinks.

Every window moved in a process reads its sub-queries ahead of its writer (``window_run.Ahead``)
and its sinks buffer encoded data; four windows at once (the host's ``batchSize`` 2 +
``newBatchThreshold`` 2) must fit one Flex Consumption instance (512, 2,048 or 4,096 MB). Rows
differ tenfold in width between tables, so the bound is in bytes, not rows: a read-ahead step
reserves its expected size here before its query is sent, and gives it back once its rows are
written. The step a writer needs next is always read (a window never starves), so the budget
bounds what is read *ahead*.

``MOVER_MEMORY_BUDGET_MB`` sets it; by default it is 1/64 of the instance's memory
(``MOVER_INSTANCE_MEMORY_MB``, else the container's cgroup limit, else the machine's memory;
at most 4,096 MB counted): 32 MB on a 2,048 MB instance, 64 MB on 4,096 MB, 16 MB on 512 MB.
"""

from __future__ import annotations

import os
import threading

from shared.settings.memory import default_budget_mb

__all__ = ["ByteBudget", "process_budget", "set_process_budget"]



class ByteBudget:
    """A counting semaphore in bytes. ``try_reserve`` never blocks; ``force`` always succeeds.

    Thread-safe. ``used`` may exceed ``limit`` through ``force`` (the step a writer needs) and
    through ``adjust`` (a step came back larger than expected); new reservations then wait until
    enough is released.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()

    def try_reserve(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit and self.used > 0:
                return False
            self._add(n)
            return True

    def force(self, n: int) -> None:
        with self._lock:
            self._add(n)

    def adjust(self, delta: int) -> None:
        with self._lock:
            self._add(delta)

    def release(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)

    def _add(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)


_process: ByteBudget | None = None
_process_lock = threading.Lock()


def process_budget() -> ByteBudget:
    """The budget every window of this process shares (the default until the engine sets it)."""
    global _process
    with _process_lock:
        if _process is None:
            _process = ByteBudget(default_budget_mb(os.environ) * 2**20)
        return _process


def set_process_budget(megabytes: int) -> None:
    """Set the limit (from ``Settings.memory_budget_mb``; the engine calls it at start)."""
    process_budget().limit = max(1, megabytes) * 2**20
