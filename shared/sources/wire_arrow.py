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
import re
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shared.model import Batch, Column

__all__ = [
    "CANONICAL_TYPES",
    "PIECE_BYTES",
    "ColumnarResult",
    "arrow_batch",
    "decode_columns",
    "dynamic_fragments",
    "normalize_datetimes",
    "row_pieces",
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
_EMPTY_JSON = pa.array(["{}", "[]", '""', ""])
_TS_S = pa.timestamp("s", tz="UTC")
Cells: TypeAlias = pa.Array | pa.ChunkedArray  # a column; one chunk per piece of the answer


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
    from shared.runtime.memory import tune_allocators

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


def decode_columns(body: bytes, *, piece_bytes: int = 0) -> ColumnarResult | None:
    """A complete (not partial) response as canonical Arrow columns; ``None``: use the row path.

    A large answer is parsed in pieces of about ``PIECE_BYTES`` of rows (``row_pieces``): polars
    holds ~7x the JSON it reads while it parses, so pieces bound that to a few MB whatever the
    answer's size. Each piece's wire text becomes one chunk of the columns; the columns are
    then typed once for the whole answer: a conversion is a handful of Arrow calls whatever
    the column's length, and typing each piece apart multiplied those calls (a third of the
    decoding time at 2 MB pieces).
    """
    split = row_pieces(body, piece_bytes or PIECE_BYTES)
    if split is None:
        return _decode_whole(body)
    head, spans = split
    view, pieces = memoryview(body), []
    columns: tuple[Column, ...] | None = None
    for start, end in spans:
        piece = _parse(b"".join((head, view[start:end], _PIECE_END)), piece=True)
        if piece is None or piece[1] is None or (columns is not None and piece[0] != columns):
            return _decode_whole(body)  # a cut inside a string, or a cell only the whole answer can tell
        columns = piece[0]
        pieces.append(piece[1])
    assert columns is not None
    return _typed(columns, pa.concat_tables(pieces), len(body))


# A compact answer as the service writes it: {"tables":[{"name":…,"columns":[…],"rows":[[…],…,[…]]}]}
# (whitespace allowed). Anything else (an error member, a second table, no rows) is decoded whole.
PIECE_BYTES = 2 * 2**20
_ROWS_START = re.compile(rb'"rows"\s*:\s*\[(?=\s*\[)')
_ROWS_END = re.compile(rb"\]\s*\]\s*\}\s*\]\s*\}\s*$")
_ROW_GAP = re.compile(rb"\]\s*,\s*\[")
_PIECE_END = b"]}]}"
_HEAD_SCAN = 1 << 20  # the columns come first: a table of a few thousand columns fits


def row_pieces(body: bytes, piece_bytes: int = PIECE_BYTES) -> tuple[bytes, list[tuple[int, int]]] | None:
    """The head of a compact answer (up to its ``"rows":[``) and spans of ``body`` holding whole
    rows, about ``piece_bytes`` each: ``head + body[a:b] + b"]}]}"`` is an answer of those rows.

    Spans are cut between rows (at ``],[``); such a cut may fall inside a string cell, but then
    the piece before it ends inside an unterminated string and cannot parse, so a decoder that
    sees every piece parse has seen the true rows (the first span starts at a true row). ``None``
    when the answer is small or not shaped as above.
    """
    if len(body) < 2 * piece_bytes:
        return None
    found = _ROWS_START.search(body, 0, _HEAD_SCAN)
    tail = _ROWS_END.search(body, max(0, len(body) - 256))
    if found is None or tail is None:
        return None
    head = body[: found.end()]
    try:
        doc = orjson.loads(head + _PIECE_END)
        (table,) = doc["tables"]
        if set(doc) != {"tables"} or set(table) != {"name", "columns", "rows"}:
            return None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    spans, start, stop = [], found.end(), tail.start() + 1  # stop: just after the last row's "]"
    while stop - start > piece_bytes * 3 // 2 and (gap := _ROW_GAP.search(body, start + piece_bytes, stop)):
        spans.append((start, gap.start() + 1))
        start = gap.end() - 1  # the next row's "["
    spans.append((start, stop))
    return head, spans


def _decode_whole(body: bytes) -> ColumnarResult | None:
    """One response body, decoded in one go (see ``decode_columns``)."""
    parsed = _parse(body)
    if parsed is None:
        return None
    columns, text = parsed
    if text is None:  # no rows
        return ColumnarResult(columns, _empty(columns), len(body))
    return _typed(columns, text, len(body))


def _parse(body: bytes, *, piece: bool = False) -> tuple[tuple[Column, ...], pa.Table | None] | None:
    """The columns and the wire text of the cells (an Arrow table of strings, one column per
    column; ``None`` when there are no rows) of one response; a ``piece`` must hold exactly one
    table (a cut that took in the start of a second one is not a piece of rows). ``None``: not an
    answer this path can read, or ragged rows (the row path quarantines them one by one)."""
    pl, schema = _polars()
    try:
        frame = pl.read_json(io.BytesIO(body), schema=schema)
        if frame.height != 1 or frame["error"][0] is not None:
            return None
        if piece and frame["tables"].list.len()[0] != 1:
            return None
        first = frame.select(pl.col("tables").list.first().alias("t")).unnest("t")
        if first.height != 1 or first["columns"][0] is None:
            return None
        columns = tuple(Column(str(c["name"]), str(c["type"]).lower()) for c in first["columns"][0])
        rows = first.select(pl.col("rows").explode())
        del frame, first
        if rows["rows"].null_count() == rows.height:  # no rows: explode left one null
            return columns, None
        widths = rows["rows"].list.len()
        if widths.null_count() or widths.min() != len(columns) or widths.max() != len(columns):
            return None
        cells = rows.select([pl.col("rows").list.get(i).alias(f"c{i}") for i in range(len(columns))])
        del rows
        return columns, cells.to_arrow()
    except (pl.exceptions.PolarsError, pa.ArrowException, ValueError, TypeError, KeyError):
        return None


def _typed(columns: tuple[Column, ...], text: pa.Table, body_bytes: int) -> ColumnarResult | None:
    """Wire text (``_parse``) as canonical columns; ``None``: a cell the row path must judge."""
    arrays: list[Any] = text.columns
    del text
    try:
        for i, col in enumerate(columns):  # each column of wire text is released once converted
            arrays[i] = _canonical(arrays[i], col.type)
    except (_NotExact, pa.ArrowException, ValueError, TypeError, KeyError):
        return None
    return ColumnarResult(columns, pa.Table.from_arrays(arrays, names=[c.name for c in columns]), body_bytes)


def _empty(columns: tuple[Column, ...]) -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array([], CANONICAL_TYPES.get(c.type, pa.string())) for c in columns], names=[c.name for c in columns]
    )


