"""One claimed window end to end, with its lease heartbeat and its outcome in the ledger.

The same ``run_window`` serves the in-process tick, the queue worker, the HTTP replay,
the CLI and the tests. It never raises for window-level failures: the outcome is a
``WindowResult`` and the ledger says what happened (done, failed with a reason and a
next attempt, paused at a checkpoint, or lost to a runner that took the lease over).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from shared.engine.ports import Clock, QuarantineFactory, SinkFactory, SourceFactory
from shared.engine.run import StepPlan, move_window
from shared.errors import ConfigError, DataError, FatalError, MoverError, RetriableError, not_the_windows_fault
from shared.ledger import Claim, LeaseLost, Ledger
from shared.model import Window
from shared.outcomes import WindowResult
from shared.runtime import telemetry
from shared.settings import Pipeline, QuerySourceConfig
from shared.sinks.rejects import CellGuard
from shared.sources import LateAwareSource, LatePlan
from shared.windows import WindowState, retry_at

__all__ = ["WindowWorker", "lookback"]

log = logging.getLogger(__name__)  # shared.engine.worker: the dev stack and operators follow window lines here


def lookback(pipeline: Pipeline) -> timedelta:
    """How far back done windows are re-checked for late data (0: never)."""
    if isinstance(pipeline.source, QuerySourceConfig):
        return pipeline.window.resweep_lookback
    return pipeline.source.late_lookback


@dataclass(kw_only=True, eq=False)
class WindowWorker:
    """Moves windows: claims each in the ledger, reads its source, writes its sinks, records the outcome."""

    ledger: Ledger
    clock: Clock
    owner: str
    sources: SourceFactory
    sinks: SinkFactory
    quarantine: QuarantineFactory

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
        """Claim, move and record one window. Never raises for window-level failures.

        Returns ``skipped`` when the window is not ours to run (done, or leased by another
        runner, or out of retries — ``force`` overrides all but a live lease). With a ``late``
        plan of kind ``part`` only the late input is moved, into an extra part beside the
        window's earlier outputs (``previous`` is the done window's ledger record). When
        ``pause()`` turns true between steps, the window checkpoints and returns ``paused``.
        """
        began = time.monotonic()
        cfg = pipeline.window
        now = self.clock()
        try:
            if force:  # T10: the operator's replay, whatever the window's status but a live lease
                owner = self.owner
                claim = self.ledger.force_claim(pipeline.name, window, owner=owner, now=now, lease=cfg.lease)
            else:  # T4, or T12 for a sweep: only over exactly the done record it counted against
                claim = self.ledger.claim(
                    pipeline.name,
                    window,
                    owner=self.owner,
                    now=now,
                    lease=cfg.lease,
                    max_attempts=cfg.max_attempts,
                    part=None if late is None else late.part if late.kind == "part" else "",
                    expect=None if late is None or previous is None else previous.etag,
                )
        except MoverError as exc:  # the ledger is unreachable: nothing was claimed, try next tick
            log.warning("%s %s: cannot claim: %s", pipeline.name, window, exc)
            return WindowResult(pipeline.name, window, "failed", error=f"ledger: {exc}")
        if claim is None:
            return WindowResult(pipeline.name, window, "skipped")
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(claim, cfg.lease, stop), daemon=True)
        heartbeat.start()
        try:
            part = late if late and late.kind == "part" else None
            fresh = force or late is not None  # a replay or a sweep starts over: never an old checkpoint
            return self._move(pipeline, window, claim, began, part, previous, fresh=fresh, pause=pause, plan=plan)
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
        plan: StepPlan | None = None,
    ) -> WindowResult:
        name = pipeline.name
        try:
            moved = move_window(
                ledger=self.ledger,
                clock=self.clock,
                pipeline=pipeline,
                window=window,
                claim=claim,
                source=self.sources(pipeline),
                sinks=self.sinks(pipeline),
                late=part,
                previous=previous,
                fresh=fresh,
                pause=pause,
                plan=plan,
                cells=CellGuard(self.quarantine, pipeline.name, window),
            )
        except LeaseLost as exc:
            log.warning("%s %s: %s; the new owner finishes it", name, window, exc)
            return WindowResult(name, window, "lease_lost", error=str(exc), seconds=time.monotonic() - began)
        except Exception as exc:
            if part is not None and previous is not None:
                return self._restore_done(pipeline, window, claim, previous, exc, began)
            return self._record_failure(pipeline, window, claim, exc, began)
        telemetry.source_done(pipeline, moved.summary)
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

    def _restore_done(
        self, pipeline: Pipeline, window: Window, claim: Claim, previous: WindowState, exc: Exception, began: float
    ) -> WindowResult:
        """A late part failed: the window goes back to its done record (T14); the next sweep tries
        the part again. The part's file is removed first if it got written; if that fails, its name
        stays in ``Writing`` so the next full run removes it."""
        log.warning("%s %s: late part failed, retried on the next sweep: %s", pipeline.name, window, exc)
        removed = True
        writing = claim.entity.get("Writing")
        written = set(orjson.loads(writing) if writing else []) - set(previous.writing)
        try:
            for index, sink in enumerate(self.sinks(pipeline)):
                for part in written:
                    name = sink.output_name(window, part)
                    if (index, name) not in {(int(o.get("sink", 0)), str(o.get("name"))) for o in previous.outputs}:
                        sink.remove(name)
        except Exception as cleanup:
            log.warning("%s %s: late part not removed (a full run will): %s", pipeline.name, window, cleanup)
            removed = False
        with contextlib.suppress(LeaseLost, MoverError):  # else the lease expires and the window is taken over
            self.ledger.restore(claim, previous, now=self.clock(), keep_writing=not removed)
        return WindowResult(
            pipeline.name, window, "failed", error=f"late part: {exc}", seconds=time.monotonic() - began
        )

    def _record_failure(
        self, pipeline: Pipeline, window: Window, claim: Claim, exc: Exception, began: float
    ) -> WindowResult:
        """T8. Failures the window causes use its attempts; transient and storage failures give the
        attempt back and come back after a growing backoff, so an outage never closes a window."""
        kind = {RetriableError: "retriable", FatalError: "fatal", DataError: "data", ConfigError: "config"}
        label = next((v for k, v in kind.items() if isinstance(exc, k)), "unexpected")
        message = f"{label}: {exc}"
        if label == "unexpected":
            log.exception("%s %s: unexpected error", pipeline.name, window)
        else:
            log.warning("%s %s: attempt %d failed: %s", pipeline.name, window, claim.attempts, message)
        now = self.clock()
        cfg = pipeline.window
        if not_the_windows_fault(exc):
            streak = int(claim.entity.get("Streak", 0) or 0) + 1
            next_at: datetime | None = retry_at(cfg, streak, now)
            fail_kind = "transient"
        else:
            streak = 0
            next_at = retry_at(cfg, claim.attempts, now) if claim.attempts < cfg.max_attempts else None
            fail_kind = "window"
        try:
            self.ledger.fail(claim, now=now, error=message, next_attempt_at=next_at, kind=fail_kind, streak=streak)
        except LeaseLost:
            pass  # taken over: the new owner records the outcome
        except MoverError as exc:  # the ledger is unreachable too: the lease expires, the window comes back
            log.warning("%s %s: could not record the failure: %s", pipeline.name, window, exc)
        return WindowResult(
            pipeline.name, window, "failed", error=message, seconds=time.monotonic() - began, attempt=claim.attempts
        )

    def late_plan(self, pipeline: Pipeline, state: WindowState) -> LatePlan | None:
        """What a re-sweep of the done window finds (``None``: nothing new). Raises the source's errors."""
        source = self.sources(pipeline)
        if not isinstance(source, LateAwareSource):
            return None
        return source.resweep(state.window, state)

    def resweep(self, pipeline: Pipeline, state: WindowState) -> WindowResult | None:
        """Ask the source whether a done window changed; move what is new. ``None``: nothing to do."""
        try:
            plan = self.late_plan(pipeline, state)
        except MoverError as exc:
            log.warning("%s %s: re-sweep failed: %s", pipeline.name, state.window, exc)
            return None
        if plan is None:
            return None
        log.info("%s %s: late data (%s): %s", pipeline.name, state.window, plan.kind, plan.reason)
        return self.run_window(pipeline, state.window, late=plan, previous=state)
