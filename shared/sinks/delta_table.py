"""The Delta log side of the Delta sink: storage options, one window commit, schema checks.

Data files are written by ``shared.sinks.delta`` as plain Parquet under the table folder;
nothing in the folder is part of the table until a commit in ``_delta_log`` adds it. A
window's commit adds its files and removes every other file of that window (files are
named ``<window key>_…``), records the app transaction ``(insights-mover:<pipeline>:<window
key>, run stamp)`` and ``commitInfo`` with the window key, all in one atomic log entry.

Concurrency follows the Delta protocol: the log entry is written with put-if-absent; when
another writer won the version, delta-rs re-checks the conflict and retries; when it
reports a logical conflict (another commit removed files while this one removes files),
the commit is rebuilt from the new snapshot (this window's files are its own) and tried
again, with jittered backoff.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from shared.errors import ConfigError, FatalError, RetriableError
from shared.model import Window
from shared.settings import StorageConfig
from shared.sinks.delta_files import Segment, covers

if TYPE_CHECKING:  # deltalake is imported by the functions that use it (see ``load_table``)
    from deltalake import DeltaTable, Field

__all__ = [
    "APP_PREFIX", "EMULATOR_KEY", "PARTITIONS", "Commit", "Merged", "StagedFile", "commit_window", "file_stats",
    "load_table", "partition_columns", "partition_values", "storage_options",
]  # fmt: skip

log = logging.getLogger(__name__)

APP_PREFIX = "insights-mover"
EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
PARTITIONS: dict[str, tuple[pa.Field, ...]] = {
    "date": (pa.field("date", pa.date32()),),
    "date_hour": (pa.field("date", pa.date32()), pa.field("hour", pa.int32())),
}
_MAX_ATTEMPTS = 40
_env_lock = threading.Lock()


def _conn_parts(conn: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in conn.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            parts[key.strip().lower()] = value.strip()
    return parts


def _use_emulator_at(endpoint: str) -> None:
    """object_store takes Azurite's address only from ``AZURITE_BLOB_STORAGE_URL`` (process-wide)."""
    import os

    with _env_lock:
        if os.environ.get("AZURITE_BLOB_STORAGE_URL") != endpoint:
            os.environ["AZURITE_BLOB_STORAGE_URL"] = endpoint


def storage_options(config: StorageConfig) -> dict[str, str]:
    """delta-rs (object_store) options for the sink's storage account.

    A connection string gives account name + key (or SAS); one pointing at Azurite
    (``UseDevelopmentStorage=true`` or a path-style ``BlobEndpoint``) adds ``use_emulator``
    and passes the endpoint on through ``AZURITE_BLOB_STORAGE_URL``. Identity-based
    settings give the account name, ``client_id`` for a user-assigned managed identity and,
    on App Service / Functions, the identity endpoint the platform sets.
    """
    if config.conn_string:
        parts = _conn_parts(config.conn_string)
        if parts.get("usedevelopmentstorage", "").lower() == "true":
            _use_emulator_at("http://127.0.0.1:10000")
            return {"account_name": "devstoreaccount1", "account_key": EMULATOR_KEY, "use_emulator": "true"}
        account = parts.get("accountname", "")
        endpoint = parts.get("blobendpoint", "")
        options = {"account_name": account}
        if parts.get("accountkey"):
            options["account_key"] = parts["accountkey"]
        elif parts.get("sharedaccesssignature"):
            options["sas_token"] = parts["sharedaccesssignature"].lstrip("?")
        if endpoint:
            url = urlsplit(endpoint)
            if url.path.strip("/") == account:  # path-style: the emulator
                _use_emulator_at(f"{url.scheme}://{url.netloc}")
                return options | {"use_emulator": "true"}
            options["endpoint"] = endpoint.rstrip("/")
        if not account:
            raise ConfigError(f"{config.setting}: the connection string has no AccountName (needed by the delta sink)")
        return options
    if config.blob_uri:
        import os

        host = urlsplit(config.blob_uri).hostname or ""
        options = {"account_name": host.split(".", 1)[0]}
        if config.client_id:
            options["client_id"] = config.client_id
        if os.environ.get("IDENTITY_ENDPOINT"):  # App Service / Functions managed identity
            options["msi_endpoint"] = os.environ["IDENTITY_ENDPOINT"]
        return options
    raise ConfigError(
        f"{config.setting}: no blob endpoint (set a connection string or {config.setting}__blobServiceUri)"
    )


