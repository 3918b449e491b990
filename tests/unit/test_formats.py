"""Encoders read back with independent readers (orjson, csv, gzip, pyarrow): exact values and types."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.errors import DataError
from shared.model import Batch, Column
from shared.sinks.formats import (
    CsvEncoder,
    GzipStream,
    JsonlEncoder,
    ParquetEncoder,
    batch_to_arrow,
    dumps_json,
    open_encoder,
)

COLUMNS = (
    Column("timestamp", "datetime"),
    Column("itemId", "guid"),
    Column("name", "string"),
    Column("count", "long"),
    Column("small", "int"),
    Column("duration", "real"),
    Column("price", "decimal"),
    Column("success", "bool"),
    Column("elapsed", "timespan"),
    Column("props", "dynamic"),
)


def sample_rows() -> list[list[Any]]:
    return [
        [
            "2026-11-02T10:00:00.1234567Z",
            "7f1c0a1e-0000-4000-8000-000000000001",
            'GET /orders?a=1,b="2"',
            2**62,
            -(2**31),
            1.5,
            "79228162514264337593543950335",
            True,
            "00:00:01.2500000",
            {"env": "prod", "nested": {"list": [1, 2.5, None, "x"]}, "ünï": "çødé"},
        ],
        [
            "2026-11-02T10:59:59Z",
            "7f1c0a1e-0000-4000-8000-000000000002",
            'line1\nline2\r\nquote" comma, tab\t',
            -1,
            2**31 - 1,
            -0.0,
            "-0.0000000000000000000000000001",
            False,
            "1.02:03:04",
            ["a", {"b": True}],
        ],
        [None, None, None, None, None, None, None, None, None, None],
        ["2026-11-02T10:30:00.5Z", "g3", "", 0, 0, 3.0, "2.50", True, "", "just a string"],
        ["2026-11-02T10:30:00.000001Z", "g4", "漢字 🎉", 7, 8, 1e-300, "-79228162514264337593543950335", False,
         "00:00:00", 42],
    ]


def batch(rows: list[list[Any]] | None = None, columns: tuple[Column, ...] = COLUMNS) -> Batch:
    return Batch("requests", columns, sample_rows() if rows is None else rows)


def encode(fmt: str, compression: str, batches: list[Batch], **kw: Any) -> bytes:
    out = io.BytesIO()
    enc = open_encoder(fmt, out, compression=compression, **kw)
    for b in batches:
        enc.write(b)
    enc.close()
    return out.getvalue()


def utc(text: str) -> datetime:
    """Reference conversion: ISO Z with ≤ 7 digits → datetime truncated to microseconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head).replace(tzinfo=UTC)
    return base.replace(microsecond=int((frac + "000000")[:6])) if frac else base


# -- JSONL -------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_jsonl_round_trip(compression: str) -> None:
    data = encode("jsonl", compression, [batch()])
    if compression == "gzip":
        assert data[:2] == b"\x1f\x8b"
        data = gzip.decompress(data)
    lines = data.split(b"\n")
    assert lines[-1] == b""  # every line ends with \n
    got = [orjson.loads(line) for line in lines[:-1]]
    names = [c.name for c in COLUMNS]
    assert got == [dict(zip(names, row, strict=True)) for row in sample_rows()]
    assert list(got[0]) == names  # keys in column order, nulls kept
    assert isinstance(got[0]["count"], int) and got[0]["count"] == 2**62


def test_jsonl_drift_keeps_each_rows_columns() -> None:
    a = Batch("t", (Column("a", "long"),), [[1]])
    b = Batch("t", (Column("b", "string"), Column("a", "long")), [["x", 2]])
    enc = JsonlEncoder(io.BytesIO(), compression="none")
    assert enc.fits(a) and enc.fits(b)
    out = io.BytesIO()
    enc = JsonlEncoder(out, compression="none")
    enc.write(a)
    enc.write(b)
    enc.close()
    assert [orjson.loads(x) for x in out.getvalue().splitlines()] == [{"a": 1}, {"b": "x", "a": 2}]
    assert enc.columns == (Column("a", "long"), Column("b", "string"))
    assert enc.rows == 2


def test_jsonl_values_orjson_refuses_still_encode() -> None:
    rows = [[2**70, {1: "int key"}, "lone \ud800 surrogate"]]
    cols = (Column("big", "long"), Column("d", "dynamic"), Column("s", "string"))
    data = encode("jsonl", "none", [Batch("t", cols, rows)])
    assert data.isascii()  # the stdlib fallback escapes, so the file stays valid UTF-8
    assert json.loads(data) == {"big": 2**70, "d": {"1": "int key"}, "s": "lone \ud800 surrogate"}


def test_jsonl_gzip_is_deterministic_and_multi_batch() -> None:
    one = encode("jsonl", "gzip", [batch(), batch()])
    two = encode("jsonl", "gzip", [batch(), batch()])
    assert one == two
    assert gzip.decompress(one).count(b"\n") == 2 * len(sample_rows())


