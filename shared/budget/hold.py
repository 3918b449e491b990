"""A query slot held by this process, the budget's counters, and the error of a budget that stayed full."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from shared.errors import RetriableError

__all__ = ["BudgetCounts", "BudgetTimeout", "Hold", "Tally"]


class BudgetTimeout(RetriableError):
    """No query slot (or rate) came free within ``max_wait``: give the window back, try it later."""


@dataclass
class BudgetCounts:
    """Storage calls and outcomes of one budget object (this process): the cost of sharing."""

    acquired: int = 0
    reads: int = 0  # partition queries
    grants: int = 0  # writes that took a slot
    handoffs: int = 0  # writes that took over a slot this process had just released (``handoff``)
    conflicts: int = 0  # grants lost to another instance (412/409): read again
    releases: int = 0
    renewals: int = 0
    pauses: int = 0
    lost: int = 0  # a renewal found the slot taken (expired under us)
    timeouts: int = 0
    waited_s: float = 0.0

    @property
    def storage_ops(self) -> int:
        return self.reads + self.grants + self.handoffs + self.conflicts + self.releases + self.renewals + self.pauses

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["storage_ops"] = self.storage_ops
        out["ops_per_query"] = round(self.storage_ops / self.acquired, 2) if self.acquired else None
        return out


@dataclass
class Hold:
    """A slot held by this process: renewed in the background until released."""

    slot: int
    etag: str
    granted_at: float  # seconds (the budget's clock) recorded in the shared rate log
    waited: float
    lost: bool = False
    times: list[int] = field(default_factory=list)  # the slot's request log as this hold wrote it (ms)
    read_at: int = 0  # when the partition read this hold was granted on took place (ms)
    _stop: threading.Event = field(default_factory=threading.Event)
    _renewer: threading.Thread | None = None

    def keep(self, renew: Callable[[Hold], bool], every: float) -> Hold:
        """Call ``renew`` every ``every`` seconds in the background until ``let_go`` or it returns False."""

        def loop() -> None:
            while not self._stop.wait(every) and renew(self):
                pass

        self._renewer = threading.Thread(target=loop, name="budget-renew", daemon=True)
        self._renewer.start()
        return self

    def let_go(self) -> None:
        """Stop renewing (waits for a renewal in progress, so the release writes last)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()


class Tally:
    """Thread-safe ``BudgetCounts``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = BudgetCounts()

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._counts, name, getattr(self._counts, name) + delta)

    def snapshot(self) -> BudgetCounts:
        with self._lock:
            return replace(self._counts)
