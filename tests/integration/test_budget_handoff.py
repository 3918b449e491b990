"""A released query slot kept warm for the process's next query (``Budget(handoff=…)``), on Azurite."""

from __future__ import annotations

import threading
import time

from azure.data.tables import TableServiceClient

from shared.budget.slots import Budget, Limits
from shared.budget.state import slot_row
from tests.integration.test_budget import FakeTime, most_in_span, new_budget


def slot_expires(conn: str, table: str, key: str, slot: int) -> float:
    client = TableServiceClient.from_connection_string(conn).get_table_client(table)
    return float(client.get_entity(key, slot_row(slot))["expires"])


def wait_until(check, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        threading.Event().wait(0.02)
    return False


def test_back_to_back_queries_take_the_slot_over_with_one_write(storage_conn, unique):
    budget = new_budget(storage_conn, f"budget{unique}", "h1", Limits(), handoff=0.5)
    with budget.slot() as first:
        pass
    n = 20
    slots = []
    for _ in range(n):
        with budget.slot() as hold:
            slots.append(hold.slot)
    counts = budget.counts()
    print(f"\nBUDGET with hand-off: {counts.storage_ops / counts.acquired:.2f} storage ops per query")
    assert counts.handoffs == n and counts.reads == 1 and counts.grants == 1
    assert set(slots) == {first.slot}  # one slot, taken over each time
    assert counts.releases == 0  # still warm: nothing freed in storage yet


def test_a_warm_slot_nobody_takes_is_freed_in_storage(storage_conn, unique):
    table = f"budget{unique}"
    budget = new_budget(storage_conn, table, "h2", Limits(), handoff=0.3)
    with budget.slot() as hold:
        assert slot_expires(storage_conn, table, "h2", hold.slot) > 0
    assert slot_expires(storage_conn, table, "h2", hold.slot) > 0  # kept for a next query
    assert wait_until(lambda: slot_expires(storage_conn, table, "h2", hold.slot) == 0)
    assert budget.counts().releases == 1


def test_flush_frees_the_warm_slots_at_once(storage_conn, unique):
    table = f"budget{unique}"
    budget = new_budget(storage_conn, table, "h3", Limits(), handoff=60.0)
    with budget.slot() as hold:
        pass
    budget.flush()
    assert slot_expires(storage_conn, table, "h3", hold.slot) == 0


def test_another_instance_waits_at_most_the_grace_for_a_warm_slot(storage_conn, unique):
    limits = Limits(max_concurrent=1, max_requests=10_000)
    mine = new_budget(storage_conn, f"budget{unique}", "h4", limits, handoff=0.5)
    other = new_budget(storage_conn, f"budget{unique}", "h4", limits, max_wait=10.0)
    with mine.slot():
        pass
    released = time.monotonic()
    with other.slot():
        waited = time.monotonic() - released
    print(f"\nBUDGET another instance took the only slot {waited:.2f}s after its hand-off grace (0.5 s) began")
    assert other.counts().acquired == 1 and mine.counts().releases == 1


def test_no_hand_off_on_a_stale_read(storage_conn, unique):
    fake = FakeTime()
    budget = new_budget(storage_conn, f"budget{unique}", "h5", Limits(), clock=fake.clock, sleep=fake.sleep, handoff=5)
    with budget.slot():
        pass
    fake.sleep(budget.ttl / 3 + 1)  # another instance's pause would not have been seen
    with budget.slot():
        pass
    counts = budget.counts()
    assert counts.handoffs == 0 and counts.reads == 2 and counts.grants == 2 and counts.releases == 1


def test_a_pause_of_this_process_stops_the_hand_off(storage_conn, unique):
    fake = FakeTime()
    budget = new_budget(storage_conn, f"budget{unique}", "h6", Limits(), clock=fake.clock, sleep=fake.sleep, handoff=5)
    with budget.slot():
        pass
    start = fake.now
    told = threading.Thread(target=budget.pause, args=(20.0,))  # another thread got the 429
    told.start()
    told.join()
    with budget.slot() as hold:
        assert hold.granted_at >= start + 20.0
    assert budget.counts().handoffs == 0


def test_hand_offs_keep_each_slots_share_of_the_rate(storage_conn, unique):
    fake = FakeTime()
    limits = Limits(max_concurrent=2, max_requests=6)  # 3 per slot per 30 s
    budget: Budget = new_budget(
        storage_conn, f"budget{unique}", "h7", limits, clock=fake.clock, sleep=fake.sleep, ttl=600, handoff=5
    )
    granted: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(12):
        with budget.slot() as hold:
            granted[hold.slot].append(hold.granted_at)
        fake.sleep(0.1)
    assert budget.counts().handoffs > 0
    assert all(most_in_span(times, 30.0) <= 3 for times in granted.values())
    assert most_in_span(granted[0] + granted[1], 30.0) == 6
