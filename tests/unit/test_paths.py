"""Blob names of window outputs: deterministic, template-driven, part-aware."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.errors import ConfigError
from shared.model import Window
from shared.paths import (
    DEFAULT_TEMPLATE,
    data_name,
    extension,
    manifest_name,
    render_stem,
    segment_name,
    segment_pattern,
)

W = Window(datetime(2026, 11, 2, 10, 5, tzinfo=UTC), datetime(2026, 11, 2, 10, 10, tzinfo=UTC))
HOUR = Window(datetime(2026, 1, 9, 7, tzinfo=UTC), datetime(2026, 1, 9, 8, tzinfo=UTC))


@pytest.mark.parametrize(
    ("template", "window", "part", "expected"),
    [
        (DEFAULT_TEMPLATE, W, "", "orders/y=2026/m=11/d=02/h=10/20261102T100500Z"),
        (DEFAULT_TEMPLATE, HOUR, "", "orders/y=2026/m=01/d=09/h=07/20260109T070000Z"),
        (DEFAULT_TEMPLATE, W, "late-0001", "orders/y=2026/m=11/d=02/h=10/20261102T100500Z-late-0001"),
        ("{table}/{yyyy}/{MM}/{dd}/{HH}{mm}", W, "", "requests/2026/11/02/1005"),
        ("{pipeline}/{window}_{window_end}", W, "", "orders/20261102T100500Z_20261102T101000Z"),
        ("{pipeline}/{window}-{part}", W, "", "orders/20261102T100500Z"),
        ("{pipeline}/{window}-{part}", W, "late-0002", "orders/20261102T100500Z-late-0002"),
        ("{pipeline}/{window}/{part}", W, "", "orders/20261102T100500Z"),
        ("{pipeline}/{window}/{part}", W, "late-0001", "orders/20261102T100500Z/late-0001"),
        ("{pipeline}/{part}.{window}", W, "", "orders/20261102T100500Z"),
        ("/{pipeline}//{window}/", W, "", "orders/20261102T100500Z"),
        ("raw/{table}/{window}", W, "p1", "raw/requests/20261102T100500Z-p1"),
    ],
    ids=[
        "default-hive",
        "default-hour-window",
        "part-appended",
        "table-and-minute",
        "window-end",
        "empty-part-takes-left-separator",
        "part-placeholder",
        "empty-part-segment-dropped",
        "part-as-segment",
        "empty-part-takes-right-separator",
        "slashes-collapsed",
        "short-part",
    ],
)
def test_render_stem(template: str, window: Window, part: str, expected: str) -> None:
    assert render_stem(template, pipeline="orders", table="requests", window=window, part=part) == expected


def test_non_utc_window_renders_in_utc() -> None:
    cet = timezone(timedelta(hours=1))
    window = Window(datetime(2026, 11, 2, 11, 5, tzinfo=cet), datetime(2026, 11, 2, 11, 10, tzinfo=cet))
    assert render_stem(DEFAULT_TEMPLATE, pipeline="p", table="t", window=window) == render_stem(
        DEFAULT_TEMPLATE, pipeline="p", table="t", window=W
    )


@pytest.mark.parametrize(
    ("fmt", "compression", "ext"),
    [
        ("jsonl", "gzip", ".jsonl.gz"),
        ("jsonl", "none", ".jsonl"),
        ("csv", "gzip", ".csv.gz"),
        ("csv", "none", ".csv"),
        ("parquet", "snappy", ".parquet"),
        ("parquet", "zstd", ".parquet"),
        ("parquet", "none", ".parquet"),
    ],
    ids=lambda v: str(v),
)
def test_extension(fmt: str, compression: str, ext: str) -> None:
    assert extension(fmt, compression) == ext


def test_data_name_appends_extension() -> None:
    name = data_name(
        DEFAULT_TEMPLATE, pipeline="p", table="t", window=W, part="late-0001", fmt="csv", compression="gzip"
    )
    assert name == "p/y=2026/m=11/d=02/h=10/20261102T100500Z-late-0001.csv.gz"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (DEFAULT_TEMPLATE, "p/y=2026/m=11/d=02/h=10/_20261102T100500Z.manifest.json"),
        ("{window}", "_20261102T100500Z.manifest.json"),
        ("{pipeline}/{window}/{part}", "p/_20261102T100500Z.manifest.json"),
    ],
    ids=["default", "flat", "part-folder"],
)
def test_manifest_name_is_per_window(template: str, expected: str) -> None:
    assert manifest_name(template, pipeline="p", table="t", window=W) == expected


def test_manifests_of_windows_sharing_an_hour_folder_differ() -> None:
    a = manifest_name(DEFAULT_TEMPLATE, pipeline="p", table="t", window=W)
    b = manifest_name(DEFAULT_TEMPLATE, pipeline="p", table="t", window=Window(W.end, W.end + timedelta(minutes=5)))
    assert a != b and a.rsplit("/", 1)[0] == b.rsplit("/", 1)[0]


def test_segments() -> None:
    name = "p/h=10/20261102T100500Z.csv.gz"
    assert segment_name(name, ".csv.gz", 0) == name
    assert segment_name(name, ".csv.gz", 2) == "p/h=10/20261102T100500Z-s002.csv.gz"
    prefix, pattern = segment_pattern(name, ".csv.gz")
    assert prefix == "p/h=10/20261102T100500Z-s"
    match = pattern.match("p/h=10/20261102T100500Z-s012.csv.gz")
    assert match and match.group(1) == "012"
    assert not pattern.match("p/h=10/20261102T100500Z-late-0001.csv.gz")
    assert not pattern.match("p/h=10/20261102T100500Z-s001.csv.gz.tmp")


@pytest.mark.parametrize(
    ("template", "part", "error"),
    [
        ("{pipeline}/{nope}", "", ConfigError),
        ("{pipeline}/{window}", "bad/part", ValueError),
        ("{pipeline}/{window}", "-lead", ValueError),
        ("/{part}/", "", ConfigError),
        ("{pipeline}/../{window}", "", ConfigError),
    ],
    ids=["unknown-placeholder", "slash-in-part", "part-leading-dash", "renders-empty", "dot-dot"],
)
def test_bad_templates_and_parts(template: str, part: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        render_stem(template, pipeline="p", table="t", window=W, part=part)


def test_unknown_format_extension() -> None:
    with pytest.raises(ConfigError):
        extension("xml", "gzip")
