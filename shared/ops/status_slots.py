"""Which windows of a status view the report lists (pure), without building the done ones.

A 31-day view of five-minute windows holds 8,928 windows per pipeline, nearly all done: the report
counts them by status straight from the days' slot codes and builds an entry only for the windows it
lists (those not done, up to ``LIST_LIMIT``, and the newest ``recent``). ``shared.ops.status`` does that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from shared.ledger.days import DAY, NONE, Day, day_of, status_of_code
from shared.settings import WindowConfig

__all__ = ["Slot", "days_between", "recent", "scan"]


def days_between(lo: datetime, hi: datetime) -> list[datetime]:
    """UTC days from ``lo``'s day up to (not including) ``hi``."""
    out, day = [], day_of(lo)
    while day < hi:
        out.append(day)
        day += DAY
    return out


@dataclass(frozen=True)
class Slot:
    """A window of the view that is not done: its day (``None``: nothing recorded that day) and slot."""

    day_start: datetime
    i: int
    status: str
    day: Day | None


def _view_days(
    cfg: WindowConfig, days: Mapping[datetime, Day], summed: set[datetime], lo: datetime, hi: datetime, due: datetime
) -> Iterator[tuple[datetime, Day | None, int, int, int]]:
    """The days of ``[lo, hi)`` the reads can tell apart, oldest first: (day, the day read whole or
    ``None`` when nothing is recorded, first and last slot in the view and from the start, slots due).
    A day of a long range that was only summed is left out: its row in ``days`` shows it."""
    per_day = int(DAY / cfg.size)
    for day_start in days_between(lo, hi):
        day = days.get(day_start)
        if day is None and day_start in summed:
            continue
        first = max(0, int((max(lo, day_start) - day_start) / cfg.size))
        if cfg.start > day_start:
            first = max(first, -((day_start - cfg.start) // cfg.size))  # no window before the start
        last = min(per_day, int((min(hi, day_start + DAY) - day_start) / cfg.size))
        yield day_start, day, first, last, (due - day_start) // cfg.size  # slot i is due when i < that


def scan(
    cfg: WindowConfig, days: Mapping[datetime, Day], summed: set[datetime], lo: datetime, hi: datetime, due: datetime
) -> tuple[Counter[str], list[Slot]]:
    """Counts by status of the windows in view (every slot of a day read whole, and the due slots of a day
    with nothing recorded: missing), and the windows that are not done, oldest first. Done slots are only
    counted: a long view of five-minute windows has thousands of them."""
    counts: Counter[str] = Counter()
    open_slots: list[Slot] = []
    for day_start, day, first, last, due_n in _view_days(cfg, days, summed, lo, hi, due):
        if last <= first:
            continue
        if day is None:
            missing = range(first, max(first, min(last, due_n)))
            counts["missing"] += len(missing)
            open_slots += [Slot(day_start, i, "missing", None) for i in missing]
            continue
        codes = day.codes[first:last]
        for code, n in Counter(codes).items():
            if code != NONE:
                counts[status_of_code(code)] += n
        if codes.count("d") == len(codes):
            continue
        for i in range(first, last):
            code = day.codes[i]
            if code == NONE:
                if i < due_n:
                    counts["missing"] += 1
                    open_slots.append(Slot(day_start, i, "missing", day))
            elif code != "d":
                open_slots.append(Slot(day_start, i, status_of_code(code), day))
    return counts, open_slots


def recent(
    cfg: WindowConfig, days: Mapping[datetime, Day], summed: set[datetime], lo: datetime, hi: datetime, limit: int
) -> list[tuple[Day, int]]:
    """The newest ``limit`` recorded windows of the view (days read whole), newest first."""
    out: list[tuple[Day, int]] = []
    far = lo - DAY  # no due bound needed: only recorded windows are listed
    for _, day, first, last, _ in reversed(list(_view_days(cfg, days, summed, lo, hi, far))):
        if day is None:
            continue
        for i in range(last - 1, first - 1, -1):
            if len(out) >= limit:
                return out
            if day.codes[i] != NONE:
                out.append((day, i))
    return out
