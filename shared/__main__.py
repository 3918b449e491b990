"""Command line: ``python -m shared tick | replay | status | run`` — the code the functions call.

Settings come from the environment, like in Azure; ``--settings local.settings.json``
(default: that file in the current folder, if the environment has no pipelines) loads
its ``Values`` first, like ``func start`` does.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from shared.durations import parse_timestamp
from shared.errors import ConfigError, MoverError
from shared.model import format_ts
from shared.runner import Engine
from shared.settings import Settings, load_local_settings

__all__ = ["main", "next_fire"]


def next_fire(schedule: str, after: datetime) -> datetime:
    """Next time an NCRONTAB (``sec min hour day month dow``) or 5-field cron fires after ``after``."""
    from croniter import croniter

    fields = schedule.split()
    if len(fields) == 6:  # NCRONTAB puts seconds first; croniter wants them last
        fields = [*fields[1:], fields[0]]
    value = croniter(" ".join(fields), after).get_next(datetime)
    assert isinstance(value, datetime)
    return value


def _print(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _engine(args: argparse.Namespace) -> Engine:
    env = dict(os.environ)
    path = Path(args.settings) if args.settings else Path("local.settings.json")
    if args.settings or ("MOVER_PIPELINES" not in env and path.is_file()):
        env = {**load_local_settings(path), **env}  # like func start: the environment wins
    return Engine(Settings.from_env(env))


def _tick(engine: Engine, args: argparse.Namespace) -> int:
    report = engine.tick()
    for r in report.results:
        print(
            f"{r.pipeline} {format_ts(r.window.start)} {r.outcome:9} rows={r.rows} bytes={r.bytes} "
            f"{r.seconds:.1f}s {r.error}".rstrip()
        )
    print(f"tick: {report.done} done, {report.failed} failed, {report.deferred} deferred")
    for name, error in report.errors.items():
        print(f"{name}: planning failed: {error}", file=sys.stderr)
    return 1 if report.failed or report.errors else 0


def _replay(engine: Engine, args: argparse.Namespace) -> int:
    try:
        pipeline = engine.settings.pipeline(args.pipeline)
    except KeyError:
        print(
            f"unknown pipeline {args.pipeline!r}; known: {[p.name for p in engine.settings.pipelines]}", file=sys.stderr
        )
        return 2
    try:
        result = engine.replay(pipeline, parse_timestamp(args.start), parse_timestamp(args.end), mode=args.mode)
    except ValueError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    for r in result.results:
        print(f"{r.pipeline} {format_ts(r.window.start)} {r.outcome:9} rows={r.rows} {r.error}".rstrip())
    if result.mode == "queued":
        print(f"queued {result.queued} of {len(result.windows)} windows for the next ticks")
    return 1 if any(r.outcome == "failed" for r in result.results) else 0


def _status(engine: Engine, args: argparse.Namespace) -> int:
    _print(engine.status(recent=args.recent))
    return 0


def _run(engine: Engine, args: argparse.Namespace) -> int:
    """A local scheduler: a tick at every schedule fire (or every N seconds) until Ctrl-C."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    schedule = args.schedule or engine.settings.schedule
    print(f"running; schedule {schedule if not args.every else f'every {args.every}s'}; Ctrl-C stops")
    try:
        while not stop.is_set():
            try:
                _tick(engine, args)
            except MoverError as exc:  # e.g. storage unreachable: keep the schedule, like the host
                print(f"tick failed: {exc}", file=sys.stderr)
            now = datetime.now(UTC)
            fire = now + timedelta(seconds=args.every) if args.every else next_fire(schedule, now)
            stop.wait(max(0.0, (fire - datetime.now(UTC)).total_seconds()))
    except KeyboardInterrupt:
        pass
    print("stopped")
    return 0


def _delta_maintenance(engine: Engine, args: argparse.Namespace) -> int:
    """Compact closed days and vacuum every Delta sink (what the optional maintenance timer runs)."""
    from shared.sinks.delta_maintenance import maintain_pipeline

    failed = 0
    for pipeline in engine.settings.pipelines:
        if args.pipeline and pipeline.name != args.pipeline:
            continue
        try:
            for done in maintain_pipeline(pipeline, now=datetime.now(UTC)):
                print(orjson.dumps(done.to_json()).decode())
        except MoverError as exc:
            print(f"{pipeline.name}: maintenance failed: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description="insights-mover engine")
    parser.add_argument("--settings", help="a local.settings.json whose Values are loaded into the environment")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tick", help="run every due window once, then exit")
    rp = sub.add_parser("replay", help="rerun the windows of a pipeline in [start, end)")
    rp.add_argument("--pipeline", required=True)
    rp.add_argument("--start", required=True, help="ISO 8601 UTC, e.g. 2026-11-02T10:00:00Z")
    rp.add_argument("--end", required=True)
    rp.add_argument("--mode", choices=("auto", "inline", "queue"), default="inline")
    st = sub.add_parser("status", help="print the ledger summary as JSON")
    st.add_argument("--recent", type=int, default=20)
    run = sub.add_parser("run", help="local scheduler loop")
    run.add_argument("--schedule", help="NCRONTAB; default MOVER_SCHEDULE")
    run.add_argument("--every", type=float, help="tick every N seconds instead of the schedule")
    dm = sub.add_parser("delta-maintenance", help="compact closed days and vacuum the Delta sinks' tables")
    dm.add_argument("--pipeline", help="only this pipeline")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # pool-size notices under concurrent downloads
    try:
        engine = _engine(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    commands = {"tick": _tick, "replay": _replay, "status": _status, "run": _run}
    commands["delta-maintenance"] = _delta_maintenance
    try:
        return commands[args.command](engine, args)
    finally:
        engine.close()


if __name__ == "__main__":
    sys.exit(main())
