"""Column-wise batches encode to exactly the bytes of the row encoders (JSONL, CSV, Parquet)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from shared.model import Batch
from shared.sinks.formats import open_encoder
from shared.sources.wire import parse_result
from shared.sources.wire_arrow import arrow_batch, decode_columns
from tests.unit.test_wire_arrow import ROWS, body

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "query-api"
BODIES = {
    "edge-values": body(ROWS),
    "requests-sample": (SAMPLES / "requests-response.json").read_bytes(),
    "exact-values-sample": (SAMPLES / "exact-values-response.json").read_bytes(),
}


def encode(fmt: str, batches: list[Batch], compression: str) -> bytes:
    out = io.BytesIO()
    encoder = open_encoder(fmt, out, compression=compression, row_group_rows=1_000)
    for batch in batches:
        encoder.write(batch)
    encoder.close()
    return out.getvalue()


def both(data: bytes, pieces: int = 1) -> tuple[list[Batch], list[Batch]]:
    """The same rows as row batches and as column-wise batches, cut into ``pieces`` batches each."""
    rows = parse_result(data)
    decoded = decode_columns(data)
    assert decoded is not None
    n = len(rows.rows)
    step = max(1, -(-n // pieces))
    row_batches = [Batch("t", rows.columns, rows.rows[i : i + step]) for i in range(0, n, step)]
    arrow_batches = [arrow_batch("t", decoded.columns, decoded.table.slice(i, step)) for i in range(0, n, step)]
    return row_batches, arrow_batches


@pytest.mark.parametrize("name", list(BODIES))
@pytest.mark.parametrize(("fmt", "compression"), [("jsonl", "none"), ("csv", "none"), ("parquet", "snappy")])
@pytest.mark.parametrize("pieces", [1, 3])
def test_arrow_batches_encode_to_the_row_encoders_bytes(name: str, fmt: str, compression: str, pieces: int) -> None:
    row_batches, arrow_batches = both(BODIES[name], pieces)
    assert encode(fmt, arrow_batches, compression) == encode(fmt, row_batches, compression)


def test_the_exact_values_reach_jsonl_and_csv_as_the_service_wrote_them() -> None:
    _rows, batches = both(BODIES["exact-values-sample"])
    jsonl = encode("jsonl", batches, "none").decode()
    csv = encode("csv", batches, "none").decode()
    for text in ('"79228162514264337593543950335"', '"-0.0000000000000000000000000001"', '"1.50"',
                 '"10675199.02:48:05.4775807"', '"-10675199.02:48:05.4775808"', '"2026-11-02T10:00:00.0000001Z"'):
        assert text in jsonl  # decimals as JSON strings: every JSON reader keeps every digit
        assert text.strip('"') in csv


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_a_whole_answer_with_a_chunk_hint_writes_the_parquet_of_its_slices(chunk: int) -> None:
    """The source hands a whole answer on with ``chunk_rows``: Parquet pages depend on how a table
    is chunked, so it is written as the row path's slices would be."""
    data = BODIES["edge-values"]
    rows = parse_result(data)
    decoded = decode_columns(data)
    assert decoded is not None
    whole = arrow_batch("t", decoded.columns, decoded.table, chunk_rows=chunk)
    slices = [Batch("t", rows.columns, rows.rows[i : i + chunk]) for i in range(0, len(rows.rows), chunk)]
    assert encode("parquet", [whole], "snappy") == encode("parquet", slices, "snappy")
    assert encode("jsonl", [whole], "none") == encode("jsonl", slices, "none")


@pytest.mark.parametrize(("fmt", "compression"), [("jsonl", "none"), ("csv", "none"), ("parquet", "snappy")])
def test_columns_null_throughout_encode_as_the_row_path_does(fmt: str, compression: str) -> None:
    """A column with no value (or a batch with none at all) is glue in the JSON lines, not an array."""
    from tests.unit.test_wire_arrow import COLUMNS

    some = [[*row[:2], None, *row[3:5], None, *row[6:]] for row in ROWS]  # "id" and "duration" all null
    none = [[row[0], *([None] * (len(row) - 1))] for row in ROWS]  # only the timestamp has values
    for rows in (some, none):
        row_batches, arrow_batches = both(body(rows), 2)
        assert encode(fmt, arrow_batches, compression) == encode(fmt, row_batches, compression)
    nothing = body([[None] * len(COLUMNS)] * 3, [{**c, "type": "string"} for c in COLUMNS])
    row_batches, arrow_batches = both(nothing)
    assert encode(fmt, arrow_batches, compression) == encode(fmt, row_batches, compression)
