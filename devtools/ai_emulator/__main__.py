"""``python -m devtools.ai_emulator``: serve a seeded emulator until SIGINT/SIGTERM.

Prints the base URL on the first stdout line (scripts read it), details on stderr.
``--bench`` instead loads ``--bench-rows`` requests into one hour, fetches it over HTTP
and prints MB/s and rows/s.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from datetime import timedelta
from types import FrameType

from .bench import fetch_window, self_benchmark
from .emulator import EmulatorConfig
from .service import Emulator
from .timeutil import from_ticks, parse_datetime, parse_iso_duration


def _duration(text: str) -> timedelta:
    try:
        return timedelta(microseconds=parse_iso_duration(text) // 10)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devtools.ai_emulator",
        description="Local Application Insights / Log Analytics query API emulator.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090, help="0 picks a free port (default 8090)")
    p.add_argument("--app-id", default="local-app")
    p.add_argument("--workspace-id", default="local-workspace")
    p.add_argument("--api-key", default="dev-key", help="accepted x-api-key ('' disables)")
    p.add_argument("--token", default="dev-token", help="accepted bearer token ('' disables)")
    p.add_argument(
        "--seed-history",
        type=_duration,
        default=timedelta(hours=6),
        help="ISO 8601 duration of history to backfill before now (default PT6H)",
    )
    p.add_argument("--rate", type=float, default=10.0, help="telemetry items per second across all tables (default 10)")
    p.add_argument(
        "--late-fraction",
        type=float,
        default=0.05,
        help="fraction of rows ingested minutes to hours late (default 0.05)",
    )
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--no-seeder", action="store_true", help="serve an empty store")
    p.add_argument("--max-rows", type=int, default=500_000)
    p.add_argument("--max-bytes", type=int, default=64 * 2**20)
    p.add_argument("--rate-limit", type=int, default=200, help="requests per 30 s per identity (0 = off; default 200)")
    p.add_argument("--max-concurrent", type=int, default=5, help="0 = unlimited (default 5)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="service time per query, ms (default 0)")
    p.add_argument(
        "--latency-per-1k-rows-ms",
        type=float,
        default=0.0,
        help="service time per 1,000 rows returned, ms (default 0); the real API: about 500 + 100",
    )
    for kind in ("429", "503", "504", "partial", "reset"):
        p.add_argument(
            f"--fault-rate-{kind}", type=float, default=0.0, help=f"probability of a random {kind} fault per query"
        )
    p.add_argument("--bench", action="store_true", help="run the serving benchmark and exit")
    p.add_argument("--bench-rows", type=int, default=1_000_000)
    p.add_argument("--bench-slices", type=int, default=60)
    p.add_argument("--bench-concurrency", type=int, default=1)
    p.add_argument(
        "--bench-url",
        help="with --bench: measure this running emulator instead (uses --app-id, "
        "--api-key; fetches the hour starting at --bench-start)",
    )
    p.add_argument("--bench-start", default="2026-11-02T10:00:00Z", help="with --bench-url: hour to fetch")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.bench and args.bench_url:
        start = from_ticks(parse_datetime(args.bench_start))
        print(fetch_window(args.bench_url, args.app_id, start, start + timedelta(hours=1), slices=args.bench_slices,
                           concurrency=args.bench_concurrency, api_key=args.api_key or None,
                           token=None if args.api_key else args.token), flush=True)  # fmt: skip
        return 0
    if args.bench:
        self_benchmark(args.bench_rows, slices=args.bench_slices, concurrency=args.bench_concurrency)
        return 0
    config = EmulatorConfig(
        app_id=args.app_id,
        workspace_id=args.workspace_id,
        api_key=args.api_key or None,
        token=args.token or None,
        host=args.host,
        port=args.port,
        max_rows=args.max_rows,
        max_bytes=args.max_bytes,
        rate_limit=args.rate_limit or None,
        max_concurrent=args.max_concurrent or None,
        latency_ms=args.latency_ms,
        latency_per_1k_rows_ms=args.latency_per_1k_rows_ms,
        fault_seed=args.seed,
    )
    emu = Emulator(config)
    rates: dict[int | str, float] = {}
    for kind in ("429", "503", "504", "partial", "reset"):
        value = getattr(args, f"fault_rate_{kind}")
        if value:
            rates[int(kind) if kind.isdigit() else kind] = value
    emu.faults.set_rates(rates)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    emu.start()
    try:
        if not args.no_seeder:
            seeder = emu.start_seeder(
                rate=args.rate,
                late_fraction=args.late_fraction,
                history=args.seed_history,
                seed=args.seed,
            )
            print(
                f"ai-emulator: seeded {seeder.rows_added:,} rows of history, adding "
                f"{args.rate:g} items/s ({args.late_fraction:.0%} late)",
                file=sys.stderr,
                flush=True,
            )
        # The URL goes out once history is in place, so a script can query right away.
        print(emu.url, flush=True)
        print(
            f"ai-emulator: apps {emu.app_query_url} | workspaces {emu.workspace_query_url} | "
            f"control {emu.url}/_emulator/health",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
