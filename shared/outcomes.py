"""What moving windows produced: per window, per tick, per replay (plain values for logs, CLI and HTTP)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shared.model import Window, format_ts

__all__ = ["Outcome", "ReplayResult", "SourceSummary", "TickReport", "WindowResult"]

Outcome = Literal["done", "paused", "skipped", "failed", "lease_lost"]


@dataclass(frozen=True)
class WindowResult:
    pipeline: str
    window: Window
    outcome: Outcome
    rows: int = 0
    bytes: int = 0
    outputs: tuple[str, ...] = ()
    error: str = ""
    seconds: float = 0.0
    attempt: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "window_start": format_ts(self.window.start),
            "window_end": format_ts(self.window.end),
            "outcome": self.outcome,
            "rows": self.rows,
            "bytes": self.bytes,
            "outputs": list(self.outputs),
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "attempt": self.attempt,
        }


@dataclass
class TickReport:
    results: list[WindowResult] = field(default_factory=list)
    deferred: int = 0  # due windows left for the next tick (time budget / per-tick cap)
    errors: dict[str, str] = field(default_factory=dict)  # pipeline → planning error
    queued: int = 0  # windows put on the work queue (queue dispatch)
    sweeps: int = 0  # done windows sent to be re-swept for late data (queue dispatch)

    @property
    def done(self) -> int:
        return sum(r.outcome == "done" for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.outcome == "failed" for r in self.results)


@dataclass(frozen=True)
class ReplayResult:
    pipeline: str
    windows: tuple[Window, ...]
    mode: Literal["inline", "queued"]
    results: tuple[WindowResult, ...] = ()
    queued: int = 0


@dataclass
class SourceSummary:
    """What a source learned while reading a window, recorded on the window in the ledger."""

    source_count: int | None = None  # rows the source said the window held (query API count)
    quarantined: int = 0  # malformed records set aside
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific checkpoint (e.g. blobs consumed)
