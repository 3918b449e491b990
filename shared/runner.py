"""One window end to end (``run_window``) and one timer tick (``tick``).

The same code serves the timer trigger, the HTTP replay, the CLI, the local runner
and the tests. Order inside a window: claim (ETag) → read source → map → write every
sink (one pass over the rows) → commit outputs → manifest → mark done. Data first,
then the ledger: a crash replays at most that window and overwrites the same names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from shared.auth import HeaderProvider
from shared.errors import ConfigError, DataError, FatalError, MoverError, RetriableError
from shared.ledger import Claim, LeaseLost, Ledger
from shared.model import Window, format_ts
from shared.settings import Pipeline, QuerySourceConfig, Settings
from shared.sinks import build_sink
from shared.sinks.base import Sink
from shared.sinks.rejects import CellGuard
from shared.sources import LateAwareSource, LatePlan, Source, build_source
from shared.sources.export_quarantine import Quarantine
from shared.storage import blob_service, table_service
from shared.window_run import move_window
from shared.windows import WindowState, align_down, align_up, due_end, plan_windows, retry_at, windows_between

__all__ = ["Engine", "ReplayResult", "TickReport", "WindowResult", "utcnow"]

log = logging.getLogger(__name__)
Outcome = Literal["done", "paused", "skipped", "failed", "lease_lost"]


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
        from shared.memory import tune_allocators

        tune_allocators()
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
        return build_source(
            pipeline.source,
            pipeline=pipeline.name,
            settings=self.settings,
            http=self.http,
            headers=headers,
            sleep=self._sleep,
        )

    def sinks(self, pipeline: Pipeline) -> list[Sink]:
        with self._lock:
            if pipeline.name not in self._sinks:
                table = pipeline.source.table
                self._sinks[pipeline.name] = [
                    build_sink(c, pipeline=pipeline.name, table=table) for c in pipeline.sinks
                ]
            return self._sinks[pipeline.name]

    def _quarantine(self) -> Quarantine:
        return Quarantine(blob_service(self.settings.state), self.settings.quarantine_container)

    # -- one window ---------------------------------------------------------------------------
    def run_window(
        self,
        pipeline: Pipeline,
        window: Window,
        *,
        force: bool = False,
        late: LatePlan | None = None,
        previous: WindowState | None = None,
        pause: Callable[[], bool] | None = None,
    ) -> WindowResult:
        """Claim, move and record one window. Never raises for window-level failures.

        Returns ``skipped`` when the window is not ours to run (done, or leased by another
        runner, or out of retries — ``force`` overrides all but a live lease). With a ``late``
        plan of kind ``part`` only the late input is moved, into an extra part beside the
        window's earlier outputs (``previous`` is the done window's ledger record). When
        ``pause()`` turns true between steps, the window checkpoints and returns ``paused``.
        """
        began = time.monotonic()
        cfg = pipeline.window
        try:
            claim = self.ledger.claim(
                pipeline.name,
                window,
                owner=self.owner,
                now=self.clock(),
                lease=cfg.lease,
                max_attempts=cfg.max_attempts,
                force=force or late is not None,
            )
        except MoverError as exc:  # the ledger is unreachable: nothing was claimed, try next tick
            log.warning("%s %s: cannot claim: %s", pipeline.name, window, exc)
            return WindowResult(pipeline.name, window, "failed", error=f"ledger: {exc}")
        if claim is None:
            return WindowResult(pipeline.name, window, "skipped")
        before = claim.previous
        if (
            late is not None
            and previous is not None
            and before is not None
            and before.updated_at != previous.updated_at
        ):
            self._put_back(claim, before)  # another runner swept it since we looked
            return WindowResult(pipeline.name, window, "skipped")
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(claim, cfg.lease, stop), daemon=True)
        heartbeat.start()
        try:
            part = late if late and late.kind == "part" else None
            return self._move(pipeline, window, claim, began, part, previous, fresh=force, pause=pause)
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

    def _move(
        self,
        pipeline: Pipeline,
        window: Window,
        claim: Claim,
        began: float,
        part: LatePlan | None,
        previous: WindowState | None,
        *,
        fresh: bool,
        pause: Callable[[], bool] | None,
    ) -> WindowResult:
        name = pipeline.name
        try:
            moved = move_window(
                ledger=self.ledger,
                clock=self.clock,
                pipeline=pipeline,
                window=window,
                claim=claim,
                source=self.source(pipeline),
                sinks=self.sinks(pipeline),
                late=part,
                previous=previous,
                fresh=fresh,
                pause=pause,
                cells=CellGuard(self._quarantine, pipeline.name, window),
            )
        except LeaseLost as exc:
            log.warning("%s %s: %s; the new owner finishes it", name, window, exc)
            return WindowResult(name, window, "lease_lost", error=str(exc), seconds=time.monotonic() - began)
        except Exception as exc:
            if part is not None and previous is not None:
                return self._restore_done(pipeline, window, claim, previous, exc, began)
            return self._record_failure(pipeline, window, claim, exc, began)
        seconds = time.monotonic() - began
        lag = (self.clock() - window.end).total_seconds()
        quarantined = moved.summary.quarantined
        log.info(
            "%s %s%s: %d rows%s, %d bytes -> %s (%.1fs, attempt %d, lag %.0fs)%s",
            name,
            window,
            f" {part.part}" if part else "",
            moved.rows,
            f" ({quarantined} quarantined)" if quarantined else "",
            moved.bytes,
            ", ".join(moved.names) or "no data",
            seconds,
            claim.attempts,
            lag,
            "; paused, resumes on the next tick" if moved.outcome == "paused" else "",
        )
        return WindowResult(
            name,
            window,
            moved.outcome,
            rows=moved.rows,
            bytes=moved.bytes,
            outputs=moved.names,
            seconds=seconds,
            attempt=claim.attempts,
        )

    def _put_back(self, claim: Claim, previous: WindowState) -> None:
        """Return a done window we claimed for a late part to exactly its done record."""
        with contextlib.suppress(LeaseLost, MoverError):  # else the lease expires and a sweep retries
            self.ledger.complete(
                claim,
                now=self.clock(),
                rows=previous.rows,
                nbytes=previous.bytes,
                outputs=list(previous.outputs),
                source_count=previous.source_count,
                quarantined=previous.quarantined,
                extra=dict(previous.extra) or None,
            )

    def _restore_done(
        self, pipeline: Pipeline, window: Window, claim: Claim, previous: WindowState, exc: Exception, began: float
    ) -> WindowResult:
        """A late part failed: the window stays done as it was; the next sweep tries the part again."""
        log.warning("%s %s: late part failed, retried on the next sweep: %s", pipeline.name, window, exc)
        self._put_back(claim, previous)
        return WindowResult(
            pipeline.name, window, "failed", error=f"late part: {exc}", seconds=time.monotonic() - began
        )

    def _record_failure(
        self, pipeline: Pipeline, window: Window, claim: Claim, exc: Exception, began: float
    ) -> WindowResult:
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
            pass  # taken over: the new owner records the outcome
        except MoverError as exc:  # the ledger is unreachable too: the lease expires, the window comes back
            log.warning("%s %s: could not record the failure: %s", pipeline.name, window, exc)
        return WindowResult(
            pipeline.name, window, "failed", error=message, seconds=time.monotonic() - began, attempt=claim.attempts
        )

    # -- one tick -----------------------------------------------------------------------------
    def tick(self, *, budget: timedelta | None = None) -> TickReport:
        """Run every due window of every enabled pipeline, oldest first, within the time budget;
        then re-sweep done windows within their look-back for late data.

        Windows not started when the budget runs out stay for the next tick.
        """
        report = TickReport()
        deadline = time.monotonic() + (self.settings.time_budget if budget is None else budget).total_seconds()
        queue: list[tuple[Pipeline, Window]] = []
        sweeps: list[tuple[Pipeline, WindowState]] = []
        for pipeline in self.settings.pipelines:
            if not pipeline.enabled:
                continue
            try:
                due, done = self._plan(pipeline)
            except MoverError as exc:
                report.errors[pipeline.name] = str(exc)
                log.error("%s: planning failed: %s", pipeline.name, exc)
                continue
            queue.extend((pipeline, w) for w in due)
            sweeps.extend((pipeline, s) for s in done)
        queue.sort(key=lambda item: item[1].start)

        hard_stop = time.monotonic() + self.settings.checkpoint_after.total_seconds()

        def pause() -> bool:
            return time.monotonic() >= hard_stop

        def work(item: tuple[Pipeline, Window]) -> WindowResult | None:
            if time.monotonic() >= deadline:
                return None
            return self.run_window(*item, pause=pause)

        def sweep(item: tuple[Pipeline, WindowState]) -> WindowResult | None:
            if time.monotonic() >= deadline:
                return None
            return self._resweep(*item)

        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency, thread_name_prefix="window") as pool:
            for result in pool.map(work, queue):
                if result is None:
                    report.deferred += 1
                else:
                    report.results.append(result)
            for result in pool.map(sweep, sweeps):
                if result is not None:
                    report.results.append(result)
        return report

    @staticmethod
    def _lookback(pipeline: Pipeline) -> timedelta:
        if isinstance(pipeline.source, QuerySourceConfig):
            return pipeline.window.resweep_lookback
        return pipeline.source.late_lookback

    def _plan(self, pipeline: Pipeline) -> tuple[list[Window], list[WindowState]]:
        """Due windows (recording new ones first) and done windows to re-sweep: one ledger query."""
        now = self.clock()
        lookback = self._lookback(pipeline)
        since = now - lookback if lookback > timedelta(0) else None
        snapshot = self.ledger.snapshot(pipeline.name, since=since)
        plan = plan_windows(pipeline.window, now, snapshot.frontier, [s for s in snapshot.states if s.status != "done"])
        if plan.new:
            self.ledger.record_new(pipeline.name, plan.new, now)
        done = [s for s in snapshot.states if s.status == "done"]  # only returned within the look-back
        return list(plan.windows), done

    def _resweep(self, pipeline: Pipeline, state: WindowState) -> WindowResult | None:
        """Ask the source whether a done window changed; move what is new. ``None``: nothing to do."""
        source = self.source(pipeline)
        if not isinstance(source, LateAwareSource):
            return None
        try:
            plan = source.resweep(state.window, state)
        except MoverError as exc:
            log.warning("%s %s: re-sweep failed: %s", pipeline.name, state.window, exc)
            return None
        if plan is None:
            return None
        log.info("%s %s: late data (%s): %s", pipeline.name, state.window, plan.kind, plan.reason)
        return self.run_window(pipeline, state.window, late=plan, previous=state)

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

    def replay(
        self,
        pipeline: Pipeline,
        start: datetime,
        end: datetime,
        *,
        mode: str = "auto",
        pause_after: timedelta | None = None,
    ) -> ReplayResult:
        """Rerun windows now (few) or queue them in the ledger for the next ticks (many).

        ``pause_after`` bounds an inline replay: a window still running then checkpoints and
        the timer finishes it (HTTP callers must answer within 230 s).
        """
        windows = self.replay_windows(pipeline, start, end)
        inline = mode == "inline" or (mode == "auto" and len(windows) <= self.settings.replay_inline_windows)
        if inline:
            stop_at = None if pause_after is None else time.monotonic() + pause_after.total_seconds()

            def pause() -> bool:
                return stop_at is not None and time.monotonic() >= stop_at

            results: list[WindowResult] = []
            for i, window in enumerate(windows):
                if pause():  # out of time: the rest goes to the timer
                    queued = self.ledger.request_replay(pipeline.name, windows[i:], self.clock())
                    return ReplayResult(pipeline.name, tuple(windows), "inline", tuple(results), queued)
                results.append(self.run_window(pipeline, window, force=True, pause=pause))
            return ReplayResult(pipeline.name, tuple(windows), "inline", results=tuple(results))
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
