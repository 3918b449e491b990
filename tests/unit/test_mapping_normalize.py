"""The one normalisation every source's rows get, and the export rules that make cells equal."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared import mapping
from shared.mapping.normalize import normalize_rows, row_normalizer
from shared.model import Column
from shared.sources.wire import convert_rows

COLUMNS = (
    Column("t", "datetime"),
    Column("s"),
    Column("g", "guid"),
    Column("span", "timespan"),
    Column("d", "dynamic"),
    Column("n", "long"),
    Column("b", "bool"),
)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (["2026-11-02T10:05:45.7334717Z", "", "", "", "", 0, False],
         ["2026-11-02T10:05:45.7334717Z", None, None, None, None, 0, False]),
        (["2026-11-02T10:05:45.0000000Z", "x", "g", "00:00:01", {}, None, None],
         ["2026-11-02T10:05:45Z", "x", "g", "00:00:01", None, None, None]),
        (["2026-11-02T10:05:45Z", " ", None, None, [], 1, True],
         ["2026-11-02T10:05:45Z", " ", None, None, None, 1, True]),
        (["2026-11-02T12:05:45.5+02:00", None, None, None, {"a": ""}, 2, None],
         ["2026-11-02T10:05:45.500000Z", None, None, None, {"a": ""}, 2, None]),
        (["yesterday", None, None, None, [0], 3, None], ["yesterday", None, None, None, [0], 3, None]),
    ],
    ids=["empties-and-7-digits", "zero-fraction-and-empty-object", "space-kept-empty-list", "offset-and-nested", "bad"],
)  # fmt: skip
def test_normalize_rows(row: list[Any], expected: list[Any]) -> None:
    assert normalize_rows(COLUMNS, [list(row)]) == [expected]


def test_the_row_normalizer_of_the_blob_mappers_agrees_on_canonical_rows() -> None:
    rows = [
        ["2026-11-02T10:05:45.733471Z", "", "g", "", None, 1, True],
        ["2026-11-02T10:05:45Z", "a", "", "x", {"k": 1}, None, None],
    ]
    one = row_normalizer(COLUMNS)
    assert [one(list(r)) for r in rows] == normalize_rows(COLUMNS, copy.deepcopy(rows))


def test_query_cells_come_out_normalised() -> None:
    cols = (Column("timestamp", "datetime"), Column("source"), Column("customDimensions", "dynamic"))
    assert convert_rows(cols, [["2026-11-02T10:05:45.7334717Z", "", ""]]) == [
        ["2026-11-02T10:05:45.7334717Z", None, None]  # the 100 ns digit is kept
    ]


def _request(url: Any, url_data: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"id": "1", "name": "GET /"}
    if url is not None:
        item["url"] = url
    if url_data is not None:
        item["urlData"] = url_data
    return {"request": [item], "context": {"data": {"eventTime": "2026-11-02T10:00:00Z"}}}


@pytest.mark.parametrize(
    ("url", "url_data", "expected"),
    [
        ("/api/orders?id=1", {"host": "shop.example.com", "base": "/api/orders"}, "https://shop.example.com/api/orders?id=1"),
        ("https://full.example.com/x", {"host": "other"}, "https://full.example.com/x"),
        (None, {"host": "shop.example.com", "base": "/cart"}, "https://shop.example.com/cart"),
        ("/x", {"host": "h.example", "protocol": "http", "port": 8080}, "http://h.example:8080/x"),
        ("/x", {"host": "h.example", "port": 443}, "https://h.example/x"),
        ("x", {"host": "h.example"}, "https://h.example/x"),
        ("/x", {"base": "/x"}, "/x"),
        ("/x", None, "/x"),
        ("", {"host": ""}, None),
    ],
    ids=["path-and-host", "full-url-kept", "base-when-no-url", "scheme-and-port", "default-port", "relative",
         "no-host", "no-url-data", "nothing"],
)  # fmt: skip
def test_export_url_is_rebuilt_from_url_data_when_it_has_no_host(url: Any, url_data: Any, expected: Any) -> None:
    _, row = mapping.map_export_record(_request(url, url_data))
    names = [c.name for c in mapping.schema("requests")]
    assert dict(zip(names, row, strict=True))["url"] == expected


def test_diagnostic_rows_without_an_item_id_get_a_stable_one_from_their_content() -> None:
    record = {"Type": "AppTraces", "time": "2026-11-02T10:00:00Z", "Message": "hello", "OperationId": "op"}
    names = [c.name for c in mapping.schema("traces")]
    first = dict(zip(names, mapping.map_diagnostic_record(record)[1], strict=True))["itemId"]
    again = dict(zip(names, mapping.map_diagnostic_record(dict(reversed(record.items())))[1], strict=True))["itemId"]
    other = dict(zip(names, mapping.map_diagnostic_record(record | {"Message": "bye"})[1], strict=True))["itemId"]
    given = dict(zip(names, mapping.map_diagnostic_record(record | {"_ItemId": "abc"})[1], strict=True))["itemId"]
    assert first == again and len(first) == 36 and other != first and given == "abc"
