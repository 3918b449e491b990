"""The same logical events through the three sources — the query API (emulator), continuous-export
blobs and diagnostic-settings blobs — land equal rows, except the cells docs/mapping.md lists as
not carried by a source (``mapping.normalize.NOT_CARRIED``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from devtools import export_writer as ew
from devtools.ai_emulator import Emulator, EmulatorConfig
from shared import mapping
from shared.mapping.normalize import NOT_CARRIED
from shared.model import Window, format_ts
from tests.conftest import APP_ID, T0, TOKEN, H, read_jsonl_gz

HOUR = T0 + 10 * H
WINDOW = Window(HOUR, HOUR + H)
APP_NAME = "shop-prod"
IKEY = "11111111-2222-3333-4444-555555555555"


def events() -> list[dict[str, Any]]:
    """Three requests as the service stores them (classic names); ``ticks`` is the duration as exported."""
    out = []
    for i, (path, code, ticks) in enumerate((("/api/orders", 200, 146_413), ("/cart", 500, 32_100_007), ("/", 302, 9))):
        out.append({
            "timestamp": f"2026-11-02T10:0{i}:45.733471{i}Z",  # 7 fractional digits, as App Insights writes
            "id": f"req{i}", "name": f"GET {path}", "url": f"https://shop.example.com{path}",
            "success": code < 400, "resultCode": str(code), "ticks": ticks,
            "customDimensions": {"tenant": "contoso", "n": str(i)},
            "customMeasurements": {"ItemsInCart": 2.5} if i != 1 else None,
            "operation_Name": f"GET {path}", "operation_Id": f"op{i}", "operation_ParentId": f"op{i}",
            "session_Id": f"s{i}", "user_Id": f"u{i}", "application_Version": "1.4.2", "client_Type": "Browser",
            "client_Model": "Other", "client_OS": "Windows 10", "client_IP": "0.0.0.0", "client_City": "Amsterdam",
            "client_StateOrProvince": "North Holland", "client_CountryOrRegion": "Netherlands",
            "client_Browser": "Edge 131.0", "cloud_RoleName": "shop-web", "cloud_RoleInstance": "web-1",
            "appId": APP_ID, "appName": APP_NAME, "iKey": IKEY, "sdkVersion": "dotnet:2.22.0",
            "itemId": f"7f156650-ef4c-11e5-8453-3f984b16000{i}",
        })  # fmt: skip
    return out


def query_row(e: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in e.items() if k not in ("ticks", "customMeasurements")}
    row["duration"] = e["ticks"] / 10_000
    row["performanceBucket"] = mapping.performance_bucket(row["duration"])  # the service stores it
    if e["customMeasurements"]:
        row["customMeasurements"] = e["customMeasurements"]
    return row  # absent strings (source, user_AuthenticatedId …) come back as "" from the API


def export_line(e: dict[str, Any]) -> dict[str, Any]:
    path = e["url"].removeprefix("https://shop.example.com")
    custom: dict[str, Any] = {"dimensions": [{k: v} for k, v in e["customDimensions"].items()]}
    if e["customMeasurements"]:
        custom["metrics"] = [{k: {"value": v}} for k, v in e["customMeasurements"].items()]
    return {
        "request": [{
            "id": e["id"], "name": e["name"], "url": path, "urlData": {"host": "shop.example.com", "base": path},
            "responseCode": int(e["resultCode"]), "success": e["success"], "count": 1,
            "durationMetric": {"value": float(e["ticks"]), "count": 1.0},
        }],
        "internal": {"data": {"id": e["itemId"], "documentVersion": "1.61"}},
        "context": {
            "data": {"eventTime": e["timestamp"], "samplingRate": 100.0, "isSynthetic": False},
            "device": {"type": e["client_Type"], "deviceModel": e["client_Model"], "osVersion": e["client_OS"],
                       "browserVersion": e["client_Browser"], "roleName": e["cloud_RoleName"],
                       "roleInstance": e["cloud_RoleInstance"]},
            "application": {"version": e["application_Version"]},
            "location": {"clientip": e["client_IP"], "city": e["client_City"],
                         "province": e["client_StateOrProvince"], "country": e["client_CountryOrRegion"]},
            "user": {"anonId": e["user_Id"], "isAuthenticated": False},
            "operation": {"id": e["operation_Id"], "parentId": e["operation_ParentId"], "name": e["operation_Name"]},
            "session": {"id": e["session_Id"]},
            "custom": custom,
        },
    }  # fmt: skip


def diagnostic_line(e: dict[str, Any], resource_id: str) -> dict[str, Any]:
    return {
        "time": e["timestamp"], "Type": "AppRequests", "Id": e["id"], "Source": "", "Name": e["name"],
        "Url": e["url"], "Success": e["success"], "ResultCode": e["resultCode"], "DurationMs": e["ticks"] / 10_000,
        "Properties": e["customDimensions"], "Measurements": e["customMeasurements"] or {},
        "OperationName": e["operation_Name"], "OperationId": e["operation_Id"], "ParentId": e["operation_ParentId"],
        "SessionId": e["session_Id"], "UserId": e["user_Id"], "AppVersion": e["application_Version"],
        "ClientType": e["client_Type"], "ClientModel": e["client_Model"], "ClientOS": e["client_OS"],
        "ClientIP": e["client_IP"], "ClientCity": e["client_City"],
        "ClientStateOrProvince": e["client_StateOrProvince"], "ClientCountryOrRegion": e["client_CountryOrRegion"],
        "ClientBrowser": e["client_Browser"],
        "AppRoleName": e["cloud_RoleName"], "AppRoleInstance": e["cloud_RoleInstance"], "ResourceGUID": e["appId"],
        "_ResourceId": resource_id, "IKey": e["iKey"], "SDKVersion": e["sdkVersion"], "ItemCount": 1,
        "resourceId": resource_id, "category": "AppRequests",
    }  # fmt: skip


@pytest.fixture()
def own_emulator() -> Iterator[Emulator]:
    """A query API with only this test's rows (the session emulator's history stays untouched)."""
    emu = Emulator(EmulatorConfig(app_id=APP_ID, workspace_id="same-event-ws", api_key="k", token=TOKEN))
    emu.start()
    yield emu
    emu.stop()


def test_the_same_events_land_equal_rows_from_the_query_api_continuous_export_and_diagnostic_settings(
    own_emulator: Emulator, make_engine, storage_conn: str, unique: str
) -> None:
    evs = events()
    own_emulator.add_rows("requests", [query_row(e) for e in evs])
    service = BlobServiceClient.from_connection_string(storage_conn)
    export = f"export-{unique}"
    service.create_container(export)
    lines = b"\n".join(ew.orjson.dumps(export_line(e)) for e in evs) + b"\n"
    service.get_blob_client(export, ew.export_folder("Requests", HOUR) + ew.export_blob_name(unique, HOUR)).upload_blob(
        lines
    )
    rid = ew.RESOURCE_ID.replace("/SHOP-RG/", f"/SHOP-RG-{unique.upper()}/")  # ends in /COMPONENTS/SHOP-PROD
    diag = ew.diagnostic_container("AppRequests")
    if not service.get_container_client(diag).exists():
        service.create_container(diag)
    blob = service.get_blob_client(diag, ew.diagnostic_blob_name(HOUR, resource_id=rid))
    blob.create_append_blob()
    blob.append_block(b"\n".join(ew.orjson.dumps(diagnostic_line(e, rid)) for e in evs) + b"\n")

    window = {"size": "PT1H", "start": format_ts(HOUR), "delay": "PT15M", "max_per_tick": 1}
    source_q = {"kind": "app_insights", "app_id": APP_ID, "endpoint": own_emulator.url, "query": "requests",
                "auth": {"kind": "token", "setting": "TEST_TOKEN"}}  # fmt: skip
    source_ce = {"kind": "continuous_export", "container": export, "prefix": ew.export_prefix("Requests")}
    source_ds = {"kind": "diagnostic_settings", "container": diag, "prefix": ew.diagnostic_prefix(rid)}
    pipelines = [
        {"name": name, "source": src, "window": window, "sink": {"container": f"out-{unique}"}}
        for name, src in (("query", source_q), ("continuous_export", source_ce), ("diagnostic_settings", source_ds))
    ]
    engine = make_engine(pipelines, now=HOUR + H + 30 * H / 60)
    report = engine.tick()
    assert report.failed == 0 and report.done == 3, report.results

    stem = "y=2026/m=11/d=02/h=10/20261102T100000Z.jsonl.gz"
    got = {
        p["name"]: {r["operation_Id"]: r for r in read_jsonl_gz(storage_conn, f"out-{unique}", f"{p['name']}/{stem}")}
        for p in pipelines
    }
    names = [c.name for c in mapping.schema("requests")]
    query = got["query"]
    assert sorted(query) == ["op0", "op1", "op2"]
    assert query["op0"]["timestamp"] == "2026-11-02T10:00:45.733471Z"  # a zero 7th digit is not written, anywhere
    assert query["op0"]["source"] is None and query["op1"]["customMeasurements"] is None  # "" → null
    for source in ("continuous_export", "diagnostic_settings"):
        rows = got[source]
        assert sorted(rows) == sorted(query), source
        for op, expected in query.items():
            row = rows[op]
            assert list(row) == names
            carried = {k: row[k] for k in names if k not in NOT_CARRIED[source]}
            assert carried == {k: expected[k] for k in carried}, (source, op)
    for op in query:
        assert all(got["continuous_export"][op][k] is None for k in NOT_CARRIED["continuous_export"])
        derived = got["diagnostic_settings"][op]["itemId"]
        assert derived and derived != query[op]["itemId"]
