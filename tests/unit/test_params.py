"""Request parameters: every malformed value is a ``BadRequest`` with a reason, never another exception."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.durations import parse_timestamp
from shared.frontends.params import BadRequest, choice, json_fields, time_range, timestamp, whole_number
from shared.settings import load_settings
from shared.windows import align_up

NOW = datetime(2026, 11, 10, 12, 7, tzinfo=UTC)


def settings_pipeline(kind="app_insights", **window):
    source = (
        {"kind": kind, "app_id": "a", "query": "requests"}
        if kind == "app_insights"
        else {"kind": kind, "container": "insights-logs-apprequests", "prefix": "resourceId=/X"}
    )
    doc = {
        "name": "p",
        "source": source,
        "window": {"size": "PT1H", "start": "2026-10-01T00:00:00Z"} | window,
        "sink": {"container": "out"},
    }
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MOVER_PIPELINES": json.dumps({"pipelines": [doc]})}
    return load_settings(env).pipelines[0]


def reason(call, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(BadRequest) as info:
        call(*args, **kwargs)
    assert info.value.reason
    return info.value.status, info.value.reason


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("²", "whole number from 1 to 500; got '²'"),
        ("١٢", "whole number"),
        ("-1", "whole number"),
        ("0", "got 0"),
        ("501", "got 501"),
        ("9" * 400, "whole number"),
        ("1e3", "whole number"),
        (" 5", "whole number"),
    ],
    ids=["superscript", "arabic-indic", "negative", "zero", "over", "huge", "float", "space"],
)
def test_whole_number_takes_ascii_digits_in_range(raw, fragment):
    status, text = reason(whole_number, {"recent": raw}, "recent", 20, 1, 500)
    assert status == 400 and fragment in text


def test_whole_number_default_and_value():
    assert whole_number({}, "recent", 20, 1, 500) == 20
    assert whole_number({"recent": "500"}, "recent", 20, 1, 500) == 500


def test_choice_is_exact():
    assert choice({}, "format", ("json", "html"), "json") == "json"
    assert reason(choice, {"format": "JSON"}, "format", ("json", "html"), "json")[1] == (
        "'format' must be json or html; got 'JSON'"
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0001-01-01T00:00:00+01:00", "outside the supported range"),
        ("9999-12-31T23:59:59-01:00", "outside the supported range"),
        ("2026-11-02T10:00:00", "needs a UTC offset"),
        ("2026-13-02T10:00:00Z", "not an ISO 8601 timestamp"),
        ("x" * 65, "too long"),
        (12, "must be a string"),
        ("", "must be a string"),
    ],
)
def test_timestamp_param(value, fragment):
    assert fragment in reason(timestamp, {"start": value}, "start")[1]


def test_json_fields_body_and_query_string():
    allowed = {"pipeline", "start"}
    assert json_fields(b'\xef\xbb\xbf{"pipeline": "p"}', {}, allowed, max_body=100) == {"pipeline": "p"}  # BOM
    assert json_fields(b"", {"pipeline": "p", "code": "function-key"}, allowed, max_body=100) == {"pipeline": "p"}
    assert reason(json_fields, b"x" * 101, {}, allowed, max_body=100)[0] == 413
    assert "not valid JSON" in reason(json_fields, b'{"pipeline": "\xff"}', {}, allowed, max_body=100)[1]
    assert "must be a JSON object, got list" in reason(json_fields, b"[]", {}, allowed, max_body=100)[1]
    assert "unknown field(s) 'x'" in reason(json_fields, b'{"x": 1}', {}, allowed, max_body=100)[1]


@pytest.mark.parametrize(
    ("start", "end", "fragment"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:05:00Z", "before the pipeline's window start 2026-10-01T00:00:00Z"),
        ("1900-01-01T00:00:00Z", "1900-01-01T01:00:00Z", "before the pipeline's window start"),
        ("2020-01-01T00:00:00Z", "2026-10-02T00:00:00Z", "before the pipeline's window start"),
        ("2026-11-10T00:00:00Z", "9999-12-31T23:59:59Z", "not closed yet"),
        ("2026-11-02T00:00:00Z", "2026-11-01T00:00:00Z", "'end' must be after 'start'"),
        ("2026-11-02T00:00:00Z", "2026-11-02T00:00:00Z", "'end' must be after 'start'"),
    ],
)
def test_time_range_refuses_what_has_no_windows(start, end, fragment):
    p = settings_pipeline()
    status, text = reason(time_range, p, parse_timestamp(start), parse_timestamp(end), NOW)
    assert status == 400 and fragment in text


def test_time_range_refuses_after_the_pipelines_end():
    p = settings_pipeline(end="2026-11-01T00:00:00Z")
    text = reason(time_range, p, parse_timestamp("2026-10-31T00:00:00Z"), parse_timestamp("2026-11-01T01:00:00Z"), NOW)
    assert "after the pipeline's window end 2026-11-01T00:00:00Z" in text[1]


def test_time_range_refuses_beyond_the_query_retention_but_not_for_blob_sources():
    p = settings_pipeline(start="2025-01-01T00:00:00Z")
    start, end = datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 1, 2, tzinfo=UTC)
    text = reason(time_range, p, start, end, NOW)[1]
    oldest = align_up(NOW - timedelta(days=90), timedelta(hours=1))
    expected = f"the source's retention (P90D): the oldest window the API still holds starts {oldest:%Y-%m-%dT%H}"
    assert expected in text
    blob = settings_pipeline("diagnostic_settings", start="2025-01-01T00:00:00Z")
    assert time_range(blob, start, end, NOW) == (start, end)


def test_time_range_widens_to_whole_windows():
    p = settings_pipeline()
    first, last = time_range(p, parse_timestamp("2026-11-02T10:30:00Z"), parse_timestamp("2026-11-02T11:10:00Z"), NOW)
    assert (first, last) == (datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 12, tzinfo=UTC))


def test_optional_timestamp():
    from shared.frontends.params import optional_timestamp

    assert optional_timestamp({}, "from") is None
    assert optional_timestamp({"from": "2026-11-02T10:00:00+01:00"}, "from") == datetime(2026, 11, 2, 9, tzinfo=UTC)
    assert "'from': not an ISO 8601" in reason(optional_timestamp, {"from": "soon"}, "from")[1]
