"""The status point of ``make bench-scale``: what an operator's reads cost over a filled ledger.

Runs in the scheduler child (``bench.scheduler``, spec ``"status": true``) after its plans, on
the steady-state ledger: every window ``done``, except two per pipeline that failed and are
closed (20 and 2 days before the newest window; written by the ledger's own transitions, so
the day rollups follow them as they follow every change), and one day whose windows verify
(the emulator holds exactly their rows, the sink their manifests and data blobs). Then, 4
times each (the first cold), the best warm run kept, with the storage requests it made to the
ledger and rollup tables (a request hook on the engine's table client):

* ``GET /api/status`` as JSON (``shared.frontends.http.status``): the default view and a 31-day range;
* the page (``?format=html``): the default view and the same 31 days;
* ``verify`` of one day of one pipeline (``shared.frontends.http_ops.run_verify``, recorded for the page):
  its count query goes to the emulator, its manifest checks to the blob sink (those requests
  are not counted: they follow the windows verified, not the ledger);
* the idle check of ``python -m shared run --until-idle`` (``shared.frontends.cli_run.idle_report``: a
  plan per pipeline, then the failed windows from the rollups).

The request count is the point: it must be the same for a month and a year of history.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient

from bench.stack import process_cpu_seconds
from shared.app import App
from shared.ledger import Ledger
from shared.ledger.days import DAY
from shared.model import Window
from shared.ops.status import StatusView

__all__ = ["FAILED_DAYS_BEFORE", "ROWS_PER_WINDOW", "TableCounter", "status_point"]

FAILED_DAYS_BEFORE = (20, 2)  # closed failures per pipeline, this many days before the newest window
VERIFY_DAYS_BEFORE = 3  # the verified day (no failure in it)
ROWS_PER_WINDOW = 1000  # what the fill records for every done window
ROUNDS = 4


class TableCounter:
    """``raw_request_hook``: storage requests per table (``ledger``, ``days`` for the rollups, or the name)."""

    def __init__(self, ledger_table: str) -> None:
        self._names = {ledger_table.lower(): "ledger", f"{ledger_table[:59]}days".lower(): "days"}
        self._lock = threading.Lock()
        self.tables: Counter[str] = Counter()

    def __call__(self, request: Any) -> None:
        path = unquote(urlsplit(str(request.http_request.url)).path).strip("/")
        name = path.split("/", 1)[-1].split("(", 1)[0].lower()  # /account/table(PK,RK) or /account/table()
        with self._lock:
            self.tables[self._names.get(name, name or "service")] += 1

    def take(self) -> dict[str, int]:
        with self._lock:
            out = dict(self.tables)
            self.tables.clear()
        return out


def _fail_some(engine: App, end: datetime, now: datetime) -> int:
    """Close two windows of each pipeline as failed, through claim and fail (the rollups follow)."""
    count = 0
    for pipeline in engine.settings.pipelines:
        size = pipeline.window.size
        for days in FAILED_DAYS_BEFORE:
            start = end - days * DAY + 10 * size  # inside the day, not its first window
            window = Window(start, start + size)
            state = engine.ledger.get(pipeline.name, window)
            if state is None or state.status != "done":
                raise RuntimeError(f"{pipeline.name} {window}: expected a done window to fail, found {state}")
            claim = engine.ledger.claim(
                pipeline.name, window, owner="bench", now=now, lease=timedelta(minutes=5),
                max_attempts=pipeline.window.max_attempts, expect=state.etag,
            )  # fmt: skip
            if claim is None:
                raise RuntimeError(f"{pipeline.name} {window}: could not claim it")
            engine.ledger.fail(claim, now=now, error="bench: the source rejected the query (400)", next_attempt_at=None)
            count += 1
    return count


def _seed_verify_day(engine: App, spec: dict[str, Any], day: datetime) -> int:
    """Exactly ``ROWS_PER_WINDOW`` rows per window of ``day`` in the emulator (unless already there) and
    every window's manifest and data blob in the sink: the one-day verify finds them complete."""
    pipeline = engine.settings.pipelines[0]
    size, table = pipeline.window.size, str(spec.get("query", "requests"))
    windows = [Window(day + i * size, day + (i + 1) * size) for i in range(int(DAY / size))]
    base = f"{spec['emulator']}/_emulator"
    with httpx.Client(timeout=600) as http:
        params = {"table": table, "start": day.isoformat(), "end": (day + DAY).isoformat(), "rows": "false"}
        held = int(http.get(f"{base}/expected", params=params).raise_for_status().json()["count"])
        if held == 0:
            for i, w in enumerate(windows):
                body = {"table": table, "start": w.start.isoformat(), "end": w.end.isoformat(),
                        "count": ROWS_PER_WINDOW, "seed": 7000 + i}  # fmt: skip
                http.post(f"{base}/generate", json=body).raise_for_status()
        elif held != ROWS_PER_WINDOW * len(windows):
            raise RuntimeError(f"the emulator's {table} holds {held} rows on {day:%Y-%m-%d}: another window size?")
    (sink,) = engine.sinks(pipeline)
    container = sink.container  # type: ignore[attr-defined]
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    for state in engine.ledger.states(pipeline.name, since=day, until=day + DAY):
        data = [str(o["name"]) for o in state.outputs if o.get("kind") == "data"]
        for name in data:
            container.upload_blob(name, b"", overwrite=True)
        manifest = {"rows": state.rows, "files": [{"name": n} for n in data]}
        container.upload_blob(sink.manifest_name(state.window), orjson.dumps(manifest), overwrite=True)  # type: ignore[attr-defined]
    return len(windows)


