"""JSON lines and CSV records of a column-wise batch, built with Arrow compute (pure).

Each column becomes one array of the text its cells take in the file (a JSON value, or a
CSV field), and a line is those arrays joined element-wise: no Python object per cell.
The text is exactly what the row encoders write (``orjson.dumps`` of a row dict; the
``csv`` module with minimal quoting): where Arrow cannot tell (a string with characters
JSON escapes, a float's shortest form), the values of that column go through ``orjson``
or ``repr`` one by one, still without a Python loop per row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shared.model import Batch

__all__ = ["ENCODE_ROWS", "ArrowPending", "csv_records", "json_lines", "write_pieces"]

# Column-wise batches are encoded together up to this many rows: each Arrow call costs ~20 µs
# whatever its length, and a column costs a few calls. A query answer (one batch of ~8,000 rows)
# is encoded alone: holding it for the next one would copy both into one table.
ENCODE_ROWS = 2_048
_CHUNK = 2 * 2**20  # encoded text is handed on in pieces of this size (a queued piece is memory)

_NEEDS_JSON_ESCAPE = b'"\\' + bytes(range(32))  # what orjson escapes in a string
_NEEDS_CSV_QUOTE_BYTES = b'",\r\n'  # what makes csv.writer quote a field
_NEEDS_CSV_QUOTE = '[",\\r\\n]'
_TEXT_TYPES = frozenset({"string", "guid", "timespan", "datetime", "decimal"})


class ArrowPending:
    """Column-wise batches of one column layout, held until ``ENCODE_ROWS`` rows are there."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.rows = 0

    def fits(self, batch: Batch) -> bool:
        return not self.batches or (
            batch.columns == self.batches[0].columns and batch.arrow.schema == self.batches[0].arrow.schema
        )

    def feed(self, batch: Batch, encode: Callable[[Batch], None]) -> None:
        """Hold ``batch``, handing what is held to ``encode`` whenever ``ENCODE_ROWS`` rows are
        there. A table of several chunks (an answer decoded in pieces) goes chunk by chunk: its
        text is built and written a piece at a time."""
        for part in _parts(batch):
            if not self.fits(part):
                self.flush(encode)
            self.batches.append(part)
            self.rows += len(part)
            if self.rows >= ENCODE_ROWS:
                self.flush(encode)

    def flush(self, encode: Callable[[Batch], None]) -> None:
        """Encode what is held (as one batch, its rows in order), if anything; empties the holder."""
        if not self.batches:
            return
        first, tables = self.batches[0], [b.arrow for b in self.batches]
        self.batches, self.rows = [], 0
        encode(first if len(tables) == 1 else first.with_arrow(pa.concat_tables(tables)))


def _parts(batch: Batch) -> list[Batch]:
    table = batch.arrow
    if table.num_columns == 0 or table.column(0).num_chunks <= 1:
        return [batch]
    return [batch.with_arrow(pa.Table.from_batches([part])) for part in table.to_batches() if part.num_rows]


def write_pieces(out: Any, data: memoryview) -> None:
    """``data`` to ``out.write`` in pieces of at most ``_CHUNK`` bytes (views, not copies)."""
    for start in range(0, len(data), _CHUNK):
        out.write(data[start : start + _CHUNK])


def _column(batch: Batch, i: int) -> pa.Array:
    column = batch.arrow.column(i)
    if isinstance(column, pa.ChunkedArray):  # one chunk (a whole answer) is taken as it is, not copied
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _joined(lines: pa.Array) -> memoryview:
    """The values of a string array back to back: a view of its data buffer between the first and
    last offset (no copy; the view keeps the buffer alive)."""
    if len(lines) == 0:
        return memoryview(b"")
    return _value_bytes(lines)


def _each(values: pa.Array, fn: Any) -> pa.Array:
    return pa.array(list(map(fn, values.to_pylist())), pa.string())


def _json_floats(values: pa.Array) -> pa.Array:
    """Floats (and nulls) as orjson writes them: one ``orjson.dumps`` of the whole list, split in
    Arrow (a JSON number never holds a comma)."""
    text = orjson.dumps(values.to_pylist())[1:-1]
    if not text:
        return pa.array([""] * len(values), pa.string())
    return pc.split_pattern(pa.array([text.decode()]), ",").flatten()


