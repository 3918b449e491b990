"""Rows → Table entities within every service limit (pure; the real service is in integration)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from azure.data.tables import EdmType

from shared.errors import DataError
from shared.model import Column
from shared.sinks.table_entities import (
    MAX_PROPERTIES,
    MAX_STRING,
    TRUNCATED,
    entity_size,
    escape_key,
    layout_of,
    payload_size,
    property_names,
    row_entity,
    unescape_key,
)

SYSTEM = {"PartitionKey", "RowKey"}


def entity(columns: tuple[Column, ...], row: list[Any]) -> dict[str, Any]:
    return row_entity(layout_of(columns), row, partition_key="p_20261102T100000Z", run="r1", part="")


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain-id_123", "plain-id_123"),
        ("a/b", "a%2Fb"),
        ("a\\b", "a%5Cb"),
        ("#?", "%23%3F"),
        ("100%", "100%25"),
        ("tab\there\x00\x7f\x85", "tab%09here%00%7F%85"),
        ("ünïcode ok", "ünïcode ok"),
    ],
    ids=["plain", "slash", "backslash", "hash-question", "percent", "controls", "unicode"],
)
def test_escape_key(raw: str, escaped: str) -> None:
    assert escape_key(raw) == escaped
    assert unescape_key(escaped) == raw


@pytest.mark.parametrize(
    ("names", "props"),
    [
        (["a", "b_c"], ["a", "b_c"]),
        (["customDimensions.env", "x-y"], ["customDimensions_env", "x_y"]),
        (["1st", ""], ["_1st", "_"]),
        (["PartitionKey", "RowKey", "Timestamp", "ETag"], ["PartitionKey_", "RowKey_", "Timestamp_", "ETag_"]),
        (["a.b", "a_b", "a-b"], ["a_b", "a_b_2", "a_b_3"]),
        (["timestamp", "_ItemId"], ["timestamp", "_ItemId"]),
    ],
    ids=["valid", "dots-dashes", "leading-digit-empty", "reserved", "collisions", "kept-as-is"],
)
def test_property_names(names: list[str], props: list[str]) -> None:
    assert property_names(names) == props


def test_types_and_keys() -> None:
    cols = (
        Column("timestamp", "datetime"),
        Column("itemId", "guid"),
        Column("n", "long"),
        Column("i", "int"),
        Column("f", "real"),
        Column("ok", "bool"),
        Column("d", "dynamic"),
        Column("gone", "string"),
        Column("old", "datetime"),
    )
    e = entity(cols, ["2026-11-02T10:00:00.1234567Z", "a/b#1", 5, 7, 1, True, {"k": [1]}, None, "1500-01-01T00:00:00Z"])
    assert e["RowKey"] == "a%2Fb%231"
    assert e["timestamp"] == ("2026-11-02T10:00:00.1234567Z", EdmType.DATETIME)
    assert e["n"] == (5, EdmType.INT64)
    assert e["i"] == 7 and e["f"] == 1.0 and isinstance(e["f"], float)
    assert e["ok"] is True
    assert e["d"] == '{"k":[1]}'
    assert "gone" not in e  # null = absent property
    assert e["old"] == "1500-01-01T00:00:00Z"  # before Edm.DateTime's 1601: kept as text
    assert e["_mover_run"] == "r1" and e["_mover_part"] == "main"


@pytest.mark.parametrize(
    ("columns", "row", "expected"),
    [
        ((Column("itemId"), Column("id")), ["item", "other"], "item"),
        ((Column("_ItemId"), Column("x")), ["la-item", 1], "la-item"),
        ((Column("id"), Column("x")), ["legacy", 1], "legacy"),
        ((Column("itemId"), Column("id")), [None, "fallback"], "fallback"),
    ],
    ids=["itemId", "_ItemId", "id", "null-itemId-falls-back"],
)
def test_row_key_from_item_id(columns: tuple[Column, ...], row: list[Any], expected: str) -> None:
    assert entity(columns, row)["RowKey"] == expected


def test_row_key_hash_is_stable_and_order_independent() -> None:
    a = entity((Column("x"), Column("d", "dynamic")), ["1", {"b": 1, "a": 2}])
    b = entity((Column("d", "dynamic"), Column("x")), [{"a": 2, "b": 1}, "1"])
    c = entity((Column("x"), Column("d", "dynamic")), ["2", {"b": 1, "a": 2}])
    assert a["RowKey"] == b["RowKey"] != c["RowKey"]
    assert a["RowKey"].startswith("h_") and len(a["RowKey"]) == 34


def test_very_long_id_is_hashed() -> None:
    assert entity((Column("itemId"),), ["x" * 2000])["RowKey"].startswith("h_")


def test_long_string_is_truncated_with_marker_and_flag() -> None:
    e = entity((Column("itemId"), Column("msg"), Column("d", "dynamic")), ["k", "x" * 40_000, {"big": "y" * 40_000}])
    assert len(e["msg"]) == MAX_STRING and e["msg"].endswith(TRUNCATED)
    assert e["msg"].startswith("x" * 1000)
    assert e["msg__truncated"] is True
    assert e["d__truncated"] is True and e["d"].startswith('{"big":"yyy')


def test_astral_characters_count_twice() -> None:
    e = entity((Column("itemId"), Column("emoji")), ["k", "🎉" * 20_000])  # 40,000 UTF-16 units
    assert e["emoji__truncated"] is True
    assert len(e["emoji"].encode("utf-16-le")) // 2 <= MAX_STRING


def test_entity_stays_under_one_mib() -> None:
    cols = (Column("itemId"), *(Column(f"c{i}") for i in range(60)))
    e = entity(cols, ["k", *("z" * 30_000 for _ in range(60))])  # ~3.6 MB of UTF-16
    assert entity_size(e) <= 1_000_000
    assert any(k.endswith("__truncated") for k in e)
    assert len([k for k in e if k not in SYSTEM]) <= MAX_PROPERTIES


def test_more_than_252_columns_overflow_into_json() -> None:
    cols = (Column("itemId"), *(Column(f"c{i:03d}", "long") for i in range(300)))
    e = entity(cols, ["k", *range(300)])
    assert len([k for k in e if k not in SYSTEM]) <= MAX_PROPERTIES
    overflow = orjson.loads(e["_overflow"])
    kept = {k: v[0] for k, v in e.items() if k.startswith("c")}
    assert {**kept, **overflow} == {f"c{i:03d}": i for i in range(300)}
    assert next(iter(overflow)) == f"c{len(kept):03d}"  # overflow continues in column order


def test_many_truncated_columns_still_fit_the_property_limit() -> None:
    cols = tuple(Column(f"c{i}") for i in range(260))
    e = entity(cols, ["s" * 5_000 for _ in range(260)])
    assert len([k for k in e if k not in SYSTEM]) <= MAX_PROPERTIES
    assert entity_size(e) <= 1_000_000


def test_wrong_row_length_is_a_data_error() -> None:
    with pytest.raises(DataError):
        entity((Column("a"), Column("b")), ["x"])


def test_payload_estimate_is_an_upper_bound() -> None:
    e = entity((Column("itemId"), Column("s"), Column("u")), ["k", 'q"uote\\' * 100, "ü\x01" * 100])
    assert payload_size(e) >= len(json.dumps({k: v[0] if isinstance(v, tuple) else v for k, v in e.items()}))
