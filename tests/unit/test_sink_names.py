"""Sinks of one pipeline never write the same names: colliding data is refused at load,
a shared folder gets one manifest per format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import ConfigError
from shared.model import Window
from shared.paths import manifest_name
from shared.settings import Settings, load_settings
from tests.conftest import T0, H

ENV = {"AzureWebJobsStorage": "UseDevelopmentStorage=true;"}


def load(sinks: list[dict[str, Any]]) -> Settings:
    pipeline = {
        "name": "requests",
        "source": {"kind": "app_insights", "app_id": "abc-123", "query": "requests"},
        "window": {"size": "PT1H", "start": "2026-11-01T00:00:00Z"},
        "sinks": sinks,
    }
    return load_settings(ENV | {"MOVER_PIPELINES": json.dumps({"pipelines": [pipeline]})})


@pytest.mark.parametrize(
    "sinks",
    [
        [{"container": "lake"}, {"container": "lake"}],
        [{"container": "lake", "format": "parquet"}, {"container": "lake", "format": "parquet", "compression": "zstd"}],
        [{"container": "lake", "path": "/{pipeline}/{window}/"}, {"container": "lake", "path": "{pipeline}/{window}"}],
        [{"kind": "table", "table": "rows"}, {"kind": "table", "table": "rows"}],
    ],
    ids=["same-jsonl", "parquet-compressions", "same-path-spelled-differently", "same-table"],
)
def test_two_sinks_writing_the_same_names_are_refused_with_the_sink_named(sinks: list[dict[str, Any]]) -> None:
    with pytest.raises(ConfigError) as info:
        load(sinks)
    text = "\n".join(info.value.problems)
    assert "sinks[1]" in text and "writes the same names as an earlier sink" in text


def test_sinks_sharing_a_folder_get_one_manifest_per_format_and_a_lone_sink_keeps_its_name() -> None:
    s = load(
        [
            {"container": "lake", "format": "parquet"},
            {"container": "lake"},
            {"container": "lake", "compression": "none"},
            {"container": "lake", "path": "{pipeline}/{yyyy}/{MM}/{dd}/{window}"},
            {"container": "other", "format": "parquet"},
        ]
    )
    assert [c.manifest_tag for c in s.pipelines[0].sinks] == ["parquet", "jsonl.gz", "jsonl", "", ""]
    w = Window(T0, T0 + H)
    names = [
        manifest_name(c.path, pipeline="requests", table="requests", window=w, tag=c.manifest_tag)
        for c in s.pipelines[0].sinks
    ]
    assert names == [
        "requests/y=2026/m=11/d=02/h=00/_20261102T000000Z.parquet.manifest.json",
        "requests/y=2026/m=11/d=02/h=00/_20261102T000000Z.jsonl.gz.manifest.json",
        "requests/y=2026/m=11/d=02/h=00/_20261102T000000Z.jsonl.manifest.json",
        "requests/2026/11/02/_20261102T000000Z.manifest.json",
        "requests/y=2026/m=11/d=02/h=00/_20261102T000000Z.manifest.json",
    ]
