"""Estimate and verify of query-API pipelines against Azurite and an emulator of their own.

Estimates are checked against the emulator's truth (rows, billed bytes, the engine's
queries) and against what a real backfill then writes; verification finds late rows
(short) and a deleted output blob (missing), repairs them through the ledger, and a tick
makes them complete.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import timedelta

import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from devtools.ai_emulator import Emulator, EmulatorConfig, SettableClock
from shared.frontends.cli import main
from shared.model import Window, format_ts
from shared.ops.estimate import resolve_range
from tests.conftest import APP_ID, T0, TOKEN, H, blob_names, estimate_of, query_pipeline, verify_of

MIN = timedelta(minutes=1)
NOW = T0 + 6 * H + 10 * MIN


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """Six hours of requests (uneven per hour) on an emulator no other test shares (these tests add rows)."""
    e = Emulator(EmulatorConfig(app_id=APP_ID, workspace_id="ws-verify", api_key="k", token=TOKEN))
    e.start()
    for hour, count in enumerate((31, 12, 47, 0, 25, 60)):
        e.generate("requests", T0 + hour * H, T0 + (hour + 1) * H, count=count, seed=100 + hour)
    yield e
    e.stop()


def billed_truth(emu: Emulator, start, end) -> int:
    """``_BilledSize`` of a row is its stored JSON size: the sum over the emulator's expected rows."""
    return sum(len(orjson.dumps(list(r.values()))) for r in emu.expected("requests", start, end))


@pytest.mark.parametrize("kind", ["app_insights", "log_analytics"])
def test_estimate_matches_the_emulator_truth_and_writes_nothing(emu, make_engine, storage_conn, unique, kind):
    source = {"max_rows_per_query": 20}
    if kind == "log_analytics":
        source |= {"kind": "log_analytics", "workspace_id": "ws-verify", "query": "AppRequests"}
    pipe = query_pipeline("req", "requests", emu, f"out-{unique}", source=source, window={"end": format_ts(T0 + 6 * H)})
    if kind == "log_analytics":
        del pipe["source"]["app_id"]  # a workspace source has no app id (unknown fields are refused)
    engine = make_engine([pipe], now=NOW)
    pipeline = engine.settings.pipeline("req")
    rng, notes = resolve_range(pipeline, NOW, None, None)
    assert (rng, notes) == (Window(T0, T0 + 6 * H), [])
    doc = estimate_of(engine, pipeline, rng).as_dict()

    per_hour = [emu.expected_count("requests", T0 + h * H, T0 + (h + 1) * H) for h in range(6)]
    totals = doc["totals"]
    assert totals["windows"] == 6 and totals["rows"] == sum(per_hour) == 175
    assert totals["queries"] == sum(1 + max(1, math.ceil(n / 20)) for n in per_hour)
    assert [d["rows"] for d in doc["days"]] == [175] and doc["complete"] is True
    truth = billed_truth(emu, T0, T0 + 6 * H)
    if kind == "log_analytics":
        assert totals["source_bytes"] == truth and "_BilledSize" in totals["source_bytes_basis"]
    else:  # classic tables have no _BilledSize: rows × a sampled window's average row size, and said so
        assert "estimated" in totals["source_bytes_basis"]
        assert 0.5 * truth < totals["source_bytes"] < 2 * truth
    assert totals["seconds_at_budget"] >= totals["queries"] * 30 / 180
    assert list(engine.ledger.states("req")) == []  # estimating never writes the ledger…
    assert not BlobServiceClient.from_connection_string(storage_conn).get_container_client(f"out-{unique}").exists()

    report = engine.tick()  # …and the real backfill lands about what the estimate said
    assert sum(r.rows for r in report.results) == 175
    written = sum(s.bytes for s in engine.ledger.states("req"))
    [out] = doc["outputs"]
    assert out["format"] == "jsonl" and out["compression"] == "gzip"
    print(f"\nESTIMATE {kind}: output {out['bytes']} bytes estimated, {written} written")
    assert 0.8 * written < out["bytes"] < 1.25 * written


