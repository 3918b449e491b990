"""Windows planned ahead: the planner counts the sub-windows of every window it queues in one query,
the message carries them, and the worker starts reading at once — same rows, same bytes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.engine.messages import BadMessage, WorkMessage
from shared.model import Window
from tests.conftest import T0, H, blob_names, query_pipeline, read_jsonl_gz, take


def decoded(engine) -> list[WorkMessage]:
    return [WorkMessage.decode(body) for body in take(engine)]


def test_the_planner_counts_ahead_and_the_worker_reads_without_counting(emulator, make_engine, storage_conn, unique):
    over = {"source": {"max_rows_per_query": 12}, "window": {"max_per_tick": 3}}
    queued = make_engine([query_pipeline("ahead", "requests", emulator, f"a-{unique}", **over)],
                         now=T0 + 3 * H + timedelta(minutes=10), MOVER_DISPATCH="queue")  # fmt: skip
    before = emulator.stats.queries
    assert queued.tick().queued == 3
    assert emulator.stats.queries - before == 1  # one count for the three windows
    messages = decoded(queued)
    assert [m.window for m in messages] == [Window(T0 + i * H, T0 + (i + 1) * H) for i in range(3)]
    for message in messages:
        plan = message.plan
        assert plan is not None and plan.fits(message.window) and len(plan.steps) >= 3  # 40 rows, 12 per query
        before = emulator.stats.queries
        assert queued.handle(message.encode()) == "done"
        assert emulator.stats.queries - before == len(plan.steps)  # row queries only: no count first

    inline = make_engine([query_pipeline("self", "requests", emulator, f"s-{unique}", **over)],
                         now=T0 + 3 * H + timedelta(minutes=10), MOVER_LEDGER_TABLE=f"other{unique}")  # fmt: skip
    assert [r.outcome for r in inline.tick().results] == ["done"] * 3  # planned by each window itself
    for i in range(3):
        window = Window(T0 + i * H, T0 + (i + 1) * H)
        a, b = queued.ledger.get("ahead", window), inline.ledger.get("self", window)
        assert a.rows == b.rows > 0
        sha = {o["sha256"] for o in a.outputs if o["kind"] == "data"}
        assert sha == {o["sha256"] for o in b.outputs if o["kind"] == "data"}  # the same bytes either way
    rows = [r["itemId"] for n in blob_names(storage_conn, f"a-{unique}") if n.endswith(".jsonl.gz")
            for r in read_jsonl_gz(storage_conn, f"a-{unique}", n)]  # fmt: skip
    assert len(rows) == len(set(rows)) == sum(queued.ledger.get("ahead", m.window).rows for m in messages)


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        ({"cuts": [10, 5], "rows": 3}, "increasing cut points"),
        ({"cuts": [0], "rows": 3}, "increasing cut points"),
        ({"cuts": [3_600_000_000], "rows": 3}, "increasing cut points"),
        ({"cuts": ["10"], "rows": 3}, "increasing cut points"),
        ({"cuts": [], "rows": -1}, "increasing cut points"),
        ([1, 2], "must be an object"),
    ],
    ids=["decreasing", "at-start", "at-end", "text", "negative-rows", "not-object"],
)
def test_a_message_with_a_plan_that_does_not_tile_its_window_is_refused(plan, reason):
    import orjson

    body = {"v": 1, "kind": "window", "pipeline": "p", "start": "2026-11-02T00:00:00Z",
            "end": "2026-11-02T01:00:00Z", "at": "", "plan": plan}  # fmt: skip
    with pytest.raises(BadMessage, match=reason):
        WorkMessage.decode(orjson.dumps(body))


def test_a_plan_survives_the_round_trip_to_the_microsecond():
    window = Window(T0, T0 + H)
    message = WorkMessage("window", "p", window, cuts=(1, 1_799_999_999, 3_599_999_999), planned=7)
    plan = WorkMessage.decode(message.encode()).plan
    assert plan is not None and plan.planned == 7 and plan.fits(window)
    assert [s.end - T0 for s in plan.steps[:-1]] == [timedelta(microseconds=c) for c in message.cuts]
