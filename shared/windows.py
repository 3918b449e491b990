"""Tumbling-window arithmetic and the planner (pure: now, config, ledger state → windows).

Windows are aligned to the Unix epoch in multiples of their size, half-open
``[start, end)``, and due once ``end + delay <= now``. The planner never skips a
window: new windows are taken from the frontier (the end of the last window ever
recorded) onward, oldest first, and earlier windows that are not done come back
when they are eligible again (failed with retries left, lease expired, replay asked).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.model import Window, window_key
from shared.settings import WindowConfig

__all__ = [
    "EPOCH",
    "Plan",
    "Status",
    "WindowState",
    "align_down",
    "align_up",
    "due_end",
    "eligible",
    "in_flight",
    "open_mark",
    "plan_windows",
    "retry_at",
    "windows_between",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
Status = Literal["pending", "queued", "running", "done", "failed"]


def align_down(ts: datetime, size: timedelta) -> datetime:
    micros = (ts - EPOCH) // _MICRO
    step = size // _MICRO
    return EPOCH + timedelta(microseconds=micros - micros % step)


def align_up(ts: datetime, size: timedelta) -> datetime:
    down = align_down(ts, size)
    try:
        return down if down == ts else down + size
    except OverflowError:  # the window would end after 9999-12-31
        raise ValueError(f"{ts.isoformat()} is too close to the end of the calendar to align") from None


def windows_between(start: datetime, end: datetime, size: timedelta) -> Iterator[Window]:
    """Aligned windows covering ``[start, end)`` (both aligned to ``size``)."""
    cursor = start
    while cursor < end:
        yield Window(cursor, cursor + size)
        cursor += size


def due_end(config: WindowConfig, now: datetime) -> datetime:
    """End of the latest window that may run now: aligned, ``end + delay <= now``, capped by ``config.end``."""
    latest = align_down(now - config.delay, config.size)
    if config.end is not None and config.end < latest:
        latest = config.end
    return max(latest, config.start)


@dataclass(frozen=True)
class WindowState:
    """What the ledger knows about one window (an entity, read-only view)."""

    window: Window
    status: Status
    attempts: int = 0
    lease_owner: str = ""
    lease_until: datetime | None = None
    next_attempt_at: datetime | None = None
    rows: int = 0
    bytes: int = 0
    outputs: tuple[dict[str, Any], ...] = ()
    error: str = ""
    source_count: int | None = None
    quarantined: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    queued_at: datetime | None = None  # when the planner put it on the work queue (status ``queued``)
    takeovers: int = 0  # claims that took over an expired lease (a crashed or stalled runner), not failures
    last_good: Mapping[str, Any] | None = None  # rows/bytes/outputs/finished_at of the last done run, if any
    seq: int = 0  # +1 on every status change: orders the day rollups' copies of this window
    writing: tuple[str, ...] = ()  # parts the current (or a dead) run may commit: "" main, "c0003", "late-0001"
    leftovers: tuple[tuple[int, str], ...] = ()  # (sink, name) earlier runs may have left that no record lists
    replay_at: datetime | None = None  # the newest replay request: the next run starts after it
    sweep_at: datetime | None = None  # a re-sweep message was sent (done windows)
    swept_at: datetime | None = None  # a re-sweep found nothing new
    fail_kind: str = ""  # "window" (counted against max_attempts) or "transient" (never closes the window)
    etag: str = field(default="", compare=False)  # the entity's ETag when read: conditional updates from a plan

    @property
    def closed(self) -> bool:
        """Failed with no next attempt: only a replay reopens it."""
        return self.status == "failed" and self.next_attempt_at is None

    @property
    def key(self) -> str:
        return window_key(self.window.start)


def eligible(state: WindowState, now: datetime, max_attempts: int, requeue_after: timedelta | None = None) -> bool:
    """May this recorded window be claimed (or put on the queue) now without a replay?

    A ``queued`` window is eligible again only once its message must be lost
    (``requeue_after`` since it was queued); without a queue (``None``) it runs here.
    """
    if state.status == "pending":
        return True
    if state.status == "queued":
        return requeue_after is None or state.queued_at is None or state.queued_at + requeue_after <= now
    if state.status == "running":
        return state.lease_until is None or state.lease_until <= now
    if state.status == "failed":
        return state.attempts < max_attempts and (state.next_attempt_at is None or state.next_attempt_at <= now)
    return False


def retry_at(config: WindowConfig, attempts: int, now: datetime) -> datetime:
    """Exponential backoff for failed windows: backoff × 2^(attempts-1), at most 6 hours."""
    factor: int = 2 ** max(0, attempts - 1)
    return now + min(config.retry_backoff * factor, timedelta(hours=6))


def in_flight(state: WindowState, now: datetime, requeue_after: timedelta | None) -> bool:
    """Queued with a live message, or running under a live lease: work some worker holds."""
    if state.status == "running":
        return state.lease_until is not None and state.lease_until > now
    return state.status == "queued" and not eligible(state, now, 0, requeue_after)


def open_mark(states: Iterable[WindowState], max_attempts: int, frontier: datetime | None) -> str:
    """Key of the oldest window that may still need work (the frontier when none does).

    Done windows and failed ones out of retries are closed: only a replay reopens them.
    """
    keys = [s.key for s in states if s.status != "done" and not (s.status == "failed" and s.attempts >= max_attempts)]
    if keys:
        return min(keys)
    return window_key(frontier) if frontier is not None else ""


@dataclass(frozen=True)
class Plan:
    """Windows to run this tick, oldest first, and the new ones that must be recorded first."""

    windows: tuple[Window, ...]
    new: tuple[Window, ...]
    frontier: datetime


def plan_windows(
    config: WindowConfig,
    now: datetime,
    frontier: datetime | None,
    states: Iterable[WindowState],
    *,
    limit: int | None = None,
    requeue_after: timedelta | None = None,
    min_batch: int = 1,
) -> Plan:
    """Due windows for one pipeline: eligible recorded ones plus new ones past the frontier.

    ``frontier`` is the end of the newest window ever recorded (``None`` on the first run);
    ``states`` are the recorded windows that are not done. The result holds at most
    ``limit`` (default ``config.max_per_tick``) windows, oldest first. With a queue
    (``requeue_after`` set) windows already in flight count against the cap, and nothing is
    planned while fewer than ``min_batch`` places are free (a top-up waits for a few windows to
    finish, then queues several with one count query; with nothing in flight every place is free).
    """
    states = list(states)
    cap = config.max_per_tick if limit is None else limit
    if requeue_after is not None:
        cap = max(0, cap - sum(in_flight(s, now, requeue_after) for s in states))
        if cap < min_batch:
            cap = 0
    last = due_end(config, now)
    old = sorted(
        {s.window for s in states if eligible(s, now, config.max_attempts, requeue_after) and s.window.end <= last}
    )
    known = {s.window for s in states}
    start = max(frontier or config.start, config.start)
    new: list[Window] = []
    for window in windows_between(start, last, config.size):
        if len(old) + len(new) >= cap:
            break
        if window not in known:  # recorded already (e.g. claimed before the frontier moved)
            new.append(window)
    chosen = sorted([*old, *new])[:cap]
    chosen_new = tuple(w for w in new if w in set(chosen))
    return Plan(windows=tuple(chosen), new=chosen_new, frontier=start)
