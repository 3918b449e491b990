"""shared.mapping column spec: parse errors and application to batches."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import mapping
from shared.errors import ConfigError, FatalError
from shared.mapping import AddedColumn, ColumnSpec
from shared.model import Batch, Column
from shared.settings import Settings, load_settings

# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("timestamp", "must be an object like"),
        (42, "must be an object like"),
        ({"select": ["a"]}, "unknown field 'select'; allowed: include, exclude, rename, add, on_missing"),
        ({"include": "timestamp"}, "'include' must be a list of column names"),
        ({"include": ["a", ""]}, "'include' must be a list of column names"),
        ({"include": ["a", 1]}, "'include' must be a list of column names"),
        ({"include": ["a", "a"]}, "'include' lists 'a' more than once"),
        ({"include": ["customDimensions.tenant"]},
         "'include' entry 'customDimensions.tenant' is a path, not a column; to read a value inside a column "
         'use "add": {"tenant": "customDimensions.tenant"}'),
        ({"include": []}, "'include' is empty and nothing is added"),
        ({"include": ["a"], "exclude": ["b"]}, "use either 'include'"),
        ({"exclude": "b"}, "'exclude' must be a list of column names"),
        ({"rename": ["a", "b"]}, "'rename' must be an object like"),
        ({"rename": {"a": "b c"}}, "'rename.a': 'b c' is not a valid column name"),
        ({"rename": {"a": 7}}, "'rename.a': 7 is not a valid column name"),
        ({"include": ["a"], "rename": {"b": "c"}}, "'rename' key 'b' is not in 'include'"),
        ({"exclude": ["a"], "rename": {"a": "c"}}, "'rename' key 'a' is also in 'exclude'"),
        ({"include": ["a", "b"], "rename": {"a": "b"}}, "output column 'b' would appear twice"),
        ({"include": ["a"], "add": {"a": "customDimensions.a"}}, "output column 'a' would appear twice"),
        ({"add": ["tenant"]}, "'add' must be an object like"),
        ({"add": {"1x": "a.b"}}, "'add' key '1x': '1x' is not a valid column name"),
        ({"add": {"t": 5}}, "'add.t' must be a path string like \"customDimensions.t\""),
        ({"add": {"t": {"type": "string"}}}, "'add.t' needs a \"path\""),
        ({"add": {"t": {"path": "a.b", "kind": "string"}}}, "'add.t' has unknown field 'kind'; allowed: path, type"),
        ({"add": {"t": {"path": "a.b", "type": "text"}}}, "'add.t' has unknown type 'text'; use one of: bool,"),
        ({"add": {"t": "a..b"}}, "'add.t': 'a..b' is not a path like customDimensions.tenant"),
        ({"add": {"t": ".a"}}, "'add.t': '.a' must start with a column name"),
        ({"add": {"t": "a[x]"}}, "(problem at character 2)"),
        ({"on_missing": "skip"}, "'on_missing' must be \"null\""),
    ],
    ids=["string", "number", "unknown-field", "include-string", "include-empty-name", "include-number",
         "include-duplicate", "include-path", "include-empty", "include-and-exclude", "exclude-string",
         "rename-list", "rename-bad-target", "rename-number-target", "rename-not-included", "rename-excluded",
         "rename-collision", "add-collision", "add-list", "add-bad-name", "add-number", "add-no-path",
         "add-unknown-field", "add-unknown-type", "add-double-dot", "add-leading-dot", "add-bad-index",
         "on-missing"],
)  # fmt: skip
def test_parse_errors_name_the_field_and_the_fix(raw: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        mapping.parse_column_spec(raw)
    assert message in str(info.value)


def test_parse_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError) as info:
        mapping.parse_column_spec({"include": "x", "bogus": 1, "on_missing": "maybe"})
    text = str(info.value)
    assert "unknown field 'bogus'" in text and "'include' must be a list" in text and "'on_missing'" in text
    assert "is empty" not in text  # no follow-on noise from the invalid include


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ColumnSpec()),
        ({}, ColumnSpec()),
        (["timestamp", "name"], ColumnSpec(include=("timestamp", "name"))),
        ({"exclude": ["customMeasurements"], "on_missing": "error"},
         ColumnSpec(exclude=("customMeasurements",), on_missing="error")),
        ({"include": ["timestamp", "duration"], "rename": {"duration": "duration_ms"},
          "add": {"tenant": "customDimensions.tenant",
                  "first": {"path": 'details[0]["outer.type"]', "type": "string"}}},
         ColumnSpec(include=("timestamp", "duration"), rename=(("duration", "duration_ms"),),
                    add=(AddedColumn("tenant", "customDimensions.tenant", "customDimensions", ("tenant",)),
                         AddedColumn("first", 'details[0]["outer.type"]', "details", (0, "outer.type"), "string")))),
    ],
    ids=["none", "empty", "list-shorthand", "exclude", "full"],
)  # fmt: skip
def test_parse_valid_specs(raw: Any, expected: ColumnSpec) -> None:
    spec = mapping.parse_column_spec(raw)
    assert spec == expected
    assert mapping.parse_column_spec(spec) is spec
    hash(spec)  # plans are cached per spec


@pytest.mark.parametrize(
    ("path", "root", "steps"),
    [
        ("customDimensions", "customDimensions", ()),
        ("customDimensions.tenant", "customDimensions", ("tenant",)),
        ("details[0].parsedStack[1].method", "details", (0, "parsedStack", 1, "method")),
        ('customDimensions["a.b"].c', "customDimensions", ("a.b", "c")),
        ("customDimensions['x y']", "customDimensions", ("x y",)),
        (r'customDimensions["q\"uote"]', "customDimensions", ('q"uote',)),
    ],
    ids=["column", "key", "indexes", "quoted-dots", "single-quotes", "escaped-quote"],
)
def test_parse_path(path: str, root: str, steps: tuple[Any, ...]) -> None:
    assert mapping.parse_path(path) == (root, steps)


def _settings_with(columns: Any) -> Settings:
    pipelines = {"pipelines": [{
        "name": "req",
        "source": {"kind": "app_insights", "app_id": "app-1", "query": "requests"},
        "window": {"size": "PT1H", "start": "2026-11-01T00:00:00Z"},
        "sink": {"kind": "blob", "container": "telemetry"},
        "columns": columns,
    }]}  # fmt: skip
    env = {"MOVER_PIPELINES": json.dumps(pipelines), "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    return load_settings(env)


def test_settings_use_the_parsed_spec_and_report_its_errors() -> None:
    assert _settings_with(["timestamp"]).pipelines[0].columns == ColumnSpec(include=("timestamp",))
    with pytest.raises(ConfigError) as info:
        _settings_with({"include": ["a"], "rename": {"b": "c"}})
    assert any("columns" in p and "'rename' key 'b' is not in 'include'" in p for p in info.value.problems)


# -- application ---------------------------------------------------------------------------------
COLUMNS = (
    Column("timestamp", "datetime"),
    Column("name", "string"),
    Column("duration", "real"),
    Column("customDimensions", "dynamic"),
    Column("details", "dynamic"),
    Column("itemCount", "int"),
)
ROWS: list[list[Any]] = [
    ["2026-11-02T10:00:00Z", "GET /", 104.6804, {"tenant": "contoso", "n": "7", "a.b": 1},
     [{"type": "E", "parsedStack": [{"method": "M0"}, {"method": "M1"}]}], 1],
    ["2026-11-02T10:00:01Z", "GET /x", 9.5, '{"tenant": "fabrikam", "n": "x"}', None, 2],  # JSON-encoded cell
    ["2026-11-02T10:00:02Z", None, None, None, "[]", 3],
]  # fmt: skip


def batch() -> Batch:
    return Batch("requests", COLUMNS, [list(r) for r in ROWS])


@pytest.mark.parametrize(
    ("spec", "columns", "rows"),
    [
        (["name", "timestamp"], "name:string timestamp:datetime",
         [["GET /", "2026-11-02T10:00:00Z"], ["GET /x", "2026-11-02T10:00:01Z"], [None, "2026-11-02T10:00:02Z"]]),
        (["itemCount"], "itemCount:int", [[1], [2], [3]]),
        ({"include": ["timestamp", "duration"], "rename": {"duration": "duration_ms"}},
         "timestamp:datetime duration_ms:real",
         [["2026-11-02T10:00:00Z", 104.6804], ["2026-11-02T10:00:01Z", 9.5], ["2026-11-02T10:00:02Z", None]]),
        ({"exclude": ["customDimensions", "details", "timestamp"], "rename": {"name": "op"}},
         "op:string duration:real itemCount:int",
         [["GET /", 104.6804, 1], ["GET /x", 9.5, 2], [None, None, 3]]),
        ({"include": ["name"], "add": {"tenant": {"path": "customDimensions.tenant", "type": "string"},
                                       "n": {"path": "customDimensions.n", "type": "int"},
                                       "dotted": 'customDimensions["a.b"]',
                                       "m1": "details[0].parsedStack[1].method",
                                       "dims": "customDimensions"}},
         "name:string tenant:string n:int dotted:dynamic m1:dynamic dims:dynamic",
         [["GET /", "contoso", 7, 1, "M1", {"tenant": "contoso", "n": "7", "a.b": 1}],
          ["GET /x", "fabrikam", None, None, None, '{"tenant": "fabrikam", "n": "x"}'],
          [None, None, None, None, None, None]]),
        ({"include": [], "add": {"count_text": {"path": "itemCount", "type": "string"}}}, "count_text:string",
         [["1"], ["2"], ["3"]]),
        ({"include": ["name", "nope"], "add": {"ghost": "missing.path"}}, "name:string nope:string ghost:string",
         [["GET /", None, None], ["GET /x", None, None], [None, None, None]]),
        ({"add": {"first_type": "details[0].type"}},
         "timestamp:datetime name:string duration:real customDimensions:dynamic details:dynamic itemCount:int "
         "first_type:dynamic",
         [[*ROWS[0], "E"], [*ROWS[1], None], [*ROWS[2], None]]),
    ],
    ids=["include-reorders", "single-column", "rename", "exclude-rename", "add-paths-and-types",
         "add-only", "missing-become-null", "keep-all-and-add"],
)  # fmt: skip
def test_apply_columns(spec: Any, columns: str, rows: list[list[Any]]) -> None:
    source = batch()
    out = mapping.apply_columns(source, mapping.parse_column_spec(spec))
    assert out.table == "requests"
    assert " ".join(f"{c.name}:{c.type}" for c in out.columns) == columns
    assert out.rows == rows
    assert source.rows == ROWS  # input untouched


def test_identity_spec_returns_the_batch_itself() -> None:
    source = batch()
    assert mapping.apply_columns(source, mapping.parse_column_spec({})) is source


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"include": ["name", "nope"], "on_missing": "error"}, "'nope' not in this batch"),
        ({"add": {"t": "ghost.tenant"}, "on_missing": "error"}, "'ghost' not in this batch"),
        ({"rename": {"ghost": "g"}, "on_missing": "error"}, "'ghost' not in this batch"),
        ({"rename": {"duration": "name"}}, "output column(s) 'name' would appear twice"),
        ({"add": {"name": "customDimensions.tenant"}}, "output column(s) 'name' would appear twice"),
    ],
    ids=["missing-include", "missing-add-root", "missing-rename", "rename-collides", "add-collides"],
)
def test_apply_columns_errors(spec: Any, message: str) -> None:
    with pytest.raises(FatalError) as info:
        mapping.apply_columns(batch(), mapping.parse_column_spec(spec))
    assert message in str(info.value)


def test_rename_of_absent_column_is_ignored_by_default() -> None:
    out = mapping.apply_columns(batch(), mapping.parse_column_spec({"rename": {"ghost": "g", "name": "op"}}))
    assert [c.name for c in out.columns][:2] == ["timestamp", "op"]


def test_plan_is_reused_per_distinct_columns() -> None:
    spec = mapping.parse_column_spec({"include": ["name"], "add": {"t": "customDimensions.tenant"}})
    first = mapping.apply_columns(batch(), spec)
    second = mapping.apply_columns(batch(), spec)
    assert first.columns is second.columns  # same cached plan
    other = Batch("requests", (Column("name"), Column("customDimensions", "dynamic")), [["a", {"tenant": "t"}]])
    assert mapping.apply_columns(other, spec).rows == [["a", "t"]]


def test_mapped_rows_and_column_spec_work_together() -> None:
    record = {
        "request": [{"name": "GET /", "durationMetric": {"value": 2_500_000.0}, "success": True}],
        "context": {"data": {"eventTime": "2026-11-02T10:00:00Z"}, "custom": {"dimensions": [{"tenant": "contoso"}]}},
        "internal": {"data": {"id": "i-1"}},
    }  # fmt: skip
    table, row = mapping.map_export_record(record)
    spec = mapping.parse_column_spec({"include": ["itemId", "duration", "performanceBucket"],
                                      "rename": {"duration": "duration_ms"},
                                      "add": {"tenant": {"path": "customDimensions.tenant", "type": "string"}}})
    out = mapping.apply_columns(Batch(table, mapping.schema(table), [row]), spec)
    assert out.names == ["itemId", "duration_ms", "performanceBucket", "tenant"]
    assert out.rows == [["i-1", 250.0, "250ms-500ms", "contoso"]]
