"""Table Storage sink: one entity per row, upserted by a deterministic key, fenced per run.

PartitionKey = ``<pipeline>_<window key>`` (one partition per window, so a window is
one range scan and reruns touch only it); RowKey = the row's item id (``itemId``,
``_ItemId`` or ``id``) or, without one, a stable hash of the row. Upserts
(replace) by key make reruns idempotent. Entity building (limits, escaping) is in
``table_entities``, the writer (lanes, fencing) in ``table_writer``.

Speed: rows go out in transactions of up to 99 entities on ``LANES`` (8) lanes in parallel
(the store takes several transactions of one partition at once). A row's lane is a hash
of its key, so two versions of one item always go through the same lane, in order.

Fencing: a table cannot swap a window in atomically, and a stalled runner that wakes up
after another took the window over must not write into it. Each writer owns one marker
entity per lane in the window's partition (RowKey ``~mover~<run>~<lane>``). Every
transaction of a lane also updates its marker under the marker's ETag, so the whole
transaction fails if the marker changed or is gone. Opening a writer deletes every other
run's markers first: from then on, an older run's transactions are refused by the service
(``RetriableError``) — no row of it can land. ``commit`` deletes the part's entities of
earlier runs (whatever an older run wrote before it was fenced, and rows a rerun no
longer has; fenced the same way), then its own markers, so after a commit the partition
holds exactly the latest run's rows (each tagged ``_mover_run``, recorded per part as
``run`` in the manifest). ``abort`` cannot take back transactions already sent; they
carry this run's rows, and the next run's commit removes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import EdmType, TableClient, TableServiceClient, UpdateMode

from shared.model import OutputFile, Window
from shared.settings import SinkConfig
from shared.sinks._azure import ensure_once, translate
from shared.sinks.formats import dumps_json
from shared.sinks.manifest import RecentOutputs, build_manifest
from shared.sinks.table_entities import (
    MAX_PROPERTIES,
    MAX_STRING,
    PART,
    TRUNCATED,
    cut,
    entity_size,
    escape_key,
    property_names,
    row_entity,
    unescape_key,
    utf16_len,
)
from shared.sinks.table_writer import LANES, MARKER_PREFIX, TableWriter, delete_all

__all__ = [
    "LANES",
    "MARKER_PREFIX",
    "MAX_PROPERTIES",
    "MAX_STRING",
    "TRUNCATED",
    "TableSink",
    "TableWriter",
    "entity_size",
    "escape_key",
    "property_names",
    "row_entity",
    "unescape_key",
]

log = logging.getLogger(__name__)


class TableSink:
    """``Sink`` for ``kind: "table"``; ``SinkConfig.container`` is the table name."""

    def __init__(
        self,
        config: SinkConfig,
        *,
        pipeline: str,
        table: str,
        service: TableServiceClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if config.kind != "table":
            raise ValueError(f"TableSink needs a table sink config, got {config.kind!r}")
        if service is None:
            from shared.runtime.storage import table_service

            service = table_service(config.storage)
        self.config = config
        self.pipeline = pipeline
        self.table = table
        self.table_name = config.container
        self.client: TableClient = service.get_table_client(config.container)
        self.recent = RecentOutputs()
        self._clock = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:
        return f"TableSink({self.table_name!r}, pipeline={self.pipeline!r})"

    def partition_key(self, window: Window) -> str:
        return escape_key(f"{self.pipeline}_{window.key}")

    def manifest_key(self) -> str:
        """Partition of the manifests: sorts after every window partition of the pipeline."""
        return escape_key(f"{self.pipeline}_manifest")

    def _ensure_table(self) -> None:
        ensure_once((self.client.url, self.table_name), self.client.create_table, f"creating table {self.table_name}")

    def open(self, window: Window, *, part: str = "") -> TableWriter:
        self._ensure_table()
        return TableWriter(self, window, part)

    def output_name(self, window: Window, part: str = "") -> str:
        return f"table:{self.table_name}/{self.partition_key(window)}" + (f"/{part}" if part else "")

    def remove(self, name: str) -> None:
        """Delete an earlier output: ``table:<table>/<PK>[/<part>]`` removes that part's
        entities, ``table:<table>/<pipeline>_manifest/<window>`` the manifest entity."""
        prefix = f"table:{self.table_name}/"
        if not name.startswith(prefix):
            raise ValueError(f"{name!r} is not an output of table {self.table_name}")
        pk, _, rest = name[len(prefix) :].partition("/")
        try:
            if pk == self.manifest_key():
                self.client.delete_entity(pk, rest)
                return
            keys = self.client.query_entities(
                f"PartitionKey eq @pk and {PART} eq @part",
                parameters={"pk": pk, "part": rest or "main"},
                select=["PartitionKey", "RowKey"],
            )
            delete_all(self.client, keys)
        except AzureError as exc:
            raise translate(exc, f"removing {name}") from exc

    def _read_manifest(self, window: Window) -> dict[str, Any] | None:
        try:
            entity = self.client.get_entity(self.manifest_key(), window.key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, f"reading the manifest of {window}") from exc
        try:
            return {
                "format": "table",
                "compression": "none",
                "files": orjson.loads(entity.get("files", "[]")),
                "schema": orjson.loads(entity.get("schema", "[]")),
            }
        except orjson.JSONDecodeError:
            return None

    def write_manifest(self, window: Window, outputs: list[OutputFile], info: dict[str, Any]) -> OutputFile:
        """Upsert the window's manifest entity: PartitionKey ``<pipeline>_manifest``, RowKey
        the window key; lists, schema and info are JSON strings (cut at 32K characters)."""
        self._ensure_table()
        written_at = self._clock().astimezone(UTC)
        outputs = self.recent.complete(outputs, lambda: self._read_manifest(window))
        doc = build_manifest(
            pipeline=self.pipeline,
            table=self.table,
            window=window,
            location=f"table:{self.table_name}",
            fmt="table",
            compression="none",
            outputs=outputs,
            info=info,
            written_at=written_at,
        )

        def text(value: Any) -> str:
            out = dumps_json(value).decode("utf-8")
            return cut(out, MAX_STRING) if utf16_len(out) > MAX_STRING else out

        entity: dict[str, Any] = {
            "PartitionKey": self.manifest_key(),
            "RowKey": window.key,
            "manifest_version": doc["manifest_version"],
            "pipeline": self.pipeline,
            "table": self.table,
            "window_start": window.start.astimezone(UTC),
            "window_end": window.end.astimezone(UTC),
            "partition": self.partition_key(window),
            "rows": (doc["rows"], EdmType.INT64),
            "bytes": (doc["bytes"], EdmType.INT64),
            "files": text(doc["files"]),
            "schema": text(doc["schema"]),
            "info": text(doc["info"]),
            "written_at": written_at,
        }
        try:
            self.client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise translate(exc, f"writing the manifest of {window} to {self.table_name}") from exc
        return OutputFile(
            name=f"table:{self.table_name}/{entity['PartitionKey']}/{window.key}",
            rows=doc["rows"],
            bytes=entity_size(entity),
            extra={"kind": "manifest"},
        )
