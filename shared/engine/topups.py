"""A worker's queue top-ups, off the thread of the message that asked for them.

A worker that finished a window tops its pipeline's queue up (``Planner.top_up``: a ledger plan
and, for the windows it queues, one count query at the service). On the message's thread that
kept the message running for a plan and a query's latency, and the host fetches the next batch
only when few messages are still running: the instance ran fewer windows than it could. Here
one helper thread does the top-ups, one pipeline at a time, and requests for a pipeline already
waiting for its turn are merged. A top-up lost with its process (scale-in, a crash) is harmless:
the planner's next tick plans the same windows from the ledger.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from shared.settings import Pipeline

__all__ = ["TopUps"]

log = logging.getLogger(__name__)


class TopUps:
    """Runs ``top_up(pipeline)`` on one helper thread for every pipeline ``request``-ed."""

    def __init__(self, top_up: Callable[[Pipeline], object]) -> None:
        self._top_up = top_up
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wanted: dict[str, Pipeline] = {}  # asked for since their last top-up started, in order
        self._busy = False

    def request(self, pipeline: Pipeline) -> None:
        """Top ``pipeline`` up soon; returns at once."""
        with self._lock:
            self._wanted[pipeline.name] = pipeline
            if self._busy:
                return
            self._busy = True
        threading.Thread(target=self._run, name="top-up", daemon=True).start()

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until every requested top-up ran (tests, an orderly stop); False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._wanted:
                    self._busy = False
                    self._idle.notify_all()
                    return
                name = next(iter(self._wanted))
                pipeline = self._wanted.pop(name)
            try:
                self._top_up(pipeline)
            except Exception:  # a top-up must not end the thread: the next tick plans the same windows
                log.exception("%s: top-up failed", name)
