"""Blob-export pipelines through the real engine: Azurite, ledger, blob sink, ``App.tick``.

Blob → output row for every telemetry type, late blobs and append growth moved once as
late parts, quarantine counted in the ledger, a growing PT1H.json never taken early, and
the same columns as the query API for the same table.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from devtools import export_writer as ew
from shared import mapping
from shared.errors import ConfigError
from shared.model import Window, format_ts
from tests.conftest import T0, H, blob_names, query_pipeline, read_jsonl_gz

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
HOUR = T0 + 10 * H  # 2026-11-02T10:00Z, the hour of the samples' events
WINDOW = Window(HOUR, HOUR + H)
MIN = timedelta(minutes=1)


def ce_pipeline(name: str, container: str, export_type: str, sink: str, *, delay: str = "PT5M", **source: Any):
    return {
        "name": name,
        "source": {"kind": "continuous_export", "container": container, "prefix": ew.export_prefix(export_type)}
        | source,
        "window": {"size": "PT1H", "start": format_ts(HOUR), "delay": delay, "max_per_tick": 10},
        "sink": {"container": sink},
    }


def ds_pipeline(name: str, kind: str, resource_id: str, sink: str, *, delay: str = "PT15M", **source: Any):
    return {
        "name": name,
        "source": {"kind": "diagnostic_settings", "container": ew.diagnostic_container(kind),
                   "prefix": ew.diagnostic_prefix(resource_id)} | source,
        "window": {"size": "PT1H", "start": format_ts(HOUR), "delay": delay, "max_per_tick": 10},
        "sink": {"container": sink},
    }  # fmt: skip


def output(name: str, part: str = "") -> str:
    return f"{name}/y=2026/m=11/d=02/h=10/20261102T100000Z{'-' + part if part else ''}.jsonl.gz"


class Clock:
    """A settable engine clock (no sleeping: tests move time)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def service(storage_conn) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(storage_conn)


def sample_line(relative: str) -> bytes:
    path = SAMPLES / relative
    if not path.is_file():
        pytest.fail(f"sample file {path} is missing (tests read tests/samples)", pytrace=False)
    [line] = [raw for raw in path.read_bytes().splitlines() if raw.strip()]
    return line


