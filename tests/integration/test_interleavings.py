"""Each interleaving that once broke exactly-once, reproduced deterministically (docs/reliability.md).

Real Azurite, the real ledger, planner, queue, worker and blob sink, the query API emulator, a
test clock, and ``Killed`` at exact points (``tests.integration.kill``). Every test checks the
outcome in storage: rows in the output files exactly once, the ledger's states and counts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient

from devtools import export_writer as ew
from shared.engine.messages import WorkMessage
from shared.errors import RetriableError
from shared.ledger import Ledger
from shared.ledger.rows import META_KEY
from shared.model import Window
from shared.runtime.storage import queue_client
from shared.sources.query_api import QueryApiSource
from tests.conftest import T0, H, blob_names, expected_rows, query_pipeline, read_jsonl_gz, take
from tests.integration.kill import Killed, die_at
from tests.integration.test_export_engine import HOUR, MIN, WINDOW, Clock, ce_pipeline, output

LEASE = "PT1M"


def rows_of(conn: str, container: str, names: list[str]) -> list[str]:
    return sorted(str(r["itemId"]) for n in names for r in read_jsonl_gz(conn, container, n))


def data_blobs(conn: str, container: str) -> list[str]:
    return [n for n in blob_names(conn, container) if n.endswith(".jsonl.gz")]


def row_query_of(marker: bytes):
    """A row query (not a count, which the planner may send ahead) whose body holds ``marker``."""
    return lambda self, body, **kw: marker in body and b"summarize" not in body


def waiting(engine: Any) -> list[WorkMessage]:
    """The messages on the queue now, left there (a peek), once the workers' top-ups have run."""
    assert engine.handler.top_ups.wait(), "top-ups still running after 60 s"
    client = queue_client(engine.settings.state, engine.settings.queue_name)
    return [WorkMessage.decode(m.content) for m in client.peek_messages(max_messages=32)]


# -- 1 ----------------------------------------------------------------------------------------------------
def test_a_forced_run_that_dies_after_its_data_commit_never_resumes_an_old_checkpoint(
    emulator, make_engine, storage_conn, unique, monkeypatch
):
    container = f"out-{unique}"
    clock = Clock(T0 + H + timedelta(minutes=10))
    over = {"source": {"max_rows_per_query": 10}, "window": {"lease": LEASE, "max_per_tick": 1}}
    pausing = make_engine([query_pipeline("req", "requests", emulator, container, **over)], now=clock,
                          MOVER_CHECKPOINT_AFTER="PT0S")  # fmt: skip
    (paused,) = pausing.tick().results
    assert paused.outcome == "paused"
    window = Window(T0, T0 + H)
    assert pausing.ledger.get("req", window).extra["checkpoint"]["next"] == 1  # a checkpoint after one step

    engine = make_engine([query_pipeline("req", "requests", emulator, container, **over)], now=clock)
    die_at(monkeypatch, Ledger, "complete")  # every step and the manifest committed; the ledger never hears
    with pytest.raises(Killed):
        engine.replayer.replay(engine.settings.pipeline("req"), T0, T0 + H, mode="inline")
    state = engine.ledger.get("req", window)
    assert state.status == "running" and "checkpoint" not in state.extra  # the forced claim dropped it

    monkeypatch.undo()
    clock.now += timedelta(minutes=2)  # the dead run's lease is over
    (result,) = engine.tick().results
    assert result.outcome == "done"
    state = engine.ledger.get("req", window)
    source = sorted(str(r["itemId"]) for r in expected_rows(emulator, "requests", T0, T0 + H))
    assert rows_of(storage_conn, container, data_blobs(storage_conn, container)) == source  # each row once
    assert {o["name"] for o in state.outputs if o["kind"] == "data"} == set(data_blobs(storage_conn, container))
    assert state.rows == len(source)


