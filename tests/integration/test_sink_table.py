"""Table sink against a real Azurite: round trip, limits, idempotent reruns, manifest entity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from azure.data.tables import EdmType, TableClient, TableServiceClient

from shared.model import Batch, Column, Window
from shared.settings import SinkConfig, StorageConfig
from shared.sinks import TableSink
from shared.sinks.table import TRUNCATED, unescape_key

W = Window(datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))
NOW = datetime(2026, 11, 2, 11, 6, tzinfo=UTC)
PK = "orders_20261102T100000Z"
COLUMNS = (
    Column("timestamp", "datetime"),
    Column("itemId", "guid"),
    Column("name", "string"),
    Column("count", "long"),
    Column("small", "int"),
    Column("duration", "real"),
    Column("success", "bool"),
    Column("props", "dynamic"),
)


def make_rows(n: int, seed: int = 0) -> list[list[Any]]:
    return [
        [
            f"2026-11-02T10:{i % 60:02d}:{i % 60:02d}.{i:07d}Z",
            f"item/{seed}#{i}",
            f"name {i} ü",
            2**40 + i,
            i,
            i / 4,
            i % 2 == 0,
            {"i": i, "tags": ["x"]} if i % 3 else None,
        ]
        for i in range(n)
    ]


@pytest.fixture()
def service(storage_conn: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(storage_conn)


@pytest.fixture()
def make_sink(service: TableServiceClient, storage_conn: str, unique: str) -> Callable[[], TableSink]:
    def make() -> TableSink:
        config = SinkConfig(
            kind="table",
            storage=StorageConfig(setting="TestStorage", conn_string=storage_conn),
            container=f"rows{unique}",
        )
        return TableSink(config, pipeline="orders", table="requests", service=service, clock=lambda: NOW)

    return make


def write(sink: TableSink, batches: list[Batch], part: str = "") -> Any:
    writer = sink.open(W, part=part)
    for b in batches:
        writer.write(b)
    return writer.commit()


def partition(client: TableClient, pk: str = PK) -> list[dict[str, Any]]:
    return sorted(client.query_entities("PartitionKey eq @pk", parameters={"pk": pk}), key=lambda e: e["RowKey"])


def test_round_trip_with_types_and_many_transactions(make_sink: Callable[[], TableSink]) -> None:
    sink = make_sink()
    rows = make_rows(250)
    [out] = write(sink, [Batch("requests", COLUMNS, rows[:130]), Batch("requests", COLUMNS, rows[130:])])
    assert out.name == f"table:{sink.table_name}/{PK}" and out.rows == 250
    assert out.extra["partition_key"] == PK
    entities = {unescape_key(e["RowKey"]): e for e in partition(sink.client)}
    assert len(entities) == 250
    for row in rows:
        e = entities[row[1]]
        assert e["timestamp"].tables_service_value == row[0]  # 100 ns digits kept
        assert e["timestamp"] == datetime.fromisoformat(row[0][:26]).replace(tzinfo=UTC)
        assert e["itemId"] == row[1] and e["name"] == row[2]
        assert e["count"].value == row[3] and e["count"].edm_type == EdmType.INT64
        assert e["small"] == row[4] and e["duration"] == row[5] and e["success"] is row[6]
        assert (orjson.loads(e["props"]) if "props" in e else None) == row[7]
        assert e["_mover_part"] == "main"


def test_rerun_is_idempotent_and_removes_rows_gone_upstream(make_sink: Callable[[], TableSink]) -> None:
    sink = make_sink()
    write(sink, [Batch("requests", COLUMNS, make_rows(120))])
    write(sink, [Batch("requests", COLUMNS, make_rows(120))])
    assert len(partition(sink.client)) == 120  # same keys: no duplicates
    [out] = write(sink, [Batch("requests", COLUMNS, make_rows(80))])
    assert len(partition(sink.client)) == 80 and out.rows == 80
    assert write(sink, []) == []  # zero rows: nothing left of this window
    assert partition(sink.client) == []


def test_late_part_keeps_main_rows(make_sink: Callable[[], TableSink]) -> None:
    sink = make_sink()
    write(sink, [Batch("requests", COLUMNS, make_rows(10))])
    [late] = write(sink, [Batch("requests", COLUMNS, make_rows(3, seed=1))], part="late-0001")
    assert late.name.endswith(f"/{PK}/late-0001")
    assert len(partition(sink.client)) == 13
    write(sink, [], part="late-0001")
    assert len(partition(sink.client)) == 10
    sink.remove(f"table:{sink.table_name}/{PK}")
    assert partition(sink.client) == []


def test_duplicate_item_ids_collapse(make_sink: Callable[[], TableSink]) -> None:
    sink = make_sink()
    row = make_rows(1)[0]
    again = [*row[:2], "second", *row[3:]]
    write(sink, [Batch("requests", COLUMNS, [row, again, [*row[:2], "third", *row[3:]]])])
    [entity] = partition(sink.client)
    assert entity["name"] == "third"


def test_limits_truncation_and_overflow(make_sink: Callable[[], TableSink]) -> None:
    sink = make_sink()
    wide = (Column("itemId"), Column("msg"), *(Column(f"c{i:03d}", "long") for i in range(300)))
    rows = [["wide", "m" * 40_000, *range(300)]]
    [out] = write(sink, [Batch("requests", wide, rows)])
    [e] = partition(sink.client)
    assert e["msg"].endswith(TRUNCATED) and len(e["msg"]) <= 32_000 and e["msg__truncated"] is True
    custom = [k for k in e if k not in ("PartitionKey", "RowKey")]
    assert len(custom) <= 252
    kept = {k: v.value for k, v in e.items() if k.startswith("c")}
    assert {**kept, **orjson.loads(e["_overflow"])} == {f"c{i:03d}": i for i in range(300)}
    assert out.rows == 1


def test_big_entities_are_sent_in_smaller_transactions(make_sink: Callable[[], TableSink]) -> None:
    sink = make_sink()
    cols = (Column("itemId"), *(Column(f"s{i}") for i in range(30)))
    rows = [[f"id{i}", *(f"{i}-" + "x" * 12_000 for _ in range(30))] for i in range(12)]  # 12 x 360 KB of JSON
    write(sink, [Batch("requests", cols, rows)])
    entities = partition(sink.client)
    assert len(entities) == 12
    assert all(not k.endswith("__truncated") for e in entities for k in e)
    assert entities[0]["s0"] == "0-" + "x" * 12_000


def test_entity_over_one_mib_is_truncated_not_failed(make_sink: Callable[[], TableSink]) -> None:
    sink = make_sink()
    cols = (Column("itemId"), *(Column(f"s{i}") for i in range(30)))
    rows = [["big", *("é" * 15_000 for _ in range(30))]]  # 0.9 MB as UTF-16, 2.7 MB as JSON
    write(sink, [Batch("requests", cols, rows)])
    [e] = partition(sink.client)
    flags = [k for k in e if k.endswith("__truncated")]
    assert flags and all(e[k] is True for k in flags)
    assert all(e[k[: -len("__truncated")]].endswith(TRUNCATED) for k in flags)
    assert sum(len(e[f"s{i}"]) for i in range(30)) > 100_000  # cut to fit, not emptied


def test_rows_without_item_id_get_stable_hash_keys(make_sink: Callable[[], TableSink]) -> None:
    sink = make_sink()
    cols = (Column("name"), Column("n", "long"))
    write(sink, [Batch("requests", cols, [["a", 1], ["b", 2]])])
    write(sink, [Batch("requests", cols, [["b", 2], ["a", 1]])])
    keys = [e["RowKey"] for e in partition(sink.client)]
    assert len(keys) == 2 and all(k.startswith("h_") for k in keys)


def test_manifest_entity(make_sink: Callable[[], TableSink]) -> None:
    sink = make_sink()
    outs = write(sink, [Batch("requests", COLUMNS, make_rows(5))])
    m = sink.write_manifest(W, outs, {"attempt": 3})
    assert m.name == f"table:{sink.table_name}/orders_manifest/20261102T100000Z" and m.rows == 5
    e = sink.client.get_entity("orders_manifest", "20261102T100000Z")
    assert e["rows"].value == 5 and e["partition"] == PK
    assert e["window_start"] == W.start and e["window_end"] == W.end and e["written_at"] == NOW
    assert orjson.loads(e["files"])[0]["name"] == outs[0].name
    assert orjson.loads(e["schema"]) == [{"name": c.name, "type": c.type} for c in COLUMNS]
    assert orjson.loads(e["info"]) == {"attempt": 3}
    sink.remove(m.name)
    assert partition(sink.client, "orders_manifest") == []


def test_transaction_rejected_as_too_large_is_split(
    make_sink: Callable[[], TableSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the size estimate is ever wrong, the service's 413 splits the transaction."""
    import shared.sinks.table_writer as table_module

    monkeypatch.setattr(table_module, "MAX_BATCH_BYTES", 1 << 40)
    sink = make_sink()
    cols = (Column("itemId"), *(Column(f"s{i}") for i in range(30)))
    rows = [[f"id{i}", *("x" * 12_000 for _ in range(30))] for i in range(12)]  # 4.3 MB in one request
    write(sink, [Batch("requests", cols, rows)])
    assert len(partition(sink.client)) == 12
