"""Backfill estimate of an exported-blob source: blobs and bytes per hour folder, by listing only.

Hour folders are listed one *day* at a time when the folder template puts the hour last
(both default templates do), so a year is ~365 listings, not 8,760. Rows and output size
come from one sampled hour: up to ``SAMPLE_BYTES`` of its blobs are downloaded in memory,
split into lines and mapped like the source does, then encoded like each sink — nothing
is written (no quarantine, no state, no ledger).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared import mapping
from shared.errors import DataError
from shared.model import Batch, Window, format_ts
from shared.ops.estimate_result import Estimate, outputs_for
from shared.ops.estimate_sample import Sample, encode_sample
from shared.runtime.blob_errors import translate
from shared.runtime.storage import blob_service
from shared.settings import ExportSourceConfig, Pipeline
from shared.sources.export_blobs import classic_table, folder_for
from shared.windows import windows_between

__all__ = ["SAMPLE_BYTES", "day_prefix", "estimate_blobs"]

SAMPLE_BYTES = 16 * 2**20
_H = timedelta(hours=1)
_MAPPERS: dict[str, Callable[[dict[str, Any]], tuple[str, list[Any]]]] = {
    "continuous_export": mapping.map_export_record,
    "diagnostic_settings": mapping.map_diagnostic_record,
}


def day_prefix(template: str, prefix: str, day: datetime) -> str | None:
    """The listing prefix shared by every hour folder of ``day`` (pure), or None when the
    template does not put ``{HH}`` after the date parts (then each hour is listed alone)."""
    cut = template.find("{HH}")
    if any(template.find(p) > cut for p in ("{yyyy}", "{MM}", "{dd}", "{prefix}")):
        return None
    return folder_for(template[:cut] + "\x00", prefix, day).split("\x00")[0]


def _list(container: ContainerClient, name_prefix: str) -> list[tuple[str, int]]:
    try:
        return [
            (b.name, int(b.size))
            for b in container.list_blobs(name_starts_with=name_prefix)
            if b.size and not b.name.endswith("/")
        ]
    except ResourceNotFoundError:
        return []
    except AzureError as exc:
        raise translate(exc, f"list {container.container_name}/{name_prefix}") from exc


def estimate_blobs(pipeline: Pipeline, rng: Window, *, deadline: float | None = None) -> Estimate:
    config = pipeline.source
    assert isinstance(config, ExportSourceConfig)
    container = blob_service(config.storage).get_container_client(config.container)
    hours: dict[datetime, list[tuple[str, int]]] = {}
    listings = 0
    covered = rng.start
    complete = True
    day = rng.start.replace(hour=0)
    while day < rng.end:
        if deadline is not None and time.monotonic() >= deadline:
            complete = False
            break
        wanted = [h for h in windows_between(day, day + timedelta(days=1), _H) if rng.start <= h.start < rng.end]
        folders = {folder_for(config.folder_template, config.prefix, h.start): h.start for h in wanted}
        shared = day_prefix(config.folder_template, config.prefix, day)
        if shared is not None:
            listed = _list(container, shared)
            listings += 1
        else:
            listed = [b for f in folders for b in _list(container, f)]
            listings += len(folders)
        for h in wanted:
            hours[h.start] = []
        for name, size in listed:
            for folder, start in folders.items():
                if name.startswith(folder):
                    hours[start].append((name, size))
                    break
        covered = min(rng.end, day + timedelta(days=1))
        day += timedelta(days=1)
    result = Estimate(pipeline.name, config.kind, rng.start, rng.end, _H, covered, complete)
    result.estimate_queries = listings
    result.windows = len(hours)
    total_bytes = sum(size for blobs in hours.values() for _, size in blobs)
    result.source_bytes = float(total_bytes)
    result.source_bytes_basis = "listed blob sizes (bytes of exported JSON lines)"
    busiest = max(hours, key=lambda h: sum(s for _, s in hours[h]), default=None)
    sample = _sample(pipeline, config, container, busiest, hours.get(busiest, []) if busiest else [])
    rows_per_byte = sample.rows / sample.json_bytes if sample and sample.json_bytes else 0.0
    result.rows = round(total_bytes * rows_per_byte)
    if sample is not None:
        result.sample = sample.as_dict() | {"basis": "rows per listed byte, measured on the sampled hour's blobs"}
    files = sum(1 for blobs in hours.values() if blobs)  # hours with input: one output file (per sink) each
    result.outputs = outputs_for(pipeline, sample, result.rows, result.source_bytes, files)
    result.budget = {"download_concurrency": config.download_concurrency, "list_page_size": config.list_page_size}
    result.notes.append("rows are estimated from the sampled hour's rows per byte; blobs and bytes are listed")
    if not complete:
        result.notes.append(f"stopped by the time limit: listed up to {format_ts(covered)}; totals cover that part")
    per_day: dict[str, list[int]] = {}
    for start, blobs in sorted(hours.items()):
        acc = per_day.setdefault(start.date().isoformat(), [0, 0, 0])
        acc[0] += 1
        acc[1] += len(blobs)
        acc[2] += sum(s for _, s in blobs)
    result.days = [
        {"day": d, "windows": a[0], "blobs": a[1], "source_bytes": a[2], "rows": round(a[2] * rows_per_byte)}
        for d, a in per_day.items()
    ]
    return result


def _sample(
    pipeline: Pipeline,
    config: ExportSourceConfig,
    container: ContainerClient,
    hour: datetime | None,
    blobs: list[tuple[str, int]],
) -> Sample | None:
    """Read up to ``SAMPLE_BYTES`` of the hour's blobs (whole blobs), map the lines, size every sink."""
    if hour is None or not blobs:
        return None
    began = time.monotonic()
    table = classic_table(config.table)
    mapper = _MAPPERS[config.kind]
    rows: list[list[Any]] = []
    read = 0
    for name, size in blobs:
        if read and read + size > SAMPLE_BYTES:
            break
        try:
            data = container.download_blob(name).readall()
        except ResourceNotFoundError:
            continue
        except AzureError as exc:
            raise translate(exc, f"read {config.container}/{name}") from exc
        read += len(data)
        for raw in data.splitlines():
            if not raw.strip():
                continue
            try:
                got, row = mapper(orjson.loads(raw))
            except (orjson.JSONDecodeError, DataError):
                continue
            if got == table:
                rows.append(row)
    batch = Batch(table, mapping.schema(table), rows)
    return Sample(Window(hour, hour + _H), len(rows), read, time.monotonic() - began, encode_sample(pipeline, [batch]))
