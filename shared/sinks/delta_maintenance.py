"""Delta table maintenance: compact each window's files on closed days, vacuum past a retention.

Off by default: the function app registers its timer only when
``MOVER_DELTA_MAINTENANCE_SCHEDULE`` is set; ``python -m shared delta-maintenance`` runs it once.

Compaction stays within a window: a window's replace-on-rerun finds its files by name
(``<window key>_…``), so files that mixed windows would make a later replay of one of them
impossible to apply exactly once. A window with several files (checkpoint chunks, late
parts, column changes) becomes one file, committed as a ``dataChange=false`` rewrite, only
on days that closed (the window's day ended more than ``settle`` ago). Vacuum deletes files
the log stopped referencing more than ``vacuum_retention`` ago — and files of runs that never
committed — which ends time travel to versions older than the retention.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, CommitProperties, RemoveAction

from shared.errors import RetriableError
from shared.settings import Pipeline, SinkConfig
from shared.sinks.delta import DeltaSink, _File
from shared.sinks.delta_table import file_stats, load_table

__all__ = ["Maintained", "maintain_pipeline"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Maintained:
    """What one table's maintenance did."""

    table: str
    compacted_windows: int
    files_removed: int
    vacuumed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "compacted_windows": self.compacted_windows,
            "files_removed": self.files_removed,
            "vacuumed": self.vacuumed,
        }


def maintain_pipeline(pipeline: Pipeline, *, now: datetime, settle: timedelta = timedelta(days=1)) -> list[Maintained]:
    """Maintain every Delta sink of ``pipeline``; windows of days closed before ``now - settle``."""
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
        for key, files in _windows_to_compact(dt, cutoff).items():
            removed += _compact_window(sink, key, files)
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
    log.info("%s: compacted %d window(s) (%d files), vacuumed %d file(s)", sink.uri, compacted, removed, vacuumed)
    return Maintained(sink.uri, compacted, removed, vacuumed)


def _windows_to_compact(dt: DeltaTable, cutoff: date) -> dict[str, list[dict[str, Any]]]:
    """Windows of closed days that have more than one file: key → add actions."""
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    by_window: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for action in actions:
        name = str(action["path"]).rsplit("/", 1)[-1]
        key = name.split("_", 1)[0]
        if len(key) == 16 and datetime.strptime(key, "%Y%m%dT%H%M%SZ").date() < cutoff:  # noqa: DTZ007
            by_window[key].append(action)
    return {k: v for k, v in sorted(by_window.items()) if len(v) > 1}


def _compact_window(sink: DeltaSink, key: str, actions: list[dict[str, Any]]) -> int:
    """Rewrite one window's files as one (streamed through a temp folder), ``dataChange=false``."""
    dt = load_table(sink.uri, sink.options)
    assert dt is not None
    schema = pa.schema(dt.schema().to_arrow())
    parts = list(dt.metadata().partition_columns)
    columns = pa.schema([f for f in schema if f.name not in parts])
    values: dict[str, str | None] = {c: str(actions[0][f"partition.{c}"]) for c in parts}
    folder = "/".join(f"{k}={v}" for k, v in values.items())
    rel = f"{folder}/{key}_{int(time.time())}_compact_000.parquet"
    out = _File(sink.container, f"{sink.root}/{rel}", rel, sink.config)
    with tempfile.TemporaryDirectory() as tmp:
        for action in actions:
            local = Path(tmp, "f.parquet")
            with local.open("wb") as fh:
                sink.container.download_blob(f"{sink.root}/{action['path']}").readinto(fh)
            for batch in pq.ParquetFile(local).iter_batches(batch_size=50_000):
                table = pa.Table.from_batches([batch])
                arrays = [
                    table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                    for f in columns
                ]
                out.write(pa.Table.from_arrays(arrays, schema=columns))
    meta = out.finish()
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
                custom_metadata={"mover.maintenance": "optimize", "mover.compacted": key}
            ),
        )
    except (CommitFailedError, DeltaError) as exc:  # a window commit won: its files replace these anyway
        raise RetriableError(f"compacting window {key} of {sink.uri}: {exc}") from exc
    return len(removes)
