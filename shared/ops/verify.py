"""Prove after: recount the source for every done window and compare with the ledger and the manifests.

A window is ``complete`` when the source holds now exactly the rows the ledger says were
moved (plus quarantined lines) and every sink's manifest lists those rows in files that
exist; ``short`` when the source holds more (late data arrived after the last re-sweep,
or an exported blob grew or was rewritten); ``over`` when the outputs hold more than the
source (duplicates — or the source's retention dropped rows); ``missing`` when a manifest
or an output it lists is gone. Query sources are recounted with one batched
``count() by bin`` per span of windows (``shared.sources.counts``); blob sources by comparing the
hour folder with the consumed-blob record and counting only the lines that are new. Only
manifests are read (and outputs' existence checked), never the data files.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from shared.model import Window, format_ts
from shared.ops.verify_sinks import check_outputs
from shared.settings import Pipeline, QuerySourceConfig
from shared.sources.counts import count_windows
from shared.sources.query_api import QueryApiSource
from shared.windows import WindowState

if TYPE_CHECKING:
    from shared.ledger import Ledger
    from shared.sinks.base import Sink
    from shared.sources import Source

__all__ = ["Verdict", "Verification", "WindowCheck", "judge", "verify"]

log = logging.getLogger(__name__)
Verdict = Literal["complete", "short", "over", "missing"]
_VERDICTS: tuple[Verdict, ...] = ("complete", "short", "over", "missing")


@dataclass(frozen=True)
class WindowCheck:
    window: Window
    verdict: Verdict
    ledger_rows: int
    source_rows: int | None
    manifest_rows: tuple[int | None, ...]
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": format_ts(self.window.start),
            "end": format_ts(self.window.end),
            "verdict": self.verdict,
            "ledger_rows": self.ledger_rows,
            "source_rows": self.source_rows,
            "manifest_rows": list(self.manifest_rows),
            "detail": self.detail,
        }


def judge(
    state: WindowState, source_rows: int | None, manifest_rows: list[int | None], problems: list[str], late: str = ""
) -> WindowCheck:
    """The verdict of one window (pure). ``source_rows`` None: the source cannot be counted (``late``
    says why it changed); ``manifest_rows`` None: that sink's manifest is missing; ``problems``:
    outputs the manifests or the ledger name that are gone."""
    moved = state.rows + state.quarantined
    rows = tuple(manifest_rows)
    missing = [f"sink {i}: manifest missing" for i, n in enumerate(manifest_rows) if n is None]
    if missing or problems:
        return WindowCheck(state.window, "missing", state.rows, source_rows, rows, "; ".join(missing + problems))
    over = [
        f"sink {i}: manifest {n} rows > ledger {state.rows}"
        for i, n in enumerate(manifest_rows)
        if n and n > state.rows
    ]
    if source_rows is not None and moved > source_rows:
        over.append(f"moved {moved} > source {source_rows} now")
    if over:
        return WindowCheck(state.window, "over", state.rows, source_rows, rows, "; ".join(over))
    short = [
        f"sink {i}: manifest {n} rows < ledger {state.rows}"
        for i, n in enumerate(manifest_rows)
        if (n or 0) < state.rows
    ]
    if late:
        short.append(late)
    elif source_rows is not None and source_rows > moved:
        short.append(f"source has {source_rows} rows now, {moved} moved ({source_rows - moved} arrived late)")
    if short:
        return WindowCheck(state.window, "short", state.rows, source_rows, rows, "; ".join(short))
    return WindowCheck(state.window, "complete", state.rows, source_rows, rows)


@dataclass
class Verification:
    pipeline: str
    start: datetime
    end: datetime
    checks: list[WindowCheck] = field(default_factory=list)
    not_done: int = 0  # windows of the range not done (not verified: nothing to compare yet)
    covered_until: datetime | None = None
    complete_range: bool = True  # False: the time limit stopped it
    repaired: int = 0
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def count(self, verdict: Verdict) -> int:
        return sum(c.verdict == verdict for c in self.checks)

    @property
    def bad(self) -> list[WindowCheck]:
        return [c for c in self.checks if c.verdict != "complete"]

    @property
    def ok(self) -> bool:
        return not self.bad

    def as_dict(self, *, windows: str = "bad", limit: int | None = None) -> dict[str, Any]:
        """``windows``: list ``bad`` ones or ``all``; at most ``limit`` of them (``windows_truncated``)."""
        listed = self.checks if windows == "all" else self.bad
        shown = listed if limit is None else listed[:limit]
        return {
            "pipeline": self.pipeline,
            "start": format_ts(self.start),
            "end": format_ts(self.end),
            "ok": self.ok,
            "checked": len(self.checks),
            "counts": {v: self.count(v) for v in _VERDICTS},
            "not_done": self.not_done,
            "complete_range": self.complete_range,
            "covered_until": format_ts(self.covered_until or self.start),
            "repaired": self.repaired,
            "windows": [c.as_dict() for c in shown],
            "windows_truncated": len(shown) < len(listed),
            "notes": self.notes,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def verify(
    ledger: Ledger,
    source: Source,
    sinks: list[Sink],
    pipeline: Pipeline,
    rng: Window,
    *,
    now: datetime,
    deadline: float | None = None,
    repair: bool = False,
) -> Verification:
    """Check every done window in ``rng``; with ``repair`` queue the bad ones for replay.

    ``deadline`` (monotonic) bounds the run: windows after ``covered_until`` were not checked.
    Raises ``MoverError`` when the ledger or the source cannot be read at all.
    """
    began = time.monotonic()
    result = Verification(pipeline.name, rng.start, rng.end)
    states = list(ledger.states(pipeline.name, since=rng.start, until=rng.end))  # only what it reports
    done = sorted((s for s in states if s.status == "done"), key=lambda s: s.window.start)
    result.not_done = len(states) - len(done)
    covered = rng.end
    if isinstance(pipeline.source, QuerySourceConfig):
        assert isinstance(source, QueryApiSource)
        lo = done[0].window.start if done else rng.end  # count only where there is something to compare
        hi = done[-1].window.end if done else rng.end
        counts = count_windows(source, lo, hi, pipeline.window.size, billed=False, deadline=deadline)
        if not counts.complete:
            covered = counts.covered_until or lo
        done = [s for s in done if s.window.end <= covered]
        recount: dict[datetime, tuple[int | None, str]] = {
            s.window.start: (counts.rows.get(s.window.start, 0), "") for s in done
        }
    else:
        from shared.ops.verify_blobs import recount_blobs

        recount, stopped = recount_blobs(source, pipeline, done, deadline)
        covered = stopped or rng.end
        done = [s for s in done if s.window.start in recount]

    def check(state: WindowState) -> WindowCheck:
        manifest_rows, problems = check_outputs(sinks, state)
        source_rows, late = recount[state.window.start]
        return judge(state, source_rows, manifest_rows, problems, late)

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="verify") as pool:
        for i, outcome in enumerate(pool.map(lambda s: None if _late(deadline) else check(s), done)):
            if outcome is None:
                covered = done[i].window.start
                break
            result.checks.append(outcome)
    result.covered_until = covered
    result.complete_range = covered >= rng.end
    if not result.complete_range:
        result.notes.append(f"stopped by the time limit: windows from {format_ts(covered)} on were not checked")
    if repair and result.bad:
        result.repaired = ledger.request_replay(pipeline.name, [c.window for c in result.bad], now)
        log.info("%s: queued %d window(s) for replay after verification", pipeline.name, result.repaired)
    result.elapsed_s = time.monotonic() - began
    return result


def _late(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
