"""Planning cost over a large ledger: a steady-state plan and a backfill-phase plan.

The ledger is filled directly with the Tables SDK (transactions of 100 entities, one
partition each): every window ``done`` with realistic outputs, except the last
``open`` windows of each pipeline, which are ``queued`` (a backfill in progress: the
pipeline has ``max_per_tick`` windows in flight, so nothing more may be queued); the
frontier sits at the end. Then, with a request hook on the ledger's own
``TableServiceClient`` counting every HTTP request (retries included):

* **backfill phase** — the clock a month ahead (thousands of windows due), every
  pipeline planned: the open mark stops at the first queued window, so a plan reads the
  meta row and the open windows, and records nothing (the cap is full);
* **steady state** — the queued windows completed, the clock just past the newest
  window's due time: a plan reads the meta row and an empty range.

Either way the invariant is a constant number of requests per pipeline, whatever the
history holds (``tick`` is the same measurement through ``App.tick``, as before).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient, UpdateMode

from shared.durations import parse_duration
from shared.ledger import Ledger
from shared.model import Window, window_key
from shared.settings import load_settings

__all__ = ["scheduler"]

HOUR = timedelta(hours=1)
END = datetime(2026, 11, 2, tzinfo=UTC)  # frontier: every window before it is recorded
DELAY = timedelta(minutes=5)
BACKFILL_NOW = END + timedelta(days=30)  # thousands of windows due; the queued ones fill the cap
MAX_ATTEMPTS = 2  # the status point closes failed windows with their second attempt


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


def _entities(pipeline: str, start: datetime, size: timedelta, count: int, status: str) -> Iterator[dict[str, Any]]:
    """Entities as ``Ledger.complete`` leaves them (JSONL data + manifest outputs), or queued ones."""
    for i in range(count):
        ws = start + i * size
        key = window_key(ws)
        if status == "queued":
            yield {
                "PartitionKey": pipeline, "RowKey": key, "WindowStart": ws, "WindowEnd": ws + size,
                "Status": "queued", "Attempts": 0, "QueuedAt": BACKFILL_NOW - timedelta(minutes=1), "CreatedAt": END,
                "UpdatedAt": END,
            }  # fmt: skip
            continue
        prefix = f"{pipeline}/y={ws:%Y}/m={ws:%m}/d={ws:%d}/h={ws:%H}/"
        outputs = [
            {"sink": 0, "kind": "data", "name": f"{prefix}{key}.jsonl.gz", "rows": 1000, "bytes": 150_000,
             "sha256": "a" * 64},
            {"sink": 0, "kind": "manifest", "name": f"{prefix}_{key}.manifest.json", "rows": 1000, "bytes": 900,
             "sha256": "b" * 64},
        ]  # fmt: skip
        yield {
            "PartitionKey": pipeline, "RowKey": key, "WindowStart": ws, "WindowEnd": ws + size, "Status": "done",
            "Attempts": 1, "Rows": 1000, "Bytes": 150_000, "Outputs": orjson.dumps(outputs).decode(),
            "LastError": "", "LeaseOwner": "", "Quarantined": 0, "SourceCount": 1000,
            "Extra": '{"planned":1000,"queries":1,"splits":0}', "CreatedAt": ws + size, "StartedAt": ws + size,
            "FinishedAt": ws + size, "UpdatedAt": ws + size,
        }  # fmt: skip


def _fill(
    conn: str, table: str, pipelines: list[str], windows: int, start: datetime, size: timedelta, open_: int
) -> float:
    """Insert ``windows`` entities per pipeline (the last ``open_`` queued) in transactions of 100.

    Azurite checks each insert against its whole partition, so a fill slows as a partition
    grows (a million PT5M entities take about an hour): progress goes to stderr. Inserts are
    plain creates; a transaction whose connection dropped is retried as an upsert, since it
    may have committed.
    """
    service = TableServiceClient.from_connection_string(conn)
    service.create_table_if_not_exists(table)
    client = service.get_table_client(table)
    jobs = [(p, i) for p in pipelines for i in range(0, windows, 100)]
    first_open = windows - open_
    done_jobs = [0]
    lock = threading.Lock()

    def submit(job: tuple[str, int]) -> None:
        name, first = job
        count = min(100, windows - first)
        done = max(0, min(count, first_open - first))
        batch = list(_entities(name, start + first * size, size, done, "done"))
        batch += _entities(name, start + (first + done) * size, size, count - done, "queued")
        for attempt in range(6):  # Azurite drops a connection now and then while it is busy
            ops: list[Any] = (
                [("create", e) for e in batch]
                if attempt == 0
                else [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in batch]
            )
            try:
                client.submit_transaction(ops)
                break
            except AzureError:
                if attempt == 5:
                    raise
                time.sleep(1 + attempt)
        with lock:
            done_jobs[0] += 1
            if done_jobs[0] % max(1, len(jobs) // 20) == 0:
                rate = done_jobs[0] * 100 / (time.perf_counter() - began)
                share = done_jobs[0] / len(jobs)
                print(f"PROGRESS fill {share:.0%} ({rate:,.0f} entities/s)", file=sys.stderr, flush=True)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:  # Azurite is one thread: two keep it busy
        list(pool.map(submit, jobs))
    ledger = Ledger(service, table)
    for name in pipelines:
        ledger.advance_frontier(name, start + windows * size, start + windows * size)
    return time.perf_counter() - began


def _complete_open(ledger: Ledger, pipelines: list[str], first: datetime, size: timedelta, count: int) -> None:
    """The backfill's queued windows finish (claimed and completed, as a worker does: their day rollups
    follow): the ledger reaches the steady state."""
    now = BACKFILL_NOW
    for name in pipelines:
        for entity in _entities(name, first, size, count, "done"):
            window = Window(entity["WindowStart"], entity["WindowEnd"])
            claim = ledger.claim(name, window, owner="bench", now=now, lease=HOUR, max_attempts=MAX_ATTEMPTS)
            if claim is None:
                raise RuntimeError(f"{name} {window}: a queued window could not be claimed")
            outputs = orjson.loads(entity["Outputs"])
            ledger.complete(claim, now=now, rows=entity["Rows"], nbytes=entity["Bytes"], outputs=outputs)


def _plans(engine: Any, counter: RequestCounter, rounds: int = 4) -> dict[str, Any]:
    """Plan every pipeline ``rounds`` times; the first round is cold (connects, may move the open mark)."""
    runs: list[dict[str, Any]] = []
    for _ in range(rounds):
        began = time.perf_counter()
        due = ops = 0
        for pipeline in engine.settings.pipelines:
            plan = engine.planner.plan(pipeline, new_status="queued")
            due += len(plan.due)
            ops += plan.operations
        runs.append({"seconds": time.perf_counter() - began, "requests": counter.take(), "due": due, "ops": ops})
    warm = min(runs[1:], key=lambda r: r["seconds"])
    n = len(engine.settings.pipelines)
    return {
        "cold": runs[0], "warm": warm, "warm_seconds": [round(r["seconds"], 3) for r in runs[1:]],
        "requests_per_pipeline": round(sum(warm["requests"].values()) / n, 2),
        "ms_per_pipeline": round(warm["seconds"] * 1000 / n, 2),
    }  # fmt: skip


def _build_rollups(storage: str, table: str, names: list[str], size: timedelta) -> float:
    """The status rollups of the filled ledger, built as for a ledger from before rollups (``python -m
    shared rollups``): a filled ledger then looks like one the mover wrote itself."""
    builder = Ledger(TableServiceClient.from_connection_string(storage), table)
    began = time.perf_counter()
    until = BACKFILL_NOW
    for n, name in enumerate(names, start=1):
        while not builder.rollups.migrate(name, size, until=until, now=until, max_days=400).done:
            pass
        rate = n / (time.perf_counter() - began)
        print(f"PROGRESS rollups of {n} of {len(names)} pipelines built ({rate * 60:.1f} per minute)", file=sys.stderr,
              flush=True)  # fmt: skip
    return round(time.perf_counter() - began, 2)


def scheduler(spec: dict[str, Any]) -> dict[str, Any]:
    """Fill the ledger with ``pipelines`` × ``windows`` windows of ``size``, then time plans (see the module doc).

    ``open`` (default 0) queues the last windows of each pipeline first and adds the
    backfill-phase measurement; ``tick`` (default true) also times ``App.tick`` in the
    steady state, like the scheduler scenario always did.
    """
    from shared.app import App

    n, windows = int(spec["pipelines"]), int(spec["windows"])
    size_text = str(spec.get("size", "PT1H"))
    size = parse_duration(size_text)
    open_ = int(spec.get("open", 0))
    start = END - windows * size
    names = [f"p{i:03d}" for i in range(n)]
    fill_s = _fill(spec["storage"], spec["ledger_table"], names, windows, start, size, open_)
    rollup_s = _build_rollups(spec["storage"], spec["ledger_table"], names, size)
    source = {"kind": "app_insights", "app_id": spec["app_id"], "endpoint": spec["emulator"],
              "query": spec.get("query", "requests"), "auth": {"kind": "token", "setting": "BENCH_TOKEN"}}  # fmt: skip
    window = {"size": size_text, "start": start.isoformat(), "delay": "PT5M", "max_per_tick": max(open_, 12),
              "max_attempts": MAX_ATTEMPTS}  # fmt: skip
    pipelines = [{"name": name, "source": source, "window": window, "sink": {"container": "bench-sched"}}
                 for name in names]  # fmt: skip
    env = {
        "AzureWebJobsStorage": spec["storage"], "BENCH_TOKEN": spec["token"],
        "MOVER_PIPELINES": json.dumps({"pipelines": pipelines}), "MOVER_LEDGER_TABLE": spec["ledger_table"],
    }  # fmt: skip
    settings = load_settings(env)
    now = [END + DELAY + size / 2]  # the newest window is due, the next one not yet
    counter = RequestCounter()
    service = TableServiceClient.from_connection_string(spec["storage"], raw_request_hook=counter)
    engine = App(settings, clock=lambda: now[0], ledger=Ledger(service, settings.ledger_table))
    result: dict[str, Any] = {
        "pipelines": n, "size": size_text, "windows_per_pipeline": windows, "entities": n * windows,
        "fill_seconds": fill_s, "fill_entities_per_s": round(n * windows / fill_s), "open_per_pipeline": open_,
        "rollup_build_seconds": rollup_s,
    }  # fmt: skip
    try:
        if open_:
            now[0] = BACKFILL_NOW
            result["backfill"] = _plans(engine, counter)
            if result["backfill"]["warm"]["due"]:
                raise RuntimeError(f"a capped backfill plan found due windows: {result['backfill']['warm']}")
            _complete_open(engine.ledger, names, END - open_ * size, size, open_)
            counter.take()
            now[0] = END + DELAY + size / 2
        if spec.get("tick", True):  # first: its cold tick moves the open mark, as the scheduler scenario always had
            ticks: list[dict[str, Any]] = []
            for _ in range(3):
                began = time.perf_counter()
                report = engine.tick()
                if report.queued or report.results or report.errors:
                    raise RuntimeError(f"a tick with nothing due did work: {report}")
                ticks.append({"seconds": time.perf_counter() - began, "requests": counter.take()})
            result["cold"], result["warm"] = ticks[0], min(ticks[1:], key=lambda t: t["seconds"])
            result["warm_seconds"] = [round(t["seconds"], 3) for t in ticks[1:]]
        result["steady"] = _plans(engine, counter)
        if result["steady"]["warm"]["due"]:
            raise RuntimeError(f"a steady-state plan with nothing due found windows: {result['steady']['warm']}")
        if spec.get("status"):
            from bench.scale_status import status_point

            result["status"] = status_point(engine, spec, END)
    finally:
        engine.close()
    return result