def test_late_rows_show_short_repair_and_a_tick_make_them_complete(emu, make_engine, storage_conn, unique):
    sink = f"out-{unique}"
    pipe = query_pipeline("req", "requests", emu, sink, window={"end": format_ts(T0 + 6 * H)})
    engine = make_engine([pipe], now=NOW)
    pipeline = engine.settings.pipeline("req")
    assert engine.tick().done == 6
    rng = Window(T0, T0 + 6 * H)
    first = verify_of(engine, pipeline, rng)
    assert (first.ok, len(first.checks), first.count("complete")) == (True, 6, 6)
    print(f"\nVERIFY 6 windows: {first.elapsed_s:.2f} s")

    late = T0 + 4 * H
    before = emu.expected_count("requests", late, late + H)
    emu.add_rows("requests", [{"timestamp": late + 7 * MIN}, {"timestamp": late + 50 * MIN}])
    try:
        found = verify_of(engine, pipeline, rng, repair=True)
        assert [(c.window.start, c.verdict, c.ledger_rows, c.source_rows) for c in found.bad] == [
            (late, "short", before, before + 2)
        ]
        assert found.repaired == 1 and engine.ledger.get("req", Window(late, late + H)).status == "pending"
        assert [(r.window.start, r.rows) for r in engine.tick().results] == [(late, before + 2)]
        again = verify_of(engine, pipeline, rng)
        assert again.ok and again.count("complete") == 6
    finally:
        emu.store.clear()  # the module's emulator goes back to its six hours for the other tests
        for hour, count in enumerate((31, 12, 47, 0, 25, 60)):
            emu.generate("requests", T0 + hour * H, T0 + (hour + 1) * H, count=count, seed=100 + hour)


def test_deleted_output_blob_shows_missing_until_repaired(emu, make_engine, storage_conn, unique):
    sink = f"out-{unique}"
    pipe = query_pipeline("req", "requests", emu, sink, window={"end": format_ts(T0 + 3 * H)})
    engine = make_engine([pipe], now=NOW)
    pipeline = engine.settings.pipeline("req")
    engine.tick()
    [victim] = [n for n in blob_names(storage_conn, sink) if "20261102T010000Z.jsonl.gz" in n]
    BlobServiceClient.from_connection_string(storage_conn).get_blob_client(sink, victim).delete_blob()
    found = verify_of(engine, pipeline, Window(T0, T0 + 3 * H), repair=True)
    assert [(c.window.start, c.verdict) for c in found.bad] == [(T0 + H, "missing")]
    assert victim in found.bad[0].detail and found.repaired == 1
    engine.tick()
    assert victim in blob_names(storage_conn, sink)
    assert verify_of(engine, pipeline, Window(T0, T0 + 3 * H)).ok


