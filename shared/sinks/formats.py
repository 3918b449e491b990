"""Pure encoders: batches in, bytes of one output file out (JSONL, CSV, Parquet).

Encoders do no I/O of their own: they write to any object with ``write(bytes)``
(a ``BytesIO`` in tests and benchmarks, the block stager of the blob sink in
production), so every byte a reader will see is produced by code that is unit
tested without Azure. Text formats compress inline with a streaming zlib object
(gzip framing, ``wbits=31``); Parquet compresses inside pyarrow.

Schema drift: JSONL takes anything. CSV and Parquet files have one fixed column
layout; ``fits(batch)`` says whether a batch can go into the current file, and
the caller (the blob writer) starts a continuation file when it cannot. Parquet
buffers up to ``row_group_rows`` rows before its schema is fixed, so drift in
the first row group is unified in place.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shared.errors import DataError
from shared.model import Batch, Column, format_ts

__all__ = [
    "ARROW_TYPES",
    "GZIP_LEVEL",
    "CsvEncoder",
    "Encoder",
    "GzipStream",
    "JsonlEncoder",
    "ParquetEncoder",
    "Writable",
    "arrow_type",
    "batch_to_arrow",
    "dumps_json",
    "open_encoder",
]

FormatName = Literal["jsonl", "csv", "parquet"]

# zlib's default trade-off: level 1 is ~2x faster but ~20% bigger; outputs are
# kept for a long time, so the default level wins.
GZIP_LEVEL = 6

ARROW_TYPES: dict[str, pa.DataType] = {
    "datetime": pa.timestamp("us", tz="UTC"),
    "long": pa.int64(),
    "int": pa.int32(),
    "real": pa.float64(),
    "decimal": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "guid": pa.string(),
    "timespan": pa.string(),
    "dynamic": pa.string(),
}
_FRACTION_7 = r"(\.\d{6})\d+"


class Writable(Protocol):
    """Where encoded bytes go."""

    def write(self, data: bytes, /) -> Any: ...


class Encoder(Protocol):
    """Turns batches into the bytes of one file; ``close`` writes trailers (gzip, Parquet footer)."""

    rows: int

    @property
    def columns(self) -> tuple[Column, ...]:
        """Every column seen so far, first-seen order (the file's schema for the manifest)."""
        ...

    def fits(self, batch: Batch) -> bool:
        """Whether ``batch`` can go into this file without breaking its column layout."""
        ...

    def write(self, batch: Batch) -> None: ...

    def close(self) -> None: ...


def _default(value: Any) -> Any:
    """orjson fallback for values outside canonical JSON (mapping should not produce them)."""
    if isinstance(value, datetime):
        return format_ts(value) if value.tzinfo else value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps_json(value: Any) -> bytes:
    """Compact JSON like ``orjson.dumps``, falling back to the stdlib for what orjson refuses
    (integers beyond 64 bits, non-string keys, lone surrogates; ASCII-escaped there), so no
    value can fail a window."""
    try:
        return orjson.dumps(value, default=_default)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), default=_default).encode("ascii")


def _utf8(text: str) -> bytes:
    """UTF-8; a lone surrogate (invalid Unicode, possible from JSON ``\\ud800``) becomes U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


class GzipStream:
    """Streaming gzip (RFC 1952) onto ``out``; mtime 0, so equal input gives equal bytes."""

    def __init__(self, out: Writable, level: int = GZIP_LEVEL) -> None:
        self._out = out
        self._zip = zlib.compressobj(level, zlib.DEFLATED, 31)

    def write(self, data: bytes, /) -> int:
        chunk = self._zip.compress(data)
        if chunk:
            self._out.write(chunk)
        return len(data)

    def finish(self) -> None:
        self._out.write(self._zip.flush())


def _union(known: dict[str, Column], batch: Batch) -> None:
    for col in batch.columns:
        if col.name not in known:
            known[col.name] = col


class JsonlEncoder:
    """One JSON object per line (``\\n``), keys in the batch's column order; nulls kept."""

    def __init__(self, out: Writable, compression: str = "gzip", *, level: int = GZIP_LEVEL) -> None:
        self._gzip = GzipStream(out, level) if compression == "gzip" else None
        self._out: Writable = self._gzip or out
        self._known: dict[str, Column] = {}
        self._last: tuple[Column, ...] = ()
        self.rows = 0

    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(self._known.values())

    def fits(self, batch: Batch) -> bool:
        return True

    def write(self, batch: Batch) -> None:
        if not batch.rows:
            return
        names = batch.names
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        # One growing buffer, not a list joined: each orjson result holds a ~16 KB allocation,
        # so a batch of lines kept alive costs ~10x its bytes of RSS, and the join one more copy.
        lines = bytearray()
        try:
            for row in batch.rows:
                lines += dumps(dict(zip(names, row, strict=True)), default=_default, option=newline)
        except (orjson.JSONEncodeError, ValueError):
            lines = bytearray()
            for row in batch.rows:
                lines += dumps_json(_row_dict(names, row))
                lines += b"\n"
        if batch.columns != self._last:
            _union(self._known, batch)
            self._last = batch.columns
        self._out.write(bytes(lines))
        self.rows += len(batch.rows)

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.finish()


