"""The status report (pure): per pipeline counts, watermark, lag, gaps and the windows of a time range.

The JSON of ``GET /api/status`` and the page (``shared.status_page``) show this one report.
A range (``StatusView.since``/``until``) is read from the ledger as a RowKey range, so the
cost follows what is shown; past ``DETAIL_LIMIT`` windows the timeline is aggregated per
UTC day and only windows that are not done are listed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.model import format_ts
from shared.settings import Pipeline, WindowConfig
from shared.windows import WindowState, align_down, align_up, due_end

__all__ = [
    "ATTENTION",
    "DETAIL_LIMIT",
    "LIST_LIMIT",
    "STATUSES",
    "StatusView",
    "open_watermark",
    "pipeline_status",
    "summarize",
    "watermark",
]

STATUSES = ("done", "running", "queued", "pending", "failed", "missing")
DETAIL_LIMIT = 1000  # windows in view above this: one timeline row per UTC day instead of one cell per window
ATTENTION = ("failed", "running", "queued", "missing", "pending", "done")  # listing order: what needs action first
LIST_LIMIT = 500  # windows listed in the day view (the ones not done, newest first)
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class StatusView:
    """What a report covers: window starts in ``[since, until)`` (``None``: unbounded) and the statuses listed."""

    since: datetime | None = None
    until: datetime | None = None
    statuses: frozenset[str] = field(default_factory=frozenset)  # empty: every status
    recent: int = 20

    @property
    def ranged(self) -> bool:
        return self.since is not None or self.until is not None

    def lists(self, status: str) -> bool:
        return not self.statuses or status in self.statuses


def landed(state: WindowState) -> bool:
    """Its data is in place: done, or being replayed (or failed a replay) after an earlier good run,
    whose outputs stay until a new run commits."""
    return state.status == "done" or state.last_good is not None


def watermark(config: WindowConfig, ordered: Sequence[WindowState]) -> datetime:
    """End of the contiguous run of landed windows from the pipeline's start: everything before it has landed."""
    mark = config.start
    for state in ordered:
        if state.window.end <= mark:
            continue  # before the configured start (replayed history)
        if state.window.start != mark or not landed(state):
            break
        mark = state.window.end
    return mark


def open_watermark(config: WindowConfig, frontier: datetime | None, open_states: Iterable[WindowState]) -> datetime:
    """The watermark from the windows not done and the frontier (no full read).

    Windows below the frontier are all recorded (the planner records before it moves the
    frontier), so the first one not done, or the frontier itself, ends the done run.
    """
    mark = max(frontier or config.start, config.start)
    for state in open_states:
        if not landed(state) and state.window.end > config.start:
            mark = min(mark, max(state.window.start, config.start))
    return mark


