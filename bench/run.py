"""``python -m bench.run`` (``make bench``): the 1M-row hour, end to end, against the raw limit.

Starts Azurite and the query API emulator as separate processes, seeds one hour of
``requests`` (default 1,000,000 rows), then runs each scenario of ``bench.scenarios`` in
its own child process (peak RSS per scenario): the emulator alone, the pipeline to
JSONL.gz and to Parquet, and the raw-limit baseline; then a scheduler tick over a large
ledger (``bench.scheduler``). Every output is counted back from Azurite; a wrong count
exits 1. The last line is ``BENCH {json}``. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import resource
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

__all__ = ["main"]

START = "2026-11-02T10:00:00Z"  # the seeded hour (the emulator's and the engine's clocks sit a day later)
FULL_YEAR = 365 * 24
CPU_TARGET = 10.0  # CPU s per 1M rows, JSONL.gz and Parquet (docs/performance.md)
RSS_TARGET_MB = 256  # peak RSS of one 1M-row window at full parallelism
THREE_RSS_TARGET_MB = 700  # three such windows in one worker process
AT_ONCE = ["jsonl", "parquet", "delta", "csv"]  # windows at once in one process: the first 3, then all 4


def _ledger_point(text: str) -> tuple[int, int]:
    pipelines, _, windows = text.lower().partition("x")
    try:
        return int(pipelines), int(windows)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected PIPELINESxWINDOWS like 100x876, got {text!r}") from exc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows seeded into the hour (default 1,000,000)")
    p.add_argument(
        "--formats",
        default="jsonl,parquet,delta,csv",
        help="pipeline formats to measure (default jsonl,parquet,delta,csv; delta = the Delta table sink)",
    )
    p.add_argument(
        "--no-three",
        action="store_true",
        help="skip the windows-at-once points: 3 (JSONL.gz, Parquet, Delta) and 4 (+ CSV.gz) in one process",
    )
    p.add_argument("--repeat", type=int, default=1, help="run every throughput scenario N times, keep the best")
    p.add_argument("--max-rows-per-query", type=int, default=0, help="override the source setting (0 = its default)")
    p.add_argument(
        "--gzip-level", type=int, choices=range(1, 10), default=None, metavar="1-9",
        help="the JSONL/CSV sinks' gzip_level, and the limit's (default: the sink's default, 5)",
    )  # fmt: skip
    p.add_argument(
        "--ledger",
        type=_ledger_point,
        action="append",
        metavar="PxW",
        help="scheduler tick over P pipelines x W done hourly windows; repeatable (default 100x8 and "
        "100x876, extrapolated to 100 x 1 year: 876,000 entities take ~7 min to insert into Azurite)",
    )
    p.add_argument("--no-scheduler", action="store_true", help="skip the scheduler tick")
    p.add_argument(
        "--table-rows",
        type=int,
        default=5_000,
        help="full-width rows into the Table sink vs. the store's own rate (0 = skip)",
    )
    p.add_argument("--profile", metavar="DIR", help="cProfile the pipeline scenarios into DIR and print the top")
    p.add_argument("--json", metavar="PATH", help="also write every result as JSON here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    return p  # fmt: skip


# -- child side ---------------------------------------------------------------------------------
def _child(name: str, spec: dict[str, Any]) -> int:
    """Run one scenario here and print ``RESULT {json}`` with this process's peak RSS and CPU time."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    from bench import scenarios
    from bench.scheduler import scheduler
    from bench.table_sink import table_sink

    table: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "pipeline": scenarios.pipeline, "limit": scenarios.limit, "serve": scenarios.serve, "scheduler": scheduler,
        "table_sink": table_sink, "at_once": scenarios.at_once,
    }  # fmt: skip
    profile_path = spec.get("profile")
    profiler = cProfile.Profile() if profile_path else None
    if profiler:
        profiler.enable()
    result = table[name](spec)
    if profiler:
        profiler.disable()
        profiler.dump_stats(str(profile_path))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mb"] = round(_peak_rss_kib(usage) / 1024, 1)
    result["ru_maxrss_mb"] = round(usage.ru_maxrss / 1024, 1)
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    print("RESULT " + orjson.dumps(result).decode(), flush=True)
    return 0


