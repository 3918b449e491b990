"""Scaled-out shape: worker processes on Azurite's queue, parallel sub-queries with unchanged bytes,
planning from the open mark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared.model import Window
from tests.conftest import T0, TOKEN, H, blob_names, expected_rows, query_pipeline, read_jsonl_gz

ROOT = Path(__file__).resolve().parents[2]


def run_until_idle(pipelines: list[dict], storage_conn: str, unique: str, *, workers: int, every: str = "0.5"):
    """``python -m shared run --workers N --until-idle`` with the pipelines, on a ledger and queue of its own."""
    env = os.environ | {
        "AzureWebJobsStorage": storage_conn,
        "TEST_TOKEN": TOKEN,
        "MOVER_PIPELINES": json.dumps({"pipelines": pipelines}),
        "MOVER_LEDGER_TABLE": f"scale{unique}",
        "MOVER_QUEUE_NAME": f"work-{unique}",
    }
    return subprocess.run(
        [sys.executable, "-m", "shared", "run", "--workers", str(workers), "--every", every, "--until-idle"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_run_with_worker_processes_until_idle(emulator, storage_conn, unique):
    """``python -m shared run --workers 2 --until-idle``: a planner process and two worker processes
    move a bounded backfill of two pipelines through the queue, exactly once, then exit 0."""
    end = "2026-11-02T08:00:00Z"
    pipelines = [
        query_pipeline(name, name, emulator, f"out-{unique}", window={"end": end, "max_per_tick": 3})
        for name in ("requests", "traces")
    ]
    done = run_until_idle(pipelines, storage_conn, unique, workers=2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "idle: nothing due, queued or running; 0 failed window(s)" in done.stdout
    container = f"out-{unique}"
    names = blob_names(storage_conn, container)
    for table in ("requests", "traces"):
        for i in range(8):
            start = T0 + i * H
            (name,) = [n for n in names if n.startswith(f"{table}/") and n.endswith(f"{start:%Y%m%dT%H%M%SZ}.jsonl.gz")]
            assert read_jsonl_gz(storage_conn, container, name) == expected_rows(emulator, table, start, start + H)


def test_until_idle_exits_soon_after_the_last_window_not_at_the_next_tick(emulator, storage_conn, unique):
    """Ticks 10 minutes apart: the first one queues, workers top the queue up as they finish, and the
    idle check between ticks ends the run (a run waiting for the next tick would outlive the timeout)."""
    pipeline = query_pipeline("requests", "requests", emulator, f"out-{unique}",
                              window={"end": "2026-11-02T06:00:00Z", "max_per_tick": 2})  # fmt: skip
    done = run_until_idle([pipeline], storage_conn, unique, workers=1, every="600")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "idle: nothing due, queued or running; 0 failed window(s)" in done.stdout
    assert len([n for n in blob_names(storage_conn, f"out-{unique}") if n.endswith(".jsonl.gz")]) == 6


def test_until_idle_exits_1_and_lists_failed_windows(emulator, storage_conn, unique):
    pipeline = query_pipeline("requests", "requests", emulator, f"out-{unique}",
                              window={"end": "2026-11-02T02:00:00Z", "max_attempts": 1},
                              source={"app_id": "no-such-app"})  # fmt: skip
    done = run_until_idle([pipeline], storage_conn, unique, workers=1)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("failed: requests 2026-11-02T0") == 2
    assert "2 failed window(s)" in done.stdout


def test_parallel_sub_queries_write_the_same_bytes(emulator, make_engine, storage_conn, unique):
    """Same data → same files and SHA-256, whatever the number of sub-queries in flight."""
    digests = []
    for parallel in (1, 5):
        container = f"p{parallel}-{unique}"
        pipeline = query_pipeline(
            "requests", "requests", emulator, container,
            source={"max_rows_per_query": 7, "parallel_queries": parallel},
            sink={"container": container, "format": "parquet"},
        )  # fmt: skip
        pipeline["sinks"] = [{"container": container, "format": "parquet"}, {"container": f"j{container}"}]
        del pipeline["sink"]
        engine = make_engine([pipeline], MOVER_LEDGER_TABLE=f"par{parallel}{unique}")
        result = engine.worker.run_window(engine.settings.pipelines[0], Window(T0, T0 + H))
        assert result.outcome == "done"
        state = engine.ledger.get("requests", Window(T0, T0 + H))
        assert state.extra["queries"] >= 6  # 40 rows at 7 per query, plus the count
        digests.append(sorted((o["name"], o["sha256"], o["rows"]) for o in state.outputs if o["kind"] == "data"))
        names = [n for n in blob_names(storage_conn, f"j{container}") if n.endswith(".jsonl.gz")]
        assert read_jsonl_gz(storage_conn, f"j{container}", names[0]) == expected_rows(emulator, "requests", T0, T0 + H)
    assert digests[0] == digests[1]


def test_a_window_never_has_more_than_parallel_queries_at_the_service(emulator, make_engine, unique):
    """Ahead runs a thread more than ``parallel_queries`` (to decode while others wait on the service);
    the source's own lanes keep the service's view at ``parallel_queries``."""
    pipeline = query_pipeline(
        "requests", "requests", emulator, f"lanes-{unique}", source={"max_rows_per_query": 5, "parallel_queries": 2}
    )
    engine = make_engine([pipeline])
    emulator.config.latency_ms = 80  # queries overlap: a third one in flight would show in the peak
    emulator.reset_stats()
    try:
        result = engine.worker.run_window(engine.settings.pipelines[0], Window(T0, T0 + H))
    finally:
        emulator.config.latency_ms = 0
    assert result.outcome == "done"
    assert engine.ledger.get("requests", Window(T0, T0 + H)).extra["queries"] >= 9  # 40 rows at 5, plus the count
    assert emulator.stats.peak_concurrency == 2


def test_planning_reads_only_from_the_open_mark(emulator, make_engine, unique):
    """After a backfill, the open mark sits at the frontier: a plan reads no done window again."""
    pipeline = query_pipeline("requests", "requests", emulator, f"out-{unique}",
                              window={"end": "2026-11-02T12:00:00Z"})  # fmt: skip
    engine = make_engine([pipeline])
    assert engine.tick().done == 12
    engine.tick()  # this plan finds nothing open and moves the mark to the frontier
    snapshot = engine.ledger.snapshot("requests")
    assert snapshot.open_from == "20261102T120000Z" and snapshot.states == ()
    # a replay re-opens behind the mark; the next plan sees (and queues) it
    engine.ledger.request_replay("requests", [Window(T0 + 3 * H, T0 + 4 * H)], T0 + 48 * H)
    assert engine.ledger.snapshot("requests").open_from == "20261102T030000Z"
    report = engine.tick()
    assert [(r.window.start, r.outcome) for r in report.results] == [(T0 + 3 * H, "done")]
    assert engine.ledger.snapshot("requests").open_from <= "20261102T120000Z"
