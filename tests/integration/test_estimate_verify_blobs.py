"""Estimate and verify of exported-blob pipelines (continuous export, diagnostic settings) on Azurite.

The estimate's blobs and bytes are the listing's truth and its rows the written lines; a late
blob after the window was moved shows the window short until ``--repair`` and a tick; a
deleted output shows it missing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from devtools import export_writer as ew
from shared.model import Window, format_ts
from shared.ops.estimate import resolve_range
from shared.ops.estimate_blobs import day_prefix
from tests.conftest import T0, H, estimate_of, verify_of

HOUR = T0 + 10 * H
MIN = timedelta(minutes=1)


def ce_pipeline(name: str, container: str, sink: str, **source):
    return {
        "name": name,
        "source": {"kind": "continuous_export", "container": container, "prefix": ew.export_prefix("Requests")}
        | source,
        "window": {"size": "PT1H", "start": format_ts(HOUR), "end": format_ts(HOUR + 2 * H), "max_per_tick": 10},
        "sink": {"container": sink},
    }


@pytest.fixture()
def service(storage_conn) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(storage_conn)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{prefix}/{yyyy}-{MM}-{dd}/{HH}/", "p/2026-11-02/"),
        ("{prefix}/y={yyyy}/m={MM}/d={dd}/h={HH}/m=00/", "p/y=2026/m=11/d=02/h="),
        ("{HH}/{prefix}/{yyyy}-{MM}-{dd}/", None),
    ],
    ids=["continuous-export", "diagnostic-settings", "hour-first"],
)
def test_day_prefix_lists_a_day_at_once_when_the_hour_comes_last(template, expected):
    assert day_prefix(template, "p", T0) == expected


def test_blob_estimate_counts_listed_blobs_bytes_and_lines(make_engine, service, storage_conn, unique):
    container, sink = f"export-{unique}", f"out-{unique}"
    export = service.get_container_client(container)
    first = ew.write_export_hour(export, "Requests", HOUR, blobs=4, lines_per_blob=6, seed=unique)
    second = ew.write_export_hour(export, "Requests", HOUR + H, blobs=2, lines_per_blob=3, seed=unique)
    engine = make_engine([ce_pipeline("req", container, sink)], now=HOUR + 2 * H + 10 * MIN)
    pipeline = engine.settings.pipeline("req")
    rng, _ = resolve_range(pipeline, engine.clock(), None, None)
    doc = estimate_of(engine, pipeline, rng).as_dict()
    listed = {b.name: b.size for b in export.list_blobs()}
    assert set(listed) == set(first.names + second.names)
    totals = doc["totals"]
    assert (totals["windows"], totals["source_bytes"]) == (2, sum(listed.values()))
    assert [(d["blobs"], d["source_bytes"]) for d in doc["days"]] == [(6, sum(listed.values()))]
    assert abs(totals["rows"] - (first.rows + second.rows)) <= 1  # rows per byte of the sampled hour
    assert list(engine.ledger.states("req")) == [] and not service.get_container_client(sink).exists()
    engine.tick()
    written = sum(s.bytes for s in engine.ledger.states("req"))
    print(f"\nESTIMATE blobs: output {doc['outputs'][0]['bytes']} bytes estimated, {written} written")
    assert 0.8 * written < doc["outputs"][0]["bytes"] < 1.25 * written


def test_late_blob_shows_short_and_repair_makes_it_complete(make_engine, service, storage_conn, unique):
    container, sink = f"export-{unique}", f"out-{unique}"
    export = service.get_container_client(container)
    first = ew.write_export_hour(export, "Requests", HOUR, blobs=3, lines_per_blob=4, seed=unique)
    clock = {"now": HOUR + H + 10 * MIN}
    engine = make_engine([ce_pipeline("req", container, sink)], now=lambda: clock["now"])
    pipeline = engine.settings.pipeline("req")
    assert [r.rows for r in engine.tick().results] == [first.rows]
    window = Window(HOUR, HOUR + H)
    assert verify_of(engine, pipeline, window).ok

    late = ew.write_export_blob(export, "Requests", HOUR + H + 12 * MIN, lines=5, seed=unique, hour=HOUR)
    found = verify_of(engine, pipeline, window, repair=True)
    assert [(c.verdict, c.ledger_rows, c.source_rows) for c in found.checks] == [
        ("short", first.rows, first.rows + late.rows)
    ]
    assert found.repaired == 1
    clock["now"] += 10 * MIN
    report = engine.tick()
    assert [(r.window, r.rows) for r in report.results] == [(window, first.rows + late.rows)]
    assert verify_of(engine, pipeline, window).ok

    name = next(o["name"] for o in engine.ledger.get("req", window).outputs if o.get("kind", "data") == "data")
    service.get_blob_client(sink, name).delete_blob()
    missing = verify_of(engine, pipeline, window)
    assert [c.verdict for c in missing.checks] == ["missing"] and name in missing.checks[0].detail


def test_diagnostic_settings_append_growth_shows_short(make_engine, service, storage_conn, unique):
    sink, rid = f"out-{unique}", ew.RESOURCE_ID + unique.upper()
    container = service.get_container_client(ew.diagnostic_container("AppRequests"))
    first = ew.write_diagnostic_hour(container, "AppRequests", HOUR, appends=3, lines_per_append=4, seed=unique,
                                     resource_id=rid)  # fmt: skip
    pipe = {
        "name": "ds",
        "source": {"kind": "diagnostic_settings", "container": ew.diagnostic_container("AppRequests"),
                   "prefix": ew.diagnostic_prefix(rid)},
        "window": {"size": "PT1H", "start": format_ts(HOUR), "end": format_ts(HOUR + H), "delay": "PT15M"},
        "sink": {"container": sink},
    }  # fmt: skip
    engine = make_engine([pipe], now=HOUR + H + 20 * MIN)
    pipeline = engine.settings.pipeline("ds")
    engine.tick()
    window = Window(HOUR, HOUR + H)
    assert verify_of(engine, pipeline, window).ok
    grown = ew.append_diagnostic(container, "AppRequests", HOUR, lines=2, seed=unique, resource_id=rid,
                                 received=HOUR + 59 * MIN)  # fmt: skip
    [check] = verify_of(engine, pipeline, window).checks
    assert (check.verdict, check.source_rows) == ("short", first.rows + grown.rows)
