"""Delta table maintenance: compact closed days' partitions, vacuum past a retention.

Off by default: the function app registers its timer only when
``MOVER_DELTA_MAINTENANCE_SCHEDULE`` is set; ``python -m shared delta-maintenance`` runs it once.

Compaction merges the files of each partition of a closed day into one file and records in
it which window (and which original file) each run of rows came from, so a later rerun or
late part of one window still replaces exactly that window's rows (``commit_window`` rewrites
the merged file without them). A day is closed once it ended longer ago than a day and the
pipeline's re-sweep look-back (+ delay and lease). Vacuum deletes files the log stopped
referencing more than ``vacuum_retention`` ago — and files of runs that never committed —
which ends time travel to versions older than the retention.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, CommitProperties, RemoveAction

from shared.errors import RetriableError
from shared.settings import Pipeline, SinkConfig
from shared.sinks.delta import DeltaSink
from shared.sinks.delta_files import SEGMENTS_KEY, DataFile, compact_name, copy_rows
from shared.sinks.delta_table import file_stats, load_table

__all__ = ["Maintained", "maintain_pipeline"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Maintained:
    """What one table's maintenance did."""

    table: str
    compacted_partitions: int
    files_removed: int
    vacuumed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "compacted_partitions": self.compacted_partitions,
            "files_removed": self.files_removed,
            "vacuumed": self.vacuumed,
        }


def maintain_pipeline(pipeline: Pipeline, *, now: datetime) -> list[Maintained]:
    """Maintain every Delta sink of ``pipeline`` (compaction only of days closed before ``now``)."""
    cfg = pipeline.window
    settle = max(timedelta(days=1), cfg.resweep_lookback + cfg.delay + cfg.lease)
    out = []
    for config in pipeline.sinks:
        if config.kind != "delta":
            continue
        sink = DeltaSink(config, pipeline=pipeline.name, table=pipeline.source.table)
        out.append(_maintain(sink, config, cutoff=(now - settle).astimezone(UTC).date()))
    return out


def _maintain(sink: DeltaSink, config: SinkConfig, *, cutoff: date) -> Maintained:
    dt = load_table(sink.uri, sink.options)
    if dt is None:
        return Maintained(sink.uri, 0, 0, 0)
    compacted = removed = 0
    if config.optimize:
        for folder, files in _partitions_to_compact(dt, cutoff).items():
            removed += _compact(sink, folder, files)
            compacted += 1
    vacuumed = 0
    if config.vacuum_retention is not None:
        dt = load_table(sink.uri, sink.options)
        assert dt is not None
        hours = max(0, int(config.vacuum_retention.total_seconds() // 3600))
        deleted = dt.vacuum(
            retention_hours=hours,
            dry_run=False,
            enforce_retention_duration=False,
            full=True,  # also files of runs that never committed
            commit_properties=CommitProperties(custom_metadata={"mover.maintenance": "vacuum"}),
        )
        vacuumed = len(deleted)
    log.info("%s: compacted %d partition(s) (%d files), vacuumed %d file(s)", sink.uri, compacted, removed, vacuumed)
    return Maintained(sink.uri, compacted, removed, vacuumed)


def _partitions_to_compact(dt: DeltaTable, cutoff: date) -> dict[str, list[dict[str, Any]]]:
    """Partitions (folder → add actions, by name) of days before ``cutoff`` with several files."""
    parts = list(dt.metadata().partition_columns)
    by_folder: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for action in pa.table(dt.get_add_actions(flatten=True)).to_pylist():
        day = action.get("partition.date")
        if isinstance(day, date) and day < cutoff:
            folder = "/".join(f"{c}={_text(action[f'partition.{c}'])}" for c in parts)
            by_folder[folder].append(action)
    return {k: sorted(v, key=lambda a: str(a["path"])) for k, v in sorted(by_folder.items()) if len(v) > 1}


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _compact(sink: DeltaSink, folder: str, actions: list[dict[str, Any]]) -> int:
    """Merge one partition's files into one (streamed), recording each window's segments;
    committed as a ``dataChange=false`` rewrite."""
    dt = load_table(sink.uri, sink.options)
    assert dt is not None
    schema = pa.schema(dt.schema().to_arrow())
    parts = list(dt.metadata().partition_columns)
    columns = pa.schema([f for f in schema if f.name not in parts])
    values: dict[str, str | None] = {c: _text(actions[0][f"partition.{c}"]) for c in parts}
    segments = []
    for action in actions:
        segments += sink.segments(str(action["path"]), int(action["size_bytes"]))
    rel = compact_name(folder, segments, int(time.time() * 1_000_000))
    out = DataFile(sink.container, f"{sink.root}/{rel}", rel, sink.config)
    try:
        for action in actions:
            copy_rows(sink.container, f"{sink.root}/{action['path']}", out, columns)
        meta = out.finish({SEGMENTS_KEY: json.dumps([s.__dict__ for s in segments]).encode()})
    except BaseException:
        out.cancel()
        raise
    assert out.schema is not None
    now = int(time.time() * 1000)
    add = AddAction(rel, out.stager.size, values, now, False, file_stats(meta, out.schema))
    removes = [RemoveAction(str(a["path"]), False, now, int(a["size_bytes"]), values) for a in actions]
    try:
        dt.create_write_transaction(
            [add, *removes],
            "append",
            schema,
            partition_by=parts,
            commit_properties=CommitProperties(
                custom_metadata={"mover.maintenance": "optimize", "mover.partition": folder}
            ),
        )
    except (CommitFailedError, DeltaError) as exc:  # a window commit won: the next run compacts again
        raise RetriableError(f"compacting {folder} of {sink.uri}: {exc}") from exc
    return len(removes)
