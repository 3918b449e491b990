"""The ``delta`` sink section and the storage options it gives delta-rs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.model import Window
from shared.settings import StorageConfig, load_settings
from shared.sinks.delta_table import partition_columns, partition_values, storage_options
from tests.unit.test_settings import env, pipeline, problems


def test_delta_sink_defaults():
    (p,) = load_settings(env(pipeline(sink={"kind": "delta", "container": "lake"}))).pipelines
    (sink,) = p.sinks
    assert (sink.kind, sink.container, sink.path, sink.partition_by) == ("delta", "lake", "{pipeline}", "")
    assert (sink.compression, sink.optimize, sink.vacuum_retention) == ("snappy", True, timedelta(days=7))
    assert (sink.row_group_rows, sink.row_group_mb) == (100_000, 4)


def test_delta_sink_options():
    raw = {
        "kind": "delta", "container": "lake", "path": "/tables/{table}/", "partition_by": "date",
        "optimize": False, "vacuum_retention": None, "compression": "zstd", "row_group_mb": 32,
    }  # fmt: skip
    (sink,) = load_settings(env(pipeline(sink=raw))).pipelines[0].sinks
    assert sink.row_group_mb == 32
    assert (sink.path, sink.partition_by, sink.optimize, sink.vacuum_retention) == (
        "tables/{table}",
        "date",
        False,
        None,
    )


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"container": "Bad_Name"}, "'container' must be a valid blob container name"),
        ({"container": "lake", "partition_by": "week"}, "'partition_by' must be date or date_hour"),
        ({"container": "lake", "path": "{window}"}, "unknown placeholder {window}"),
        ({"container": "lake", "compression": "gzip"}, "'compression' for delta must be snappy or zstd"),
        ({"container": "lake", "vacuum_retention": "7 days"}, "'vacuum_retention'"),
        ({"container": "lake", "optimize": "yes"}, "'optimize' must be true or false"),
        ({"container": "lake", "row_group_mb": 0}, "'row_group_mb'"),
        ({"container": "lake", "row_group_mb": 2048}, "'row_group_mb'"),
    ],
    ids=["container", "partition", "placeholder", "compression", "retention", "optimize", "rg-mb-0", "rg-mb-big"],
)
def test_delta_sink_errors(raw, fragment):
    assert fragment in problems(env(pipeline(sink={"kind": "delta"} | raw)))


def test_partitions_follow_the_window_size():
    hour = Window(datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))
    day = Window(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    assert [f.name for f in partition_columns("", hour)] == ["date", "hour"]
    assert [f.name for f in partition_columns("", day)] == ["date"]
    assert [f.name for f in partition_columns("date", hour)] == ["date"]
    assert partition_values(partition_columns("", hour), hour) == {"date": "2026-11-02", "hour": "10"}


def test_storage_options_from_connection_strings_and_identity(monkeypatch):
    monkeypatch.delenv("AZURITE_BLOB_STORAGE_URL", raising=False)
    monkeypatch.delenv("IDENTITY_ENDPOINT", raising=False)
    real = StorageConfig(
        "S",
        conn_string="DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=k==;EndpointSuffix=core.windows.net",
    )
    assert storage_options(real) == {"account_name": "acct", "account_key": "k=="}
    azurite = StorageConfig(
        "S",
        conn_string="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=k;BlobEndpoint=http://127.0.0.1:1234/devstoreaccount1",
    )
    assert storage_options(azurite)["use_emulator"] == "true"
    import os

    assert os.environ["AZURITE_BLOB_STORAGE_URL"] == "http://127.0.0.1:1234"
    identity = StorageConfig("S", blob_uri="https://acct.blob.core.windows.net", client_id="cid")
    assert storage_options(identity) == {"account_name": "acct", "client_id": "cid"}


def test_delta_sink_rejects_unknown_fields():
    assert "unknown field 'format'" in problems(
        env(pipeline(sink={"kind": "delta", "container": "lake", "format": "csv"}))
    )


def test_delta_is_imported_only_when_used():
    import subprocess
    import sys

    code = "import sys, shared.sinks, shared.app; print('deltalake' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
