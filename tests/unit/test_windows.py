from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.model import Window
from shared.settings import WindowConfig
from shared.windows import WindowState, align_down, align_up, due_end, eligible, plan_windows, retry_at

H = timedelta(hours=1)
T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)


def cfg(**kw) -> WindowConfig:
    base = {"size": H, "start": T0, "delay": timedelta(minutes=5), "max_per_tick": 100}
    return WindowConfig(**(base | kw))


@pytest.mark.parametrize(
    ("ts", "size", "down", "up"),
    [
        (
            datetime(2026, 11, 2, 10, 7, tzinfo=UTC),
            H,
            datetime(2026, 11, 2, 10, tzinfo=UTC),
            datetime(2026, 11, 2, 11, tzinfo=UTC),
        ),
        (
            datetime(2026, 11, 2, 10, 0, tzinfo=UTC),
            H,
            datetime(2026, 11, 2, 10, tzinfo=UTC),
            datetime(2026, 11, 2, 10, tzinfo=UTC),
        ),
        (
            datetime(2026, 11, 2, 10, 29, 59, tzinfo=UTC),
            timedelta(minutes=15),
            datetime(2026, 11, 2, 10, 15, tzinfo=UTC),
            datetime(2026, 11, 2, 10, 30, tzinfo=UTC),
        ),
        (
            datetime(2026, 11, 2, 23, 59, tzinfo=UTC),
            timedelta(days=1),
            datetime(2026, 11, 2, tzinfo=UTC),
            datetime(2026, 11, 3, tzinfo=UTC),
        ),
    ],
    ids=["hour-mid", "hour-exact", "15m", "day"],
)
def test_align(ts, size, down, up):
    assert align_down(ts, size) == down
    assert align_up(ts, size) == up


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (T0 + timedelta(hours=3, minutes=4), T0 + 2 * H),  # 03:00 window end + 5m delay not reached
        (T0 + timedelta(hours=3, minutes=5), T0 + 3 * H),  # exactly end + delay: due
        (T0 - H, T0),  # before the start: nothing due
    ],
    ids=["delay-not-passed", "delay-passed", "before-start"],
)
def test_due_end(now, expected):
    assert due_end(cfg(), now) == expected


def test_due_end_capped_by_end():
    assert due_end(cfg(end=T0 + 2 * H), T0 + 10 * H) == T0 + 2 * H


def test_first_plan_backfills_oldest_first_up_to_cap():
    plan = plan_windows(cfg(max_per_tick=5), T0 + timedelta(hours=48, minutes=10), None, [])
    assert [w.start for w in plan.windows] == [T0 + i * H for i in range(5)]
    assert plan.new == plan.windows


def test_plan_continues_from_frontier_without_gaps():
    now = T0 + timedelta(hours=10, minutes=6)
    plan = plan_windows(cfg(), now, T0 + 7 * H, [])
    assert [w.start for w in plan.windows] == [T0 + 7 * H, T0 + 8 * H, T0 + 9 * H]


def test_plan_puts_eligible_old_windows_first_and_respects_cap():
    now = T0 + timedelta(hours=10, minutes=6)
    failed = WindowState(Window(T0 + H, T0 + 2 * H), "failed", attempts=1, next_attempt_at=now - timedelta(seconds=1))
    waiting = WindowState(Window(T0 + 2 * H, T0 + 3 * H), "failed", attempts=1, next_attempt_at=now + H)
    exhausted = WindowState(Window(T0 + 3 * H, T0 + 4 * H), "failed", attempts=5)
    leased = WindowState(Window(T0 + 4 * H, T0 + 5 * H), "running", lease_until=now + H)
    expired = WindowState(Window(T0 + 5 * H, T0 + 6 * H), "running", lease_until=now - H)
    pending = WindowState(Window(T0 + 6 * H, T0 + 7 * H), "pending")
    plan = plan_windows(cfg(max_per_tick=4), now, T0 + 8 * H, [failed, waiting, exhausted, leased, expired, pending])
    assert [w.start for w in plan.windows] == [T0 + H, T0 + 5 * H, T0 + 6 * H, T0 + 8 * H]
    assert [w.start for w in plan.new] == [T0 + 8 * H]


def test_a_top_up_waits_until_min_batch_places_are_free():
    now = T0 + timedelta(hours=20, minutes=6)
    requeue = timedelta(minutes=30)
    queued = [WindowState(Window(T0 + i * H, T0 + (i + 1) * H), "queued", queued_at=now) for i in range(5)]
    config = cfg(max_per_tick=6)
    one_free = plan_windows(config, now, T0 + 5 * H, queued, requeue_after=requeue, min_batch=2)
    assert one_free.windows == () and one_free.new == ()  # 5 of 6 in flight: wait for a second place
    two_free = plan_windows(config, now, T0 + 5 * H, queued[1:], requeue_after=requeue, min_batch=2)
    assert [w.start for w in two_free.new] == [T0 + 5 * H, T0 + 6 * H]
    idle = plan_windows(config, now, T0 + 5 * H, [], requeue_after=requeue, min_batch=6)
    assert len(idle.new) == 6  # nothing in flight: every place is free, whatever the batch


def test_plan_nothing_due():
    plan = plan_windows(cfg(), T0 + timedelta(minutes=64), T0 + H, [])
    assert plan.windows == () and plan.new == ()


@pytest.mark.parametrize(
    ("state", "ok"),
    [
        (WindowState(Window(T0, T0 + H), "pending"), True),
        (WindowState(Window(T0, T0 + H), "done"), False),
        (WindowState(Window(T0, T0 + H), "failed", attempts=4), True),
        (WindowState(Window(T0, T0 + H), "failed", attempts=5), False),
        (WindowState(Window(T0, T0 + H), "running", lease_until=T0 + 2 * H), False),
    ],
    ids=["pending", "done", "failed-retries-left", "failed-exhausted", "leased"],
)
def test_eligible(state, ok):
    assert eligible(state, T0 + H, max_attempts=5) is ok


def test_retry_backoff_grows_and_is_capped():
    c = cfg(retry_backoff=timedelta(minutes=2))
    assert retry_at(c, 1, T0) == T0 + timedelta(minutes=2)
    assert retry_at(c, 3, T0) == T0 + timedelta(minutes=8)
    assert retry_at(c, 30, T0) == T0 + timedelta(hours=6)


def test_window_halves_and_key():
    w = Window(T0, T0 + H)
    left, right = w.halves()
    assert (left.end, right.start) == (T0 + H / 2, T0 + H / 2)
    assert w.key == "20261102T000000Z"
    with pytest.raises(ValueError):
        Window(T0, T0)


def test_align_up_at_the_end_of_the_calendar_is_a_value_error():
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    with pytest.raises(ValueError, match="too close to the end of the calendar"):
        align_up(last, timedelta(hours=1))
    aligned = datetime(9999, 12, 31, 23, tzinfo=UTC)
    assert align_up(aligned, timedelta(hours=1)) == aligned
