"""The status report (pure): per pipeline totals, watermark, lag and the windows of a time range.

It is computed from the day rollups (``shared.ledger.days``), never from the window entities:
the whole history's totals come from every day's sums (one small query per 1,000 days), and
a range's windows from its days (``shared.ops.status_read`` does the reads). So a year of
five-minute windows reports as fast as a week. ``GET /api/status`` and the page
(``shared.ops.status_page``) show this one report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.ledger.days import DAY, NONE, Day, Sums, day_of, status_of_code
from shared.ledger.rollups import DaySums
from shared.model import format_ts
from shared.ops.status_slots import Slot, recent, scan
from shared.ops.status_slots import days_between as _days_between
from shared.settings import Pipeline, WindowConfig
from shared.windows import align_down, align_up, due_end

__all__ = [
    "ATTENTION",
    "DEFAULT_DAYS",
    "DETAIL_LIMIT",
    "FULL_DAYS",
    "LIST_LIMIT",
    "STATUSES",
    "History",
    "StatusView",
    "days_to_read",
    "pipeline_status",
    "summarize",
    "view_span",
]

STATUSES = ("done", "running", "queued", "pending", "failed", "missing")
DETAIL_LIMIT = 1000  # windows in view above this: one row per UTC day instead of one cell per window
ATTENTION = ("failed", "running", "queued", "missing", "pending", "done")  # listing order: what needs action first
LIST_LIMIT = 200  # windows listed per pipeline (the ones not done, what needs action first)
DEFAULT_DAYS = 7  # the default view: the newest windows, at most this many days and DETAIL_LIMIT windows
FULL_DAYS = 31  # a range up to this long reads its whole days; longer ranges their sums (one row per day)
_FAILED = frozenset("fxFX")  # slot codes of failed windows


@dataclass(frozen=True)
class StatusView:
    """What a report covers: window starts in ``[since, until)`` (``None``: the newest windows) and the
    statuses listed."""

    since: datetime | None = None
    until: datetime | None = None
    statuses: frozenset[str] = field(default_factory=frozenset)  # empty: every status
    recent: int = 20

    @property
    def ranged(self) -> bool:
        return self.since is not None or self.until is not None

    def lists(self, status: str) -> bool:
        return not self.statuses or status in self.statuses


@dataclass
class History:
    """What the reads gathered for one pipeline: every day's sums, and the days read whole."""

    sums: list[DaySums]
    days: dict[datetime, Day] = field(default_factory=dict)
    complete: bool = True  # rollups exist for every recorded day (a ledger from before rollups: being built)
    changing: int = 0  # windows whose change was in flight when read (resolved from the window entities)
    unreadable: list[str] = field(default_factory=list)  # ledger entities the engine had to skip


# -- what to read --------------------------------------------------------------------------------
def view_span(cfg: WindowConfig, now: datetime, view: StatusView) -> tuple[datetime, datetime]:
    """Aligned window starts ``[lo, hi)`` the view covers."""
    due = due_end(cfg, now)
    if not view.ranged:
        hi = max(due, cfg.start)
        lo = max(cfg.start, hi - min(DEFAULT_DAYS * DAY, DETAIL_LIMIT * cfg.size))
        return align_down(lo, cfg.size), hi
    lo = align_down(view.since, cfg.size) if view.since else cfg.start
    hi = min(align_up(view.until, cfg.size), max(due, lo)) if view.until else max(due, lo)
    return lo, max(lo, hi)


def days_to_read(cfg: WindowConfig, now: datetime, view: StatusView, sums: Sequence[DaySums]) -> set[datetime]:
    """The days a report needs whole: the range (when short), the watermark's day, the first and the due
    day (clipped at the pipeline's start and the due end), and the newest days with failed windows."""
    lo, hi = view_span(cfg, now, view)
    want: set[datetime] = set()
    if hi - lo <= FULL_DAYS * DAY:
        want |= set(_days_between(lo, hi))
    due = due_end(cfg, now)
    by_day = {d.day: d for d in sums}
    for edge in {day_of(cfg.start), day_of(max(due, cfg.start + cfg.size) - timedelta(microseconds=1))}:
        if edge in by_day and not _exact(cfg, edge, due, by_day[edge].sums):
            want.add(edge)  # windows before the start or past the due end: count it slot by slot
    mark = _first_unlanded_day(cfg, due, by_day)
    if mark is not None:
        want.add(mark)
    failed = 0
    for d in sorted(sums, key=lambda s: s.day, reverse=True):
        if failed >= max(view.recent, 1):
            break
        n = d.sums.status_counts().get("failed", 0)
        if n:
            want.add(d.day)
            failed += n
    return want


def _expected(cfg: WindowConfig, day: datetime, due: datetime) -> tuple[int, int]:
    """Slot range ``[first, last)`` of ``day`` between the pipeline's start and the due end."""
    lo, hi = max(day, cfg.start), min(day + DAY, due)
    if hi <= lo:
        return 0, 0
    return int((align_up(lo, cfg.size) - day) / cfg.size), int((align_up(hi, cfg.size) - day) / cfg.size)