def partition_columns(partition_by: str, window: Window) -> tuple[pa.Field, ...]:
    """Partition fields: ``date_hour`` for windows under a day unless configured."""
    if not partition_by:
        partition_by = "date_hour" if window.size < timedelta(days=1) else "date"
    return PARTITIONS[partition_by]


def partition_values(fields: Sequence[pa.Field], window: Window) -> dict[str, str | None]:
    """The window's partition values as the log writes them (window start, UTC)."""
    start = window.start.astimezone(UTC)
    values = {"date": start.date().isoformat(), "hour": str(start.hour)}
    return {f.name: values[f.name] for f in fields}


@dataclass(frozen=True)
class StagedFile:
    """A Parquet file written under the table folder, not yet (or already) in the log."""

    path: str  # relative to the table root
    size: int
    rows: int
    schema: pa.Schema
    stats: str


def _ts_text(value: datetime, *, up: bool) -> str:
    """Millisecond stats (as Spark writes them): min rounded down, max up, so skipping stays safe."""
    value = value.astimezone(UTC)
    ms = value.microsecond // 1000
    if up and value.microsecond % 1000:
        value = value.replace(microsecond=ms * 1000) + timedelta(milliseconds=1)
    else:
        value = value.replace(microsecond=ms * 1000)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def file_stats(meta: pq.FileMetaData, schema: pa.Schema) -> str:
    """Delta ``stats`` JSON from a Parquet footer: rows, null counts, min/max of integer and
    timestamp columns (strings are left out: truncated string bounds would need care)."""
    nulls: dict[str, int] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for i in range(group.num_columns):
            col = group.column(i)
            name = col.path_in_schema
            stats = col.statistics
            if stats is None or name not in schema.names:
                continue
            if stats.has_null_count:
                nulls[name] = nulls.get(name, 0) + stats.null_count
            kind = schema.field(name).type
            if not stats.has_min_max or not (pa.types.is_integer(kind) or pa.types.is_timestamp(kind)):
                continue
            low, high = stats.min, stats.max
            lows[name] = low if name not in lows else min(lows[name], low)
            highs[name] = high if name not in highs else max(highs[name], high)
    for name in list(lows):
        if isinstance(lows[name], datetime):
            lows[name] = _ts_text(lows[name], up=False)
            highs[name] = _ts_text(highs[name], up=True)
    return json.dumps({"numRecords": meta.num_rows, "minValues": lows, "maxValues": highs, "nullCount": nulls})


