"""One query source, every table: ``tables`` expands into one pipeline per table at load."""

from __future__ import annotations

import pytest

from shared.mapping import DIAGNOSTIC_TYPES, TABLES
from shared.settings import QuerySourceConfig, load_settings
from tests.unit.test_settings import env, pipeline, problems


def expanded(source: dict, **over):
    return load_settings(env(pipeline(name="shop", source=source, **over))).pipelines


def test_each_table_becomes_a_pipeline_with_the_same_window_auth_and_sinks():
    src = {
        "kind": "app_insights",
        "app_id": "a",
        "tables": ["requests", "dependencies", "exceptions"],
        "auth": {"kind": "managed_identity"},
        "window_by": "ingestion",
        "max_rows_per_query": 500,
    }
    pipes = expanded(src, sinks=[{"container": "lake", "format": "parquet"}, {"kind": "table", "table": "moved"}])
    assert [p.name for p in pipes] == ["shop-requests", "shop-dependencies", "shop-exceptions"]
    assert {p.group for p in pipes} == {"shop"}
    for p, table in zip(pipes, ("requests", "dependencies", "exceptions"), strict=True):
        assert isinstance(p.source, QuerySourceConfig)
        assert (p.source.query, p.source.table) == (table, table)
        assert (p.source.auth.kind, p.source.window_by, p.source.max_rows_per_query) == (
            "managed_identity",
            "ingestion",
            500,
        )
        assert p.window == pipes[0].window and p.sinks == pipes[0].sinks


def test_a_pipeline_written_as_such_has_no_group():
    assert load_settings(env(pipeline())).pipelines[0].group is None


@pytest.mark.parametrize(
    ("kind", "tables"),
    [("app_insights", TABLES), ("log_analytics", tuple(DIAGNOSTIC_TYPES))],
    ids=["classic-names", "workspace-names"],
)
def test_all_means_the_classic_tables_or_their_workspace_names(kind, tables):
    id_field = "app_id" if kind == "app_insights" else "workspace_id"
    pipes = expanded({"kind": kind, id_field: "x", "tables": "all"})
    assert [p.source.table for p in pipes] == list(tables) and len(tables) == 10
    assert [p.name for p in pipes] == [f"shop-{t}" for t in tables]


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        (
            {"tables": ["requests", "dependecies"]},
            "'tables'[1] 'dependecies' is not an Application Insights table; did you mean 'dependencies'?",
        ),
        ({"tables": ["requests", "requests"]}, "'tables'[1] 'requests' is named twice"),
        ({"tables": ["AppRequests"]}, "'tables'[0] 'AppRequests' is not an Application Insights table name;"
         " app_insights sources call it 'requests'"),
        ({"kind": "log_analytics", "workspace_id": "w", "tables": ["AppTraces", "traces"]},
         "'tables'[1] 'traces' is not a Log Analytics (workspace) table name; log_analytics sources call it"
         " 'AppTraces'"),
        ({"tables": []}, "'tables' must be a non-empty list of table names or \"all\""),
        ({"tables": "every"}, "'tables' must be a non-empty list of table names or \"all\""),
        ({"tables": ["requests", 7]}, "'tables'[1] must be a table name; got 7"),
        ({"tables": ["requests"], "query": "requests"}, "'query' and 'tables' exclude each other"),
    ],
    ids=["typo", "twice", "workspace-name-on-app", "classic-name-on-workspace", "empty", "not-a-list", "not-a-name",
         "with-query"],
)  # fmt: skip
def test_validation_names_the_wrong_table(source, fragment):
    src = {"kind": "app_insights", "app_id": "a"} | source
    if src["kind"] == "log_analytics":
        del src["app_id"]
    assert fragment in problems(env(pipeline(name="shop", source=src)))


def test_every_problem_is_reported_together():
    src = {"kind": "app_insights", "app_id": "a", "tables": ["requests", "dependecies"], "window_by": "nope"}
    text = problems(env(pipeline(name="shop", source=src, sink={"container": "lake", "path": "x/{window}"})))
    assert "'dependecies'" in text and "'window_by' must be" in text
    assert "'path' must contain {pipeline} or {table}" in text


def test_sinks_must_keep_the_tables_apart():
    src = {"kind": "app_insights", "app_id": "a", "tables": ["requests", "traces"]}
    fine = {"container": "lake", "path": "{table}/{yyyy}/{window}"}
    assert [p.name for p in expanded(src, sink=fine)] == ["shop-requests", "shop-traces"]
    text = problems(env(pipeline(name="shop", source=src, sink={"kind": "delta", "container": "lake", "path": "t"})))
    assert "sinks[0]: 'path' must contain {pipeline} or {table}: the 2 table(s) of this source" in text


def test_expanded_names_must_fit_and_must_not_collide():
    src = {"kind": "app_insights", "app_id": "a", "tables": ["availabilityResults"]}
    text = problems(env(pipeline(name="n" * 50, source=src)))
    assert "table 'availabilityResults': pipeline name" in text and "over 63 characters" in text
    clash = pipeline(name="shop-requests")
    text = problems(env(pipeline(name="shop", source={**src, "tables": ["requests"]}), clash))
    assert "pipeline 'shop-requests': name used twice" in text
