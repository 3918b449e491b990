"""The query source through the shared budget, end to end: engines in threads, Azurite, an emulator capped at 5."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from azure.data.tables import TableServiceClient

from devtools.ai_emulator import Emulator, EmulatorConfig
from shared.app import App
from shared.budget.registry import budget_for, key_of, limits_for
from shared.budget.slots import Budget, BudgetTimeout
from shared.budget.state import Limits
from shared.model import Window
from shared.runtime.auth import HeaderProvider
from shared.settings import QuerySourceConfig
from shared.sources.query_api import QueryApiSource
from tests.conftest import APP_ID, T0, TOKEN, H, expected_rows, query_pipeline, read_jsonl_gz

TABLES = ("requests", "dependencies", "traces")
HOURS = 4


@pytest.fixture(scope="module")
def capped() -> Iterator[Emulator]:
    """An emulator of its own (limits and faults are changed here): at most 5 queries in flight."""
    emu = Emulator(EmulatorConfig(app_id=APP_ID, token=TOKEN, max_concurrent=5))
    emu.start()
    for seed, table in enumerate(TABLES, start=1):
        emu.generate(table, T0, T0 + HOURS * H, count=HOURS * 40, seed=seed)
    yield emu
    emu.stop()


def run_engines(make_engine, capped: Emulator, container: str, **source) -> list[App]:
    """Three engines (as three workers would be), four windows at a time each, ticking at once."""
    pipelines = [
        query_pipeline(t, t, capped, container, source={"max_rows_per_query": 12, "max_retries": 6, **source})
        for t in TABLES
    ]
    now = T0 + HOURS * H + timedelta(minutes=10)
    engines = [make_engine(pipelines, now=now, MOVER_MAX_CONCURRENCY="4") for _ in range(3)]
    capped.faults.clear()
    capped.faults.push("delay", count=1_000_000, delay=0.25)  # each query takes a while: they pile up
    capped.reset_stats()
    threads = [threading.Thread(target=e.tick) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    capped.faults.clear()
    return engines


def test_engines_stay_under_the_services_concurrency_with_exact_rows(make_engine, capped, storage_conn, unique):
    container = f"out-{unique}"
    engines = run_engines(make_engine, capped, container, max_concurrent_queries=5)
    stats = capped.stats
    assert stats.throttled == 0 and stats.throttled_concurrency == 0  # the app never caused a 429
    assert stats.peak_concurrency == 5  # the budget's cap was reached: the queries did pile up
    assert stats.queries >= 3 * HOURS * 4  # a count and several sub-queries per window
    ledger = engines[0].ledger
    for table in TABLES:
        for i in range(HOURS):
            window = Window(T0 + i * H, T0 + (i + 1) * H)
            state = ledger.get(table, window)
            assert state.status == "done"
            assert state.extra["throttled"] == 0
            name = f"{table}/y=2026/m=11/d=02/h={i:02d}/20261102T{i:02d}0000Z.jsonl.gz"
            got = read_jsonl_gz(storage_conn, container, name)
            expected = expected_rows(capped, table, window.start, window.end)
            assert len(got) == len(expected) > 0
            assert {r["itemId"]: r for r in got} == {r["itemId"]: r for r in expected}
    budget = budget_for(engines[0].settings.pipelines[0].source, engines[0].settings)  # type: ignore[arg-type]
    counts = budget.counts()
    print(
        f"\nBUDGET {counts.acquired} queries by 3 engines x 4 windows on 5 slots: "
        f"{counts.storage_ops / counts.acquired:.2f} storage ops per query, waited {counts.waited_s:.1f}s in total,"
        f" {counts.conflicts} lost races, peak at the service {stats.peak_concurrency}"
    )


def test_a_budget_above_the_services_cap_meets_429s_and_counts_them(make_engine, capped, unique):
    """The control: the same load with 10 slots overruns the service's 5, which answers 429."""
    engines = run_engines(make_engine, capped, f"out-{unique}", max_concurrent_queries=10)
    assert capped.stats.throttled_concurrency > 0
    states = [s for t in TABLES for s in engines[0].ledger.states(t) if s.status == "done"]
    assert sum(int(s.extra.get("throttled", 0)) for s in states) > 0  # the app saw and counted them


def test_pipelines_sharing_an_identity_use_the_smallest_limits(make_engine, capped, unique):
    pipelines = [
        query_pipeline("a", "requests", capped, f"out-{unique}", source={"max_concurrent_queries": 4}),
        query_pipeline("b", "traces", capped, f"out-{unique}", source={"max_requests_per_30s": 50}),
        query_pipeline(
            "c", "traces", capped, f"out-{unique}", source={"auth": {"kind": "managed_identity", "client_id": "x"}}
        ),
    ]
    settings = make_engine(pipelines).settings
    a, b, c = (p.source for p in settings.pipelines)
    assert key_of(a) == key_of(b) != key_of(c)  # type: ignore[arg-type]
    assert limits_for(a, settings) == limits_for(b, settings) == Limits(4, 50)  # type: ignore[arg-type]
    assert limits_for(c, settings) == Limits(5, 180)  # type: ignore[arg-type]
    assert budget_for(a, settings) is budget_for(b, settings)  # type: ignore[arg-type]
    assert TOKEN not in key_of(a) and "TEST_TOKEN" not in key_of(a)  # type: ignore[arg-type]


def test_no_slot_within_max_wait_gives_the_window_back_without_retrying(make_engine, capped, storage_conn, unique):
    """A full budget ends in one BudgetTimeout (the window retries later), not max_retries more waits."""
    config = make_engine([query_pipeline("r", "requests", capped, f"c-{unique}")]).settings.pipelines[0].source
    assert isinstance(config, QuerySourceConfig)
    table = TableServiceClient.from_connection_string(storage_conn).get_table_client(f"budget{unique}")
    limits = Limits(max_concurrent=1, max_requests=100)
    holder = Budget(table, key_of(config), limits)
    held = holder.acquire()
    budget = Budget(table, key_of(config), limits, max_wait=0.5, poll=(0.02, 0.1))
    with httpx.Client() as http:
        source = QueryApiSource(config, http, HeaderProvider(config.auth), budget=budget)
        before = capped.stats.requests
        with pytest.raises(BudgetTimeout, match="no slot within"):
            source.count(Window(T0, T0 + H))
        assert capped.stats.requests == before  # nothing reached the service
        assert source.stats.retries == 0 and budget.counts().timeouts == 1
        holder.release(held)
        assert source.count(Window(T0, T0 + H)) == len(expected_rows(capped, "requests", T0, T0 + H))
