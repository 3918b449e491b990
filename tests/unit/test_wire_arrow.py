"""Column-wise decoding (``wire_arrow``) gives exactly the row path's values, or declines."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.sources.wire import parse_response, parse_result
from shared.sources.wire_arrow import decode_columns, rows_of

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "query-api"

COLUMNS = [
    {"name": "timestamp", "type": "datetime"}, {"name": "name", "type": "string"}, {"name": "id", "type": "guid"},
    {"name": "n", "type": "long"}, {"name": "small", "type": "int"}, {"name": "duration", "type": "real"},
    {"name": "ok", "type": "bool"}, {"name": "dims", "type": "dynamic"}, {"name": "elapsed", "type": "timespan"},
    {"name": "price", "type": "decimal"},
]  # fmt: skip
ROWS: list[list[Any]] = [
    ["2026-11-02T10:05:45.7334717Z", 'quote " back \\ tab \t nl \n', "g", 1, 2, 1.5, True,
     '{"a":"b","n":12}', "00:00:01", "1.50"],
    ["2026-11-02T10:05:45.7334710Z", "é 😀 \u0001", "", "42", "-7", "2.25", "False",
     '{"a": 1.0E+20, "b": "\\u00e9"}', "", ""],
    ["2026-11-02T10:05:45Z", "", None, None, None, None, None, None, None, None],
    ["2026-11-02T10:05:45.421Z", "x", "y", -(2**63), 2**31, 1e-7, "1", "{}", "1.02:03:04.5000000",
     "79228162514264337593543950335"],
    ["2026-11-02T10:05:45.0000000Z", "x", "y", 0, 0, 100.0, 0, '"text"', "x", "-0.0000000000000000000000000001"],
    ["2026-11-02T10:05:45.5Z", "x", "y", 5, 5, 5e-324, "TRUE", "not json", "x", "0"],
    ["2026-11-02T10:05:45.5Z", "x", "y", 5, 5, 0.1, False, "[]", "x", "1e5"],
    ["2026-11-02T10:05:45.5Z", "x", "y", 5, 5, 0.1, False, '[{"k":"v"},null]', "x", "2"],
]  # fmt: skip


def body(rows: list[list[Any]], columns: list[dict[str, str]] = COLUMNS, **extra: Any) -> bytes:
    return orjson.dumps({"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}], **extra})


@pytest.mark.parametrize(
    "data",
    [body(ROWS), (SAMPLES / "requests-response.json").read_bytes(),
     (SAMPLES / "exact-values-response.json").read_bytes(), body([])],
    ids=["edge-values", "requests-sample", "exact-values-sample", "no-rows"],
)  # fmt: skip
def test_columns_hold_exactly_what_the_row_path_makes(data: bytes) -> None:
    decoded = decode_columns(data)
    assert decoded is not None
    rows = parse_result(data)
    assert decoded.columns == rows.columns
    assert rows_of(decoded.table, decoded.columns) == rows.rows


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ((SAMPLES / "partial-result-200.json").read_bytes(), "partial result"),
        (body([ROWS[0], ROWS[0][:3]]), "ragged rows"),
        (body([["x"]], [{"name": "t", "type": "datetime"}]), "a datetime that does not parse"),
        (body([["2026-02-30T00:00:00Z"]], [{"name": "t", "type": "datetime"}]), "a day that does not exist"),
        (body([[1.5]], [{"name": "n", "type": "long"}]), "a fraction in a long"),
        (body([["1" + "0" * 20]], [{"name": "n", "type": "long"}]), "beyond 64 bits"),
        (body([["maybe"]], [{"name": "b", "type": "bool"}]), "text that is not a bool"),
        (body([["12,5"]], [{"name": "d", "type": "decimal"}]), "text that is not a decimal"),
        (body([[1]], [{"name": "x", "type": "sometype"}]), "a type it does not know"),
        (b"not json", "not JSON"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_declines_what_it_cannot_prove_equal(data: bytes, why: str) -> None:
    assert decode_columns(data) is None, why


def test_parse_response_falls_back_to_rows_and_flags_partial_results() -> None:
    assert parse_response(body([["x"]], [{"name": "t", "type": "datetime"}]), columnar=True).rows == [["x"]]
    partial = parse_response((SAMPLES / "partial-result-200.json").read_bytes(), columnar=True)
    assert partial.partial is not None and partial.rows == [] and partial.arrow is None
    typed = parse_response(body(ROWS), columnar=True)
    assert typed.arrow is not None and typed.num_rows == len(ROWS) and typed.rows == []


def test_exact_values_are_kept() -> None:
    decoded = decode_columns((SAMPLES / "exact-values-response.json").read_bytes())
    assert decoded is not None
    got = {row[1]: row for row in rows_of(decoded.table, decoded.columns)}
    assert got["decimal max"][2] == "79228162514264337593543950335"
    assert got["decimal min"][2] == "-79228162514264337593543950335"
    assert got["smallest step"][2] == "0.0000000000000000000000000001"
    assert got["scale kept"][2] == "1.50"
    assert got["decimal max"][3] == "10675199.02:48:05.4775807"
    assert got["decimal min"][3] == "-10675199.02:48:05.4775808"
    assert got["smallest step"][0] == "2026-11-02T10:00:00.9999999Z"  # the 100 ns digit
    assert got["decimal max"][0] == "2026-11-02T10:00:00.0000001Z"
    assert got["scale kept"][0] == "2026-11-02T10:00:01.500000Z"  # a zero 7th digit is not written
    assert got["empty"][2:4] == [None, None]


def _datetime_text(rnd: random.Random) -> str:
    day = rnd.choice(["2024-02-29", "2026-02-28", "2026-11-02", "2026-12-31", "0001-01-01", "9999-12-31"])
    clock = rnd.choice(["00:00:00", "10:05:45", "23:59:59"])
    digits = rnd.randint(0, 7)
    fraction = "".join(rnd.choice("0000000123456789") for _ in range(digits))
    return f"{day}T{clock}" + (f".{fraction}" if digits else "") + "Z"


@pytest.mark.parametrize("seed", range(20))
def test_datetimes_of_every_length_normalise_as_the_row_path_does(seed: int) -> None:
    """Mixed fraction lengths (the service trims trailing zeros), zero fractions, 7 digits ending in 0,
    nulls: every column the columnar path accepts holds the row path's values."""
    rnd = random.Random(seed)
    uniform = seed % 2 == 0  # half the columns hold one length only
    digits_text = _datetime_text(rnd)
    rows = [[None if rnd.random() < 0.05 else (digits_text if uniform and rnd.random() < 0.5 else _datetime_text(rnd))]
            for _ in range(200)]  # fmt: skip
    data = body(rows, [{"name": "t", "type": "datetime"}])
    decoded = decode_columns(data)
    assert decoded is not None
    assert rows_of(decoded.table, decoded.columns) == parse_result(data).rows


@pytest.mark.parametrize("bad", ["2026-02-29T00:00:00.5Z", "2026-04-31T10:00:00Z", "2026-11-02T24:00:00.1234567Z"])
def test_one_impossible_datetime_among_valid_ones_declines_the_answer(bad: str) -> None:
    rows = [["2026-11-02T10:05:45.123Z"], ["2026-11-02T10:05:46Z"], [bad], ["2026-11-02T10:05:47.1234567Z"]]
    assert decode_columns(body(rows, [{"name": "t", "type": "datetime"}])) is None