# -- blob → output row, every telemetry type ------------------------------------------------------------
COMMON = {
    "timestamp": "2026-11-02T10:05:45.7334717Z", "operation_Name": "GET Home/Index", "operation_Id": "fCOhCdCnZ9I=",
    "cloud_RoleName": "shop-web", "cloud_RoleInstance": "WFWEB14B.fabrikam.net", "client_City": "San Antonio",
    "client_CountryOrRegion": "United States", "session_Id": "65504c10-44a6-489e-b9dc-94184eb00d86",
    "user_Id": "us-tx-sn1-azr", "application_Version": "1.4.2",
}
DIMS = {"customDimensions": {"tenant": "contoso", "region": "westeurope"}}
NULL_REF = "Object reference not set to an instance of an object."
CE_FIELDS: dict[str, dict[str, Any]] = {
    "Requests": COMMON | DIMS | {
        "id": "fCOhCdCnZ9I=", "name": "GET Home/Index", "url": "https://contoso.org/", "success": "True",
        "resultCode": "200",
        "duration": 104.6804, "performanceBucket": "<250ms", "itemType": "request", "itemCount": 1,
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160001"},
    "Rdd": COMMON | DIMS | {
        "id": "|fCOhCdCnZ9I=.1.", "target": "api.example.com", "type": "HTTP", "name": "GET /api/items",
        "data": "https://api.example.com/items", "success": "True", "resultCode": "200", "duration": 25.0,
        "itemType": "dependency", "itemId": "7f156650-ef4c-11e5-8453-3f984b160005"},
    "Exceptions": COMMON | DIMS | {
        "problemId": "System.NullReferenceException at Shop.Cart.Total", "handledAt": "UserCode",
        "type": "System.NullReferenceException", "message": NULL_REF, "method": "Shop.Cart.Total",
        "assembly": "Shop, Version=1.4.2.0", "outerType": "System.NullReferenceException",
        "itemType": "exception", "itemId": "7f156650-ef4c-11e5-8453-3f984b160003"},
    "Messages": COMMON | DIMS | {
        "message": "Processing order 123", "severityLevel": 1, "itemType": "trace",
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160004"},
    "Event": COMMON | DIMS | {
        "name": "CheckoutCompleted", "itemType": "customEvent", "itemId": "7f156650-ef4c-11e5-8453-3f984b160002"},
    "PageViews": COMMON | DIMS | {
        "name": "Home", "url": "https://shop.example.com/", "duration": 1797.0, "performanceBucket": "1sec-3sec",
        "itemType": "pageView", "itemId": "7f156650-ef4c-11e5-8453-3f984b160006"},
    "PageViewPerformance": COMMON | DIMS | {
        "name": "Home", "url": "https://shop.example.com/", "networkDuration": 0.0, "sendDuration": 1.0,
        "receiveDuration": 3.0, "processingDuration": 1797.0, "totalDuration": 1800.0, "itemType": "browserTiming",
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160007"},
    "Availability": COMMON | DIMS | {
        "id": "a1b2c3d4-0000-4000-8000-000000000001", "name": "home-ping", "location": "us-tx-sn1-azr",
        "success": "1", "duration": 500.0, "itemType": "availabilityResult",
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160008"},
    "Metrics": COMMON | {
        "customDimensions": {"ProcessId": "4068"}, "name": "dispatchRate", "value": 0.001295, "valueCount": 1,
        "valueSum": 0.001295, "valueMin": 0.001295, "valueMax": 0.001295, "itemType": "customMetric",
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160009"},
}  # fmt: skip
DS_COMMON = {
    "operation_Id": "4bf92f3577b34da6a3ce929d0e0e4736", "cloud_RoleName": "shop-api",
    "cloud_RoleInstance": "rd0003ff000000", "client_Type": "PC", "client_IP": "0.0.0.0",
    "iKey": "11111111-2222-3333-4444-555555555555", "appId": "00000000-0000-0000-0000-0000000000aa",
    "appName": "shop-prod", "sdkVersion": "azurefunctions: 4.1036.1.0", "itemCount": 1,
}
DS_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "AppRequests": ("insights-logs-apprequests.PT1H.json", DS_COMMON | {
        "timestamp": "2026-11-02T10:41:14.1238381Z", "id": "09d760d34d75e847", "name": "GET /api/orders",
        "url": "https://shop-api.azurewebsites.net/api/orders", "success": "True", "resultCode": "200",
        "duration": 9.1593, "performanceBucket": "<250ms", "operation_Name": "GET /api/orders",
        "client_City": "Portland", "itemType": "request",
        "customDimensions": {"LogLevel": "Information", "HttpPath": "/api/orders", "Category": "Host.Results",
                             "HttpMethod": "GET"}}),
    "AppTraces": ("insights-logs-apptraces.PT1H.json", DS_COMMON | {
        "timestamp": "2026-11-02T10:41:14.500000Z", "message": "Executed 'Functions.Orders' (Succeeded, Duration=9ms)",
        "severityLevel": 1, "itemType": "trace",
        "customDimensions": {"Category": "Function.Orders", "LogLevel": "Information"}}),
}  # fmt: skip


def test_every_sample_type_maps_field_by_field_from_blob_to_output_row(make_engine, service, storage_conn, unique):
    container, sink = f"export-{unique}", f"out-{unique}"
    export = service.get_container_client(container)
    export.create_container()
    pipelines = []
    for export_type in CE_FIELDS:
        folder = ew.export_folder(export_type, HOUR)
        export.upload_blob(f"{folder}{ew.export_blob_name(unique, HOUR + 6 * MIN)}", sample_line(
            f"continuous-export/{export_type}.jsonl") + b"\n")
        pipelines.append(ce_pipeline(f"ce-{export_type.lower()}", container, export_type, sink))
    rid = ew.RESOURCE_ID + unique.upper()
    for kind, (sample, _) in DS_FIELDS.items():
        blob = service.get_blob_client(ew.diagnostic_container(kind), ew.diagnostic_blob_name(HOUR, resource_id=rid))
        if not service.get_container_client(ew.diagnostic_container(kind)).exists():
            service.create_container(ew.diagnostic_container(kind))
        blob.create_append_blob()
        blob.append_block(sample_line(f"diagnostic-settings/{sample}") + b"\n")
        pipelines.append(ds_pipeline(f"ds-{kind.lower()}", kind, rid, sink))
    engine = make_engine(pipelines, now=HOUR + H + 20 * MIN)
    report = engine.tick()
    assert report.errors == {} and report.failed == 0 and report.done == len(pipelines)
    checks: list[tuple[str, str, bytes, Callable[[dict[str, Any]], tuple[str, list[Any]]], dict[str, Any]]] = [
        (f"ce-{t.lower()}", mapping.EXPORT_TYPES[t], sample_line(f"continuous-export/{t}.jsonl"),
         mapping.map_export_record, fields) for t, fields in CE_FIELDS.items()
    ] + [
        (f"ds-{k.lower()}", mapping.DIAGNOSTIC_TYPES[k], sample_line(f"diagnostic-settings/{s}"),
         mapping.map_diagnostic_record, fields) for k, (s, fields) in DS_FIELDS.items()
    ]  # fmt: skip
    for name, table, line, map_record, fields in checks:
        [row] = read_jsonl_gz(storage_conn, sink, output(name))
        names = [c.name for c in mapping.schema(table)]
        assert list(row) == names, f"{name}: columns of {table} in schema order"
        assert {k: row[k] for k in fields} == fields, name  # field by field, as read from the sample
        _, mapped = map_record(orjson.loads(line))
        assert row == orjson.loads(orjson.dumps(dict(zip(names, mapped, strict=True)))), name  # nothing else lost
        state = engine.ledger.get(name, WINDOW)
        assert state is not None
        assert (state.status, state.rows, state.quarantined, state.source_count) == ("done", 1, 0, 1)


# -- a big hour ------------------------------------------------------------------------------------------
def test_hour_of_500_blobs_moves_exact_rows_through_the_engine(make_engine, service, storage_conn, unique):
    container, sink = f"export-{unique}", f"out-{unique}"
    written = ew.write_export_hour(
        service.get_container_client(container), "Rdd", HOUR, blobs=500, lines_per_blob=30, seed=unique
    )
    engine = make_engine([ce_pipeline("deps", container, "Rdd", sink, list_page_size=200)], now=HOUR + H + 10 * MIN)
    began = time.perf_counter()
    report = engine.tick()
    seconds = time.perf_counter() - began
    assert report.failed == 0 and [r.rows for r in report.results] == [15_000]
    print(f"\nEXPORT_ENGINE {{\"blobs\": 500, \"rows\": 15000, \"seconds\": {seconds:.2f}, "
          f"\"rows_per_s\": {15_000 / seconds:.0f}}}")
    rows = read_jsonl_gz(storage_conn, sink, output("deps"))
    assert sorted(r["itemId"] for r in rows) == sorted(written.item_ids)
    state = engine.ledger.get("deps", WINDOW)
    assert state is not None and (state.rows, state.source_count, state.extra["blobs"]) == (15_000, 15_000, 500)
    assert "consumed_ref" in state.extra and len(json.dumps(dict(state.extra))) < 2_000


# -- late input -------------------------------------------------------------------------------------------
def test_late_blob_after_the_window_is_moved_once_on_the_next_sweep(make_engine, service, storage_conn, unique):
    container, sink = f"export-{unique}", f"out-{unique}"
    export = service.get_container_client(container)
    first = ew.write_export_hour(export, "Requests", HOUR, blobs=6, lines_per_blob=5, seed=unique)
    clock = Clock(HOUR + H + 10 * MIN)
    engine = make_engine([ce_pipeline("req", container, "Requests", sink)], now=clock)
    report = engine.tick()
    assert [(r.outcome, r.rows) for r in report.results] == [("done", 30)]
    main_before = read_jsonl_gz(storage_conn, sink, output("req"))

    late = ew.write_export_blob(export, "Requests", HOUR + H + 12 * MIN, lines=7, seed=unique, hour=HOUR)
    clock.now += 10 * MIN
    report = engine.tick()
    assert [(r.outcome, r.rows, r.outputs) for r in report.results] == [("done", 7, (output("req", "late-0001"),))]
    part_rows = read_jsonl_gz(storage_conn, sink, output("req", "late-0001"))
    assert sorted(r["itemId"] for r in part_rows) == sorted(late.item_ids)
    assert read_jsonl_gz(storage_conn, sink, output("req")) == main_before  # earlier output untouched
    state = engine.ledger.get("req", WINDOW)
    assert state is not None and (state.status, state.rows, state.source_count) == ("done", 37, 37)
    assert (state.extra["blobs"], state.extra["parts"]) == (7, 1)
    folder = ew.export_folder("Requests", HOUR)
    assert {e[0] for e in state.extra["consumed"]} == {n[len(folder):] for n in first.names + late.names}
    assert {o["name"] for o in state.outputs if o.get("kind", "data") == "data"} == {
        output("req"), output("req", "late-0001")}

    clock.now += 10 * MIN
    assert engine.tick().results == []  # a second sweep finds nothing new: moved once
    everything = [r["itemId"] for n in (output("req"), output("req", "late-0001"))
                  for r in read_jsonl_gz(storage_conn, sink, n)]
    assert sorted(everything) == sorted(first.item_ids + late.item_ids)  # no row twice, none lost

    ew.write_export_blob(export, "Requests", HOUR + H + 40 * MIN, lines=2, seed=unique, hour=HOUR)
    clock.now += 10 * MIN
    report = engine.tick()
    assert [(r.rows, r.outputs) for r in report.results] == [(2, (output("req", "late-0002"),))]
    assert engine.ledger.get("req", WINDOW).rows == 39


def test_replay_after_late_parts_rewrites_the_window_without_duplicates(make_engine, service, storage_conn, unique):
    container, sink = f"export-{unique}", f"out-{unique}"
    export = service.get_container_client(container)
    first = ew.write_export_hour(export, "Requests", HOUR, blobs=3, lines_per_blob=4, seed=unique)
    clock = Clock(HOUR + H + 10 * MIN)
    engine = make_engine([ce_pipeline("req", container, "Requests", sink)], now=clock)
    engine.tick()
    late = ew.write_export_blob(export, "Requests", HOUR + H + 12 * MIN, lines=5, seed=unique, hour=HOUR,
                                bad=ew.BAD_LINES[:1])
    clock.now += 10 * MIN
    assert [r.outputs for r in engine.tick().results] == [(output("req", "late-0001"),)]
    quarantine = service.get_container_client(f"quarantine-{unique}")
    assert list(quarantine.list_blob_names()) == [f"req/20261102T100000Z/late-0001/{late.names[0]}.jsonl"]
    assert engine.ledger.get("req", WINDOW).quarantined == 1

    result = engine.replayer.replay(engine.settings.pipeline("req"), HOUR, HOUR + H, mode="inline")
    assert [(r.outcome, r.rows) for r in result.results] == [("done", 17)]
    assert list(quarantine.list_blob_names()) == [f"req/20261102T100000Z/main/{late.names[0]}.jsonl"]
    assert engine.ledger.get("req", WINDOW).quarantined == 1
    data = [n for n in blob_names(storage_conn, sink, "req/") if n.endswith(".jsonl.gz")]
    assert data == [output("req")]  # the late part is folded into the rerun and its file removed
    rows = read_jsonl_gz(storage_conn, sink, output("req"))
    assert sorted(r["itemId"] for r in rows) == sorted(first.item_ids + late.item_ids)
    state = engine.ledger.get("req", WINDOW)
    assert state is not None and (state.rows, state.extra["blobs"], state.extra["parts"]) == (17, 4, 0)
    clock.now += 10 * MIN
    assert engine.tick().results == []


def test_rewritten_export_blob_reruns_the_whole_window(make_engine, service, storage_conn, unique):
    container, sink = f"export-{unique}", f"out-{unique}"
    export = service.get_container_client(container)
    first = ew.write_export_hour(export, "Requests", HOUR, blobs=3, lines_per_blob=4, seed=unique)
    clock = Clock(HOUR + H + 10 * MIN)
    engine = make_engine([ce_pipeline("req", container, "Requests", sink)], now=clock)
    engine.tick()
    rng = random.Random(unique)
    record = ew.export_record("Requests", rng=rng, event_time=HOUR + 30 * MIN)
    export.upload_blob(first.names[0], orjson.dumps(record) + b"\n", overwrite=True)  # 4 records become 1
    clock.now += 10 * MIN
    assert [(r.outcome, r.rows, r.outputs) for r in engine.tick().results] == [("done", 9, (output("req"),))]
    rows = read_jsonl_gz(storage_conn, sink, output("req"))
    assert record["internal"]["data"]["id"] in {r["itemId"] for r in rows} and len(rows) == 9
    assert engine.ledger.get("req", WINDOW).rows == 9
    clock.now += 10 * MIN
    assert engine.tick().results == []


def test_late_blobs_are_not_looked_for_beyond_the_lookback(make_engine, service, storage_conn, unique):
    container, sink = f"export-{unique}", f"out-{unique}"
    export = service.get_container_client(container)
    ew.write_export_hour(export, "Requests", HOUR, blobs=2, lines_per_blob=3, seed=unique)
    clock = Clock(HOUR + H + 10 * MIN)
    engine = make_engine([ce_pipeline("req", container, "Requests", sink, late_lookback="PT2H")], now=clock)
    assert engine.tick().done == 1
    ew.write_export_blob(export, "Requests", HOUR + 3 * H, lines=4, seed=unique, hour=HOUR)
    clock.now = HOUR + 3 * H + 10 * MIN  # the window ended 2h10m ago: outside PT2H
    assert [r for r in engine.tick().results if r.window == WINDOW] == []
    assert engine.ledger.get("req", WINDOW).rows == 6


def test_append_blob_growth_after_the_hour_is_moved_as_a_late_part(make_engine, service, storage_conn, unique):
    sink, rid = f"out-{unique}", ew.RESOURCE_ID + unique.upper()
    container = service.get_container_client(ew.diagnostic_container("AppRequests"))
    first = ew.write_diagnostic_hour(container, "AppRequests", HOUR, appends=6, lines_per_append=5, seed=unique,
                                     resource_id=rid)
    clock = Clock(HOUR + H + 20 * MIN)
    engine = make_engine([ds_pipeline("ds", "AppRequests", rid, sink)], now=clock)
    assert [(r.outcome, r.rows) for r in engine.tick().results] == [("done", first.rows)]
    grown = ew.append_diagnostic(container, "AppRequests", HOUR, lines=4, seed=unique,
                                 received=HOUR + H + 21 * MIN, resource_id=rid)
    clock.now += 10 * MIN
    assert [(r.rows, r.outputs) for r in engine.tick().results] == [(grown.rows, (output("ds", "late-0001"),))]
    clock.now += 10 * MIN
    assert engine.tick().results == []
    state = engine.ledger.get("ds", WINDOW)
    assert state is not None and state.rows == first.rows + grown.rows == 34
    [entry] = state.extra["consumed"]
    assert entry[3] == 34  # lines consumed so far


# -- quarantine ----------------------------------------------------------------------------------------------
def test_malformed_lines_are_quarantined_counted_in_the_ledger_and_not_duplicated_on_replay(
    make_engine, service, storage_conn, unique
):
    container, sink = f"export-{unique}", f"out-{unique}"
    export = service.get_container_client(container)
    good = ew.write_export_hour(export, "Requests", HOUR, blobs=4, lines_per_blob=5, seed=unique, bad_every=2)
    engine = make_engine([ce_pipeline("req", container, "Requests", sink)], now=HOUR + H + 10 * MIN)
    report = engine.tick()
    assert [(r.outcome, r.rows) for r in report.results] == [("done", 20)]  # the window completes
    state = engine.ledger.get("req", WINDOW)
    assert state is not None and (state.quarantined, state.rows, state.source_count) == (6, 20, 26)
    quarantine = service.get_container_client(f"quarantine-{unique}")
    names = sorted(quarantine.list_blob_names())
    bad_sources = sorted(good.names[i] for i in (1, 3))
    assert names == [f"req/20261102T100000Z/main/{n}.jsonl" for n in bad_sources]
    contents = {n: quarantine.download_blob(n).readall() for n in names}
    for name in names:
        lines = [orjson.loads(x) for x in contents[name].splitlines()]
        assert [x["line"].encode() for x in lines] == list(ew.BAD_LINES)
        assert [x["line_no"] for x in lines] == [6, 7, 8]
        assert all(x["reason"] and x["source_blob"] in bad_sources for x in lines)

    pipeline = engine.settings.pipeline("req")
    assert [r.outcome for r in engine.replayer.replay(pipeline, HOUR, HOUR + H, mode="inline").results] == ["done"]
    assert sorted(quarantine.list_blob_names()) == names
    assert {n: quarantine.download_blob(n).readall() for n in names} == contents  # same names, no duplicates
    assert engine.ledger.get("req", WINDOW).quarantined == 6


# -- a growing PT1H.json ------------------------------------------------------------------------------------
def test_growing_pt1h_json_is_not_taken_before_its_hour_closed_plus_delay(make_engine, service, storage_conn, unique):
    sink, rid = f"out-{unique}", ew.RESOURCE_ID + unique.upper()
    container = service.get_container_client(ew.diagnostic_container("AppTraces"))
    first = ew.append_diagnostic(container, "AppTraces", HOUR, lines=10, seed=unique, received=HOUR + 30 * MIN,
                                 resource_id=rid)
    clock = Clock(HOUR + 59 * MIN)
    engine = make_engine([ds_pipeline("traces", "AppTraces", rid, sink)], now=clock)  # default min delay PT15M
    assert engine.settings.pipeline("traces").window.delay == timedelta(minutes=15)
    for now in (HOUR + 59 * MIN, HOUR + H, HOUR + H + 5 * MIN, HOUR + H + 14 * MIN):
        clock.now = now
        assert engine.tick().results == [], f"window taken at {now}"
        # the service still writes the closed hour's blob just after the boundary
        first = first + ew.append_diagnostic(container, "AppTraces", HOUR, lines=3, seed=f"{unique}{now}",
                                             received=HOUR + 59 * MIN, resource_id=rid)
    assert engine.ledger.get("traces", WINDOW) is None  # not even planned
    clock.now = HOUR + H + 15 * MIN
    assert [(r.outcome, r.rows) for r in engine.tick().results] == [("done", first.rows)]
    assert first.rows == 22 and len(read_jsonl_gz(storage_conn, sink, output("traces"))) == 22


def test_diagnostic_settings_window_delay_below_the_minimum_is_refused(make_engine, unique):
    """Needs Settings.window() to check ``delay >= source.min_delay`` (see docs/blob-sources.md)."""
    with pytest.raises(ConfigError, match="delay"):
        make_engine([ds_pipeline("traces", "AppTraces", ew.RESOURCE_ID, f"out-{unique}", delay="PT1M")])


# -- same table, same columns, whichever source ---------------------------------------------------------------
def test_query_api_and_blob_export_land_the_same_columns_for_requests(
    make_engine, emulator, service, storage_conn, unique
):
    from devtools.ai_emulator.schema import resolve_table

    container, sink = f"export-{unique}", f"out-{unique}"
    ew.write_export_hour(service.get_container_client(container), "Requests", T0, blobs=3, lines_per_blob=10,
                         seed=unique)
    blob_pipe = ce_pipeline("viablobs", container, "Requests", sink)
    blob_pipe["window"]["start"] = format_ts(T0)
    query_pipe = query_pipeline("viaquery", "requests", emulator, sink)
    engine = make_engine([blob_pipe, query_pipe], now=T0 + H + 10 * MIN)
    report = engine.tick()
    assert report.failed == 0 and {r.pipeline for r in report.results} == {"viablobs", "viaquery"}
    name = "y=2026/m=11/d=02/h=00/20261102T000000Z.jsonl.gz"
    via_blobs = read_jsonl_gz(storage_conn, sink, f"viablobs/{name}")
    via_query = read_jsonl_gz(storage_conn, sink, f"viaquery/{name}")
    assert via_blobs and via_query
    schema = [(c.name, c.type) for c in mapping.schema("requests")]
    assert [(c.name, c.type) for c in resolve_table("requests").columns] == schema
    assert list(via_blobs[0]) == list(via_query[0]) == [n for n, _ in schema]

    def kinds(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for row in rows:
            for key, value in row.items():
                if value is not None:
                    out.setdefault(key, set()).add(type(value).__name__)
        return out

    blob_kinds, query_kinds = kinds(via_blobs), kinds(via_query)
    for column in set(blob_kinds) & set(query_kinds):
        assert blob_kinds[column] == query_kinds[column], column  # same JSON types per column