def test_cli_exit_codes_and_status_share(emu, make_engine, storage_conn, unique, monkeypatch, capsys):
    sink = f"out-{unique}"
    pipe = query_pipeline("req", "requests", emu, sink, window={"end": format_ts(T0 + 3 * H)})
    env = {
        "AzureWebJobsStorage": storage_conn,
        "TEST_TOKEN": TOKEN,
        "MOVER_PIPELINES": json.dumps({"pipelines": [pipe]}),
        "MOVER_LEDGER_TABLE": f"ledger{unique}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["tick"]) == 0
    capsys.readouterr()
    assert main(["verify", "--pipeline", "req", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["ok"], doc["checked"], doc["counts"]["complete"]) == (True, 3, 3)
    name = next(n for n in blob_names(storage_conn, sink) if n.endswith("20261102T020000Z.jsonl.gz"))
    BlobServiceClient.from_connection_string(storage_conn).get_blob_client(sink, name).delete_blob()
    assert main(["verify", "--pipeline", "req"]) == 1
    out = capsys.readouterr().out
    assert "2026-11-02T02:00:00Z missing" in out and "2 complete" in out and "1 missing" in out
    engine = make_engine([pipe])
    [entry] = engine.status()["pipelines"]
    assert entry["verified"]["checked"] == 3 and entry["verified"]["complete"] == 2
    assert entry["verified"]["share"] == pytest.approx(2 / 3, abs=1e-3) and entry["verified"]["at"]
    assert main(["verify", "--pipeline", "req", "--repair"]) == 1
    assert "queued 1 for replay" in capsys.readouterr().out
    assert main(["tick"]) == 0
    assert main(["verify", "--pipeline", "req"]) == 0
    assert main(["estimate", "--pipeline", "req"]) == 0
    text = capsys.readouterr().out
    assert "2026-11-02" in text and "total: 3 windows, 90 rows" in text
    assert (
        main(["estimate", "--pipeline", "req", "--start", "2026-11-02T03:00:00Z", "--end", "2026-11-02T01:00:00Z"]) == 2
    )
    assert "'end' must be after 'start'" in capsys.readouterr().err
    assert main(["verify", "--pipeline", "nope"]) == 2


def test_a_year_of_pt5m_estimate_timing(make_engine, unique):
    """Prints how long a year of PT5M windows takes to estimate (not asserted: machines differ)."""
    end = T0 + timedelta(days=365)
    year = Emulator(
        EmulatorConfig(app_id=APP_ID, workspace_id="ws-year", api_key="k", token=TOKEN), clock=SettableClock(end + H)
    )
    year.start()
    try:
        year.generate("requests", T0, end, count=50_000, seed=5)
        pipe = query_pipeline("year", "requests", year, f"out-{unique}", window={"size": "PT5M"})
        engine = make_engine([pipe], now=end + H)
        pipeline = engine.settings.pipeline("year")
        rng, _ = resolve_range(pipeline, end + H, T0, end)
        began = time.monotonic()
        doc = estimate_of(engine, pipeline, rng).as_dict()
        seconds = time.monotonic() - began
    finally:
        year.stop()
    assert doc["totals"]["windows"] == 365 * 288 and doc["totals"]["rows"] == 50_000
    t = doc["totals"]
    print(f"\nESTIMATE year of PT5M: {seconds:.1f} s, {doc['estimate_queries']} estimate queries, "
          f"{t['queries']} engine queries ≈ {t['seconds_at_budget']} s at the budget")  # fmt: skip


def test_table_and_parquet_sinks_are_estimated_and_verified(emu, make_engine, storage_conn, unique):
    """Two sinks: the estimate sizes each, verify reads the table sink's manifest entity and finds
    a window whose entities were deleted."""
    from azure.data.tables import TableServiceClient

    sinks = [{"container": f"pq-{unique}", "format": "parquet"}, {"kind": "table", "table": f"rows{unique}"}]
    pipe = query_pipeline("req", "requests", emu, "unused", window={"end": format_ts(T0 + 3 * H)}) | {"sinks": sinks}
    del pipe["sink"]
    engine = make_engine([pipe], now=NOW)
    pipeline = engine.settings.pipeline("req")
    doc = estimate_of(engine, pipeline, Window(T0, T0 + 3 * H)).as_dict()
    assert [(o["kind"], o["format"]) for o in doc["outputs"]] == [("blob", "parquet"), ("table", "table")]
    assert all(o["bytes"] > 0 for o in doc["outputs"])
    engine.tick()
    parquet = sum(o["bytes"] for s in engine.ledger.states("req") for o in s.outputs
                  if o["sink"] == 0 and o.get("kind", "data") == "data")  # fmt: skip
    print(f"\nESTIMATE parquet: {doc['outputs'][0]['bytes']} bytes estimated, {parquet} written")
    assert 0.8 * parquet < doc["outputs"][0]["bytes"] < 1.25 * parquet  # per-file overhead + per-row size
    assert verify_of(engine, pipeline, Window(T0, T0 + 3 * H)).ok
    table = TableServiceClient.from_connection_string(storage_conn).get_table_client(f"rows{unique}")
    partition = f"req_{(T0 + H).strftime('%Y%m%dT%H%M%SZ')}"
    doomed = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": partition}))
    assert doomed
    for entity in doomed:
        table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    found = verify_of(engine, pipeline, Window(T0, T0 + 3 * H))
    assert [(c.window.start, c.verdict) for c in found.bad] == [(T0 + H, "missing")]
    assert "has no entities" in found.bad[0].detail


def test_rows_gone_from_the_source_show_over(make_engine, unique):
    """More moved than the source holds now (retention, or duplicates) is ``over``, never complete."""
    own = Emulator(EmulatorConfig(app_id=APP_ID, workspace_id="ws-over", api_key="k", token=TOKEN))
    own.start()
    try:
        own.generate("requests", T0, T0 + 2 * H, count=40, seed=9)
        pipe = query_pipeline("req", "requests", own, f"out-{unique}", window={"end": format_ts(T0 + 2 * H)})
        engine = make_engine([pipe], now=NOW)
        pipeline = engine.settings.pipeline("req")
        engine.tick()
        own.store.clear()
        own.generate("requests", T0 + H, T0 + 2 * H, count=5, seed=10)
        found = verify_of(engine, pipeline, Window(T0, T0 + 2 * H))
    finally:
        own.stop()
    assert [(c.verdict, c.source_rows) for c in found.checks] == [("over", 0), ("over", 5)]
    assert not found.ok


def test_an_unreadable_source_exits_2_with_the_reason(emu, storage_conn, unique, monkeypatch, capsys):
    pipe = query_pipeline("req", "requests", emu, f"out-{unique}", source={"query": "nosuchtable"},
                          window={"end": format_ts(T0 + 2 * H)})  # fmt: skip
    env = {"AzureWebJobsStorage": storage_conn, "TEST_TOKEN": TOKEN, "MOVER_LEDGER_TABLE": f"ledger{unique}",
           "MOVER_PIPELINES": json.dumps({"pipelines": [pipe]})}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["estimate", "--pipeline", "req"]) == 2
    assert "estimate failed" in capsys.readouterr().err