def _measure(counter: TableCounter, run: Callable[[], Any], check: Callable[[Any], None]) -> dict[str, Any]:
    """``ROUNDS`` runs: the first cold (table checks, connections), the fastest warm one kept."""
    counter.take()
    rounds = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        out = run()
        seconds = time.perf_counter() - began
        check(out)
        rounds.append((seconds, counter.take(), out))
    seconds, tables, out = min(rounds[1:], key=lambda r: r[0])
    result: dict[str, Any] = {
        "ms": round(seconds * 1000, 1),
        "requests": sum(tables.values()),
        "by_table": tables,
        "cold_ms": round(rounds[0][0] * 1000, 1),
        "cold_requests": sum(rounds[0][1].values()),
        "warm_ms": [round(r[0] * 1000, 1) for r in rounds[1:]],
    }
    if isinstance(getattr(out, "body", None), bytes):
        result["kb"] = round(len(out.body) / 1024, 1)
    return result


def _ok(expect_failed: int, expect_done: int) -> Callable[[Any], None]:
    def check(response: Any) -> None:
        if response.status != 200:
            raise RuntimeError(f"status answered {response.status}: {response.body[:500]!r}")
        if response.content_type.startswith("application/json"):
            summary = orjson.loads(response.body)["summary"]["counts"]
            if (summary["failed"], summary["done"]) != (expect_failed, expect_done):
                raise RuntimeError(f"status counts {summary}, expected {expect_failed} failed, {expect_done} done")

    return check


def _breakdown(engine: App, view: StatusView, azurite_pid: int) -> dict[str, float]:
    """Where the time of one report goes (best of 3): the reads (wall, and the CPU Azurite and this process
    spent on them), building the report from what was read (pure), JSON encoding, page rendering."""
    from shared.frontends.http import Response
    from shared.ops.status import pipeline_status, summarize
    from shared.ops.status_page import render_html
    from shared.ops.status_read import read_history, status_report
    from shared.redact import redact

    now, pipelines = engine.clock(), engine.settings.pipelines
    best: dict[str, float] = {}
    for _ in range(3):
        azurite, cpu, began = process_cpu_seconds(azurite_pid), time.process_time(), time.perf_counter()
        report = status_report(engine.ledger, engine.settings, now=now, owner="bench", view=view)
        whole = time.perf_counter() - began
        figures = {"azurite_cpu": process_cpu_seconds(azurite_pid) - azurite, "python_cpu": time.process_time() - cpu}
        histories = [read_history(engine.ledger, p, now, view) for p in pipelines]
        began = time.perf_counter()
        summarize({"pipelines": [pipeline_status(p, now, view, h) for p, h in zip(pipelines, histories, strict=True)]})
        figures["report"] = time.perf_counter() - began
        figures["reads"] = whole - figures["report"]
        began = time.perf_counter()
        Response.json(200, report)
        figures["json"] = time.perf_counter() - began
        began = time.perf_counter()
        redact(render_html(report, {}))
        figures["page"] = time.perf_counter() - began
        for key, value in figures.items():
            best[key] = min(best.get(key, value), value)
    out = {f"{k}_ms": round(v * 1000, 1) for k, v in best.items()}
    if not azurite_pid:
        out.pop("azurite_cpu_ms")
    return out


