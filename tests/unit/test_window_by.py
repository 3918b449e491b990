"""``window_by``: the settings it takes and the KQL and timespan each mode sends (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.model import Window
from shared.settings import QuerySourceConfig, load_settings
from shared.sources.bounds import bounded_query, split_table, timespan
from shared.sources.query_api import count_bins_query
from tests.unit.test_settings import env, pipeline, problems

W = (datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))


def source(**over: object) -> QuerySourceConfig:
    src = {"kind": "app_insights", "app_id": "a", "query": "requests"} | over
    window = {"size": "PT1H", "start": "2026-11-01T00:00:00Z"}
    config = load_settings(env(pipeline(source=src, window=window))).pipelines[0].source
    assert isinstance(config, QuerySourceConfig)
    return config


def window() -> Window:
    return Window(*W)


def test_event_time_is_the_default_and_unchanged():
    config = source()
    assert config.window_by == "event"
    assert bounded_query(config, window()) == (
        "requests\n| where timestamp >= datetime(2026-11-02T10:00:00Z) and timestamp < datetime(2026-11-02T11:00:00Z)"
    )
    assert timespan(config, window()) == "2026-11-02T10:00:00Z/2026-11-02T11:00:00Z"
    assert count_bins_query(config, window()).endswith("| summarize count() by bin(timestamp, 60s)")


def test_ingestion_bound_goes_right_after_the_table_and_the_timespan_reaches_back():
    config = source(window_by="ingestion", query="requests | where success == 'False'")
    assert (config.max_event_lag, config.max_event_lead) == (timedelta(days=2), timedelta(days=1))
    assert bounded_query(config, window()) == (
        "requests\n| where ingestion_time() >= datetime(2026-11-02T10:00:00Z)"
        " and ingestion_time() < datetime(2026-11-02T11:00:00Z)\n| where success == 'False'"
    )
    assert count_bins_query(config, window()).endswith("| summarize count() by bin(ingestion_time(), 60s)")
    assert timespan(config, window()) == "2026-10-31T10:00:00Z/2026-11-03T11:00:00Z"


def test_event_bounds_are_configurable():
    config = source(window_by="ingestion", max_event_lag="PT6H", max_event_lead="PT0S")
    assert timespan(config, window()) == "2026-11-02T04:00:00Z/2026-11-02T11:00:00Z"


@pytest.mark.parametrize(
    ("over", "window", "delay"),
    [
        ({"window_by": "ingestion"}, {}, timedelta(minutes=2)),
        ({"window_by": "ingestion"}, {"delay": "PT30S"}, timedelta(seconds=30)),
        ({}, {}, timedelta(minutes=5)),
    ],
    ids=["ingestion-default", "ingestion-explicit", "event-default"],
)
def test_default_delay_covers_commit_latency_only(over, window, delay):
    src = {"kind": "app_insights", "app_id": "a", "query": "requests"} | over
    w = {"size": "PT1H", "start": "2026-11-01T00:00:00Z"} | window
    assert load_settings(env(pipeline(source=src, window=w))).pipelines[0].window.delay == delay


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"window_by": "ingest"}, "'window_by' must be event (windows bounded by the time column) or ingestion"),
        ({"max_event_lag": "P1D"}, '\'max_event_lag\' applies only with "window_by": "ingestion"'),
        ({"window_by": "ingestion", "max_event_lead": "P31D"}, "'max_event_lead' must be from PT0S to P30D"),
        ({"window_by": "ingestion", "max_event_lag": "2 days"}, "'max_event_lag':"),
        (
            {"window_by": "ingestion", "query": "union requests, traces"},
            "the 'query' must start with its table (e.g. 'requests | where success == false')",
        ),
        ({"window_by": "ingestion", "time_column": "timestamp"}, "'time_column' has no effect with"),
    ],
    ids=[
        "unknown-mode",
        "lag-without-ingestion",
        "lead-too-far",
        "lag-not-a-duration",
        "query-without-table",
        "time-column-unused",
    ],
)
def test_bad_window_by_settings_are_refused_with_the_fix(over, fragment):
    src = {"kind": "app_insights", "app_id": "a", "query": "requests"} | over
    assert fragment in problems(env(pipeline(source=src)))


@pytest.mark.parametrize(
    ("query", "parts"),
    [
        ("requests", ("requests", "")),
        ("  AppRequests\n| where Success == false ", ("AppRequests", "| where Success == false")),
        ("requests|take 5", ("requests", "|take 5")),
    ],
    ids=["bare", "workspace-multiline", "no-spaces"],
)
def test_split_table(query, parts):
    assert split_table(query) == parts


def test_split_table_refuses_a_query_without_a_leading_table():
    with pytest.raises(ValueError, match="does not start with a table name"):
        split_table("let t = requests; t")
