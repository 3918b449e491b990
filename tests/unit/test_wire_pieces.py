"""A large answer is decoded in pieces of rows: the same values as decoding it whole, or whole."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import orjson
import pytest

from shared.model import Batch
from shared.sinks.formats import open_encoder
from shared.sources.wire import parse_result
from shared.sources.wire_arrow import arrow_batch, decode_columns, row_pieces, rows_of
from tests.unit.test_wire_arrow import COLUMNS, ROWS, body

MANY = ROWS * 40  # 320 rows of edge values, ~40 KB of JSON


def pretty(rows: list[list[Any]]) -> bytes:
    """The answer as a pretty-printer would lay it out (whitespace between every token)."""
    doc = {"tables": [{"name": "PrimaryResult", "columns": COLUMNS, "rows": rows}]}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


@pytest.mark.parametrize("data", [body(MANY), pretty(MANY)], ids=["compact", "pretty"])
@pytest.mark.parametrize("piece_bytes", [600, 5_000])
def test_spans_tile_the_rows_and_each_piece_is_an_answer_of_its_rows(data: bytes, piece_bytes: int) -> None:
    split = row_pieces(data, piece_bytes)
    assert split is not None
    head, spans = split
    assert len(spans) > 2
    assert all(a < b for a, b in spans) and all(b < c for (_, b), (c, _) in pairwise(spans))
    rows: list[Any] = []
    for start, end in spans:
        piece = orjson.loads(head + data[start:end] + b"]}]}")
        assert piece["tables"][0]["columns"] == COLUMNS
        rows += piece["tables"][0]["rows"]
    assert rows == orjson.loads(data)["tables"][0]["rows"]


@pytest.mark.parametrize("data", [body(MANY), pretty(MANY)], ids=["compact", "pretty"])
def test_pieces_decode_to_the_values_of_the_whole_answer(data: bytes) -> None:
    whole = decode_columns(data)
    pieces = decode_columns(data, piece_bytes=600)
    assert whole is not None and pieces is not None
    assert pieces.table.column(0).num_chunks > 2 and whole.table.column(0).num_chunks == 1
    assert pieces.columns == whole.columns and pieces.table.equals(whole.table)
    assert pieces.body_bytes == len(data)
    assert rows_of(pieces.table, pieces.columns) == parse_result(data).rows


def test_a_cut_inside_a_string_cell_falls_back_to_the_whole_answer() -> None:
    """Cells holding ``],[`` put cuts inside strings: the piece before such a cut cannot parse,
    and the answer is decoded whole, to the same values."""
    columns = [{"name": "s", "type": "string"}, {"name": "d", "type": "dynamic"}]
    rows = [[f"a],[b {i}", '[[1],[2],{"k":"],["}]'] for i in range(200)]
    data = body(rows, columns)
    _head, spans = row_pieces(data, 300) or (b"", [])
    inside = [end for _start, end in spans[:-1] if not data[end:].startswith(b',["a],')]
    assert inside, "the test needs a cut that is not between rows"
    decoded = decode_columns(data, piece_bytes=300)
    assert decoded is not None and decoded.table.column(0).num_chunks == 1
    assert rows_of(decoded.table, decoded.columns) == parse_result(data).rows


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (body(MANY, error={"code": "PartialError", "message": "cut"}), "an error member after the rows"),
        (orjson.dumps({"error": {"code": "x"}, "tables": [{"name": "t", "columns": COLUMNS, "rows": MANY}]}),
         "an error member before the rows"),
        (body([]), "no rows"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)  # fmt: skip
def test_answers_of_another_shape_are_not_cut(data: bytes, why: str) -> None:
    assert row_pieces(data, 600) is None, why


def test_a_second_table_is_not_read_as_rows_of_the_first() -> None:
    """The service sends one table; a second one (its head looks like rows to the cutter) ends
    the pieces, and the answer is decoded whole: the first table's rows only, as the row path."""
    other = [[r[0], "second", *r[2:]] for r in MANY]
    data = orjson.dumps({"tables": [{"name": "t", "columns": COLUMNS, "rows": MANY},
                                    {"name": "u", "columns": COLUMNS, "rows": other}]})  # fmt: skip
    decoded = decode_columns(data, piece_bytes=600)
    assert decoded is not None and decoded.table.num_rows == len(MANY)
    assert rows_of(decoded.table, decoded.columns) == parse_result(data).rows


def test_a_cell_only_a_later_piece_holds_still_declines_the_answer() -> None:
    data = body([*MANY, ["x", *ROWS[0][1:]]])  # a datetime that does not parse, in the last row
    assert decode_columns(data, piece_bytes=600) is None


def _encode(fmt: str, batches: list[Batch]) -> bytes:
    import io

    out = io.BytesIO()
    encoder = open_encoder(fmt, out, compression="snappy" if fmt == "parquet" else "none", row_group_rows=100)
    for batch in batches:
        encoder.write(batch)
    encoder.close()
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("chunk_rows", [0, 7, 64])
def test_an_answer_decoded_in_pieces_writes_the_bytes_of_the_whole_one(fmt: str, chunk_rows: int) -> None:
    data = body(MANY)
    whole, pieces = decode_columns(data), decode_columns(data, piece_bytes=700)
    assert whole is not None and pieces is not None and pieces.table.column(0).num_chunks > 2
    expected = _encode(fmt, [arrow_batch("t", whole.columns, whole.table, chunk_rows=chunk_rows)])
    assert _encode(fmt, [arrow_batch("t", pieces.columns, pieces.table, chunk_rows=chunk_rows)]) == expected
