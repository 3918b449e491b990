"""Windows bounded by ingestion time vs. event time, with rows that arrive 3 h late — against Azurite
and an emulator of their own whose clock moves with the engine's (a row is queryable from its
ingestion time on, as at the service).

Event-time windows without a re-sweep miss the late rows (their window was moved before they
arrived); ingestion-time windows hold every row exactly once, late rows in the window of their
ingestion with their own older timestamp kept; a replay gives the same rows and bytes; counting,
splitting, estimate and verify work in both.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest
from azure.storage.blob import BlobServiceClient

from devtools.ai_emulator import Emulator, EmulatorConfig, SettableClock
from shared.model import Window, format_ts
from tests.conftest import APP_ID, TOKEN, H, estimate_of, query_pipeline, read_jsonl_gz, verify_of

B = datetime(2026, 11, 3, tzinfo=UTC)
MIN = timedelta(minutes=1)
TABLE = "requests"
LATE = timedelta(hours=3)  # mobile/desktop SDKs buffer offline: far past any window delay
SECONDS_2 = timedelta(seconds=2)


@pytest.fixture()
def emu(emulator: Emulator) -> Iterator[Emulator]:
    """A fresh emulator with a settable clock (the session one keeps real time); trusts the session's tokens."""
    e = Emulator(EmulatorConfig(app_id=APP_ID, workspace_id="ws-ingest", api_key="k", token=TOKEN))
    e.config.token_key = emulator.config.token_key
    e.clock = SettableClock(B)
    e.start()
    yield e
    e.stop()


def seed(emu: Emulator) -> tuple[list[str], list[str]]:
    """Four hours of on-time rows (ingested 2 s after their timestamp) and, in hour 0, rows ingested
    3 h after their timestamp. Returns (on-time ids, late ids)."""
    on_time: list[str] = []
    for hour in range(4):
        for k in range(12):
            ts = B + hour * H + k * 5 * MIN + timedelta(seconds=7)
            item = f"on-{hour}-{k}"
            code = "500" if k % 4 == 0 else "200"
            emu.add_rows(TABLE, [{"timestamp": ts, "itemId": item, "resultCode": code}], ingested_at=ts + SECONDS_2)
            on_time.append(item)
    late: list[str] = []
    for k in range(5):
        ts = B + 10 * MIN + k * MIN
        emu.add_rows(TABLE, [{"timestamp": ts, "itemId": f"late-{k}", "resultCode": "500"}], ingested_at=ts + LATE)
        late.append(f"late-{k}")
    return on_time, late


def at(emu: Emulator, when: datetime) -> Callable[[], datetime]:
    """Set the emulator's clock; the engine reads the same clock."""
    assert isinstance(emu.clock, SettableClock)
    emu.clock.set(when)
    return emu.clock


def pipelines(emu: Emulator, container: str, **source: Any) -> list[dict[str, Any]]:
    event = query_pipeline("by-event", TABLE, emu, container, window={"start": format_ts(B)})
    window = {"start": format_ts(B)}
    source = {"window_by": "ingestion"} | source
    ingest = query_pipeline("by-ingestion", TABLE, emu, container, window=window, source=source)
    del ingest["window"]["delay"]  # the ingestion-time default
    return [event, ingest]


