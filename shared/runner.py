"""One window end to end (``run_window``) and one timer tick (``tick``).

The same code serves the timer trigger, the HTTP replay, the CLI, the local runner
and the tests. Order inside a window: claim (ETag) → read source → map → write every
sink (one pass over the rows) → commit outputs → manifest → mark done. Data first,
then the ledger: a crash replays at most that window and overwrites the same names.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from shared import mapping
from shared.auth import HeaderProvider
from shared.errors import ConfigError, DataError, FatalError, MoverError, RetriableError
from shared.ledger import Claim, Ledger, LeaseLost
from shared.model import OutputFile, Window, format_ts
from shared.settings import Pipeline, QuerySourceConfig, Settings
from shared.sinks import build_sink
from shared.sinks.base import Sink, SinkWriter
from shared.sources import Source, build_source
from shared.storage import table_service
from shared.windows import align_down, align_up, due_end, plan_windows, retry_at, windows_between

__all__ = ["Engine", "ReplayResult", "TickReport", "WindowResult", "utcnow"]

log = logging.getLogger(__name__)
Outcome = Literal["done", "skipped", "failed", "lease_lost", "released"]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WindowResult:
    pipeline: str
    window: Window
    outcome: Outcome
    rows: int = 0
    bytes: int = 0
    outputs: tuple[str, ...] = ()
    error: str = ""
    seconds: float = 0.0
    attempt: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "window_start": format_ts(self.window.start),
            "window_end": format_ts(self.window.end),
            "outcome": self.outcome,
            "rows": self.rows,
            "bytes": self.bytes,
            "outputs": list(self.outputs),
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "attempt": self.attempt,
        }


@dataclass
class TickReport:
    results: list[WindowResult] = field(default_factory=list)
    deferred: int = 0  # due windows left for the next tick (time budget / per-tick cap)
    errors: dict[str, str] = field(default_factory=dict)  # pipeline → planning error

    @property
    def done(self) -> int:
        return sum(r.outcome == "done" for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.outcome == "failed" for r in self.results)


@dataclass(frozen=True)
class ReplayResult:
    pipeline: str
    windows: tuple[Window, ...]
    mode: Literal["inline", "queued"]
    results: tuple[WindowResult, ...] = ()
    queued: int = 0


class Engine:
    """Holds the settings and the shared clients; thread-safe for concurrent windows."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.http = http or httpx.Client(limits=httpx.Limits(max_connections=16), http2=False)
        self._sleep = sleep
        self.ledger = Ledger(table_service(settings.state), settings.ledger_table)
        self._headers: dict[str, HeaderProvider] = {}
        self._sinks: dict[str, list[Sink]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    # -- building blocks ----------------------------------------------------------------------
    def source(self, pipeline: Pipeline) -> Source:
        headers = None
        if isinstance(pipeline.source, QuerySourceConfig):
            with self._lock:
                headers = self._headers.setdefault(pipeline.name, HeaderProvider(pipeline.source.auth))
        return build_source(pipeline.source, settings=self.settings, http=self.http, headers=headers)

    def sinks(self, pipeline: Pipeline) -> list[Sink]:
        with self._lock:
            if pipeline.name not in self._sinks:
                table = pipeline.source.table
                self._sinks[pipeline.name] = [build_sink(c, pipeline=pipeline.name, table=table) for c in pipeline.sinks]
            return self._sinks[pipeline.name]

    # -- one window ---------------------------------------------------------------------------
    def run_window(self, pipeline: Pipeline, window: Window, *, force: bool = False) -> WindowResult:
        """Claim, move and record one window. Never raises for window-level failures.

        Returns ``skipped`` when the window is not ours to run (done, or leased by another
        runner, or out of retries — ``force`` overrides all but a live lease).
        """
        began = time.monotonic()
        cfg = pipeline.window
        claim = self.ledger.claim(
            pipeline.name, window, owner=self.owner, now=self.clock(), lease=cfg.lease,
            max_attempts=cfg.max_attempts, force=force,
        )
        if claim is None:
            return WindowResult(pipeline.name, window, "skipped")
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(claim, cfg.lease, stop), daemon=True)
        heartbeat.start()
        try:
            return self._move(pipeline, window, claim, began)
        finally:
            stop.set()
            heartbeat.join()

    def _heartbeat(self, claim: Claim, lease: timedelta, stop: threading.Event) -> None:
        """Renew the lease every third of its length while the window runs."""
        while not stop.wait(lease.total_seconds() / 3):
            try:
                self.ledger.renew(claim, self.clock(), lease)
            except LeaseLost:
                log.warning("%s %s: lease lost while running", claim.pipeline, claim.window)
                return
            except MoverError as exc:
                log.warning("%s %s: lease renewal failed: %s", claim.pipeline, claim.window, exc)

    def _move(self, pipeline: Pipeline, window: Window, claim: Claim, began: float) -> WindowResult:
        name = pipeline.name
        writers: list[SinkWriter] = []
        try:
            source = self.source(pipeline)
            sinks = self.sinks(pipeline)
            writers = [sink.open(window) for sink in sinks]
            rows = 0
            for batch in source.read(window):
                if pipeline.columns is not None:
                    batch = mapping.apply_columns(batch, pipeline.columns)
                for writer in writers:
                    writer.write(batch)
                rows += len(batch)
            per_sink = [writer.commit() for writer in writers]
            writers = []
            summary = source.summary()
            info = {"pipeline": name, "table": pipeline.source.table, "rows": rows, "source": summary.extra}
            outputs: list[OutputFile] = []
            for sink, committed in zip(sinks, per_sink, strict=True):
                outputs.extend(committed)
                outputs.append(sink.write_manifest(window, committed, info))
            data = [o for committed in per_sink for o in committed]
            nbytes = sum(o.bytes for o in data)
            self.ledger.complete(
                claim, now=self.clock(), rows=rows, nbytes=nbytes, outputs=outputs,
                source_count=summary.source_count, quarantined=summary.quarantined, extra=summary.extra or None,
            )
        except LeaseLost as exc:
            self._abort(writers)
            log.warning("%s %s: %s; the new owner finishes it", name, window, exc)
            return WindowResult(name, window, "lease_lost", error=str(exc), seconds=time.monotonic() - began)
        except Exception as exc:  # noqa: BLE001 - the window boundary: record every failure in the ledger
            self._abort(writers)
            return self._record_failure(pipeline, window, claim, exc, began)
        seconds = time.monotonic() - began
        lag = (self.clock() - window.end).total_seconds()
        log.info(
            "%s %s: %d rows, %d bytes -> %s (%.1fs, attempt %d, lag %.0fs)",
            name, window, rows, nbytes, ", ".join(o.name for o in data) or "no data", seconds, claim.attempts, lag,
        )
        return WindowResult(
            name, window, "done", rows=rows, bytes=nbytes, outputs=tuple(o.name for o in data),
            seconds=seconds, attempt=claim.attempts,
        )

    @staticmethod
    def _abort(writers: Iterable[SinkWriter]) -> None:
        for writer in writers:
            try:
                writer.abort()
            except Exception:  # noqa: BLE001 - best effort: uncommitted data is invisible anyway
                log.debug("abort failed", exc_info=True)

    def _record_failure(self, pipeline: Pipeline, window: Window, claim: Claim, exc: Exception, began: float) -> WindowResult:
        kind = {RetriableError: "retriable", FatalError: "fatal", DataError: "data", ConfigError: "config"}
        label = next((v for k, v in kind.items() if isinstance(exc, k)), "unexpected")
        message = f"{label}: {exc}"
        if label == "unexpected":
            log.exception("%s %s: unexpected error", pipeline.name, window)
        else:
            log.warning("%s %s: attempt %d failed: %s", pipeline.name, window, claim.attempts, message)
        now = self.clock()
        cfg = pipeline.window
        next_at = retry_at(cfg, claim.attempts, now) if claim.attempts < cfg.max_attempts else None
        try:
            self.ledger.fail(claim, now=now, error=message, next_attempt_at=next_at)
        except LeaseLost:
            pass
        return WindowResult(
            pipeline.name, window, "failed", error=message, seconds=time.monotonic() - began, attempt=claim.attempts
        )

    # -- one tick -----------------------------------------------------------------------------
    def tick(self, *, budget: timedelta | None = None) -> TickReport:
        """Run every due window of every enabled pipeline, oldest first, within the time budget.

        Windows not started when the budget runs out stay for the next tick.
        """
        report = TickReport()
        deadline = time.monotonic() + (budget or self.settings.time_budget).total_seconds()
        queue: list[tuple[Pipeline, Window]] = []
        for pipeline in self.settings.pipelines:
            if not pipeline.enabled:
                continue
            try:
                queue.extend((pipeline, w) for w in self._plan(pipeline))
            except MoverError as exc:
                report.errors[pipeline.name] = str(exc)
                log.error("%s: planning failed: %s", pipeline.name, exc)
        queue.sort(key=lambda item: item[1].start)

        def work(item: tuple[Pipeline, Window]) -> WindowResult | None:
            if time.monotonic() >= deadline:
                return None
            return self.run_window(*item)

        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency, thread_name_prefix="window") as pool:
            for result in pool.map(work, queue):
                if result is None:
                    report.deferred += 1
                else:
                    report.results.append(result)
        return report

    def _plan(self, pipeline: Pipeline) -> list[Window]:
        now = self.clock()
        snapshot = self.ledger.snapshot(pipeline.name)
        plan = plan_windows(pipeline.window, now, snapshot.frontier, [s for s in snapshot.states if s.status != "done"])
        if plan.new:
            self.ledger.record_new(pipeline.name, plan.new, now)
        return list(plan.windows)

    # -- replay --------------------------------------------------------------------------------
    def replay_windows(self, pipeline: Pipeline, start: datetime, end: datetime) -> list[Window]:
        """Aligned windows covering ``[start, end)``; ``ValueError`` with a reason when not allowed."""
        if end <= start:
            raise ValueError("'end' must be after 'start'")
        size = pipeline.window.size
        first, last = align_down(start, size), align_up(end, size)
        latest = due_end(pipeline.window, self.clock())
        if last > latest:
            raise ValueError(
                f"windows up to {format_ts(last)} are not closed yet (latest due window ends {format_ts(latest)}"
                " = now - delay); replaying an open window would save incomplete data"
            )
        count = int((last - first) / size)
        if count > self.settings.replay_max_windows:
            raise ValueError(
                f"range covers {count} windows; at most {self.settings.replay_max_windows} per request"
                " (MOVER_REPLAY_MAX_WINDOWS)"
            )
        return list(windows_between(first, last, size))

    def replay(self, pipeline: Pipeline, start: datetime, end: datetime, *, mode: str = "auto") -> ReplayResult:
        """Rerun windows now (few) or queue them in the ledger for the next ticks (many)."""
        windows = self.replay_windows(pipeline, start, end)
        inline = mode == "inline" or (mode == "auto" and len(windows) <= self.settings.replay_inline_windows)
        if inline:
            results = tuple(self.run_window(pipeline, w, force=True) for w in windows)
            return ReplayResult(pipeline.name, tuple(windows), "inline", results=results)
        queued = self.ledger.request_replay(pipeline.name, windows, self.clock())
        return ReplayResult(pipeline.name, tuple(windows), "queued", queued=queued)

    # -- status ---------------------------------------------------------------------------------
    def status(self, *, recent: int = 20) -> dict[str, Any]:
        """The ledger summarised per pipeline (see ``shared.status``)."""
        from shared.status import pipeline_status

        now = self.clock()
        report: dict[str, Any] = {"now": format_ts(now), "owner": self.owner, "pipelines": [], "errors": {}}
        for pipeline in self.settings.pipelines:
            try:
                states = list(self.ledger.states(pipeline.name))
            except MoverError as exc:
                report["errors"][pipeline.name] = str(exc)
                continue
            report["pipelines"].append(pipeline_status(pipeline, states, now, recent=recent))
        return report
