"""ExportBlobSource against real Azurite: paging, streaming, quarantine, consumed records, re-sweeps.

The engine-level behaviour (ledger, sinks, ticks) is in test_export_engine.py; these tests
drive the source directly so each property is pinned down on its own.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from devtools import export_writer as ew
from shared import mapping
from shared.errors import FatalError
from shared.model import Window
from shared.settings import ExportSourceConfig, StorageConfig
from shared.sources import export_blobs
from shared.sources.base import LatePlan
from shared.sources.export_blobs import ExportBlobSource
from shared.sources.export_state import STATE_CONTAINER
from shared.windows import WindowState

HOUR = datetime(2026, 11, 2, 10, tzinfo=UTC)
WINDOW = Window(HOUR, HOUR + timedelta(hours=1))
CE_TEMPLATE = "{prefix}/{yyyy}-{MM}-{dd}/{HH}/"
DS_TEMPLATE = "{prefix}/y={yyyy}/m={MM}/d={dd}/h={HH}/m=00/"


@pytest.fixture()
def service(storage_conn) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(storage_conn)


def make_source(conn, container, unique, *, kind="continuous_export", prefix=None, table="requests", **over):
    storage = StorageConfig("AzureWebJobsStorage", conn_string=conn)
    template = CE_TEMPLATE if kind == "continuous_export" else DS_TEMPLATE
    config = ExportSourceConfig(
        kind=kind, storage=storage, container=container,
        prefix=prefix if prefix is not None else ew.export_prefix("Requests"),
        folder_template=over.pop("folder_template", template), table=table,
    )
    config = replace(config, **over)
    return ExportBlobSource(config, pipeline=f"p-{unique}", state=storage, quarantine_container=f"quarantine-{unique}")


def drain(source, batches):
    rows = []
    for batch in batches:
        assert batch.columns == source.columns
        assert len(batch) <= source.config.batch_rows
        rows.extend(batch.rows)
    return rows


def item_ids(source, rows):
    index = [c.name for c in source.columns].index("itemId")
    return [r[index] for r in rows]


def done_state(extra, window=WINDOW) -> WindowState:
    """What the ledger hands back: the extra survives a JSON round trip."""
    return WindowState(window=window, status="done", extra=json.loads(json.dumps(extra)))


def quarantine_lines(service, unique):
    container = service.get_container_client(f"quarantine-{unique}")
    out = {}
    for name in sorted(container.list_blob_names()):
        out[name] = [orjson.loads(line) for line in container.download_blob(name).readall().splitlines()]
    return out


def test_hour_of_520_blobs_across_listing_pages_moves_every_row_once(service, storage_conn, unique):
    container = service.get_container_client(f"export-{unique}")
    written = ew.write_export_hour(container, "Requests", HOUR, blobs=520, lines_per_blob=40, seed=unique)
    assert len(written.names) == 520 and written.rows == 20_800
    source = make_source(storage_conn, f"export-{unique}", unique, list_page_size=100)
    began = time.perf_counter()
    rows = drain(source, source.read(WINDOW))
    seconds = time.perf_counter() - began
    print(f"\nEXPORT_READ {{\"blobs\": 520, \"rows\": {len(rows)}, \"seconds\": {seconds:.2f}, "
          f"\"rows_per_s\": {len(rows) / seconds:.0f}, \"mb\": {source.stats.bytes / 1e6:.1f}}}")
    assert len(rows) == 20_800
    assert sorted(item_ids(source, rows)) == sorted(written.item_ids)  # each row once, none missing
    assert source.stats.list_pages == 6  # 520 blobs in pages of 100
    summary = source.summary()
    assert (summary.source_count, summary.quarantined) == (20_800, 0)
    extra = summary.extra
    assert (extra["blobs"], extra["parts"], extra["kind"]) == (520, 0, "continuous_export")
    assert "consumed" not in extra
    assert extra["consumed_ref"].startswith(f"{STATE_CONTAINER}/p-{unique}/20261102T100000Z/consumed-")
    assert len(orjson.dumps(extra)) < 2_000  # the ledger's Extra stays small however big the folder
    # The spilled record is the full consumed list and re-sweeps read it back.
    assert source.resweep(WINDOW, done_state(extra)) is None


def test_small_folder_keeps_its_consumed_record_inline(service, storage_conn, unique):
    container = service.get_container_client(f"export-{unique}")
    written = ew.write_export_hour(container, "Requests", HOUR, blobs=3, lines_per_blob=2, seed=unique)
    source = make_source(storage_conn, f"export-{unique}", unique)
    rows = drain(source, source.read(WINDOW))
    assert len(rows) == 6
    extra = source.summary().extra
    folder = ew.export_folder("Requests", HOUR)
    assert extra["folder"] == folder
    assert [e[0] for e in extra["consumed"]] == sorted(n[len(folder):] for n in written.names)
    assert all(e[2] > 0 and e[3] == 2 and e[4] == 0 for e in extra["consumed"])  # length, lines, block blob
    assert not service.get_container_client(STATE_CONTAINER).exists() or not list(
        service.get_container_client(STATE_CONTAINER).list_blob_names(name_starts_with=f"p-{unique}/")
    )


def test_rows_are_moved_as_delivered_not_filtered_by_event_time(service, storage_conn, unique):
    """A blob delivered at 10:00:30 holds events from 09:58-10:00: they belong to the 10:00 folder."""
    container = service.get_container_client(f"export-{unique}")
    ew.write_export_blob(container, "Requests", HOUR + timedelta(seconds=30), lines=50, seed=unique)
    source = make_source(storage_conn, f"export-{unique}", unique)
    rows = drain(source, source.read(WINDOW))
    times = sorted(r[0] for r in rows)
    assert len(rows) == 50 and times[0] < "2026-11-02T10:00:00Z" <= times[-1]


def test_older_nested_folder_layout_via_template(service, storage_conn, unique):
    container = service.get_container_client(f"export-{unique}")
    for hour, blobs in ((HOUR, 4), (HOUR + timedelta(hours=1), 2)):
        ew.write_export_hour(container, "Requests", hour, blobs=blobs, lines_per_blob=5, seed=unique, nested=True)
    source = make_source(storage_conn, f"export-{unique}", unique, folder_template="{prefix}/{yyyy}/{MM}/{dd}/{HH}/")
    assert len(drain(source, source.read(WINDOW))) == 20


def test_lines_straddling_download_ranges_are_joined(service, storage_conn, unique, monkeypatch):
    monkeypatch.setattr(export_blobs, "CHUNK_BYTES", 777)  # many ranges per blob, lines cut mid-way
    container = service.get_container_client(f"export-{unique}")
    written = ew.write_export_hour(container, "Requests", HOUR, blobs=3, lines_per_blob=30, seed=unique, bad_every=3)
    source = make_source(storage_conn, f"export-{unique}", unique, batch_rows=100, download_concurrency=3)
    rows = drain(source, source.read(WINDOW))
    assert sorted(item_ids(source, rows)) == sorted(written.item_ids)
    assert source.summary().quarantined == 3
    [lines] = quarantine_lines(service, unique).values()
    assert [q["line_no"] for q in lines] == [31, 32, 33]  # after the 30 good lines of the third blob


def test_malformed_lines_are_quarantined_with_reason_and_rewritten_on_rerun(service, storage_conn, unique):
    container = service.get_container_client(f"export-{unique}")
    good = ew.write_export_hour(container, "Requests", HOUR, blobs=2, lines_per_blob=3, seed=unique)
    rdd = ew.export_record("Rdd", rng=random.Random(1), event_time=HOUR + timedelta(minutes=3))
    bad_blob = ew.write_export_blob(
        container, "Requests", HOUR + timedelta(minutes=40), lines=2, seed=unique,
        bad=(*ew.BAD_LINES, b"", b"   ", orjson.dumps(rdd), b"\xff\xfe not utf-8"),
    )
    source = make_source(storage_conn, f"export-{unique}", unique)
    rows = drain(source, source.read(WINDOW))
    assert len(rows) == good.rows + 2
    summary = source.summary()
    assert summary.quarantined == 5  # 3 BAD_LINES + the Rdd record + the non-UTF-8 line; blank lines are not records
    assert summary.source_count == good.rows + 2 + 5
    first = quarantine_lines(service, unique)
    [(name, lines)] = first.items()
    source_blob = bad_blob.names[0]
    assert name == f"p-{unique}/20261102T100000Z/main/{source_blob}.jsonl"
    assert [q["line_no"] for q in lines] == [3, 4, 5, 8, 9]  # physical line numbers (blank lines 6, 7 skipped)
    assert all(q["source_blob"] == source_blob and q["container"] == f"export-{unique}" for q in lines)
    assert lines[0]["line"] == ew.BAD_LINES[0].decode() and lines[0]["reason"].startswith("invalid JSON")
    assert "no known telemetry payload" in lines[1]["reason"]
    assert "eventTime" in lines[2]["reason"] and "'yesterday'" in lines[2]["reason"]
    assert "dependencies record in a pipeline of table requests" in lines[3]["reason"]
    assert lines[3]["line"] == orjson.dumps(rdd).decode()
    assert lines[4]["line"] == "\\xff\\xfe not utf-8" and lines[4]["reason"].startswith("invalid JSON")
    again = make_source(storage_conn, f"export-{unique}", unique)
    assert len(drain(again, again.read(WINDOW))) == len(rows)
    assert quarantine_lines(service, unique) == first  # same name, same lines: no duplicates


def test_late_blob_is_a_part_moved_once_and_recorded_as_union(service, storage_conn, unique):
    container = service.get_container_client(f"export-{unique}")
    first = ew.write_export_hour(container, "Requests", HOUR, blobs=4, lines_per_blob=5, seed=unique)
    source = make_source(storage_conn, f"export-{unique}", unique)
    drain(source, source.read(WINDOW))
    state = done_state(source.summary().extra)
    assert make_source(storage_conn, f"export-{unique}", unique).resweep(WINDOW, state) is None

    late = ew.write_export_blob(container, "Requests", HOUR + timedelta(minutes=75), lines=7, seed=unique, hour=HOUR)
    plan = make_source(storage_conn, f"export-{unique}", unique).resweep(WINDOW, state)
    assert plan is not None and (plan.kind, plan.part) == ("part", "late-0001")
    assert "1 new blob(s)" in plan.reason
    part_source = make_source(storage_conn, f"export-{unique}", unique)
    plan = replace(plan, payload=json.loads(json.dumps(plan.payload)))  # a plan survives JSON (queue, logs)
    rows = drain(part_source, part_source.read_part(WINDOW, plan))
    assert sorted(item_ids(part_source, rows)) == sorted(late.item_ids)  # only the late rows
    summary = part_source.summary()
    assert (summary.source_count, summary.quarantined) == (7, 0)
    union = summary.extra
    assert (union["blobs"], union["parts"]) == (5, 1)
    folder = ew.export_folder("Requests", HOUR)
    assert {e[0] for e in union["consumed"]} == {n[len(folder):] for n in first.names + late.names}
    state = done_state(union)
    assert make_source(storage_conn, f"export-{unique}", unique).resweep(WINDOW, state) is None  # moved once

    ew.write_export_blob(container, "Requests", HOUR + timedelta(minutes=90), lines=1, seed=unique, hour=HOUR)
    plan = make_source(storage_conn, f"export-{unique}", unique).resweep(WINDOW, state)
    assert plan is not None and plan.part == "late-0002"


def test_rewritten_block_blob_asks_for_a_full_rerun(service, storage_conn, unique):
    container = service.get_container_client(f"export-{unique}")
    written = ew.write_export_hour(container, "Requests", HOUR, blobs=2, lines_per_blob=3, seed=unique)
    source = make_source(storage_conn, f"export-{unique}", unique)
    drain(source, source.read(WINDOW))
    state = done_state(source.summary().extra)
    container.upload_blob(written.names[0], b"", overwrite=True)  # emptied: not a blob with data any more
    assert make_source(storage_conn, f"export-{unique}", unique).resweep(WINDOW, state) is None  # deleted-like: ignored
    data = orjson.dumps(ew.export_record("Requests", rng=random.Random(2), event_time=HOUR)) + b"\n"
    container.upload_blob(written.names[1], data, overwrite=True)
    plan = make_source(storage_conn, f"export-{unique}", unique).resweep(WINDOW, state)
    assert plan is not None and plan.kind == "replace" and "rewritten" in plan.reason


def test_append_blob_growth_is_read_from_where_the_window_stopped(service, storage_conn, unique):
    rid = ew.RESOURCE_ID + unique.upper()
    container = service.get_container_client("insights-logs-apprequests")

    def source():
        return make_source(
            storage_conn, "insights-logs-apprequests", unique, kind="diagnostic_settings",
            prefix=ew.diagnostic_prefix(rid),
        )

    first = ew.write_diagnostic_hour(
        container, "AppRequests", HOUR, appends=3, lines_per_append=4, seed=unique, resource_id=rid
    )
    reader = source()
    rows = drain(reader, reader.read(WINDOW))
    assert len(rows) == first.rows == 12
    extra = reader.summary().extra
    [entry] = extra["consumed"]
    assert entry[0] == "PT1H.json" and entry[3] == 12 and entry[4] == 1  # 12 lines, append blob
    state = done_state(extra)
    assert source().resweep(WINDOW, state) is None

    bad = b'{"Type":"AppRequests","time":"nope"}'
    grown = ew.append_diagnostic(
        container, "AppRequests", HOUR, lines=5, seed=unique, received=HOUR + timedelta(minutes=61), bad=(bad,),
        resource_id=rid,
    )
    plan = source().resweep(WINDOW, state)
    assert plan is not None and plan.kind == "part" and "1 grown append blob(s)" in plan.reason
    part = source()
    late_rows = drain(part, part.read_part(WINDOW, plan))
    assert len(late_rows) == grown.rows == 5
    op_id = [c.name for c in part.columns].index("operation_Id")
    assert {r[op_id] for r in late_rows}.isdisjoint({r[op_id] for r in rows})  # only the appended records
    summary = part.summary()
    assert (summary.source_count, summary.quarantined) == (6, 1)
    [entry] = summary.extra["consumed"]
    size = container.get_blob_client(ew.diagnostic_blob_name(HOUR, resource_id=rid)).get_blob_properties().size
    assert (entry[2], entry[3]) == (size, 18)
    [(name, lines)] = quarantine_lines(service, unique).items()
    assert name.startswith(f"p-{unique}/20261102T100000Z/late-0001/")
    assert lines[0]["line_no"] == 18  # numbering continues after the 12 + 5 lines before it
    assert source().resweep(WINDOW, done_state(summary.extra)) is None


def test_empty_hour_is_done_with_nothing_and_a_missing_container_is_fatal(service, storage_conn, unique):
    service.create_container(f"export-{unique}")
    source = make_source(storage_conn, f"export-{unique}", unique)
    assert drain(source, source.read(WINDOW)) == []
    assert source.summary().source_count == 0 and source.summary().extra["blobs"] == 0
    missing = make_source(storage_conn, f"nothing-{unique}", unique)
    with pytest.raises(FatalError, match="not found"):
        list(missing.read(WINDOW))


def test_a_plan_from_elsewhere_is_refused(storage_conn, unique):
    source = make_source(storage_conn, f"export-{unique}", unique)
    with pytest.raises(FatalError):
        list(source.read_part(WINDOW, LatePlan(kind="part", reason="x", part="late-0001", payload={"v": 99})))


def test_blob_columns_are_the_classic_schema_for_every_table(storage_conn, unique):
    for table in mapping.TABLES:
        source = make_source(storage_conn, f"export-{unique}", unique, table=table)
        assert source.columns == mapping.schema(table)