def moved(engine: Any, conn: str, container: str, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for state in sorted(engine.ledger.states(name), key=lambda s: s.window.start):
        for out in state.outputs:
            if out.get("kind", "data") == "data":
                rows.extend(read_jsonl_gz(conn, container, out["name"]))
    return rows


def test_late_rows_event_windows_miss_them_ingestion_windows_hold_every_row_once(
    emu, make_engine, storage_conn, unique
):
    on_time, late = seed(emu)
    container = f"out-{unique}"
    clock = at(emu, B + H + 10 * MIN)
    engine = make_engine(pipelines(emu, container), now=clock)
    assert engine.settings.pipeline("by-ingestion").window.delay == 2 * MIN  # commit latency only
    first = engine.tick()
    assert sorted((r.pipeline, r.window.start, r.outcome) for r in first.results) == [
        ("by-event", B, "done"),
        ("by-ingestion", B, "done"),
    ]
    at(emu, B + 4 * H + 10 * MIN)  # the late rows have landed (3 h after their event time)
    engine.tick()

    by_event = [r["itemId"] for r in moved(engine, storage_conn, container, "by-event")]
    assert Counter(by_event) == Counter(on_time)  # no re-sweep: the late rows are missed, as documented
    by_ingestion = moved(engine, storage_conn, container, "by-ingestion")
    assert Counter(r["itemId"] for r in by_ingestion) == Counter(on_time + late)  # every row exactly once

    # The late rows sit in the window of their ingestion (hour 3), their own event time kept as data.
    hour3 = engine.ledger.get("by-ingestion", Window(B + 3 * H, B + 4 * H))
    rows3 = read_jsonl_gz(storage_conn, container, hour3.outputs[0]["name"])
    late_rows = [r for r in rows3 if r["itemId"] in late]
    assert len(late_rows) == 5 and all(B <= datetime.fromisoformat(r["timestamp"]) < B + H for r in late_rows)
    assert hour3.rows == len(rows3) == 12 + 5

    at(emu, B + 6 * H + 10 * MIN)  # two more closed windows, nothing more to find for hours 0-3
    engine.tick()
    assert Counter(r["itemId"] for r in moved(engine, storage_conn, container, "by-ingestion")) == Counter(
        on_time + late
    )

    # verify recounts by the same bound: ingestion windows complete, the event window of hour 0 short.
    ingest_check = verify_of(engine, engine.settings.pipeline("by-ingestion"), Window(B, B + 6 * H))
    assert ingest_check.ok and ingest_check.count("complete") == 6
    event_check = verify_of(engine, engine.settings.pipeline("by-event"), Window(B, B + 6 * H))
    assert [(c.window.start, c.verdict, c.source_rows) for c in event_check.bad] == [(B, "short", 12 + 5)]


def test_replaying_an_ingestion_window_gives_the_same_rows_and_bytes(emu, make_engine, storage_conn, unique):
    seed(emu)
    container = f"out-{unique}"
    clock = at(emu, B + 4 * H + 10 * MIN)
    engine = make_engine(pipelines(emu, container)[1:], now=clock)
    engine.tick()
    window = Window(B + 3 * H, B + 4 * H)
    before = engine.ledger.get("by-ingestion", window)
    blobs = BlobServiceClient.from_connection_string(storage_conn).get_container_client(container)
    name = before.outputs[0]["name"]
    data_before = blobs.download_blob(name).readall()

    # A row of hour 3's event time committed after that window closed belongs to a later window: the
    # replay of hour 3 does not see it (an event-time window would change under a replay).
    emu.add_rows(TABLE, [{"timestamp": B + 3 * H + 5 * MIN, "itemId": "after"}], ingested_at=B + 4 * H + 5 * MIN)
    result = engine.replayer.replay(engine.settings.pipeline("by-ingestion"), window.start, window.end, mode="inline")
    assert [r.outcome for r in result.results] == ["done"]
    after = engine.ledger.get("by-ingestion", window)
    data_after = blobs.download_blob(name).readall()
    assert data_after == data_before and after.rows == before.rows == 17
    data = [o for o in after.outputs if o["kind"] == "data"]
    assert data == [o for o in before.outputs if o["kind"] == "data"]  # names, rows, bytes and SHA-256
    assert hashlib.sha256(data_after).hexdigest() == after.outputs[0]["sha256"]


def test_counted_sub_windows_follow_ingestion_time(emu, make_engine, storage_conn, unique):
    on_time, late = seed(emu)
    container = f"out-{unique}"
    clock = at(emu, B + 4 * H + 10 * MIN)
    engine = make_engine(pipelines(emu, container, max_rows_per_query=5)[1:], now=clock)
    assert [r.outcome for r in engine.tick().results] == ["done"] * 4
    hour3 = engine.ledger.get("by-ingestion", Window(B + 3 * H, B + 4 * H))
    # counted by bin(ingestion_time(), 60s): 17 rows, then sub-windows of at most 5 rows each
    assert (hour3.extra["planned"], hour3.extra["queries"], hour3.extra["splits"]) == (17, 1 + 4, 0)
    got = moved(engine, storage_conn, container, "by-ingestion")
    assert Counter(r["itemId"] for r in got) == Counter(on_time + late)


def test_truncated_answers_are_split_by_ingestion_time(emu, make_engine, storage_conn, unique):
    on_time, late = seed(emu)
    emu.config.max_rows = 6  # every answer over 6 rows is cut (HTTP 200 PartialError): it must be split
    container = f"out-{unique}"
    clock = at(emu, B + 4 * H + 10 * MIN)
    engine = make_engine(pipelines(emu, container, max_rows_per_query=500_000)[1:], now=clock)
    assert [r.outcome for r in engine.tick().results] == ["done"] * 4
    assert emu.stats.partials >= 4
    assert all(s.extra["splits"] >= 1 for s in engine.ledger.states("by-ingestion"))
    got = moved(engine, storage_conn, container, "by-ingestion")
    assert Counter(r["itemId"] for r in got) == Counter(on_time + late)


def test_estimate_counts_by_ingestion_time(emu, make_engine, unique):
    seed(emu)
    clock = at(emu, B + 4 * H + 10 * MIN)
    engine = make_engine(pipelines(emu, f"out-{unique}")[1:], now=clock)
    doc = estimate_of(engine, engine.settings.pipeline("by-ingestion"), Window(B, B + 4 * H)).as_dict()
    assert doc["totals"]["rows"] == 4 * 12 + 5 and doc["complete"]


def test_a_filter_after_the_table_keeps_the_bound_on_table_rows(emu, make_engine, storage_conn, unique):
    """``requests | where resultCode == "500"``: the ingestion bound goes between the table and the filter."""
    seed(emu)
    container = f"out-{unique}"
    clock = at(emu, B + 4 * H + 10 * MIN)
    pipe = pipelines(emu, container, query="requests | where resultCode == '500'")[1]
    engine = make_engine([pipe], now=clock)
    engine.tick()
    got = moved(engine, storage_conn, container, "by-ingestion")
    assert {r["resultCode"] for r in got} == {"500"} and len(got) == 4 * 3 + 5


def test_rows_beyond_max_event_lag_are_not_returned(emu, make_engine, storage_conn, unique):
    """The documented bound: the request timespan reaches back ``max_event_lag`` and ahead
    ``max_event_lead`` of the window on the time column."""
    on_time, _late = seed(emu)
    ahead = B + 3 * H + 30 * MIN  # a client clock 40 min fast: event time after the ingestion window
    emu.add_rows(TABLE, [{"timestamp": ahead, "itemId": "ahead"}], ingested_at=B + 2 * H + 50 * MIN)
    container = f"out-{unique}"
    clock = at(emu, B + 4 * H + 10 * MIN)
    engine = make_engine(pipelines(emu, container, max_event_lag="PT2H", max_event_lead="PT1H")[1:], now=clock)
    engine.tick()
    got = Counter(r["itemId"] for r in moved(engine, storage_conn, container, "by-ingestion"))
    assert got == Counter([*on_time, "ahead"])  # 3 h late is past PT2H: not returned; 40 min ahead is within PT1H


def test_outputs_are_queried_by_event_time_with_duckdb(emu, make_engine, storage_conn, unique, tmp_path):
    """docs/reliability.md: files are cut by ingestion window; a filter on the time column (over the
    windows the rows may have been committed in) gives the rows of an event-time range."""
    on_time, late = seed(emu)
    container = f"out-{unique}"
    engine = make_engine(pipelines(emu, container)[1:], now=at(emu, B + 4 * H + 10 * MIN))
    engine.tick()
    blobs = BlobServiceClient.from_connection_string(storage_conn).get_container_client(container)
    for name in blobs.list_blob_names(name_starts_with="by-ingestion/"):
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blobs.download_blob(name).readall())
    db = duckdb.connect()
    sql = f"""
        SELECT itemId FROM read_json_auto('{tmp_path}/by-ingestion/y=2026/m=11/*/*/*.jsonl.gz',
                                          hive_partitioning = true, hive_types = {{'d': INTEGER, 'h': INTEGER}})
        WHERE d IN (3, 4)
          AND timestamp >= TIMESTAMPTZ '2026-11-03 00:00:00+00' AND timestamp < TIMESTAMPTZ '2026-11-03 01:00:00+00'
    """
    hour0 = sorted(row[0] for row in db.execute(sql).fetchall())
    assert hour0 == sorted([i for i in on_time if i.startswith("on-0-")] + late)  # from the files of hours 0 and 3


def test_a_resweep_recounts_by_ingestion_time(emu, make_engine, storage_conn, unique):
    """``resweep_lookback`` as a belt: a row whose commit trailed its ingestion stamp past the delay
    is found by the recount (by ingestion time) and its window moved again, replacing the file."""
    seed(emu)
    container = f"out-{unique}"
    pipe = pipelines(emu, container)[1]
    pipe["window"]["resweep_lookback"] = "PT6H"
    engine = make_engine([pipe], now=at(emu, B + H + 10 * MIN))
    assert [r.outcome for r in engine.tick().results] == ["done"]
    assert engine.tick().results == []  # counts unchanged: nothing to move
    emu.add_rows(TABLE, [{"timestamp": B + 29 * MIN, "itemId": "slow-commit"}], ingested_at=B + 30 * MIN)
    at(emu, B + H + 15 * MIN)
    assert [(r.window, r.outcome) for r in engine.tick().results] == [(Window(B, B + H), "done")]
    state = engine.ledger.get("by-ingestion", Window(B, B + H))
    got = [r["itemId"] for r in read_jsonl_gz(storage_conn, container, state.outputs[0]["name"])]
    assert state.rows == len(got) == 13 and "slow-commit" in got
