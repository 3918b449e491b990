"""A typo in the settings fails at load with the reason, never silently or later at run time."""

from __future__ import annotations

import pytest

from shared.settings import QuerySourceConfig, load_settings
from tests.unit.test_settings import BASE_ENV, env, pipeline, problems

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
GOOD_CONN = f"DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey={AZURITE_KEY};EndpointSuffix=core.windows.net"


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"sink": {"container": "out", "fromat": "parquet"}}, "sinks[0]: unknown field 'fromat'"),
        ({"sink": {"kind": "table", "table": "outtable", "path": "{window}"}}, "sinks[0]: unknown field 'path'"),
        (
            {"source": {"kind": "app_insights", "app_id": "a", "query": "requests", "querry": "x"}},
            "source: unknown field 'querry'",
        ),
        (
            {"source": {"kind": "app_insights", "app_id": "a", "query": "requests", "auth": {"kind": "entra", "x": 1}}},
            "source auth: unknown field 'x'",
        ),
        (
            {
                "source": {
                    "kind": "app_insights",
                    "app_id": "a",
                    "query": "requests",
                    "auth": {"kind": "managed_identity", "setting": "AI_KEY"},
                }
            },
            "source auth: unknown field 'setting'",
        ),
        ({"window": {"size": "PT1H", "start": "2026-11-01T00:00:00Z", "dealy": "PT5M"}}, "unknown field 'dealy'"),
        ({"columns": {"inclde": ["timestamp"]}}, "columns: unknown field 'inclde'"),
    ],
    ids=["sink", "table-sink", "query-source", "auth", "auth-kind", "window", "columns"],
)
def test_unknown_fields_rejected_everywhere(over, fragment):
    assert fragment in problems(env(pipeline(**over)))


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("{pipeline}/../{window}", "'..' segments"),
        ("./{window}", "'..' segments"),
        ("{pipeline}//{window}", "empty segment"),
        ("{pipeline}\\{window}", "cannot hold safely: '\\\\'"),
        ("{pipeline}/{window}?x", "cannot hold safely: '?'"),
        ("{pipeline}/\x01{window}", "cannot hold safely: '\\x01'"),
        ("{pipeline}/{window", "'{' that is never closed at character 12"),
        ("{pipeline}/window}", "'}' without its '{' at character 18"),
        ("{pipeline}/{{window}}", "'{' inside another '{...}' at character 13"),
        ("{pipeline}/{yyyy}", "must contain {window}"),
        ("{pipeline}/{day}/{window}", "unknown placeholder {day}"),
        ("x" * 1100 + "/{window}", "renders blob names of up to 1148 characters"),
        ("x" * 980 + "/{window}", "blob names may have at most 1024"),
    ],
    ids=[
        "dotdot",
        "dot",
        "empty-segment",
        "backslash",
        "question",
        "control",
        "unclosed",
        "unopened",
        "nested",
        "no-window",
        "unknown",
        "too-long",
        "manifest-too-long",
    ],
)
def test_path_templates_checked_by_rendering(path, fragment):
    assert fragment in problems(env(pipeline(sink={"container": "out", "path": path})))


def test_good_path_templates_load():
    for path in ("{pipeline}/{yyyy}/{MM}/{dd}/{window}", "/{table}/{window}-{part}/", "{yyyy}{MM}{dd}/{HH}{mm}"):
        assert load_settings(env(pipeline(sink={"container": "out", "path": path}))).pipelines[0]


def test_invalid_name_still_reports_the_pipelines_other_problems():
    text = problems(env(pipeline(name="1bad", sink={"container": "out", "fromat": "csv"}, window={"size": "PT1H"})))
    assert "pipelines[0]: 'name' must be" in text
    assert "pipelines[0] sinks[0]: unknown field 'fromat'" in text
    assert "pipelines[0] window: 'start' is required" in text


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ("*/5 * * * *", "got 5 field(s)"),
        ("0 61 * * * *", "is not a six-field NCRONTAB"),
        ("every five minutes", "six-field NCRONTAB"),
        ("0 */5 * * * * *", "got 7 field(s)"),
    ],
)
def test_schedule_validated(schedule, fragment):
    text = problems(env(pipeline(), MOVER_SCHEDULE=schedule))
    assert "MOVER_SCHEDULE" in text and fragment in text


def test_valid_schedule_kept():
    assert load_settings(env(pipeline(), MOVER_SCHEDULE="30 0 * * * *")).schedule == "30 0 * * * *"


