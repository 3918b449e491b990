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
With ``handoff`` (production: ``MOVER_QUERY_HANDOFF_MS``, default 500) a released slot waits that
long for this process's next query, which takes it over with 1 write (``shared.budget.handoff``).
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
from dataclasses import replace

from azure.data.tables import TableClient

from shared.budget.handoff import WarmSlots
from shared.budget.hold import BudgetCounts, BudgetTimeout, Hold, Tally
from shared.budget.state import Grant, Limits, Wait, decide, quota
from shared.budget.store import SlotStore

__all__ = ["Budget", "BudgetCounts", "BudgetTimeout", "Hold", "Limits"]

log = logging.getLogger(__name__)


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
        handoff: float = 0.0,
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
        self._tally = Tally()
        self._count = self._tally.add
        self._store = SlotStore(table, key, self.holder, self._count)
        self._own = threading.local()  # the pause this thread set: its caller waits it out already
        self._freed = threading.Condition()  # a slot of this process was released: a local waiter looks now
        self._releases = 0
        self._paused_until = 0  # the latest pause this process set (ms)
        # ``handoff`` > 0: a released slot waits that long for this process's next query (``WarmSlots``).
        self._warm: WarmSlots[Hold] | None = WarmSlots(handoff, self._cool) if handoff > 0 else None

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
            if self._warm is not None and (warm := self._warm.take()) is not None:
                hold = self._regrant(warm, started)
                if hold is not None:
                    return hold
            now_ms = _ms(self._clock())
            snap = self._store.read()
            if snap.paused_until <= getattr(self._own, "pause", 0):
                snap = replace(snap, paused_until=0)
            decision = decide(snap, now_ms, self.limits, self._rng)
            if isinstance(decision, Grant):
                expires = self._expiry(now_ms)
                etag = self._store.take(
                    decision.slot, decision.etag, decision.times, decision.base, expires, what="grants"
                )
                if etag is not None:
                    return self._held(decision.slot, etag, now_ms, decision.times, read_at=now_ms, started=started)
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

    def _regrant(self, old: Hold, started: float) -> Hold | None:
        """Take over ``old``, a slot this process released moments ago, with one conditional write
        that logs the request and moves the expiry on: no read, no release in between. Only while
        the partition read behind it is at most ``ttl / 3`` old (so a pause another instance set
        is seen within that), no pause of this process runs, and the slot has rate left; else the
        slot is freed and ``None`` returned (the caller takes the cold path)."""
        now_ms = _ms(self._clock())
        period = round(self.limits.period * 1000)
        recent = [t for t in old.times if t >= now_ms - period]
        fresh = now_ms - old.read_at <= round(self.ttl / 3 * 1000) and now_ms >= self._paused_until
        if not fresh or len(recent) >= quota(self.limits, old.slot):
            self._cool(old)
            return None
        times, base = [*recent, now_ms], now_ms - period
        etag = self._store.take(old.slot, old.etag, times, base, self._expiry(now_ms), what="handoffs")
        if etag is None:  # expired and taken meanwhile: only a very late taker sees this
            return None
        return self._held(old.slot, etag, now_ms, times, read_at=old.read_at, started=started)

    def _held(self, slot: int, etag: str, now_ms: int, times: list[int], *, read_at: int, started: float) -> Hold:
        """The hold of a slot just taken (granted or handed off), counted and renewed from now on."""
        waited = self._clock() - started
        self._count(acquired=1, waited_s=waited)
        hold = Hold(slot, etag, now_ms / 1000, waited, times=times, read_at=read_at)
        return hold.keep(self._renew, self.ttl / 3)

    def _expiry(self, now_ms: int) -> int:
        return now_ms + round(self.ttl * 1000)

    def _cool(self, hold: Hold) -> None:
        """Free a slot in storage (a warm one nobody here took, or one a hand-off refused)."""
        self._store.write_slot(hold, expires=0, what="releases")

    def flush(self) -> None:
        """Free now the slots kept warm for this process's next query (it is about to stop)."""
        if self._warm is not None:
            self._warm.flush()

    # -- hold: renew, release -----------------------------------------------------------------
    def _renew(self, hold: Hold) -> bool:
        return self._store.write_slot(hold, expires=self._expiry(_ms(self._clock())), what="renewals")

    def release(self, hold: Hold) -> None:
        """Free the slot now (the rate's request stays counted). Never raises: a failed release
        only leaves the slot to expire after ``ttl``."""
        hold.let_go()
        if not hold.lost:
            if self._warm is not None:
                self._warm.put(hold)  # this process's next query takes it over, else it is freed soon
            else:
                self._cool(hold)
        with self._freed:
            self._releases += 1
            self._freed.notify()

    # -- 429 ------------------------------------------------------------------------------------
    def pause(self, seconds: float) -> None:
        """The service said 429 + Retry-After: no other query starts for ``seconds``, here or elsewhere.

        The calling thread is exempt: it waits the ``Retry-After`` out in its own retry (and a test's
        injected sleep stays in charge). Best effort (a grant already read may still go); never raises."""
        until = _ms(self._clock() + min(seconds, 300.0))
        self._own.pause = until
        self._paused_until = max(self._paused_until, until)
        self._store.write_pause(until)


def _ms(seconds: float) -> int:
    return int(seconds * 1000 + 0.999)  # round up: a logged start never looks older than it was


def _reason(wait: Grant | Wait) -> str:
    return wait.reason if isinstance(wait, Wait) else "lost races to other instances"
