"""What a worker does with a work message (the queue trigger's body) and with a poisoned one.

The ledger is the truth; a message only says "look at this window". So every handler is
idempotent: a duplicate, late or stale message finds the window done, running under
someone's live lease, or changed since, and does nothing. A message that was lost leaves
its window ``queued`` until the planner notices and enqueues it again. A message that
keeps failing ends on the poison queue, and its window comes back after a backoff.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from shared.engine.messages import BadMessage, WorkMessage
from shared.engine.planner import Planner
from shared.engine.ports import Clock
from shared.engine.topups import TopUps
from shared.engine.worker import WindowWorker
from shared.errors import MoverError, RetriableError
from shared.ledger import Ledger
from shared.settings import Pipeline, Settings
from shared.windows import align_down

__all__ = ["MessageHandler"]

log = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)
class MessageHandler:
    """Acts on work and poison messages with the worker, the planner (to put a checkpointed window
    back), the top-ups (off the message's thread) and the ledger."""

    settings: Settings
    ledger: Ledger
    clock: Clock
    worker: WindowWorker
    planner: Planner
    top_ups: TopUps

    def handle(self, body: bytes | str, *, dequeue_count: int = 1) -> str:
        """Act on one delivered message; returns what happened (for logs and tests).

        Raises only when the message should be delivered again (the ledger was unreachable):
        the queue retries it, and after ``maxDequeueCount`` it goes to the poison queue.
        """
        parsed = self._parse(body, "work")
        if parsed is None:
            return "dropped"
        message, pipeline = parsed
        if message.kind == "sweep":
            return self._sweep(pipeline, message)
        stop_at = time.monotonic() + self.settings.checkpoint_after.total_seconds()
        result = self.worker.run_window(
            pipeline, message.window, pause=lambda: time.monotonic() >= stop_at, plan=message.plan
        )
        if result.outcome == "failed" and result.attempt == 0 and result.error.startswith("ledger:"):
            raise RetriableError(f"{pipeline.name} {message.window}: {result.error}")  # not claimed: deliver again
        if result.outcome == "paused":
            self.planner.enqueue_one(pipeline, message.window, self.clock())
        elif result.outcome != "skipped" or dequeue_count == 1:
            self.top_ups.request(pipeline)
        if result.outcome == "skipped":
            log.debug(
                "%s %s: nothing to do (done, running elsewhere or changed): message %s",
                pipeline.name,
                message.window,
                "duplicate" if dequeue_count == 1 else f"redelivered ({dequeue_count})",
            )
        return result.outcome

    def poisoned(self, body: bytes | str, *, reason: str = "") -> str:
        """T15: a message the queue gave up on. Its window becomes ``failed`` (transient) with the
        reason and comes back after a backoff: attempts are unchanged, so an outage never closes it."""
        parsed = self._parse(body, "poison")
        if parsed is None:
            return "dropped"
        message, pipeline = parsed
        if message.kind == "sweep":
            log.error("%s %s: late-data sweep gave up after repeated failures", pipeline.name, message.window)
            return "dropped"
        error = "poison: the work message failed on every delivery" + (f" ({reason})" if reason else "")
        error += "; it is retried after a backoff"
        now = self.clock()
        backoff = pipeline.window.retry_backoff
        marked = self.ledger.poison(pipeline.name, message.window, now=now, error=error, backoff=backoff)
        log.error("%s %s: %s%s", pipeline.name, message.window, error, "" if marked else " (window already settled)")
        return "failed" if marked else "settled"

    def _sweep(self, pipeline: Pipeline, message: WorkMessage) -> str:
        """T12/T13: re-sweep the done record the message names — and only it."""
        try:
            state = self.ledger.get(pipeline.name, message.window)
        except MoverError as exc:
            raise RetriableError(f"sweep {pipeline.name} {message.window}: {exc}") from exc
        if state is None or state.status != "done" or (message.etag and state.etag != message.etag):
            return "stale"  # changed since it was planned (a replay, a run): the newer decision stands
        plan = self.worker.late_plan(pipeline, state)  # raises: the message is delivered again
        if plan is None:
            self.ledger.mark_swept(pipeline.name, message.window, state.etag, self.clock())
            return "swept"
        log.info("%s %s: late data (%s): %s", pipeline.name, state.window, plan.kind, plan.reason)
        return self.worker.run_window(pipeline, state.window, late=plan, previous=state).outcome

    def _parse(self, body: bytes | str, what: str) -> tuple[WorkMessage, Pipeline] | None:
        """The message and its pipeline, or ``None`` (logged) for one no worker can act on."""
        try:
            message = WorkMessage.decode(body)
            return message, self._resolve(message)
        except BadMessage as exc:
            log.error("%s message dropped: %s", what, exc)
            return None

    def _resolve(self, message: WorkMessage) -> Pipeline:
        try:
            pipeline = self.settings.pipeline(message.pipeline)
        except KeyError:
            raise BadMessage(f"unknown pipeline {message.pipeline[:64]!r}") from None
        size = pipeline.window.size
        if message.window.size != size or align_down(message.window.start, size) != message.window.start:
            raise BadMessage(f"{message.window} is not a window of {pipeline.name} (size {size})")
        return pipeline