def test_short_row_is_a_data_error() -> None:
    with pytest.raises(DataError):
        encode("jsonl", "none", [Batch("t", (Column("a"), Column("b")), [["only-a"]])])


# -- CSV ---------------------------------------------------------------------------------
def csv_cell(value: Any, kql_type: str) -> str:
    if value is None:
        return ""
    if kql_type == "bool":
        return "true" if value else "false"
    if kql_type == "dynamic":
        return orjson.dumps(value).decode()
    return str(value)


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_csv_round_trip(compression: str) -> None:
    data = encode("csv", compression, [batch()])
    if compression == "gzip":
        data = gzip.decompress(data)
    assert data.startswith(b"timestamp,itemId,") and b"\r\n" in data
    header, *body = read_csv(data)
    assert header == [c.name for c in COLUMNS]
    expected = [[csv_cell(v, c.type) for v, c in zip(row, COLUMNS, strict=True)] for row in sample_rows()]
    assert body == expected
    assert body[0][9] == '{"env":"prod","nested":{"list":[1,2.5,null,"x"]},"ünï":"çødé"}'
    assert body[1][2] == 'line1\nline2\r\nquote" comma, tab\t'


def test_csv_missing_and_reordered_columns_fit() -> None:
    enc = CsvEncoder(io.BytesIO(), compression="none")
    out = io.BytesIO()
    enc = CsvEncoder(out, compression="none")
    enc.write(Batch("t", (Column("a", "long"), Column("b", "bool"), Column("c")), [[1, True, "x"]]))
    later = Batch("t", (Column("c"), Column("a", "long")), [["y", 2]])
    assert enc.fits(later)
    enc.write(later)
    enc.close()
    assert read_csv(out.getvalue()) == [["a", "b", "c"], ["1", "true", "x"], ["2", "", "y"]]


def test_csv_new_column_does_not_fit() -> None:
    enc = CsvEncoder(io.BytesIO(), compression="none")
    enc.write(Batch("t", (Column("a"),), [["x"]]))
    new = Batch("t", (Column("a"), Column("z")), [["x", "y"]])
    assert not enc.fits(new)
    with pytest.raises(ValueError, match="no header"):
        enc.write(new)


def test_csv_empty_batch_does_not_fix_the_header() -> None:
    out = io.BytesIO()
    enc = CsvEncoder(out, compression="none")
    enc.write(Batch("t", (Column("a"),), []))
    enc.write(Batch("t", (Column("b"),), [["1"]]))
    enc.close()
    assert read_csv(out.getvalue()) == [["b"], ["1"]]


# -- Parquet -----------------------------------------------------------------------------
def expected_parquet(row: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for value, col in zip(row, COLUMNS, strict=True):
        if value is None:
            out[col.name] = None
        elif col.type == "datetime":
            out[col.name] = utc(value)
        elif col.type == "dynamic":
            out[col.name] = orjson.dumps(value).decode()
        elif col.type == "real":
            out[col.name] = float(value)
        else:
            out[col.name] = value
    return out


@pytest.mark.parametrize("compression", ["snappy", "zstd", "gzip", "none"])
def test_parquet_round_trip_with_types(compression: str) -> None:
    data = encode("parquet", compression, [batch()])
    table = pq.read_table(io.BytesIO(data))
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    types = {f.name: f.type for f in table.schema}
    assert types == {
        "timestamp": pa.timestamp("us", tz="UTC"),
        "itemId": pa.string(),
        "name": pa.string(),
        "count": pa.int64(),
        "small": pa.int64(),  # KQL int: int64 (exports carry counts beyond 32 bits)
        "duration": pa.float64(),
        "price": pa.string(),  # a decimal's exact text
        "success": pa.bool_(),
        "elapsed": pa.string(),
        "props": pa.string(),
    }
    assert table.to_pylist() == [expected_parquet(r) for r in sample_rows()]
    assert table.schema.field("props").metadata == {b"kql_type": b"dynamic"}
    assert orjson.loads(table.schema.metadata[b"kql_types"])["elapsed"] == "timespan"
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    codec = meta.row_group(0).column(0).compression
    assert codec == {"none": "UNCOMPRESSED"}.get(compression, compression.upper())


def test_parquet_row_groups_are_bounded() -> None:
    rows = [[i, f"r{i}"] for i in range(2500)]
    cols = (Column("n", "long"), Column("s"))
    batches = [Batch("t", cols, rows[i : i + 300]) for i in range(0, 2500, 300)]
    data = encode("parquet", "snappy", batches, row_group_rows=1000)
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 1000, 500]
    assert pq.read_table(io.BytesIO(data)).column("n").to_pylist() == list(range(2500))


def test_parquet_drift_before_first_row_group_is_unified() -> None:
    out = io.BytesIO()
    enc = ParquetEncoder(out, "snappy", row_group_rows=1000)
    enc.write(Batch("t", (Column("a", "long"), Column("b")), [[1, "x"]]))
    enc.write(Batch("t", (Column("c", "bool"), Column("a", "long")), [[True, 2]]))
    enc.close()
    table = pq.read_table(io.BytesIO(out.getvalue()))
    assert table.column_names == ["a", "b", "c"]
    assert table.to_pylist() == [{"a": 1, "b": "x", "c": None}, {"a": 2, "b": None, "c": True}]


