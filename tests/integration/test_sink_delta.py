"""Delta sink end to end on Azurite: the engine writes a Delta table, read back by deltalake and DuckDB.

Rows are compared with the query API emulator's truth: exactly once after reruns, replays,
a crash between the commit and the ledger, late parts, checkpoint chunks and concurrent
writers; the table's history shows one commit per window.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from azure.storage.blob import BlobServiceClient
from deltalake import DeltaTable

from shared.model import Window
from shared.settings import StorageConfig, load_settings
from shared.sinks.delta_maintenance import maintain_pipeline
from shared.sinks.delta_table import storage_options
from tests.conftest import T0, H, expected_rows, query_pipeline

TABLE = "requests"


@pytest.fixture()
def emu(emulator) -> Iterator[Any]:
    rows, size = emulator.config.max_rows, emulator.config.max_bytes
    yield emulator
    emulator.config.max_rows, emulator.config.max_bytes = rows, size
    emulator.faults.clear()


def delta_pipeline(name: str, table: str, emu: Any, container: str, **over: Any) -> dict[str, Any]:
    sink = {"kind": "delta", "container": container} | over.pop("sink", {})
    return query_pipeline(name, table, emu, container, **over) | {"sink": sink}


def options(conn: str) -> dict[str, str]:
    return storage_options(StorageConfig(setting="AzureWebJobsStorage", conn_string=conn))


def read_table(conn: str, container: str, path: str) -> tuple[DeltaTable, list[dict[str, Any]]]:
    dt = DeltaTable(f"az://{container}/{path}", storage_options=options(conn))
    return dt, pa.table(dt.to_pyarrow_dataset().to_table()).to_pylist()


def window_commits(dt: DeltaTable) -> list[str]:
    """Window keys of the table's data commits, oldest first (schema and maintenance left out)."""
    return [h["mover.window"] for h in reversed(dt.history()) if "mover.window" in h]


def ids(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(r["itemId"]) for r in rows)


def truth(emu: Any, start: datetime, end: datetime, table: str = TABLE) -> Counter[str]:
    return Counter(str(r["itemId"]) for r in expected_rows(emu, table, start, end))


def test_windows_land_once_each_and_read_back_typed(emu, make_engine, storage_conn, unique):
    container = f"lake-{unique}"
    engine = make_engine([delta_pipeline("req", TABLE, emu, container)], now=T0 + 3 * H + timedelta(minutes=10))
    assert [r.outcome for r in engine.tick().results] == ["done"] * 3
    dt, rows = read_table(storage_conn, container, "req")
    assert ids(rows) == truth(emu, T0, T0 + 3 * H)
    assert sorted(window_commits(dt)) == [Window(T0 + i * H, T0 + (i + 1) * H).key for i in range(3)]
    assert sum(h["mover.rows"] for h in dt.history() if "mover.window" in h) == len(rows)
    schema = pa.schema(dt.schema().to_arrow())
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert dt.metadata().partition_columns == ["date", "hour"]
    assert {(r["date"].isoformat(), r["hour"]) for r in rows} == {("2026-11-02", h) for h in range(3)}
    state = engine.ledger.get("req", Window(T0, T0 + H))
    (manifest,) = [o for o in state.outputs if o["kind"] == "manifest"]
    assert manifest["name"].startswith(f"delta:{container}/req@v")


def test_rerun_replay_and_crash_after_commit_never_duplicate(emu, make_engine, storage_conn, unique):
    container = f"lake-{unique}"
    engine = make_engine([delta_pipeline("req", TABLE, emu, container)], now=T0 + H + timedelta(minutes=10))
    p = engine.settings.pipeline("req")
    w0 = Window(T0, T0 + H)
    real = engine.ledger.complete

    def die(*args: Any, **kwargs: Any) -> None:  # the runner dies after the Delta commit, before the ledger
        raise RuntimeError("killed")

    engine.ledger.complete = die  # type: ignore[method-assign]
    assert engine.worker.run_window(p, w0).outcome == "failed"
    engine.ledger.complete = real  # type: ignore[method-assign]
    dt, rows = read_table(storage_conn, container, "req")
    assert ids(rows) == truth(emu, T0, T0 + H)  # the commit landed: the ledger does not know yet
    sink = engine.sinks(p)[0]
    assert sink.landed(w0) is not None  # type: ignore[attr-defined]
    assert engine.worker.run_window(p, w0, force=True).outcome == "done"  # the window runs again
    (again,) = engine.replayer.replay(p, T0, T0 + H).results  # and once more, replayed
    assert again.outcome == "done"
    dt, rows = read_table(storage_conn, container, "req")
    assert ids(rows) == truth(emu, T0, T0 + H)
    assert window_commits(dt) == [w0.key] * 3  # one commit per run of the window, each replacing the last
    assert len(dt.file_uris()) == 1
    state = engine.ledger.get("req", w0)
    assert state.status == "done" and state.rows == sum(truth(emu, T0, T0 + H).values())


