"""The runs of ``make bench-scale`` (see ``bench.scale``): a queue backfill with N worker processes,
and one big hour with sequential or parallel sub-queries.

Both run the app's real code in their own processes against the emulator with service
time and the 5-query cap: the backfill is ``python -m shared run --workers N --until-idle`` (a
planner that ticks once at the start, as the schedule's next tick is minutes away, plus N ``python
-m shared work`` processes on Azurite's queue whose top-ups keep it going);
the hour is ``App.replayer.replay(mode="inline")`` in a child (``python -m bench.scale --child
hour``) so its peak RSS (``VmHWM``) is its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from bench.stack import ROOT, EmulatorProcess, count_outputs, drop_container, process_cpu_seconds, run_child
from devtools.faultsuite_check import PipelineRange, verify
from shared.ledger import Ledger
from shared.model import format_ts

__all__ = ["app_throttled", "backfill", "hour", "hour_child", "pipeline_config", "settings_env"]

HOUR = timedelta(hours=1)
CAP = 5  # the service's concurrent queries per caller, and the emulator's cap here


def pipeline_config(
    name: str,
    table: str,
    emu: tuple[str, str],
    container: str,
    start: datetime,
    end: datetime,
    *,
    max_rows_per_query: int,
    parallel: int | None = None,
) -> dict[str, Any]:
    """A query-API pipeline over ``[start, end)`` hourly, JSONL.gz to ``container`` (``emu``: url, app id)."""
    source: dict[str, Any] = {
        "kind": "app_insights",
        "app_id": emu[1],
        "endpoint": emu[0],
        "query": table,
        "auth": {"kind": "token", "setting": "BENCH_TOKEN"},
        "max_rows_per_query": max_rows_per_query,
    }
    if parallel is not None:
        source["parallel_queries"] = parallel
    window = {"size": "PT1H", "start": format_ts(start), "end": format_ts(end), "delay": "PT5M"}
    return {"name": name, "source": source, "window": window, "sink": {"container": container, "format": "jsonl"}}


def settings_env(storage: str, token: str, pipelines: list[dict[str, Any]], ledger: str, queue: str) -> dict[str, str]:
    """The app settings of a run (only these: a developer's shell cannot leak ``MOVER_*`` in)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MOVER_", "AzureWebJobsStorage"))}
    return base | {
        "AzureWebJobsStorage": storage,
        "BENCH_TOKEN": token,
        "MOVER_PIPELINES": json.dumps({"pipelines": pipelines}),
        "MOVER_LEDGER_TABLE": ledger,
        "MOVER_QUEUE_NAME": queue,
        "PYTHONPATH": str(ROOT),
    }


def app_throttled(stats: dict[str, Any]) -> int:
    """429s the app caused (over the cap or the rate), not injected ones: the bench injects none."""
    if "throttled_concurrency" in stats:
        return int(stats["throttled_concurrency"]) + int(stats.get("throttled_rate", 0))
    return int(stats["throttled"]) if not stats.get("faults") else -1


def _figures(stats: dict[str, Any], seconds: float, rows: int) -> dict[str, Any]:
    """Wall time, rate, the cap's high-water mark, app 429s and the ratio to the ideal time.

    The ideal: the emulator's summed service time spread over 5 slots (always 5 in flight,
    no gaps, no client time) — and no faster than the request rate allows (180 per 30 s).
    ``fill``: how busy the 5 slots were from the first query in to the last one out (the
    processes' start and the last commits are outside that span, inside ``seconds``).
    """
    service_s = stats.get("latency_ms_total", 0) / 1000
    ideal_cap = service_s / CAP
    ideal_rate = stats["requests"] * 30 / 180
    ideal = max(ideal_cap, ideal_rate)
    return {
        "seconds": round(seconds, 2),
        "rows": rows,
        "rows_per_s": round(rows / seconds) if seconds else 0,
        "queries": stats["queries"],
        "requests": stats["requests"],
        "max_in_flight": stats["peak_concurrency"],
        "app_429": app_throttled(stats),
        "service_s": round(service_s, 1),
        "ideal_s": round(ideal, 2),
        "ideal_bound": "cap" if ideal_cap >= ideal_rate else "rate",
        "ideal_cap_s": round(ideal_cap, 2),
        "ideal_ratio": round(ideal / seconds, 3) if seconds else 0.0,
        "span_s": round(stats.get("span_ms", 0) / 1000, 2),
        "fill": round(ideal / (stats["span_ms"] / 1000), 3) if stats.get("span_ms") else 0.0,
    }


def backfill(
    storage: str,
    emu: EmulatorProcess,
    tables: list[str],
    start: datetime,
    hours: int,
    *,
    workers: int,
    max_rows_per_query: int,
) -> dict[str, Any]:
    """A planner and ``workers`` worker processes move ``tables`` × ``hours`` windows; every row checked."""
    unique = uuid.uuid4().hex[:8]
    container, ledger, queue = f"scale-{unique}", f"scale{unique}", f"scale-{unique}"
    end = start + hours * HOUR
    pipelines = [
        pipeline_config(t, t, (emu.url, emu.app_id), container, start, end, max_rows_per_query=max_rows_per_query)
        for t in tables
    ]
    env = settings_env(storage, emu.token, pipelines, ledger, queue)
    emu.control("POST", "stats/reset")
    argv = [sys.executable, "-m", "shared", "run", "--workers", str(workers), "--until-idle"]
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
    seconds = time.perf_counter() - began
    stats = emu.control("GET", "stats")
    if done.returncode != 0:
        raise RuntimeError(f"backfill with {workers} worker(s) exited {done.returncode}:\n{done.stderr[-3000:]}")
    service = TableServiceClient.from_connection_string(storage)
    with httpx.Client(base_url=emu.url, timeout=300) as control:
        verdict = verify(
            [PipelineRange(t, t, start, hours) for t in tables],
            container=BlobServiceClient.from_connection_string(storage).get_container_client(container),
            ledger=Ledger(service, ledger),
            control=control,
        )
    drop_container(storage, container)
    result = _figures(stats, seconds, verdict.rows_source)
    result |= {
        "workers": workers,
        "windows": verdict.windows,
        "windows_done": verdict.windows_done,
        "rows_out": verdict.rows_out,
        "lost": verdict.lost,
        "duplicated": verdict.duplicated,
        "exact": verdict.ok,
        "problems": verdict.problems[:5],
    }
    return result


def hour(
    storage: str, emu: EmulatorProcess, start: datetime, rows: int, *, parallel: int | None, azurite_pid: int = 0
) -> dict[str, Any]:
    """One hour through the engine in a child process; outputs counted and hashed back from Azurite.

    Besides the ideal at 5 in flight, the CPU floor: the CPU the mover, the emulator and
    Azurite spent on the hour, spread over every core. On a small machine that floor, not
    the service's latency, bounds the wall time.
    """
    unique = uuid.uuid4().hex[:8]
    spec: dict[str, Any] = {
        "storage": storage,
        "emulator": emu.url,
        "app_id": emu.app_id,
        "token": emu.token,
        "start": format_ts(start),
        "container": f"hour-{unique}",
        "ledger": f"hour{unique}",
        "parallel": parallel,
    }
    emu.control("POST", "stats/reset")

    def helpers_cpu() -> float:
        return emu.cpu_seconds() + (process_cpu_seconds(azurite_pid) if azurite_pid else 0.0)

    helpers_before = helpers_cpu()
    child = run_child("hour", spec, timeout=1800, module="bench.scale")
    helpers_used = helpers_cpu() - helpers_before
    stats = emu.control("GET", "stats")
    counted = count_outputs(storage, spec["container"], "jsonl")
    drop_container(storage, spec["container"])
    result = _figures(stats, child["seconds"], child["rows"])
    floor = (child["replay_cpu_s"] + helpers_used) / (os.cpu_count() or 1)
    result |= {
        "parallel_queries": parallel or "default",
        "peak_rss_mb": child["peak_rss_mb"],
        "cpu_s": child["cpu_s"],
        "mover_cpu_s": child["replay_cpu_s"],
        "helpers_cpu_s": round(helpers_used, 2),
        "cpu_floor_s": round(floor, 2),
        "bound_ratio": round(max(result["ideal_s"], floor) / result["seconds"], 3) if result["seconds"] else 0.0,
        "counted_rows": counted.rows,
        "blobs": counted.blobs,
        "sha256": counted.content_sha256,
        "exact": counted.rows == rows == child["rows"],
    }
    return result


def hour_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Child side of ``hour``: one ``App.replayer.replay(mode="inline")`` of the hour; fails unless it is done."""
    from shared.app import App
    from shared.settings import load_settings

    start = datetime.fromisoformat(spec["start"].replace("Z", "+00:00"))
    config = pipeline_config(
        "hour",
        "requests",
        (spec["emulator"], spec["app_id"]),
        spec["container"],
        start,
        start + HOUR,
        max_rows_per_query=10_000,
        parallel=spec.get("parallel"),
    )
    env = settings_env(spec["storage"], spec["token"], [config], spec["ledger"], "hour-" + spec["ledger"][4:])
    settings = load_settings(env)
    engine = App(settings, clock=lambda: start + timedelta(days=1))
    try:
        began, cpu = time.perf_counter(), time.process_time()
        replay = engine.replayer.replay(settings.pipeline("hour"), start, start + HOUR, mode="inline")
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    finally:
        engine.close()
    (result,) = replay.results
    if result.outcome != "done":
        raise RuntimeError(f"hour not moved: {result.outcome}: {result.error}")
    return {"rows": result.rows, "seconds": seconds, "replay_cpu_s": round(cpu, 2)}
