"""``table_sink`` scenario: full-width rows into the Table sink vs. the store's own rate.

Rows are one hour of the emulator's ``requests`` (every classic column, canonical cells),
generated in this process so only the sink is measured. Two runs against the same Azurite:

* ``store`` — the sink's own entities, built beforehand, sent as plain 100-entity
  transactions from as many threads as the sink has lanes (one partition): what the store
  takes, no engine;
* ``sink`` — ``TableSink.open(window).write(batch)`` … ``commit()``: entity building,
  transactions, fencing and the stale-run cleanup, as the engine runs it.

Both count the partition back; a wrong count raises.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

__all__ = ["table_sink"]


def _rows(count: int, start: Any) -> tuple[tuple[Any, ...], list[list[Any]]]:
    from devtools.ai_emulator import Emulator, EmulatorConfig
    from devtools.ai_emulator.schema import resolve_table
    from shared.model import Column
    from shared.sources.wire import convert_rows

    emu = Emulator(EmulatorConfig(app_id="bench", workspace_id="bench", api_key="k", token="t"))
    emu.generate("requests", start, start + timedelta(hours=1), count=count, seed=3)
    schema = resolve_table("requests")
    columns = tuple(Column(c.name, c.type) for c in schema.columns)
    raw = [[r[c.name] for c in columns] for r in emu.expected("requests", start, start + timedelta(hours=1))]
    return columns, convert_rows(columns, raw)


def _count(client: Any, pk: str) -> int:
    return sum(1 for _ in client.query_entities("PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey"]))


def table_sink(spec: dict[str, Any]) -> dict[str, Any]:
    """Entities/s of the Table sink and of plain transactions of the same entities."""
    from azure.data.tables import TableServiceClient, UpdateMode

    from shared.durations import parse_timestamp
    from shared.model import Batch, Window
    from shared.settings import SinkConfig, StorageConfig
    from shared.sinks.table import LANES, TableSink
    from shared.sinks.table_entities import layout_of, row_entity

    count = int(spec.get("table_rows", 5_000))
    threads = int(spec.get("threads", LANES))  # as many in flight as the sink keeps
    start = parse_timestamp(spec["start"])
    window = Window(start, start + timedelta(hours=1))
    columns, rows = _rows(count, start)
    service = TableServiceClient.from_connection_string(spec["storage"])
    name = "bench" + spec["ledger_table"].removeprefix("bench")
    config = SinkConfig(kind="table", storage=StorageConfig("AzureWebJobsStorage", conn_string=spec["storage"]),
                        container=name)  # fmt: skip
    sink = TableSink(config, pipeline="bench", table="requests", service=service)
    client = service.get_table_client(name)
    client.create_table()

    # store: the same entities (other partition), 100 per transaction, `threads` in parallel
    layout = layout_of(columns)
    entities = [row_entity(layout, r, partition_key="store", run="r", part="main") for r in rows]
    chunks = [entities[i : i + 100] for i in range(0, len(entities), 100)]
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda c: client.submit_transaction([("upsert", e, {"mode": UpdateMode.REPLACE}) for e in c]),
                      chunks))  # fmt: skip
    store_s = time.perf_counter() - began
    if _count(client, "store") != len(rows):
        raise RuntimeError("store: wrong entity count")

    batch_rows = int(spec.get("batch_rows", 1_000))
    began = time.perf_counter()
    writer = sink.open(window)
    for i in range(0, len(rows), batch_rows):
        writer.write(Batch("requests", columns, rows[i : i + batch_rows]))
    writer.commit()
    sink_s = time.perf_counter() - began
    stored = _count(client, sink.partition_key(window))
    if stored != len(rows):
        raise RuntimeError(f"sink: {stored} entities for {len(rows)} rows")
    service.delete_table(name)
    return {
        "rows": len(rows), "seconds": sink_s, "store_seconds": store_s, "columns": len(columns),
        "sink_entities_per_s": round(len(rows) / sink_s), "store_entities_per_s": round(len(rows) / store_s),
        "ratio": round(store_s / sink_s, 3),
    }  # fmt: skip
