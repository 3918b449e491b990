"""The shared query budget against Azurite: slots and rate hold across clients, threads and processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.budget.slots import Budget, BudgetTimeout, Limits

ROOT = Path(__file__).resolve().parents[2]


def new_budget(conn: str, table: str, key: str, limits: Limits, **kw: Any) -> Budget:
    """A budget on its own storage client, as another instance would have."""
    client = TableServiceClient.from_connection_string(conn).get_table_client(table)
    kw.setdefault("poll", (0.02, 0.2))
    return Budget(client, key, limits, **kw)


def worker(
    conn: str, table: str, key: str, limits: Limits, mode: str, n: int, ttl: float = 15.0, handoff: float = 0.0
) -> subprocess.Popen[str]:
    args = [conn, table, key, str(limits.max_concurrent), str(limits.max_requests), str(limits.period), mode, str(n)]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.budget_worker", *args, str(ttl), str(handoff)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an exit at t closes before an enter at t opens)."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def most_in_span(granted: list[float], period: float) -> int:
    """Most grants within any closed span of ``period`` seconds (times in whole milliseconds)."""
    ms = sorted(round(g * 1000) for g in granted)
    span = round(period * 1000)
    return max((sum(1 for t in ms[i:] if t - ms[i] <= span) for i in range(len(ms))), default=0)


def test_threads_on_separate_clients_never_exceed_the_slots(storage_conn, unique):
    limits = Limits(max_concurrent=3, max_requests=10_000)
    budgets = [new_budget(storage_conn, f"budget{unique}", "k1", limits) for _ in range(3)]
    lock = threading.Lock()
    in_flight = peak = done = 0
    errors: list[BaseException] = []

    def run(budget: Budget) -> None:
        nonlocal in_flight, peak, done
        try:
            for _ in range(6):
                with budget.slot():
                    with lock:
                        in_flight += 1
                        peak = max(peak, in_flight)
                    threading.Event().wait(0.15)  # the "query"
                    with lock:
                        in_flight -= 1
                        done += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in budgets for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert done == 72
    assert 2 <= peak <= 3  # queries overlapped (12 workers contended), never past the cap
    counts = [b.counts() for b in budgets]
    ops = sum(c.storage_ops for c in counts) / 72
    print(f"\nBUDGET 12 threads on 3 slots: peak {peak}, {ops:.1f} storage ops per query under contention")
    assert sum(c.acquired for c in counts) == 72
    assert sum(c.releases for c in counts) == 72
    assert sum(c.conflicts for c in counts) > 0 or sum(c.reads for c in counts) > 72  # they did contend


@pytest.mark.parametrize("handoff", [0.0, 0.5], ids=["cold", "handoff"])
def test_processes_never_exceed_the_slots(storage_conn, unique, handoff):
    limits = Limits(max_concurrent=2, max_requests=10_000)
    procs = [worker(storage_conn, f"budget{unique}", "k2", limits, "hold", 5, handoff=handoff) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    holds = [json.loads(line) for out in outs for line in out.splitlines() if "enter" in line]
    assert len(holds) == 20
    assert max_overlap([(h["enter"], h["exit"]) for h in holds]) == 2  # reached, never passed


def test_a_killed_holder_frees_its_slot_within_seconds(storage_conn, unique):
    limits = Limits(max_concurrent=1, max_requests=10_000)
    proc = worker(storage_conn, f"budget{unique}", "k3", limits, "block", 1, ttl=3.0)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        mine = new_budget(storage_conn, f"budget{unique}", "k3", limits, ttl=3.0, max_wait=0.5)
        with pytest.raises(BudgetTimeout, match="no slot within"):
            mine.acquire()  # the other process holds the only slot
        patient = new_budget(storage_conn, f"budget{unique}", "k3", limits, ttl=3.0, max_wait=4.0)
        with pytest.raises(BudgetTimeout):
            patient.acquire()  # polled longer than the ttl: a live holder's renewals keep the slot
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    killed = time.monotonic()
    after = new_budget(storage_conn, f"budget{unique}", "k3", limits, ttl=3.0, max_wait=30.0)
    with after.slot():
        freed = time.monotonic() - killed
    print(f"\nBUDGET killed holder's slot retaken after {freed:.2f}s (ttl 3s)")
    assert freed < 15.0  # the slot expired (ttl) and was taken again; well before 30 s


class FakeTime:
    """A clock that only moves when slept on (the production 30 s period, tested instantly)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("handoff", [0.0, 0.5], ids=["cold", "handoff"])
