from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import ConfigError
from shared.settings import ExportSourceConfig, QuerySourceConfig, load_settings

BASE_ENV = {"AzureWebJobsStorage": "UseDevelopmentStorage=true;", "AI_KEY": "secret-key-value"}


def pipeline(**over):
    p = {
        "name": "requests",
        "source": {"kind": "app_insights", "app_id": "abc-123", "query": "requests"},
        "window": {"size": "PT1H", "start": "2026-11-01T00:00:00Z"},
        "sink": {"container": "telemetry"},
    }
    p.update(over)
    return p


def env(*pipelines, **extra):
    return BASE_ENV | {"MOVER_PIPELINES": json.dumps({"pipelines": list(pipelines)})} | extra


def problems(e) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(e)
    return "\n".join(info.value.problems)


def test_minimal_pipeline_defaults():
    s = load_settings(env(pipeline()))
    p = s.pipeline("requests")
    assert isinstance(p.source, QuerySourceConfig)
    assert p.source.endpoint == "https://api.applicationinsights.io"
    assert p.source.time_column == "timestamp"
    assert p.source.table == "requests"
    assert p.source.auth.kind == "entra"
    assert p.source.auth.scope == "https://api.applicationinsights.io/.default"
    assert p.window.size == timedelta(hours=1)
    assert p.window.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert p.sinks[0].format == "jsonl" and p.sinks[0].compression == "gzip"
    assert s.state.conn_string == "UseDevelopmentStorage=true"  # trailing ';' stripped for the Tables SDK
    assert s.schedule == "0 */5 * * * *"


def test_log_analytics_defaults():
    src = {"kind": "log_analytics", "workspace_id": "ws-1", "query": "AppRequests"}
    p = load_settings(env(pipeline(source=src))).pipelines[0]
    assert isinstance(p.source, QuerySourceConfig)
    assert p.source.time_column == "TimeGenerated"
    assert p.source.endpoint == "https://api.loganalytics.azure.com"
    assert p.source.auth.scope == "https://api.loganalytics.io/.default"


def test_pipelines_from_file(tmp_path):
    f = tmp_path / "pipelines.json"
    f.write_text(json.dumps({"pipelines": [pipeline()]}))
    s = load_settings(BASE_ENV | {"MOVER_PIPELINES": str(f)})
    assert s.pipelines[0].name == "requests"


def test_api_key_secret_resolved_and_hidden_from_repr():
    src = {"kind": "app_insights", "app_id": "a", "query": "requests", "auth": {"kind": "api_key", "setting": "AI_KEY"}}
    s = load_settings(env(pipeline(source=src)))
    assert s.pipelines[0].source.auth.secret == "secret-key-value"
    assert "secret-key-value" not in repr(s)


def test_all_problems_reported_together_with_pipeline_and_field():
    bad = pipeline(
        name="bad",
        source={"kind": "app_insights", "query": "requests"},
        window={"size": "PT7M", "start": "2026-11-01T00:00:00Z"},
        sink={"container": "Bad_Name", "format": "xml"},
    )
    text = problems(env(bad))
    assert "pipeline 'bad' source: 'app_id' is required" in text
    assert "pipeline 'bad' window: 'size' must divide a day evenly" in text
    assert "'container' must be a valid blob container name" in text
    assert "'format' must be jsonl, csv or parquet" in text


