"""Moving one claimed window: read → map → write every sink → commit → manifest → ledger.

A window is read as ordered steps (the query API's sub-windows; one step for other
sources). Between steps a long window may *pause*: it commits what it wrote as a chunk
(an extra deterministic part ``c0001``, ``c0002``…), records a checkpoint on the window in
the ledger and hands the window back as ``pending``; the next tick resumes at the next
step. A crash between a chunk's commit and its checkpoint replays that chunk under the
same name, so nothing is duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson

from shared import mapping
from shared.durations import parse_timestamp
from shared.engine.ahead import Ahead, parallel_of
from shared.ledger import Claim, LeaseLost, Ledger
from shared.model import Batch, OutputFile, Window, format_ts
from shared.settings import Pipeline
from shared.sinks.base import Sink, SinkWriter
from shared.sinks.rejects import CellGuard
from shared.sources import (
    LateAwareSource,
    LatePlan,
    Prefetched,
    PrefetchingSource,
    Source,
    SourceSummary,
    SteppedSource,
)
from shared.windows import WindowState

__all__ = ["Moved", "Progress", "StepPlan", "move_window"]

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Checkpoint of a window paused between steps (kept in the ledger entity's ``Extra``)."""

    steps: list[Window]
    next: int = 0
    chunks: int = 0
    rows: int = 0
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [[format_ts(s.start), format_ts(s.end)] for s in self.steps],
            "next": self.next,
            "chunks": self.chunks,
            "rows": self.rows,
            "outputs": self.outputs,
        }

    @classmethod
    def from_state(cls, state: WindowState | None) -> Progress | None:
        raw = state.extra.get("checkpoint") if state is not None else None
        if not isinstance(raw, dict):
            return None
        steps = [Window(parse_timestamp(a), parse_timestamp(b)) for a, b in raw["steps"]]
        return cls(steps, int(raw["next"]), int(raw["chunks"]), int(raw["rows"]), list(raw["outputs"]))


@dataclass(frozen=True)
class StepPlan:
    """Sub-windows of a window planned ahead (by the planner, with one count query for many windows)."""

    steps: tuple[Window, ...]
    planned: int  # rows the count found

    def fits(self, window: Window) -> bool:
        """Do the steps tile ``window`` exactly (else the window plans itself)?"""
        ends = [s.start for s in self.steps[1:]] == [s.end for s in self.steps[:-1]]
        return bool(self.steps) and ends and self.steps[0].start == window.start and self.steps[-1].end == window.end


@dataclass(frozen=True)
class Moved:
    outcome: Literal["done", "paused"]
    rows: int  # rows moved by this run
    bytes: int  # bytes of the outputs written by this run
    names: tuple[str, ...]  # data outputs written by this run
    summary: SourceSummary

    @classmethod
    def of(
        cls, outcome: Literal["done", "paused"], rows: int, written: list[dict[str, Any]], summary: SourceSummary
    ) -> Moved:
        return cls(outcome, rows, sum(int(o["bytes"]) for o in written), tuple(o["name"] for o in written), summary)


def _output(sink: int, f: OutputFile, part: str = "", *, kind: str = "data") -> dict[str, Any]:
    out: dict[str, Any] = {"sink": sink, "kind": kind, "name": f.name, "rows": f.rows, "bytes": f.bytes}
    if f.sha256:
        out["sha256"] = f.sha256
    if part:
        out["part"] = part
    return out


def _file(o: dict[str, Any]) -> OutputFile:
    return OutputFile(name=str(o["name"]), rows=int(o["rows"]), bytes=int(o["bytes"]), sha256=str(o.get("sha256", "")))


def _chunk_part(base: str, chunk: int) -> str:
    if chunk == 0:
        return base
    return f"{base}-c{chunk:04d}" if base else f"c{chunk:04d}"


