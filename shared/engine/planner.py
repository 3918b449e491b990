"""The planner: which windows of which pipeline are due, from the ledger's open mark.

One plan of a pipeline costs a meta-row read plus a RowKey-range query over the windows
that may still need work (and, with a late-data look-back, the done windows inside it):
O(pipelines) narrow reads per tick, however many years were moved already.

With queue dispatch the planner marks each due window ``queued`` (ETag) and sends one
message per window; workers move them (``shared.engine.handlers``). Windows already in flight
count against ``max_per_tick``, so a pipeline never has more than that queued or running;
workers top the queue up as they finish, which keeps a long backfill flowing between ticks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.engine.messages import WorkQueue
from shared.engine.ports import Clock, SourceFactory
from shared.engine.run import StepPlan
from shared.engine.worker import lookback
from shared.errors import MoverError
from shared.ledger import Ledger
from shared.ledger.rollups import Migration
from shared.model import Window
from shared.outcomes import TickReport
from shared.settings import Pipeline, Settings
from shared.sources import SteppedSource
from shared.windows import WindowState, open_mark, plan_windows

__all__ = ["QUEUE_VISIBILITY", "PipelinePlan", "Planner", "due_sweeps", "top_up_batch"]

log = logging.getLogger(__name__)
# How long the Functions host keeps a message it is processing invisible (its queue listener's
# default). A window still ``queued`` after this plus its lease has lost its message.
QUEUE_VISIBILITY = timedelta(minutes=10)


def top_up_batch(pipeline: Pipeline) -> int:
    """Free places a worker's top-up waits for: a third of ``max_per_tick`` (at least 1)."""
    return max(1, pipeline.window.max_per_tick // 3)


def due_sweeps(done: list[WindowState], now: datetime, requeue_after: timedelta, cap: int) -> list[WindowState]:
    """Done windows to re-sweep now, at most ``cap`` in flight: one whose sweep message is out
    (``SweepAt`` after ``SweptAt``) is not sent again until the message must be lost; the least
    recently swept go first."""

    def in_flight(s: WindowState) -> bool:
        return (
            s.sweep_at is not None
            and (s.swept_at is None or s.swept_at < s.sweep_at)
            and s.sweep_at + requeue_after > now
        )

    busy = sum(in_flight(s) for s in done)
    waiting = [s for s in done if not in_flight(s)]
    oldest = datetime.min.replace(tzinfo=now.tzinfo)
    waiting.sort(key=lambda s: (s.swept_at or oldest, s.window.start))
    return waiting[: max(0, cap - busy)]


@dataclass
class PipelinePlan:
    """Due windows (oldest first, with their ledger state when recorded) and done windows to re-sweep."""

    pipeline: Pipeline
    due: list[tuple[Window, WindowState | None]] = field(default_factory=list)
    sweeps: list[WindowState] = field(default_factory=list)
    open_states: list[WindowState] = field(default_factory=list)  # the windows not done, as the plan read them
    operations: int = 0  # storage requests the plan made


@dataclass(kw_only=True, eq=False)
class Planner:
    """Plans pipelines from the ledger's open mark; with queue dispatch also enqueues their windows."""

    settings: Settings
    ledger: Ledger
    clock: Clock
    sources: SourceFactory
    queue: WorkQueue

    def requeue_after(self, pipeline: Pipeline) -> timedelta | None:
        """``None`` in-process (a queued window runs here); else when a queued window's message is lost."""
        if self.settings.dispatch != "queue":
            return None
        return QUEUE_VISIBILITY + pipeline.window.lease

    def plan(
        self, pipeline: Pipeline, *, new_status: str = "pending", record: bool = True, min_batch: int = 1
    ) -> PipelinePlan:
        """Due windows of ``pipeline`` (new ones recorded first, as ``new_status``) and windows to re-sweep.

        ``record=False`` only looks (an idle check): new windows are due but nothing is written.
        ``min_batch``: plan nothing while fewer places are free (``plan_windows``)."""
        now = self.clock()
        back = lookback(pipeline)
        snapshot = self.ledger.snapshot(pipeline.name, since=now - back if back > timedelta(0) else None)
        for bad in snapshot.unreadable:
            log.error("%s: ledger entity skipped: %s", pipeline.name, bad)
        try:  # status pages read rollups only: they learn of such entities from here
            self.ledger.rollups.note_unreadable(pipeline.name, list(snapshot.unreadable))
        except MoverError as exc:
            log.warning("%s: could not note unreadable entities: %s", pipeline.name, exc)
        open_states = [s for s in snapshot.states if s.status != "done"]
        requeue = self.requeue_after(pipeline)
        plan = plan_windows(
            pipeline.window, now, snapshot.frontier, open_states, requeue_after=requeue, min_batch=min_batch
        )
        ops = snapshot.operations
        mark = open_mark(open_states, pipeline.window.max_attempts, snapshot.frontier)
        if mark > snapshot.open_from and record:  # before recording new windows, which changes the meta ETag
            self.ledger.advance_open_mark(pipeline.name, mark, snapshot.meta_etag, now)
            ops += 1
        if not record:
            return PipelinePlan(pipeline, due=[(w, None) for w in plan.new], open_states=open_states, operations=ops)
        created = set(self.ledger.record_new(pipeline.name, plan.new, now, status=new_status))
        ops += 2 + len(plan.new) // 100 if plan.new else 0
        by_window = {s.window: s for s in open_states}
        result = PipelinePlan(pipeline, open_states=open_states, operations=ops)
        # a new window another planner recorded first is theirs to enqueue
        result.due = [(w, by_window.get(w)) for w in plan.windows if w in created or w in by_window]
        done = [s for s in snapshot.states if s.status == "done"]
        result.sweeps = done if requeue is None else due_sweeps(done, now, requeue, pipeline.window.max_per_tick)
        return result

    # -- queue dispatch ---------------------------------------------------------------------
    def dispatch(self) -> TickReport:
        """One timer tick with a queue: enqueue every due window and every re-sweep; move nothing here."""
        report = TickReport()
        for pipeline in self.settings.pipelines:
            if not pipeline.enabled:
                continue
            self.step_history(pipeline)
            try:
                queued, sweeps = self._enqueue(pipeline, sweeps=True)
            except MoverError as exc:
                report.errors[pipeline.name] = str(exc)
                log.error("%s: planning failed: %s", pipeline.name, exc)
                continue
            report.queued += queued
            report.sweeps += sweeps
        return report

    def build_history(self, pipeline: Pipeline, *, max_days: int = 31) -> Migration:
        """Build up to ``max_days`` of day rollups missing from a ledger older than them (each tick
        does a step, so a long history is built in the background without stopping anything)."""
        if self.ledger.rollups.built(pipeline.name):
            return Migration(True)  # after the first look, no read at all: this process knows
        now = self.clock()
        until = max(now, self.ledger.frontier(pipeline.name) or now)
        return self.ledger.rollups.migrate(pipeline.name, pipeline.window.size, until=until, now=now, max_days=max_days)

    def step_history(self, pipeline: Pipeline) -> None:
        try:
            step = self.build_history(pipeline)
        except MoverError as exc:
            log.warning("%s: status rollups not built this tick: %s", pipeline.name, exc)
            return
        if step.built_now:
            log.info("%s: status rollups: %d day(s) of history built%s", pipeline.name, step.built_now,
                     "" if step.done else f", next {step.next_day:%Y-%m-%d}")  # fmt: skip

    def top_up(self, pipeline: Pipeline, *, batch: bool = True) -> int:
        """Enqueue what is due for one pipeline now (a worker that just finished a window calls this).

        Only once a third of ``max_per_tick`` places are free (``top_up_batch``): during a backfill
        one top-up in a few queues several windows, counted by one query, instead of one window
        and one count query per finished window; the queue still holds the other two thirds.
        ``batch=False`` (an operator's replay) queues whatever places are free now."""
        try:
            return self._enqueue(pipeline, sweeps=False, min_batch=top_up_batch(pipeline) if batch else 1)[0]
        except MoverError as exc:
            log.warning("%s: top-up failed (the next tick plans it): %s", pipeline.name, exc)
            return 0

    def _enqueue(self, pipeline: Pipeline, *, sweeps: bool, min_batch: int = 1) -> tuple[int, int]:
        queue = self.queue
        plan = self.plan(pipeline, new_status="queued", min_batch=min_batch)
        now = self.clock()
        queued = 0
        attempts = pipeline.window.max_attempts
        marked: list[Window] = []
        fresh: list[Window] = []  # no checkpoint to resume: their sub-windows can be counted now
        for window, state in plan.due:
            if state is not None and not self.ledger.mark_queued(pipeline.name, state, now, max_attempts=attempts):
                continue  # changed since the plan read it (claimed, replayed), or closed: the ledger knows better
            marked.append(window)
            if state is None or "checkpoint" not in state.extra:
                fresh.append(window)
        ahead = self._plan_ahead(pipeline, fresh)
        for window in marked:
            queue.send_window(pipeline.name, window, now, ahead.get(window))
            queued += 1
        swept = 0
        if sweeps:
            for state in plan.sweeps:
                etag = self.ledger.mark_sweep(pipeline.name, state, now)  # T11: the sweep claims only this record
                if etag is not None:
                    queue.send_sweep(pipeline.name, state.window, etag)
                    swept += 1
        if queued:
            log.info("%s: %d window(s) queued", pipeline.name, queued)
        return queued, swept

    def _plan_ahead(self, pipeline: Pipeline, windows: list[Window]) -> dict[Window, StepPlan]:
        """Sub-windows of the windows being queued, one count query per contiguous run of them: the
        worker starts reading at once instead of counting first (its budget slot works, not waits).
        Any failure just leaves a window to plan itself."""
        if not windows:
            return {}
        source = self.sources(pipeline)
        if not isinstance(source, SteppedSource):
            return {}
        runs: list[list[Window]] = []
        for window in sorted(windows):
            if runs and runs[-1][-1].end == window.start:
                runs[-1].append(window)
            else:
                runs.append([window])
        out: dict[Window, StepPlan] = {}
        for run in runs:
            try:
                planned = source.plan_many(run)
            except MoverError as exc:
                log.debug("%s: no plan ahead for %d window(s): %s", pipeline.name, len(run), exc)
                continue
            out |= {w: StepPlan(tuple(steps), rows) for w, (steps, rows) in planned.items()}
        return out

    def enqueue_one(self, pipeline: Pipeline, window: Window, now: datetime) -> bool:
        """Put one recorded window back on the queue (a worker's checkpoint continuation)."""
        state = self.ledger.get(pipeline.name, window)
        if state is None or state.status not in ("pending", "failed"):
            return False
        if not self.ledger.mark_queued(pipeline.name, state, now, max_attempts=pipeline.window.max_attempts):
            return False
        self.queue.send_window(pipeline.name, window, now)
        return True