def _exact(cfg: WindowConfig, day: datetime, due: datetime, sums: Sums) -> bool:
    """Do a day's sums count only windows between the pipeline's start and the due end?"""
    first, last = _expected(cfg, day, due)
    return sums.lo < 0 or (first <= sums.lo and sums.hi < last)


def _first_unlanded_day(cfg: WindowConfig, due: datetime, by_day: Mapping[datetime, DaySums]) -> datetime | None:
    """The first day from the start whose due windows have not all landed (``None``: all have)."""
    day = day_of(cfg.start)
    while day < due:  # the boundary days are read whole anyway: the report checks them slot by slot
        first, last = _expected(cfg, day, due)
        found = by_day.get(day)
        if last > first and (found is None or found.sums.landed < last - first):
            return day
        day += DAY
    return None


# -- the report --------------------------------------------------------------------------------------
def pipeline_status(pipeline: Pipeline, now: datetime, view: StatusView, history: History) -> dict[str, Any]:
    """One pipeline's section of the report (pure)."""
    cfg = pipeline.window
    due = due_end(cfg, now)
    lo, hi = view_span(cfg, now, view)
    total = sum((d.sums for d in history.sums), Sums())
    expected = max(0, int((align_up(due, cfg.size) - cfg.start) / cfg.size)) if due > cfg.start else 0
    recorded_due, done_due = _due_counts(cfg, due, history)
    counts = {k: total.status_counts().get(k, 0) for k in STATUSES}
    counts["missing"] = max(0, expected - recorded_due)
    mark = _watermark(cfg, due, history)
    summed = {d.day for d in history.sums}
    view_counts, open_slots = scan(cfg, history.days, summed, lo, hi, due)
    detail = int((hi - lo) / cfg.size) <= DETAIL_LIMIT and hi - lo <= FULL_DAYS * DAY
    report: dict[str, Any] = {
        "pipeline": pipeline.name,
        "group": pipeline.group,
        "enabled": pipeline.enabled,
        "window_size_s": int(cfg.size.total_seconds()),
        "counts": counts,
        "rows": total.rows,
        "bytes": total.bytes,
        "quarantined": total.quarantined,
        "missing": max(0, expected - done_due),
        "watermark": format_ts(mark),
        "due_until": format_ts(due),
        "lag_seconds": max(0.0, (due - mark).total_seconds()),
        "history_complete": history.complete,
        "changing": history.changing,
        "range": {"from": format_ts(lo), "to": format_ts(hi)},
        "range_counts": {k: view_counts.get(k, 0) for k in STATUSES},
        "view": "windows" if detail else "days",
        "failed": _failed(cfg, history, view.recent),
        "recent": [_window(cfg, d, i) for d, i in recent(cfg, history.days, summed, lo, hi, view.recent)],
    }
    listed = [s for s in reversed(open_slots) if view.lists(s.status)]  # newest first, then by attention
    listed.sort(key=lambda s: ATTENTION.index(s.status))
    report["windows_total"] = len(listed)
    report["windows"] = [_slot_window(cfg, s) for s in listed[:LIST_LIMIT]]
    if detail:
        report["grid"] = _grid(cfg, history, lo, hi, due)
    else:
        report["days"] = _day_rows(cfg, history, lo, hi, due)
    return report


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Add ``summary``: totals across pipelines (whole histories), the worst lag and the oldest watermark."""
    pipelines: list[dict[str, Any]] = report.get("pipelines", [])
    counts = Counter[str]()
    for p in pipelines:
        counts.update(p["counts"])
    worst = max(pipelines, key=lambda p: float(p["lag_seconds"]), default=None)
    verified = [p["verified"] for p in pipelines if isinstance(p.get("verified"), Mapping)]
    checked = sum(int(v.get("checked", 0) or 0) for v in verified)
    complete = sum(int(v.get("complete", 0) or 0) for v in verified)
    report["summary"] = {
        "pipelines": len(pipelines),
        "unreadable": len(report.get("errors", {})),
        "counts": {k: counts.get(k, 0) for k in STATUSES},
        "rows": sum(int(p["rows"]) for p in pipelines),
        "bytes": sum(int(p["bytes"]) for p in pipelines),
        "quarantined": sum(int(p["quarantined"]) for p in pipelines),
        "max_lag_seconds": float(worst["lag_seconds"]) if worst else 0.0,
        "most_lagging": worst["pipeline"] if worst else None,
        "oldest_watermark": min((str(p["watermark"]) for p in pipelines), default=None),
        "verified_share": round(complete / checked, 4) if checked else None,
        "history_complete": all(p.get("history_complete", True) for p in pipelines),
    }
    return report


# -- pieces ----------------------------------------------------------------------------------------
def _due_counts(cfg: WindowConfig, due: datetime, history: History) -> tuple[int, int]:
    """(recorded, done) windows whose start is in ``[start, due)``: interior days from their sums,
    the boundary days (read whole) slot by slot."""
    recorded = done = 0
    for d in history.sums:
        first, last = _expected(cfg, d.day, due)
        if last <= first:
            continue
        whole = history.days.get(d.day)
        if whole is not None and not _exact(cfg, d.day, due, d.sums):
            codes = whole.codes[first:last]
            recorded += sum(c != NONE for c in codes)
            done += sum(c == "d" for c in codes)
        else:
            recorded += d.sums.recorded
            done += d.sums.codes.get("d", 0)
    return recorded, done


def _watermark(cfg: WindowConfig, due: datetime, history: History) -> datetime:
    """End of the contiguous run of landed windows from the pipeline's start."""
    by_day = {d.day: d for d in history.sums}
    day = day_of(cfg.start)
    while day < due:
        first, last = _expected(cfg, day, due)
        whole = history.days.get(day)
        if whole is not None:
            for i in range(first, last):
                code = whole.codes[i]
                if code == NONE or not (code == "d" or code.isupper()):
                    return day + i * cfg.size
        elif last > first:
            found = by_day.get(day)
            if found is None or found.sums.landed < last - first:
                return day + first * cfg.size  # not read whole: the day's first due window (conservative)
        day += DAY
    return max(due, cfg.start)