def _canonical(text: Cells, kql_type: str) -> Cells:
    """One column of wire text → its canonical Arrow array; ``_NotExact`` if not provably equal."""
    text = text.cast(pa.string())  # one chunk per piece; shares polars' data buffers
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


def _all(mask: Cells) -> bool:
    """Every non-null entry is true."""
    return bool(pc.all(mask).as_py() is not False)


def _cast(text: Cells, target: pa.DataType) -> Cells:
    try:
        return pc.cast(text, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _NotExact from exc


def _null_empty(text: Cells) -> Cells:
    empty = pc.equal(text, "")
    if not pc.any(empty).as_py():
        return text
    return pc.if_else(empty, pa.scalar(None, pa.string()), text)


def _bools(text: Cells) -> Cells:
    low = pc.utf8_lower(text)
    true, false = pc.is_in(low, pa.array(["true", "1"])), pc.is_in(low, pa.array(["false", "0"]))
    present = pc.is_valid(text)
    if not _all(pc.or_(pc.or_(true, false), pc.invert(present))):
        raise _NotExact  # "" and other text: the row path decides
    return pc.if_else(present, true, pa.scalar(None, pa.bool_()))


def normalize_datetimes(text: Cells) -> Cells:
    """ISO ``…Z`` text → the canonical ``YYYY-MM-DDTHH:MM:SS[.ffffff[f]]Z`` (``shared.mapping.normalize``).

    Raises ``_NotExact`` for text of another shape or a date that does not exist.
    """
    if not _all(pc.match_substring_regex(text, _ISO)):
        raise _NotExact
    lengths = pc.binary_length(text)
    longest = pc.max(lengths).as_py()
    if longest is None:
        return text  # every cell is null
    # Fractions of 1–6 digits padded to 6, 7 digits as they are: "…SS.fffZ" → "…SS.fff000Z".
    out = pc.binary_join_element_wise(pc.utf8_rpad(pc.utf8_slice_codeunits(text, 0, -1), 26, "0"), "Z", "")
    zero_ticks = pc.and_(pc.equal(lengths, 28), pc.ends_with(text, "0Z"))  # a 7th digit of 0 is dropped
    if pc.any(zero_ticks).as_py():
        out = pc.if_else(zero_ticks, pc.binary_replace_slice(text, 26, 28, "Z"), out)
    seconds = pc.binary_replace_slice(text, 19, longest, "Z")  # "…SSZ": the value without its fraction
    whole = pc.or_(pc.equal(lengths, 20), pc.ends_with(out, ".000000Z"))  # no fraction, or only zeros
    if pc.any(whole).as_py():
        out = pc.if_else(whole, seconds, out)
    # The calendar check of the row path, once per distinct second (a window holds few of them).
    _cast(pc.unique(seconds), _TS_S)
    return out


# A flat JSON object exactly as ``orjson.dumps(orjson.loads(text))`` writes it: string keys; string,
# integer (< 10^18), true/false/null values; no whitespace; only the escapes orjson writes. The
# service writes property bags (customDimensions) so; such a cell is its own canonical form and
# skips a parse per cell. Keys are assumed unique (a Kusto property bag cannot repeat a key).
_JSON_STR = r'"(?:[^"\\\x00-\x1f]|\\["\\bfnrt]|\\u00(?:0[0-7bef]|1[0-9a-f]))*"'
_JSON_VAL = rf"(?:{_JSON_STR}|0|-?[1-9]\d{{0,17}}|true|false|null)"
_CANONICAL_BAG = rf"^\{{(?:{_JSON_STR}:{_JSON_VAL}(?:,{_JSON_STR}:{_JSON_VAL})*)?\}}$"


def dynamic_fragments(text: Cells) -> Cells:
    """Dynamic cells (JSON text) → compact JSON as ``orjson`` writes the parsed value; text that
    is not JSON becomes a JSON string; ``""``, ``{}``, ``[]`` and ``""`` in JSON → null."""
    present = pc.fill_null(pc.not_equal(text, ""), False)
    canonical = pc.fill_null(pc.match_substring_regex(text, _CANONICAL_BAG), False)
    parse = pc.and_(present, pc.invert(canonical))
    out = text  # every cell with text is canonical already (the common case: no copy); "" is nulled below
    if pc.any(parse).as_py():
        if isinstance(text, pa.ChunkedArray):  # ``replace_with_mask`` takes arrays (a rare path)
            text, canonical, parse = text.combine_chunks(), canonical.combine_chunks(), parse.combine_chunks()
        out = pc.if_else(canonical, text, pa.scalar(None, pa.string()))
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
