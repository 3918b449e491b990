"""Exact values through every sink on Azurite: the largest and smallest decimals the service sends,
``timespan`` extremes and the 100 ns digit of datetimes, read back from JSONL, CSV, Parquet, Delta
and Table Storage (docs/mapping.md, "Exact values")."""

from __future__ import annotations

import csv
import gzip
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from deltalake import DeltaTable

from shared.model import Batch, Window
from shared.settings import SinkConfig, StorageConfig
from shared.sinks import build_sink
from shared.sinks.delta_table import storage_options
from shared.sources.wire import parse_response

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "query-api" / "exact-values-response.json"
W = Window(datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))
DECIMALS = {"decimal max": "79228162514264337593543950335", "decimal min": "-79228162514264337593543950335",
            "smallest step": "0.0000000000000000000000000001", "negative step": "-0.0000000000000000000000000001",
            "scale kept": "1.50", "empty": None}  # fmt: skip
TIMESPANS = {"decimal max": "10675199.02:48:05.4775807", "decimal min": "-10675199.02:48:05.4775808",
             "smallest step": "00:00:00.0000001", "negative step": "-00:00:00.0000001",
             "scale kept": "1.02:03:04.5000000", "empty": None}  # fmt: skip
TIMES = {"decimal max": "2026-11-02T10:00:00.0000001Z", "smallest step": "2026-11-02T10:00:00.9999999Z",
         "decimal min": "2026-11-02T10:00:00.1234567Z", "scale kept": "2026-11-02T10:00:01.500000Z"}  # fmt: skip


def batches(columnar: bool) -> list[Batch]:
    result = parse_response(SAMPLE.read_bytes(), columnar=columnar)
    assert (result.arrow is not None) is columnar
    if columnar:
        from shared.sources.wire_arrow import arrow_batch

        return [arrow_batch("exact", result.columns, result.arrow)]
    return [Batch("exact", result.columns, result.rows)]


def write(config: SinkConfig, data: list[Batch]) -> Any:
    sink = build_sink(config, pipeline="exact", table="exact")
    writer = sink.open(W)
    for batch in data:
        writer.write(batch)
    outputs = writer.commit()
    sink.write_manifest(W, outputs, {})
    return outputs


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "rows"])
def test_blob_formats_keep_every_digit(storage_conn: str, unique: str, columnar: bool) -> None:
    storage = StorageConfig(setting="AzureWebJobsStorage", conn_string=storage_conn)
    container = BlobServiceClient.from_connection_string(storage_conn).get_container_client(f"exact-{unique}")
    got: dict[str, dict[str, dict[str, Any]]] = {}
    for fmt, compression in (("jsonl", "gzip"), ("csv", "gzip"), ("parquet", "snappy")):
        config = SinkConfig(kind="blob", storage=storage, container=f"exact-{unique}", path=f"{fmt}/{{window}}",
                            format=fmt, compression=compression)  # fmt: skip
        (output,) = write(config, batches(columnar))
        data = container.download_blob(output.name).readall()
        if fmt == "jsonl":
            rows = [orjson.loads(line) for line in gzip.decompress(data).splitlines()]
        elif fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(gzip.decompress(data).decode(), newline="")))
        else:
            table = pq.read_table(io.BytesIO(data))
            assert table.schema.field("price").type == pa.string()
            assert table.schema.field("price").metadata == {b"kql_type": b"decimal"}
            rows = table.to_pylist()
        got[fmt] = {r["name"]: r for r in rows}
    for name, decimal in DECIMALS.items():
        assert got["jsonl"][name]["price"] == decimal  # a JSON string: every reader keeps every digit
        assert got["csv"][name]["price"] == (decimal or "")
        assert got["parquet"][name]["price"] == decimal
        for fmt in ("jsonl", "parquet"):
            assert got[fmt][name]["elapsed"] == TIMESPANS[name]
        assert got["csv"][name]["elapsed"] == (TIMESPANS[name] or "")
    for name, text in TIMES.items():
        assert got["jsonl"][name]["timestamp"] == text == got["csv"][name]["timestamp"]  # 100 ns kept
        micro = datetime.fromisoformat(text[:26]).replace(tzinfo=UTC)
        assert got["parquet"][name]["timestamp"] == micro  # Parquet holds microseconds
    assert got["jsonl"]["decimal max"]["count_"] == 9223372036854775807
    assert got["parquet"]["smallest step"]["ratio"] == 5e-324


def test_delta_and_table_storage_keep_every_digit(storage_conn: str, unique: str) -> None:
    storage = StorageConfig(setting="AzureWebJobsStorage", conn_string=storage_conn)
    write(SinkConfig(kind="delta", storage=storage, container=f"lake-{unique}", path="exact"), batches(True))
    dt = DeltaTable(f"az://lake-{unique}/exact", storage_options=storage_options(storage))
    lake = {r["name"]: r for r in pa.table(dt.to_pyarrow_dataset().to_table()).to_pylist()}
    write(SinkConfig(kind="table", storage=storage, container=f"exact{unique}"), batches(True))
    client = TableServiceClient.from_connection_string(storage_conn).get_table_client(f"exact{unique}")
    entities = {e["name"]: e for e in client.list_entities() if "name" in e}  # (the manifest entity has none)
    assert len(entities) == len(DECIMALS)
    for name, decimal in DECIMALS.items():
        assert lake[name]["price"] == decimal
        assert lake[name]["elapsed"] == TIMESPANS[name]
        assert entities[name].get("price") == decimal  # Table Storage has no decimal: the text, as a string
        assert entities[name].get("elapsed") == TIMESPANS[name]
    for name, text in TIMES.items():
        assert lake[name]["timestamp"] == datetime.fromisoformat(text[:26]).replace(tzinfo=UTC)
        assert entities[name]["timestamp"].tables_service_value == text  # Edm.DateTime keeps 100 ns