def _value_bytes(values: pa.Array) -> memoryview:
    """The bytes of a string array's values, back to back (a view of its data buffer)."""
    _validity, offsets, data = values.buffers()
    if data is None or len(values) == 0:
        return memoryview(b"")
    bounds = memoryview(offsets).cast("i")
    return memoryview(data)[bounds[values.offset] : bounds[values.offset + len(values)]]


def _plain(values: pa.Array, special: bytes) -> bool:
    """No value of a text column holds one of the ``special`` bytes (it goes into the file as it
    is). One pass over the column's bytes (``translate`` deletes them: 4x a regex scan), not a
    call per value."""
    data = _value_bytes(values).tobytes()
    return len(data.translate(None, special)) == len(data)


def _json_column(values: pa.Array, kql_type: str) -> tuple[pa.Array | None, bool]:
    """Each cell's JSON text as ``orjson.dumps`` writes it inside a row object (a null cell stays
    null: the join writes ``null``), and whether the quotes around it are left to the glue
    between columns (plain text without nulls). ``None``: every cell is null."""
    if values.null_count == len(values):
        return None, False
    if pa.types.is_string(values.type) and kql_type in _TEXT_TYPES:
        if not _plain(values, _NEEDS_JSON_ESCAPE):
            return _each(values, orjson.dumps), False  # orjson's own escaping, per value of this column
        if not values.null_count:
            return values, True
        return pc.binary_join_element_wise('"', values, '"', ""), False
    if kql_type == "dynamic" or pa.types.is_string(values.type):  # compact JSON already
        return values, False
    if pa.types.is_integer(values.type):
        return pc.cast(values, pa.string()), False
    if pa.types.is_boolean(values.type):
        return pc.if_else(values, "true", "false"), False
    return _json_floats(values), False  # orjson's shortest form; null, NaN and inf → null


def json_lines(batch: Batch) -> memoryview:
    """``orjson.dumps(dict(zip(names, row))) + b"\\n"`` for every row of a column-wise batch.

    One element-wise join per batch: the keys, commas, the quotes around plain text and the
    columns that are null throughout are the glue between the columns' arrays; a null cell
    becomes ``null`` in the join itself.
    """
    parts: list[Any] = []
    glue = "{"
    for i, col in enumerate(batch.columns):
        values, quoted = _json_column(_column(batch, i), col.type)
        glue += ("," if i else "") + orjson.dumps(col.name).decode() + ":"
        if values is None:
            glue += "null"
            continue
        parts += [glue + ('"' if quoted else ""), values]
        glue = '"' if quoted else ""
    parts.append(glue + "}\n")
    if len(parts) == 1:  # no column holds a value
        return memoryview((parts[0] * len(batch)).encode())
    joined = pc.binary_join_element_wise(*parts, "", null_handling="replace", null_replacement="null")
    return _joined(joined)


def _csv_column(values: pa.Array) -> pa.Array:
    """Each cell as ``csv.writer`` writes it (minimal quoting); null stays null (an empty field)."""
    if pa.types.is_string(values.type):  # text, datetimes, dynamic JSON
        if _plain(values, _NEEDS_CSV_QUOTE_BYTES):
            return values
        quote = pc.fill_null(pc.match_substring_regex(values, _NEEDS_CSV_QUOTE), False)
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
        return pc.if_else(quote, quoted, values)
    if pa.types.is_integer(values.type):
        return pc.cast(values, pa.string())
    if pa.types.is_boolean(values.type):
        return pc.if_else(values, "true", "false")
    return pa.array([None if v is None else repr(v) for v in values.to_pylist()], pa.string())  # floats: str()


def csv_records(batch: Batch) -> memoryview:
    """The CSV records (no header) of a column-wise batch, CRLF after each."""
    fields = [_csv_column(_column(batch, i)) for i in range(len(batch.columns))]
    records = pc.binary_join_element_wise(*fields, ",", null_handling="replace", null_replacement="")
    return _joined(pc.binary_join_element_wise(records, "\r\n", ""))
