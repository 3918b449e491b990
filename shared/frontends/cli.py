"""Command line: ``python -m shared tick | replay | status | run | work | estimate | verify``.

Settings come from the environment, like in Azure; ``--settings local.settings.json``
(default: that file in the current folder, if the environment has no pipelines) loads
its ``Values`` first, like ``func start`` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from shared import redact
from shared.app import App
from shared.durations import parse_timestamp
from shared.errors import ConfigError, MoverError
from shared.frontends.params import BadRequest, time_range
from shared.model import format_ts
from shared.runtime import telemetry
from shared.settings import Pipeline, load_local_settings, load_settings

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


def _engine(args: argparse.Namespace) -> App:
    env = dict(os.environ)
    path = Path(args.settings) if args.settings else Path("local.settings.json")
    if args.settings or ("MOVER_PIPELINES" not in env and path.is_file()):
        env = {**load_local_settings(path), **env}  # like func start: the environment wins
    telemetry.configure(env)
    settings = load_settings(env)
    # One-shot commands and a worker-less ``run`` move windows here; a planner with workers, or
    # ``tick --enqueue``, uses the queue like the function app does.
    queued = args.command == "work" or getattr(args, "workers", 0) or getattr(args, "enqueue", False)
    return App(dataclasses.replace(settings, dispatch="queue" if queued else "inline"))


def _tick(engine: App, args: argparse.Namespace) -> int:
    report = engine.tick()
    if engine.settings.dispatch == "queue":
        print(f"tick: {report.queued} window(s) queued, {report.sweeps} re-sweep(s) queued")
        for name, error in report.errors.items():
            print(f"{name}: planning failed: {error}", file=sys.stderr)
        return 1 if report.errors else 0
    for r in report.results:
        print(
            f"{r.pipeline} {format_ts(r.window.start)} {r.outcome:9} rows={r.rows} bytes={r.bytes} "
            f"{r.seconds:.1f}s {r.error}".rstrip()
        )
    print(f"tick: {report.done} done, {report.failed} failed, {report.deferred} deferred")
    for name, error in report.errors.items():
        print(f"{name}: planning failed: {error}", file=sys.stderr)
    return 1 if report.failed or report.errors else 0


def _pipeline(engine: App, name: str) -> Pipeline | None:
    """The pipeline called ``name``, or ``None`` after saying which ones exist."""
    try:
        return engine.settings.pipeline(name)
    except KeyError:
        print(f"unknown pipeline {name!r}; known: {[p.name for p in engine.settings.pipelines]}", file=sys.stderr)
        return None


def _replay(engine: App, args: argparse.Namespace) -> int:
    pipeline = _pipeline(engine, args.pipeline)
    if pipeline is None:
        return 2
    try:
        start, end = parse_timestamp(args.start), parse_timestamp(args.end)
        time_range(pipeline, start, end, engine.clock())  # nothing is written for a range without windows
        result = engine.replayer.replay(pipeline, start, end, mode=args.mode)
    except (ValueError, BadRequest) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    except MoverError as exc:  # a queued request could not be written (the ledger unreachable): nothing was
        print(f"replay failed, nothing was requested: {exc}", file=sys.stderr)
        return 2
    for r in result.results:
        print(f"{r.pipeline} {format_ts(r.window.start)} {r.outcome:9} rows={r.rows} {r.error}".rstrip())
    if result.mode == "queued":
        print(f"queued {result.queued} of {len(result.windows)} windows for the next ticks")
    return 1 if any(r.outcome == "failed" for r in result.results) else 0


def _status(engine: App, args: argparse.Namespace) -> int:
    from shared.ops.status import StatusView

    try:
        since = parse_timestamp(args.since) if args.since else None
        until = parse_timestamp(args.until) if args.until else None
    except ValueError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 2
    if args.pipeline and _pipeline(engine, args.pipeline) is None:
        return 2
    _print(engine.status(view=StatusView(since, until, recent=args.recent), only=args.pipeline))
    return 0


def _rollups(engine: App, args: argparse.Namespace) -> int:
    """Build the day rollups of a ledger written before they existed; safe while the mover runs."""
    failed = 0
    for pipeline in engine.settings.pipelines:
        if args.pipeline and pipeline.name != args.pipeline:
            continue
        built = 0
        while True:
            try:
                step = engine.planner.build_history(pipeline, max_days=args.days)
            except MoverError as exc:
                print(f"{pipeline.name}: rollups not built: {exc}", file=sys.stderr)
                failed += 1
                break
            built += step.built_now
            if step.done or step.next_day is None:
                print(f"{pipeline.name}: rollups complete ({built} day(s) built now)", flush=True)
                break
            print(f"{pipeline.name}: {built} day(s) built, next {format_ts(step.next_day)}", flush=True)
    return 1 if failed else 0


def _run(engine: App, args: argparse.Namespace) -> int:
    """A local scheduler: a tick at every schedule fire (or every N seconds) until Ctrl-C (see ``cli_run``)."""
    from shared.frontends import cli_run

    return cli_run.run(engine, args, _tick, next_fire)


def _work(engine: App, args: argparse.Namespace) -> int:
    from shared.frontends import cli_run

    return cli_run.work(engine, args)


def _bounds(engine: App, args: argparse.Namespace) -> Any:
    """(pipeline, range, notes) of ``--pipeline/--start/--end``, or an exit code after saying why."""
    from shared.ops.estimate import resolve_range

    pipeline = _pipeline(engine, args.pipeline)
    if pipeline is None:
        return 2
    try:
        start = parse_timestamp(args.start) if args.start else None
        end = parse_timestamp(args.end) if args.end else None
        rng, notes = resolve_range(pipeline, engine.clock(), start, end)
    except ValueError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2
    return pipeline, rng, notes


def _estimate(engine: App, args: argparse.Namespace) -> int:
    """Rows, bytes, queries, time and output size of a backfill; moves nothing, writes nothing."""
    from shared.ops.estimate import estimate, render_table

    checked = _bounds(engine, args)
    if isinstance(checked, int):
        return checked
    pipeline, rng, notes = checked
    try:
        doc = estimate(engine.source(pipeline), pipeline, rng, notes=notes).as_dict()
    except MoverError as exc:
        print(f"estimate failed: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _print(doc)
    else:
        print(render_table(doc))
    return 0


def _verify(engine: App, args: argparse.Namespace) -> int:
    """0 when every done window in the range is complete, 1 when any is short, over or missing,
    2 when it could not run (bad arguments, source or ledger unreadable)."""
    from shared.frontends.http_ops import run_verify

    checked = _bounds(engine, args)
    if isinstance(checked, int):
        return checked
    pipeline, rng, notes = checked
    try:
        result = run_verify(engine, pipeline, rng, deadline=None, repair=args.repair)
    except MoverError as exc:  # the source or the ledger cannot be read: nothing was verified
        print(f"verify failed: {exc}", file=sys.stderr)
        return 2
    result.notes[:0] = notes
    doc = result.as_dict(windows="all" if args.all else "bad")
    if args.json:
        _print(doc)
    else:
        for w in doc["windows"]:
            print(f"{w['start']} {w['verdict']:8} ledger={w['ledger_rows']} source={w['source_rows']} {w['detail']}")
        c = doc["counts"]
        print(
            f"verify {pipeline.name}: {doc['checked']} done windows checked: {c['complete']} complete, {c['short']}"
            f" short, {c['over']} over, {c['missing']} missing; {doc['not_done']} not done"
            + (f"; queued {doc['repaired']} for replay" if args.repair else "")
        )
        for note in doc["notes"]:
            print(f"note: {note}")
    return 0 if result.ok else 1


def _delta_maintenance(engine: App, args: argparse.Namespace) -> int:
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
    redact.install_log_redaction()
    parser = argparse.ArgumentParser(prog="python -m shared", description="insights-mover engine")
    parser.add_argument("--settings", help="a local.settings.json whose Values are loaded into the environment")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    tk = sub.add_parser("tick", help="run every due window once, then exit")
    tk.add_argument("--enqueue", action="store_true", help="plan and enqueue for queue workers instead of running here")
    rp = sub.add_parser("replay", help="rerun the windows of a pipeline in [start, end)")
    rp.add_argument("--pipeline", required=True)
    rp.add_argument("--start", required=True, help="ISO 8601 UTC, e.g. 2026-11-02T10:00:00Z")
    rp.add_argument("--end", required=True)
    rp.add_argument("--mode", choices=("auto", "inline", "queue"), default="inline")
    st = sub.add_parser("status", help="print the ledger summary as JSON")
    st.add_argument("--recent", type=int, default=20)
    st.add_argument("--pipeline", help="only this pipeline")
    st.add_argument("--from", dest="since", help="windows starting at or after (ISO 8601 UTC); default the newest")
    st.add_argument("--to", dest="until", help="windows starting before (ISO 8601 UTC)")
    ru = sub.add_parser("rollups", help="build the status rollups of a ledger from before them (safe while running)")
    ru.add_argument("--pipeline", help="only this pipeline")
    ru.add_argument("--days", type=int, default=31, help="days built per step (progress is printed per step)")
    run = sub.add_parser("run", help="local scheduler loop")
    run.add_argument("--schedule", help="NCRONTAB; default MOVER_SCHEDULE")
    run.add_argument("--every", type=float, help="tick every N seconds instead of the schedule")
    run.add_argument("--workers", type=int, default=0, help="start N worker processes on the work queue")
    run.add_argument("--until-idle", action="store_true", help="exit once nothing is due, queued or running")
    run.add_argument("--enqueue", action="store_true", help="plan and enqueue only; workers run elsewhere (work)")
    wk = sub.add_parser("work", help="one queue worker process (what the queue-triggered function does)")
    wk.add_argument("--batch", type=int, default=2, help="messages taken at a time (host.json batchSize)")
    wk.add_argument("--new-batch-threshold", type=int, default=2, help="fetch more when this few are left (host.json)")
    wk.add_argument("--max-dequeue", type=int, default=5, help="deliveries before a message goes to the poison queue")
    wk.add_argument("--idle-wait", type=float, default=0.5, help="seconds to wait when the queue is empty")
    for name, text in (
        ("estimate", "estimate a backfill (rows, GB, queries, time, output size)"),
        ("verify", "recount the source for every done window and compare (exit 1 if any is bad)"),
    ):
        op = sub.add_parser(name, help=text)
        op.add_argument("--pipeline", required=True)
        op.add_argument("--start", help="ISO 8601 UTC; default the pipeline's start")
        op.add_argument("--end", help="ISO 8601 UTC; default the latest closed window")
        op.add_argument("--json", action="store_true", help="print one JSON document")
        if name == "verify":
            op.add_argument("--repair", action="store_true", help="queue bad windows for replay")
            op.add_argument("--all", action="store_true", help="list every window, not only bad ones")
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
    commands = {"tick": _tick, "replay": _replay, "status": _status, "run": _run, "work": _work, "rollups": _rollups}
    commands |= {"estimate": _estimate, "verify": _verify}
    commands["delta-maintenance"] = _delta_maintenance
    try:
        return commands[args.command](engine, args)
    finally:
        engine.close()


if __name__ == "__main__":
    sys.exit(main())
