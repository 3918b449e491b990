"""The queue path through the decorated functions: the timer plans and enqueues on Azurite's real queue
service, ``mover_worker`` moves one window per real ``QueueMessage``, ``mover_poison`` fails a window."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from devtools.funchost import QueueFunction, queue_loop
from shared.engine.messages import WorkMessage
from shared.frontends import http as api
from shared.runtime.storage import queue_client
from tests.conftest import T0, H, blob_names, expected_rows, query_pipeline, read_jsonl_gz, take

NOW = T0 + 6 * H + timedelta(minutes=10)


@pytest.fixture()
def engine(emulator, make_engine, unique):
    pipeline = query_pipeline("requests", "requests", emulator, f"out-{unique}", window={"max_per_tick": 4})
    engine = make_engine([pipeline], now=NOW, MOVER_DISPATCH="queue")
    api.reset_engine(engine)
    return engine


def deliver(functions, body: bytes, count: int = 1, name: str = "mover_worker") -> None:
    functions.queues[name].call(QueueMessage(id="m", body=body, dequeue_count=count))


def test_app_indexes_the_queue_triggers(functions):
    worker, poison = functions.queues["mover_worker"], functions.queues["mover_poison"]
    assert (worker.queue, worker.connection) == ("mover-windows", "AzureWebJobsStorage")
    assert (poison.queue, poison.connection) == ("mover-windows-poison", "AzureWebJobsStorage")


def test_timer_enqueues_and_workers_move_each_window_once(functions, engine, emulator, storage_conn, unique):
    functions.timers["mover_tick"].call(TimerRequest(past_due=False))
    states = {s.key: s for s in engine.ledger.states("requests")}
    assert [s.status for s in states.values()] == ["queued"] * 4  # capped at max_per_tick in flight
    assert all(s.queued_at == NOW for s in states.values())
    bodies = take(engine)
    assert sorted(WorkMessage.decode(b).window.key for b in bodies) == sorted(states)

    deliver(functions, bodies[0])  # the worker moves it, then tops the queue up to 4 in flight again
    first = WorkMessage.decode(bodies[0]).window
    assert engine.ledger.get("requests", first).status == "done"
    topped = take(engine)
    assert [WorkMessage.decode(b).window.start for b in topped] == [T0 + 4 * H]
    waiting = bodies[1:] + topped
    while waiting:  # drain like the host would, until nothing is left to do
        for body in waiting:
            deliver(functions, body)
        waiting = take(engine)
    done = [s for s in engine.ledger.states("requests") if s.status == "done"]
    assert [s.window.start for s in done] == [T0 + i * H for i in range(6)]
    container = f"out-{unique}"
    for state in done:
        (name,) = [n for n in blob_names(storage_conn, container) if n.endswith(f"{state.key}.jsonl.gz")]
        rows = read_jsonl_gz(storage_conn, container, name)
        assert rows == expected_rows(emulator, "requests", state.window.start, state.window.end)


def test_a_workers_top_up_queues_a_third_of_max_per_tick_at_once_with_one_count(
    functions, make_engine, emulator, storage_conn, unique
):
    pipeline = query_pipeline("requests", "requests", emulator, f"out-{unique}", window={"max_per_tick": 6})
    engine = make_engine([pipeline], now=T0 + 12 * H + timedelta(minutes=10), MOVER_DISPATCH="queue")
    api.reset_engine(engine)
    functions.timers["mover_tick"].call(TimerRequest(past_due=False))
    bodies = take(engine)
    assert len(bodies) == 6
    deliver(functions, bodies[0])
    assert take(engine) == []  # one place free: the top-up waits for a second (6 // 3)
    before = emulator.stats.queries
    deliver(functions, bodies[1])
    topped = take(engine)
    assert [WorkMessage.decode(b).window.start for b in topped] == [T0 + 6 * H, T0 + 7 * H]
    assert all(WorkMessage.decode(b).plan is not None for b in topped)  # both counted ahead…
    moved = engine.ledger.get("requests", WorkMessage.decode(bodies[1]).window).extra["queries"]
    assert emulator.stats.queries - before == moved + 1  # …by one count query
    waiting = bodies[2:] + topped
    while waiting:  # the end of the backfill: the last windows are queued as places free up
        for body in waiting:
            deliver(functions, body)
        waiting = take(engine)
    done = [s.window.start for s in engine.ledger.states("requests") if s.status == "done"]
    assert done == [T0 + i * H for i in range(12)]


def test_a_queued_replay_is_sent_at_once_even_when_a_top_up_would_wait(functions, make_engine, emulator, unique):
    pipeline = query_pipeline("requests", "requests", emulator, f"out-{unique}", window={"max_per_tick": 6})
    engine = make_engine([pipeline], now=T0 + 12 * H + timedelta(minutes=10), MOVER_DISPATCH="queue")
    api.reset_engine(engine)
    functions.timers["mover_tick"].call(TimerRequest(past_due=False))
    bodies = take(engine)
    deliver(functions, bodies[0])
    assert take(engine) == []  # a worker's top-up waits for 2 free places
    first = WorkMessage.decode(bodies[0]).window
    result = engine.replayer.replay(engine.settings.pipeline("requests"), first.start, first.end, mode="queue")
    assert result.queued == 1
    assert [WorkMessage.decode(b).window for b in take(engine)] == [first]  # the operator's is sent now


def test_duplicate_late_and_malformed_messages_are_no_ops(functions, engine, storage_conn, unique):
    functions.timers["mover_tick"].call(TimerRequest(past_due=False))
    body = take(engine)[0]
    window = WorkMessage.decode(body).window
    deliver(functions, body)
    before = engine.ledger.get("requests", window)
    names = blob_names(storage_conn, f"out-{unique}")
    deliver(functions, body)  # duplicate
    deliver(functions, body, count=3)  # late redelivery
    for junk in (b"not json", b'{"v": 1, "kind": "window"}', b'{"v": 2}', b"[]", b"\xff\xfe",
                 WorkMessage("window", "nope", window).encode()):  # fmt: skip
        deliver(functions, junk)  # dropped with a log line, never raised (a raise would retry it 5 times)
    after = engine.ledger.get("requests", window)
    assert (after.status, after.attempts, after.updated_at, after.etag) == (
        "done",
        before.attempts,
        before.updated_at,
        before.etag,
    )
    assert blob_names(storage_conn, f"out-{unique}") == names


def test_poison_message_fails_the_window_visibly_and_it_comes_back_after_a_backoff(
    functions, make_engine, emulator, unique
):
    pipeline = query_pipeline("requests", "requests", emulator, f"out-{unique}", window={"max_per_tick": 1})
    clock = {"now": NOW}
    engine = make_engine([pipeline], now=lambda: clock["now"], MOVER_DISPATCH="queue")
    api.reset_engine(engine)
    functions.timers["mover_tick"].call(TimerRequest(past_due=False))
    body = take(engine)[0]
    window = WorkMessage.decode(body).window
    deliver(functions, body, name="mover_poison")  # e.g. a storage outage outlasted every delivery
    state = engine.ledger.get("requests", window)
    assert state.status == "failed" and state.error.startswith("poison:")
    assert (state.fail_kind, state.attempts) == ("transient", 0)  # not the window's fault: never closes it
    assert state.next_attempt_at == NOW + pipeline_backoff(engine)
    report = engine.status()
    assert any(f["start"] == state.window.start.strftime("%Y-%m-%dT%H:%M:%SZ")
               for f in report["pipelines"][0]["failed"])  # fmt: skip
    clock["now"] = state.next_attempt_at
    functions.timers["mover_tick"].call(TimerRequest(past_due=False))
    again = [m for m in take(engine) if WorkMessage.decode(m).window == window]
    assert len(again) == 1
    deliver(functions, again[0])
    assert engine.ledger.get("requests", window).status == "done"


def pipeline_backoff(engine):
    return engine.settings.pipeline("requests").window.retry_backoff


def test_a_lost_message_is_enqueued_again_after_its_timeout(functions, make_engine, emulator, unique):
    pipeline = query_pipeline("requests", "requests", emulator, f"out-{unique}", window={"max_per_tick": 2})
    clock = {"now": NOW}
    engine = make_engine([pipeline], now=lambda: clock["now"], MOVER_DISPATCH="queue")
    assert engine.tick().queued == 2
    lost = take(engine)  # the messages vanish: nobody will ever deliver them
    assert len(lost) == 2
    assert engine.tick().queued == 0  # still in flight as far as the ledger knows
    clock["now"] = NOW + engine.planner.requeue_after(engine.settings.pipelines[0]) + timedelta(seconds=1)
    assert engine.tick().queued == 2
    again = take(engine)
    assert sorted(WorkMessage.decode(b).window for b in again) == sorted(WorkMessage.decode(b).window for b in lost)
    states = [s for s in engine.ledger.states("requests") if s.status == "queued"]
    assert len(states) == 2 and all(s.queued_at == clock["now"] for s in states)


def test_two_planners_at_once_enqueue_each_window_once(make_engine, emulator, unique):
    pipeline = query_pipeline("requests", "requests", emulator, f"out-{unique}", window={"max_per_tick": 6})
    planners = [make_engine([pipeline], now=NOW, MOVER_DISPATCH="queue", owner=o) for o in "abcd"]
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda e: e.tick(), planners))
    assert sum(r.queued for r in reports) == 6
    bodies = take(planners[0])
    assert len(bodies) == len({WorkMessage.decode(x).window for x in bodies}) == 6


def test_host_semantics_a_failing_message_ends_on_the_poison_queue(functions, engine):
    """funchost's listener (what ``make run`` uses) retries, then moves the message to ``-poison``,
    where the poison function fails its window."""
    functions.timers["mover_tick"].call(TimerRequest(past_due=False))
    body = take(engine)[0]
    window = WorkMessage.decode(body).window
    state, name = engine.settings.state, engine.settings.queue_name
    queue_client(state, name).send_message(body)

    def explode(msg: QueueMessage) -> None:
        raise RuntimeError("worker crashed")

    env = {"AzureWebJobsStorage": state.conn_string or ""}
    loop = queue_loop(QueueFunction("w", name, "AzureWebJobsStorage", explode), env)
    loop.retry_after = 0
    for _ in range(loop.max_dequeue):
        loop.run_once()
    assert loop.run_once() == 0  # gone from the work queue
    poison = queue_loop(QueueFunction("p", f"{name}-poison", "AzureWebJobsStorage",
                                      functions.queues["mover_poison"].call), env)  # fmt: skip
    assert poison.run_once() == 1
    failed = engine.ledger.get("requests", window)
    assert failed.status == "failed" and "poison" in failed.error
