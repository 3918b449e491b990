"""shared.mapping: Export Data Model / workspace records → classic rows, schemas, values.

Expected rows are written out field by field from the sample files in tests/samples
(the ``shared/`` folder beside the project root).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shared import mapping
from shared.durations import parse_timestamp
from shared.errors import DataError
from shared.model import KQL_TYPES, Column, format_ts

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def sample_lines(relative: str) -> list[dict[str, Any]]:
    path = SAMPLES / relative
    if not path.is_file():
        pytest.fail(f"sample file {path} is missing: the mapping tests read tests/samples "
                    "(the shared/ folder beside the project root)", pytrace=False)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sample(relative: str) -> dict[str, Any]:
    lines = sample_lines(relative)
    assert len(lines) == 1, f"{relative}: expected one record"
    return lines[0]


def as_dict(table: str, row: list[Any]) -> dict[str, Any]:
    names = [c.name for c in mapping.schema(table)]
    assert len(row) == len(names), f"{table}: row has {len(row)} values for {len(names)} columns"
    return dict(zip(names, row, strict=True))


def assert_row(table: str, row: list[Any], expected: dict[str, Any]) -> None:
    """Field by field (readable diff), then the exact row in schema order."""
    names = [c.name for c in mapping.schema(table)]
    assert sorted(expected) == sorted(names), "expected dict must name every column"
    assert as_dict(table, row) == expected
    assert row == [expected[n] for n in names]


# -- continuous export ---------------------------------------------------------------------
# Context shared by every continuous-export sample.
CE_COMMON: dict[str, Any] = {
    "timestamp": "2026-11-02T10:05:45.7334717Z",  # as exported: the 100 ns digit is kept
    "customDimensions": {"tenant": "contoso", "region": "westeurope"},
    "operation_Name": "GET Home/Index",
    "operation_Id": "fCOhCdCnZ9I=",
    "operation_ParentId": "fCOhCdCnZ9I=",
    "operation_SyntheticSource": None,
    "session_Id": "65504c10-44a6-489e-b9dc-94184eb00d86",
    "user_Id": "us-tx-sn1-azr",
    "user_AuthenticatedId": None,
    "user_AccountId": None,
    "application_Version": "1.4.2",
    "client_Type": "PC",
    "client_Model": None,
    "client_OS": None,
    "client_IP": "168.62.177.0",
    "client_City": "San Antonio",
    "client_StateOrProvince": "Texas",
    "client_CountryOrRegion": "United States",
    "client_Browser": None,
    "cloud_RoleName": "shop-web",
    "cloud_RoleInstance": "WFWEB14B.fabrikam.net",
    "appId": None,
    "appName": None,
    "iKey": None,
    "sdkVersion": None,
}
WITH_COUNT = {"customMeasurements": None, "itemCount": 1}
NULL_MSG = "Object reference not set to an instance of an object."

CE_EXPECTED: dict[str, tuple[str, dict[str, Any]]] = {
    "Requests": ("requests", {
        **CE_COMMON, **WITH_COUNT,
        "id": "fCOhCdCnZ9I=", "source": None, "name": "GET Home/Index", "url": "https://contoso.org/",
        "success": "True", "resultCode": "200", "duration": 104.6804, "performanceBucket": "<250ms",
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160001", "itemType": "request",
    }),
    "Rdd": ("dependencies", {
        **CE_COMMON, **WITH_COUNT,
        "id": "|fCOhCdCnZ9I=.1.", "target": "api.example.com", "type": "HTTP", "name": "GET /api/items",
        "data": "https://api.example.com/items", "success": "True", "resultCode": "200",
        "duration": 25.0, "performanceBucket": "<250ms",
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160005", "itemType": "dependency",
    }),
    "Exceptions": ("exceptions", {
        **CE_COMMON, **WITH_COUNT,
        "problemId": "System.NullReferenceException at Shop.Cart.Total", "handledAt": "UserCode",
        "type": "System.NullReferenceException", "message": NULL_MSG,
        "assembly": "Shop, Version=1.4.2.0", "method": "Shop.Cart.Total",
        "outerType": "System.NullReferenceException", "outerMessage": NULL_MSG,
        "outerAssembly": None, "outerMethod": None,
        "innermostType": "System.NullReferenceException", "innermostMessage": NULL_MSG,
        "innermostAssembly": "Shop, Version=1.4.2.0", "innermostMethod": "Shop.Cart.Total",
        "severityLevel": None,
        "details": [{
            "id": "52336410", "type": "System.NullReferenceException", "message": NULL_MSG,
            "hasFullStack": True,
            "parsedStack": [{"level": 0, "method": "Shop.Cart.Total", "assembly": "Shop, Version=1.4.2.0",
                             "fileName": "Cart.cs", "line": 42}],
        }],
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160003", "itemType": "exception",
    }),
    "Messages": ("traces", {
        **CE_COMMON, **WITH_COUNT,
        "message": "Processing order 123", "severityLevel": 1,
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160004", "itemType": "trace",
    }),
    "Event": ("customEvents", {
        **CE_COMMON, **WITH_COUNT,
        "name": "CheckoutCompleted",
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160002", "itemType": "customEvent",
    }),
    "PageViews": ("pageViews", {
        **CE_COMMON, **WITH_COUNT,
        "id": None, "name": "Home", "url": "https://shop.example.com/", "duration": 1797.0,
        "performanceBucket": "1sec-3sec",
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160006", "itemType": "pageView",
    }),
    "PageViewPerformance": ("browserTimings", {
        **CE_COMMON, **WITH_COUNT,
        "name": "Home", "url": "https://shop.example.com/", "networkDuration": 0.0, "sendDuration": 1.0,
        "receiveDuration": 3.0, "processingDuration": 1797.0, "totalDuration": 1800.0,
        "performanceBucket": "1sec-3sec",
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160007", "itemType": "browserTiming",
    }),
    "Availability": ("availabilityResults", {
        **CE_COMMON, **WITH_COUNT,
        "id": "a1b2c3d4-0000-4000-8000-000000000001", "name": "home-ping", "location": "us-tx-sn1-azr",
        "success": "1", "message": None, "size": None, "duration": 500.0, "performanceBucket": "500ms-1sec",
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160008", "itemType": "availabilityResult",
    }),
    "Metrics": ("customMetrics", {
        **CE_COMMON,
        "customDimensions": {"ProcessId": "4068"},
        "name": "dispatchRate", "value": 0.001295, "valueCount": 1, "valueSum": 0.001295,
        "valueMin": 0.001295, "valueMax": 0.001295, "valueStdDev": 0.0,
        "itemId": "7f156650-ef4c-11e5-8453-3f984b160009", "itemType": "customMetric",
    }),
}  # fmt: skip


@pytest.mark.parametrize("export_type", sorted(CE_EXPECTED), ids=str)
def test_continuous_export_sample_maps_field_by_field(export_type: str) -> None:
    table, expected = CE_EXPECTED[export_type]
    got_table, row = mapping.map_export_record(sample(f"continuous-export/{export_type}.jsonl"))
    assert got_table == table == mapping.EXPORT_TYPES[export_type]
    assert_row(table, row, expected)


def test_every_continuous_export_sample_has_an_expected_row() -> None:
    files = {p.stem for p in (SAMPLES / "continuous-export").glob("*.jsonl")}
    if not files:
        pytest.fail(f"no samples in {SAMPLES / 'continuous-export'}", pytrace=False)
    assert files == set(CE_EXPECTED)


def test_requests_duration_is_ticks_over_10000() -> None:
    record = sample("continuous-export/Requests.jsonl")
    assert record["request"][0]["durationMetric"]["value"] == 1046804.0
    _, row = mapping.map_export_record(record)
    assert as_dict("requests", row)["duration"] == 104.6804


def _requests() -> dict[str, Any]:
    return copy.deepcopy(sample("continuous-export/Requests.jsonl"))


def _set(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node: Any = record
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return record


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "column", "expected"),
    [
        ("request.0.success", False, "success", "False"),
        ("request.0.responseCode", 404, "resultCode", "404"),
        ("request.0.responseCode", _DELETE, "resultCode", None),
        ("request.0.durationMetric.value", 2_500_000.0, "performanceBucket", "250ms-500ms"),
        ("request.0.durationMetric", "garbage", "duration", None),
        ("request.0.durationMetric", _DELETE, "performanceBucket", None),
        ("request.0.count", _DELETE, "itemCount", 1),
        ("request.0.count", 4, "itemCount", 4),
        ("context.data.eventTime", "2026-11-02T10:05:45Z", "timestamp", "2026-11-02T10:05:45Z"),
        ("context.data.eventTime", "2026-11-02T11:05:45.5+01:00", "timestamp", "2026-11-02T10:05:45.500000Z"),
        ("context.device", "not-an-object", "cloud_RoleName", None),
        ("context.device.browserVersion", "Chrome 48.0", "client_Browser", "Chrome 48.0"),
        ("context.location.clientip", 12345, "client_IP", "12345"),
        ("context.operation", _DELETE, "operation_Id", None),
        ("context.custom.dimensions", "oops", "customDimensions", None),
        ("context.custom.dimensions", [], "customDimensions", None),
        ("context.custom.metrics", [{"basket": {"value": 12.5, "count": 1}}, {"n": 3}], "customMeasurements",
         {"basket": 12.5, "n": 3}),
        ("context.user.authId", "alice@contoso.com", "user_AuthenticatedId", "alice@contoso.com"),
        ("internal", _DELETE, "itemId", None),
        ("context", _DELETE, "timestamp", DataError),
    ],
    ids=[
        "success-false", "responseCode-int", "responseCode-missing", "bucket-250-500", "duration-garbage",
        "duration-missing", "count-missing", "count-4", "time-no-fraction", "time-offset", "device-not-object",
        "browser-version", "ip-number", "operation-missing", "dimensions-not-list", "dimensions-empty",
        "measurements", "auth-id", "internal-missing", "context-missing",
    ],
)  # fmt: skip
def test_export_field_rules(path: str, value: Any, column: str, expected: Any) -> None:
    record = _set(_requests(), path, value)
    if expected is DataError:
        with pytest.raises(DataError):
            mapping.map_export_record(record)
        return
    _, row = mapping.map_export_record(record)
    assert as_dict("requests", row)[column] == expected


def test_item_count_from_sampling_rate_when_count_is_absent() -> None:
    record = _set(_set(_requests(), "request.0.count", _DELETE), "context.data.samplingRate", 25.0)
    _, row = mapping.map_export_record(record)
    assert as_dict("requests", row)["itemCount"] == 4


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ([1, 2], "not a JSON object"),
        ({"context": {"data": {"eventTime": "2026-11-02T10:05:45Z"}}}, "no known telemetry payload"),
        ({"trace": [{}], "context": {}}, "no known telemetry payload"),
        ({"request": [{}], "context": {"data": {}}}, "no context.data.eventTime"),
        ({"request": [{}], "context": {"data": {"eventTime": "yesterday"}}}, "not an ISO 8601"),
        ({"request": [{}], "context": {"data": {"eventTime": "2026-11-02T10:05:45"}}}, "not an ISO 8601"),
        ({"request": [{}], "context": {"data": {"eventTime": 1730541945}}}, "not an ISO 8601"),
        ({"request": [{}], "context": {"data": {"eventTime": "2026-13-02T10:05:45Z"}}}, "not an ISO 8601"),
    ],
    ids=["not-object", "no-payload", "unknown-payload", "no-event-time", "unparsable-time", "naive-time",
         "numeric-time", "month-13"],
)  # fmt: skip
def test_malformed_export_records_raise_data_error(record: Any, reason: str) -> None:
    with pytest.raises(DataError, match=reason):
        mapping.map_export_record(record)


@pytest.mark.parametrize("payload", [[], [{}], {}, [None], ["x"], None], ids=str)
def test_empty_payload_is_refused_not_mapped_to_a_row_of_nulls(payload: Any) -> None:
    with pytest.raises(DataError, match="empty payload"):
        mapping.map_export_record(_set(_requests(), "request", payload))


def test_metric_with_an_empty_metric_array_reads_context_custom_metrics() -> None:
    record = sample("continuous-export/Metrics.jsonl")
    assert record["metric"] == []
    _, row = mapping.map_export_record(record)
    assert as_dict("customMetrics", row)["name"] == "dispatchRate"
    record["context"]["custom"]["metrics"] = []
    with pytest.raises(DataError, match="empty payload"):
        mapping.map_export_record(record)


def test_exception_chain_innermost_comes_from_the_last_entry() -> None:
    record = copy.deepcopy(sample("continuous-export/Exceptions.jsonl"))
    inner = {"exceptionType": "System.IO.IOException", "message": "disk", "id": "2", "outerId": "52336410",
             "parsedStack": [{"level": 0, "method": "Shop.Disk.Read", "assembly": "Shop.IO"}]}
    record["basicException"].append(inner)
    _, row = mapping.map_export_record(record)
    got = as_dict("exceptions", row)
    assert (got["type"], got["innermostType"], got["innermostMessage"]) == (
        "System.NullReferenceException", "System.IO.IOException", "disk")
    assert (got["innermostAssembly"], got["innermostMethod"]) == ("Shop.IO", "Shop.Disk.Read")
    assert [d["id"] for d in got["details"]] == ["52336410", "2"]
    assert got["details"][1]["outerId"] == "52336410"


def test_metric_object_in_metric_array_is_read_too() -> None:
    record = copy.deepcopy(sample("continuous-export/Metrics.jsonl"))
    record["context"]["custom"]["metrics"] = []
    record["metric"] = [{"name": "queueLength", "value": 7, "count": 2, "min": 3, "max": 4, "sum": 7}]
    _, row = mapping.map_export_record(record)
    got = as_dict("customMetrics", row)
    assert [got[k] for k in ("name", "value", "valueCount", "valueSum", "valueMin", "valueMax", "valueStdDev")] == [
        "queueLength", 7.0, 2, 7.0, 3.0, 4.0, None]


def _perf_record(item: dict[str, Any]) -> dict[str, Any]:
    record = copy.deepcopy(sample("continuous-export/Event.jsonl"))
    del record["event"]
    record["performanceCounter"] = [item]
    return record


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"categoryName": "Process", "counterName": "% Processor Time", "instanceName": "w3wp", "value": 12.5},
         ["% Processor Time", "Process", "% Processor Time", "w3wp", 12.5]),
        ({"categoryName": "Memory", "instanceName": "", "available_bytes": {"value": 1024.0}},
         ["available_bytes", "Memory", "available_bytes", None, 1024.0]),
        ({"instanceName": "w3wp"}, [None, None, None, "w3wp", None]),
    ],
    ids=["named-fields", "counter-as-key", "instance-only"],
)  # fmt: skip
def test_performance_counter_shapes(item: dict[str, Any], expected: list[Any]) -> None:
    table, row = mapping.map_export_record(_perf_record(item))
    got = as_dict(table, row)
    assert table == "performanceCounters"
    assert [got[k] for k in ("name", "category", "counter", "instance", "value")] == expected
    assert got["itemType"] == "performanceCounter" and "itemCount" not in got


@pytest.mark.parametrize("folder", sorted(mapping.EXPORT_TYPES), ids=str)
def test_export_folder_types_name_classic_tables(folder: str) -> None:
    assert mapping.EXPORT_TYPES[folder] in mapping.SCHEMAS
    assert mapping.schema(folder) == mapping.SCHEMAS[mapping.EXPORT_TYPES[folder]]


def test_export_payload_keys_cover_every_table() -> None:
    assert sorted(mapping.EXPORT_PAYLOADS.values()) == sorted(mapping.TABLES)
    assert {"Rdd", "RemoteDependency", "Dependencies"} <= {k for k, v in mapping.EXPORT_TYPES.items()
                                                           if v == "dependencies"}


# -- diagnostic settings ---------------------------------------------------------------------
DIAG_APP = {
    "appId": "00000000-0000-0000-0000-0000000000aa",
    "appName": "shop-prod",
    "iKey": "11111111-2222-3333-4444-555555555555",
    "sdkVersion": "azurefunctions: 4.1036.1.0",
    "cloud_RoleName": "shop-api",
    "cloud_RoleInstance": "rd0003ff000000",
    "client_Type": "PC",
    "client_IP": "0.0.0.0",
    "session_Id": None, "user_Id": None, "user_AuthenticatedId": None, "user_AccountId": None,
    "application_Version": None, "client_Model": None, "client_OS": None, "client_Browser": None,
    "operation_SyntheticSource": None,
    "itemCount": 1,
}  # fmt: skip

DIAG_EXPECTED: dict[str, tuple[str, dict[str, Any]]] = {
    "insights-logs-apprequests.PT1H.json": ("requests", {
        **DIAG_APP,
        "timestamp": "2026-11-02T10:41:14.1238381Z",  # the 100 ns digit kept
        "id": "09d760d34d75e847", "source": None, "name": "GET /api/orders",
        "url": "https://shop-api.azurewebsites.net/api/orders", "success": "True", "resultCode": "200",
        "duration": 9.1593, "performanceBucket": "<250ms",
        "customDimensions": {"LogLevel": "Information", "HttpPath": "/api/orders", "Category": "Host.Results",
                             "HttpMethod": "GET"},
        "customMeasurements": None,
        "operation_Name": "GET /api/orders", "operation_Id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "operation_ParentId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "client_City": "Portland", "client_StateOrProvince": "Oregon", "client_CountryOrRegion": "United States",
        "itemType": "request",
        "itemId": "4ea43d0b-9ad8-5e9e-91f0-0b818686c27b",  # no _ItemId: derived from the line, never changes
    }),
    "insights-logs-apptraces.PT1H.json": ("traces", {
        **DIAG_APP,
        "timestamp": "2026-11-02T10:41:14.500000Z",
        "message": "Executed 'Functions.Orders' (Succeeded, Duration=9ms)", "severityLevel": 1,
        "customDimensions": {"Category": "Function.Orders", "LogLevel": "Information"},
        "customMeasurements": None,
        "operation_Name": None, "operation_Id": "4bf92f3577b34da6a3ce929d0e0e4736", "operation_ParentId": None,
        "client_City": None, "client_StateOrProvince": None, "client_CountryOrRegion": None,
        "itemType": "trace",
        "itemId": "80f98bbf-4f7d-5b3d-aa8a-7e86f36fc9cd",
    }),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DIAG_EXPECTED), ids=str)
def test_diagnostic_sample_maps_field_by_field(name: str) -> None:
    table, expected = DIAG_EXPECTED[name]
    got_table, row = mapping.map_diagnostic_record(sample(f"diagnostic-settings/{name}"))
    assert got_table == table == mapping.DIAGNOSTIC_CATEGORIES[name.removesuffix(".PT1H.json")]
    assert_row(table, row, expected)


def _diag(kind: str, **fields: Any) -> dict[str, Any]:
    return {"time": "2026-11-02T10:41:14Z", "Type": kind, **fields}


@pytest.mark.parametrize(
    ("record", "table", "expected"),
    [
        (_diag("AppDependencies", Id="d1", Target="sql:1433", DependencyType="SQL", Name="SELECT", Data="select 1",
               Success=False, ResultCode="0", DurationMs=812.5),
         "dependencies",
         {"id": "d1", "target": "sql:1433", "type": "SQL", "name": "SELECT", "data": "select 1",
          "success": "False", "resultCode": "0", "duration": 812.5, "performanceBucket": "500ms-1sec"}),
        (_diag("AppExceptions", ProblemId="E at M", ExceptionType="E", OuterType="E", InnermostType="I",
               SeverityLevel=3, Details=[{"type": "E"}], HandledAt="UserCode"),
         "exceptions",
         {"problemId": "E at M", "type": "E", "outerType": "E", "innermostType": "I", "severityLevel": 3,
          "details": [{"type": "E"}], "handledAt": "UserCode", "message": None}),
        (_diag("AppEvents", Name="CheckoutCompleted", Measurements={"basket": 12.5}),
         "customEvents", {"name": "CheckoutCompleted", "customMeasurements": {"basket": 12.5}}),
        (_diag("AppPageViews", Id="p1", Name="Home", Url="https://shop.example.com/", DurationMs=1797.0),
         "pageViews", {"id": "p1", "name": "Home", "duration": 1797.0, "performanceBucket": "1sec-3sec"}),
        (_diag("AppBrowserTimings", Name="Home", NetworkDurationMs=0.0, SendDurationMs=1.0, ReceiveDurationMs=3.0,
               ProcessingDurationMs=1797.0, TotalDurationMs=1800.0),
         "browserTimings",
         {"networkDuration": 0.0, "sendDuration": 1.0, "receiveDuration": 3.0, "processingDuration": 1797.0,
          "totalDuration": 1800.0, "performanceBucket": "1sec-3sec"}),
        (_diag("AppAvailabilityResults", Id="r1", Name="home-ping", Location="West Europe", Success=False,
               Message="timeout", Size=0.0, DurationMs=30000.0),
         "availabilityResults",
         {"id": "r1", "location": "West Europe", "success": "0", "message": "timeout", "size": 0.0,
          "duration": 30000.0, "performanceBucket": "30sec-1min"}),
        (_diag("AppMetrics", Name="dispatchRate", Sum=6.0, Min=1.0, Max=3.0, ItemCount=3),
         "customMetrics",
         {"name": "dispatchRate", "value": 6.0, "valueCount": 3, "valueSum": 6.0, "valueMin": 1.0,
          "valueMax": 3.0, "valueStdDev": None}),
        (_diag("AppPerformanceCounters", Name="% Processor Time", Category="Processor", Instance="_Total",
               Value=12.5),
         "performanceCounters",
         {"name": "% Processor Time", "category": "Processor", "counter": "% Processor Time",
          "instance": "_Total", "value": 12.5}),
        (_diag("AppRequests", Success="false", DurationMs="12", ItemCount="5", _ItemId="x-1",
               Properties='{"a": "b"}', _ResourceId="/subscriptions/s/resourcegroups/g/providers/"
                                                   "microsoft.insights/components/Shop-Prod"),
         "requests",
         {"success": "False", "duration": 12.0, "performanceBucket": "<250ms", "itemCount": 5, "itemId": "x-1",
          "customDimensions": {"a": "b"}, "appName": "shop-prod"}),
        ({"TimeGenerated": "2026-11-02T10:41:14.1234567Z", "Type": "AppTraces", "Message": "m",
          "SeverityLevel": "Warning", "ResultCode": 5},
         "traces", {"timestamp": "2026-11-02T10:41:14.1234567Z", "message": "m", "severityLevel": 2}),
    ],
    ids=["dependencies", "exceptions", "events", "pageViews", "browserTimings", "availability", "metrics",
         "performanceCounters", "requests-odd-types", "log-analytics-row"],
)  # fmt: skip
def test_diagnostic_types_map_to_classic_columns(record: dict[str, Any], table: str, expected: dict[str, Any]) -> None:
    got_table, row = mapping.map_diagnostic_record(record)
    assert got_table == table
    got = as_dict(table, row)
    assert {k: got[k] for k in expected} == expected
    assert got["itemType"] == mapping.ITEM_TYPES[table]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("AppRequests", "not a JSON object"),
        ({"time": "2026-11-02T10:41:14Z"}, "unknown Type None"),
        ({"time": "2026-11-02T10:41:14Z", "Type": "AzureActivity"}, "unknown Type 'AzureActivity'"),
        ({"Type": "AppRequests"}, "neither 'time' nor 'TimeGenerated'"),
        ({"Type": "AppRequests", "time": "not a time"}, "not an ISO 8601"),
        ({"Type": "AppRequests", "time": ""}, "not an ISO 8601"),
    ],
    ids=["not-object", "no-type", "foreign-type", "no-time", "bad-time", "empty-time"],
)
def test_malformed_diagnostic_records_raise_data_error(record: Any, reason: str) -> None:
    with pytest.raises(DataError, match=reason):
        mapping.map_diagnostic_record(record)


def test_both_sources_land_the_same_schema_for_the_same_table() -> None:
    ce_table, ce_row = mapping.map_export_record(sample("continuous-export/Requests.jsonl"))
    ds_table, ds_row = mapping.map_diagnostic_record(sample("diagnostic-settings/insights-logs-apprequests.PT1H.json"))
    assert ce_table == ds_table == "requests"
    assert len(ce_row) == len(ds_row) == len(mapping.schema("requests"))
    for column, a, b in zip(mapping.schema("requests"), ce_row, ds_row, strict=True):
        assert _fits(a, column) and _fits(b, column), column


def _fits(value: Any, column: Column) -> bool:
    """Canonical value types of shared.model."""
    if value is None or column.type == "dynamic":
        return True
    kinds: dict[str, type | tuple[type, ...]] = {"string": str, "datetime": str, "int": int, "long": int,
                                                 "real": float, "bool": bool}
    ok = isinstance(value, kinds[column.type]) and not (column.type in ("int", "long") and isinstance(value, bool))
    return ok and (column.type != "datetime" or value.endswith("Z"))


@pytest.mark.parametrize("kind", sorted(mapping.DIAGNOSTIC_TYPES), ids=str)
def test_every_workspace_type_maps_a_minimal_record(kind: str) -> None:
    table, row = mapping.map_diagnostic_record({"Type": kind, "time": "2026-11-02T10:00:00Z"})
    assert table == mapping.DIAGNOSTIC_TYPES[kind]
    got = as_dict(table, row)
    assert got["timestamp"] == "2026-11-02T10:00:00Z"
    assert all(_fits(v, c) for c, v in zip(mapping.schema(table), row, strict=True))


@pytest.mark.parametrize("payload", sorted(mapping.EXPORT_PAYLOADS), ids=str)
def test_every_export_payload_maps_a_minimal_record(payload: str) -> None:
    record = {payload: [{"name": "x"}], "context": {"data": {"eventTime": "2026-11-02T10:00:00Z"}}}
    table, row = mapping.map_export_record(record)
    assert table == mapping.EXPORT_PAYLOADS[payload]
    assert all(_fits(v, c) for c, v in zip(mapping.schema(table), row, strict=True))


# -- schemas ----------------------------------------------------------------------------------
def test_requests_schema_equals_the_query_api_columns_exactly() -> None:
    path = SAMPLES / "query-api" / "requests-response.json"
    if not path.is_file():
        pytest.fail(f"sample file {path} is missing", pytrace=False)
    columns = json.loads(path.read_text(encoding="utf-8"))["tables"][0]["columns"]
    assert mapping.schema("requests") == tuple(Column(c["name"], c["type"]) for c in columns)


def test_query_api_sample_row_fits_the_requests_schema() -> None:
    body = json.loads((SAMPLES / "query-api" / "requests-response.json").read_text(encoding="utf-8"))
    row = body["tables"][0]["rows"][0]
    cells = [mapping.coerce(v, c.type) for v, c in zip(row, mapping.schema("requests"), strict=True)]
    got = as_dict("requests", cells)
    assert got["customDimensions"] == {"tenant": "contoso", "region": "westeurope"}
    assert got["timestamp"] == "2026-11-02T10:05:45.733000Z"
    assert all(_fits(v, c) for c, v in zip(mapping.schema("requests"), cells, strict=True))


@pytest.mark.parametrize("table", mapping.TABLES, ids=str)
def test_schema_shape(table: str) -> None:
    cols = mapping.schema(table)
    names = [c.name for c in cols]
    layout = mapping.LAYOUTS[table]
    assert cols[0] == Column("timestamp", "datetime")
    assert cols[1 : 1 + len(layout.specific)] == layout.specific
    assert len(set(names)) == len(names)
    assert all(c.type in KQL_TYPES for c in cols)
    common = names.index("operation_Name")
    assert cols[common : common + len(mapping.COMMON_COLUMNS)] == mapping.COMMON_COLUMNS
    # itemType right after the table's own columns, except requests/dependencies (after itemId)
    after = names.index("itemId") + 1 if table in ("requests", "dependencies") else 1 + len(layout.specific)
    assert names.index("itemType") == after
    has_count = table not in ("customMetrics", "performanceCounters")
    assert ("customMeasurements" in names) == ("itemCount" in names) == has_count
    assert names[-1] == ("itemCount" if has_count else "itemId")


@pytest.mark.parametrize(("alias", "table"), [("AppRequests", "requests"), ("Requests", "requests"),
                                             ("Messages", "traces"), ("AppMetrics", "customMetrics")])
def test_schema_accepts_workspace_and_export_names(alias: str, table: str) -> None:
    assert mapping.schema(alias) is mapping.SCHEMAS[table]


def test_schema_of_unknown_table_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="requests, dependencies"):
        mapping.schema("nope")


# -- values -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-02T10:05:45.7334717Z", "2026-11-02T10:05:45.7334717Z"),
        ("2026-11-02T10:05:45.7334710Z", "2026-11-02T10:05:45.733471Z"),
        ("2026-11-02T10:05:45.733471789Z", "2026-11-02T10:05:45.7334717Z"),
        ("2026-11-02T10:05:45.733Z", "2026-11-02T10:05:45.733000Z"),
        ("2026-11-02T10:05:45.0000000Z", "2026-11-02T10:05:45Z"),
        ("2026-11-02T10:05:45Z", "2026-11-02T10:05:45Z"),
        ("2026-11-02T10:05:45.1z", "2026-11-02T10:05:45.100000Z"),
        ("2026-11-02T12:05:45.25+02:00", "2026-11-02T10:05:45.250000Z"),
        ("2026-11-02 10:05:45Z", "2026-11-02T10:05:45Z"),
        ("2026-11-02T10:05:45", None),
        ("2026-11-31T10:05:45Z", None),
        ("2026-11-02T10:05:45.Z", "2026-11-02T10:05:45Z"),  # as lenient as parse_timestamp
        ("2026-11-02T10:05:45.12a4Z", None),
        ("", None),
        (None, None),
        (17, None),
    ],
    ids=["7-digits", "7th-digit-zero", "9-digits", "3-digits", "zero-fraction", "no-fraction", "lower-z", "offset",
         "space", "naive",
         "nov-31", "empty-fraction", "bad-fraction", "empty", "none", "number"],
)  # fmt: skip
def test_normalize_timestamp(raw: Any, expected: str | None) -> None:
    got = mapping.normalize_timestamp(raw)
    assert got == expected
    if expected is not None and not (len(expected) == 28 and expected[26] != "0"):
        assert got == format_ts(parse_timestamp(raw))  # the fast path agrees with the project's formatter


@pytest.mark.parametrize(
    ("ms", "bucket"),
    [(None, None), (0.0, "<250ms"), (249.99, "<250ms"), (250.0, "250ms-500ms"), (500.0, "500ms-1sec"),
     (999.9, "500ms-1sec"), (1000.0, "1sec-3sec"), (3000.0, "3sec-7sec"), (7000.0, "7sec-15sec"),
     (15000.0, "15sec-30sec"), (30000.0, "30sec-1min"), (60000.0, "1min-2min"), (120000.0, "2min-5min"),
     (299999.0, "2min-5min"), (300000.0, ">=5min"), (float("nan"), None)],
    ids=lambda v: str(v),
)  # fmt: skip
def test_performance_bucket(ms: float | None, bucket: str | None) -> None:
    assert mapping.performance_bucket(ms) == bucket


@pytest.mark.parametrize(
    ("value", "kql_type", "expected"),
    [
        (200, "string", "200"), (True, "string", "true"), (1.0, "string", "1"), (1.5, "string", "1.5"),
        ({"a": 1}, "string", '{"a":1}'), ("x", "string", "x"),
        ("42", "int", 42), ("4.9", "long", 4), (4.9, "int", 4), (True, "int", 1), ("x", "int", None),
        (float("inf"), "int", None),
        ("1.5", "real", 1.5), (2, "real", 2.0), ("x", "real", None),
        ("True", "bool", True), ("0", "bool", False), (0, "bool", False), ("maybe", "bool", None),
        ('{"a": 1}', "dynamic", {"a": 1}), ("[1]", "dynamic", [1]), ("{bad", "dynamic", "{bad"),
        ("plain", "dynamic", "plain"), (None, "dynamic", None),
        ("2026-11-02T10:05:45.733Z", "datetime", "2026-11-02T10:05:45.733000Z"), ("x", "datetime", None),
        (None, "string", None), (None, "int", None),
    ],
    ids=lambda v: repr(v)[:20],
)  # fmt: skip
def test_coerce(value: Any, kql_type: str, expected: Any) -> None:
    assert mapping.coerce(value, kql_type) == expected


# -- robustness: odd values anywhere never raise anything but DataError ------------------------
ODD_VALUES: list[Any] = [None, 0, -1.5, True, "", "x", [], [None], {}, {"value": "x"}]
# The only places where an odd value may make a record unmappable (quarantined).
_TIME_OR_TYPE = {("context",), ("context", "data"), ("context", "data", "eventTime"), ("time",), ("Type",)}


def _mutations(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (dict keys and list indexes)."""
    paths = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += _mutations(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths += _mutations(value, (*path, index))
    return paths


def _replaced(record: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(record)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("relative", "mapper"),
    [(f"continuous-export/{t}.jsonl", mapping.map_export_record) for t in sorted(CE_EXPECTED)]
    + [(f"diagnostic-settings/{n}", mapping.map_diagnostic_record) for n in sorted(DIAG_EXPECTED)],
    ids=[*sorted(CE_EXPECTED), *sorted(DIAG_EXPECTED)],
)
def test_odd_values_anywhere_give_nulls_or_data_error(relative: str, mapper: Any) -> None:
    record = sample(relative)
    checked = 0
    for path in _mutations(record):
        for odd in ODD_VALUES:
            try:
                table, row = mapper(_replaced(record, path, odd))
            except DataError as exc:
                payload = path[0] in mapping.EXPORT_PAYLOADS or path[:2] == ("context", "custom")
                assert path in _TIME_OR_TYPE or (payload and "empty payload" in str(exc)), f"DataError at {path}"
                continue
            assert all(_fits(v, c) for c, v in zip(mapping.schema(table), row, strict=True)), (path, odd)
            checked += 1
    assert checked > 100


def test_schemas_agree_with_the_local_query_api_emulator() -> None:
    """The emulator serves the query API in integration tests: same table, same columns."""
    emulator = pytest.importorskip("devtools.ai_emulator.schema")
    for name, table in emulator.CLASSIC_TABLES.items():
        assert [(c.name, c.type) for c in table.columns] == [(c.name, c.type) for c in mapping.schema(name)], name
