"""Background telemetry: history backfill plus a steady trickle around "now".

``rate`` is telemetry items per second across all tables, split by typical proportions
(requests and dependencies dominate; availability results are rare). A ``late_fraction``
of rows gets an ingestion time minutes to hours after its timestamp, so windows keep
receiving rows after they closed — the case the mover's late-data handling must catch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .generator import TelemetryGenerator
from .store import TelemetryStore
from .timeutil import TICKS_PER_HOUR, TICKS_PER_SECOND

__all__ = ["TABLE_WEIGHTS", "Seeder"]

log = logging.getLogger(__name__)

TABLE_WEIGHTS: dict[str, float] = {
    "requests": 0.30,
    "dependencies": 0.30,
    "traces": 0.25,
    "customEvents": 0.08,
    "pageViews": 0.04,
    "exceptions": 0.02,
    "availabilityResults": 0.01,
}


class Seeder:
    """Adds rows to ``store`` for the span since its last tick, every ``interval`` seconds."""

    def __init__(
        self,
        store: TelemetryStore,
        generator: TelemetryGenerator,
        now: Callable[[], int],
        *,
        rate: float = 10.0,
        late_fraction: float = 0.05,
        seed: int = 0,
        interval: float = 1.0,
    ) -> None:
        if rate < 0 or not 0 <= late_fraction <= 1:
            raise ValueError("rate must be >= 0 and late_fraction within [0, 1]")
        self.store, self.generator, self.now = store, generator, now
        self.rate, self.late_fraction, self.seed, self.interval = rate, late_fraction, seed, interval
        self._carry = dict.fromkeys(TABLE_WEIGHTS, 0.0)
        self._last: int | None = None
        self._ticks = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rows_added = 0

    def fill(self, start: int, end: int) -> int:
        """Backfill ``[start, end)`` at the configured rate, hour by hour (bounded memory)."""
        added = 0
        t = start
        while t < end:
            chunk_end = min(end, t + TICKS_PER_HOUR)
            added += self._emit(t, chunk_end)
            t = chunk_end
        self._last = max(self._last or end, end)
        return added

    def tick(self) -> int:
        """Add rows for ``[last tick, now)``; the first call only sets the starting point."""
        now = self.now()
        if self._last is None or now <= self._last:
            self._last = now if self._last is None else self._last
            return 0
        added = self._emit(self._last, now)
        self._last = now
        return added

    def _emit(self, start: int, end: int) -> int:
        seconds = (end - start) / TICKS_PER_SECOND
        added = 0
        for table, weight in TABLE_WEIGHTS.items():
            want = self.rate * weight * seconds + self._carry[table]
            count = int(want)
            self._carry[table] = want - count
            if count <= 0:
                continue
            self._ticks += 1
            rows = self.generator.generate(
                table,
                start,
                end,
                count,
                seed=self.seed * 1_000_003 + self._ticks,
                late_fraction=self.late_fraction,
            )
            added += self.store.add(table, rows.ts, rows.ing, rows.rows)
        self.rows_added += added
        return added

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.tick()
        self._thread = threading.Thread(target=self._run, name="ai-emulator-seeder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # keep seeding; a dev tool must not die silently mid-run
                log.exception("seeder tick failed")