# -- 2 ----------------------------------------------------------------------------------------------------
def test_an_orphaned_late_part_does_not_survive_the_full_rerun(make_engine, storage_conn, unique, monkeypatch):
    from azure.storage.blob import BlobServiceClient

    export_name, sink = f"export-{unique}", f"out-{unique}"
    export = BlobServiceClient.from_connection_string(storage_conn).get_container_client(export_name)
    first = ew.write_export_hour(export, "Requests", HOUR, blobs=3, lines_per_blob=4, seed=unique)
    clock = Clock(HOUR + H + 10 * MIN)
    pipeline = ce_pipeline("req", export_name, "Requests", sink)
    pipeline["window"]["lease"] = LEASE
    engine = make_engine([pipeline], now=clock)
    assert [r.outcome for r in engine.tick().results] == ["done"]
    late = ew.write_export_blob(export, "Requests", HOUR + H + 12 * MIN, lines=5, seed=unique, hour=HOUR)

    clock.now += 10 * MIN
    die_at(monkeypatch, Ledger, "complete")  # the late part and the manifest are committed, then the run dies
    with pytest.raises(Killed):
        engine.tick()
    assert output("req", "late-0001") in data_blobs(storage_conn, sink)

    monkeypatch.undo()
    clock.now += 2 * MIN  # lease over: the window is taken over as a normal window and read whole
    assert [r.outcome for r in engine.tick().results] == ["done"]
    assert data_blobs(storage_conn, sink) == [output("req")]  # the orphaned late part was removed
    assert rows_of(storage_conn, sink, [output("req")]) == sorted(first.item_ids + late.item_ids)
    state = engine.ledger.get("req", WINDOW)
    assert (state.status, state.rows, state.writing, state.leftovers) == ("done", 17, (), ())


# -- 3 and 4 ------------------------------------------------------------------------------------------------
def _queue_engine(make_engine, emulator, container, clock, **window):
    pipeline = query_pipeline("req", "requests", emulator, container, window={"lease": LEASE} | window)
    return make_engine([pipeline], now=clock, MOVER_DISPATCH="queue")


def test_a_window_that_kills_its_worker_is_closed_after_its_free_takeovers_and_does_not_starve_the_rest(
    emulator, make_engine, unique, monkeypatch
):
    clock = Clock(T0 + 2 * H + timedelta(minutes=10))
    engine = _queue_engine(make_engine, emulator, f"out-{unique}", clock, max_attempts=2, max_per_tick=1)
    first = Window(T0, T0 + H)
    die_at(monkeypatch, QueryApiSource, "_post", times=100, when=row_query_of(b"T00:00:00"))
    deaths = 0
    for _ in range(12):
        engine.tick()
        messages = [WorkMessage.decode(b) for b in take(engine)]
        if not any(m.window == first for m in messages):
            break
        for message in messages:
            with pytest.raises(Killed):  # the window kills whoever runs it (say, out of memory)
                engine.handle(message.encode())
            deaths += 1
        clock.now += timedelta(minutes=2)  # the dead run's lease runs out
    state = engine.ledger.get("req", first)
    assert state.status == "failed" and state.next_attempt_at is None  # closed: only a replay reopens it
    assert "runs died" in state.error and state.fail_kind == "window"
    assert deaths == 2 * 2 + 2  # free takeovers (2 × max_attempts), then its 2 attempts
    engine.tick()  # the next window is planned: the cap of 1 is not held by the closed one
    assert [m.window for m in map(WorkMessage.decode, take(engine))] == [Window(T0 + H, T0 + 2 * H)]


def test_queue_mode_takeovers_do_not_burn_attempts(emulator, make_engine, unique, monkeypatch):
    clock = Clock(T0 + H + timedelta(minutes=10))
    engine = _queue_engine(make_engine, emulator, f"out-{unique}", clock, max_attempts=3, retry_backoff="PT1M")
    window = Window(T0, T0 + H)
    kills = die_at(monkeypatch, QueryApiSource, "_post", times=2, when=row_query_of(b""))
    for _ in range(2):  # two worker deaths
        engine.tick()
        (body,) = take(engine)
        with pytest.raises(Killed):
            engine.handle(body)
        clock.now += timedelta(minutes=2)
    assert kills["kills"] == 2
    engine.tick()
    (body,) = take(engine)
    emulator.faults.push(status=503, count=4)  # then a transient service fault outlasts the in-call retries
    assert engine.handle(body) == "failed"
    state = engine.ledger.get("req", window)
    assert (state.status, state.attempts, state.takeovers, state.fail_kind) == ("failed", 0, 2, "transient")
    assert state.next_attempt_at is not None  # healthy: it comes back on its own
    clock.now = state.next_attempt_at
    engine.tick()
    (body,) = take(engine)
    assert engine.handle(body) == "done"