def _window(cfg: WindowConfig, day: Day, i: int) -> dict[str, Any]:
    start = day.day + i * cfg.size
    code = day.codes[i]
    info = day.info.get(i, {})
    out: dict[str, Any] = {
        "start": format_ts(start),
        "end": format_ts(start + cfg.size),
        "status": status_of_code(code),
        "rows": day.rows[i],
        "bytes": day.bytes[i],
        "quarantined": day.quarantined[i],
    }
    if code == NONE:
        return out
    detail = {
        "attempts": int(info.get("a", 0) or 0),
        "takeovers": int(info.get("t", 0) or 0),
        "worker": str(info.get("w", "") or ""),
        "error": str(info.get("e", "") or ""),
        "next_attempt_at": info.get("n"),
        "queued_at": info.get("q"),
        "lease_until": info.get("l"),
        "fail_kind": str(info.get("k", "") or ""),
        "closed": code in ("x", "X"),
        "landed": code == "d" or code.isupper(),
    }
    out |= {k: v for k, v in detail.items() if v}  # only what a window has: the JSON stays small
    if code != "d" and code.isupper():
        out["last_good"] = {"rows": int(info.get("g", 0) or 0)}
    return out


def _missing(start: datetime, size: timedelta) -> dict[str, Any]:
    return {"start": format_ts(start), "end": format_ts(start + size), "status": "missing",
            "rows": 0, "bytes": 0, "quarantined": 0}  # fmt: skip


def _slot_window(cfg: WindowConfig, slot: Slot) -> dict[str, Any]:
    if slot.day is None or slot.day.codes[slot.i] == NONE:
        return _missing(slot.day_start + slot.i * cfg.size, cfg.size)
    return _window(cfg, slot.day, slot.i)


def _failed(cfg: WindowConfig, history: History, limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for day_start in sorted(history.days, reverse=True):
        day = history.days[day_start]
        if not _FAILED.intersection(day.codes):
            continue
        for i in range(len(day.codes) - 1, -1, -1):
            if day.codes[i] in ("f", "x", "F", "X"):
                found.append(_window(cfg, day, i))
                if len(found) >= limit:
                    return found
    return found


def _grid(cfg: WindowConfig, history: History, lo: datetime, hi: datetime, due: datetime) -> list[dict[str, Any]]:
    """One row per UTC day (newest first): the status code of each window slot of the view.

    Codes as ``shared.ledger.days`` (``.`` not recorded); ``-`` marks a slot outside the view or not due."""
    rows = []
    for day_start in reversed(_days_between(lo, hi)):
        day = history.days.get(day_start)
        codes = []
        for i in range(int(DAY / cfg.size)):
            start = day_start + i * cfg.size
            code = day.codes[i] if day is not None else NONE
            shown = lo <= start < hi and start >= cfg.start and (start + cfg.size <= due or code != NONE)
            codes.append(code if shown else "-")
        rows.append({"day": day_start.strftime("%Y-%m-%d"), "from": format_ts(day_start), "codes": "".join(codes)})
    return rows


def _day_rows(cfg: WindowConfig, history: History, lo: datetime, hi: datetime, due: datetime) -> list[dict[str, Any]]:
    """One row per UTC day of the view (newest first) from the days' sums: counts, rows, bytes."""
    by_day = {d.day: d for d in history.sums}
    out = []
    for day_start in reversed(_days_between(lo, hi)):
        found = by_day.get(day_start)
        sums = found.sums if found is not None else Sums()
        counts = Counter(sums.status_counts())
        first, last = _expected(cfg, day_start, due)
        counts["missing"] = max(0, (last - first) - sums.recorded) if last > first else 0
        if not sums.recorded and not counts["missing"]:
            continue
        out.append({
            "day": day_start.strftime("%Y-%m-%d"),
            "from": format_ts(day_start),
            "to": format_ts(day_start + DAY),
            "windows": sum(counts.values()),
            "counts": {k: counts.get(k, 0) for k in STATUSES},
            "rows": sums.rows,
            "bytes": sums.bytes,
            "quarantined": sums.quarantined,
        })  # fmt: skip
    return out