def test_checkpoint_chunks_land_in_one_commit(emu, make_engine, storage_conn, unique):
    container = f"lake-{unique}"
    pipeline = delta_pipeline(
        "req", TABLE, emu, container, source={"max_rows_per_query": 8}, sink={"vacuum_retention": "PT0S"}
    )
    engine = make_engine([pipeline], now=T0 + H + timedelta(minutes=10))
    p = engine.settings.pipeline("req")
    w0 = Window(T0, T0 + H)
    script = [True]
    assert engine.worker.run_window(p, w0, pause=lambda: script.pop(0) if script else False).outcome == "paused"
    assert engine.sinks(p)[0].landed(w0) is None  # type: ignore[attr-defined]  # a chunk is not in the table
    script = [False, True]
    assert engine.worker.run_window(p, w0, pause=lambda: script.pop(0) if script else False).outcome == "paused"
    (last,) = engine.tick().results
    assert last.outcome == "done"
    dt, rows = read_table(storage_conn, container, "req")
    assert ids(rows) == truth(emu, T0, T0 + H)
    assert window_commits(dt) == [w0.key]
    assert len(dt.file_uris()) == 3  # main part + chunks c0001, c0002, added together
    # Maintenance: the closed day's window becomes one file; vacuum (retention 0) deletes the three.
    (done,) = maintain_pipeline(p, now=T0 + timedelta(days=3))
    assert (done.compacted_partitions, done.files_removed, done.vacuumed) == (1, 3, 3)
    dt, rows = read_table(storage_conn, container, "req")
    assert ids(rows) == truth(emu, T0, T0 + H) and len(dt.file_uris()) == 1
    assert [h.get("mover.maintenance") for h in dt.history(3)] == ["vacuum", "vacuum", "optimize"]
    assert window_commits(dt) == [w0.key]  # maintenance commits are not window commits
    # A late part after compaction and vacuum: the ledger's files are gone, the compacted file stands for them.
    from shared.model import Batch, Column, OutputFile

    sink = engine.sinks(p)[0]
    kept = [
        OutputFile(o["name"], o["rows"], o["bytes"])
        for o in engine.ledger.get("req", w0).outputs
        if o["kind"] == "data"
    ]
    writer = sink.open(w0, part="late-0001")
    writer.write(Batch(TABLE, (Column("timestamp", "datetime"), Column("itemId", "string")), [[None, "late-1"]]))
    sink.write_manifest(w0, kept + writer.commit(), {})
    dt, rows = read_table(storage_conn, container, "req")
    assert ids(rows) == truth(emu, T0, T0 + H) + Counter(["late-1"])
    # a replay after compaction: exactly the source
    assert engine.replayer.replay(p, T0, T0 + H).results[0].outcome == "done"
    dt, rows = read_table(storage_conn, container, "req")
    assert ids(rows) == truth(emu, T0, T0 + H) and len(dt.file_uris()) == 1


def test_late_part_lands_once_beside_the_window(emu, make_engine, storage_conn, unique):
    base = datetime(2026, 11, 12, tzinfo=UTC)  # a day no other test touches
    table = "exceptions"
    emu.generate(table, base, base + 2 * H, count=40, seed=91)
    container = f"lake-{unique}"
    pipeline = delta_pipeline(
        "exc", table, emu, container, window={"start": "2026-11-12T00:00:00Z", "resweep_lookback": "PT24H"}
    )
    engine = make_engine([pipeline], now=base + 2 * H + timedelta(minutes=10))
    assert [r.outcome for r in engine.tick().results] == ["done"] * 2
    late = [
        {"timestamp": base + H + timedelta(minutes=m), "problemId": f"late-{m}", "itemId": f"late-{unique}-{m}"}
        for m in (1, 2)
    ]
    emu.add_rows(table, late, ingested_at=datetime.now(UTC))
    (result,) = engine.tick().results
    assert result.outcome == "done"
    assert engine.tick().results == []  # settled: the sweep does not add the part again
    dt, rows = read_table(storage_conn, container, "exc")
    assert ids(rows) == truth(emu, base, base + 2 * H, table)
    assert {f"late-{unique}-{m}" for m in (1, 2)} <= set(ids(rows))
    w1 = Window(base + H, base + 2 * H)
    assert sorted(window_commits(dt)) == sorted([base.strftime("%Y%m%dT%H%M%SZ"), w1.key, w1.key])


