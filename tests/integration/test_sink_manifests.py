"""The README's multi-sink example written into one container: every window completes, each
sink with its own manifest listing its own files, on the first run and on a rerun."""

from __future__ import annotations

from datetime import timedelta

import orjson
from azure.storage.blob import BlobServiceClient

from shared.model import Window
from tests.conftest import T0, H, blob_names, query_pipeline

STEM = "requests/y=2026/m=11/d=02/h=00/"


def test_readme_sinks_and_default_paths_in_one_container_complete_with_one_manifest_each(
    emulator, make_engine, storage_conn: str, unique: str
) -> None:
    lake = f"lake-{unique}"
    sinks = [
        {"container": lake, "format": "parquet", "compression": "zstd"},
        {"container": lake, "format": "jsonl", "path": "{pipeline}/{yyyy}/{MM}/{dd}/{window}"},
        {"container": lake, "format": "jsonl"},  # default path: the same folder as the Parquet files
    ]
    pipeline = query_pipeline("requests", "requests", emulator, lake) | {"sinks": sinks}
    del pipeline["sink"]
    engine = make_engine([pipeline], now=T0 + H + timedelta(minutes=10))
    window = Window(T0, T0 + H)
    for attempt in range(2):  # the first run and a rerun (each replaces the manifests it found)
        if attempt:
            engine.replayer.replay(engine.settings.pipelines[0], window.start, window.end)
        else:
            report = engine.tick()
            assert report.failed == 0 and report.done == 1, report.results
        state = engine.ledger.get("requests", window)
        assert state is not None and state.status == "done" and state.rows > 0
        names = blob_names(storage_conn, lake)
        manifests = [n for n in names if n.endswith(".manifest.json")]
        assert manifests == [
            "requests/2026/11/02/_20261102T000000Z.manifest.json",
            f"{STEM}_20261102T000000Z.jsonl.gz.manifest.json",
            f"{STEM}_20261102T000000Z.parquet.manifest.json",
        ]
        service = BlobServiceClient.from_connection_string(storage_conn)
        listed = {}
        for name in manifests:
            doc = orjson.loads(service.get_blob_client(lake, name).download_blob().readall())
            listed[name] = [f["name"] for f in doc["files"]]
            assert doc["rows"] == state.rows
        assert listed == {
            manifests[0]: ["requests/2026/11/02/20261102T000000Z.jsonl.gz"],
            manifests[1]: [f"{STEM}20261102T000000Z.jsonl.gz"],
            manifests[2]: [f"{STEM}20261102T000000Z.parquet"],
        }