def test_missing_state_storage_names_the_documented_setting():
    e = env(pipeline(), MOVER_STATE_CONNECTION_SETTING="LedgerStorage")
    text = problems(e)
    assert "MOVER_STATE_CONNECTION_SETTING" in text and "'LedgerStorage' is not set" in text


@pytest.mark.parametrize(
    ("key", "value", "suggestion"),
    [
        ("start", "2026-11-01T00:30:00Z", "use 2026-11-01T00:00:00Z or 2026-11-01T01:00:00Z"),
        ("end", "2026-11-03T23:59:59Z", "use 2026-11-03T23:00:00Z or 2026-11-04T00:00:00Z"),
    ],
)
def test_misaligned_times_suggest_aligned_values(key, value, suggestion):
    window = {"size": "PT1H", "start": "2026-11-01T00:00:00Z"} | {key: value}
    text = problems(env(pipeline(window=window)))
    assert f"'{key}' {value} is not aligned to the window size PT1H; {suggestion}" in text


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "9999-12-31T23:00:00Z"])
def test_window_start_within_the_storable_range(start):
    assert "must be from 1970-01-01 to 9000-01-01" in problems(env(pipeline(window={"size": "PT1H", "start": start})))


@pytest.mark.parametrize(
    ("conn", "fragment"),
    [
        ("garbage", "part 1 is not key=value"),
        ("AccountName=acct1;AccountKey=not base64!", "AccountKey is not a base64 account key"),
        ("AccountName=acct1", "needs AccountName and AccountKey, or SharedAccessSignature"),
        (f"AccountKey={AZURITE_KEY}", "AccountKey needs AccountName"),
        (f"AccountName=acct1;AcountKey={AZURITE_KEY}", "unknown key 'AcountKey'"),
        (f"AccountName=acct1;AccountKey={AZURITE_KEY};DefaultEndpointsProtocol=ftp", "must be http or https"),
        (f"AccountName=acct1;AccountKey={AZURITE_KEY};BlobEndpoint=blob.example", "BlobEndpoint is not an http(s)"),
        ("SharedAccessSignature=sv=2024&sig=abc;BlobEndpoint=https://a.blob.core.windows.net", "TableEndpoint"),
        ("UseDevelopmentStorage=True", "UseDevelopmentStorage must be 'true'"),
        (f"AccountName=acct1;;AccountKey={AZURITE_KEY}", "part 2 is empty"),
        (f"AccountName=acct1;AccountKey={AZURITE_KEY};AccountName=acct2", "AccountName twice"),
    ],
    ids=[
        "garbage",
        "bad-base64",
        "no-key",
        "no-name",
        "typo",
        "protocol",
        "endpoint",
        "sas-no-table",
        "devstorage-case",
        "empty-part",
        "twice",
    ],
)
def test_malformed_connection_strings_fail_at_load(conn, fragment):
    text = problems(env(pipeline()) | {"AzureWebJobsStorage": conn})
    assert fragment in text
    assert AZURITE_KEY not in text  # a key is never part of a problem
    assert text.count(fragment) == 1  # one setting serves ledger and sink: said once


@pytest.mark.parametrize(
    "conn",
    [
        "UseDevelopmentStorage=true",
        GOOD_CONN,
        "SharedAccessSignature=sv=2024&sig=abc;BlobEndpoint=https://a.blob.core.windows.net;"
        "TableEndpoint=https://a.table.core.windows.net",
    ],
    ids=["azurite", "account-key", "sas"],
)
def test_valid_connection_strings_load(conn):
    assert load_settings(env(pipeline()) | {"AzureWebJobsStorage": conn}).state.conn_string == conn


def test_identity_uri_must_be_a_url():
    e = env(pipeline()) | {"AzureWebJobsStorage": "", "AzureWebJobsStorage__blobServiceUri": "acct.blob"}
    assert "'AzureWebJobsStorage__blobServiceUri' is not an http(s) URL" in problems(e)


def test_query_source_retention_default_and_bounds():
    source = {"kind": "log_analytics", "workspace_id": "ws", "query": "AppRequests", "retention": "P365D"}
    p = load_settings(env(pipeline(source=source))).pipelines[0]
    assert isinstance(p.source, QuerySourceConfig) and p.source.retention.days == 365
    p = load_settings(env(pipeline())).pipelines[0]
    assert isinstance(p.source, QuerySourceConfig) and p.source.retention.days == 90
    bad = pipeline().pop("source") | {"retention": "PT1H"}
    assert "'retention' must be from P1D to P4383D" in problems(env(pipeline(source=bad)))


def test_base_env_still_valid():
    assert load_settings(BASE_ENV | env(pipeline())).pipelines