def test_parquet_drift_after_schema_is_fixed() -> None:
    enc = ParquetEncoder(io.BytesIO(), "snappy", row_group_rows=1000)
    enc.write(Batch("t", (Column("a", "long"),), [[i] for i in range(1000)]))  # writes a row group
    assert enc.fits(Batch("t", (Column("a", "int"),), [[1]]))  # both integer types are int64
    assert not enc.fits(
        Batch(
            "t",
            (
                Column("a", "long"),
                Column("new"),
            ),
            [[1, "x"]],
        )
    )
    assert not enc.fits(Batch("t", (Column("a", "string"),), [["1"]]))
    enc.write(Batch("t", (Column("a", "int"),), [[5]]))
    enc.close()


def test_parquet_type_conflict_before_schema_is_fixed_does_not_fit() -> None:
    enc = ParquetEncoder(io.BytesIO(), "snappy", row_group_rows=1000)
    enc.write(Batch("t", (Column("a", "long"),), [[1]]))
    assert not enc.fits(Batch("t", (Column("a", "datetime"),), [["2026-01-01T00:00:00Z"]]))


def test_parquet_non_canonical_values_are_coerced() -> None:
    cols = (Column("n", "long"), Column("f", "real"), Column("b", "bool"), Column("s"), Column("t", "datetime"))
    rows = [["12", "1.5", "true", 3, datetime(2026, 1, 1, tzinfo=UTC)], [None, 2, "0", {"k": 1}, None]]
    table = batch_to_arrow(Batch("t", cols, rows))
    assert table.to_pylist() == [
        {"n": 12, "f": 1.5, "b": True, "s": "3", "t": datetime(2026, 1, 1, tzinfo=UTC)},
        {"n": None, "f": 2.0, "b": False, "s": '{"k":1}', "t": None},
    ]


def test_parquet_garbage_is_a_data_error() -> None:
    with pytest.raises(DataError, match="not a datetime"):
        batch_to_arrow(Batch("t", (Column("t", "datetime"),), [["yesterday"]]))
    with pytest.raises(DataError, match="'n'"):
        batch_to_arrow(Batch("t", (Column("n", "long"),), [["twelve"]]))


def test_empty_encoders_write_nothing_but_trailers() -> None:
    assert encode("parquet", "snappy", []) == b""
    assert gzip.decompress(encode("jsonl", "gzip", [])) == b""


def test_gzip_stream_is_standard_gzip() -> None:
    out = io.BytesIO()
    stream = GzipStream(out)
    stream.write(b"hello ")
    stream.write(b"world")
    stream.finish()
    assert gzip.decompress(out.getvalue()) == b"hello world"


def test_dumps_json_is_compact() -> None:
    assert dumps_json({"a": [1, None, True]}) == b'{"a":[1,null,true]}'
    assert (
        dumps_json({"t": datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=UTC)}) == b'{"t":"2026-01-01T00:00:00.000005+00:00"}'
    )


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        open_encoder("xml", io.BytesIO())


def test_parquet_wide_rows_cut_row_groups_at_the_byte_bound() -> None:
    """Row groups of wide rows end once ``ROW_GROUP_BYTES`` of Arrow data is pending, long
    before ``row_group_rows``; the pending bytes go back to the budget."""
    from shared.runtime.membudget import ByteBudget
    from shared.sinks.formats.parquet import ROW_GROUP_BYTES

    cols = (Column("n", "long"), Column("s"))
    wide = "x" * 2**16
    batches = [Batch("t", cols, [[i * 40 + j, wide] for j in range(40)]) for i in range(12)]  # ~2.6 MB each
    out, budget = io.BytesIO(), ByteBudget(2**30)
    enc = ParquetEncoder(out, "snappy", row_group_rows=25_000, budget=budget)
    for batch in batches:
        enc.write(batch)
    enc.close()
    meta = pq.ParquetFile(io.BytesIO(out.getvalue())).metadata
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    per_batch = 40 * (len(wide) + 12)
    assert sum(groups) == 480 and len(groups) > 1
    assert all(g * len(wide) >= ROW_GROUP_BYTES for g in groups[:-1])
    assert all(g * len(wide) < ROW_GROUP_BYTES + per_batch for g in groups)
    assert budget.used == 0 and budget.peak >= ROW_GROUP_BYTES
    assert pq.read_table(io.BytesIO(out.getvalue())).column("n").to_pylist() == list(range(480))

    larger = io.BytesIO()  # a sink's ``row_group_mb`` raises the bound: the same rows in one group
    enc = ParquetEncoder(larger, "snappy", row_group_rows=25_000, row_group_bytes=64 * 2**20)
    for batch in batches:
        enc.write(batch)
    enc.close()
    assert pq.ParquetFile(io.BytesIO(larger.getvalue())).metadata.num_row_groups == 1