def _peak_rss_kib(usage: resource.struct_rusage) -> int:
    """This process's own peak RSS: ``VmHWM`` on Linux, else ``ru_maxrss``.

    Linux carries the parent's high-water mark into ``ru_maxrss`` across fork + exec, so a
    scenario started by a parent holding 300 MB would report at least 300 MB; ``VmHWM``
    belongs to the address space exec created.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(usage.ru_maxrss)


# -- parent side --------------------------------------------------------------------------------
def _rate(result: dict[str, Any]) -> float:
    return float(result["rows"]) / result["seconds"] if result.get("seconds") else 0.0


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Fastest run; peak RSS is the worst seen over all runs."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    best["all_seconds"] = [round(r["seconds"], 2) for r in runs]
    return best


def _row(name: str, r: dict[str, Any]) -> str:
    mb_in = r.get("bytes_in", 0) / 1e6
    mb_out = r.get("bytes_out", 0) / 1e6
    return (
        f"{name:<10}{r['rows']:>11,}{r['seconds']:>8.2f}{_rate(r):>12,.0f}{mb_in / r['seconds']:>9,.1f}"
        f"{mb_out:>9,.1f}{r['peak_rss_mb']:>10,.0f}{r['cpu_s']:>8.1f}{r.get('queries') or 0:>8}"
        f"   {'/'.join(str(s) for s in r.get('all_seconds', []))}"
    )


def _print_profile(path: str, top: int = 25) -> None:
    out = io.StringIO()
    pstats.Stats(path, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    print(text[text.find("   ncalls") :].rstrip() if "   ncalls" in text else text)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        return _child(args.child, orjson.loads(args.spec or "{}"))
    from bench.stack import EmulatorProcess, count_outputs, drop_container, run_child
    from devtools.azurite import Azurite
    from shared.durations import parse_timestamp

    formats = [f for f in args.formats.split(",") if f]
    ledger_points = args.ledger or [(100, 8), (100, FULL_YEAR // 10)]  # 800 + 87,600 entities: ~40 s to fill
    failures: list[str] = []
    report: dict[str, Any] = {"rows": args.rows}
    began = time.perf_counter()
    with Azurite() as azurite, EmulatorProcess() as emu:
        start = parse_timestamp(START)
        emu.control("POST", "clock", {"now": (start + timedelta(days=1)).isoformat()})
        t = time.perf_counter()
        end = (start + timedelta(hours=1)).isoformat()
        seed = {"table": "requests", "start": START, "end": end, "count": args.rows, "seed": 1}
        emu.control("POST", "generate", seed)
        print(f"seeded {args.rows:,} requests rows into {START} + 1h in {time.perf_counter() - t:.1f} s "
              f"(emulator limits: {emu.control('GET', 'config')['max_rows']:,} rows / "
              f"{emu.control('GET', 'config')['max_bytes'] // 2**20} MB)", flush=True)  # fmt: skip
        spec: dict[str, Any] = {
            "storage": azurite.connection_string, "emulator": emu.url, "app_id": emu.app_id, "token": emu.token,
            "start": START, "rows": args.rows, "max_rows_per_query": args.max_rows_per_query or None,
            "gzip_level": args.gzip_level,
        }  # fmt: skip

        def scenario(name: str, **extra: Any) -> dict[str, Any]:
            emu.control("POST", "stats/reset")
            unique = uuid.uuid4().hex[:8]
            run_spec = spec | {"container": f"bench-{unique}", "ledger_table": f"bench{unique}"} | extra
            result = run_child(name, run_spec)
            result["container"] = run_spec["container"]
            result.setdefault("bytes_in", emu.control("GET", "stats")["bytes_returned"])
            return result

        runs: dict[str, list[dict[str, Any]]] = {}
        for round_ in range(args.repeat):
            runs.setdefault("serve", []).append(scenario("serve"))
            digests: dict[str, str] = {}
            for fmt in [*formats, "limit"]:
                extra: dict[str, Any] = {"format": fmt} if fmt != "limit" else {}
                if args.profile and fmt != "limit":
                    Path(args.profile).mkdir(parents=True, exist_ok=True)
                    extra["profile"] = str(Path(args.profile) / f"{fmt}-{round_}.prof")
                result = scenario("pipeline" if fmt != "limit" else "limit", **extra)
                kind = {"limit": "jsonl", "delta": "parquet"}.get(fmt, fmt)
                counted = count_outputs(azurite.connection_string, result["container"], kind)
                result["counted_rows"] = counted.rows
                result["blobs"] = counted.blobs
                if counted.rows != args.rows or result["rows"] != args.rows:
                    failures.append(
                        f"{fmt}: moved {result['rows']:,}, blobs hold {counted.rows:,}, expected {args.rows:,}"
                    )
                if counted.content_sha256:
                    digests[fmt] = counted.content_sha256
                runs.setdefault(fmt, []).append(result)
                print(f"  round {round_ + 1} {fmt}: {result['seconds']:.2f} s, {counted.rows:,} rows in "
                      f"{counted.blobs} blob(s), peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
            if "jsonl" in digests and digests["jsonl"] != digests.get("limit"):
                print("WARNING: the limit's JSONL differs from the pipeline's; the ratio compares different work")
            for fmt in [*formats, "limit"]:
                drop_container(azurite.connection_string, runs[fmt][-1]["container"])
        best = {name: _best(r) for name, r in runs.items()}
        if best["serve"]["rows"] != args.rows:
            failures.append(f"serve: fetched {best['serve']['rows']:,} rows, expected {args.rows:,}")
        at_once: dict[int, dict[str, Any]] = {}  # windows in one process: 3, and 4 (the host's most per instance)
        for formats_at_once in ([] if args.no_three else [AT_ONCE[:3], AT_ONCE]):
            point = scenario("at_once", formats=formats_at_once)
            for fmt in point["formats"]:
                counted = count_outputs(azurite.connection_string, point["container"],
                                        "parquet" if fmt == "delta" else fmt, prefix=f"bench-{fmt}/")  # fmt: skip
                if counted.rows != args.rows:
                    failures.append(f"{len(formats_at_once)} windows: {fmt} blobs hold {counted.rows:,}, "
                                    f"expected {args.rows:,}")  # fmt: skip
            drop_container(azurite.connection_string, point["container"])
            at_once[len(formats_at_once)] = point
            print(f"  {len(formats_at_once)} windows at once: {point['seconds']:.2f} s, "
                  f"peak RSS {point['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
        sched = []
        if not args.no_scheduler:
            for pipelines, windows in ledger_points:
                sched.append(scenario("scheduler", pipelines=pipelines, windows=windows))
        table = scenario("table_sink", table_rows=args.table_rows) if args.table_rows else None
    elapsed = time.perf_counter() - began

    print()
    print(f"{'scenario':<10}{'rows':>11}{'s':>8}{'rows/s':>12}{'MB/s in':>9}{'MB out':>9}{'RSS MB':>10}"
          f"{'CPU s':>8}{'queries':>8}   runs (s)")  # fmt: skip
    for name in ["serve", *formats, "limit"]:
        print(_row(name, best[name]))
    limit_rate = _rate(best["limit"])
    for fmt in formats:
        print(f"ratio {fmt}: {_rate(best[fmt]) / limit_rate:.3f} of the limit")
    if formats:
        print("count query before the clock (the planner's, carried by the work message): "
              + ", ".join(f"{fmt} {best[fmt].get('count_s', 0):.2f} s" for fmt in formats))  # fmt: skip
    print(f"CPU s per 1M rows while moving (target <= {CPU_TARGET:.0f} for JSONL.gz and Parquet): "
          + ", ".join(f"{name} {_cpu_per_1m(best[name]):.1f}" for name in [*formats, "limit"]))  # fmt: skip
    print(f"peak RSS MB (target <= {RSS_TARGET_MB} for one window): "
          + ", ".join(f"{name} {best[name]['peak_rss_mb']:.0f}" for name in formats))  # fmt: skip
    for n, point in at_once.items():
        print(f"{n} windows in one process ({', '.join(point['formats'])}, {point['rows']:,} rows): "
              f"{point['seconds']:.2f} s, {_rate(point):,.0f} rows/s, peak RSS {point['peak_rss_mb']:.0f} MB "
              f"(target <= {THREE_RSS_TARGET_MB}), CPU {_cpu_per_1m(point):.1f} s per 1M rows")  # fmt: skip
    for s in sched:
        cold, warm = s["cold"], s["warm"]
        per_pipeline = sum(warm["requests"].values()) / s["pipelines"]
        print(f"scheduler tick, {s['pipelines']} pipelines x {s['windows_per_pipeline']:,} done windows "
              f"({s['entities']:,} entities, filled in {s['fill_seconds']:.0f} s): "
              f"cold {cold['seconds'] * 1000:.0f} ms {cold['requests']}, warm {warm['seconds'] * 1000:.0f} ms "
              f"{warm['requests']} -> {per_pipeline:.2f} ledger requests per pipeline")  # fmt: skip
    if table:
        print(f"table sink, {table['rows']:,} full-width rows ({table['columns']} columns): "
              f"{table['sink_entities_per_s']:,} entities/s; the store takes {table['store_entities_per_s']:,}/s "
              f"in plain 100-entity transactions -> {table['ratio']:.2f} of the store")  # fmt: skip
    if sched and not any(s["pipelines"] == 100 and s["windows_per_pipeline"] == FULL_YEAR for s in sched):
        print(_extrapolate(sched))
    if args.profile:
        for fmt in formats:
            print(f"\nprofile of the {fmt} pipeline (main thread, by own time):")
            _print_profile(str(Path(args.profile) / f"{fmt}-0.prof"))
    print(f"total {elapsed:.0f} s")
    for failure in failures:
        print(f"FAILED: {failure}")
    rates = {fmt: _rate(best[fmt]) if fmt in best else None for fmt in ("jsonl", "parquet")}
    bench = {
        "rows": args.rows,
        "jsonl_rows_per_s": _round(rates["jsonl"], 0),
        "parquet_rows_per_s": _round(rates["parquet"], 0),
        "limit_rows_per_s": round(limit_rate),
        "ratio_jsonl": _round(rates["jsonl"] and rates["jsonl"] / limit_rate, 3),
        "ratio_parquet": _round(rates["parquet"] and rates["parquet"] / limit_rate, 3),
        "peak_rss_mb": max(best[fmt]["peak_rss_mb"] for fmt in formats) if formats else None,
        "jsonl_cpu_s_per_1m": _round(_cpu_per_1m(best["jsonl"]), 2) if "jsonl" in best else None,
        "parquet_cpu_s_per_1m": _round(_cpu_per_1m(best["parquet"]), 2) if "parquet" in best else None,
        "limit_cpu_s_per_1m": _round(_cpu_per_1m(best["limit"]), 2),
        "three_windows_peak_rss_mb": at_once[3]["peak_rss_mb"] if 3 in at_once else None,
        "four_windows_peak_rss_mb": at_once[4]["peak_rss_mb"] if 4 in at_once else None,
    }
    report |= {"scenarios": best, "scheduler": sched, "failures": failures, "bench": bench, "seconds": elapsed}
    report["windows_at_once"] = {str(n): point for n, point in at_once.items()}
    report["table_sink"] = table
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print("BENCH " + orjson.dumps(bench).decode(), flush=True)
    return 1 if failures else 0


def _cpu_per_1m(result: dict[str, Any]) -> float:
    """CPU seconds (user + system, every thread) per 1,000,000 rows moved, counted while the clock
    runs: the process's start (interpreter, imports, clients: ~1 s, once per worker process, not
    per row) is left out; ``cpu_s`` in the table is the whole process."""
    cpu = result.get("moving_cpu_s", result["cpu_s"])
    return float(cpu) * 1_000_000 / max(1, int(result["rows"]))


def _round(value: float | None, digits: int) -> float | int | None:
    if value is None:
        return None
    return round(value) if digits == 0 else round(value, digits)


def _extrapolate(sched: list[dict[str, Any]]) -> str:
    """The warm tick at 100 pipelines x 1 year, from a line through the smallest and largest ledger.

    The tick itself makes one query per pipeline whatever the ledger holds (that is measured,
    not extrapolated); what grows is the time of each query, and Azurite's grows with the
    entities in the whole table (it scans them), so the line is in total entities.
    """
    points = sorted((s["entities"], s["warm"]["seconds"], s["pipelines"]) for s in sched)
    (e1, t1, p1), (e2, t2, p2) = points[0], points[-1]
    if e1 == e2 or p1 != p2:
        return "extrapolation: needs two ledgers of different sizes over the same pipelines"
    slope = (t2 - t1) / (e2 - e1)
    estimate = (t2 + slope * (100 * FULL_YEAR - e2)) * 100 / p2
    return (f"extrapolated tick, 100 pipelines x 1 year ({100 * FULL_YEAR:,} entities): {estimate:.1f} s "
            f"({t1 * 1000:.0f} ms at {e1:,} and {t2 * 1000:.0f} ms at {e2:,} entities, linear in entities; "
            f"still 100 ledger queries)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
