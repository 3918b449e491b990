"""Replays: rerun a range of a pipeline's windows now (a few) or hand them to the workers (many).

A replay is forced: it reruns done windows and windows out of retries, replacing their
outputs at the same names. Queued replays mark the windows ``pending`` in the ledger (the
truth, T9 in docs/reliability.md); with queue dispatch the planner enqueues them right away,
up to the pipeline's in-flight cap, and workers keep the queue topped up until the range is done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.engine.planner import Planner
from shared.engine.ports import Clock
from shared.engine.worker import WindowWorker
from shared.ledger import Ledger
from shared.model import Window, format_ts
from shared.outcomes import ReplayResult, WindowResult
from shared.settings import Pipeline, Settings
from shared.windows import align_down, align_up, due_end, windows_between

__all__ = ["Replayer"]


@dataclass(kw_only=True, eq=False)
class Replayer:
    """Reruns ranges with the worker (inline) or through the ledger and the planner (queued)."""

    settings: Settings
    ledger: Ledger
    clock: Clock
    worker: WindowWorker
    planner: Planner

    def windows(self, pipeline: Pipeline, start: datetime, end: datetime) -> list[Window]:
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
        """Rerun windows now (few) or queue them (many).

        ``pause_after`` bounds an inline replay: a window still running then checkpoints and
        the rest is queued (HTTP callers must answer within 230 s).
        """
        windows = self.windows(pipeline, start, end)
        inline = mode == "inline" or (mode == "auto" and len(windows) <= self.settings.replay_inline_windows)
        if not inline:
            return ReplayResult(pipeline.name, tuple(windows), "queued", queued=self._queue(pipeline, windows))
        stop_at = None if pause_after is None else time.monotonic() + pause_after.total_seconds()

        def pause() -> bool:
            return stop_at is not None and time.monotonic() >= stop_at

        results: list[WindowResult] = []
        for i, window in enumerate(windows):
            if pause():  # out of time: the rest goes to the workers / the timer
                queued = self._queue(pipeline, windows[i:])
                return ReplayResult(pipeline.name, tuple(windows), "inline", tuple(results), queued)
            results.append(self.worker.run_window(pipeline, window, force=True, pause=pause))
        return ReplayResult(pipeline.name, tuple(windows), "inline", results=tuple(results))

    def _queue(self, pipeline: Pipeline, windows: list[Window]) -> int:
        queued = self.ledger.request_replay(pipeline.name, windows, self.clock())
        if self.settings.dispatch == "queue":
            self.planner.top_up(pipeline, batch=False)  # an operator waits for it: no batching
        return queued