def status_point(engine: App, spec: dict[str, Any], end: datetime) -> dict[str, Any]:
    """Prepare the ledger (see the module doc), then measure each read; raises on a wrong answer."""
    from shared.frontends import http as api
    from shared.frontends.cli_run import idle_report
    from shared.frontends.http_ops import run_verify

    now = engine.clock()
    failed = _fail_some(engine, end, now)
    verified = end - VERIFY_DAYS_BEFORE * DAY
    windows = _seed_verify_day(engine, spec, verified)
    counter = TableCounter(engine.settings.ledger_table)
    service = TableServiceClient.from_connection_string(spec["storage"], raw_request_hook=counter)
    # Every component reads through this client from here on: the app is built again around it.
    engine = App(engine.settings, clock=engine.clock, ledger=Ledger(service, engine.settings.ledger_table))
    entities = int(spec["pipelines"]) * int(spec["windows"])
    json_ok = _ok(failed, entities - failed)
    month = {"from": f"{end - 31 * DAY:%Y-%m-%d}", "to": f"{end:%Y-%m-%d}"}
    first = engine.settings.pipelines[0]

    def verify_day() -> Any:
        return run_verify(engine, first, Window(verified, verified + DAY), deadline=None, repair=False)

    def verify_check(result: Any) -> None:
        if (len(result.checks), result.count("complete")) != (windows, windows):
            raise RuntimeError(f"verify of {verified:%Y-%m-%d}: {result.as_dict()}")

    def idle_check(out: tuple[int, list[dict[str, Any]]]) -> None:
        if out[0] or len(out[1]) != failed:
            raise RuntimeError(f"idle check: {out[0]} busy, {len(out[1])} failed windows listed (expected {failed})")

    result: dict[str, Any] = {
        "failed_windows": failed,
        "verified_windows": windows,
        "verify_1d": _measure(counter, verify_day, verify_check),
        "json_default": _measure(counter, lambda: api.status(engine, {}), json_ok),
        "json_31d": _measure(counter, lambda: api.status(engine, month), json_ok),
        "page_default": _measure(counter, lambda: api.status(engine, {"format": "html"}), json_ok),
        "page_31d": _measure(counter, lambda: api.status(engine, month | {"format": "html"}), json_ok),
        "idle": _measure(counter, lambda: idle_report(engine), idle_check),
    }
    pid = int(spec.get("azurite_pid", 0))
    result["time_default"] = _breakdown(engine, StatusView(), pid)
    result["time_31d"] = _breakdown(engine, StatusView(end - 31 * DAY, end), pid)
    engine.close()
    return result


MEASURED = (
    ("verify_1d", "verify, one day of one pipeline"),
    ("json_default", "status JSON, default view"),
    ("json_31d", "status JSON, 31 days"),
    ("page_default", "status page, default view"),
    ("page_31d", "status page, 31 days"),
    ("idle", "idle check (--until-idle)"),
)


def status_summary(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan point's status figures for ``BENCH-SCALE``: ms, requests (and KB) of each read."""
    status = plan["status"]
    out: dict[str, Any] = {
        "size": plan["size"], "pipelines": plan["pipelines"], "windows_per_pipeline": plan["windows_per_pipeline"],
        "entities": plan["entities"], "fill_s": round(plan["fill_seconds"], 1),
        "rollup_build_s": plan["rollup_build_seconds"],
    }  # fmt: skip
    for key, _ in MEASURED:
        out[key] = {k: status[key][k] for k in ("ms", "requests", "kb") if k in status[key]}
    out["time_default"], out["time_31d"] = status["time_default"], status["time_31d"]
    return out


def status_table(points: list[dict[str, Any]]) -> str:
    """The points side by side: one column per history, ``ms / requests`` per read."""
    heads = [f"{p['size']} x {p['windows_per_pipeline']:,}" for p in points]
    rows = [("history (10 pipelines)" if all(p["pipelines"] == 10 for p in points) else "history", heads)]
    rows.append(("ledger entities", [f"{p['entities']:,}" for p in points]))
    rows.append(("rollup build of the fill", [f"{p['rollup_build_s']:,.1f} s" for p in points]))
    for key, label in MEASURED:
        cells = []
        for p in points:
            m = p[key]
            size = f", {m['kb']:,.0f} KB" if "kb" in m else ""
            cells.append(f"{m['ms']:,.0f} ms / {m['requests']} req{size}")
        rows.append((label, cells))
    for key, label in (("time_default", "  default view: reads / report / JSON / page"),
                       ("time_31d", "  31 days: reads / report / JSON / page")):  # fmt: skip
        rows.append((label, [_split(p[key]) for p in points]))
    rows.append(("  CPU of a report: Azurite, Python", [
        f"{p['time_default'].get('azurite_cpu_ms', 0):,.0f}, {p['time_default']['python_cpu_ms']:,.0f} ms; "
        f"{p['time_31d'].get('azurite_cpu_ms', 0):,.0f}, {p['time_31d']['python_cpu_ms']:,.0f} ms"
        for p in points
    ]))  # fmt: skip
    width = max(len(r[0]) for r in rows)
    cols = [max(len(r[1][i]) for r in rows) for i in range(len(points))]
    lines = [f"{label:<{width}}  " + "  ".join(f"{c:>{cols[i]}}" for i, c in enumerate(cells)) for label, cells in rows]
    return "status point (ms of the best warm run / storage requests to the ledger and rollup tables):\n" + "\n".join(
        lines
    )


def _split(t: dict[str, float]) -> str:
    return " / ".join(f"{t[k]:,.0f}" for k in ("reads_ms", "report_ms", "json_ms", "page_ms")) + " ms"


def growth(points: list[dict[str, Any]]) -> list[str]:
    """Reads whose request count differs between the histories (it must not grow with history)."""
    out = []
    for key, label in MEASURED:
        counts = {f"{p['size']} x {p['windows_per_pipeline']}": p[key]["requests"] for p in points}
        if len(set(counts.values())) > 1:
            out.append(f"{label}: storage requests differ with history: {counts}")
    return out
