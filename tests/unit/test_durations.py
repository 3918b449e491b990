from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.durations import format_duration, parse_duration, parse_timestamp


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("PT15M", timedelta(minutes=15)),
        ("PT1H", timedelta(hours=1)),
        ("P1D", timedelta(days=1)),
        ("PT0.5S", timedelta(seconds=0.5)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("pt5m", timedelta(minutes=5)),
    ],
    ids=["15m", "1h", "1d", "half-second", "mixed", "lowercase"],
)
def test_parse_duration(text, delta):
    assert parse_duration(text) == delta


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "15m", "P1Y", "PT-5M", "1h"], ids=["empty", "P", "PT", "bare", "years", "negative", "1h"]
)
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="ISO 8601 duration"):
        parse_duration(text)


def test_format_duration_roundtrip():
    for text in ("PT15M", "PT1H", "P1D", "P1DT2H3M4S"):
        assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2026-11-02T10:00:00Z", datetime(2026, 11, 2, 10, tzinfo=UTC)),
        ("2026-11-02T10:05:45.7334717Z", datetime(2026, 11, 2, 10, 5, 45, 733471, tzinfo=UTC)),
        ("2026-11-02T12:00:00+02:00", datetime(2026, 11, 2, 10, tzinfo=UTC)),
    ],
    ids=["z", "seven-digits", "offset"],
)
def test_parse_timestamp(text, value):
    assert parse_timestamp(text) == value


@pytest.mark.parametrize(
    "text",
    ["2026-11-02T10:00:00", "yesterday", "2026-11-02T10:00:00Z) | take 1", "", "2026-13-02T10:00:00Z"],
    ids=["naive", "words", "kql-injection", "empty", "bad-month"],
)
def test_parse_timestamp_rejects(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_parse_timestamp_refuses_instants_outside_the_calendar(text):
    with pytest.raises(ValueError, match="outside the supported range"):
        parse_timestamp(text)