def pipeline_status(
    pipeline: Pipeline,
    states: Iterable[WindowState],
    now: datetime,
    *,
    recent: int = 20,
    view: StatusView | None = None,
    frontier: datetime | None = None,
    open_states: Sequence[WindowState] | None = None,
) -> dict[str, Any]:
    """Summary of one pipeline over ``view`` (pure).

    ``states`` are the recorded windows in the view. ``watermark`` is the end of the
    contiguous run of done windows from the pipeline's start; for a ranged view, which does
    not hold that run, pass ``frontier`` and ``open_states`` (every window not done) instead.
    Counts, rows, bytes and ``missing`` cover the view; ``missing`` counts due windows not
    done yet, ``counts["missing"]`` the due windows with no ledger entry at all (gaps).
    """
    view = view or StatusView(recent=recent)
    cfg = pipeline.window
    ordered = sorted(states, key=lambda s: s.window.start)
    due = due_end(cfg, now)
    mark = watermark(cfg, ordered) if open_states is None else open_watermark(cfg, frontier, open_states)
    lo, hi = _span(cfg, ordered, view, due)
    gaps = _gaps(cfg, ordered, lo, hi, due)
    counts = Counter[str](s.status for s in ordered)
    counts["missing"] = len(gaps) if gaps is not None else _gap_count(cfg, ordered, lo, hi, due)
    slots = _slot_count(cfg, lo, min(hi, due))
    floor = max(lo, cfg.start)
    done_due = sum(1 for s in ordered if s.status == "done" and floor <= s.window.start and s.window.end <= due)
    failed_from = ordered if open_states is None else sorted(open_states, key=lambda s: s.window.start)
    failed = [s for s in failed_from if s.status == "failed"]
    report: dict[str, Any] = {
        "pipeline": pipeline.name,
        "enabled": pipeline.enabled,
        "window_size_s": int(cfg.size.total_seconds()),
        "counts": {k: counts.get(k, 0) for k in STATUSES},
        "rows": sum(s.rows for s in ordered),
        "bytes": sum(s.bytes for s in ordered),
        "quarantined": sum(s.quarantined for s in ordered),
        "watermark": format_ts(mark),
        "due_until": format_ts(due),
        "lag_seconds": max(0.0, (due - mark).total_seconds()),
        "missing": max(0, slots - done_due),
        "failed": [_window(s, now) for s in failed[-view.recent :]],
        "recent": [_window(s, now) for s in ordered[-view.recent :]][::-1],
        "range": {"from": format_ts(lo), "to": format_ts(hi)},
        "view": "windows" if gaps is not None else "days",
    }
    if gaps is not None:
        merged = sorted([*(_window(s, now) for s in ordered), *gaps], key=lambda w: str(w["start"]))
        report["timeline"] = [[w["start"], w["end"], w["status"]] for w in merged]
        report["windows"] = [w for w in merged if view.lists(str(w["status"]))]
    else:
        report["days"] = _days(cfg, ordered, lo, hi, due)
        open_ = [s for s in ordered if s.status != "done" and view.lists(s.status)][::-1]  # newest first
        open_.sort(key=lambda s: ATTENTION.index(s.status))  # failed first
        gaps_listed = _gap_windows(cfg, ordered, lo, hi, due, LIST_LIMIT) if view.lists("missing") else []
        total = len(open_) + (counts["missing"] if view.lists("missing") else 0)
        cut = ATTENTION.index("missing")
        listed = [_window(s, now) for s in open_[:LIST_LIMIT] if ATTENTION.index(s.status) < cut]
        listed += gaps_listed[::-1]
        listed += [_window(s, now) for s in open_[:LIST_LIMIT] if ATTENTION.index(s.status) > cut]
        report["windows_total"] = total
        report["windows"] = listed[:LIST_LIMIT]
    return report


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Add ``summary``: counts and totals across pipelines, the worst lag and the oldest watermark."""
    pipelines: list[dict[str, Any]] = report.get("pipelines", [])
    counts = Counter[str]()
    for p in pipelines:
        counts.update(p["counts"])
    worst = max(pipelines, key=lambda p: float(p["lag_seconds"]), default=None)
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
    }
    return report


# -- windows --------------------------------------------------------------------------------------
def _ts(value: datetime | None) -> str | None:
    return format_ts(value) if value else None


def _names(outputs: Iterable[Any]) -> list[str]:
    return [str(o.get("name", "")) if isinstance(o, Mapping) else str(o) for o in outputs]


def _duration(state: WindowState, now: datetime) -> float | None:
    if state.started_at is None:
        return None
    if state.status == "running":
        return max(0.0, (now - state.started_at).total_seconds())
    if state.status in ("done", "failed") and state.finished_at and state.finished_at >= state.started_at:
        return (state.finished_at - state.started_at).total_seconds()
    return None


def _last_good(state: WindowState) -> dict[str, Any] | None:
    """The last done run of a window whose latest attempt is not done (a failed replay, say)."""
    good = state.last_good
    if state.status == "done" or not good:
        return None
    finished = good.get("finished_at")
    return {
        "rows": int(good.get("rows", 0) or 0),
        "bytes": int(good.get("bytes", 0) or 0),
        "outputs": _names(good.get("outputs") or ()),
        "finished_at": format_ts(finished) if isinstance(finished, datetime) else finished,
    }


def _window(state: WindowState, now: datetime) -> dict[str, Any]:
    held = state.status in ("running", "queued")
    return {
        "start": format_ts(state.window.start),
        "end": format_ts(state.window.end),
        "status": state.status,
        "worker": state.lease_owner if held else "",
        "attempts": state.attempts,
        "takeovers": state.takeovers,
        "rows": state.rows,
        "bytes": state.bytes,
        "quarantined": state.quarantined,
        "outputs": _names(state.outputs),
        "error": state.error,
        "queued_at": _ts(state.queued_at),
        "started_at": _ts(state.started_at),
        "finished_at": _ts(state.finished_at),
        "duration_s": _duration(state, now),
        "next_attempt_at": _ts(state.next_attempt_at) if state.status == "failed" else None,
        "last_good": _last_good(state),
    }


def _missing(start: datetime, size: timedelta) -> dict[str, Any]:
    return {
        "start": format_ts(start),
        "end": format_ts(start + size),
        "status": "missing",
        "worker": "",
        "attempts": 0,
        "takeovers": 0,
        "rows": 0,
        "bytes": 0,
        "quarantined": 0,
        "outputs": [],
        "error": "",
        "queued_at": None,
        "started_at": None,
        "finished_at": None,
        "duration_s": None,
        "next_attempt_at": None,
        "last_good": None,
    }


# -- span, gaps and days ----------------------------------------------------------------------------
def _span(
    cfg: WindowConfig, ordered: Sequence[WindowState], view: StatusView, due: datetime
) -> tuple[datetime, datetime]:
    """The time the report covers: the view's bounds, narrowed to what the pipeline has or is due."""
    first = min(cfg.start, ordered[0].window.start) if ordered else cfg.start
    last = max(due, ordered[-1].window.end) if ordered else due
    lo = first if view.since is None else max(view.since, first)
    hi = last if view.until is None else min(view.until, last)
    return lo, max(lo, hi)


