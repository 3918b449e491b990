"""``python -m bench.scale`` (``make bench-scale``): the scaled-out shape against a query API that
answers like the real one, and what planning costs over a year of history.

Starts Azurite and the query API emulator (own processes) with the service's behaviour:
``--latency-ms`` per query + ``--per-1k-ms`` per 1,000 rows, held inside a cap of 5
concurrent queries that answers 429 beyond it, and 200 requests per 30 s. Then:

1. **plan cost and status** — 10 pipelines × a month and × a year of ``PT1H`` windows (7,200
   and 87,600 entities) in the ledger, their day rollups built as for an upgraded ledger; a
   backfill-phase plan and a steady-state plan (``bench.scheduler``): storage requests and ms
   per pipeline; then the status point (``bench.scale_status``): status JSON and page (default
   view, 31 days), verify of one day and the idle check, time and storage requests, side by
   side. ``--year-pt5m`` adds the same over ``PT5M`` (1,051,200 entities; Azurite fills a
   partition quadratically, so that takes well over an hour and is not in the default run).
2. **backfill** — ``--pipelines`` × ``--windows`` hourly windows through ``python -m shared run
   --workers N --until-idle`` for each N of ``--workers``; every row compared with the
   emulator's (``devtools.faultsuite_check``).
3. **one big hour** — ``--hour-rows`` rows, sequential sub-queries (``parallel_queries: 1``)
   vs the default (the whole query budget); same SHA-256 of the outputs both ways.

Prints a table and, last, ``BENCH-SCALE {json}``; exits 1 when a row is lost or duplicated,
more than 5 queries were ever in flight, or the app caused a 429. See docs/scale.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

__all__ = ["main"]

HOUR_START = datetime(2026, 11, 2, 10, tzinfo=UTC)  # the big hour
BACKFILL_START = datetime(2026, 11, 3, tzinfo=UTC)  # the backfill's windows, a day later
TABLES = ("requests", "dependencies", "traces", "exceptions", "pageViews", "customEvents")
YEAR = 365 * 24
MONTH = 30 * 24
SOURCE_TABLE = {"PT1H": "requests", "PT5M": "pageViews"}  # one emulator: each size verifies rows of its own


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2,4, got {text!r}") from exc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=_ints, default=[1, 2, 4], help="worker processes per backfill run (1,2,4)")
    p.add_argument("--pipelines", type=int, default=3, help="backfill pipelines, one table each (3, at most 6)")
    p.add_argument("--windows", type=int, default=24, help="hourly windows per pipeline (24)")
    p.add_argument("--rows-per-window", type=int, default=10_000, help="rows per backfill window, on average (10,000)")
    p.add_argument("--max-rows-per-query", type=int, default=5_000, help="backfill source setting (5,000)")
    p.add_argument("--hour-rows", type=int, default=1_000_000, help="rows in the big hour (1,000,000; 0 skips it)")
    p.add_argument("--latency-ms", type=float, default=500.0, help="emulator service time per query (500)")
    p.add_argument("--per-1k-ms", type=float, default=100.0, help="emulator service time per 1,000 rows (100)")
    p.add_argument("--plan-windows", type=int, default=YEAR, help="PT1H windows per pipeline (8,760; 0 skips)")
    p.add_argument("--month-windows", type=int, default=MONTH, help="PT1H windows of the short history (720; 0 skips)")
    p.add_argument("--plan-pipelines", type=int, default=10, help="pipelines in the plan-cost ledger (10)")
    p.add_argument(
        "--year-pt5m", action="store_true", help="also plan and status over 10 x 1 year of PT5M (1,051,200 entities)"
    )
    p.add_argument("--no-plan", action="store_true", help="skip the plan-cost and status measurements")
    p.add_argument("--no-status", action="store_true", help="plan cost only, no status point")
    p.add_argument("--json", metavar="PATH", help="also write every result as JSON here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    return p


def _child(name: str, spec: dict[str, Any]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    from bench.run import _peak_rss_kib
    from bench.scale_runs import hour_child

    if name != "hour":
        raise SystemExit(f"unknown child {name!r}")
    result = hour_child(spec)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mb"] = round(_peak_rss_kib(usage) / 1024, 1)
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    print("RESULT " + orjson.dumps(result).decode(), flush=True)
    return 0


def _plan_line(s: dict[str, Any]) -> str:
    parts = [
        f"plan, {s['pipelines']} pipelines x {s['windows_per_pipeline']:,} {s['size']} windows "
        f"({s['entities']:,} entities, filled at {s['fill_entities_per_s']:,}/s):"
    ]
    for phase in ("backfill", "steady"):
        if phase in s:
            p = s[phase]
            parts.append(
                f"{phase} {p['warm']['seconds'] * 1000:.0f} ms {p['warm']['requests']} -> "
                f"{p['requests_per_pipeline']} requests, {p['ms_per_pipeline']} ms per pipeline"
            )
    return " ".join(parts)


HOUR_FIGURES = (
    "seconds", "rows_per_s", "peak_rss_mb", "max_in_flight", "app_429", "ideal_s", "ideal_ratio",
    "mover_cpu_s", "helpers_cpu_s", "cpu_floor_s", "bound_ratio",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        return _child(args.child, orjson.loads(args.spec or "{}"))
    from bench.scale_runs import backfill, hour
    from bench.scale_status import growth, status_summary, status_table
    from bench.stack import EmulatorProcess, run_child
    from devtools.azurite import Azurite

    if not 1 <= args.pipelines <= len(TABLES):
        raise SystemExit(f"--pipelines must be 1 to {len(TABLES)}")
    if args.year_pt5m:  # Azurite keeps every entity in Node's heap: a million of them need more than its default
        os.environ.setdefault("NODE_OPTIONS", "--max-old-space-size=12288")
    latency = ["--latency-ms", str(args.latency_ms), "--latency-per-1k-rows-ms", str(args.per_1k_ms)]
    failures: list[str] = []
    report: dict[str, Any] = {"latency_ms": args.latency_ms, "per_1k_ms": args.per_1k_ms, "cap": 5}
    began = time.perf_counter()
    emulator = EmulatorProcess(extra=[*latency, "--rate-limit", "200"])
    with Azurite() as azurite, emulator as emu:
        storage = azurite.connection_string
        plans: list[dict[str, Any]] = []
        statuses: list[dict[str, Any]] = []
        if not args.no_plan:
            points = [("PT1H", n) for n in dict.fromkeys((args.month_windows, args.plan_windows)) if n > 0]
            points += [("PT5M", YEAR * 12)] * args.year_pt5m
            for size, windows in points:
                spec = {
                    "storage": storage,
                    "emulator": emu.url,
                    "app_id": emu.app_id,
                    "token": emu.token,
                    "ledger_table": f"plan{size.lower()}{int(time.time())}",
                    "pipelines": args.plan_pipelines,
                    "windows": windows,
                    "size": size,
                    "open": 12,
                    "tick": False,
                    "status": not args.no_status,
                    "azurite_pid": azurite.pid,
                    "query": SOURCE_TABLE[size],
                }
                try:
                    plans.append(run_child("scheduler", spec, timeout=8 * 3600))  # a PT5M fill on a busy machine
                except (RuntimeError, subprocess.TimeoutExpired) as exc:  # e.g. Azurite gave up filling
                    failures.append(f"plan over {windows:,} {size} windows: {str(exc)[-500:]}")
                    print(f"plan over {args.plan_pipelines} x {windows:,} {size} windows FAILED", flush=True)
                    continue
                print(_plan_line(plans[-1]), flush=True)
            statuses = [status_summary(s) for s in plans if "status" in s]
            if statuses:
                print(status_table(statuses), flush=True)
                failures += growth(statuses)
        tables = list(TABLES[: args.pipelines])
        t = time.perf_counter()
        for seed, table in enumerate(tables, start=11):
            emu.control(
                "POST",
                "generate",
                {
                    "table": table,
                    "start": BACKFILL_START.isoformat(),
                    "end": (BACKFILL_START + args.windows * timedelta(hours=1)).isoformat(),
                    "count": args.rows_per_window * args.windows,
                    "seed": seed,
                },
            )
        if args.hour_rows:
            emu.control(
                "POST",
                "generate",
                {
                    "table": "requests",
                    "start": HOUR_START.isoformat(),
                    "end": (HOUR_START + timedelta(hours=1)).isoformat(),
                    "count": args.hour_rows,
                    "seed": 1,
                },
            )
        print(
            f"seeded in {time.perf_counter() - t:.0f} s; emulator {args.latency_ms:g} ms + {args.per_1k_ms:g} ms "
            f"per 1,000 rows, at most 5 queries in flight (429 beyond), 200 requests per 30 s",
            flush=True,
        )
        runs = []
        for workers in args.workers:
            r = backfill(
                storage,
                emu,
                tables,
                BACKFILL_START,
                args.windows,
                workers=workers,
                max_rows_per_query=args.max_rows_per_query,
            )
            runs.append(r)
            print(
                f"backfill {len(tables)} x {args.windows} windows, {workers} worker(s): {r['seconds']:.1f} s, "
                f"{r['rows_per_s']:,} rows/s, max in flight {r['max_in_flight']}, app 429s {r['app_429']}, "
                f"{r['ideal_ratio']:.2f} of the ideal {r['ideal_s']:.1f} s ({r['ideal_bound']}), "
                f"{r['fill']:.2f} over the {r['span_s']:.1f} s from the first query to the last, "
                f"lost {r['lost']} dup {r['duplicated']}",
                flush=True,
            )
        hours = []
        if args.hour_rows:
            for parallel in (1, None):
                h = hour(storage, emu, HOUR_START, args.hour_rows, parallel=parallel, azurite_pid=azurite.pid)
                hours.append(h)
                print(
                    f"hour of {args.hour_rows:,} rows, parallel_queries {h['parallel_queries']}: "
                    f"{h['seconds']:.1f} s, {h['rows_per_s']:,} rows/s, peak RSS {h['peak_rss_mb']:.0f} MB, "
                    f"max in flight {h['max_in_flight']}, app 429s {h['app_429']}, "
                    f"{h['ideal_ratio']:.2f} of the ideal {h['ideal_s']:.1f} s; CPU mover {h['mover_cpu_s']:.1f} s + "
                    f"emulator/Azurite {h['helpers_cpu_s']:.1f} s over {os.cpu_count()} cores: floor "
                    f"{h['cpu_floor_s']:.1f} s, {h['bound_ratio']:.2f} of max(ideal, floor)",
                    flush=True,
                )
    for r in [*runs, *hours]:
        name = f"backfill/{r['workers']}" if "workers" in r else f"hour/{r['parallel_queries']}"
        if not r["exact"]:
            failures.append(f"{name}: rows not exactly once: {r.get('problems') or r}")
        if r["max_in_flight"] > 5:
            failures.append(f"{name}: {r['max_in_flight']} queries in flight at once (cap 5)")
        if r["app_429"] != 0:
            failures.append(f"{name}: {r['app_429']} 429s caused by the app")
    if len(hours) == 2 and hours[0]["sha256"] != hours[1]["sha256"]:
        failures.append("hour: sequential and parallel outputs differ")
    base = runs[0]["seconds"] if runs else 0.0
    bench: dict[str, Any] = {
        "backfill": {
            str(r["workers"]): {
                k: r[k]
                for k in (
                    "seconds",
                    "rows_per_s",
                    "max_in_flight",
                    "app_429",
                    "ideal_s",
                    "ideal_cap_s",
                    "ideal_ratio",
                    "span_s",
                    "fill",
                )
            }
            | {"speedup": round(base / r["seconds"], 2)}
            for r in runs
        },
        "hour": {str(h["parallel_queries"]): {k: h[k] for k in HOUR_FIGURES} for h in hours},
        "plan": [
            {"size": s["size"], "entities": s["entities"], "fill_per_s": s["fill_entities_per_s"]}
            | {f"{phase}_requests_per_pipeline": s[phase]["requests_per_pipeline"] for phase in ("backfill", "steady")}
            | {f"{phase}_ms_per_pipeline": s[phase]["ms_per_pipeline"] for phase in ("backfill", "steady")}
            for s in plans
        ],
        "status": statuses,
        "rows_exact": all(r["exact"] for r in [*runs, *hours]),
    }
    if len(hours) == 2:
        bench["hour_speedup"] = round(hours[0]["seconds"] / hours[1]["seconds"], 2)
        bench["hour_same_sha256"] = hours[0]["sha256"] == hours[1]["sha256"]
    print(f"total {time.perf_counter() - began:.0f} s")
    for failure in failures:
        print(f"FAILED: {failure}")
    report |= {"plans": plans, "backfill": runs, "hours": hours, "failures": failures, "bench": bench}
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print("BENCH-SCALE " + orjson.dumps(bench).decode(), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
