"""Query API → Blob Storage end to end: real Azurite, the query API emulator, the real engine."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from shared.durations import parse_timestamp
from shared.model import Window
from tests.conftest import T0, H, blob_names, expected_rows, query_pipeline, read_jsonl_gz


def by_id(rows):
    return {r["itemId"]: r for r in rows}


def test_three_tables_three_windows_exact_rows(emulator, make_engine, storage_conn, unique):
    container = f"out-{unique}"
    tables = ("requests", "dependencies", "traces")
    pipelines = [query_pipeline(t, t, emulator, container) for t in tables]
    engine = make_engine(pipelines, now=T0 + 3 * H + timedelta(minutes=5))  # exactly 3 windows due
    report = engine.tick()
    assert report.failed == 0 and report.errors == {}
    assert sorted((r.pipeline, r.window.start) for r in report.results) == sorted(
        (t, T0 + i * H) for t in tables for i in range(3)
    )
    for table in tables:
        names = blob_names(storage_conn, container, f"{table}/")
        data = [n for n in names if n.endswith(".jsonl.gz")]
        assert data == [f"{table}/y=2026/m=11/d=02/h=0{i}/20261102T0{i}0000Z.jsonl.gz" for i in range(3)]
        for i, name in enumerate(data):
            window = Window(T0 + i * H, T0 + (i + 1) * H)
            expected = expected_rows(emulator, table, window.start, window.end)
            got = read_jsonl_gz(storage_conn, container, name)
            assert len(got) == len(expected) > 0
            assert by_id(got) == by_id(expected)  # every column, every value
            state = engine.ledger.get(table, window)
            assert state.status == "done" and state.rows == len(expected) and state.attempts == 1
            assert name in [o["name"] for o in state.outputs]
            assert state.bytes > 0


def test_rerun_of_done_window_overwrites_same_blob_without_duplicates(emulator, make_engine, storage_conn, unique):
    container = f"out-{unique}"
    engine = make_engine(
        [query_pipeline("requests", "requests", emulator, container)], now=T0 + H + timedelta(minutes=5)
    )
    engine.tick()
    before = blob_names(storage_conn, container)
    name = next(n for n in before if n.endswith(".jsonl.gz"))
    first = read_jsonl_gz(storage_conn, container, name)
    assert engine.tick().results == []  # nothing new due, done windows are not rerun
    pipeline = engine.settings.pipeline("requests")
    result = engine.replayer.replay(pipeline, T0, T0 + H, mode="inline")
    assert [r.outcome for r in result.results] == ["done"]
    assert blob_names(storage_conn, container) == before
    again = read_jsonl_gz(storage_conn, container, name)
    assert len(again) == len(first) == len({r["itemId"] for r in again})
    assert by_id(again) == by_id(first)
    state = engine.ledger.get("requests", Window(T0, T0 + H))
    assert state.status == "done" and state.rows == len(first)


def test_backfill_48_hourly_windows_oldest_first(emulator, make_engine, storage_conn, unique):
    container = f"out-{unique}"
    pipeline = query_pipeline("requests", "requests", emulator, container, window={"max_per_tick": 20})
    engine = make_engine([pipeline], MOVER_MAX_CONCURRENCY="1")
    started = []
    for _ in range(3):
        report = engine.tick()
        assert report.failed == 0
        started.extend(r.window.start for r in report.results)
    assert started == [T0 + i * H for i in range(48)]  # oldest first, none skipped, none twice
    states = list(engine.ledger.states("requests"))
    assert [s.window.start for s in states] == started
    assert all(s.status == "done" for s in states)
    finished = [s.finished_at for s in states]
    assert finished == sorted(finished)
    total = sum(s.rows for s in states)
    assert total == emulator.expected_count("requests", T0, T0 + 48 * H)
    assert len([n for n in blob_names(storage_conn, container) if n.endswith(".jsonl.gz")]) == 48


def test_two_runners_never_run_the_same_window_twice(emulator, make_engine, unique):
    container = f"out-{unique}"
    pipelines = [query_pipeline("requests", "requests", emulator, container, window={"max_per_tick": 12})]
    a = make_engine(pipelines, owner="runner-a", now=T0 + 12 * H + timedelta(minutes=5))
    b = make_engine(pipelines, owner="runner-b", now=T0 + 12 * H + timedelta(minutes=5))
    gate = threading.Barrier(2)

    def run(engine):
        gate.wait()
        return engine.tick()

    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(run, [a, b]))
    done = [
        (r.window.start, owner)
        for report, owner in zip(reports, "ab", strict=True)
        for r in report.results
        if r.outcome == "done"
    ]
    starts = [s for s, _ in done]
    assert sorted(starts) == [T0 + i * H for i in range(12)]  # every window exactly once
    assert len(starts) == len(set(starts))
    states = list(a.ledger.states("requests"))
    assert all(s.status == "done" and s.attempts == 1 for s in states)


def test_log_analytics_workspace_source(emulator, make_engine, storage_conn, unique):
    container = f"out-{unique}"
    pipeline = query_pipeline(
        "ws",
        "AppRequests",
        emulator,
        container,
        source={"kind": "log_analytics", "workspace_id": "test-ws", "app_id": None},
    )
    del pipeline["source"]["app_id"]
    engine = make_engine([pipeline], now=T0 + 2 * H + timedelta(minutes=5))
    report = engine.tick()
    assert [r.outcome for r in report.results] == ["done", "done"]
    for i in range(2):
        window = Window(T0 + i * H, T0 + (i + 1) * H)
        got = read_jsonl_gz(storage_conn, container, engine.ledger.get("ws", window).outputs[0]["name"])
        expected = emulator.expected("AppRequests", window.start, window.end)
        assert len(got) == len(expected) > 0
        assert {r["_ItemId"] for r in got} == {r["_ItemId"] for r in expected}
        assert all(window.start <= parse_timestamp(r["TimeGenerated"]) < window.end for r in got)
