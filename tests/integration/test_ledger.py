"""The Table Storage ledger against real Azurite: claims, leases, ETag races, snapshots."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient

from shared.ledger import LeaseLost, Ledger
from shared.model import Window

T0 = datetime(2026, 11, 2, tzinfo=UTC)
H = timedelta(hours=1)
LEASE = timedelta(minutes=10)


@pytest.fixture()
def ledger(storage_conn, unique) -> Ledger:
    return Ledger(TableServiceClient.from_connection_string(storage_conn), f"ledger{unique}")


def w(i: int) -> Window:
    return Window(T0 + i * H, T0 + (i + 1) * H)


def claim(ledger, i, owner="a", now=T0 + 48 * H, force=False, **kw):
    if force:
        return ledger.force_claim("p1", w(i), owner=owner, now=now, lease=LEASE)
    return ledger.claim("p1", w(i), owner=owner, now=now, lease=LEASE, max_attempts=3, **kw)


def test_first_claim_creates_running_entity_and_complete_marks_done(ledger):
    c = claim(ledger, 0)
    assert c is not None and c.attempts == 1
    state = ledger.get("p1", w(0))
    assert state.status == "running" and state.lease_owner == "a"
    ledger.complete(
        c,
        now=T0 + 49 * H,
        rows=7,
        nbytes=123,
        outputs=[{"sink": 0, "name": "x/y.jsonl.gz", "rows": 7, "bytes": 123, "sha256": "ab"}],
        source_count=7,
    )
    state = ledger.get("p1", w(0))
    assert (state.status, state.rows, state.bytes, state.source_count) == ("done", 7, 123, 7)
    assert state.outputs == ({"sink": 0, "name": "x/y.jsonl.gz", "rows": 7, "bytes": 123, "sha256": "ab"},)
    assert state.lease_until is None
    assert claim(ledger, 0) is None  # done: not ours again
    forced = claim(ledger, 0, force=True)
    assert forced is not None and forced.attempts == 1


def test_live_lease_blocks_others_until_it_expires(ledger):
    now = T0 + 48 * H
    assert claim(ledger, 1, owner="a", now=now) is not None
    assert claim(ledger, 1, owner="b", now=now + timedelta(minutes=5)) is None
    assert (
        claim(ledger, 1, owner="b", now=now + timedelta(minutes=5), force=True) is None
    )  # force never breaks a live lease
    taken = claim(ledger, 1, owner="b", now=now + timedelta(minutes=11))
    assert taken is not None and taken.attempts == 1  # a takeover is not a failed attempt
    state = ledger.get("p1", w(1))
    assert (state.status, state.attempts, state.takeovers, state.lease_owner) == ("running", 1, 1, "b")


def test_stale_owner_cannot_complete_after_takeover(ledger):
    now = T0 + 48 * H
    first = claim(ledger, 2, owner="a", now=now)
    second = claim(ledger, 2, owner="b", now=now + timedelta(minutes=11))
    assert first is not None and second is not None
    with pytest.raises(LeaseLost):
        ledger.complete(first, now=now, rows=1, nbytes=1, outputs=[])
    ledger.complete(second, now=now, rows=2, nbytes=2, outputs=[])
    assert ledger.get("p1", w(2)).rows == 2


def test_renew_extends_lease_and_keeps_claim_valid(ledger):
    now = T0 + 48 * H
    c = claim(ledger, 3, now=now)
    ledger.renew(c, now + timedelta(minutes=9), LEASE)
    assert claim(ledger, 3, owner="b", now=now + timedelta(minutes=15)) is None
    ledger.complete(c, now=now, rows=0, nbytes=0, outputs=[])


def test_failures_back_off_and_stop_after_max_attempts(ledger):
    now = T0 + 48 * H
    for attempt in (1, 2, 3):
        c = claim(ledger, 4, now=now)
        assert c is not None and c.attempts == attempt
        ledger.fail(c, now=now, error=f"boom {attempt}", next_attempt_at=now + timedelta(minutes=1))
        assert claim(ledger, 4, now=now) is None  # not before next_attempt_at
        now += timedelta(minutes=2)
    assert claim(ledger, 4, now=now) is None  # 3 attempts used
    state = ledger.get("p1", w(4))
    assert state.status == "failed" and state.error == "boom 3" and state.attempts == 3
    assert ledger.request_replay("p1", [w(4)], now) == 1
    again = claim(ledger, 4, now=now)
    assert again is not None and again.attempts == 1


def test_concurrent_claims_have_exactly_one_winner(ledger):
    ledger.ensure()

    def attempt(owner: str):
        return claim(ledger, 5, owner=owner)

    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(attempt, [f"runner{i}" for i in range(16)]))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    assert ledger.get("p1", w(5)).lease_owner == winners[0].owner


def test_record_new_and_snapshot_single_query_view(ledger):
    now = T0 + 48 * H
    ledger.record_new("p1", [w(i) for i in range(150)], now)  # more than one 100-entity transaction
    ledger.record_new("p1", [w(i) for i in range(140, 160)], now)  # overlap: idempotent
    assert ledger.frontier("p1") == w(159).end
    c = claim(ledger, 0, now=now)
    ledger.complete(c, now=now, rows=1, nbytes=1, outputs=[])
    snap = ledger.snapshot("p1")
    assert snap.frontier == w(159).end
    assert len(snap.states) == 159 and all(s.status == "pending" for s in snap.states)
    with_lookback = ledger.snapshot("p1", since=T0)
    assert len(with_lookback.states) == 160
    assert len(list(ledger.states("p1"))) == 160


def test_frontier_never_moves_back(ledger):
    now = T0
    ledger.advance_frontier("p2", T0 + 5 * H, now)
    ledger.advance_frontier("p2", T0 + 3 * H, now)
    assert ledger.frontier("p2") == T0 + 5 * H
