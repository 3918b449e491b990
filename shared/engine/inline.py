"""One tick in this process (``MOVER_DISPATCH=inline``, the CLI's ``tick`` and ``run`` without workers):
plan every pipeline, move its due windows here, then re-sweep done windows for late data."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from shared.engine.planner import Planner
from shared.engine.worker import WindowWorker
from shared.errors import MoverError
from shared.model import Window
from shared.outcomes import TickReport, WindowResult
from shared.settings import Pipeline, Settings
from shared.windows import WindowState

__all__ = ["run_due"]


def run_due(settings: Settings, planner: Planner, worker: WindowWorker, budget: timedelta | None = None) -> TickReport:
    """Run every due window of every enabled pipeline, oldest first, within the time budget;
    then re-sweep done windows within their look-back. Windows not started when the budget runs
    out stay for the next tick."""
    report = TickReport()
    deadline = time.monotonic() + (settings.time_budget if budget is None else budget).total_seconds()
    due: list[tuple[Pipeline, Window]] = []
    sweeps: list[tuple[Pipeline, WindowState]] = []
    for pipeline in settings.pipelines:
        if not pipeline.enabled:
            continue
        planner.step_history(pipeline)
        try:
            plan = planner.plan(pipeline)
        except MoverError as exc:
            report.errors[pipeline.name] = str(exc)
            continue
        due.extend((pipeline, w) for w, _ in plan.due)
        sweeps.extend((pipeline, s) for s in plan.sweeps)
    due.sort(key=lambda item: item[1].start)
    hard_stop = time.monotonic() + settings.checkpoint_after.total_seconds()

    def pause() -> bool:
        return time.monotonic() >= hard_stop

    def work(item: tuple[Pipeline, Window]) -> WindowResult | None:
        return None if time.monotonic() >= deadline else worker.run_window(*item, pause=pause)

    def sweep(item: tuple[Pipeline, WindowState]) -> WindowResult | None:
        return None if time.monotonic() >= deadline else worker.resweep(*item)

    with ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="window") as pool:
        for result in pool.map(work, due):
            if result is None:
                report.deferred += 1
            else:
                report.results.append(result)
        report.results.extend(r for r in pool.map(sweep, sweeps) if r is not None)
    return report
