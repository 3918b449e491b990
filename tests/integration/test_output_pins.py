"""The exact bytes every format writes for one fixed emulator window, pinned by SHA-256.

The window is generated with fixed seeds (plus hand-written rows with quotes, control
characters, non-ASCII text, non-canonical dynamic JSON and edge numbers) and moved through
the real engine into every blob format and the Delta sink on Azurite. A change to the
decoding, typing or encoding path that alters one byte fails here: output bytes are part of
the contract (same data, same bytes). JSONL and CSV are pinned by their decompressed
content, so the compressor may change without changing what readers see; Parquet files are
pinned whole (the footer included).

Set ``MOVER_PINS_DUMP`` to a folder to keep the files for a diff. A pin changes only with a
documented reason (docs/performance.md, "Output bytes").
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.ai_emulator import Emulator, EmulatorConfig
from shared.app import App
from shared.settings import load_settings
from tests.conftest import APP_ID, T0, TOKEN, H

# SHA-256 of the data files of window T0 + 1h (decompressed for .gz), per sink. JSONL and CSV
# changed once, when datetimes kept their 100 ns digit (651 values of this window gained their
# 7th digit; nothing else differs); Parquet and Delta keep microseconds and did not change.
PINS = {
    "jsonl": "1498a06c5de3f1bb71176bb7156179831365a9816bce4fa75e87439a96159f66",
    "csv": "fd8a5be4d9d791a5c5e78802f3fef3eaec53ec536aca21bd340c552378694955",
    "parquet": "e866ef63c1fffd1f64c6d15ffe8b4352c650459ca6ea51a1c3f89dff638b38d5",
    "delta": "073bf93411ae967222a5e192ba7b0ddcd8d24271003edfc761c5ab0dcac75b7c",
}

DUMP = os.environ.get("MOVER_PINS_DUMP", "")

TRICKY: list[dict[str, Any]] = [
    {"timestamp": "2026-11-02T00:10:00.1234567Z", "name": 'GET "quoted" \\ back\tslash', "url": "https://x/é/😀",
     "resultCode": "200", "duration": 1e-7, "success": True, "itemCount": 3,
     "customDimensions": '{"a": 1.0E+20, "b": "\\u00e9", "c": [1, 2 ,3], "d": {}}',
     "customMeasurements": '{"m":0.1}'},
    {"timestamp": "2026-11-02T00:10:00Z", "name": "line\nbreak\r\nand, comma", "url": "", "resultCode": "",
     "duration": 100.0, "success": False, "itemCount": 0, "customDimensions": "{}", "customMeasurements": "[]"},
    {"timestamp": "2026-11-02T00:10:00.5Z", "name": "ctl \u0001\u001f end", "url": "https://x/?q=a,b",
     "resultCode": "500", "duration": 123456789.125, "success": True, "itemCount": 2147483647,
     "customDimensions": '"just a string"', "customMeasurements": "5"},
    {"timestamp": "2026-11-02T00:59:59.9999999Z", "name": "", "url": "https://x", "resultCode": "404",
     "duration": 0.0, "success": False, "itemCount": 1, "customDimensions": '[{"k":"v"},null,true]',
     "customMeasurements": '{"big":12345678901234567890,"neg":-0.0,"tiny":5e-324}'},
]  # fmt: skip


@pytest.fixture(scope="module")
def pinned_emulator() -> Iterator[Emulator]:
    """Its own emulator, so rows other tests add can never change the pinned window."""
    emu = Emulator(EmulatorConfig(app_id=APP_ID, api_key=None, token=TOKEN))
    emu.start()
    emu.generate("requests", T0, T0 + H, count=2_500, seed=42)
    emu.add_rows("requests", [row | {"itemId": f"00000000-0000-0000-0000-{i:012d}"} for i, row in enumerate(TRICKY)])
    yield emu
    emu.stop()


def _pipeline(emu: Emulator, container: str) -> dict[str, Any]:
    source = {"kind": "app_insights", "app_id": APP_ID, "endpoint": emu.url, "query": "requests",
              "auth": {"kind": "token", "setting": "TEST_TOKEN"}, "max_rows_per_query": 700}  # fmt: skip
    return {
        "name": "pins",
        "source": source,
        "window": {"size": "PT1H", "start": "2026-11-02T00:00:00Z", "delay": "PT5M"},
        "sinks": [
            {"container": container, "format": "jsonl", "path": "jsonl/{window}"},
            {"container": container, "format": "csv", "path": "csv/{window}"},
            {"container": container, "format": "parquet", "path": "parquet/{window}", "row_group_rows": 1_000},
            {"kind": "delta", "container": container, "path": "delta", "row_group_rows": 1_000},
        ],
    }


def _digests(conn: str, container: str) -> dict[str, list[str]]:
    client = BlobServiceClient.from_connection_string(conn).get_container_client(container)
    out: dict[str, list[str]] = {}
    for name in sorted(client.list_blob_names()):
        kind = name.split("/", 1)[0]
        if name.endswith((".json", ".crc")) or "_delta_log" in name or "manifest" in name:
            continue
        data = client.get_blob_client(name).download_blob().readall()
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        if DUMP:  # MOVER_PINS_DUMP=dir keeps the files, to diff what changed against a run of older code
            target = Path(DUMP, name.replace("/", "_").removesuffix(".gz"))
            target.write_bytes(data)
        out.setdefault(kind, []).append(hashlib.sha256(data).hexdigest())
    return out


def test_every_format_writes_the_pinned_bytes(pinned_emulator, storage_conn, unique):
    container = f"pins-{unique}"
    env = {
        "AzureWebJobsStorage": storage_conn,
        "TEST_TOKEN": TOKEN,
        "MOVER_PIPELINES": json.dumps({"pipelines": [_pipeline(pinned_emulator, container)]}),
        "MOVER_LEDGER_TABLE": f"pins{unique}",
        "MOVER_QUARANTINE_CONTAINER": f"quarantine-{unique}",
    }
    engine = App(load_settings(env), clock=lambda: T0 + 2 * H, sleep=lambda s: None)
    try:
        pipeline = engine.settings.pipeline("pins")
        (result,) = engine.replayer.replay(pipeline, T0, T0 + H, mode="inline").results
    finally:
        engine.close()
    assert result.outcome == "done" and result.rows == 2_500 + len(TRICKY)
    digests = _digests(storage_conn, container)
    assert {k: len(v) for k, v in digests.items()} == {"jsonl": 1, "csv": 1, "parquet": 1, "delta": 1}
    got = {kind: values[0] for kind, values in digests.items()}
    assert got == PINS, json.dumps(got, indent=1)