def _row_dict(names: list[str], row: Sequence[Any]) -> dict[str, Any]:
    if len(row) != len(names):
        raise DataError(f"row has {len(row)} values for {len(names)} columns")
    return dict(zip(names, row, strict=True))


def _csv_bool(value: Any) -> Any:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def _csv_dynamic(value: Any) -> Any:
    return None if value is None else dumps_json(value).decode("utf-8")


def _csv_cell(value: Any) -> Any:
    """Generic cell for values whose column type does not say what they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return dumps_json(value).decode("utf-8")
    return value


class CsvEncoder:
    """RFC 4180 CSV (CRLF, minimal quoting) with a header; the first batch fixes the columns.

    Later batches may lack columns (empty cells) or reorder them; a batch with a new
    column does not ``fit`` and goes to a continuation file. Null and ``""`` both
    become an empty cell (CSV cannot tell them apart).
    """

    def __init__(self, out: Writable, compression: str = "gzip", *, level: int = GZIP_LEVEL) -> None:
        self._gzip = GzipStream(out, level) if compression == "gzip" else None
        self._out: Writable = self._gzip or out
        self._columns: tuple[Column, ...] = ()
        self._index: dict[str, int] = {}
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\r\n")
        self.rows = 0

    @property
    def columns(self) -> tuple[Column, ...]:
        return self._columns

    def fits(self, batch: Batch) -> bool:
        return not self._columns or all(name in self._index for name in batch.names)

    def write(self, batch: Batch) -> None:
        if not batch.rows:
            return
        width = len(batch.columns)
        if any(len(row) != width for row in batch.rows):
            raise DataError(f"table {batch.table}: rows do not all have {width} values")
        if not self._columns:
            self._columns = batch.columns
            self._index = {c.name: i for i, c in enumerate(batch.columns)}
            self._csv.writerow(batch.names)
        elif not self.fits(batch):
            raise ValueError("batch has columns this CSV file has no header for; start a new file")
        rows: Any = batch.rows
        converters = self._converters(batch)
        if batch.columns != self._columns:
            width = len(self._columns)
            positions = [self._index[name] for name in batch.names]

            def place(row: Sequence[Any]) -> list[Any]:
                out: list[Any] = [None] * width
                for pos, value in zip(positions, row, strict=False):
                    out[pos] = value
                return out

            rows = [place(row) for row in rows]
        if converters:
            rows = [_convert(row, converters) for row in rows]
        self._csv.writerows(rows)
        self._out.write(_utf8(self._text.getvalue()))
        self._text.seek(0)
        self._text.truncate()
        self.rows += len(batch.rows)

    def _converters(self, batch: Batch) -> list[tuple[int, Callable[[Any], Any]]]:
        """Cell converters by file position; only bool/dynamic/unknown columns need one."""
        out: list[tuple[int, Callable[[Any], Any]]] = []
        for col in batch.columns:
            pos = self._index[col.name]
            if col.type == "bool":
                out.append((pos, _csv_bool))
            elif col.type == "dynamic":
                out.append((pos, _csv_dynamic))
            elif col.type not in ARROW_TYPES:
                out.append((pos, _csv_cell))
        return out

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.finish()


def _convert(row: Sequence[Any], converters: list[tuple[int, Callable[[Any], Any]]]) -> list[Any]:
    out = list(row)
    for pos, fn in converters:
        out[pos] = fn(out[pos])
    return out


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
        return pc.cast(pc.replace_substring_regex(text, _FRACTION_7, r"\1"), target)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_parse_datetime(v) for v in values], target)


def _string_cell(value: Any) -> str | None:
    if value is None:
        return None
    text = _csv_cell(value) if isinstance(value, dict | list | bool) else str(value)
    return _utf8(text).decode("utf-8")


def _coerce_array(values: Sequence[Any], kql_type: str, name: str) -> pa.Array:
    """Typed Arrow array for one column; a vectorised fast path, a per-value fallback for
    values that are not canonical (e.g. numbers as strings), ``DataError`` if hopeless."""
    target = arrow_type(kql_type)
    if kql_type == "datetime":
        return _datetime_array(values)
    if kql_type == "dynamic":
        return pa.array([None if v is None else dumps_json(v).decode() for v in values], target)
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


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise ValueError(f"not a bool: {value!r}")
    return bool(value)


def _field(col: Column) -> pa.Field:
    return pa.field(col.name, arrow_type(col.type), metadata={"kql_type": col.type})


def batch_to_arrow(batch: Batch) -> pa.Table:
    """Column-wise conversion of one batch to a typed Arrow table (see ``ARROW_TYPES``)."""
    if batch.rows:
        try:
            # zip(*rows) transposes in C; far cheaper than a Python loop per cell.
            columns: list[Sequence[Any]] = list(zip(*batch.rows, strict=True))
        except ValueError as exc:
            raise DataError(f"table {batch.table}: rows do not all have {len(batch.columns)} values") from exc
    else:
        columns = [() for _ in batch.columns]
    arrays = [_coerce_array(values, col.type, col.name) for values, col in zip(columns, batch.columns, strict=True)]
    return pa.Table.from_arrays(arrays, schema=pa.schema([_field(c) for c in batch.columns]))


class ParquetEncoder:
    """Parquet through pyarrow's ``ParquetWriter``, one row group per ``row_group_rows`` rows.

    Batches are converted to Arrow at once (Python objects are freed) and buffered
    until a row group is full; the file schema is fixed at the first row group as
    the union of the columns seen so far. After that, batches with missing columns
    get nulls, and a batch with a new column or a different type does not ``fit``.
    """

    def __init__(self, out: Writable, compression: str = "snappy", *, row_group_rows: int = 25_000) -> None:
        self._out = out
        self._compression = compression
        self._row_group_rows = row_group_rows
        self._known: dict[str, Column] = {}
        self._schema: pa.Schema | None = None
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(self._known.values())

    def fits(self, batch: Batch) -> bool:
        for col in batch.columns:
            known = self._known.get(col.name)
            if known is None:
                if self._schema is not None:
                    return False
            elif not _compatible(arrow_type(known.type), arrow_type(col.type)):
                return False
        return True

    def write(self, batch: Batch) -> None:
        if not batch.rows:
            return
        if not self.fits(batch):
            raise ValueError("batch does not fit this Parquet file's schema; start a new file")
        table = batch_to_arrow(batch)
        _union(self._known, batch)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= self._row_group_rows:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        if not self._pending:
            return
        if self._schema is None:
            self._schema = pa.schema([_field(c) for c in self._known.values()]).with_metadata(
                {"kql_types": orjson.dumps({c.name: c.type for c in self._known.values()}).decode()}
            )
            self._writer = pq.ParquetWriter(
                pa.PythonFile(_OutputFile(self._out), mode="w"),
                self._schema,
                compression=self._compression,
            )
        writer = self._writer
        if writer is None:  # unreachable: opened above
            raise RuntimeError("parquet writer not open")
        table = pa.concat_tables([_conform(t, self._schema) for t in self._pending])
        self._pending, self._pending_rows = [], 0
        size = self._row_group_rows
        full = table.num_rows if final else table.num_rows - table.num_rows % size
        if full:
            writer.write_table(table.slice(0, full), row_group_size=size)
        if full < table.num_rows:
            self._pending = [table.slice(full)]
            self._pending_rows = table.num_rows - full

    def close(self) -> None:
        self._flush(final=True)
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _OutputFile:
    """The minimal binary-file face pyarrow expects, over any ``Writable``."""

    closed = False

    def __init__(self, out: Writable) -> None:
        self._out = out
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        """Blocks are flushed by the stager; nothing to do here."""

    def close(self) -> None:
        self.closed = True


def _compatible(file_type: pa.DataType, batch_type: pa.DataType) -> bool:
    return bool(file_type == batch_type or (file_type == pa.int64() and batch_type == pa.int32()))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
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


def open_encoder(
    fmt: FormatName | str, out: Writable, *, compression: str = "gzip", row_group_rows: int = 25_000
) -> Encoder:
    """The encoder for a sink format writing to ``out`` (compression included)."""
    if fmt == "jsonl":
        return JsonlEncoder(out, compression)
    if fmt == "csv":
        return CsvEncoder(out, compression)
    if fmt == "parquet":
        return ParquetEncoder(out, compression, row_group_rows=row_group_rows)
    raise ValueError(f"unknown format {fmt!r}")
