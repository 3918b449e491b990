"""The per-process byte budget: its default from the instance size, the setting, and read-ahead within it."""

from __future__ import annotations

import threading

import orjson
import pyarrow as pa
import pytest

from shared.engine.ahead import Ahead
from shared.errors import ConfigError
from shared.model import Batch, Column
from shared.runtime.membudget import ByteBudget
from shared.settings import load_settings
from shared.settings.memory import default_budget_mb

MB = 2**20


def test_reservations_wait_for_room_but_the_first_always_fits() -> None:
    budget = ByteBudget(10 * MB)
    assert budget.try_reserve(20 * MB)  # nothing held: even an oversized step is read
    assert not budget.try_reserve(1)
    budget.release(20 * MB)
    assert budget.try_reserve(6 * MB) and not budget.try_reserve(6 * MB) and budget.try_reserve(4 * MB)
    budget.force(5 * MB)  # the step a writer needs: never refused
    budget.adjust(-5 * MB)
    assert budget.used == 10 * MB and budget.peak == 20 * MB


@pytest.mark.parametrize(
    ("instance_mb", "budget_mb"), [("512", 16), ("2048", 32), ("4096", 64), ("16384", 64)], ids=lambda v: str(v)
)
def test_default_is_a_64th_of_the_instance(instance_mb: str, budget_mb: int) -> None:
    assert default_budget_mb({"MOVER_INSTANCE_MEMORY_MB": instance_mb}) == budget_mb


def _env(**extra: str) -> dict[str, str]:
    pipeline = {"name": "p", "window": {"start": "2026-11-02T00:00:00Z"}, "sink": {"container": "out"},
                "source": {"kind": "app_insights", "app_id": "a", "query": "requests"}}  # fmt: skip
    pipelines = orjson.dumps({"pipelines": [pipeline]}).decode()
    return {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MOVER_PIPELINES": pipelines} | extra


def test_setting_and_its_errors() -> None:
    assert load_settings(_env(MOVER_MEMORY_BUDGET_MB="96")).memory_budget_mb == 96
    assert load_settings(_env(MOVER_INSTANCE_MEMORY_MB="2048")).memory_budget_mb == 32
    with pytest.raises(ConfigError, match="MOVER_MEMORY_BUDGET_MB"):
        load_settings(_env(MOVER_MEMORY_BUDGET_MB="lots"))


def test_read_ahead_stops_at_the_budget_and_gives_it_back() -> None:
    """Steps of 4 MB each under an 10 MB budget: at most two are held besides the one being written."""
    table = pa.table({"n": pa.array([0] * (MB // 2), pa.int64())})  # 4 MB
    started: list[int] = []
    lock = threading.Lock()

    def step(index: int):
        def run():
            with lock:
                started.append(index)
            yield Batch("t", (Column("n", "long"),), arrow=table, to_rows=lambda t, c: [])

        return run

    budget = ByteBudget(10 * MB)
    with Ahead([step(i) for i in range(8)], parallel=5, budget=budget) as ahead:
        for index in range(8):
            for _batch in ahead.read(index):
                assert budget.used <= 14 * MB  # the step being written may pass the limit, nothing else
        assert budget.used == 0
    assert sorted(started) == list(range(8))
