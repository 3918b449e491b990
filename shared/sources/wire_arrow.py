"""The query API's JSON wire format → typed Arrow columns, with no Python object per cell (pure).

A response's ``rows`` are arrays of mixed JSON types, which pyarrow's JSON reader refuses;
polars reads them as text in native code (a JSON number becomes the shortest text that
parses back to the same double, a string its unescaped text). Each column is then brought
to its canonical type with Arrow compute, following exactly the rules of the row path
(``shared.sources.wire.convert_rows`` + ``shared.mapping.normalize``):

==============================  ==================  ========================================
KQL type                        Arrow type          value
==============================  ==================  ========================================
``datetime``                    ``string``          canonical text, 100 ns kept (``normalize_datetimes``)
``long``, ``int``               ``int64``
``real``                        ``float64``
``decimal``                     ``string``          the exact text the service sent
``bool``                        ``bool``
``string``/``guid``/``timespan`` ``string``         ``""`` → null
``dynamic``                     ``string``          compact JSON (``orjson``); empty → null
==============================  ==================  ========================================

Whatever this path cannot prove equal to the row path (a partial result, a cell of an
unexpected JSON type, a datetime that does not parse, a number out of range, a ragged
row…) makes ``decode_columns`` return ``None``, and the caller takes the row path for that
response: exotic input costs speed, never exactness.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shared.model import Batch, Column

__all__ = [
    "CANONICAL_TYPES",
    "ColumnarResult",
    "arrow_batch",
    "decode_columns",
    "dynamic_fragments",
    "normalize_datetimes",
    "rows_of",
]

CANONICAL_TYPES: dict[str, pa.DataType] = {
    "datetime": pa.string(),
    "long": pa.int64(),
    "int": pa.int64(),
    "real": pa.float64(),
    "decimal": pa.string(),
    "bool": pa.bool_(),
    "dynamic": pa.string(),
}
_TEXT = frozenset({"string", "guid", "timespan"})
_ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$"
_DECIMAL = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_FRACTION_7 = r"(\.\d{6})\dZ$"
_EMPTY_JSON = pa.array(["{}", "[]", '""'])
_TS_US = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class ColumnarResult:
    columns: tuple[Column, ...]
    table: pa.Table  # canonical columns (see the module doc), one per ``columns``
    body_bytes: int


class _NotExact(Exception):
    """This response needs the row path."""


@functools.cache
def _polars() -> tuple[Any, dict[str, Any]]:
    """polars and the response schema, loaded on first use: after ``tune_allocators`` has
    configured polars' allocator (it reads its settings once, when the library loads)."""
    from shared.memory import tune_allocators

    tune_allocators()
    import polars as pl

    schema = {
        "tables": pl.List(
            pl.Struct(
                {
                    "name": pl.String,
                    "columns": pl.List(pl.Struct({"name": pl.String, "type": pl.String})),
                    "rows": pl.List(pl.List(pl.String)),
                }
            )
        ),
        "error": pl.Struct({"code": pl.String}),
    }
    return pl, schema


def decode_columns(body: bytes) -> ColumnarResult | None:
    """A complete (not partial) response as canonical Arrow columns; ``None``: use the row path."""
    pl, schema = _polars()
    try:
        frame = pl.read_json(io.BytesIO(body), schema=schema)
        if frame.height != 1 or frame["error"][0] is not None:
            return None
        first = frame.select(pl.col("tables").list.first().alias("t")).unnest("t")
        if first.height != 1 or first["columns"][0] is None:
            return None
        columns = tuple(Column(str(c["name"]), str(c["type"]).lower()) for c in first["columns"][0])
        rows = first.select(pl.col("rows").explode())
        del frame, first
        if rows["rows"].null_count() == rows.height:  # no rows: explode left one null
            return ColumnarResult(columns, _empty(columns), len(body))
        widths = rows["rows"].list.len()
        if widths.null_count() or widths.min() != len(columns) or widths.max() != len(columns):
            return None  # ragged rows: the row path quarantines them one by one
        cells = rows.select([pl.col("rows").list.get(i).alias(f"c{i}") for i in range(len(columns))])
        del rows
        text = cells.to_arrow()
        del cells
        arrays = [_canonical(_single(text.column(i)), col.type) for i, col in enumerate(columns)]
    except (_NotExact, pl.exceptions.PolarsError, pa.ArrowException, ValueError, TypeError, KeyError):
        return None
    return ColumnarResult(columns, pa.Table.from_arrays(arrays, names=[c.name for c in columns]), len(body))


def _single(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk as it is (``combine_chunks`` would copy it)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _empty(columns: tuple[Column, ...]) -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array([], CANONICAL_TYPES.get(c.type, pa.string())) for c in columns], names=[c.name for c in columns]
    )


def _canonical(text: pa.Array, kql_type: str) -> pa.Array:
    """One column of wire text → its canonical Arrow array; ``_NotExact`` if not provably equal."""
    text = text.cast(pa.string())  # shares polars' data buffer; freed by the thread that writes the rows
    if kql_type == "datetime":
        return normalize_datetimes(text)
    if kql_type in ("long", "int"):
        return _cast(text, pa.int64())
    if kql_type == "real":
        return _cast(text, pa.float64())
    if kql_type == "decimal":
        text = _null_empty(text)
        if not _all(pc.match_substring_regex(text, _DECIMAL)):
            raise _NotExact  # the row path quarantines what is not a number
        return text
    if kql_type == "bool":
        return _bools(text)
    if kql_type == "dynamic":
        return dynamic_fragments(text)
    if kql_type in _TEXT:
        return _null_empty(text)
    raise _NotExact  # a type this path does not know: the row path keeps its cells as they came