def duckdb_rows(conn: str, container: str, path: str, sql: str) -> list[tuple[Any, ...]]:
    """DuckDB over the table's current files: the files the Delta log lists, downloaded (its own
    ``delta`` extension is a download this offline test cannot make); Hive folders give date/hour."""
    dt = DeltaTable(f"az://{container}/{path}", storage_options=options(conn))
    client = BlobServiceClient.from_connection_string(conn).get_container_client(container)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for rel in pa.table(dt.get_add_actions(flatten=True)).column("path").to_pylist():
            target = Path(tmp, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.download_blob(f"{path}/{rel}").readall())
            files.append(str(target))
        db = duckdb.connect()
        db.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({files!r}, hive_partitioning = true)")
        return db.execute(sql).fetchall()


def test_concurrent_engines_commit_windows_of_one_table(emu, make_engine, storage_conn, unique):
    """Three worker processes replay different 10-minute windows of one table at once."""
    import json
    import os
    import subprocess
    import sys

    container = f"lake-{unique}"
    pipeline = delta_pipeline("req", TABLE, emu, container, window={"size": "PT10M"})
    env = os.environ | {
        "AzureWebJobsStorage": storage_conn,
        "TEST_TOKEN": "test-token",
        "MOVER_PIPELINES": json.dumps({"pipelines": [pipeline]}),
        "MOVER_LEDGER_TABLE": f"ledger{unique}",
        "MOVER_QUARANTINE_CONTAINER": f"quarantine-{unique}",
        "MOVER_REPLAY_INLINE_WINDOWS": "12",
    }
    starts = [T0 + i * timedelta(minutes=50) for i in range(3)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shared",
                "replay",
                "--pipeline",
                "req",
                "--mode",
                "inline",
                "--start",
                s.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "--end",
                (s + timedelta(minutes=50)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for s in starts
    ]
    outs = [proc.communicate(timeout=240)[0].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outs
    print("conflicts retried:", sum(o.count("commit conflict") for o in outs))
    end = T0 + timedelta(minutes=150)
    dt, rows = read_table(storage_conn, container, "req")
    assert ids(rows) == truth(emu, T0, end)
    keys = [Window(T0 + i * timedelta(minutes=10), T0 + (i + 1) * timedelta(minutes=10)).key for i in range(15)]
    assert sorted(window_commits(dt)) == keys  # each window exactly one commit, none lost to a conflict
    got = duckdb_rows(storage_conn, container, "req", "SELECT count(*), count(DISTINCT itemId), min(hour) FROM t")
    assert got == [(sum(truth(emu, T0, end).values()), len(truth(emu, T0, end)), 0)]


def _sink(conn: str, container: str, **over: Any) -> Any:
    from shared.settings import SinkConfig
    from shared.sinks import build_sink

    config = SinkConfig(
        kind="delta",
        storage=StorageConfig(setting="AzureWebJobsStorage", conn_string=conn),
        container=container,
        path="{pipeline}",
        format="parquet",
        compression="snappy",
        **over,
    )
    return build_sink(config, pipeline="app", table="requests")


def _write(sink: Any, window: Window, columns: tuple[Any, ...], rows: list[list[Any]]) -> Any:
    from shared.model import Batch

    writer = sink.open(window)
    writer.write(Batch("requests", columns, rows))
    return sink.write_manifest(window, writer.commit(), {})


def test_threads_schema_evolution_and_type_change(storage_conn, unique):
    from concurrent.futures import ThreadPoolExecutor

    from shared.errors import FatalError
    from shared.model import Column

    container = f"lake-{unique}"
    base = (Column("timestamp", "datetime"), Column("itemId", "string"), Column("count", "long"))
    windows = [Window(T0 + i * timedelta(minutes=5), T0 + (i + 1) * timedelta(minutes=5)) for i in range(8)]

    def move(i: int) -> Any:  # each thread its own sink, like separate workers
        w = windows[i]
        rows = [[(w.start + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ"), f"{w.key}-{s}", s] for s in range(5)]
        return _write(_sink(storage_conn, container), w, base, rows)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(move, range(8)))
        list(pool.map(move, range(0, 8, 2)))  # reruns of half the windows, concurrently again
    sink = _sink(storage_conn, container)
    extra = (*base, Column("region", "string"), Column("small", "int"))
    w = windows[0]
    _write(sink, w, extra, [["2026-11-02T00:00:01Z", "evolved", 1, "eu", 7]])
    dt, rows = read_table(storage_conn, container, "app")
    assert sorted(r["itemId"] for r in rows) == sorted(
        ["evolved"] + [f"{x.key}-{s}" for x in windows[1:] for s in range(5)]
    )
    schema = pa.schema(dt.schema().to_arrow())
    assert schema.field("region").type == pa.string() and schema.field("small").type == pa.int64()
    assert {r["region"] for r in rows if r["itemId"] != "evolved"} == {None}  # older rows: null in the new column
    assert Counter(window_commits(dt)) == Counter(
        [x.key for x in windows] + [windows[i].key for i in range(0, 8, 2)] + [w.key]
    )
    changed = (*base[:2], Column("count", "string"))
    version = dt.version()
    with pytest.raises(FatalError, match=r"column 'count' is int64 but window .* has it as string"):
        _write(sink, windows[1], changed, [["2026-11-02T00:05:01Z", "changed", "many"]])
    fresh = _sink(storage_conn, container)  # a writer that has not seen the table yet: caught at the commit
    fresh.table_schema = lambda: None
    with pytest.raises(FatalError, match=r"column 'count' is int64 but window .* has it as string"):
        _write(fresh, windows[1], changed, [["2026-11-02T00:05:01Z", "changed", "many"]])
    assert DeltaTable(f"az://{container}/app", storage_options=options(storage_conn)).version() == version


def test_cli_runs_delta_maintenance(storage_conn, unique, monkeypatch, capsys):
    import json

    from shared.frontends.cli import main
    from shared.model import Batch, Column

    container = f"lake-{unique}"
    sink = _sink(storage_conn, container)
    columns = (Column("timestamp", "datetime"), Column("itemId", "string"))
    w = Window(T0, T0 + H)
    kept: list[Any] = []
    for part in ("", "late-0001"):  # two files of one window: the main part, then a late part beside it
        writer = sink.open(w, part=part)
        writer.write(Batch("requests", columns, [["2026-11-02T00:00:01Z", f"id-{part}"]]))
        kept += writer.commit()
        sink.write_manifest(w, kept, {})
    pipeline = {
        "name": "app",
        "source": {
            "kind": "app_insights",
            "app_id": "a",
            "query": "requests",
            "auth": {"kind": "token", "setting": "T"},
        },
        "window": {"size": "PT1H", "start": "2026-11-02T00:00:00Z"},
        "sink": {"kind": "delta", "container": container, "vacuum_retention": None},
    }
    monkeypatch.setenv("AzureWebJobsStorage", storage_conn)
    monkeypatch.setenv("T", "token")
    monkeypatch.setenv("MOVER_PIPELINES", json.dumps({"pipelines": [pipeline]}))
    assert main(["delta-maintenance"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["compacted_partitions"], report["files_removed"], report["vacuumed"]) == (1, 2, 0)
    dt, rows = read_table(storage_conn, container, "app")
    assert sorted(r["itemId"] for r in rows) == ["id-", "id-late-0001"] and len(dt.file_uris()) == 1


def test_compaction_merges_windows_and_reruns_still_replace_exactly_their_rows(storage_conn, unique):
    import json

    from shared.model import Batch, Column

    container = f"lake-{unique}"
    raw = {"kind": "delta", "container": container, "vacuum_retention": "PT0S"}
    doc = {
        "name": "app",
        "source": {
            "kind": "app_insights",
            "app_id": "a",
            "query": "requests",
            "auth": {"kind": "token", "setting": "T"},
        },
        "window": {"size": "PT10M", "start": "2026-11-02T00:00:00Z"},
        "sink": raw,
    }
    settings = load_settings(
        {"AzureWebJobsStorage": storage_conn, "T": "t", "MOVER_PIPELINES": json.dumps({"pipelines": [doc]})}
    )
    pipeline = settings.pipeline("app")
    sink = _sink(storage_conn, container, vacuum_retention=None)
    columns = (Column("timestamp", "datetime"), Column("itemId", "string"), Column("n", "long"))
    windows = [Window(T0 + i * timedelta(minutes=10), T0 + (i + 1) * timedelta(minutes=10)) for i in range(6)]
    ledger: dict[str, list[Any]] = {}  # what the ledger would hold per window

    def run(w: Window, ids_: list[str], part: str = "", kept: list[Any] | None = None) -> None:
        writer = sink.open(w, part=part)
        writer.write(Batch("requests", columns, [[w.start.strftime("%Y-%m-%dT%H:%M:%SZ"), i, 1] for i in ids_]))
        outputs = (kept or []) + writer.commit()
        sink.write_manifest(w, outputs, {})
        ledger[w.key] = outputs

    for i, w in enumerate(windows):
        run(w, [f"{i}-a", f"{i}-b", f"{i}-c"])
    run(windows[2], ["2-late1"], part="late-0001", kept=ledger[windows[2].key])
    expected = Counter({f"{i}-{c}": 1 for i in range(6) for c in "abc"} | {"2-late1": 1})
    (done,) = maintain_pipeline(pipeline, now=T0 + timedelta(days=3))
    assert (done.compacted_partitions, done.files_removed, done.vacuumed) == (1, 7, 7)
    dt, rows = read_table(storage_conn, container, "app")
    assert ids(rows) == expected and len(dt.file_uris()) == 1  # six windows, one file
    run(windows[3], ["3-x"])  # a rerun of a merged window: its rows leave the merged file
    expected = expected - Counter(["3-a", "3-b", "3-c"]) + Counter(["3-x"])
    dt, rows = read_table(storage_conn, container, "app")
    assert ids(rows) == expected and len(dt.file_uris()) == 2
    run(windows[2], ["2-late2"], part="late-0002", kept=ledger[windows[2].key])  # kept files were vacuumed
    expected += Counter(["2-late2"])
    dt, rows = read_table(storage_conn, container, "app")
    assert ids(rows) == expected
    run(windows[2], ["2-z"])  # a full replay of window 2: everything it had is replaced
    expected = Counter({k: v for k, v in expected.items() if not k.startswith("2-")}) + Counter(["2-z"])
    dt, rows = read_table(storage_conn, container, "app")
    assert ids(rows) == expected
    assert duckdb_rows(storage_conn, container, "app", "SELECT count(*) FROM t") == [(sum(expected.values()),)]


def test_empty_windows_commit_nothing_or_clear_the_window(storage_conn, unique):
    from shared.model import Column

    container = f"lake-{unique}"
    sink = _sink(storage_conn, container)
    columns = (Column("timestamp", "datetime"), Column("itemId", "string"))
    w0, w1 = Window(T0, T0 + H), Window(T0 + H, T0 + 2 * H)
    manifest = sink.write_manifest(w0, sink.open(w0).commit(), {})
    assert manifest.name == f"delta:{container}/app@empty" and manifest.rows == 0  # no table for no rows
    assert sink.landed(w0) is None
    _write(sink, w0, columns, [["2026-11-02T00:00:01Z", "a"]])
    _write(sink, w1, columns, [["2026-11-02T01:00:01Z", "b"]])
    manifest = sink.write_manifest(w0, sink.open(w0).commit(), {})  # the source has nothing for w0 now
    dt, rows = read_table(storage_conn, container, "app")
    assert [r["itemId"] for r in rows] == ["b"]
    assert manifest.name == f"delta:{container}/app@v{dt.version()}" and manifest.rows == 0
    assert window_commits(dt) == [w0.key, w1.key, w0.key]
    assert sink.landed(w0) == dt.history(1)[0]["mover.stamp"]


def test_columns_changing_inside_a_window_continue_in_a_second_file_of_the_same_commit(storage_conn, unique):
    from shared.errors import FatalError
    from shared.model import Batch, Column

    container = f"lake-{unique}"
    sink = _sink(storage_conn, container, row_group_rows=1000)
    w = Window(T0, T0 + H)
    first = (Column("timestamp", "datetime"), Column("itemId", "string"))
    later = (*first, Column("region", "string"))
    writer = sink.open(w)
    writer.write(Batch("requests", first, [["2026-11-02T00:00:01Z", f"a{i}"] for i in range(1500)]))
    writer.write(Batch("requests", later, [["2026-11-02T00:00:02Z", f"b{i}", "eu"] for i in range(10)]))
    outputs = writer.commit()
    assert len(outputs) == 2  # the first file's schema was fixed at its first row group
    manifest = sink.write_manifest(w, outputs, {})
    dt, rows = read_table(storage_conn, container, "app")
    assert manifest.rows == len(rows) == 1510 and window_commits(dt) == [w.key]
    assert sum(r["region"] == "eu" for r in rows) == 10
    w1 = Window(T0 + H, T0 + 2 * H)
    other = _sink(storage_conn, f"lake2-{unique}", row_group_rows=1000)
    writer = other.open(w1)
    writer.write(Batch("requests", (Column("n", "long"),), [[i] for i in range(1000)]))
    writer.write(Batch("requests", (Column("n", "string"),), [["x"]]))
    with pytest.raises(FatalError, match=r"column 'n' is int64 but window .* has it as string"):
        other.write_manifest(w1, writer.commit(), {})


def test_a_killed_worker_leaves_no_duplicates(emu, make_engine, storage_conn, unique):
    """SIGKILL a worker once its first windows committed; a rerun brings the table to exactly the source."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    container = f"lake-{unique}"
    pipeline = delta_pipeline("req", TABLE, emu, container, window={"size": "PT10M", "lease": "PT3S"})
    env = os.environ | {
        "AzureWebJobsStorage": storage_conn,
        "TEST_TOKEN": "test-token",
        "MOVER_PIPELINES": json.dumps({"pipelines": [pipeline]}),
        "MOVER_LEDGER_TABLE": f"ledger{unique}",
        "MOVER_QUARANTINE_CONTAINER": f"quarantine-{unique}",
        "MOVER_REPLAY_INLINE_WINDOWS": "12",
        "MOVER_MAX_CONCURRENCY": "1",
    }
    end = T0 + 2 * H
    args = ["replay", "--pipeline", "req", "--mode", "inline", "--start", "2026-11-02T00:00:00Z"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared", *args, "--end", "2026-11-02T02:00:00Z"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                dt = DeltaTable(f"az://{container}/req", storage_options=options(storage_conn))
            except Exception:  # no table yet
                continue
            if len(window_commits(dt)) >= 2:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    dt, rows = read_table(storage_conn, container, "req")
    assert len(window_commits(dt)) >= 2 and ids(rows) <= truth(emu, T0, end)  # never more than the source
    engine = make_engine([pipeline], now=lambda: datetime.now(UTC))  # leases are real time here
    p = engine.settings.pipeline("req")
    deadline = time.monotonic() + 120
    outcomes: list[str] = []
    while time.monotonic() < deadline:  # the killed worker's lease runs out within seconds
        outcomes = [r.outcome for r in engine.replayer.replay(p, T0, end, mode="inline").results]
        if outcomes == ["done"] * 12:
            break
    assert outcomes == ["done"] * 12
    dt, rows = read_table(storage_conn, container, "req")
    assert ids(rows) == truth(emu, T0, end)
    assert len(dt.file_uris()) == 12  # one file per window: every earlier file was replaced


_NEW_TABLE_SCRIPT = """
import sys
from datetime import datetime, UTC
from shared.model import Batch, Column, Window
from shared.settings import SinkConfig, StorageConfig
from shared.sinks import build_sink

conn, container = sys.argv[1], sys.argv[2]
storage = StorageConfig(setting="AzureWebJobsStorage", conn_string=conn)
config = SinkConfig(kind="delta", storage=storage, container=container, path="{pipeline}",
                    format="parquet", compression="snappy")
sink = build_sink(config, pipeline="app", table="requests")
window = Window(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 2, 1, tzinfo=UTC))
for round_ in ("new", "existing"):
    writer = sink.open(window)
    writer.write(Batch("requests", (Column("itemId"), Column("n", "long")), [["a", 1], ["b", 2]]))
    outputs = writer.commit()
    print(round_, "written", "deltalake" in sys.modules)
    sink.write_manifest(window, outputs, {})
    sink._schema = None  # the next writer reads the table's schema again
"""


def test_a_new_table_loads_deltalake_only_for_its_commit(storage_conn, unique):
    """deltalake's native library (~18 MB) is not loaded while a new table's first window is
    written; a table that exists is loaded at the writer's open, for its schema."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _NEW_TABLE_SCRIPT, storage_conn, f"lake-{unique}"],
        cwd=root, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["new written False", "existing written True"]
    _, rows = read_table(storage_conn, f"lake-{unique}", "app")
    assert sorted(r["itemId"] for r in rows) == ["a", "b"]