@dataclass
class _Run:
    ledger: Ledger
    clock: Callable[[], datetime]
    pipeline: Pipeline
    window: Window
    claim: Claim
    source: Source
    sinks: list[Sink]
    cells: CellGuard
    writers: list[SinkWriter] = field(default_factory=list)

    def open(self, part: str) -> None:
        self.cells.open(part)
        self.writers = [sink.open(self.window, part=part) for sink in self.sinks]

    def write(self, batches: Iterator[Batch]) -> int:
        rows = 0
        for batch in batches:
            if self.pipeline.columns is not None:
                batch = mapping.apply_columns(batch, self.pipeline.columns)
            batch = self.cells.check(batch)  # rows no sink can store: quarantined, not the window
            for writer in self.writers:
                writer.write(batch)
            rows += len(batch)
        return rows

    def fence(self) -> None:
        """Renew the lease just before committing: a runner that lost the window (stalled past
        its lease) stops here with ``LeaseLost`` instead of replacing the new owner's files.
        The blob sink's conditional commit covers a stall between this and the commit."""
        self.ledger.renew(self.claim, self.clock(), self.pipeline.window.lease)

    def commit(self, part: str) -> list[dict[str, Any]]:
        self.cells.close()
        committed = [writer.commit() for writer in self.writers]
        self.writers = []
        return [_output(i, o, part) for i, files in enumerate(committed) for o in files]

    def abort(self) -> None:
        writers, self.writers = self.writers, []
        for writer in writers:
            try:
                writer.abort()
            except Exception:
                log.debug("abort failed", exc_info=True)


def move_window(
    *,
    ledger: Ledger,
    clock: Callable[[], datetime],
    pipeline: Pipeline,
    window: Window,
    claim: Claim,
    source: Source,
    sinks: list[Sink],
    late: LatePlan | None = None,
    previous: WindowState | None = None,
    fresh: bool = False,
    pause: Callable[[], bool] | None = None,
    cells: CellGuard | None = None,
    plan: StepPlan | None = None,
) -> Moved:
    """Move ``window`` under ``claim``; returns ``paused`` when ``pause()`` said stop between steps.

    ``late`` (a ``part`` plan) moves only late input beside ``previous``'s outputs. ``fresh``
    (a replay) ignores a checkpoint and starts over. Raises whatever the source, sinks or
    ledger raise; uncommitted output is dropped first.
    """
    cells = cells or CellGuard(None, pipeline.name, window)
    run = _Run(ledger, clock, pipeline, window, claim, source, sinks, cells)
    try:
        return _move(run, late, previous, fresh, pause, plan)
    except BaseException:
        run.abort()
        raise


