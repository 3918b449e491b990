"""One bad cell never strands a window: the engine moves every good row into every sink and
quarantines the row a sink could not store, with its column and reason."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from devtools import export_writer as ew
from shared.model import Window, format_ts
from tests.conftest import T0, H, blob_names, read_jsonl_gz

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
HOUR = T0 + 10 * H
WINDOW = Window(HOUR, HOUR + H)
STEM = "y=2026/m=11/d=02/h=10/20261102T100000Z"


def request(item_id: str, count: Any) -> bytes:
    doc = orjson.loads((SAMPLES / "continuous-export/Requests.jsonl").read_bytes().splitlines()[0])
    doc = copy.deepcopy(doc)
    doc["internal"]["data"]["id"] = item_id
    doc["request"][0]["count"] = count
    return orjson.dumps(doc)


def test_a_count_beyond_32_bits_moves_and_one_beyond_64_bits_is_quarantined_in_every_sink(
    make_engine, storage_conn: str, unique: str
) -> None:
    service = BlobServiceClient.from_connection_string(storage_conn)
    container, lake, archive, table = f"export-{unique}", f"lake-{unique}", f"archive-{unique}", f"rows{unique}"
    service.create_container(container)
    lines = [request("good-1", 1), request("wide", 4294967296), request("huge", 2**64 - 1), request("good-2", 5)]
    folder = ew.export_folder("Requests", HOUR)
    service.get_blob_client(container, folder + ew.export_blob_name(unique, HOUR)).upload_blob(b"\n".join(lines))
    sinks = [
        {"container": lake, "format": "parquet"},
        {"container": archive, "format": "jsonl"},
        {"container": archive, "format": "csv"},
        {"kind": "table", "table": table},
    ]
    pipeline = {
        "name": "req",
        "source": {"kind": "continuous_export", "container": container, "prefix": ew.export_prefix("Requests")},
        "window": {"size": "PT1H", "start": format_ts(HOUR), "delay": "PT5M", "max_per_tick": 1},
        "sinks": sinks,
    }
    engine = make_engine([pipeline], now=HOUR + H + 10 * H / 60)
    report = engine.tick()
    assert report.failed == 0 and report.done == 1, report.errors
    state = engine.ledger.get("req", WINDOW)
    assert state is not None and (state.status, state.rows, state.quarantined) == ("done", 3, 1)

    parquet = service.get_blob_client(lake, f"req/{STEM}.parquet").download_blob().readall()
    got = {r["itemId"]: r["itemCount"] for r in pq.read_table(io.BytesIO(parquet)).to_pylist()}
    assert got == {"good-1": 1, "wide": 4294967296, "good-2": 5}
    jsonl = {r["itemId"]: r["itemCount"] for r in read_jsonl_gz(storage_conn, archive, f"req/{STEM}.jsonl.gz")}
    assert jsonl == got
    assert f"req/{STEM}.csv.gz" in blob_names(storage_conn, archive, "req/")
    entities = (
        TableServiceClient.from_connection_string(storage_conn)
        .get_table_client(table)
        .query_entities("PartitionKey eq @pk", parameters={"pk": f"req_{WINDOW.key}"})
    )
    assert sorted(e["RowKey"] for e in entities) == ["good-1", "good-2", "wide"]

    quarantine = f"quarantine-{unique}"
    [name] = [n for n in blob_names(storage_conn, quarantine, f"req/{WINDOW.key}/") if n.endswith("_rows.jsonl")]
    data = service.get_blob_client(quarantine, name).download_blob().readall()
    [entry] = [orjson.loads(x) for x in data.splitlines()]
    assert entry["column"] == "itemCount" and entry["table"] == "requests"
    assert entry["row"]["itemId"] == "huge" and entry["row"]["itemCount"] == 2**64 - 1
    assert "itemCount" in entry["reason"]

    # A replay gives the same outcome, and quarantine holds the row once.
    engine.replayer.replay(engine.settings.pipelines[0], WINDOW.start, WINDOW.end)
    state = engine.ledger.get("req", WINDOW)
    assert state is not None and (state.status, state.rows, state.quarantined) == ("done", 3, 1)
    rows_files = [n for n in blob_names(storage_conn, quarantine, "req/") if n.endswith("_rows.jsonl")]
    assert rows_files == [name]