def load_table(uri: str, options: Mapping[str, str]) -> DeltaTable | None:
    """The table's latest snapshot, ``None`` if there is no table yet. deltalake is imported here,
    not with this module: its ~18 MB are paid by a window into a new table only at its commit."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    try:
        return DeltaTable(uri, storage_options=dict(options))
    except TableNotFoundError:
        return None
    except (DeltaError, OSError) as exc:
        if "ContainerNotFound" in str(exc):  # no container yet: no table yet
            return None
        raise RetriableError(f"loading Delta table {uri}: {exc}") from exc


def _arrow_schema(dt: DeltaTable) -> pa.Schema:
    return pa.schema(dt.schema().to_arrow())


def _type_change(name: str, table_type: pa.DataType, file_type: pa.DataType, window: Window) -> FatalError:
    return FatalError(
        f"Delta table column {name!r} is {table_type} but window {window} has it as {file_type}; "
        "a type change is not cast silently: map the column to its old type (pipeline 'columns'), "
        "or point the sink at a new table path"
    )


def new_fields(table: pa.Schema, files: Sequence[StagedFile], window: Window) -> list[pa.Field]:
    """Columns the files add to ``table``; raises ``FatalError`` for a changed type."""
    added: dict[str, pa.Field] = {}
    for staged in files:
        for fld in staged.schema:
            if fld.name in table.names:
                if table.field(fld.name).type != fld.type:
                    raise _type_change(fld.name, table.field(fld.name).type, fld.type, window)
            elif fld.name in added:
                if added[fld.name].type != fld.type:
                    raise _type_change(fld.name, added[fld.name].type, fld.type, window)
            else:
                added[fld.name] = fld
    return list(added.values())


def _create(uri: str, options: Mapping[str, str], schema: pa.Schema, parts: Sequence[pa.Field]) -> None:
    """Create the table (version 0, no files); losing the race to another creator is fine."""
    from deltalake import DeltaTable, Schema
    from deltalake.exceptions import CommitFailedError, DeltaError

    full = pa.schema([*schema, *parts])
    try:
        DeltaTable.create(
            uri,
            Schema.from_arrow(full),
            mode="ignore",
            partition_by=[f.name for f in parts],
            storage_options=dict(options),
        )
    except (DeltaError, CommitFailedError) as exc:
        log.info("creating %s: %s (another writer created it?)", uri, exc)


def _fields_of(schema: pa.Schema) -> list[Field]:
    from deltalake import Schema

    return list(Schema.from_arrow(schema).fields)


@dataclass(frozen=True)
class Commit:
    """What a window commit did: the table version it produced (or found) and its actions."""

    version: int | None
    added: int
    removed: int
    rows: int  # the window's rows in the table after the commit
    already: bool = False


class Merged(Protocol):
    """File-level help the commit needs for compacted files (the sink's blob I/O)."""

    def segments(self, rel: str, size: int) -> list[Segment]: ...

    def rewrite(self, rel: str, size: int, drop: set[str], columns: pa.Schema) -> StagedFile | None: ...


def commit_window(
    uri: str,
    options: Mapping[str, str],
    *,
    window: Window,
    parts: Sequence[pa.Field],
    files: Sequence[StagedFile],
    gone: set[str],
    merged: Merged,
    app_id: str,
    stamp: int,
    metadata: Mapping[str, Any],
) -> Commit:
    """One atomic commit that makes ``files`` (and ``gone``) exactly the window's rows in the table.

    Adds the files not yet in the log, removes the window's other files, takes the window's
    other rows out of compacted files (rewriting them), sets the app transaction ``app_id`` to
    ``stamp``. ``gone`` are earlier files of the window no longer stored: they must live on
    in a compacted file, else ``FatalError``. A newer stamp already recorded means a later run
    of this window committed: ``RetriableError`` (this run lost its lease), nothing written.
    """
    from deltalake.exceptions import CommitFailedError, DeltaError
    from deltalake.transaction import AddAction, CommitProperties, RemoveAction, Transaction

    part_values = partition_values(parts, window)
    folder = "/".join(f"{k}={v}" for k, v in part_values.items())
    prefix = f"{window.key}_"
    for attempt in range(_MAX_ATTEMPTS):
        dt = load_table(uri, options)
        if dt is None:
            if not files:
                return Commit(None, 0, 0, 0)
            _create(uri, options, pa.schema(new_fields(pa.schema([]), files, window)), parts)
            continue
        columns = list(dt.metadata().partition_columns)
        if columns != [f.name for f in parts]:
            raise ConfigError(
                f"Delta table {uri} is partitioned by {columns}, the sink by {[f.name for f in parts]}; "
                "set 'partition_by' to match or use a new path"
            )
        seen = dt.transaction_version(app_id)
        if seen is not None and seen > stamp:
            raise RetriableError(f"{uri}: a later run of window {window} committed it already (lease lost?)")
        table_schema = _arrow_schema(dt)
        added = new_fields(table_schema, files, window)
        if added:
            try:
                dt.alter.add_columns(_fields_of(pa.schema(added)))
                log.info("%s: added column(s) %s", uri, ", ".join(f.name for f in added))
            except (DeltaError, CommitFailedError) as exc:
                log.info("%s: adding columns raced (%s); retrying", uri, exc)
            continue
        snapshot = _files(dt)
        current = {p: n for p, n in snapshot.items() if p.rsplit("/", 1)[-1].startswith(prefix)}
        wanted = {f.path for f in files} | gone
        in_merged: set[str] = set()
        merged_rows = 0
        swaps: list[tuple[str, int, StagedFile | None]] = []
        data_columns = pa.schema([f for f in table_schema if f.name not in columns])
        for path, size in snapshot.items():
            if not (path.startswith(f"{folder}/") and covers(path, window.key)):
                continue
            mine = [s for s in merged.segments(path, size) if s.key == window.key]
            in_merged |= {s.file for s in mine if s.file in wanted}
            merged_rows += sum(s.rows for s in mine if s.file in wanted)
            drop = {s.file for s in mine if s.file not in wanted}
            if drop:
                swaps.append((path, size, merged.rewrite(path, size, drop, data_columns)))
        missing = gone - in_merged - set(current)
        if missing:
            raise FatalError(f"{uri}: file(s) {', '.join(sorted(missing))} of window {window} are gone; replay it")
        adds = [f for f in files if f.path not in current and f.path not in in_merged]
        removes = [path for path in current if path not in wanted]
        rows = sum(f.rows for f in files if f.path not in in_merged) + merged_rows
        if seen == stamp and not adds and not removes and not swaps:
            return Commit(dt.version(), 0, 0, rows, already=True)  # a duplicate delivery of a landed commit
        now = int(time.time() * 1000)
        actions: list[AddAction | RemoveAction] = [
            AddAction(f.path, f.size, part_values, now, True, f.stats) for f in adds
        ]
        actions += [RemoveAction(path, True, now, current[path], dict(part_values)) for path in removes]
        for path, size, replacement in swaps:
            actions.append(RemoveAction(path, True, now, size, dict(part_values)))
            if replacement is not None:
                actions.append(AddAction(replacement.path, replacement.size, part_values, now, True, replacement.stats))
        try:
            dt.create_write_transaction(
                actions,
                "append",
                table_schema,
                partition_by=columns,
                commit_properties=CommitProperties(
                    custom_metadata={**metadata, "mover.rows": rows}, app_transactions=[Transaction(app_id, stamp)]
                ),
            )
        except CommitFailedError as exc:
            delay = min(2.0, 0.05 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.0)
            log.info("%s window %s: commit conflict (%s); retrying in %.2fs", uri, window.key, exc, delay)
            time.sleep(delay)
            continue
        except (DeltaError, OSError) as exc:
            raise RetriableError(f"committing window {window} to {uri}: {exc}") from exc
        return Commit(_landed_version(dt, app_id, stamp), len(adds) + len(swaps), len(removes) + len(swaps), rows)
    raise RetriableError(f"committing window {window} to {uri}: still conflicting after {_MAX_ATTEMPTS} attempts")


def _files(dt: DeltaTable) -> dict[str, int]:
    """Every file of the snapshot: path → size."""
    actions = pa.table(dt.get_add_actions(flatten=True)).select(["path", "size_bytes"])
    return {str(r["path"]): int(r["size_bytes"]) for r in actions.to_pylist()}


def _landed_version(dt: DeltaTable, app_id: str, stamp: int) -> int | None:
    """The version this commit produced: found by its ``commitInfo`` among the newest entries
    (a few log reads; more only when other writers committed right after it)."""
    dt.update_incremental()  # history's version numbers count from the loaded snapshot
    for limit in (5, 50):
        for entry in dt.history(limit):
            if entry.get("mover.stamp") == stamp and entry.get("mover.app") == app_id:
                return int(entry["version"])
    return None
