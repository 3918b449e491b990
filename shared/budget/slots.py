"""One query budget per identity and endpoint, shared by every instance and thread (Azure Table Storage).

The query API allows an identity 5 concurrent queries and about 200 requests per 30 s; a scaled-out
app must stay under that as a whole, so the budget lives in the state account, not in a process.

Why Table entities with ETags and an expiry, not blob leases:

- **One read, one conditional write per grant.** A partition holds one entity per slot; each
  carries its holder, its expiry and the start times of the requests made on it, and the rate is
  split over the slots (``max_requests / max_concurrent`` each, so the sum never passes the limit).
  One query reads the partition, one if-match update takes a slot *and* logs the request (a racing
  instance gets 412 and reads again); instances contend only when they pick the same slot. With
  blob leases, finding a free slot costs a try per leased blob and the rate needs its own
  conditional write anyway — more calls, and no atomicity between slot and rate.
- **A crashed holder frees its slot in seconds, by our choice.** A slot's expiry is ``ttl``
  (default 15 s) ahead and renewed every ``ttl/3`` while the query runs; a blob lease is at least
  15 s, renewable, with the same heartbeat. The price: expiry compares the holders' clocks
  (NTP-synced Azure hosts differ by far less than the ``ttl - ttl/3`` margin).

Per query: 1 partition read + 1 write to acquire, 1 write to release, + 1 write per
``ttl/3`` of a longer query; more only under contention (a 412 re-reads, a full budget polls with
jittered backoff up to ``max_wait``, then raises ``BudgetTimeout`` so the window retries later).
A 429's ``Retry-After`` is shared through the ``pause`` entity so every instance waits.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.budget.state import (
    PAUSE_ROW,
    Grant,
    Limits,
    SlotView,
    Snapshot,
    Wait,
    decide,
    pack_times,
    slot_row,
    unpack_times,
)
from shared.errors import RetriableError

__all__ = ["Budget", "BudgetCounts", "BudgetTimeout", "Hold", "Limits"]

log = logging.getLogger(__name__)
_IF_MATCH: dict[str, Any] = {"mode": UpdateMode.MERGE, "match_condition": MatchConditions.IfNotModified}
# Times are stored as Double milliseconds (exact below 2**53): a Python int above 2**31 is not an Edm.Int64.


class BudgetTimeout(RetriableError):
    """No query slot (or rate) came free within ``max_wait``: give the window back, try it later."""


@dataclass
class BudgetCounts:
    """Storage calls and outcomes of one budget object (this process): the cost of sharing."""

    acquired: int = 0
    reads: int = 0  # partition queries
    grants: int = 0  # writes that took a slot
    conflicts: int = 0  # grants lost to another instance (412/409): read again
    releases: int = 0
    renewals: int = 0
    pauses: int = 0
    lost: int = 0  # a renewal found the slot taken (expired under us)
    timeouts: int = 0
    waited_s: float = 0.0

    @property
    def storage_ops(self) -> int:
        return self.reads + self.grants + self.conflicts + self.releases + self.renewals + self.pauses

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


class _Tally:
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


class Budget:
    """A distributed semaphore (``max_concurrent`` slots) and rate limiter (``max_requests`` per ``period``).

    Thread-safe; one per (table, key) per process is enough (see ``shared.budget.registry``).
    ``clock`` (epoch seconds) and ``sleep`` are injectable for tests; production uses wall time.
    """

    def __init__(
        self,
        table: TableClient,
        key: str,
        limits: Limits,
        *,
        ttl: float = 15.0,
        max_wait: float = 120.0,
        poll: tuple[float, float] = (0.05, 1.0),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        holder: str | None = None,
    ) -> None:
        self.table = table
        self.key = key
        self.limits = limits
        self.ttl = ttl
        self.max_wait = max_wait
        self._poll = poll
        self._clock = clock
        self._sleep = sleep
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._rng = random.Random()
        self._tally = _Tally()
        self._count = self._tally.add
        self._table_ready = False
        self._own = threading.local()  # the pause this thread set: its caller waits it out already
        self._freed = threading.Condition()  # a slot of this process was released: a local waiter looks now
        self._releases = 0

    def __repr__(self) -> str:
        return f"Budget(table={self.table.table_name!r}, key={self.key!r}, limits={self.limits})"

    def counts(self) -> BudgetCounts:
        return self._tally.snapshot()

    @contextmanager
    def slot(self) -> Iterator[Hold]:
        """Hold one slot (and one request of the rate) for the body; released on any exit."""
        hold = self.acquire()
        try:
            yield hold
        finally:
            self.release(hold)

    # -- acquire ------------------------------------------------------------------------------
    def acquire(self) -> Hold:
        """Wait (bounded) for a slot and the rate. Raises ``BudgetTimeout`` after ``max_wait``,
        ``RetriableError`` when storage fails."""
        started = self._clock()
        delay = self._poll[0]
        while True:
            releases = self._releases  # before the read: a release after it cuts the wait short
            now_ms = _ms(self._clock())
            snap = self._read()
            if snap.paused_until <= getattr(self._own, "pause", 0):
                snap = replace(snap, paused_until=0)
            decision = decide(snap, now_ms, self.limits, self._rng)
            if isinstance(decision, Grant):
                etag = self._grant(decision, now_ms)
                if etag is not None:
                    waited = self._clock() - started
                    self._count(acquired=1, waited_s=waited)
                    return Hold(decision.slot, etag, now_ms / 1000, waited).keep(self._renew, self.ttl / 3)
                pause = self._rng.uniform(0, self._poll[0])  # lost a race: look again soon
            else:
                pause = self._pause_for(decision, delay)
                delay = min(self._poll[1], delay * 2)
            if self._clock() + pause - started > self.max_wait:
                self._count(timeouts=1)
                raise BudgetTimeout(
                    f"query budget {self.key}: no slot within {self.max_wait:.0f}s"
                    f" ({self.limits.max_concurrent} concurrent, {self.limits.max_requests} per"
                    f" {self.limits.period:.0f}s across the app; last wait: {_reason(decision)})",
                    retry_after=min(60.0, self.max_wait),
                )
            self._nap(pause, releases)

    def _nap(self, seconds: float, releases: int) -> None:
        """Wait ``seconds`` before looking again, or less: a slot this process releases meanwhile
        wakes one waiter at once (instances poll each other's slots; threads here need not). An
        injected ``sleep`` (a test's fake clock) keeps its own time."""
        if self._sleep is not time.sleep:
            self._sleep(seconds)
            return
        with self._freed:
            self._freed.wait_for(lambda: self._releases != releases, timeout=seconds)

    def _pause_for(self, wait: Wait, delay: float) -> float:
        jittered = self._rng.uniform(delay / 2, delay)
        if wait.ms is None:
            return jittered
        return max(wait.ms / 1000, 0.001) + self._rng.uniform(0, self._poll[0])

    def _read(self) -> Snapshot:
        try:
            entities = list(self.table.query_entities("PartitionKey eq @pk", parameters={"pk": self.key}))
        except ResourceNotFoundError:
            self._ensure_table()
            entities = []
        except AzureError as exc:
            raise RetriableError(f"query budget storage read failed: {exc}") from exc
        finally:
            self._count(reads=1)
        slots: dict[int, SlotView] = {}
        paused_until, pause_etag = 0, None
        for e in entities:
            row, etag = str(e["RowKey"]), str(e.metadata["etag"])
            if row == PAUSE_ROW:
                paused_until, pause_etag = int(e.get("until", 0)), etag
            elif row.startswith("slot-") and row[5:].isdigit():
                times = unpack_times(e.get("log"), int(e.get("base", 0)))
                slots[int(row[5:])] = SlotView(int(e.get("expires", 0)), str(e.get("holder", "")), times, etag)
        return Snapshot(slots, paused_until, pause_etag)

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        try:
            self.table.create_table()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise RetriableError(f"query budget table {self.table.table_name}: {exc}") from exc
        self._table_ready = True

    def _grant(self, grant: Grant, now_ms: int) -> str | None:
        """Take the slot and log the request in one conditional write. Returns the new etag, or
        ``None`` when another instance changed the slot first."""
        entity = {
            "PartitionKey": self.key,
            "RowKey": slot_row(grant.slot),
            "holder": self.holder,
            "expires": float(now_ms + round(self.ttl * 1000)),
            "base": float(grant.base),
            "log": pack_times(grant.times, grant.base),
        }
        try:
            if grant.etag is None:
                meta = self.table.create_entity(entity)
            else:
                meta = self.table.update_entity(entity, etag=grant.etag, **_IF_MATCH)
        except (ResourceExistsError, ResourceModifiedError):  # 409 / 412: another instance was first
            self._count(conflicts=1)
            return None
        except AzureError as exc:
            raise RetriableError(f"query budget grant failed: {exc}") from exc
        self._count(grants=1)
        return str(meta["etag"])

    # -- hold: renew, release -----------------------------------------------------------------
    def _renew(self, hold: Hold) -> bool:
        return self._write_slot(hold, expires=_ms(self._clock()) + round(self.ttl * 1000), what="renewals")

    def release(self, hold: Hold) -> None:
        """Free the slot now (the rate's request stays counted). Never raises: a failed release
        only leaves the slot to expire after ``ttl``."""
        hold.let_go()
        if not hold.lost:
            self._write_slot(hold, expires=0, what="releases")
        with self._freed:
            self._releases += 1
            self._freed.notify()

    def _write_slot(self, hold: Hold, *, expires: int, what: str) -> bool:
        entity = {
            "PartitionKey": self.key,
            "RowKey": slot_row(hold.slot),
            "holder": self.holder,
            "expires": float(expires),
        }
        self._count(**{what: 1})
        try:
            meta = self.table.update_entity(entity, etag=hold.etag, **_IF_MATCH)
        except ResourceModifiedError:
            hold.lost = True
            self._count(lost=1)
            log.warning("query budget %s: slot %d expired while held (taken by another query)", self.key, hold.slot)
            return False
        except AzureError as exc:
            log.warning("query budget %s: %s of slot %d failed: %s", self.key, what, hold.slot, exc)
            return what == "renewals"  # keep trying to renew; a failed release just expires
        hold.etag = str(meta["etag"])
        return True

    # -- 429 ------------------------------------------------------------------------------------
    def pause(self, seconds: float) -> None:
        """The service said 429 + Retry-After: no other query starts for ``seconds``, here or elsewhere.

        The calling thread is exempt: it waits the ``Retry-After`` out in its own retry (and a test's
        injected sleep stays in charge). Best effort (a grant already read may still go); never raises."""
        until = _ms(self._clock() + min(seconds, 300.0))
        self._own.pause = until
        entity = {"PartitionKey": self.key, "RowKey": PAUSE_ROW, "until": float(until)}
        for _ in range(3):
            try:
                snap = self._read()
                if snap.paused_until >= until:
                    return
                self._count(pauses=1)
                if snap.pause_etag is None:
                    self.table.create_entity(entity)
                else:
                    self.table.update_entity(entity, etag=snap.pause_etag, **_IF_MATCH)
                return
            except (ResourceExistsError, ResourceModifiedError):
                continue  # another instance paused at the same time: read theirs
            except (AzureError, RetriableError) as exc:
                log.warning("query budget %s: could not share a pause: %s", self.key, exc)
                return


def _ms(seconds: float) -> int:
    return int(seconds * 1000 + 0.999)  # round up: a logged start never looks older than it was


def _reason(wait: Grant | Wait) -> str:
    return wait.reason if isinstance(wait, Wait) else "lost races to other instances"