def _all(mask: pa.Array) -> bool:
    """Every non-null entry is true."""
    return bool(pc.all(mask).as_py() is not False)


def _cast(text: pa.Array, target: pa.DataType) -> pa.Array:
    try:
        return pc.cast(text, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _NotExact from exc


def _null_empty(text: pa.Array) -> pa.Array:
    empty = pc.equal(text, "")
    if not pc.any(empty).as_py():
        return text
    return pc.if_else(empty, pa.scalar(None, pa.string()), text)


def _bools(text: pa.Array) -> pa.Array:
    low = pc.utf8_lower(text)
    true, false = pc.is_in(low, pa.array(["true", "1"])), pc.is_in(low, pa.array(["false", "0"]))
    present = pc.is_valid(text)
    if not _all(pc.or_(pc.or_(true, false), pc.invert(present))):
        raise _NotExact  # "" and other text: the row path decides
    return pc.if_else(present, true, pa.scalar(None, pa.bool_()))


def normalize_datetimes(text: pa.Array) -> pa.Array:
    """ISO ``…Z`` text → the canonical ``YYYY-MM-DDTHH:MM:SS[.ffffff[f]]Z`` (``shared.mapping.normalize``).

    Raises ``_NotExact`` for text of another shape or a date that does not exist.
    """
    if not _all(pc.match_substring_regex(text, _ISO)):
        raise _NotExact
    head = pc.utf8_slice_codeunits(text, 0, 19)
    ticks = pc.utf8_slice_codeunits(pc.utf8_rpad(pc.utf8_slice_codeunits(text, 20, -1), 7, "0"), 0, 7)
    micro = pc.utf8_slice_codeunits(ticks, 0, 6)
    frac = pc.if_else(pc.equal(pc.utf8_slice_codeunits(ticks, 6, 7), "0"), micro, ticks)  # 100 ns kept
    out = pc.if_else(
        pc.equal(ticks, "0000000"),
        pc.binary_join_element_wise(head, "Z", ""),
        pc.binary_join_element_wise(head, ".", frac, "Z", ""),
    )
    _cast(pc.replace_substring_regex(out, _FRACTION_7, r"\1Z"), _TS_US)  # the calendar check of the row path
    return out


# A flat JSON object exactly as ``orjson.dumps(orjson.loads(text))`` writes it: string keys; string,
# integer (< 10^18), true/false/null values; no whitespace; only the escapes orjson writes. The
# service writes property bags (customDimensions) so; such a cell is its own canonical form and
# skips a parse per cell. Keys are assumed unique (a Kusto property bag cannot repeat a key).
_JSON_STR = r'"(?:[^"\\\x00-\x1f]|\\["\\bfnrt]|\\u00(?:0[0-7bef]|1[0-9a-f]))*"'
_JSON_VAL = rf"(?:{_JSON_STR}|0|-?[1-9]\d{{0,17}}|true|false|null)"
_CANONICAL_BAG = rf"^\{{(?:{_JSON_STR}:{_JSON_VAL}(?:,{_JSON_STR}:{_JSON_VAL})*)?\}}$"


def dynamic_fragments(text: pa.Array) -> pa.Array:
    """Dynamic cells (JSON text) → compact JSON as ``orjson`` writes the parsed value; text that
    is not JSON becomes a JSON string; ``""``, ``{}``, ``[]`` and ``""`` in JSON → null."""
    present = pc.fill_null(pc.not_equal(text, ""), False)
    canonical = pc.fill_null(pc.match_substring_regex(text, _CANONICAL_BAG), False)
    parse = pc.and_(present, pc.invert(canonical))
    out = pc.if_else(canonical, text, pa.scalar(None, pa.string()))
    if pc.any(parse).as_py():
        values = pc.filter(text, parse).to_pylist()
        loads, dumps = orjson.loads, orjson.dumps
        try:
            frags = list(map(dumps, map(loads, values)))
        except orjson.JSONDecodeError:
            frags = [_fragment(v) for v in values]
        out = pc.replace_with_mask(out, parse, pa.array(frags, pa.string()))
    empty = pc.is_in(out, _EMPTY_JSON)
    if pc.any(empty).as_py():
        out = pc.if_else(empty, pa.scalar(None, pa.string()), out)
    return out


def _fragment(value: str) -> bytes:
    try:
        return orjson.dumps(orjson.loads(value))
    except orjson.JSONDecodeError:
        return orjson.dumps(value)


def rows_of(table: pa.Table, columns: tuple[Column, ...]) -> list[list[Any]]:
    """The canonical Python rows of a columnar batch (what the row path would have made)."""
    lists: list[list[Any]] = []
    for i, col in enumerate(columns):
        values = table.column(i).to_pylist()
        if col.type == "dynamic":
            loads = orjson.loads
            values = [None if v is None else loads(v) for v in values]
        lists.append(values)
    return [list(row) for row in zip(*lists, strict=True)] if lists else [[] for _ in range(table.num_rows)]


def arrow_batch(name: str, columns: tuple[Column, ...], table: pa.Table, *, chunk_rows: int = 0) -> Batch:
    """A ``Batch`` carrying ``table`` (canonical columns); its rows are built on first use."""
    return Batch(name, columns, arrow=table, to_rows=rows_of, chunk_rows=chunk_rows)
