"""Table Storage sink: one entity per row, upserted by a deterministic key.

PartitionKey = ``<pipeline>_<window key>`` (one partition per window, so a window is
one range scan and reruns touch only it); RowKey = the row's item id (``itemId``,
``_ItemId`` or ``id``) or, without one, a stable hash of the row. Upserts
(replace) by key make reruns idempotent.

Unlike blobs, a table cannot swap a window in atomically: entities become
visible transaction by transaction. Each entity is tagged with the writer's run
id and part, and ``commit`` deletes the part's entities of earlier runs that this
run did not write, so after a commit the partition matches the latest run (and
a zero-row window leaves nothing behind). ``abort`` cannot take back upserts that
already happened; they carry the same rows, and the next run settles the rest.

Service limits are enforced before sending, never by failing a window: keys are
escaped; strings over 32K characters and entities over 1 MiB are truncated with a
visible marker and a ``<property>__truncated`` flag; columns beyond the 252
property limit go, as JSON, into ``_overflow``; transactions hold ≤ 100 entities
and stay under 4 MiB (a 413 splits the transaction).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import EdmType, RequestTooLargeError, TableClient, TableServiceClient, UpdateMode

from shared.errors import DataError
from shared.model import Batch, Column, OutputFile, Window, format_ts
from shared.settings import SinkConfig
from shared.sinks._azure import ensure_once, translate
from shared.sinks.formats import dumps_json
from shared.sinks.manifest import RecentOutputs, build_manifest, output_extra

__all__ = [
    "ID_COLUMNS",
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

ID_COLUMNS = ("itemId", "_ItemId", "id")
MAX_PROPERTIES = 252  # custom properties; PartitionKey, RowKey, Timestamp are the other 3
MAX_STRING = 32_000  # UTF-16 code units; the limit is 32K characters (64 KiB)
MAX_ENTITY = 1_000_000  # by the service's size formula; the limit is 1 MiB
MAX_KEY = 512  # characters; the limit is 1 KiB, longer ids are hashed
MAX_BATCH = 100
MAX_BATCH_BYTES = 3_500_000  # estimated request payload; the limit is 4 MiB
TRUNCATED = "…[truncated]"
RUN = "_mover_run"
PART = "_mover_part"
OVERFLOW = "_overflow"
_FLAG = "__truncated"
_RESERVED = frozenset({"PartitionKey", "RowKey", "Timestamp", "ETag", RUN, PART, OVERFLOW, OVERFLOW + _FLAG})
# 4 slots are ours: run, part, _overflow and its flag.
_DATA_SLOTS = MAX_PROPERTIES - 4
_KEY_BAD = re.compile(r"[%/\\#?\x00-\x1f\x7f-\x9f]")
_PROP_BAD = re.compile(r"[^A-Za-z0-9_]")
_ISO_Z = re.compile(r"^(\d{4})-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def escape_key(value: str) -> str:
    """A PartitionKey/RowKey without ``/ \\ # ?`` or control characters (they are not
    allowed): those and ``%`` become ``%XX``, so ``unescape_key`` gets the original back."""
    if not _KEY_BAD.search(value):
        return value
    return _KEY_BAD.sub(lambda m: f"%{ord(m.group()):02X}", value)


def unescape_key(value: str) -> str:
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def property_names(names: Sequence[str]) -> list[str]:
    """Valid, unique property names for columns (letters, digits, ``_``; ≤ 240 chars so a
    ``__truncated`` flag still fits 255); reserved names get a ``_`` suffix."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        prop = _PROP_BAD.sub("_", name)[:240] or "_"
        if prop[0].isdigit():
            prop = "_" + prop[:239]
        if prop in _RESERVED:
            prop += "_"
        base, n = prop, 2
        while prop in seen:
            prop, n = f"{base[:234]}_{n}", n + 1
        seen.add(prop)
        out.append(prop)
    return out


