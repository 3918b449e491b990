"""The planner, the worker and replay, each built with only the collaborators it takes (shared.engine.ports):
the real ledger on Azurite, and at the other ports small fakes — a source that yields rows, in-memory sinks,
a queue that keeps what it was sent. No ``App``, no HTTP client, no queue service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.engine.messages import WorkMessage
from shared.engine.planner import Planner
from shared.engine.replay import Replayer
from shared.engine.worker import WindowWorker
from shared.ledger import Ledger
from shared.model import Batch, Column, Window
from shared.outcomes import SourceSummary
from shared.settings import Pipeline, load_settings
from shared.sinks.memory import MemorySink

T0 = datetime(2026, 11, 2, tzinfo=UTC)
H = timedelta(hours=1)


class RowsSource:
    """A source of ``per_window`` rows for any window (the ``Source`` port)."""

    def __init__(self, per_window: int = 3) -> None:
        self.per_window = per_window
        self.reads: list[Window] = []

    def read(self, window: Window) -> Iterator[Batch]:
        self.reads.append(window)
        rows = [[f"{window.key}-{i}", i] for i in range(self.per_window)]
        yield Batch("requests", (Column("id"), Column("n", "long")), rows)

    def summary(self) -> SourceSummary:
        return SourceSummary(source_count=self.per_window)


class NoRejects:
    """The quarantine port when no row is rejected: the worker only clears earlier rejects."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete(self, name: str) -> None:
        self.deleted.append(name)

    def file(self, name: str, blob: str) -> Any:
        raise AssertionError(f"no row was rejected, yet {name} was opened")


class KeptQueue:
    """The planner's queue port: keeps the messages it is sent."""

    def __init__(self) -> None:
        self.sent: list[WorkMessage] = []

    def send_window(self, pipeline: str, window: Window, now: datetime, plan: Any = None) -> None:
        self.sent.append(WorkMessage("window", pipeline, window))

    def send_sweep(self, pipeline: str, window: Window, etag: str, now: datetime | None = None) -> None:
        self.sent.append(WorkMessage("sweep", pipeline, window, etag=etag))


def settings(dispatch: str = "queue") -> Any:
    pipeline = {
        "name": "p",
        "source": {"kind": "app_insights", "app_id": "a", "query": "requests", "endpoint": "http://127.0.0.1:9"},
        "window": {"size": "PT1H", "start": "2026-11-02T00:00:00Z", "delay": "PT5M", "max_per_tick": 2},
        "sink": {"container": "out"},
    }
    return load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MOVER_DISPATCH": dispatch,
                          "MOVER_PIPELINES": json.dumps({"pipelines": [pipeline]})})  # fmt: skip


@pytest.fixture()
def ledger(storage_conn: str, unique: str) -> Ledger:
    return Ledger(TableServiceClient.from_connection_string(storage_conn), f"comp{unique}")


def worker_of(ledger: Ledger, clock: Any, source: RowsSource, sinks: dict[str, list[MemorySink]]) -> WindowWorker:
    def sinks_of(pipeline: Pipeline) -> list[MemorySink]:
        return sinks.setdefault(pipeline.name, [MemorySink(pipeline=pipeline.name, table="requests")])

    rejects = NoRejects()
    return WindowWorker(ledger=ledger, clock=clock, owner="w1", sources=lambda p: source, sinks=sinks_of,  # type: ignore[arg-type]
                        quarantine=lambda: rejects)  # type: ignore[arg-type,return-value]  # fmt: skip


def test_the_planner_plans_and_enqueues_with_a_ledger_a_clock_a_source_factory_and_a_queue(ledger):
    config = settings()
    queue = KeptQueue()
    planner = Planner(settings=config, ledger=ledger, clock=lambda: T0 + 5 * H + timedelta(minutes=6),
                      sources=lambda p: RowsSource(), queue=queue)  # type: ignore[arg-type]  # fmt: skip
    report = planner.dispatch()
    assert report.queued == 2  # max_per_tick
    assert [m.window for m in queue.sent] == [Window(T0, T0 + H), Window(T0 + H, T0 + 2 * H)]
    assert {s.status for s in ledger.states("p")} == {"queued"}


def test_the_worker_moves_a_window_with_a_ledger_a_clock_a_source_and_sinks(ledger):
    sinks: dict[str, list[MemorySink]] = {}
    source = RowsSource(per_window=4)
    worker = worker_of(ledger, lambda: T0 + 2 * H, source, sinks)
    pipeline = settings().pipelines[0]
    result = worker.run_window(pipeline, Window(T0, T0 + H))
    assert (result.outcome, result.rows) == ("done", 4)
    (sink,) = sinks["p"]
    (name,) = result.outputs
    assert [r["id"] for r in sink.rows(name)] == [f"{Window(T0, T0 + H).key}-{i}" for i in range(4)]
    state = ledger.get("p", Window(T0, T0 + H))
    assert state is not None and (state.status, state.rows) == ("done", 4)


def test_replay_reruns_with_the_worker_and_queues_through_the_ledger_and_the_planner(ledger):
    config = settings()
    clock = lambda: T0 + 6 * H  # noqa: E731
    sinks: dict[str, list[MemorySink]] = {}
    source = RowsSource()
    worker = worker_of(ledger, clock, source, sinks)
    queue = KeptQueue()
    planner = Planner(settings=config, ledger=ledger, clock=clock, sources=lambda p: source, queue=queue)  # type: ignore[arg-type]
    replayer = Replayer(settings=config, ledger=ledger, clock=clock, worker=worker, planner=planner)
    pipeline = config.pipelines[0]
    inline = replayer.replay(pipeline, T0, T0 + 2 * H, mode="inline")
    assert [r.outcome for r in inline.results] == ["done", "done"] and source.reads == [
        Window(T0, T0 + H), Window(T0 + H, T0 + 2 * H)]  # fmt: skip
    queued = replayer.replay(pipeline, T0 + 2 * H, T0 + 5 * H, mode="queue")
    assert queued.queued == 3 and len(queue.sent) == 2  # marked in the ledger; the planner sends up to its cap
    assert {s.status for s in ledger.states("p", since=T0 + 2 * H)} == {"queued", "pending"}
