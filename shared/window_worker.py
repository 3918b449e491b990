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
from datetime import timedelta
from typing import TYPE_CHECKING

from shared import telemetry
from shared.errors import ConfigError, DataError, FatalError, MoverError, RetriableError
from shared.ledger import Claim, LeaseLost
from shared.model import Window
from shared.outcomes import WindowResult
from shared.settings import Pipeline, QuerySourceConfig
from shared.sinks.rejects import CellGuard
from shared.sources import LateAwareSource, LatePlan
from shared.window_run import move_window
from shared.windows import WindowState, retry_at

if TYPE_CHECKING:
    from shared.ledger import Ledger
    from shared.runner import Engine

__all__ = ["WindowWorker", "lookback"]

log = logging.getLogger("shared.runner")  # the dev stack and operators follow window lines under this name


def lookback(pipeline: Pipeline) -> timedelta:
    """How far back done windows are re-checked for late data (0: never)."""
    if isinstance(pipeline.source, QuerySourceConfig):
        return pipeline.window.resweep_lookback
    return pipeline.source.late_lookback


class WindowWorker:
    """Moves windows for an ``Engine`` (its ledger, clock, owner id, sources and sinks)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def ledger(self) -> Ledger:
        return self.engine.ledger

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
                owner=self.engine.owner,
                now=self.engine.clock(),
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
                self.ledger.renew(claim, self.engine.clock(), lease)
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
                clock=self.engine.clock,
                pipeline=pipeline,
                window=window,
                claim=claim,
                source=self.engine.source(pipeline),
                sinks=self.engine.sinks(pipeline),
                late=part,
                previous=previous,
                fresh=fresh,
                pause=pause,
                cells=CellGuard(self.engine.quarantine, pipeline.name, window),
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
        lag = (self.engine.clock() - window.end).total_seconds()
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
                now=self.engine.clock(),
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
        now = self.engine.clock()
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

    def resweep(self, pipeline: Pipeline, state: WindowState) -> WindowResult | None:
        """Ask the source whether a done window changed; move what is new. ``None``: nothing to do."""
        source = self.engine.source(pipeline)
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
