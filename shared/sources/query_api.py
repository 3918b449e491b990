"""App Insights / Log Analytics query API source (httpx).

One window is read as: a count per bin (``summarize count() by bin(t, …)``), bins grouped
into sub-windows of at most ``max_rows_per_query`` rows, then one query per sub-window.
Small responses keep memory bounded; a response the service still cuts (HTTP 200 with
``PartialError``) is never used: that sub-window is split in halves and asked again.
The engine alone formats the window bounds into KQL.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import httpx
import orjson

from shared.budget.slots import BudgetTimeout
from shared.errors import FatalError, RetriableError
from shared.model import Batch, Window
from shared.runtime import telemetry
from shared.runtime.auth import HeaderProvider
from shared.runtime.retry import with_retries
from shared.settings import QuerySourceConfig
from shared.sources.base import LatePlan, Prefetched, SourceSummary
from shared.sources.bounds import bin_expression, bounded_query, timespan
from shared.sources.wire import QueryResult, error_reason, parse_response
from shared.sources.wire_arrow import arrow_batch
from shared.windows import WindowState

if TYPE_CHECKING:
    from shared.budget.slots import Budget

__all__ = ["BATCH_BYTES", "QueryApiSource", "QueryStats", "batch_rows", "bounded_query", "count_bins_query"]

log = logging.getLogger(__name__)
_MIN_SPLIT = timedelta(milliseconds=1)
BATCH_BYTES = 2 * 2**20  # response JSON per Batch handed to the sinks (a response is sliced; see _fetch)
_MIN_BATCH_ROWS = 100
_T = TypeVar("_T")
_DECODING = threading.Lock()


def _bin_size(window: Window) -> timedelta:
    seconds = max(1, int(window.size.total_seconds() // 60))
    return timedelta(seconds=seconds)


def batch_rows(rows: int, body_bytes: int) -> int:
    """Rows per batch for a response of ``rows`` rows in ``body_bytes``: about ``BATCH_BYTES`` each."""
    return max(_MIN_BATCH_ROWS, BATCH_BYTES * rows // max(1, body_bytes))


def _cut_bin(start: datetime, rows: int, size: timedelta, limit: int) -> list[tuple[datetime, int]]:
    """A bin holding more than ``limit`` rows as equal slices of time (rows assumed spread
    evenly), so a dense minute still yields sub-windows near ``limit``; a slice that comes
    back cut anyway is halved by ``_fetch``."""
    if rows <= limit:
        return [(start, rows)]
    parts = min(-(-rows // limit), max(1, size // _MIN_SPLIT))
    step = size / parts
    return [(start + k * step, rows * (k + 1) // parts - rows * k // parts) for k in range(parts)]


def _subwindows(window: Window, counts: dict[datetime, int], size: timedelta, limit: int) -> list[Window]:
    """Bins grouped into sub-windows of at most ``limit`` rows (a dense bin cut in equal slices)."""
    if sum(counts.values()) <= limit:
        return [window]
    subs: list[Window] = []
    start, acc = window.start, 0
    for bin_start, n in (piece for b in sorted(counts) for piece in _cut_bin(b, counts[b], size, limit)):
        if acc and acc + n > limit and start < bin_start < window.end:
            subs.append(Window(start, bin_start))
            start, acc = bin_start, 0
        acc += n
    subs.append(Window(start, window.end))
    return subs


def count_bins_query(config: QuerySourceConfig, window: Window, size: timedelta | None = None) -> str:
    """Rows per bin (≈60 bins a window, or bins of ``size`` over a span of windows), to cut windows
    into sub-windows that fit."""
    seconds = int((size or _bin_size(window)).total_seconds())
    return f"{bounded_query(config, window)}\n| summarize count() by bin({bin_expression(config)}, {seconds}s)"


@dataclass
class QueryStats:
    queries: int = 0
    splits: int = 0
    retries: int = 0
    source_count: int = 0
    rows: int = 0
    throttled: int = 0  # 429 answers (each also waited out, and shared with the budget)
    budget_wait_s: float = 0.0  # time spent waiting for the shared query budget
    warnings: list[str] = field(default_factory=list)  # Warning-severity partial errors (rows kept)


class QueryApiSource:
    """Reads windows from ``/v1/apps/{id}/query`` or ``/v1/workspaces/{id}/query``."""

    def __init__(
        self,
        config: QuerySourceConfig,
        http: httpx.Client,
        headers: HeaderProvider,
        *,
        sleep: Callable[[float], None] = time.sleep,
        pipeline: str = "",
        budget: Budget | None = None,
    ) -> None:
        self.config = config
        self.pipeline = pipeline or config.table
        self._http = http
        self._headers = headers
        self._sleep = sleep
        self._budget = budget
        path = "apps" if config.kind == "app_insights" else "workspaces"
        self.url = f"{config.endpoint}/v1/{path}/{config.resource_id}/query"
        self.stats = QueryStats()
        self._stats_lock = threading.Lock()  # sub-queries of one window run in parallel threads
        self._lanes = threading.BoundedSemaphore(config.in_flight)

    def _count(self, field: str, n: float = 1) -> None:
        with self._stats_lock:
            setattr(self.stats, field, getattr(self.stats, field) + n)

    def read(self, window: Window) -> Iterator[Batch]:
        """Every row of ``window`` in batches of at most ``max_rows_per_query`` (normally)."""
        self.stats = QueryStats()
        for sub in self.plan(window):
            yield from self._fetch(sub)

    def summary(self) -> SourceSummary:
        """``source_count`` is the rows actually read: the baseline a re-sweep's count is compared with."""
        return SourceSummary(
            source_count=self.stats.rows,
            extra={
                "planned": self.stats.source_count,
                "queries": self.stats.queries,
                "splits": self.stats.splits,
                "throttled": self.stats.throttled,
                "budget_wait_s": round(self.stats.budget_wait_s, 3),
                **({"warnings": self.stats.warnings[:10]} if self.stats.warnings else {}),
            },
        )

    def resweep(self, window: Window, state: WindowState) -> LatePlan | None:
        """Late rows: the window's count now differs from what was moved → move it again, replacing."""
        now = self.count(window)
        if state.source_count is not None and now == state.source_count:
            return None
        return LatePlan("replace", f"count {state.source_count} -> {now}")

    def read_part(self, window: Window, plan: LatePlan) -> Iterator[Batch]:
        """Query windows are only ever replaced whole (a count cannot tell which rows are new)."""
        return self.read(window)

    def count(self, window: Window) -> int:
        """Rows the service holds for ``window`` now (late-data re-sweeps compare this)."""
        result = self._query(f"{bounded_query(self.config, window)}\n| summarize count()", window, complete=True)
        return int(result.rows[0][0]) if result.rows else 0

    def plan(self, window: Window) -> list[Window]:
        """Sub-windows tiling ``window`` with at most ``max_rows_per_query`` rows each (as counted now)."""
        planned = self.plan_many([window])
        if window not in planned:
            return [window]
        steps, self.stats.source_count = planned[window]
        return steps

    def plan_many(self, windows: list[Window]) -> dict[Window, tuple[list[Window], int]]:
        """Sub-windows and counted rows of each of ``windows`` (one size, contiguous) from ONE count query:
        a planner plans the windows it queues ahead, so workers start reading at once. A cut count
        answer plans nothing (each window is then read whole and split as it comes back)."""
        if not windows:
            return {}
        span = Window(min(w.start for w in windows), max(w.end for w in windows))
        size = _bin_size(windows[0])
        result = self._query(count_bins_query(self.config, span, size), span)
        if result.partial is not None:  # the counts are cut: don't trust them, fetch and split instead
            log.info("%s %s: bin counts cut (%s); reading whole", self.config.table, span, result.partial)
            return {}
        counts: dict[datetime, int] = {}
        for bin_start, n in result.rows:
            counts[_parse_bin(bin_start)] = int(n)
        out: dict[Window, tuple[list[Window], int]] = {}
        for window in windows:
            mine = {b: n for b, n in counts.items() if window.start <= b < window.end}
            out[window] = (_subwindows(window, mine, size, self.config.max_rows_per_query), sum(mine.values()))
        return out

    def use_plan(self, steps: list[Window], planned: int) -> list[Window]:
        """A plan made ahead (``plan_many`` in the planner, carried by the work message)."""
        self.stats.source_count = planned
        return steps

    def read_step(self, sub: Window) -> Iterator[Batch]:
        """Rows of one planned sub-window: the unit a long window is checkpointed by."""
        return self._fetch(sub)

    def prefetch_step(self, sub: Window) -> Prefetched:
        """Send ``sub``'s query now (read-ahead threads); its rows are decoded later, on the
        thread that writes them, so only raw bodies wait in memory, never decoded ones."""
        held = [self._query_raw(bounded_query(self.config, sub), sub)]
        # ``decode`` takes the body out of ``held``: once parsed it is freed, not kept for as long as
        # the writer holds this step.
        return Prefetched(len(held[0]), lambda: self._batches(sub, held.pop()))

    def _fetch(self, window: Window) -> Iterator[Batch]:
        yield from self._batches(window, self._query_raw(bounded_query(self.config, window), window))

    def _batches(self, window: Window, body: bytes) -> Iterator[Batch]:
        with _DECODING:  # one response decodes at a time per process: its transient memory is counted once
            result = self._settle(parse_response(body, columnar=True))
        del body
        if result.partial is not None:
            if window.size < 2 * _MIN_SPLIT:
                raise FatalError(f"result of {window} is cut even at {window.size}: {result.partial}")
            self._count("splits")
            log.info("%s: partial result (%s); splitting %s", self.config.table, result.partial, window)
            left, right = window.halves()
            yield from self._fetch(left)
            yield from self._fetch(right)
            return
        if result.arrow is not None:  # column-wise: one batch, its memory already bounded by the budget
            step = batch_rows(result.num_rows, result.body_bytes)
            self._count("rows", result.num_rows)
            yield arrow_batch(self.config.table, result.columns, result.arrow, chunk_rows=step)
            return
        rows, columns = result.rows, result.columns
        step = batch_rows(len(rows), result.body_bytes)
        del result
        self._count("rows", len(rows))
        # Hand the response on in slices of ~BATCH_BYTES, dropping each from the parsed list as it
        # goes: sinks buffer per batch (encoded lines, queued chunks), so a byte-sized batch bounds
        # their memory whatever the row width, and rows written are freed before the rest are.
        while rows:
            batch = rows[:step]
            del rows[:step]
            yield Batch(self.config.table, columns, batch)

    def _query(self, query: str, window: Window, *, complete: bool = False) -> QueryResult:
        """POST with retries, parsed as rows. ``complete``: a cut (PartialError) answer is retried,
        never used — for counts, which cannot be split like a row query can."""

        def attempt() -> QueryResult:
            result = self._settle(parse_response(self._post(self._request(query, window))))
            if result.partial is not None and complete:
                raise RetriableError(f"count came back cut (PartialError): {result.partial}")
            return result

        return self._retrying(attempt, window)

    def _query_raw(self, query: str, window: Window) -> bytes:
        """POST with retries; the 200 body as it came (``_batches`` parses it)."""
        request = self._request(query, window)
        return self._retrying(lambda: self._post(request), window)

    def _retrying(self, attempt: Callable[[], _T], window: Window) -> _T:
        def guarded() -> _T:
            try:
                return attempt()
            except BudgetTimeout as exc:  # already waited max_wait: the window retries later, not this call
                raise _GaveUp(exc) from exc

        try:
            return with_retries(
                guarded,
                what=f"{self.config.table} {window}",
                max_retries=self.config.max_retries,
                sleep=self._sleep_counted,
            )
        except _GaveUp as exc:
            raise exc.error from None

    def _request(self, query: str, window: Window) -> bytes:
        return orjson.dumps({"query": query, "timespan": timespan(self.config, window)})

    def _settle(self, result: QueryResult) -> QueryResult:
        """The partial-error policy (docs/reliability.md): a warning keeps its rows and is recorded;
        an error that is not truncation fails the window at once (splitting cannot cure it)."""
        if result.partial_kind == "warning":
            log.warning("%s: query answered with a warning (rows kept): %s", self.config.table, result.partial)
            with self._stats_lock:
                self.stats.warnings.append(str(result.partial)[:300])
            return replace(result, partial=None, partial_kind="")
        if result.partial_kind == "error":
            raise FatalError(f"query API partial error (not truncation; the rows are not used): {result.partial}")
        return result

    def _sleep_counted(self, seconds: float) -> None:
        self._count("retries")
        self._sleep(seconds)

    def _post(self, body: bytes) -> bytes:
        """One request; the body of a 200 answer, else the error as a domain error."""
        headers = {
            "Content-Type": "application/json",
            "Prefer": f"wait={int(self.config.timeout_s)}",
            **self._headers.headers(),
        }
        self._count("queries")
        with self._lanes:  # this window's own cap: threads beyond it decode while these wait on the service
            hold = self._budget.acquire() if self._budget is not None else None  # app-wide: see shared/budget.py
            try:
                status, content, retry_header = self._exchange(body, headers)
            except httpx.TimeoutException as exc:
                raise RetriableError(f"query API timed out: {type(exc).__name__}") from exc
            except httpx.TransportError as exc:
                raise RetriableError(f"query API unreachable: {type(exc).__name__}: {exc}") from exc
            finally:
                if hold is not None and self._budget is not None:  # the HTTP exchange only, not the decoding
                    self._budget.release(hold)
                    self._count("budget_wait_s", hold.waited)
        if status == 200:
            return content
        reason = error_reason(content)
        if status == 429 or status >= 500:
            if status == 429:
                telemetry.throttled(self.pipeline)
            retry_after = _retry_after(retry_header)
            if status == 429:
                self._count("throttled")
                if self._budget is not None and retry_after:
                    self._budget.pause(retry_after)  # every instance holds off, not just this one
            raise RetriableError(f"query API {status}: {reason}", retry_after=retry_after)
        if status in (401, 403):
            raise FatalError(
                f"query API {status}: {reason} — the identity needs the Reader role on the resource"
                " (or a valid key for legacy/local endpoints)"
            )
        if status == 404:
            raise FatalError(f"query API 404: {reason} — check the app/workspace id and endpoint ({self.url})")
        raise FatalError(f"query API {status}: {reason}")

    def _exchange(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str | None]:
        """One POST: the status, the whole body and ``Retry-After``. The body is written into one
        growing buffer (``read`` would join a list of chunks: twice the body at its end), and only
        that buffer outlives the call: an httpx response sits in a reference cycle, so a body it
        held would wait for the cyclic garbage collector (measured: 40-80 MB of answers at once)."""
        with self._http.stream(
            "POST", self.url, content=body, headers=headers, timeout=self.config.timeout_s + 10
        ) as response:
            out = io.BytesIO()
            for chunk in response.iter_bytes():
                out.write(chunk)
            return response.status_code, out.getvalue(), response.headers.get("Retry-After")


class _GaveUp(Exception):
    """Carries a ``BudgetTimeout`` past ``with_retries`` (which would retry any ``RetriableError``)."""

    def __init__(self, error: BudgetTimeout) -> None:
        super().__init__(str(error))
        self.error = error


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _parse_bin(value: object) -> datetime:
    from shared.durations import parse_timestamp

    if value is None:  # ingestion_time() has no value after operators that drop table rows (summarize, join…)
        raise FatalError(
            "a count came back with an empty time bin: the query's operators drop ingestion_time();"
            " with window_by ingestion keep table rows (where, extend, project-away)"
        )
    return parse_timestamp(str(value))
