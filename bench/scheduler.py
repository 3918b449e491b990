"""Scheduler cost: one tick with nothing due over a large ledger.

The ledger is filled directly with the Tables SDK (transactions of 100 entities, one
partition each): every window ``done`` with realistic outputs, the frontier at the end.
The engine then ticks at a time where no window is due; a request hook on the ledger's
own ``TableServiceClient`` counts every HTTP request it makes (retries included). The
invariant: one query per pipeline, not one per window.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.data.tables import TableServiceClient

from shared.ledger import Ledger
from shared.model import window_key
from shared.settings import Settings

__all__ = ["scheduler"]

HOUR = timedelta(hours=1)
END = datetime(2026, 11, 2, tzinfo=UTC)  # frontier: every window before it is done


class RequestCounter:
    """``raw_request_hook`` for an azure-core client: counts requests by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.kinds: Counter[str] = Counter()

    def __call__(self, request: Any) -> None:
        http = request.http_request
        url = str(http.url)
        if http.method == "GET" and "$filter" in url:
            kind = "query"
        elif http.method == "GET":
            kind = "get"
        elif http.method == "POST" and "/Tables" in url:
            kind = "create_table"
        else:
            kind = http.method.lower()
        with self._lock:
            self.kinds[kind] += 1

    def take(self) -> dict[str, int]:
        with self._lock:
            out = dict(self.kinds)
            self.kinds.clear()
        return out


def _done_entities(pipeline: str, start: datetime, count: int) -> Iterator[dict[str, Any]]:
    """Entities as ``Ledger.complete`` leaves them (JSONL data + manifest outputs)."""
    for i in range(count):
        ws = start + i * HOUR
        key = window_key(ws)
        prefix = f"{pipeline}/y={ws:%Y}/m={ws:%m}/d={ws:%d}/h={ws:%H}/"
        outputs = [
            {"sink": 0, "kind": "data", "name": f"{prefix}{key}.jsonl.gz", "rows": 1000, "bytes": 150_000,
             "sha256": "a" * 64},
            {"sink": 0, "kind": "manifest", "name": f"{prefix}_{key}.manifest.json", "rows": 1000, "bytes": 900,
             "sha256": "b" * 64},
        ]  # fmt: skip
        yield {
            "PartitionKey": pipeline, "RowKey": key, "WindowStart": ws, "WindowEnd": ws + HOUR, "Status": "done",
            "Attempts": 1, "Rows": 1000, "Bytes": 150_000, "Outputs": orjson.dumps(outputs).decode(),
            "LastError": "", "LeaseOwner": "", "Quarantined": 0, "SourceCount": 1000,
            "Extra": '{"planned":1000,"queries":1,"splits":0}', "CreatedAt": ws + HOUR, "StartedAt": ws + HOUR,
            "FinishedAt": ws + HOUR, "UpdatedAt": ws + HOUR,
        }  # fmt: skip


def _fill(conn: str, table: str, pipelines: list[str], windows: int, start: datetime) -> float:
    """Insert ``windows`` done entities per pipeline in transactions of 100; returns seconds."""
    service = TableServiceClient.from_connection_string(conn)
    service.create_table_if_not_exists(table)
    client = service.get_table_client(table)
    jobs = [(p, i) for p in pipelines for i in range(0, windows, 100)]

    def submit(job: tuple[str, int]) -> None:
        name, first = job
        batch = _done_entities(name, start + first * HOUR, min(100, windows - first))
        client.submit_transaction([("create", e) for e in batch])

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(submit, jobs))
    ledger = Ledger(service, table)
    for name in pipelines:
        ledger.advance_frontier(name, start + windows * HOUR, start + windows * HOUR)
    return time.perf_counter() - began


def scheduler(spec: dict[str, Any]) -> dict[str, Any]:
    """Fill the ledger with ``pipelines`` × ``windows`` done windows, then time ticks with nothing due."""
    from shared.runner import Engine

    n, windows = int(spec["pipelines"]), int(spec["windows"])
    start = END - windows * HOUR
    names = [f"p{i:03d}" for i in range(n)]
    fill_s = _fill(spec["storage"], spec["ledger_table"], names, windows, start)
    source = {"kind": "app_insights", "app_id": spec["app_id"], "endpoint": spec["emulator"], "query": "requests",
              "auth": {"kind": "token", "setting": "BENCH_TOKEN"}}  # fmt: skip
    pipelines = [
        {"name": name, "source": source, "window": {"size": "PT1H", "start": start.isoformat(), "delay": "PT5M"},
         "sink": {"container": "bench-sched"}}
        for name in names
    ]  # fmt: skip
    env = {
        "AzureWebJobsStorage": spec["storage"], "BENCH_TOKEN": spec["token"],
        "MOVER_PIPELINES": json.dumps({"pipelines": pipelines}), "MOVER_LEDGER_TABLE": spec["ledger_table"],
    }  # fmt: skip
    settings = Settings.from_env(env)
    engine = Engine(settings, clock=lambda: END + timedelta(minutes=10))  # latest due window ends at END
    counter = RequestCounter()
    service = TableServiceClient.from_connection_string(spec["storage"], raw_request_hook=counter)
    engine.ledger = Ledger(service, settings.ledger_table)
    ticks: list[dict[str, Any]] = []
    try:
        for _ in range(4):  # the first tick is cold (creates the table client, connects); best of the rest
            began = time.perf_counter()
            report = engine.tick()
            seconds = time.perf_counter() - began
            if report.results or report.deferred or report.errors:
                raise RuntimeError(f"a tick with nothing due did work: {report}")
            ticks.append({"seconds": seconds, "requests": counter.take()})
    finally:
        engine.close()
    return {
        "pipelines": n, "windows_per_pipeline": windows, "entities": n * windows, "fill_seconds": fill_s,
        "cold": ticks[0], "warm": min(ticks[1:], key=lambda t: t["seconds"]),
        "warm_seconds": [round(t["seconds"], 3) for t in ticks[1:]],
    }  # fmt: skip
