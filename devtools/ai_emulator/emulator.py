"""The in-process emulator object: config, clock, store, faults, stats and the server thread.

Tests drive it directly (``generate``, ``add_rows``, ``expected``, ``faults.push``);
other processes drive the same object through the ``/_emulator/`` control endpoints.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from .faults import FaultInjector
from .generator import TelemetryGenerator
from .query import OutCol, QueryResult, compile_query, run
from .schema import (
    CLASSIC_TABLES,
    ITEM_TYPES,
    WORKSPACE_TABLES,
    TableSchema,
    WorkspaceContext,
    normalize_row,
    resolve_table,
    workspace_to_classic_names,
)
from .seeder import Seeder
from .store import TelemetryStore
from .throttle import ConcurrencyGate, RateLimiter
from .timeutil import format_ticks, parse_timespan_param, to_ticks

__all__ = ["Clock", "EmulatorConfig", "EmulatorCore", "EmulatorStats", "SettableClock"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class SettableClock:
    """A clock for tests and the control API: real UTC time, optionally frozen or shifted."""

    def __init__(self, now: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._fixed = now
        self._offset = timedelta(0)
        if now is not None:
            to_ticks(now)  # rejects naive datetimes early

    def __call__(self) -> datetime:
        with self._lock:
            if self._fixed is not None:
                return self._fixed
            return datetime.now(UTC) + self._offset

    def set(self, now: datetime) -> None:
        """Freeze the clock at ``now`` (timezone-aware)."""
        to_ticks(now)
        with self._lock:
            self._fixed = now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move the clock forward (frozen: the frozen instant; real: a lasting offset)."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            if self._fixed is not None:
                self._fixed += step
            else:
                self._offset += step
        return self()

    def real(self) -> None:
        """Back to real time with no offset."""
        with self._lock:
            self._fixed, self._offset = None, timedelta(0)


@dataclass
class EmulatorConfig:
    """Settings; limits may be changed on a running emulator (read per request)."""

    app_id: str = "local-app"
    workspace_id: str = "local-workspace"
    api_key: str | None = "dev-key"
    token: str | None = "dev-token"  # noqa: S105 - the documented local dev token
    token_key: str | None = None  # HS256 key of devtools.identity's tokens; None = JWTs refused
    host: str = "127.0.0.1"
    port: int = 0
    max_rows: int = 500_000
    max_bytes: int = 64 * 2**20
    rate_limit: int | None = None  # requests per rate_window seconds per identity; None = off
    rate_window: float = 30.0
    max_concurrent: int | None = 5
    concurrency_retry_after: float = 1.0
    # Service time of a query, held inside the concurrency gate like the real service's work:
    # ``latency_ms`` + ``latency_per_1k_rows_ms`` per 1,000 rows returned (0 = answer at once).
    latency_ms: float = 0.0
    latency_per_1k_rows_ms: float = 0.0
    app_name: str = "shop-prod"
    ikey: str = "11111111-2222-3333-4444-555555555555"
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "rg-insights-mover-dev"
    fault_seed: int = 0

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourcegroups/{self.resource_group}"
            f"/providers/microsoft.insights/components/{self.app_name}"
        ).lower()

    def public(self) -> dict[str, Any]:
        """The config without secrets (for the control API and logs)."""
        out = asdict(self)
        out["api_key"] = "***" if self.api_key else None
        out["token"] = "***" if self.token else None
        out["token_key"] = "***" if self.token_key else None
        return out


@dataclass(frozen=True)
class EmulatorStats:
    """A snapshot of the counters (``emu.stats``)."""

    requests: int = 0  # query requests (apps + workspaces routes), whatever the outcome
    queries: int = 0  # queries executed (200, complete or partial)
    throttled: int = 0  # 429s: rate limit, concurrency and injected
    throttled_rate: int = 0  # of which: over rate_limit per rate_window (per identity)
    throttled_concurrency: int = 0  # of which: over max_concurrent in flight
    partials: int = 0  # HTTP 200 PartialError results
    overflows: int = 0  # of which injected partial errors that are not truncation (E_OVERFLOW) …
    warnings: int = 0  # … and Warning-severity ones (every row)
    errors: int = 0  # non-2xx query responses (429 included) and resets
    bad_requests: int = 0  # 400s
    auth_failures: int = 0  # 401 + 403
    not_found: int = 0
    faults: int = 0  # injected faults applied (any kind)
    resets: int = 0  # connections reset or truncated on purpose
    rows_returned: int = 0
    bytes_returned: int = 0
    control_requests: int = 0
    peak_concurrency: int = 0
    latency_ms_total: int = 0  # service time added by the latency settings, summed over queries
    span_ms: int = 0  # from the first query in to the last one out (its slots' busy share: latency / cap / span)
    status_counts: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status_counts"] = {str(k): v for k, v in self.status_counts.items()}
        return out


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}
        self._status: dict[int, int] = {}

    def add(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                self._values[k] = self._values.get(k, 0) + v

    def status(self, code: int) -> None:
        with self._lock:
            self._status[code] = self._status.get(code, 0) + 1

    def snapshot(self, peak: int, span_ms: int = 0) -> EmulatorStats:
        with self._lock:
            names = {f.name for f in fields(EmulatorStats)} - {"status_counts", "peak_concurrency", "span_ms"}
            values = {k: self._values.get(k, 0) for k in names}
            return EmulatorStats(**values, peak_concurrency=peak, span_ms=span_ms, status_counts=dict(self._status))

    def reset(self) -> None:
        with self._lock:
            self._values.clear()
            self._status.clear()


def _aware(value: datetime, what: str) -> int:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return to_ticks(value)


class EmulatorCore:
    """What the query API emulator knows and does: telemetry, queries, limits, faults, counters.
    ``shared``-free and HTTP-free; ``service.Emulator`` serves it on a loopback port."""

    def __init__(self, config: EmulatorConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._clock: Clock = clock or SettableClock()
        self.store = TelemetryStore(
            WorkspaceContext(self.config.workspace_id, self.config.resource_id, self.config.subscription_id)
        )
        self.generator = TelemetryGenerator(self.config.app_id, self.config.app_name, self.config.ikey)
        self.faults = FaultInjector(self.config.fault_seed)
        self.limiter = RateLimiter()
        self.gate = ConcurrencyGate()
        self.counters = _Counters()
        self.stopping = threading.Event()
        self.seeder: Seeder | None = None

    # --- clock -----------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._clock

    @clock.setter
    def clock(self, value: Clock) -> None:
        self._clock = value

    def now(self) -> datetime:
        return self._clock()

    def now_ticks(self) -> int:
        return _aware(self._clock(), "the emulator clock")

    # --- telemetry -------------------------------------------------------------------------

    def generate(
        self,
        table: str,
        start: datetime,
        end: datetime,
        count: int = 100,
        *,
        seed: int = 0,
        late_fraction: float = 0.0,
        latency: tuple[float, float] = (0.2, 5.0),
        late_delay: tuple[float, float] = (300.0, 3 * 3600.0),
    ) -> int:
        """Add ``count`` synthetic rows with timestamps in ``[start, end)``; returns ``count``.

        ``table`` is classic (``requests``) or workspace (``AppRequests``) — same rows.
        Ingestion = timestamp + ``latency`` s, or + ``late_delay`` s for ``late_fraction``.
        """
        schema = resolve_table(table)
        rows = self.generator.generate(
            schema.classic,
            _aware(start, "start"),
            _aware(end, "end"),
            count,
            seed=seed,
            late_fraction=late_fraction,
            latency=latency,
            late_delay=late_delay,
        )
        return self.store.add(schema.classic, rows.ts, rows.ing, rows.rows)

    def add_rows(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        ingested_at: datetime | None = None,
    ) -> int:
        """Add explicit rows (column → value, classic or workspace names per ``table``).

        Values: ``datetime`` or ISO text for the time column, dict/list for dynamic columns
        (JSON-encoded like the service), bool for ``success`` (→ "True"/"False" in classic).
        Absent columns get defaults (fresh ``itemId``, ``itemType``, app ids, ``itemCount``
        1, "" for strings). ``ingested_at`` defaults to each row's own timestamp.
        """
        schema = resolve_table(table)
        classic = CLASSIC_TABLES[schema.classic]
        ing_fixed = None if ingested_at is None else _aware(ingested_at, "ingested_at")
        rename = workspace_to_classic_names(schema.name) if schema.workspace else None
        ts_list: list[int] = []
        ing_list: list[int] = []
        data: list[bytes] = []
        for row in rows:
            if rename is not None:
                unknown = set(row) - set(rename)
                if unknown:
                    raise KeyError(f"{schema.name}: unknown or derived columns {sorted(unknown)}")
                row = {rename[k]: v for k, v in row.items()}
            ticks, cells = normalize_row(classic, row, self._defaults(classic))
            cells[classic.time_index] = format_ticks(ticks)
            ts_list.append(ticks)
            ing_list.append(ticks if ing_fixed is None else ing_fixed)
            data.append(orjson.dumps(cells))
        return self.store.add(classic.name, ts_list, ing_list, data)

    def _defaults(self, schema: TableSchema) -> dict[str, Any]:
        return {
            "itemId": str(uuid.uuid4()),
            "itemType": ITEM_TYPES[schema.name],
            "itemCount": 1,
            "appId": self.config.app_id,
            "appName": self.config.app_name,
            "iKey": self.config.ikey,
        }

    def expected(
        self, table: str, start: datetime, end: datetime, *, visible_only: bool = True, by: str = "event"
    ) -> list[dict[str, Any]]:
        """Rows a correct mover outputs for ``[start, end)``: column → JSON cell value,
        exactly as ``T | where ts >= start and ts < end`` returns them (time order).
        ``by="ingestion"``: the rows whose ingestion time lies in ``[start, end)`` instead, whatever
        their event time (``T | where ingestion_time() >= start and ingestion_time() < end``)."""
        schema = resolve_table(table)
        sel = self._select(schema, start, end, visible_only, by)
        names = schema.names
        return [dict(zip(names, orjson.loads(r), strict=True)) for r in sel.rows]

    def expected_count(
        self, table: str, start: datetime, end: datetime, *, visible_only: bool = True, by: str = "event"
    ) -> int:
        return len(self._select(resolve_table(table), start, end, visible_only, by).rows)

    def _select(self, schema: TableSchema, start: datetime, end: datetime, visible_only: bool, by: str) -> Any:
        if by not in ("event", "ingestion"):
            raise ValueError(f"by must be event or ingestion, got {by!r}")
        now = self.now_ticks() if visible_only else 2**63 - 1
        lo, hi = _aware(start, "start"), _aware(end, "end")
        full = (-(2**63), 2**63 - 1)
        ts, ing = (full, (lo, hi)) if by == "ingestion" else ((lo, hi), full)
        return self.store.select(schema, ts[0], ts[1], ing[0], ing[1], now)

    def clear(self) -> None:
        """Drop all telemetry (faults, stats and clock are kept)."""
        self.store.clear()

    def execute(self, kind: str, query: str, timespan: str | None = None) -> QueryResult:
        """Run a query in-process (no HTTP, no limits): ``kind`` is "app" or "workspace".

        Raises ``KqlError`` for unsupported/invalid queries and ``ValueError`` for a bad
        timespan.
        """
        now = self.now_ticks()
        span = parse_timespan_param(timespan, now) if timespan else None
        tables = WORKSPACE_TABLES if kind == "workspace" else CLASSIC_TABLES
        plan = compile_query(query, tables, now, span)
        return run(plan, self.store, now)

    def query_rows(self, kind: str, query: str, timespan: str | None = None) -> tuple[list[OutCol], list[list[Any]]]:
        """Like :meth:`execute` but decoded: (columns, rows of JSON cell values)."""
        result = self.execute(kind, query, timespan)
        return result.columns, [orjson.loads(r) for r in result.rows]

    # --- faults, stats, seeding --------------------------------------------------------------

    @property
    def stats(self) -> EmulatorStats:
        return self.counters.snapshot(self.gate.peak, self.gate.span_ms())

    def reset_stats(self) -> None:
        self.counters.reset()
        self.gate.reset()
        self.limiter.reset()

    def start_seeder(
        self,
        *,
        rate: float = 10.0,
        late_fraction: float = 0.05,
        history: timedelta | None = None,
        seed: int = 0,
        interval: float = 1.0,
    ) -> Seeder:
        """Backfill ``history`` before now, then keep adding ``rate`` items/s in the background."""
        self.stop_seeder()
        seeder = Seeder(
            self.store,
            self.generator,
            self.now_ticks,
            rate=rate,
            late_fraction=late_fraction,
            seed=seed,
            interval=interval,
        )
        if history:
            now = self.now_ticks()
            seeder.fill(now - int(history.total_seconds() * 10_000_000), now)
        seeder.start()
        self.seeder = seeder
        return seeder

    def stop_seeder(self) -> None:
        if self.seeder is not None:
            self.seeder.stop()
            self.seeder = None