def test_rate_allows_n_per_30s_on_an_injected_clock(storage_conn, unique, handoff):
    fake = FakeTime()
    limits = Limits(max_concurrent=5, max_requests=3)  # production period: 30 s
    budget = new_budget(
        storage_conn, f"budget{unique}", "k4", limits, clock=fake.clock, sleep=fake.sleep, ttl=600, handoff=handoff
    )
    granted = []
    for _ in range(10):
        with budget.slot() as hold:
            granted.append(hold.granted_at)
        fake.sleep(0.1)
    assert most_in_span(granted, 30.0) == 3
    assert granted[:3] == [granted[0], granted[0] + 0.1, granted[0] + 0.2]  # free until the limit
    gaps = [b - a for a, b in zip(granted, granted[3:], strict=False)]
    assert all(30.0 < g < 31.5 for g in gaps)  # waits for the oldest to leave the span, not much longer


@pytest.mark.parametrize("handoff", [0.0, 0.5], ids=["cold", "handoff"])
def test_rate_holds_across_processes(storage_conn, unique, handoff):
    limits = Limits(max_concurrent=5, max_requests=3, period=1.0)  # a short period for the test only
    procs = [worker(storage_conn, f"budget{unique}", "k5", limits, "hold", 4, handoff=handoff) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    granted = [json.loads(line)["granted"] for out in outs for line in out.splitlines() if "granted" in line]
    assert len(granted) == 12
    assert most_in_span(granted, 1.0) == 3


def test_a_pause_from_a_429_holds_every_instance(storage_conn, unique):
    fake = FakeTime()
    limits = Limits()
    a = new_budget(storage_conn, f"budget{unique}", "k6", limits, clock=fake.clock, sleep=fake.sleep)
    b = new_budget(storage_conn, f"budget{unique}", "k6", limits, clock=fake.clock, sleep=fake.sleep)
    with a.slot():
        pass
    a.pause(20.0)
    start = fake.now
    with a.slot() as own:  # the thread that was told waits in its own retry, not here again
        assert own.granted_at < start + 1.0
    with b.slot() as hold:
        assert hold.granted_at >= start + 20.0
    assert hold.waited >= 20.0


def test_a_holder_whose_slot_expired_finds_it_lost_and_leaves_the_new_holder_alone(storage_conn, unique):
    late, early = FakeTime(), FakeTime()
    late.now = early.now + 700  # the stalled holder's expiry (ttl 600 s, never renewed) has passed
    limits = Limits(max_concurrent=1, max_requests=10_000)
    stalled = new_budget(storage_conn, f"budget{unique}", "k8", limits, clock=early.clock, ttl=600)
    other = new_budget(
        storage_conn, f"budget{unique}", "k8", limits, clock=late.clock, sleep=late.sleep, ttl=600, max_wait=5
    )
    old = stalled.acquire()
    new = other.acquire()  # the expired slot is free to take
    stalled.release(old)
    assert old.lost and stalled.counts().lost == 1
    with pytest.raises(BudgetTimeout):
        other.acquire()  # the stalled release did not free the new holder's slot
    other.release(new)
    assert not new.lost
    with other.slot():
        pass


def test_storage_ops_and_latency_per_query(storage_conn, unique):
    """Figures, not assertions on speed: the cost of one uncontended query's budget."""
    budget = new_budget(storage_conn, f"budget{unique}", "k7", Limits())
    with budget.slot():  # creates the table and entities
        pass
    before = budget.counts().storage_ops
    n = 30
    started = time.perf_counter()
    for _ in range(n):
        with budget.slot():
            pass
    per_query_ms = (time.perf_counter() - started) / n * 1000
    ops = (budget.counts().storage_ops - before) / n
    print(f"\nBUDGET storage ops per query: {ops:.2f}; added latency per query against Azurite: {per_query_ms:.1f} ms")
    assert ops == 3.0  # read + grant transaction + release, uncontended
