"""Sink sections of a pipeline: blob files (JSONL, CSV, Parquet) or Table Storage."""

from __future__ import annotations

import re
from typing import Any

from shared.settings.fields import CONTAINER as _CONTAINER
from shared.settings.fields import TABLE_NAME as _TABLE_NAME
from shared.settings.fields import Fields
from shared.settings.model import DEFAULT_PATH, SinkConfig

__all__ = ["PLACEHOLDERS", "delta_sink", "sink"]

PLACEHOLDERS = frozenset({"pipeline", "table", "yyyy", "MM", "dd", "HH", "mm", "window", "window_end", "part"})
_PLACEHOLDERS = PLACEHOLDERS


def sink(p: Fields, where: str, raw: Any) -> SinkConfig | None:
    if not isinstance(raw, dict):
        p.fail(where, 'must be an object like {"kind": "blob", "container": "telemetry"}')
        return None
    kind = raw.get("kind", "blob")
    if kind == "delta":
        return delta_sink(p, where, raw)
    if kind not in ("blob", "table"):
        p.fail(where, f"unknown kind {kind!r}; use blob, table or delta")
        return None
    storage = p.storage(where, str(raw.get("connection_setting", "AzureWebJobsStorage")))
    container = raw.get("container" if kind == "blob" else "table")
    if kind == "blob" and (not isinstance(container, str) or not _CONTAINER.match(container)):
        p.fail(
            where,
            f"'container' must be a valid blob container name (3-63 lowercase letters, digits, '-'); got {container!r}",
        )
    if kind == "table" and (not isinstance(container, str) or not _TABLE_NAME.match(container)):
        p.fail(where, f"'table' must be a valid table name (3-63 letters/digits); got {container!r}")
    fmt = raw.get("format", "jsonl")
    if fmt not in ("jsonl", "csv", "parquet"):
        p.fail(where, f"'format' must be jsonl, csv or parquet; got {fmt!r}")
    compression = raw.get("compression", "snappy" if fmt == "parquet" else "gzip")
    allowed = ("snappy", "zstd", "gzip", "none") if fmt == "parquet" else ("gzip", "none")
    if compression not in allowed:
        p.fail(where, f"'compression' for {fmt} must be one of {', '.join(allowed)}; got {compression!r}")
    path = raw.get("path", DEFAULT_PATH)
    if not isinstance(path, str):
        p.fail(where, "'path' must be a string template")
        path = DEFAULT_PATH
    names = set(re.findall(r"{([^{}]*)}", path))
    for unknown in sorted(names - _PLACEHOLDERS):
        p.fail(where, f"'path' has unknown placeholder {{{unknown}}}; allowed: {', '.join(sorted(_PLACEHOLDERS))}")
    if kind == "blob" and not ({"window"} <= names or {"yyyy", "MM", "dd", "HH", "mm"} <= names):
        p.fail(where, "'path' must contain {window} (or {yyyy} {MM} {dd} {HH} {mm}) so each window has its own name")
    rg = p.whole(where, raw, "row_group_rows", 25_000, 1_000, 1_000_000)
    if not isinstance(container, str):
        return None
    return SinkConfig(
        kind=kind,
        storage=storage,
        container=container,
        path=path.strip("/"),
        format=fmt if fmt in ("jsonl", "csv", "parquet") else "jsonl",
        compression=str(compression),
        row_group_rows=rg,
    )


def delta_sink(p: Fields, where: str, raw: dict[str, Any]) -> SinkConfig | None:
    """``{"kind": "delta", "container": …, "path": "{pipeline}", "partition_by": "date_hour",
    "optimize": true, "vacuum_retention": "P7D"}``: one Delta table per pipeline."""
    known = {"kind", "container", "path", "partition_by", "connection_setting", "compression", "row_group_rows"}
    p.reject_unknown(where, raw, known | {"optimize", "vacuum_retention"})
    storage = p.storage(where, str(raw.get("connection_setting", "AzureWebJobsStorage")))
    container = raw.get("container")
    if not isinstance(container, str) or not _CONTAINER.match(container):
        p.fail(
            where,
            f"'container' must be a valid blob container name (3-63 lowercase letters, digits, '-'); got {container!r}",
        )
    path = raw.get("path", "{pipeline}")
    if not isinstance(path, str) or not path.strip("/"):
        p.fail(where, '\'path\' must be the table\'s folder, e.g. "{pipeline}" or "lake/{pipeline}"')
        path = "{pipeline}"
    for unknown in sorted(set(re.findall(r"{([^{}]*)}", path)) - {"pipeline", "table"}):
        p.fail(where, f"'path' has unknown placeholder {{{unknown}}}; a table path allows {{pipeline}} and {{table}}")
    partition_by = raw.get("partition_by", "")
    if partition_by not in ("", "date", "date_hour"):
        p.fail(where, f"'partition_by' must be date or date_hour; got {partition_by!r}")
        partition_by = ""
    optimize = raw.get("optimize", True)
    if not isinstance(optimize, bool):
        p.fail(where, "'optimize' must be true or false")
        optimize = True
    retention = None
    if raw.get("vacuum_retention", "P7D") is not None:
        retention = p.duration_field(where, raw, "vacuum_retention", "P7D")
    compression = raw.get("compression", "snappy")
    if compression not in ("snappy", "zstd"):
        p.fail(where, f"'compression' for delta must be snappy or zstd; got {compression!r}")
        compression = "snappy"
    rg = p.whole(where, raw, "row_group_rows", 100_000, 1_000, 1_000_000)
    if not isinstance(container, str):
        return None
    return SinkConfig(
        kind="delta",
        storage=storage,
        container=container,
        path=path.strip("/"),
        format="parquet",
        compression=str(compression),
        row_group_rows=rg,
        partition_by=partition_by,
        optimize=optimize,
        vacuum_retention=retention,
    )
