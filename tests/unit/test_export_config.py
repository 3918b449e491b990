"""Blob-export sources, the pure parts: folder names, table names, consumed records, settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import ConfigError, FatalError
from shared.model import Window
from shared.runtime.quarantine import quarantine_name
from shared.settings import ExportSourceConfig, load_settings
from shared.sources.export_blobs import classic_table, folder_for, late_part_name
from shared.sources.export_state import Consumed, decode_entries, digest, encode_entries

T = datetime(2026, 11, 2, 7, tzinfo=UTC)
CE_PREFIX = "shop_11111111222233334444555555555555/Requests"
DS_PREFIX = (
    "resourceId=/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/RG"
    "/PROVIDERS/MICROSOFT.INSIGHTS/COMPONENTS/SHOP"
)


@pytest.mark.parametrize(
    ("template", "prefix", "expected"),
    [
        ("{prefix}/{yyyy}-{MM}-{dd}/{HH}/", CE_PREFIX, f"{CE_PREFIX}/2026-11-02/07/"),
        ("{prefix}/{yyyy}/{MM}/{dd}/{HH}/", CE_PREFIX, f"{CE_PREFIX}/2026/11/02/07/"),
        ("{prefix}/{yyyy}-{MM}-{dd}/{HH}", CE_PREFIX, f"{CE_PREFIX}/2026-11-02/07/"),
        ("{prefix}/y={yyyy}/m={MM}/d={dd}/h={HH}/m=00/", DS_PREFIX, f"{DS_PREFIX}/y=2026/m=11/d=02/h=07/m=00/"),
        ("{prefix}/{yyyy}-{MM}-{dd}/{HH}/", "", "2026-11-02/07/"),
    ],
    ids=["dashed", "nested", "no-trailing-slash", "diagnostic", "empty-prefix"],
)
def test_folder_for(template, prefix, expected):
    assert folder_for(template, prefix, T) == expected


def test_late_part_names_sort_and_fit_sink_parts():
    assert [late_part_name(n) for n in (1, 2, 10)] == ["late-0001", "late-0002", "late-0010"]


@pytest.mark.parametrize(
    ("name", "classic"),
    [("requests", "requests"), ("Requests", "requests"), ("Rdd", "dependencies"), ("AppTraces", "traces"),
     ("PageViewPerformance", "browserTimings"), ("Metrics", "customMetrics")],
    ids=lambda v: str(v),
)
def test_classic_table_accepts_every_spelling(name, classic):
    assert classic_table(name) == classic


def test_classic_table_rejects_unknown():
    with pytest.raises(ConfigError, match="not an Application Insights table"):
        classic_table("orders")


def test_consumed_record_round_trip_is_order_independent():
    a = Consumed("b.blob", '"0x1"', 10, 2, False)
    b = Consumed("a/PT1H.json", '"0x2"', 99, 7, True)
    encoded = encode_entries([a, b])
    assert encoded == encode_entries([b, a])
    assert [e[0] for e in encoded] == ["a/PT1H.json", "b.blob"]
    assert decode_entries(encoded) == {"a/PT1H.json": b, "b.blob": a}
    assert digest(encoded) == digest(encode_entries([b, a]))
    assert digest(encoded) != digest(encode_entries([a]))


@pytest.mark.parametrize("raw", [{"x": 1}, [["only-name"]], [[1, "e", 1, 1, 0]]], ids=["not-list", "short", "bad-name"])
def test_decode_rejects_foreign_records(raw):
    with pytest.raises(FatalError):
        decode_entries(raw)


def test_quarantine_names_are_deterministic_and_bounded():
    w = Window(T, T + timedelta(hours=1))
    name = quarantine_name("ce-req", w, "", f"{CE_PREFIX}/2026-11-02/07/x_20261102_070000.blob")
    assert name == f"ce-req/20261102T070000Z/main/{CE_PREFIX}/2026-11-02/07/x_20261102_070000.blob.jsonl"
    assert quarantine_name("ce-req", w, "late-0001", "a.blob") == "ce-req/20261102T070000Z/late-0001/a.blob.jsonl"
    long = quarantine_name("p", w, "", "x" * 2000)
    assert len(long) < 1024 and long == quarantine_name("p", w, "", "x" * 2000)


# -- settings ------------------------------------------------------------------------------------
BASE_ENV = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
CE = {"kind": "continuous_export", "container": "export"}
CE_REQ = CE | {"prefix": "x/Requests"}


def env(source, window=None, name="p1"):
    pipeline = {
        "name": name,
        "source": source,
        "window": window or {"size": "PT1H", "start": "2026-11-01T00:00:00Z"},
        "sink": {"container": "telemetry"},
    }
    return BASE_ENV | {"MOVER_PIPELINES": json.dumps({"pipelines": [pipeline]})}


def source_of(e) -> ExportSourceConfig:
    source = load_settings(e).pipelines[0].source
    assert isinstance(source, ExportSourceConfig)
    return source


def problems(e) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(e)
    return "\n".join(info.value.problems)


def test_continuous_export_defaults_take_the_table_from_the_type_folder():
    s = source_of(env({"kind": "continuous_export", "container": "export", "prefix": "shop_1111/Rdd"}))
    assert s.table == "dependencies"
    assert s.folder_template == "{prefix}/{yyyy}-{MM}-{dd}/{HH}/"
    assert (s.min_delay, s.late_lookback) == (timedelta(minutes=5), timedelta(hours=6))
    assert (s.batch_rows, s.list_page_size, s.download_concurrency) == (5000, 5000, 4)


def test_diagnostic_settings_defaults_take_the_table_from_the_container():
    s = source_of(env({"kind": "diagnostic_settings", "container": "insights-logs-apptraces", "prefix": DS_PREFIX}))
    assert s.table == "traces"
    assert s.folder_template == "{prefix}/y={yyyy}/m={MM}/d={dd}/h={HH}/m=00/"
    assert s.min_delay == timedelta(minutes=15)


def test_explicit_table_names_are_normalised():
    s = source_of(env(CE | {"prefix": "x", "telemetry_type": "Messages"}))
    assert (s.table, s.telemetry_type) == ("traces", "Messages")
    s = source_of(env({"kind": "diagnostic_settings", "container": "logs", "table_name": "AppRequests"}))
    assert s.table == "requests"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ({"kind": "diagnostic_settings", "container": "insights-logs-apprequests", "min_delay": "PT1M"},
         "'min_delay' must be at least PT5M"),
        ({"kind": "continuous_export", "container": "export", "prefix": "a_b/Requests", "table_name": "traces"},
         "the prefix holds requests"),
        ({"kind": "diagnostic_settings", "container": "insights-logs-apptraces", "table_name": "requests"},
         "the container holds traces"),
        (CE | {"prefix": "a_b/Stuff"}, "'p1' is not an Application Insights table"),
        (CE_REQ | {"folder_template": "{prefix}/{yyyy}/{MM}/{dd}/"}, "must contain {HH}"),
        (CE_REQ | {"folder_template": "{prefix}/{yyyy}/{MM}/{dd}/{HH}/{minute}/"}, "unknown placeholder {minute}"),
        (CE_REQ | {"batch_rows": 5}, "'batch_rows' must be"),
        (CE_REQ | {"list_page_size": 9000}, "'list_page_size' must be"),
        (CE_REQ | {"late_lookback": "P30D"}, "'late_lookback' must be at most P7D"),
        (CE_REQ | {"pattern": "*.blob"}, "unknown field 'pattern'"),
        ({"kind": "continuous_export", "container": "Bad_Name", "prefix": "x/Requests"}, "'container' must be"),
    ],
    ids=["diag-min-delay", "ce-table-mismatch", "ds-table-mismatch", "unknown-table", "template-no-hour",
         "template-placeholder", "batch-rows", "page-size", "lookback", "unknown-field", "container"],
)
def test_export_config_errors(source, fragment):
    assert fragment in problems(env(source))
