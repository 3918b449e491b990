"""The engine: shared clients plus the entry points the functions, the CLI and the tests call.

- ``run_window`` moves one window (``shared.window_worker``): claim → read → map → write
  every sink → commit → manifest → ledger. Data first, then the ledger.
- ``tick`` is one timer tick. With ``MOVER_DISPATCH=queue`` (the default) it only plans and
  enqueues (``shared.planner``); queue-triggered workers move the windows
  (``shared.workqueue``). With ``inline`` it moves due windows in this process.
- ``replay`` reruns a range (``shared.replay``); ``status`` summarises the ledger.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import httpx

from shared import telemetry
from shared.auth import HeaderProvider
from shared.errors import MoverError
from shared.ledger import Ledger
from shared.model import Window
from shared.outcomes import ReplayResult, TickReport, WindowResult
from shared.planner import Planner
from shared.settings import Pipeline, QuerySourceConfig, Settings
from shared.sinks import build_sink
from shared.sinks.base import Sink
from shared.sources import LatePlan, Source, build_source
from shared.sources.export_quarantine import Quarantine
from shared.status import StatusView
from shared.status_read import status_report
from shared.storage import blob_service, table_service
from shared.window_run import StepPlan
from shared.window_worker import WindowWorker
from shared.windows import WindowState
from shared.workqueue import WorkQueue, handle_message, handle_poison

__all__ = ["Engine", "ReplayResult", "TickReport", "WindowResult", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        from shared.membudget import set_process_budget
        from shared.memory import tune_allocators

        tune_allocators()
        set_process_budget(settings.memory_budget_mb)
        self.settings = settings
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.http = http or httpx.Client(limits=httpx.Limits(max_connections=32), http2=False)
        self._sleep = sleep
        self.ledger = Ledger(table_service(settings.state), settings.ledger_table)
        self.worker = WindowWorker(self)
        self.planner = Planner(self)
        self._headers: dict[str, HeaderProvider] = {}
        self._sinks: dict[str, list[Sink]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.ledger.rollups.flush()
        self.http.close()

    @cached_property
    def queue(self) -> WorkQueue:
        return WorkQueue(self.settings)

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

    def quarantine(self) -> Quarantine:
        return Quarantine(blob_service(self.settings.state), self.settings.quarantine_container)

    # -- one window ---------------------------------------------------------------------------
    @telemetry.traced_window
    def run_window(
        self,
        pipeline: Pipeline,
        window: Window,
        *,
        force: bool = False,
        late: LatePlan | None = None,
        previous: WindowState | None = None,
        pause: Callable[[], bool] | None = None,
        plan: StepPlan | None = None,
    ) -> WindowResult:
        """Claim, move and record one window; never raises for window-level failures (see ``WindowWorker``)."""
        return self.worker.run_window(
            pipeline, window, force=force, late=late, previous=previous, pause=pause, plan=plan
        )

    # -- queue workers --------------------------------------------------------------------------
    def handle(self, body: bytes | str, *, dequeue_count: int = 1) -> str:
        """One work message (the queue trigger's body); see ``shared.workqueue.handle_message``."""
        return handle_message(self, body, dequeue_count=dequeue_count)

    def poisoned(self, body: bytes | str, *, reason: str = "") -> str:
        """One message from the poison queue: its window becomes ``failed`` with the reason."""
        return handle_poison(self, body, reason=reason)

    # -- one tick -----------------------------------------------------------------------------
    def tick(self, *, budget: timedelta | None = None) -> TickReport:
        """Plan and enqueue (queue dispatch), or move every due window here (inline dispatch)."""
        if self.settings.dispatch == "queue":
            return self.planner.dispatch()
        return self._inline_tick(budget)

    def _inline_tick(self, budget: timedelta | None) -> TickReport:
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
            self.planner.step_history(pipeline)
            try:
                plan = self.planner.plan(pipeline)
            except MoverError as exc:
                report.errors[pipeline.name] = str(exc)
                continue
            queue.extend((pipeline, w) for w, _ in plan.due)
            sweeps.extend((pipeline, s) for s in plan.sweeps)
        queue.sort(key=lambda item: item[1].start)
        hard_stop = time.monotonic() + self.settings.checkpoint_after.total_seconds()

        def pause() -> bool:
            return time.monotonic() >= hard_stop

        def work(item: tuple[Pipeline, Window]) -> WindowResult | None:
            return None if time.monotonic() >= deadline else self.run_window(*item, pause=pause)

        def sweep(item: tuple[Pipeline, WindowState]) -> WindowResult | None:
            return None if time.monotonic() >= deadline else self.worker.resweep(*item)

        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency, thread_name_prefix="window") as pool:
            for result in pool.map(work, queue):
                if result is None:
                    report.deferred += 1
                else:
                    report.results.append(result)
            report.results.extend(r for r in pool.map(sweep, sweeps) if r is not None)
        return report

    # -- replay --------------------------------------------------------------------------------
    def replay_windows(self, pipeline: Pipeline, start: datetime, end: datetime) -> list[Window]:
        """Aligned windows covering ``[start, end)``; ``ValueError`` with a reason when not allowed."""
        from shared.replay import replay_windows

        return replay_windows(self, pipeline, start, end)

    def replay(
        self,
        pipeline: Pipeline,
        start: datetime,
        end: datetime,
        *,
        mode: str = "auto",
        pause_after: timedelta | None = None,
    ) -> ReplayResult:
        """Rerun windows now (few) or queue them for the workers / next ticks (many); see ``shared.replay``."""
        from shared.replay import replay

        return replay(self, pipeline, start, end, mode=mode, pause_after=pause_after)

    # -- status ---------------------------------------------------------------------------------
    def status(self, *, recent: int = 20, view: StatusView | None = None, only: str | None = None) -> dict[str, Any]:
        """The ledger summarised per pipeline from its day rollups (``shared.status``, ``shared.status_read``)."""
        view = view or StatusView(recent=recent)
        return status_report(self.ledger, self.settings, now=self.clock(), owner=self.owner, view=view, only=only)