@pytest.mark.parametrize(
    ("e", "fragment"),
    [
        (BASE_ENV, "MOVER_PIPELINES: missing"),
        (BASE_ENV | {"MOVER_PIPELINES": "{nope"}, "invalid JSON"),
        (BASE_ENV | {"MOVER_PIPELINES": "/no/such/file.json"}, "no such file"),
        (env(pipeline(), pipeline()), "name used twice"),
        (env(pipeline(name="has space")), "'name' must be"),
        (env(pipeline(window={"size": "PT1H", "start": "2026-11-01T00:30:00Z"})), "not aligned"),
        (env(pipeline(window={"size": "PT1H"})), "'start' is required"),
        (env(pipeline(window={"size": "PT1H", "start": "2026-11-01T00:00:00"})), "UTC offset"),
        (
            env(pipeline(window={"size": "PT1H", "start": "2026-11-01T00:00:00Z", "end": "2026-10-01T00:00:00Z"})),
            "'end' must be after",
        ),
        (
            env(pipeline(window={"size": "PT1H", "start": "2026-11-01T00:00:00Z", "max_per_tick": "5"})),
            "'max_per_tick' must be",
        ),
        (
            env(
                pipeline(
                    source={
                        "kind": "app_insights",
                        "app_id": "a",
                        "query": "requests",
                        "auth": {"kind": "api_key", "setting": "MISSING"},
                    }
                )
            ),
            "'MISSING' is not set",
        ),
        (env(pipeline(source={"kind": "nope"})), "unknown kind 'nope'"),
        (env(pipeline(sink={"container": "abc", "path": "{pipeline}/{nope}/{window}"})), "unknown placeholder {nope}"),
        (env(pipeline(sink={"container": "abc", "path": "{pipeline}/static"})), "must contain {window}"),
        (env(pipeline(extra=1)), "unknown field 'extra'"),
        (
            env(
                pipeline(
                    source={"kind": "continuous_export", "container": "export"},
                    window={"size": "PT15M", "start": "2026-11-01T00:00:00Z"},
                )
            ),
            "must be PT1H",
        ),
        ({"MOVER_PIPELINES": json.dumps({"pipelines": [pipeline()]})}, "'AzureWebJobsStorage' is not set"),
        (env(pipeline(), MOVER_MAX_CONCURRENCY="zero"), "MOVER_MAX_CONCURRENCY: expected a whole number"),
    ],
    ids=[
        "no-pipelines",
        "bad-json",
        "missing-file",
        "duplicate",
        "bad-name",
        "unaligned-start",
        "no-start",
        "naive-start",
        "reversed",
        "wrong-type",
        "missing-secret",
        "unknown-source",
        "unknown-placeholder",
        "path-not-unique",
        "unknown-field",
        "export-needs-hour",
        "no-storage",
        "bad-int-setting",
    ],
)
def test_config_errors(e, fragment):
    assert fragment in problems(e)


def test_export_source_defaults():
    src = {"kind": "continuous_export", "container": "export", "prefix": "shop_1111/Requests"}
    p = load_settings(env(pipeline(source=src))).pipelines[0]
    assert isinstance(p.source, ExportSourceConfig)
    assert p.source.folder_template == "{prefix}/{yyyy}-{MM}-{dd}/{HH}/"
    assert p.source.storage.setting == "AzureWebJobsStorage"


def test_identity_based_storage_connection():
    e = env(pipeline()) | {
        "AzureWebJobsStorage": "",
        "AzureWebJobsStorage__accountName": "acct",
        "AzureWebJobsStorage__clientId": "cid",
    }
    s = load_settings(e)
    assert s.state.conn_string is None
    assert s.state.blob_uri == "https://acct.blob.core.windows.net"
    assert s.state.table_uri == "https://acct.table.core.windows.net"
    assert s.state.client_id == "cid"


def test_multiple_sinks():
    sinks = [
        {"container": "lake", "format": "parquet"},
        {"container": "archive", "format": "jsonl", "compression": "none"},
    ]
    raw = pipeline(sinks=sinks)
    raw.pop("sink")
    p = load_settings(env(raw)).pipelines[0]
    assert [(s.container, s.format, s.compression) for s in p.sinks] == [
        ("lake", "parquet", "snappy"),
        ("archive", "jsonl", "none"),
    ]


def test_parquet_row_group_bounds():
    (sink,) = load_settings(env(pipeline(sink={"container": "lake", "format": "parquet"}))).pipelines[0].sinks
    assert (sink.row_group_rows, sink.row_group_mb) == (25_000, 4)
    raw = {"container": "lake", "format": "parquet", "row_group_rows": 50_000, "row_group_mb": 64}
    (sink,) = load_settings(env(pipeline(sink=raw))).pipelines[0].sinks
    assert (sink.row_group_rows, sink.row_group_mb) == (50_000, 64)
    assert "'row_group_mb'" in problems(env(pipeline(sink={"container": "lake", "row_group_mb": "big"})))


def test_gzip_level_of_text_sinks():
    (sink,) = load_settings(env(pipeline(sink={"container": "lake"}))).pipelines[0].sinks
    assert sink.gzip_level == 5
    (sink,) = load_settings(env(pipeline(sink={"container": "lake", "gzip_level": 1}))).pipelines[0].sinks
    assert sink.gzip_level == 1
    assert "'gzip_level' must be a whole number from 1 to 9" in problems(
        env(pipeline(sink={"container": "lake", "gzip_level": 10}))
    )
    wrong = {"container": "lake", "format": "parquet", "gzip_level": 3}
    assert "'gzip_level' applies to jsonl and csv with gzip compression only" in problems(env(pipeline(sink=wrong)))
    plain = {"container": "lake", "compression": "none", "gzip_level": 3}
    assert "'gzip_level' applies to jsonl and csv with gzip compression only" in problems(env(pipeline(sink=plain)))
