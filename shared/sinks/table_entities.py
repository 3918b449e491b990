"""Rows → Table Storage entities within every service limit (pure; the writer is in ``table``).

Keys are escaped; strings over 32K characters and entities over 1 MiB are truncated with a
visible marker and a ``<property>__truncated`` flag; columns beyond the 252 property limit
go, as JSON, into ``_overflow``. Each entity carries the writer's run id and part.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from azure.data.tables import EdmType

from shared.errors import DataError
from shared.model import Column, format_ts
from shared.sinks.formats import dumps_json

__all__ = [
    "ID_COLUMNS",
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "MAX_PROPERTIES",
    "MAX_STRING",
    "PART",
    "RUN",
    "TRUNCATED",
    "Layout",
    "cut",
    "entity_size",
    "escape_key",
    "layout_of",
    "payload_size",
    "property_names",
    "row_entity",
    "sizes",
    "unescape_key",
    "utf16_len",
]

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


def utf16_len(text: str) -> int:
    """Length as the service counts it (UTF-16 code units)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def cut(text: str, units: int) -> str:
    """``text`` cut to at most ``units`` UTF-16 code units including the marker."""
    keep = max(units - len(TRUNCATED), 0)
    head = text[:keep]
    while utf16_len(head) > keep:  # astral characters take two units
        head = head[: len(head) - max((utf16_len(head) - keep) // 2, 1)]
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
    elif kql_type == "real":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kql_type == "bool":
        if isinstance(value, bool):
            return value
    elif kql_type == "dynamic":
        return dumps_json(value).decode("utf-8")
    elif kql_type in ("string", "guid", "timespan", "decimal") and isinstance(value, str):
        return value  # a decimal keeps its exact text: Table Storage has no decimal type
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
        formula = 4 + 2 * utf16_len(raw)
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


def payload_size(entity: dict[str, Any]) -> int:
    """Estimated bytes of the entity in a transaction request (multipart headers included)."""
    return 600 + sum(_costs(name, value)[1] for name, value in entity.items())


def sizes(entity: dict[str, Any]) -> tuple[int, int]:
    """``(entity_size, payload_size)`` in one pass over the properties."""
    formula, body = 4, 2
    for name, value in entity.items():
        f, b = _costs(name, value)
        formula, body = formula + f, body + b
    return max(formula, body), 600 + body - 2


@dataclass(frozen=True)
class Layout:
    """Per column list: property names, types and where the item id is."""

    columns: tuple[Column, ...]
    props: tuple[str, ...]
    types: tuple[str, ...]
    id_index: tuple[int, ...]


def layout_of(columns: tuple[Column, ...]) -> Layout:
    names = [c.name for c in columns]
    ids = tuple(names.index(n) for n in ID_COLUMNS if n in names)
    return Layout(columns, tuple(property_names(names)), tuple(c.type for c in columns), ids)


def _row_key(layout: Layout, row: Sequence[Any]) -> str:
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


def row_entity(layout: Layout, row: Sequence[Any], *, partition_key: str, run: str, part: str) -> dict[str, Any]:
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
        if isinstance(converted, str) and len(converted) > MAX_STRING // 2 and utf16_len(converted) > MAX_STRING:
            converted = cut(converted, MAX_STRING)
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
        if utf16_len(text) > MAX_STRING:
            text = cut(text, MAX_STRING)
            entity[OVERFLOW + _FLAG] = True
        entity[OVERFLOW] = text
    entity[RUN] = run
    entity[PART] = part or "main"
    while OVERFLOW in entity and entity[OVERFLOW] != TRUNCATED and entity_size(entity) > MAX_ENTITY:
        # JSON quoting made _overflow bigger than the values it holds: shorten it.
        text = entity[OVERFLOW]
        entity[OVERFLOW] = cut(text, utf16_len(text) // 2)
        entity[OVERFLOW + _FLAG] = True
    return entity


def _fit_entity(props: list[tuple[str, int, Any]], truncated: set[str], pk: str, rk: str) -> None:
    """Shorten the largest strings until the entity fits ``MAX_ENTITY`` by both measures (in place)."""
    # keys, run/part tags and possible __truncated flags
    overhead = 4 * (len(pk) + len(rk)) + 60 * (len(props) + 4) + 400
    # Cheap bound first (most rows are far below 1 MiB): a character costs at most 12 bytes in
    # either measure (an astral character is two JSON \uXXXX escapes), a name at most 3 per
    # character, any other value under 64 (an Edm-typed value with its type annotation).
    bound = overhead + sum(3 * len(p) + (12 * len(v) + 12 if v.__class__ is str else 64) for p, _, v in props)
    if bound <= MAX_ENTITY:
        return
    costs = [_costs(p, v) for p, _, v in props]
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
            units = utf16_len(text)
            if units <= floor:
                continue
            # Cut enough code units to remove the excess of both measures.
            per_unit_body = max(costs[i][1] / units, 1.0)
            excess = max((formula - MAX_ENTITY + 1) // 2, int((body - MAX_ENTITY) / per_unit_body) + 1, 1)
            props[i] = (prop, index, cut(text, max(units - excess, floor)))
            truncated.add(prop)
            new = _costs(prop, props[i][2])
            formula += new[0] - costs[i][0]
            body += new[1] - costs[i][1]
            costs[i] = new
