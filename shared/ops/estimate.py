"""Know before: what a backfill of ``[start, end)`` will read, cost and write — without moving a row.

Query sources: per-window ``count()`` and ``sum(_BilledSize)`` in a few batched aggregate
queries (``shared.sources.counts``) give rows and source bytes; the sub-queries the engine will
issue follow its planning (a count query per window, then one row query per
``max_rows_per_query`` rows); time is the larger of the request-rate bound and the
concurrency bound at the pipeline's query budget, with the latency measured on one
sampled window; output bytes per sink come from encoding that sample. Blob sources:
listing gives blobs and bytes per hour folder (``shared.ops.estimate_blobs``). Nothing is
written anywhere: no ledger entity, no blob.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.model import Window, format_ts
from shared.ops.estimate_blobs import estimate_blobs
from shared.ops.estimate_result import Estimate, outputs_for
from shared.ops.estimate_sample import sample_query
from shared.settings import Pipeline, QuerySourceConfig
from shared.sources.counts import budget_of, count_windows
from shared.sources.query_api import QueryApiSource
from shared.windows import align_down, align_up, due_end, windows_between

if TYPE_CHECKING:
    from shared.sources import Source

__all__ = [
    "MAX_DAYS",
    "Estimate",
    "estimate",
    "outputs_for",
    "queries_for",
    "render_table",
    "resolve_range",
    "seconds_at_budget",
]

MAX_DAYS = 400


def resolve_range(
    pipeline: Pipeline, now: datetime, start: datetime | None, end: datetime | None, *, max_days: int = MAX_DAYS
) -> tuple[Window, list[str]]:
    """The closed, aligned windows of ``[start, end)`` (default: the pipeline's start to the latest
    due window) and notes on what was adjusted. ``ValueError`` with a reason when unusable."""
    cfg = pipeline.window
    size = cfg.size
    latest = due_end(cfg, now)
    first = align_down(start if start is not None else cfg.start, size)
    last = align_up(end, size) if end is not None else latest
    notes: list[str] = []
    if end is not None and start is not None and end <= start:
        raise ValueError("'end' must be after 'start'")
    if last > latest:
        notes.append(f"end moved back to {format_ts(latest)}: later windows are not closed yet (now - delay)")
        last = latest
    if last <= first:
        raise ValueError(f"no closed window in the range (the latest closed window ends {format_ts(latest)})")
    if start is None and last - first > timedelta(days=max_days):
        first = align_up(last - timedelta(days=max_days), size)
        notes.append(f"start moved to {format_ts(first)}: at most {max_days} days at a time (give --start for older)")
    if last - first > timedelta(days=max_days):
        raise ValueError(f"range covers {(last - first).days} days; at most {max_days} per request (split it)")
    return Window(first, last), notes


def queries_for(rows: int, max_rows_per_query: int) -> int:
    """Queries the engine issues for a window of ``rows`` (pure): the bin count, then one row
    query per ``max_rows_per_query`` rows (one even when empty)."""
    return 1 + max(1, math.ceil(rows / max_rows_per_query))


def seconds_at_budget(queries: int, concurrent: int, per_30s: int, latency: float) -> float:
    """Wall time for ``queries`` (pure): bound by the request rate and by ``concurrent`` in flight."""
    rate_bound = queries * 30.0 / max(1, per_30s)
    concurrency_bound = queries * max(0.0, latency) / max(1, concurrent)
    return max(rate_bound, concurrency_bound)


def estimate(
    source: Source,
    pipeline: Pipeline,
    rng: Window,
    *,
    notes: list[str] | None = None,
    deadline: float | None = None,
) -> Estimate:
    """Estimate the backfill of ``rng`` (from ``resolve_range``). ``deadline`` (monotonic) bounds a
    long estimate: ``complete`` is False and ``covered_until`` says how far it got."""
    began = time.monotonic()
    if isinstance(pipeline.source, QuerySourceConfig):
        assert isinstance(source, QueryApiSource)
        result = _estimate_query(pipeline, source, rng, deadline)
    else:
        result = estimate_blobs(pipeline, rng, deadline=deadline)
    result.notes = [*(notes or []), *result.notes]
    result.elapsed_s = time.monotonic() - began
    return result


def _pick_sample(rows: dict[datetime, int], size: timedelta, limit: int) -> Window | None:
    """The busiest window that one row query can read (≤ ``limit`` rows), else a slice of the
    busiest window expected to hold about ``limit`` rows."""
    fitting = [(n, w) for w, n in rows.items() if 0 < n <= limit]
    if fitting:
        _, start = max(fitting)
        return Window(start, start + size)
    busy = [(n, w) for w, n in rows.items() if n > 0]
    if not busy:
        return None
    n, start = max(busy)
    return Window(start, start + max(timedelta(seconds=1), size * limit / n))


def _estimate_query(pipeline: Pipeline, source: QueryApiSource, rng: Window, deadline: float | None) -> Estimate:
    config = source.config
    assert isinstance(config, QuerySourceConfig)
    size = pipeline.window.size
    limit = config.max_rows_per_query
    concurrent, per_30s = budget_of(config)
    counts = count_windows(source, rng.start, rng.end, size, billed=True, deadline=deadline)
    covered = counts.covered_until or rng.start
    result = Estimate(pipeline.name, config.kind, rng.start, rng.end, size, covered, counts.complete)
    if not counts.complete:
        result.notes.append(f"stopped by the time limit: counted up to {format_ts(covered)}; totals cover that part")
    sample_window = _pick_sample(counts.rows, size, limit)
    sample = sample_query(pipeline, source, sample_window) if sample_window is not None else None
    result.estimate_queries = counts.queries + (1 if sample else 0)
    result.sample = sample.as_dict() if sample else None
    avg_row = sample.json_bytes / sample.rows if sample and sample.rows else 0.0
    # One pass over the windows (a year of PT1M is 525,600 of them): per day, then totals.
    per_day: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0])
    files = 0  # windows with rows: one output file (per sink) each
    for w in windows_between(rng.start, covered, size):
        n = counts.rows.get(w.start, 0)
        files += n > 0
        acc = per_day[w.start.date().isoformat()]
        acc[0] += 1
        acc[1] += n
        acc[2] += counts.billed.get(w.start, 0.0) if counts.has_billed else n * avg_row
        acc[3] += queries_for(n, limit)
    result.days = [
        {"day": day, "windows": int(a[0]), "rows": int(a[1]), "source_bytes": round(a[2]), "queries": int(a[3])}
        for day, a in sorted(per_day.items())
    ]
    result.windows = sum(d["windows"] for d in result.days)
    result.rows = sum(d["rows"] for d in result.days)
    result.queries = sum(d["queries"] for d in result.days)
    result.source_bytes = sum(a[2] for a in per_day.values())
    result.source_bytes_basis = (
        "sum(_BilledSize) per window (what the service bills)"
        if counts.has_billed
        else "estimated: the table has no _BilledSize; rows × the average JSON size of a sampled window's rows"
    )
    latency = sample.seconds if sample else 0.0
    result.seconds = seconds_at_budget(result.queries, concurrent, per_30s, latency)
    budget_note = "" if hasattr(config, "max_concurrent_queries") else " (service defaults: not configured)"
    result.budget = {
        "max_concurrent_queries": concurrent,
        "max_requests_per_30s": per_30s,
        "max_rows_per_query": limit,
        "sampled_query_seconds": round(latency, 3),
        "basis": f"the pipeline's query budget{budget_note}",
    }
    result.outputs = outputs_for(pipeline, sample, result.rows, result.source_bytes, files)
    return result


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"  # pragma: no cover


def render_table(doc: dict[str, Any]) -> str:
    """The CLI's text form of ``Estimate.as_dict()``: a line per day, then totals and outputs."""
    blob = doc["kind"] in ("continuous_export", "diagnostic_settings")
    lines = [f"estimate {doc['pipeline']} ({doc['kind']}) {doc['start']} .. {doc['end']}"]
    if blob:
        lines.append(f"{'day':<12}{'hours':>7}{'blobs':>10}{'bytes':>14}{'rows (est.)':>14}")
        for d in doc["days"]:
            lines.append(
                f"{d['day']:<12}{d['windows']:>7}{d['blobs']:>10}{_human(d['source_bytes']):>14}{d['rows']:>14}"
            )
    else:
        lines.append(f"{'day':<12}{'windows':>9}{'rows':>14}{'source':>14}{'queries':>10}")
        for d in doc["days"]:
            lines.append(
                f"{d['day']:<12}{d['windows']:>9}{d['rows']:>14}{_human(d['source_bytes']):>14}{d['queries']:>10}"
            )
    t = doc["totals"]
    lines.append(f"total: {t['windows']} windows, {t['rows']} rows, {_human(t['source_bytes'])} source")
    lines.append(f"  source bytes: {t['source_bytes_basis']}")
    if t.get("queries") is not None:
        b = doc["budget"]
        lines.append(
            f"  queries: {t['queries']}; about {t['seconds_at_budget']} s at {b['max_requests_per_30s']} requests/30 s,"
            f" {b['max_concurrent_queries']} concurrent"
        )
    for o in doc["outputs"]:
        lines.append(f"  sink {o['sink']} ({o['kind']} {o.get('format', '')}): {_human(o['bytes'])} — {o['basis']}")
    lines.extend(f"  note: {n}" for n in doc["notes"])
    lines.append(f"({doc['estimate_queries']} estimate queries/listings, {doc['elapsed_s']} s)")
    return "\n".join(lines)