def _move(
    run: _Run,
    late: LatePlan | None,
    previous: WindowState | None,
    fresh: bool,
    pause: Callable[[], bool] | None,
    plan: StepPlan | None,
) -> Moved:
    source, window, claim = run.source, run.window, run.claim
    kept: list[dict[str, Any]] = []  # earlier data outputs that stay
    steps: list[Callable[[], Iterator[Batch]]]
    prefetch: list[Callable[[], Prefetched]] | None = None
    base = ""
    progress: Progress | None = None
    if late is not None:
        assert isinstance(source, LateAwareSource)
        base = late.part
        kept = [o for o in previous.outputs if o.get("kind", "data") == "data"] if previous else []
        steps = [lambda: source.read_part(window, late)]
    elif isinstance(source, SteppedSource):
        progress = None if fresh else Progress.from_state(claim.previous)
        if progress is not None:
            log.info("%s %s: resuming at step %d of %d", run.pipeline.name, window, progress.next, len(progress.steps))
        elif plan is not None and plan.fits(window):
            progress = Progress(source.use_plan(list(plan.steps), plan.planned))
        else:
            progress = Progress(source.plan(window))
        kept = list(progress.outputs)
        steps = [lambda sub=sub: source.read_step(sub) for sub in progress.steps]  # type: ignore[misc]
        if isinstance(source, PrefetchingSource):  # read ahead raw bodies, decode on the writer's thread
            prefetch = [lambda sub=sub: source.prefetch_step(sub) for sub in progress.steps]  # type: ignore[misc]
    else:
        steps = [lambda: source.read(window)]
    first = progress.next if progress else 0
    chunk = progress.chunks if progress else 0
    run.open(_chunk_part(base, chunk))
    rows = 0
    with Ahead(steps, parallel=parallel_of(run.pipeline) if progress is not None else 1, prefetch=prefetch) as ahead:
        for index in range(first, len(steps)):
            if progress is not None and index > first and pause is not None and pause():
                run.fence()
                written = run.commit(_chunk_part(base, chunk))
                progress.outputs += written
                progress.next, progress.chunks, progress.rows = index, chunk + 1, progress.rows + rows
                run.ledger.checkpoint(claim, now=run.clock(), extra={"checkpoint": progress.to_json()})
                return Moved.of("paused", rows, written, source.summary())
            if claim.lost.is_set():  # a replay or a takeover made this run's work moot: stop reading
                raise LeaseLost(f"{run.pipeline.name} {window}: lease lost while running")
            rows += run.write(ahead.read(index))
    run.fence()
    written = run.commit(_chunk_part(base, chunk))
    summary = source.summary()
    outputs = kept + written
    earlier_rows = (progress.rows if progress else 0) + (previous.rows if late and previous else 0)
    total_rows = earlier_rows + rows
    info = {
        "pipeline": run.pipeline.name,
        "table": run.pipeline.source.table,
        "rows": total_rows,
        "source": summary.extra,
    }
    manifests = [
        _output(i, sink.write_manifest(window, [_file(o) for o in outputs if o["sink"] == i], info), kind="manifest")
        for i, sink in enumerate(run.sinks)
    ]
    _remove_stale(run.sinks, window, claim, outputs + manifests)
    source_count = summary.source_count
    if source_count is not None:
        if late is not None and previous is not None and previous.source_count is not None:
            source_count += previous.source_count
        elif progress is not None:
            source_count += progress.rows
    run.ledger.complete(
        claim,
        now=run.clock(),
        rows=total_rows,
        nbytes=sum(int(o["bytes"]) for o in outputs),
        outputs=outputs + manifests,
        source_count=source_count,
        quarantined=summary.quarantined + run.cells.count + (previous.quarantined if late and previous else 0),
        extra=summary.extra or None,
    )
    return Moved.of("done", rows, written, summary)


def _remove_stale(sinks: list[Sink], window: Window, claim: Claim, current: list[dict[str, Any]]) -> None:
    """Before the window is recorded done, remove every name it may hold that this run did not
    (re)write: the previous record's outputs, an abandoned checkpoint's chunks, the parts earlier
    runs were writing when they died (``Writing``) and ``Leftovers``. So the window's files are
    exactly its latest run's (docs/reliability.md, "Outputs a run may leave")."""
    previous = claim.previous
    earlier: list[tuple[int, str]] = []
    parts: set[str] = set(_json_list(claim.entity.get("Writing")))
    if previous is not None:
        earlier += [(int(o.get("sink", 0)), str(o["name"])) for o in previous.outputs]
        earlier += list(previous.leftovers)
        parts |= set(previous.writing)
        checkpoint = previous.extra.get("checkpoint")
        if isinstance(checkpoint, dict):
            earlier += [(int(o.get("sink", 0)), str(o["name"])) for o in checkpoint.get("outputs", [])]
            parts.add(_chunk_part("", int(checkpoint.get("chunks", 0))))  # committed, maybe unrecorded
    earlier += [(i, sink.output_name(window, part)) for part in sorted(parts) for i, sink in enumerate(sinks)]
    keep = {(int(o["sink"]), o["name"]) for o in current}
    for index, name in dict.fromkeys(earlier):
        if (index, name) not in keep and index < len(sinks):
            sinks[index].remove(name)


def _json_list(raw: Any) -> list[str]:
    return [str(p) for p in orjson.loads(raw)] if raw else []
