"""Limits, throttling, failures, leases, late data and the time budget — against the emulator and Azurite."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.model import Window
from tests.conftest import T0, H, blob_names, expected_rows, query_pipeline, read_jsonl_gz

TABLE = "exceptions"  # a table no other test reads, so rows added here disturb nothing
W0 = Window(T0, T0 + H)


@pytest.fixture()
def emu(emulator) -> Iterator:
    """The session emulator with its limits and faults restored after each test."""
    rows, size = emulator.config.max_rows, emulator.config.max_bytes
    yield emulator
    emulator.config.max_rows, emulator.config.max_bytes = rows, size
    emulator.faults.clear()


def outputs(conn, container):
    rows = []
    for name in blob_names(conn, container):
        if name.endswith(".jsonl.gz"):
            rows.extend(read_jsonl_gz(conn, container, name))
    return rows


def test_truncated_results_are_split_never_saved(emu, make_engine, storage_conn, unique):
    emu.config.max_rows = 25  # every window holds more: each full-window answer is a PartialError
    container = f"out-{unique}"
    pipeline = query_pipeline("req", "requests", emu, container, source={"max_rows_per_query": 500_000})
    engine = make_engine([pipeline], now=T0 + 2 * H + timedelta(minutes=5))
    before = emu.stats.partials
    report = engine.tick()
    assert [r.outcome for r in report.results] == ["done", "done"]
    assert emu.stats.partials - before >= 2
    for i in range(2):
        window = Window(T0 + i * H, T0 + (i + 1) * H)
        state = engine.ledger.get("req", window)
        assert state.extra["splits"] >= 1
        expected = expected_rows(emu, "requests", window.start, window.end)
        got = read_jsonl_gz(storage_conn, container, state.outputs[0]["name"])
        assert sorted(r["itemId"] for r in got) == sorted(r["itemId"] for r in expected)


def test_counted_sub_windows_keep_responses_small(emu, make_engine, storage_conn, unique):
    container = f"out-{unique}"
    pipeline = query_pipeline("req", "requests", emu, container, source={"max_rows_per_query": 7})
    engine = make_engine([pipeline], now=T0 + H + timedelta(minutes=5))
    before = emu.stats.rows_returned, emu.stats.queries
    assert [r.outcome for r in engine.tick().results] == ["done"]
    state = engine.ledger.get("req", W0)
    expected = expected_rows(emu, "requests", W0.start, W0.end)
    assert state.rows == len(expected) and state.extra["queries"] >= len(expected) // 7
    assert sorted(r["itemId"] for r in outputs(storage_conn, container)) == sorted(r["itemId"] for r in expected)
    assert emu.stats.queries - before[1] == state.extra["queries"]


def test_throttling_is_retried_honouring_retry_after(emu, make_engine, storage_conn, unique):
    container = f"out-{unique}"
    slept: list[float] = []
    engine = make_engine([query_pipeline("req", "requests", emu, container)], now=T0 + H + timedelta(minutes=5))
    engine._sleep = slept.append  # record the backoff instead of waiting
    emu.faults.push(status=429, count=2, retry_after=7)
    emu.faults.push(status=503, count=1)
    before = emu.stats.throttled
    assert [r.outcome for r in engine.tick().results] == ["done"]
    assert emu.stats.throttled - before == 2
    assert slept[:2] == [7.0, 7.0] and len(slept) == 3  # Retry-After honoured, then jittered backoff
    assert len(outputs(storage_conn, container)) == len(expected_rows(emu, "requests", W0.start, W0.end))


def test_failed_window_is_visible_then_retried_on_a_later_tick(emu, make_engine, storage_conn, unique):
    container = f"out-{unique}"
    now = [T0 + H + timedelta(minutes=5)]
    pipeline = query_pipeline(
        "req", "requests", emu, container, source={"max_retries": 1}, window={"retry_backoff": "PT10M"}
    )
    engine = make_engine([pipeline], now=lambda: now[0])
    emu.faults.push(status=503, count=2)
    (result,) = engine.tick().results
    assert result.outcome == "failed" and "503" in result.error
    state = engine.ledger.get("req", W0)
    assert state.status == "failed" and "retriable: query API 503" in state.error
    assert (state.fail_kind, state.attempts) == ("transient", 0)  # a service fault is not the window's: no attempt used
    assert state.next_attempt_at == now[0] + timedelta(minutes=10)
    assert engine.tick().results == []  # backing off
    assert not _exists(storage_conn, container) or blob_names(storage_conn, container) == []  # nothing written
    now[0] += timedelta(minutes=11)
    (again,) = engine.tick().results
    assert again.outcome == "done" and again.attempt == 1
    assert engine.ledger.get("req", W0).error == ""


def test_transient_failures_never_close_a_window_and_back_off_longer_each_time(emu, make_engine, unique):
    now = [T0 + H + timedelta(minutes=5)]
    pipeline = query_pipeline(
        "req", "requests", emu, f"out-{unique}", source={"max_retries": 0},
        window={"max_attempts": 2, "retry_backoff": "PT1M"},
    )  # fmt: skip
    engine = make_engine([pipeline], now=lambda: now[0])
    emu.faults.push(status=503, count=5)
    waits = []
    for _ in range(5):  # more failures than max_attempts: a service outage must not close the window
        assert [r.outcome for r in engine.tick().results] == ["failed"]
        state = engine.ledger.get("req", W0)
        assert (state.status, state.fail_kind, state.attempts) == ("failed", "transient", 0)
        waits.append(state.next_attempt_at - now[0])
        now[0] = state.next_attempt_at
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16)]
    assert [r.outcome for r in engine.tick().results] == ["done"]


def _exists(conn, container):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(conn).get_container_client(container).exists()


def test_window_stays_failed_after_max_attempts_until_replayed(emu, make_engine, unique):
    now = [T0 + H + timedelta(minutes=5)]
    pipeline = query_pipeline(
        "req",
        "requests",
        emu,
        f"out-{unique}",
        source={"max_retries": 0},
        window={"max_attempts": 2, "retry_backoff": "PT1M"},
    )
    engine = make_engine([pipeline], now=lambda: now[0])
    emu.faults.push("overflow", count=2)  # a partial error that is not truncation: the window's own failure
    for _ in range(2):
        assert [r.outcome for r in engine.tick().results] == ["failed"]
        now[0] += timedelta(minutes=5)
    assert engine.tick().results == []
    state = engine.ledger.get("req", W0)
    assert (state.status, state.attempts, state.fail_kind) == ("failed", 2, "window")
    report = engine.status()
    assert report["pipelines"][0]["counts"]["failed"] == 1
    assert report["pipelines"][0]["failed"][0]["error"].startswith("fatal: query API partial error")
    result = engine.replayer.replay(engine.settings.pipeline("req"), T0, T0 + H)
    assert [r.outcome for r in result.results] == ["done"]


def test_auth_failure_is_fatal_with_a_hint(emu, make_engine, unique):
    token_auth = {"auth": {"kind": "token", "setting": "TEST_TOKEN"}}  # a wrong token, whatever MOVER_TEST_AUTH says
    pipeline = query_pipeline("req", "requests", emu, f"out-{unique}", source=token_auth)
    engine = make_engine([pipeline], now=T0 + H + timedelta(minutes=5), TEST_TOKEN="wrong-token")
    (result,) = engine.tick().results
    assert result.outcome == "failed"
    assert "fatal: query API 403" in result.error and "Reader role" in result.error
    assert "wrong-token" not in result.error


def test_expired_lease_of_a_dead_runner_is_reclaimed(emu, make_engine, unique):
    now = T0 + H + timedelta(minutes=30)
    engine = make_engine([query_pipeline("req", "requests", emu, f"out-{unique}")], now=now)
    dead = engine.ledger.claim(
        "req", W0, owner="dead", now=now - timedelta(minutes=20), lease=timedelta(minutes=10), max_attempts=5
    )
    assert dead is not None
    (result,) = engine.tick().results
    assert result.outcome == "done" and result.attempt == 1  # taking over a dead runner's lease is no failure
    assert engine.ledger.get("req", W0).takeovers == 1
    state = engine.ledger.get("req", W0)
    assert state.status == "done" and state.lease_owner == ""


def test_live_lease_is_respected(emu, make_engine, unique):
    now = T0 + H + timedelta(minutes=30)
    engine = make_engine([query_pipeline("req", "requests", emu, f"out-{unique}")], now=now)
    engine.ledger.claim(
        "req", W0, owner="alive", now=now - timedelta(minutes=1), lease=timedelta(minutes=10), max_attempts=5
    )
    report = engine.tick()
    assert [r.outcome for r in report.results] == []  # not eligible while leased
    assert engine.ledger.get("req", W0).lease_owner == "alive"


def test_time_budget_defers_windows_to_the_next_tick(emu, make_engine, unique):
    engine = make_engine(
        [query_pipeline("req", "requests", emu, f"out-{unique}")], now=T0 + 4 * H + timedelta(minutes=5)
    )
    report = engine.tick(budget=timedelta(0))
    assert report.results == [] and report.deferred == 4
    assert [s.status for s in engine.ledger.states("req")] == ["pending"] * 4  # recorded, not lost
    report = engine.tick()
    assert [r.window.start for r in report.results] == [T0 + i * H for i in range(4)]


def test_late_rows_replace_the_window_output_on_resweep(emu, make_engine, storage_conn, unique):
    base = datetime(2026, 11, 10, tzinfo=UTC)  # a day no other test touches
    emu.generate(TABLE, base, base + 3 * H, count=60, seed=77)
    container = f"out-{unique}"
    pipeline = query_pipeline(
        "exc", TABLE, emu, container, window={"start": "2026-11-10T00:00:00Z", "resweep_lookback": "PT24H"}
    )
    engine = make_engine([pipeline], now=base + 3 * H + timedelta(minutes=5))
    assert [r.outcome for r in engine.tick().results] == ["done"] * 3
    assert engine.tick().results == []  # re-sweep: counts unchanged, nothing moves
    late_window = Window(base + H, base + 2 * H)
    late = [
        {"timestamp": base + H + timedelta(minutes=m), "problemId": f"late-{m}", "itemId": f"late-{unique}-{m}"}
        for m in (1, 2, 3)
    ]
    emu.add_rows(TABLE, late, ingested_at=datetime.now(UTC))
    report = engine.tick()
    assert [(r.window, r.outcome) for r in report.results] == [(late_window, "done")]
    state = engine.ledger.get("exc", late_window)
    got = read_jsonl_gz(storage_conn, container, state.outputs[0]["name"])
    expected = expected_rows(emu, TABLE, late_window.start, late_window.end)
    assert state.rows == len(got) == len(expected)
    assert Counter(r["itemId"] for r in got) == Counter(r["itemId"] for r in expected)
    assert {f"late-{unique}-{m}" for m in (1, 2, 3)} <= {r["itemId"] for r in got}
    assert engine.tick().results == []  # settled


def data_blobs(conn, container):
    return [n for n in blob_names(conn, container) if n.endswith(".jsonl.gz")]


def pauses(*answers):
    """A pause predicate answering from a script (then False)."""
    script = list(answers)
    return lambda: script.pop(0) if script else False


def test_long_window_checkpoints_and_resumes_without_duplicates(emu, make_engine, storage_conn, unique):
    container = f"out-{unique}"
    pipeline = query_pipeline("req", "requests", emu, container, source={"max_rows_per_query": 8})
    engine = make_engine([pipeline], now=T0 + H + timedelta(minutes=5))
    p = engine.settings.pipeline("req")
    first = engine.worker.run_window(p, W0, pause=pauses(True))
    assert first.outcome == "paused" and first.rows > 0
    state = engine.ledger.get("req", W0)
    checkpoint = state.extra["checkpoint"]
    assert state.status == "pending" and state.attempts == 0 and checkpoint["next"] == 1 and checkpoint["chunks"] == 1
    assert len(checkpoint["steps"]) >= 4
    second = engine.worker.run_window(p, W0, pause=pauses(False, True))  # resumes at step 1, pauses after step 2
    assert second.outcome == "paused"
    assert engine.ledger.get("req", W0).extra["checkpoint"]["next"] == 3
    (last,) = engine.tick().results  # the timer resumes and finishes it
    assert last.outcome == "done"
    names = data_blobs(storage_conn, container)
    assert [n.rsplit("/", 1)[1] for n in names] == [
        "20261102T000000Z-c0001.jsonl.gz",
        "20261102T000000Z-c0002.jsonl.gz",
        "20261102T000000Z.jsonl.gz",
    ]
    rows = outputs(storage_conn, container)
    expected = expected_rows(emu, "requests", W0.start, W0.end)
    assert Counter(r["itemId"] for r in rows) == Counter(r["itemId"] for r in expected)
    state = engine.ledger.get("req", W0)
    assert state.status == "done" and state.rows == len(expected) == state.source_count
    assert "checkpoint" not in state.extra
    assert sorted(o["name"] for o in state.outputs if o["kind"] == "data") == names
    # A replay starts over in one file and removes the chunks.
    (again,) = engine.replayer.replay(p, T0, T0 + H).results
    assert again.outcome == "done"
    assert [n.rsplit("/", 1)[1] for n in data_blobs(storage_conn, container)] == ["20261102T000000Z.jsonl.gz"]
    assert Counter(r["itemId"] for r in outputs(storage_conn, container)) == Counter(r["itemId"] for r in expected)


def test_chunk_committed_but_unrecorded_is_not_duplicated(emu, make_engine, storage_conn, unique):
    container = f"out-{unique}"
    pipeline = query_pipeline("req", "requests", emu, container, source={"max_rows_per_query": 8})
    engine = make_engine([pipeline], now=T0 + H + timedelta(minutes=5))
    p = engine.settings.pipeline("req")
    assert engine.worker.run_window(p, W0, pause=pauses(True)).outcome == "paused"
    real = engine.ledger.checkpoint

    def die(*args, **kwargs):  # the runner dies right after committing chunk c0001
        raise RuntimeError("killed")

    engine.ledger.checkpoint = die
    crashed = engine.worker.run_window(p, W0, pause=pauses(True))
    assert crashed.outcome == "failed"
    engine.ledger.checkpoint = real
    assert any(n.endswith("-c0001.jsonl.gz") for n in data_blobs(storage_conn, container))  # orphan on disk
    (result,) = engine.replayer.replay(p, T0, T0 + H).results  # a fresh run must not leave it behind
    assert result.outcome == "done"
    assert [n.rsplit("/", 1)[1] for n in data_blobs(storage_conn, container)] == ["20261102T000000Z.jsonl.gz"]
    expected = expected_rows(emu, "requests", W0.start, W0.end)
    assert Counter(r["itemId"] for r in outputs(storage_conn, container)) == Counter(r["itemId"] for r in expected)
