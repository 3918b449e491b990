"""The composition root: the one place that builds the engine's components from the settings.

``App`` creates the shared clients (HTTP pool, ledger, work queue, query budgets, sinks) and
hands each component only the collaborators it uses (``shared.engine.ports``): the
``Planner`` (ledger, queue, clock, sources), the ``WindowWorker`` (ledger, clock, sources,
sinks, quarantine), the ``Replayer`` and the ``MessageHandler`` (worker, planner, ledger).
The function app (``function_app.py`` via ``shared.frontends.http``) and the CLI
(``shared.frontends.cli``) use it; no component imports it. Its methods are the entry points
they call: ``tick``, ``handle``/``poisoned``, ``status``; a window run or a replay goes to its
component (``app.worker.run_window``, ``app.replayer.replay``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.budget.registry import flush_budgets
from shared.engine.handlers import MessageHandler
from shared.engine.inline import run_due
from shared.engine.messages import WorkQueue
from shared.engine.planner import Planner
from shared.engine.replay import Replayer
from shared.engine.topups import TopUps
from shared.engine.worker import WindowWorker
from shared.ledger import Ledger
from shared.ops.status import StatusView
from shared.ops.status_read import status_report
from shared.outcomes import ReplayResult, TickReport, WindowResult
from shared.runtime.auth import HeaderProvider
from shared.runtime.membudget import set_process_budget
from shared.runtime.memory import tune_allocators
from shared.runtime.quarantine import Quarantine
from shared.runtime.storage import blob_service, table_service
from shared.settings import Pipeline, QuerySourceConfig, Settings
from shared.sinks import build_sink
from shared.sinks.base import Sink
from shared.sources import Source, build_source

__all__ = ["App", "ReplayResult", "TickReport", "WindowResult", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class App:
    """The settings, the shared clients and the components built from them; thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        ledger: Ledger | None = None,
    ) -> None:
        """``ledger``: another client of the same ledger (benches count its requests)."""
        tune_allocators()
        set_process_budget(settings.memory_budget_mb)
        self.settings = settings
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.http = http or httpx.Client(limits=httpx.Limits(max_connections=32), http2=False)
        self._sleep = sleep
        self._headers: dict[str, HeaderProvider] = {}
        self._sinks: dict[str, list[Sink]] = {}
        self._lock = threading.Lock()
        self.ledger = ledger or Ledger(table_service(settings.state), settings.ledger_table)
        self.queue = WorkQueue(settings)  # its client is created on first use
        self.worker = WindowWorker(
            ledger=self.ledger,
            clock=clock,
            owner=self.owner,
            sources=self.source,
            sinks=self.sinks,
            quarantine=self.quarantine,
        )
        self.planner = Planner(
            settings=settings, ledger=self.ledger, clock=clock, sources=self.source, queue=self.queue
        )
        self.replayer = Replayer(
            settings=settings, ledger=self.ledger, clock=clock, worker=self.worker, planner=self.planner
        )
        self.handler = MessageHandler(
            settings=settings,
            ledger=self.ledger,
            clock=clock,
            worker=self.worker,
            planner=self.planner,
            top_ups=TopUps(self.planner.top_up),
        )

    def close(self) -> None:
        self.handler.top_ups.wait(timeout=30.0)  # a count query of a top-up still uses the HTTP pool
        self.ledger.rollups.flush()
        flush_budgets()  # free the query slots kept warm for a next query that will not come
        self.http.close()

    # -- what components are handed ------------------------------------------------------------
    def source(self, pipeline: Pipeline) -> Source:
        """A source for ``pipeline`` (query sources share the HTTP pool, a token cache and the budget)."""
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
        """The pipeline's sinks, built once per process."""
        with self._lock:
            if pipeline.name not in self._sinks:
                table = pipeline.source.table
                self._sinks[pipeline.name] = [
                    build_sink(c, pipeline=pipeline.name, table=table) for c in pipeline.sinks
                ]
            return self._sinks[pipeline.name]

    def quarantine(self) -> Quarantine:
        return Quarantine(blob_service(self.settings.state), self.settings.quarantine_container)

    # -- entry points --------------------------------------------------------------------------
    def tick(self, *, budget: timedelta | None = None) -> TickReport:
        """One timer tick: plan and enqueue (queue dispatch), or move every due window here (inline)."""
        if self.settings.dispatch == "queue":
            return self.planner.dispatch()
        return run_due(self.settings, self.planner, self.worker, budget)

    def handle(self, body: bytes | str, *, dequeue_count: int = 1) -> str:
        """One work message (the queue trigger's body)."""
        return self.handler.handle(body, dequeue_count=dequeue_count)

    def poisoned(self, body: bytes | str, *, reason: str = "") -> str:
        """One message from the poison queue: its window comes back after a backoff."""
        return self.handler.poisoned(body, reason=reason)

    def status(self, *, recent: int = 20, view: StatusView | None = None, only: str | None = None) -> dict[str, Any]:
        """The ledger per pipeline from its day rollups (``shared.ops.status_read``)."""
        view = view or StatusView(recent=recent)
        return status_report(self.ledger, self.settings, now=self.clock(), owner=self.owner, view=view, only=only)
