"""Rows (and billed bytes) per window from the query API, many windows per query.

A backfill estimate and a reconciliation both need a count per window over ranges of
thousands of windows. One ``summarize count() by bin(time, window)`` per *span* of many
windows answers that in a handful of queries: a span holds at most ``SPAN_WINDOWS``
windows (result rows, so far below the service's 500,000-row / 64 MB caps) and at most
``SPAN_DAYS`` days (a short scan per query). Queries go through the query source's own
request path (auth, retries, ``Retry-After``), paced to the pipeline's request budget.
A cut answer (PartialError) is never used: the span is halved and asked again. Windows bounded
by ingestion time (``window_by: ingestion``) are counted by ``bin(ingestion_time(), …)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.durations import parse_timestamp
from shared.errors import FatalError
from shared.model import Window
from shared.settings import QuerySourceConfig
from shared.sources.bounds import bin_expression, bounded_query
from shared.sources.query_api import QueryApiSource

__all__ = [
    "DEFAULT_CONCURRENT",
    "DEFAULT_REQUESTS_PER_30S",
    "SPAN_DAYS",
    "SPAN_WINDOWS",
    "Counts",
    "Pacer",
    "budget_of",
    "count_windows",
    "spans",
]

log = logging.getLogger(__name__)
SPAN_WINDOWS = 20_000
SPAN_DAYS = 7
DEFAULT_CONCURRENT = 5
DEFAULT_REQUESTS_PER_30S = 180
BILLED = "_BilledSize"


def budget_of(config: QuerySourceConfig) -> tuple[int, int]:
    """(concurrent queries, requests per 30 s) of a query source; the service's defaults when the
    settings do not carry a budget."""
    return (
        int(getattr(config, "max_concurrent_queries", DEFAULT_CONCURRENT)),
        int(getattr(config, "max_requests_per_30s", DEFAULT_REQUESTS_PER_30S)),
    )


def spans(start: datetime, end: datetime, size: timedelta) -> list[Window]:
    """``[start, end)`` (aligned to ``size``) cut into spans of whole windows for one query each (pure)."""
    step = min(size * SPAN_WINDOWS, max(size, timedelta(days=SPAN_DAYS)))
    out: list[Window] = []
    cursor = start
    while cursor < end:
        out.append(Window(cursor, min(end, cursor + step)))
        cursor += step
    return out


class Pacer:
    """At most ``per_30s`` requests in any 30 s (a sliding log); blocks the caller until one fits."""

    def __init__(self, per_30s: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = max(1, per_30s)
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self._clock = clock

    def wait(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and now - self._sent[0] >= 30.0:
                    self._sent.popleft()
                if len(self._sent) < self._limit:
                    self._sent.append(now)
                    return
                pause = 30.0 - (now - self._sent[0])
            time.sleep(max(0.01, pause))


@dataclass
class Counts:
    """Per window start: rows, and billed bytes when the table has ``_BilledSize``."""

    rows: dict[datetime, int] = field(default_factory=dict)
    billed: dict[datetime, float] = field(default_factory=dict)
    has_billed: bool = False
    queries: int = 0
    covered_until: datetime | None = None  # end of the last span answered (spans run oldest first)
    complete: bool = True  # False: the deadline stopped it before every span was counted


def count_windows(
    source: QueryApiSource,
    start: datetime,
    end: datetime,
    size: timedelta,
    *,
    billed: bool,
    deadline: float | None = None,
    pacer: Pacer | None = None,
) -> Counts:
    """Rows (and, with ``billed``, ``sum(_BilledSize)``) per window of ``[start, end)``.

    With ``billed`` the first span tells whether the table has ``_BilledSize``; when it does
    not (a 400 naming the column) counting goes on without it and ``has_billed`` is False.
    ``deadline`` (``time.monotonic()``): no span is started after it; ``covered_until`` says how
    far the answer reaches. Raises the source's ``FatalError``/``RetriableError``.
    """
    concurrent, per_30s = budget_of(source.config)
    pacer = pacer or Pacer(per_30s)
    counts = Counts(has_billed=billed)
    todo = spans(start, end, size)
    if not todo:
        return counts
    lock = threading.Lock()

    def one(span: Window) -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        for window, rows, nbytes in _span(source, span, size, counts.has_billed, pacer, counts, lock):
            with lock:
                counts.rows[window] = rows
                if nbytes is not None:
                    counts.billed[window] = nbytes
        return True

    if billed:
        try:
            done_first = one(todo[0])
        except FatalError as exc:
            if BILLED not in str(exc):
                raise
            log.info("%s has no %s; counting rows only", source.config.table, BILLED)
            counts.has_billed = False
            done_first = one(todo[0])
    else:
        done_first = one(todo[0])
    if not done_first:
        counts.complete = False
        return counts
    counts.covered_until = todo[0].end
    with ThreadPoolExecutor(max_workers=max(1, min(concurrent, 4)), thread_name_prefix="count") as pool:
        for span, ok in zip(todo[1:], pool.map(one, todo[1:]), strict=True):
            if not ok:
                counts.complete = False
                break  # spans are answered oldest first: coverage stops at the first one not started
            counts.covered_until = span.end
    return counts


def _span(
    source: QueryApiSource,
    span: Window,
    size: timedelta,
    billed: bool,
    pacer: Pacer,
    counts: Counts,
    lock: threading.Lock,
) -> Iterator[tuple[datetime, int, float | None]]:
    config = source.config
    seconds = int(size.total_seconds())
    aggs = f"n=count(), b=sum({BILLED})" if billed else "n=count()"
    query = f"{bounded_query(config, span)}\n| summarize {aggs} by bin({bin_expression(config)}, {seconds}s)"
    pacer.wait()
    result = source._query(query, span)  # the source's request path: auth, retries, error mapping
    with lock:
        counts.queries += 1
    if result.partial is not None:
        if span.size <= size:
            raise FatalError(f"the count of {span} came back cut: {result.partial}")
        whole = int(span.size / size)
        middle = span.start + size * (whole // 2)
        log.info("counts of %s cut (%s); halving", span, result.partial)
        yield from _span(source, Window(span.start, middle), size, billed, pacer, counts, lock)
        yield from _span(source, Window(middle, span.end), size, billed, pacer, counts, lock)
        return
    for row in result.rows:
        if row[0] is None:  # ingestion_time() has no value after operators that drop table rows
            raise FatalError(
                f"the count of {span} came back with an empty time bin: the query's operators drop"
                f" {bin_expression(config)}; keep table rows (where, extend, project-away)"
            )
        bin_start = parse_timestamp(str(row[0]))
        rows = int(row[1] or 0)
        nbytes = float(row[2] or 0) if billed else None
        yield bin_start, rows, nbytes
