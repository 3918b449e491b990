"""devtools.export_writer on Azurite: exact counts for tests, and the live mode used by ``make run``."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from devtools import export_writer as ew
from shared import mapping
from shared.errors import DataError
from shared.settings import ExportSourceConfig, load_settings

HOUR = datetime(2026, 11, 2, 10, tzinfo=UTC)


def test_export_hour_has_the_documented_names_and_exact_counts(storage_conn, unique):
    container = BlobServiceClient.from_connection_string(storage_conn).get_container_client(f"export-{unique}")
    written = ew.write_export_hour(container, "Exceptions", HOUR, blobs=60, lines_per_blob=3, seed=1, bad_every=20)
    assert (len(written.names), written.rows, written.bad) == (60, 180, 9)
    assert len(set(written.item_ids)) == 180
    folder = "shop_11111111222233334444555555555555/Exceptions/2026-11-02/10/"
    listed = sorted(container.list_blob_names())
    assert listed == sorted(written.names) and all(n.startswith(folder) for n in listed)
    stamps = sorted(n.rsplit("_", 2)[-2] + n.rsplit("_", 1)[-1][:6] for n in listed)
    assert stamps[0] == "20261102100000" and stamps[-1] == "20261102105900"  # one a minute through the hour
    again = ew.write_export_hour(container, "Exceptions", HOUR, blobs=60, lines_per_blob=3, seed=1, bad_every=20)
    assert again.names == written.names and again.item_ids == written.item_ids  # seeded: deterministic


def test_every_generated_record_maps_to_its_table(unique):
    rng = random.Random(unique)
    for export_type in ew.EXPORT_TYPES:
        table, row = mapping.map_export_record(ew.export_record(export_type, rng=rng, event_time=HOUR))
        assert table == mapping.EXPORT_TYPES[export_type] and len(row) == len(mapping.schema(table))
    for kind in ew.DIAGNOSTIC_KINDS:
        table, row = mapping.map_diagnostic_record(ew.diagnostic_record(kind, rng=rng, time=HOUR))
        assert table == mapping.DIAGNOSTIC_TYPES[kind] and len(row) == len(mapping.schema(table))
    for line in ew.BAD_LINES:
        with pytest.raises((orjson.JSONDecodeError, DataError)):
            mapping.map_export_record(orjson.loads(line))


def test_live_writer_delivers_current_and_late_blobs(storage_conn, unique):
    service = BlobServiceClient.from_connection_string(storage_conn)
    now = HOUR + timedelta(minutes=30)
    rid = ew.RESOURCE_ID + unique.upper()
    writer = ew.LiveExportWriter(
        service, export_container=f"export-{unique}", export_types=("Requests", "Rdd"),
        diagnostic_kinds=("AppRequests",), resource_id=rid, every=0.01, lines=4, late_fraction=1.0, seed=1,
        clock=lambda: now,
    )
    step = writer.step()
    assert step.rows == 4 * (2 + 2 + 2)  # per type: a current blob and a late one; diagnostic: two appends
    export = service.get_container_client(f"export-{unique}")
    folders = sorted({n.rsplit("/", 1)[0] for n in export.list_blob_names()})
    assert folders == [f"{ew.export_prefix(t)}/2026-11-02/{h}" for t in ("Rdd", "Requests") for h in ("09", "10")]
    diag = service.get_container_client(ew.diagnostic_container("AppRequests"))
    for hour in (HOUR, HOUR - timedelta(hours=1)):
        props = diag.get_blob_client(ew.diagnostic_blob_name(hour, resource_id=rid)).get_blob_properties()
        assert props.blob_type == "AppendBlob"

    writer.start()
    deadline = time.monotonic() + 30
    while writer.written.rows < 3 * step.rows and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.stop()
    assert writer.written.rows >= 3 * step.rows and writer.late >= 6


def test_dev_pipelines_are_valid_settings(storage_conn):
    env = {"AzureWebJobsStorage": storage_conn,
           "MOVER_PIPELINES": json.dumps({"pipelines": ew.dev_pipelines(HOUR)})}
    settings = load_settings(env)
    sources = [p.source for p in settings.pipelines]
    assert all(isinstance(s, ExportSourceConfig) for s in sources)
    assert [(s.kind, s.table) for s in sources if isinstance(s, ExportSourceConfig)] == [
        ("continuous_export", "requests"), ("continuous_export", "dependencies"), ("diagnostic_settings", "requests"),
    ]