def _grid(cfg: WindowConfig, lo: datetime, hi: datetime, due: datetime) -> tuple[datetime, datetime]:
    """Aligned window starts that should be recorded by now: from the pipeline's start to the due end."""
    return align_up(max(lo, cfg.start), cfg.size), min(hi, due)


def _slot_count(cfg: WindowConfig, lo: datetime, hi: datetime) -> int:
    first = align_up(max(lo, cfg.start), cfg.size)
    return max(0, int((align_up(hi, cfg.size) - first) / cfg.size)) if hi > first else 0


def _recorded_in(cfg: WindowConfig, ordered: Sequence[WindowState], lo: datetime, hi: datetime) -> set[datetime]:
    return {
        s.window.start
        for s in ordered
        if lo <= s.window.start < hi and align_down(s.window.start, cfg.size) == s.window.start
    }


def _gap_count(cfg: WindowConfig, ordered: Sequence[WindowState], lo: datetime, hi: datetime, due: datetime) -> int:
    first, end = _grid(cfg, lo, hi, due)
    return max(0, _slot_count(cfg, first, end) - len(_recorded_in(cfg, ordered, first, end)))


def _gaps(
    cfg: WindowConfig, ordered: Sequence[WindowState], lo: datetime, hi: datetime, due: datetime
) -> list[dict[str, Any]] | None:
    """Due windows with no ledger entry, or ``None`` when the span is too long to show window by window."""
    first, end = _grid(cfg, lo, hi, due)
    slots = _slot_count(cfg, first, end)
    recorded = _recorded_in(cfg, ordered, first, end)
    if slots + len(ordered) - len(recorded) > DETAIL_LIMIT:
        return None
    return _gap_windows(cfg, ordered, lo, hi, due, DETAIL_LIMIT)


def _gap_windows(
    cfg: WindowConfig, ordered: Sequence[WindowState], lo: datetime, hi: datetime, due: datetime, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` gaps (newest first when cut, so the recent ones stay visible)."""
    first, end = _grid(cfg, lo, hi, due)
    recorded = _recorded_in(cfg, ordered, first, end)
    out: list[dict[str, Any]] = []
    cursor = align_up(end, cfg.size) - cfg.size
    while cursor >= first and len(out) < limit:
        if cursor not in recorded:
            out.append(_missing(cursor, cfg.size))
        cursor -= cfg.size
    return out[::-1]


def _days(
    cfg: WindowConfig, ordered: Sequence[WindowState], lo: datetime, hi: datetime, due: datetime
) -> list[dict[str, Any]]:
    """One row per UTC day, newest first: counts per status (gaps included), rows, bytes, quarantined."""
    buckets: dict[datetime, list[WindowState]] = {}
    for state in ordered:
        buckets.setdefault(align_down(state.window.start, _DAY), []).append(state)
    gap_first, gap_end = _grid(cfg, lo, hi, due)
    out: list[dict[str, Any]] = []
    day = align_down(hi - timedelta(microseconds=1), _DAY) if hi > lo else align_down(lo, _DAY)
    while day >= align_down(lo, _DAY):
        states = buckets.get(day, [])
        d_lo, d_hi = max(day, gap_first), min(day + _DAY, gap_end)
        counts = Counter[str](s.status for s in states)
        if d_hi > d_lo:
            counts["missing"] = _slot_count(cfg, d_lo, d_hi) - len(_recorded_in(cfg, states, d_lo, d_hi))
        if states or counts["missing"]:
            out.append(
                {
                    "day": day.strftime("%Y-%m-%d"),
                    "from": format_ts(day),
                    "to": format_ts(day + _DAY),
                    "windows": sum(counts.values()),
                    "counts": {k: counts.get(k, 0) for k in STATUSES},
                    "rows": sum(s.rows for s in states),
                    "bytes": sum(s.bytes for s in states),
                    "quarantined": sum(s.quarantined for s in states),
                }
            )
        day -= _DAY
    return out