def _utf16_len(text: str) -> int:
    """Length as the service counts it (UTF-16 code units)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _cut(text: str, units: int) -> str:
    """``text`` cut to at most ``units`` UTF-16 code units including the marker."""
    keep = max(units - len(TRUNCATED), 0)
    head = text[:keep]
    while _utf16_len(head) > keep:  # astral characters take two units
        head = head[: len(head) - max((_utf16_len(head) - keep) // 2, 1)]
    return head + TRUNCATED


def _value(value: Any, kql_type: str) -> Any:
    """Table property value for a canonical value; never raises (odd values become strings)."""
    if kql_type == "datetime":
        if isinstance(value, str):
            match = _ISO_Z.match(value)
            # Edm.DateTime starts at 1601; the string passes through with its 100 ns digits.
            if match and int(match.group(1)) >= 1601:
                return (value, EdmType.DATETIME)
            return value
        if isinstance(value, datetime) and value.tzinfo is not None and value.year >= 1601:
            return value.astimezone(UTC)
    elif kql_type in ("long", "int"):
        if type(value) is int:
            if kql_type == "int" and _INT32[0] <= value <= _INT32[1]:
                return value
            if _INT64[0] <= value <= _INT64[1]:
                return (value, EdmType.INT64)
            return str(value)
    elif kql_type in ("real", "decimal"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kql_type == "bool":
        if isinstance(value, bool):
            return value
    elif kql_type == "dynamic":
        return dumps_json(value).decode("utf-8")
    elif kql_type in ("string", "guid", "timespan") and isinstance(value, str):
        return value
    return _generic(value)


def _generic(value: Any) -> Any:
    if isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        if _INT32[0] <= value <= _INT32[1]:
            return value
        return (value, EdmType.INT64) if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return format_ts(value)
    return dumps_json(value).decode("utf-8")


def _json_len(text: str) -> int:
    """Bytes of ``text`` as a JSON string as the SDK sends it (``json.dumps``: non-ASCII escaped)."""
    if text.isascii() and text.isprintable():
        return len(text) + 2 + text.count('"') + text.count("\\")
    return len(json.dumps(text))


def _costs(name: str, value: Any) -> tuple[int, int]:
    """(service formula, JSON body) bytes of one property.

    The documented limit counts UTF-16 (4 + 2 per code unit for strings); Azurite, and
    the 4 MiB batch limit, count the JSON body, where a non-ASCII character takes
    six bytes. An entity must be under 1 MiB by both.
    """
    raw = value[0] if isinstance(value, tuple) else value
    if isinstance(raw, str):
        formula = 4 + 2 * _utf16_len(raw)
    elif isinstance(raw, bool):
        formula = 1
    elif isinstance(raw, int) and not isinstance(value, tuple):
        formula = 4
    else:
        formula = 8  # double, Int64, DateTime
    if isinstance(value, tuple):  # "name@odata.type":"Edm.Int64","name":"123"
        body = 2 * len(name) + 36 + len(str(raw))
    elif isinstance(raw, str):
        body = len(name) + 4 + _json_len(raw)
    else:
        body = len(name) + 28
    return 8 + 2 * len(name) + formula, body


def entity_size(entity: dict[str, Any]) -> int:
    """Size by the stricter of the two measures (see ``_costs``), keys included."""
    formula, body = 4, 2
    for name, value in entity.items():
        f, b = _costs(name, value)
        formula, body = formula + f, body + b
    return max(formula, body)


def _payload_size(entity: dict[str, Any]) -> int:
    """Estimated bytes of the entity in a transaction request (multipart headers included)."""
    return 600 + sum(_costs(name, value)[1] for name, value in entity.items())


@dataclass(frozen=True)
class _Layout:
    """Per column list: property names, types and where the item id is."""

    columns: tuple[Column, ...]
    props: tuple[str, ...]
    types: tuple[str, ...]
    id_index: tuple[int, ...]


def _layout(columns: tuple[Column, ...]) -> _Layout:
    names = [c.name for c in columns]
    ids = tuple(names.index(n) for n in ID_COLUMNS if n in names)
    return _Layout(columns, tuple(property_names(names)), tuple(c.type for c in columns), ids)


def _row_key(layout: _Layout, row: Sequence[Any]) -> str:
    for index in layout.id_index:
        value = row[index]
        if value is not None and value != "":
            key = escape_key(str(value))
            if len(key) <= MAX_KEY:
                return key
            return "h_" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    # No id: a hash of the whole row (keys sorted) is stable across reruns.
    names = [c.name for c in layout.columns]
    doc = orjson.dumps(
        dict(zip(names, row, strict=True)), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str
    )
    return "h_" + hashlib.sha256(doc).hexdigest()[:32]


def row_entity(layout: _Layout, row: Sequence[Any], *, partition_key: str, run: str, part: str) -> dict[str, Any]:
    """The entity for one row, within every service limit (see the module doc)."""
    if len(row) != len(layout.columns):
        raise DataError(f"row has {len(row)} values for {len(layout.columns)} columns")
    entity: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": _row_key(layout, row)}
    props: list[tuple[str, int, Any]] = []  # (name, column index, value)
    truncated: set[str] = set()
    for index, (prop, kql_type, value) in enumerate(zip(layout.props, layout.types, row, strict=True)):
        if value is None:
            continue  # an absent property is null in Table Storage
        converted = _value(value, kql_type)
        if isinstance(converted, str) and len(converted) > MAX_STRING // 2 and _utf16_len(converted) > MAX_STRING:
            converted = _cut(converted, MAX_STRING)
            truncated.add(prop)
        props.append((prop, index, converted))
    _fit_entity(props, truncated, partition_key, entity["RowKey"])
    used = 0
    overflow: dict[str, Any] = {}
    for prop, index, converted in props:
        need = 1 + (prop in truncated)
        if overflow or used + need > _DATA_SLOTS:
            # Past the property limit: keep the column, as JSON, in _overflow.
            overflow[layout.columns[index].name] = row[index] if prop not in truncated else converted
            continue
        used += need
        entity[prop] = converted
        if prop in truncated:
            entity[prop + _FLAG] = True
    if overflow:
        text = dumps_json(overflow).decode("utf-8")
        if _utf16_len(text) > MAX_STRING:
            text = _cut(text, MAX_STRING)
            entity[OVERFLOW + _FLAG] = True
        entity[OVERFLOW] = text
    entity[RUN] = run
    entity[PART] = part or "main"
    while entity_size(entity) > MAX_ENTITY and OVERFLOW in entity and entity[OVERFLOW] != TRUNCATED:
        # JSON quoting made _overflow bigger than the values it holds: shorten it.
        text = entity[OVERFLOW]
        entity[OVERFLOW] = _cut(text, _utf16_len(text) // 2)
        entity[OVERFLOW + _FLAG] = True
    return entity


def _fit_entity(props: list[tuple[str, int, Any]], truncated: set[str], pk: str, rk: str) -> None:
    """Shorten the largest strings until the entity fits ``MAX_ENTITY`` by both measures (in place)."""
    costs = [_costs(p, v) for p, _, v in props]
    # keys, run/part tags and possible __truncated flags
    overhead = 4 * (len(pk) + len(rk)) + 60 * (len(props) + 4) + 400
    formula = overhead + sum(c[0] for c in costs)
    body = overhead + sum(c[1] for c in costs)
    if max(formula, body) <= MAX_ENTITY:
        return
    order = sorted((i for i, (_, _, v) in enumerate(props) if isinstance(v, str)), key=lambda i: -max(costs[i]))
    for floor in (1024, 0):
        for i in order:
            if max(formula, body) <= MAX_ENTITY:
                return
            prop, index, text = props[i]
            units = _utf16_len(text)
            if units <= floor:
                continue
            # Cut enough code units to remove the excess of both measures.
            per_unit_body = max(costs[i][1] / units, 1.0)
            cut = max((formula - MAX_ENTITY + 1) // 2, int((body - MAX_ENTITY) / per_unit_body) + 1, 1)
            props[i] = (prop, index, _cut(text, max(units - cut, floor)))
            truncated.add(prop)
            new = _costs(prop, props[i][2])
            formula += new[0] - costs[i][0]
            body += new[1] - costs[i][1]
            costs[i] = new


def _delete_all(client: TableClient, entities: Iterable[Mapping[str, Any]]) -> int:
    """Delete entities (of one partition) in transactions of 100; returns how many."""
    deleted = 0
    chunk: list[tuple[str, dict[str, Any]]] = []
    for entity in entities:
        chunk.append(("delete", {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"]}))
        if len(chunk) == MAX_BATCH:
            client.submit_transaction(chunk)
            deleted, chunk = deleted + len(chunk), []
    if chunk:
        client.submit_transaction(chunk)
        deleted += len(chunk)
    return deleted


class TableWriter:
    """Upserts one (window, part) into its partition; see the module doc. One thread per writer."""

    def __init__(self, sink: TableSink, window: Window, part: str) -> None:
        self._sink = sink
        self.window = window
        self.part = part
        self.partition_key = sink.partition_key(window)
        self.run = uuid.uuid4().hex
        self.rows = 0
        self.bytes = 0
        self._known: dict[str, Column] = {}
        self._layouts: dict[tuple[Column, ...], _Layout] = {}
        self._pending: dict[str, dict[str, Any]] = {}
        self._pending_bytes = 0
        self._state = "open"

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._state == "open":
            self.abort()

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"table writer for {self.partition_key} is {self._state}")

    def write(self, batch: Batch) -> None:
        """Upsert ``batch`` (in transactions of ≤ 100); raises ``RetriableError``/``FatalError``,
        or ``DataError`` (before sending anything of the batch) for a malformed row."""
        self._check_open()
        if not batch.rows:
            return
        layout = self._layouts.get(batch.columns)
        if layout is None:
            layout = self._layouts[batch.columns] = _layout(batch.columns)
        entities = [
            row_entity(layout, row, partition_key=self.partition_key, run=self.run, part=self.part)
            for row in batch.rows
        ]
        for col in batch.columns:
            self._known.setdefault(col.name, col)
        try:
            self._add(entities)
        except BaseException:
            self.abort()
            raise
        self.rows += len(batch.rows)

    def _add(self, entities: list[dict[str, Any]]) -> None:
        for entity in entities:
            key = entity["RowKey"]
            size = _payload_size(entity)
            if key in self._pending:
                # The same item twice: one transaction may not touch a key twice; last wins.
                self._pending_bytes -= _payload_size(self._pending.pop(key))
            elif len(self._pending) >= MAX_BATCH or self._pending_bytes + size > MAX_BATCH_BYTES:
                self._flush()
            self._pending[key] = entity
            self._pending_bytes += size
            self.bytes += entity_size(entity)

    def _flush(self) -> None:
        if self._pending:
            entities = list(self._pending.values())
            self._pending, self._pending_bytes = {}, 0
            self._submit([("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities])

    def _submit(self, operations: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        try:
            self._sink.client.submit_transaction(operations)
        except RequestTooLargeError as exc:
            if len(operations) == 1:
                raise translate(exc, f"upserting into {self.partition_key}") from exc
            half = len(operations) // 2
            self._submit(operations[:half])
            self._submit(operations[half:])
        except AzureError as exc:
            raise translate(exc, f"upserting into {self._sink.table_name}/{self.partition_key}") from exc

    def commit(self) -> list[OutputFile]:
        """Send what is pending, delete this part's entities left by earlier runs, and
        describe the partition (``[]`` for zero rows)."""
        self._check_open()
        try:
            self._flush()
            deleted = self._delete_stale()
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        outputs = self._outputs()
        self._sink.recent.remember(outputs)
        log.debug(
            "window %s part %r: %d rows -> table %s/%s (%d stale deleted)",
            self.window,
            self.part,
            self.rows,
            self._sink.table_name,
            self.partition_key,
            deleted,
        )
        return outputs

    def _outputs(self) -> list[OutputFile]:
        if not self.rows:
            return []
        name = self._sink.output_name(self.window, self.part)
        extra = output_extra(fmt="table", compression="none", part=self.part, columns=tuple(self._known.values()))
        extra.update(table=self._sink.table_name, partition_key=self.partition_key)
        return [OutputFile(name=name, rows=self.rows, bytes=self.bytes, extra=extra)]

    def _delete_stale(self) -> int:
        try:
            stale = self._sink.client.query_entities(
                f"PartitionKey eq @pk and {PART} eq @part and {RUN} ne @run",
                parameters={"pk": self.partition_key, "part": self.part or "main", "run": self.run},
                select=["PartitionKey", "RowKey"],
            )
            return _delete_all(self._sink.client, stale)
        except AzureError as exc:
            raise translate(exc, f"deleting stale entities of {self.partition_key}") from exc

    def abort(self) -> None:
        """Drop what is pending; upserts already sent stay (see the module doc)."""
        if self._state == "open":
            self._state = "aborted"
            self._pending = {}


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
            from shared.storage import table_service

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
            _delete_all(self.client, keys)
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
            return _cut(out, MAX_STRING) if _utf16_len(out) > MAX_STRING else out

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
