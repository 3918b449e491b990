"""Delta sink end to end on Azurite: the engine writes a Delta table, read back by deltalake and DuckDB.

Rows are compared with the query API emulator's truth: exactly once after reruns, replays,
a crash between the commit and the ledger, late parts, checkpoint chunks and concurrent
writers; the table's history shows one commit per window.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from azure.storage.blob import BlobServiceClient
from deltalake import DeltaTable

from devtools.azurite import ACCOUNT, KEY
from shared.model import Window
from shared.settings import StorageConfig
from shared.sinks.delta_table import storage_options
from tests.conftest import T0, H, expected_rows, query_pipeline

TABLE = "requests"


@pytest.fixture()
def emu(emulator) -> Iterator[Any]:
    rows, size = emulator.config.max_rows, emulator.config.max_bytes
    yield emulator
    emulator.config.max_rows, emulator.config.max_bytes = rows, size
    emulator.faults.clear()


def delta_pipeline(name: str, table: str, emu: Any, container: str, **over: Any) -> dict[str, Any]:
    sink = {"kind": "delta", "container": container} | over.pop("sink", {})
    return query_pipeline(name, table, emu, container, **over) | {"sink": sink}


def options(conn: str) -> dict[str, str]:
    return storage_options(StorageConfig(setting="AzureWebJobsStorage", conn_string=conn))


def read_table(conn: str, container: str, path: str) -> tuple[DeltaTable, list[dict[str, Any]]]:
    dt = DeltaTable(f"az://{container}/{path}", storage_options=options(conn))
    return dt, pa.table(dt.to_pyarrow_dataset().to_table()).to_pylist()


def window_commits(dt: DeltaTable) -> list[str]:
    """Window keys of the table's data commits, oldest first (schema and maintenance left out)."""
    return [h["mover.window"] for h in reversed(dt.history()) if "mover.window" in h]


def ids(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(r["itemId"]) for r in rows)


def truth(emu: Any, start: datetime, end: datetime, table: str = TABLE) -> Counter[str]:
    return Counter(str(r["itemId"]) for r in expected_rows(emu, table, start, end))


def test_windows_land_once_each_and_read_back_typed(emu, make_engine, storage_conn, unique):
    container = f"lake-{unique}"
    engine = make_engine([delta_pipeline("req", TABLE, emu, container)], now=T0 + 3 * H + timedelta(minutes=10))
    assert [r.outcome for r in engine.tick().results] == ["done"] * 3
    dt, rows = read_table(storage_conn, container, "req")
    assert ids(rows) == truth(emu, T0, T0 + 3 * H)
    assert sorted(window_commits(dt)) == [Window(T0 + i * H, T0 + (i + 1) * H).key for i in range(3)]
    schema = pa.schema(dt.schema().to_arrow())
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert dt.metadata().partition_columns == ["date", "hour"]
    assert {(r["date"].isoformat(), r["hour"]) for r in rows} == {("2026-11-02", h) for h in range(3)}
    state = engine.ledger.get("req", Window(T0, T0 + H))
    (manifest,) = [o for o in state.outputs if o["kind"] == "manifest"]
    assert manifest["name"].startswith(f"delta:{container}/req@v")
