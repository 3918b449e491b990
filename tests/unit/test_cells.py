"""The cell check before the sinks: which values keep their row, which send it to quarantine."""

from __future__ import annotations

import io
import math
from typing import Any

import pyarrow.parquet as pq
import pytest

from shared.model import Batch, Column
from shared.sinks.cells import split_unconvertible
from shared.sinks.formats import ParquetEncoder

KEPT: list[tuple[str, str, Any]] = [
    ("int beyond 32 bits", "int", 4294967296),
    ("int64 max", "long", 2**63 - 1),
    ("int64 min", "long", -(2**63)),
    ("numeric string in long", "long", "42"),
    ("whole float in int", "int", 7.0),
    ("NaN real", "real", math.nan),
    ("infinite real", "real", math.inf),
    ("numeric string in real", "real", "1.5"),
    ("bool as string", "bool", "True"),
    ("year 1 datetime", "datetime", "0001-01-01T00:00:00Z"),
    ("7 fractional digits", "datetime", "2026-11-02T10:05:45.7334717Z"),
    ("year 9999 datetime", "datetime", "9999-12-31T23:59:59.999999Z"),
    ("huge int in a string column", "string", 10**40),
    ("lone surrogate", "string", "\ud800"),
    ("anything dynamic", "dynamic", {"a": [1, 2**70]}),
]
REJECTED: list[tuple[str, str, Any]] = [
    ("int64 max + 1", "long", 2**63),
    ("huge int in int", "int", 2**64 - 1),
    ("negative beyond int64", "long", -(2**63) - 1),
    ("text in long", "long", "lots"),
    ("infinite float in long", "long", math.inf),
    ("text in real", "real", "fast"),
    ("int beyond float range", "real", 10**400),
    ("text in bool", "bool", "maybe"),
    ("not a datetime", "datetime", "yesterday"),
    ("month 13", "datetime", "2026-13-01T00:00:00Z"),
]


def batch(kql_type: str, value: Any) -> Batch:
    return Batch("t", (Column("id"), Column("v", kql_type)), [["a", 1 if kql_type != "string" else "x"], ["b", value]])


@pytest.mark.parametrize(("kql_type", "value"), [(t, v) for _, t, v in KEPT], ids=[i for i, _, _ in KEPT])
def test_values_every_sink_can_store_keep_their_row(kql_type: str, value: Any) -> None:
    b = batch(kql_type, value) if kql_type not in ("datetime",) else batch_dt(value)
    good, rejected = split_unconvertible(b)
    assert rejected == [] and good is b
    enc = ParquetEncoder(io.BytesIO(), "snappy")  # and the strictest writer takes the batch
    enc.write(good)


def batch_dt(value: Any) -> Batch:
    return Batch("t", (Column("id"), Column("v", "datetime")), [["a", "2026-11-02T10:00:00Z"], ["b", value]])


@pytest.mark.parametrize(("kql_type", "value"), [(t, v) for _, t, v in REJECTED], ids=[i for i, _, _ in REJECTED])
def test_a_cell_no_sink_can_store_rejects_only_its_row_with_column_and_reason(kql_type: str, value: Any) -> None:
    b = batch_dt(value) if kql_type == "datetime" else batch(kql_type, value)
    good, rejected = split_unconvertible(b)
    assert [r[0] for r in good.rows] == ["a"]
    [item] = rejected
    assert item.row == ["b", value] and item.column == "v" and "'v'" in item.reason and kql_type in item.reason
    out = io.BytesIO()
    enc = ParquetEncoder(out, "snappy")
    enc.write(good)
    enc.close()
    assert pq.read_table(io.BytesIO(out.getvalue())).num_rows == 1


def test_a_row_of_the_wrong_width_is_rejected_and_the_rest_kept() -> None:
    b = Batch("t", (Column("a", "long"), Column("b")), [[1, "x"], [2], [3, "z", "extra"], [4, "w"]])
    good, rejected = split_unconvertible(b)
    assert good.rows == [[1, "x"], [4, "w"]]
    assert [(r.row, r.column) for r in rejected] == [([2], None), ([3, "z", "extra"], None)]
    assert all("values for 2 columns" in r.reason for r in rejected)


def test_several_bad_cells_reject_each_row_once_in_order() -> None:
    cols = (Column("n", "long"), Column("t", "datetime"))
    rows: list[list[Any]] = [[1, "2026-11-02T10:00:00Z"], [2**70, "bad"], [3, "bad"], [2**70, None]]
    good, rejected = split_unconvertible(Batch("t", cols, rows))
    assert good.rows == [[1, "2026-11-02T10:00:00Z"]]
    assert [(r.row[0], r.column) for r in rejected] == [(2**70, "n"), (3, "t"), (2**70, "n")]


def test_without_a_quarantine_a_rejected_row_fails_loudly_instead_of_vanishing() -> None:
    from shared.errors import DataError
    from shared.model import Window
    from shared.sinks.rejects import CellGuard
    from tests.conftest import T0, H

    guard = CellGuard(None, "p", Window(T0, T0 + H))
    guard.open("")
    clean = Batch("t", (Column("n", "long"),), [[1]])
    assert guard.check(clean) is clean
    with pytest.raises(DataError, match=r"'n'.*no quarantine"):
        guard.check(Batch("t", (Column("n", "long"),), [[1], [2**70]]))
