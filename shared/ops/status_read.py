"""The reads behind the status report: bounded by what is shown, never by the length of history.

Per pipeline: one query for every day's sums (the rollup table holds one small entity per day,
a page of 1,000 days per request), one query for the days of a short range, a point read for
each other day the report needs whole (the watermark's day, the pipeline's first and due days,
the newest days with failed windows), one for the rollup build state and one for the last
verification: ``3 + ⌈days/1000⌉ + k`` requests (a range over 31 days reads no day whole: one less),
``k`` ≤ 3 + the days holding the listed failures, only those outside the range shown.
Pipelines are read in parallel.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.errors import MoverError
from shared.ledger.days import DAY
from shared.model import format_ts
from shared.ops.status import FULL_DAYS, History, StatusView, days_to_read, pipeline_status, summarize, view_span
from shared.ops.verify_record import load_verification
from shared.settings import Pipeline, Settings
from shared.windows import WindowState

if TYPE_CHECKING:
    from shared.ledger import Ledger

__all__ = ["read_history", "status_report", "window_detail"]

log = logging.getLogger(__name__)


def read_history(ledger: Ledger, pipeline: Pipeline, now: datetime, view: StatusView) -> History:
    """Every day's sums and the days the report needs whole (see the module doc)."""
    rollups, cfg = ledger.rollups, pipeline.window
    sums = rollups.sums(pipeline.name, cfg.size, now)
    want = days_to_read(cfg, now, view, sums)
    lo, hi = view_span(cfg, now, view)
    days = {}
    if hi - lo <= FULL_DAYS * DAY:
        days = {d.day: d for d in rollups.days(pipeline.name, lo, hi - timedelta(microseconds=1), cfg.size, now)}
    stored = {s.day for s in sums}
    for day in sorted(want - days.keys()):
        if day in stored:
            found = rollups.day(pipeline.name, day, cfg.size, now)
            if found is not None:
                days[day] = found
    built, unreadable = rollups.state(pipeline.name)
    changing = sum(len(d.pending) for d in days.values())
    return History(sums, days, complete=built or not sums, changing=changing, unreadable=unreadable)


def status_report(
    ledger: Ledger, settings: Settings, *, now: datetime, owner: str, view: StatusView, only: str | None = None
) -> dict[str, Any]:
    """The whole report (``shared.ops.status``): every pipeline, or ``only`` one, read in parallel."""
    pipelines = [p for p in settings.pipelines if only is None or p.name == only]
    report: dict[str, Any] = {"now": format_ts(now), "owner": owner, "pipelines": [], "errors": {}}

    def one(pipeline: Pipeline) -> tuple[Pipeline, dict[str, Any] | None, str]:
        try:
            history = read_history(ledger, pipeline, now, view)
            entry = pipeline_status(pipeline, now, view, history)
            entry["verified"] = load_verification(ledger, pipeline.name)
            bad = f"unreadable ledger entity skipped: {'; '.join(history.unreadable)}" if history.unreadable else ""
            return pipeline, entry, bad
        except MoverError as exc:
            log.warning("status of %s: %s", pipeline.name, exc)
            return pipeline, None, str(exc)

    with ThreadPoolExecutor(max(1, min(8, len(pipelines))), thread_name_prefix="status") as pool:
        for pipeline, entry, error in pool.map(one, pipelines):
            if error:
                report["errors"][pipeline.name] = error
            if entry is not None:
                report["pipelines"].append(entry)
    return summarize(report)


def window_detail(pipeline: str, state: WindowState, now: datetime) -> dict[str, Any]:
    """Everything the ledger holds about one window (``GET /api/status?pipeline=…&window=…``)."""

    def ts(value: datetime | None) -> str | None:
        return format_ts(value) if value else None

    duration = None
    if state.started_at and state.status == "running":
        duration = max(0.0, (now - state.started_at).total_seconds())
    elif state.started_at and state.finished_at and state.finished_at >= state.started_at:
        duration = (state.finished_at - state.started_at).total_seconds()
    return {
        "pipeline": pipeline,
        "start": format_ts(state.window.start),
        "end": format_ts(state.window.end),
        "status": state.status,
        "closed": state.closed,
        "attempts": state.attempts,
        "takeovers": state.takeovers,
        "fail_kind": state.fail_kind,
        "worker": state.lease_owner,
        "lease_until": ts(state.lease_until),
        "rows": state.rows,
        "bytes": state.bytes,
        "quarantined": state.quarantined,
        "source_count": state.source_count,
        "outputs": [dict(o) for o in state.outputs],
        "error": state.error,
        "queued_at": ts(state.queued_at),
        "started_at": ts(state.started_at),
        "finished_at": ts(state.finished_at),
        "duration_s": duration,
        "next_attempt_at": ts(state.next_attempt_at),
        "replay_at": ts(state.replay_at),
        "last_good": dict(state.last_good) if state.last_good else None,
        "checkpoint": dict(state.extra["checkpoint"]) if isinstance(state.extra.get("checkpoint"), dict) else None,
    }