# -- 5 ----------------------------------------------------------------------------------------------------
def test_a_forced_claim_and_its_open_mark_are_one_write(emulator, make_engine, storage_conn, unique, monkeypatch):
    clock = Clock(T0 + 3 * H + timedelta(minutes=10))
    pipeline = query_pipeline("req", "requests", emulator, f"out-{unique}", window={"lease": LEASE})
    engine = make_engine([pipeline], now=clock)
    assert [r.outcome for r in engine.tick().results] == ["done"] * 3
    engine.tick()  # the plan moves the open mark past the done windows
    meta = TableClient.from_connection_string(storage_conn, f"ledger{unique}").get_entity("req", META_KEY)
    assert meta["OpenFrom"] > Window(T0, T0 + H).key

    real = TableClient.submit_transaction
    calls = {"n": 0}

    def unavailable(self, operations, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise HttpResponseError(message="Server busy", response=None)
        return real(self, operations, **kw)

    monkeypatch.setattr(TableClient, "submit_transaction", unavailable)
    (refused,) = engine.replayer.replay(engine.settings.pipeline("req"), T0, T0 + H, mode="inline").results
    assert refused.outcome == "failed" and refused.error.startswith("ledger:")
    assert engine.ledger.get("req", Window(T0, T0 + H)).status == "done"  # neither write happened
    monkeypatch.undo()

    die_at(monkeypatch, Ledger, "force_claim", after=True)  # both written, then the process dies
    with pytest.raises(Killed):
        engine.replayer.replay(engine.settings.pipeline("req"), T0, T0 + H, mode="inline")
    meta = TableClient.from_connection_string(storage_conn, f"ledger{unique}").get_entity("req", META_KEY)
    assert meta["OpenFrom"] <= Window(T0, T0 + H).key  # the mark came back with the claim
    monkeypatch.undo()
    clock.now += timedelta(minutes=2)
    assert [(r.window.start, r.outcome) for r in engine.tick().results] == [(T0, "done")]  # a plan saw it


# -- 6 ----------------------------------------------------------------------------------------------------
def test_a_sweep_never_undoes_an_operator_replay(emulator, make_engine, unique):
    clock = Clock(T0 + 2 * H + timedelta(minutes=10))
    engine = _queue_engine(make_engine, emulator, f"out-{unique}", clock, resweep_lookback="P1D")
    engine.tick()
    for body in take(engine):
        assert engine.handle(body) == "done"
    window = Window(T0, T0 + H)
    clock.now += timedelta(minutes=5)
    engine.tick()  # re-sweeps of the done windows are sent (T11)
    sweeps = [m for m in map(WorkMessage.decode, take(engine)) if m.kind == "sweep"]
    assert {m.window for m in sweeps} == {window, Window(T0 + H, T0 + 2 * H)}
    replay_at = clock.now
    # T9, between plan and sweep
    result = engine.replayer.replay(engine.settings.pipeline("req"), T0, T0 + H, mode="queue")
    assert result.queued == 1
    clock.now += timedelta(seconds=30)
    sweep = next(m for m in sweeps if m.window == window)
    assert engine.handle(sweep.encode()) == "stale"  # planned from an older record: the replay stands
    replayed = [m for m in map(WorkMessage.decode, take(engine)) if m.window == window and m.kind == "window"]
    assert len(replayed) == 1
    assert engine.handle(replayed[0].encode()) == "done"
    state = engine.ledger.get("req", window)
    assert state.status == "done" and state.started_at > replay_at  # the replay's own run


def test_a_replay_during_an_inline_sweep_count_wins(emulator, make_engine, unique, monkeypatch):
    clock = Clock(T0 + H + timedelta(minutes=10))
    pipeline = query_pipeline("req", "requests", emulator, f"out-{unique}", window={"resweep_lookback": "P1D"})
    engine = make_engine([pipeline], now=clock)
    assert [r.outcome for r in engine.tick().results] == ["done"]
    window = Window(T0, T0 + H)
    real_count = QueryApiSource.count

    def count_then_replay(self, w):
        n = real_count(self, w) + 1  # the count differs: the sweep will want to rerun the window
        engine.ledger.request_replay("req", [window], clock.now)  # meanwhile an operator replays it
        return n

    monkeypatch.setattr(QueryApiSource, "count", count_then_replay)
    clock.now += timedelta(minutes=1)
    report = engine.tick()
    assert [r.outcome for r in report.results] == ["skipped"]  # the sweep lost to the newer decision
    assert engine.ledger.get("req", window).status == "pending"  # the replay's request, intact
    monkeypatch.undo()
    assert [r.outcome for r in engine.tick().results] == ["done"]


# -- 7 ----------------------------------------------------------------------------------------------------
def test_sweep_messages_are_capped_and_deduplicated(emulator, make_engine, unique):
    clock = Clock(T0 + 24 * H + timedelta(minutes=10))
    engine = _queue_engine(make_engine, emulator, f"out-{unique}", clock, resweep_lookback="P2D", max_per_tick=4)
    while True:  # backfill 24 windows (sweeps of the done ones are sent meanwhile: left unanswered)
        engine.tick()
        windows = [b for b in take(engine) if WorkMessage.decode(b).kind == "window"]
        if not windows:
            break
        for body in windows:
            engine.handle(body)
    clock.now += timedelta(hours=1)  # the unanswered sweeps are lost by now: every done window may be swept
    assert sum(1 for s in engine.ledger.states("req") if s.status == "done") == 24
    sweeps = []
    for _ in range(4):  # ticks within one visibility period: nothing answers the sweeps
        clock.now += timedelta(minutes=1)
        engine.tick()
        sweeps.append([m.window for m in waiting(engine) if m.kind == "sweep"])
    assert [len(s) for s in sweeps] == [4, 4, 4, 4]  # max_per_tick sweeps in flight, not 24 more each tick
    assert len(set(sweeps[-1])) == 4 and all(s == sweeps[0] for s in sweeps)  # the same four, never re-sent
    clock.now += engine.planner.requeue_after(engine.settings.pipelines[0])
    engine.tick()  # their messages must be lost by now: sent again, still capped
    assert len([m for m in waiting(engine) if m.kind == "sweep"]) == 8


# -- 8 ----------------------------------------------------------------------------------------------------
def test_a_storage_outage_never_closes_a_healthy_window(emulator, make_engine, unique, monkeypatch):
    clock = Clock(T0 + H + timedelta(minutes=10))
    engine = _queue_engine(make_engine, emulator, f"out-{unique}", clock, max_attempts=2)
    engine.tick()
    (body,) = take(engine)

    def outage(*args, **kwargs):
        raise RetriableError("ledger claim: storage error 503")

    monkeypatch.setattr(Ledger, "claim", outage)
    for count in range(1, 6):  # every delivery fails (the host's maxDequeueCount is 5)
        with pytest.raises(RetriableError):
            engine.handle(body, dequeue_count=count)
    monkeypatch.undo()
    assert engine.poisoned(body, reason="failed on every delivery") == "failed"
    window = Window(T0, T0 + H)
    state = engine.ledger.get("req", window)
    assert (state.status, state.fail_kind, state.attempts) == ("failed", "transient", 0)
    clock.now = state.next_attempt_at  # it comes back by itself
    engine.tick()
    (again,) = take(engine)
    assert engine.handle(again) == "done"


# -- 9 ----------------------------------------------------------------------------------------------------
def test_a_partial_error_that_is_not_truncation_fails_fast_without_splitting(emulator, make_engine, unique):
    clock = Clock(T0 + H + timedelta(minutes=10))
    pipeline = query_pipeline("req", "requests", emulator, f"out-{unique}", source={"max_rows_per_query": 1000})
    engine = make_engine([pipeline], now=clock)
    before = emulator.stats.queries
    emulator.faults.push("overflow")  # on the window's first query
    (result,) = engine.tick().results
    assert result.outcome == "failed" and "E_OVERFLOW" in result.error
    assert emulator.stats.queries - before == 1  # failed at once: no split loop
    state = engine.ledger.get("req", Window(T0, T0 + H))
    assert (state.fail_kind, state.attempts) == ("window", 1) and "splits" not in state.extra


def test_a_warning_partial_error_keeps_every_row_and_records_the_warning(
    emulator, make_engine, storage_conn, unique
):
    clock = Clock(T0 + H + timedelta(minutes=10))
    engine = make_engine([query_pipeline("req", "requests", emulator, f"out-{unique}")], now=clock)
    emulator.faults.push("warning", count=2)
    (result,) = engine.tick().results
    assert result.outcome == "done"
    source = sorted(str(r["itemId"]) for r in expected_rows(emulator, "requests", T0, T0 + H))
    assert rows_of(storage_conn, f"out-{unique}", data_blobs(storage_conn, f"out-{unique}")) == source
    warnings = engine.ledger.get("req", Window(T0, T0 + H)).extra["warnings"]
    assert warnings and "W_APPROXIMATION" in warnings[0]
