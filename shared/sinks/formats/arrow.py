"""KQL column types → Arrow arrays: the typing rules of Parquet files (and of the cell check).

``coerce_array`` is the one conversion: the Parquet encoder applies it per column, and
``shared.sinks.cells`` applies it before any sink sees a batch, so a cell it refuses
sends its row to quarantine instead of failing a window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shared.errors import DataError
from shared.mapping.values import to_decimal
from shared.model import Batch, Column
from shared.sinks.formats.common import dumps_json, json_cell, utf8

__all__ = ["ARROW_TYPES", "arrow_field", "arrow_type", "batch_to_arrow", "coerce_array", "compatible", "conform"]

# KQL ``int`` is 32-bit in the service, but exported blobs are JSON and carry whatever the SDK
# sent (an ``itemCount`` of 4294967296 exists): both integer types are stored as int64, the
# KQL type stays in the field metadata.
ARROW_TYPES: dict[str, pa.DataType] = {
    "datetime": pa.timestamp("us", tz="UTC"),
    "long": pa.int64(),
    "int": pa.int64(),
    "real": pa.float64(),
    "decimal": pa.string(),  # the exact text: a .NET decimal needs 57 digits of precision, Parquet readers 38
    "bool": pa.bool_(),
    "string": pa.string(),
    "guid": pa.string(),
    "timespan": pa.string(),
    "dynamic": pa.string(),
}
_FRACTION_7 = r"(\.\d{6})\d+"


def arrow_type(kql_type: str) -> pa.DataType:
    """Parquet/Arrow type of a KQL column type; unknown types are kept as strings."""
    return ARROW_TYPES.get(kql_type, pa.string())


def _parse_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    text = re.sub(_FRACTION_7, r"\1", str(value).strip())
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DataError(f"not a datetime: {value!r}") from exc


def _datetime_array(values: Sequence[Any]) -> pa.Array:
    """ISO strings → ``timestamp[us, UTC]`` in Arrow (vectorised); the 7th fractional digit
    (100 ns) is truncated because Parquet readers widely support microseconds only."""
    target = ARROW_TYPES["datetime"]
    try:
        text = pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_parse_datetime(v) for v in values], target)
    try:
        return pc.cast(text, target)  # the canonical form (≤ 6 digits): no rewrite needed
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    try:
        return pc.cast(pc.replace_substring_regex(text, _FRACTION_7, r"\1"), target)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_parse_datetime(v) for v in values], target)


def _string_cell(value: Any) -> str | None:
    if value is None:
        return None
    text = json_cell(value) if isinstance(value, dict | list | bool) else str(value)
    return utf8(text).decode("utf-8")


def coerce_array(values: Sequence[Any], kql_type: str, name: str) -> pa.Array:
    """Typed Arrow array for one column; a vectorised fast path, a per-value fallback for
    values that are not canonical (e.g. numbers as strings), ``DataError`` if hopeless."""
    target = arrow_type(kql_type)
    if kql_type == "datetime":
        return _datetime_array(values)
    if kql_type == "dynamic":
        return pa.array([None if v is None else dumps_json(v).decode() for v in values], target)
    if kql_type == "decimal":
        return _decimal_array(values, name)
    try:
        return pa.array(values, target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
        pass
    try:
        if target == pa.string():
            return pa.array([_string_cell(v) for v in values], target)
        if pa.types.is_integer(target):
            return pa.array([None if v is None else int(v) for v in values], target)
        if pa.types.is_floating(target):
            return pa.array([None if v is None else float(v) for v in values], target)
        if pa.types.is_boolean(target):
            return pa.array([None if v is None else _to_bool(v) for v in values], target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError, TypeError) as exc:
        raise DataError(f"column {name!r}: values do not fit type {kql_type}: {exc}") from exc
    raise DataError(f"column {name!r}: values do not fit type {kql_type}")


_DECIMAL = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def _decimal_array(values: Sequence[Any], name: str) -> pa.Array:
    """Decimal cells as their exact text; ``DataError`` for text that is not a number."""
    try:
        text = pa.array([v if v is None or isinstance(v, str) else to_decimal(v) for v in values], pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"column {name!r}: values are not decimals: {exc}") from exc
    if pc.any(pc.invert(pc.match_substring_regex(text, _DECIMAL))).as_py():
        raise DataError(f"column {name!r}: a value is not a decimal number")
    return text


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise ValueError(f"not a bool: {value!r}")
    return bool(value)


def arrow_field(col: Column) -> pa.Field:
    return pa.field(col.name, arrow_type(col.type), metadata={"kql_type": col.type})


def batch_to_arrow(batch: Batch) -> pa.Table:
    """Column-wise conversion of one batch to a typed Arrow table (see ``ARROW_TYPES``)."""
    schema = pa.schema([arrow_field(c) for c in batch.columns])
    if batch.arrow is not None:  # canonical columns already (shared.sources.wire_arrow)
        arrays = [_from_canonical(batch.arrow.column(i), col.type) for i, col in enumerate(batch.columns)]
        return _sliced(pa.Table.from_arrays(arrays, schema=schema), batch.chunk_rows)
    if batch.rows:
        try:
            # zip(*rows) transposes in C; far cheaper than a Python loop per cell.
            columns: list[Sequence[Any]] = list(zip(*batch.rows, strict=True))
        except ValueError as exc:
            raise DataError(f"table {batch.table}: rows do not all have {len(batch.columns)} values") from exc
    else:
        columns = [() for _ in batch.columns]
    arrays = [coerce_array(values, col.type, col.name) for values, col in zip(columns, batch.columns, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _sliced(table: pa.Table, size: int) -> pa.Table:
    """``table`` chunked as the row path's slices of ``size`` rows (one slice if 0): Parquet pages
    follow the chunks. A table decoded in pieces has one chunk per piece; a slice across two is
    joined (a copy of that slice only)."""
    if not any(column.num_chunks > 1 for column in table.columns):
        if size and table.num_rows > size:
            return pa.Table.from_batches(table.to_batches(max_chunksize=size), schema=table.schema)
        return table
    step = size or table.num_rows
    batches: list[pa.RecordBatch] = []
    for start in range(0, table.num_rows, step):
        piece = table.slice(start, step)
        if any(column.num_chunks > 1 for column in piece.columns):
            piece = piece.combine_chunks()
        batches += [b for b in piece.to_batches() if b.num_rows]
    return pa.Table.from_batches(batches, schema=table.schema)


def _from_canonical(values: pa.ChunkedArray, kql_type: str) -> pa.ChunkedArray:
    """A canonical column as its Parquet type: datetimes are parsed (a 100 ns digit dropped),
    the rest already fits."""
    if kql_type == "datetime":
        try:
            return pc.cast(values, ARROW_TYPES["datetime"])  # no 7-digit value in this batch
        except pa.ArrowInvalid:
            return pc.cast(pc.replace_substring_regex(values, _FRACTION_7, r"\1"), ARROW_TYPES["datetime"])
    target = arrow_type(kql_type)
    return values if values.type == target else values.cast(target)


def compatible(file_type: pa.DataType, batch_type: pa.DataType) -> bool:
    return bool(file_type == batch_type or (file_type == pa.int64() and batch_type == pa.int32()))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in order: missing ones null, int32 widened if needed."""
    arrays = []
    for field in schema:
        index = table.schema.get_field_index(field.name)
        if index < 0:
            arrays.append(pa.nulls(table.num_rows, field.type))
        else:
            column = table.column(index)
            arrays.append(column if column.type == field.type else column.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
