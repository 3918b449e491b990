"""``python -m shared run`` and ``work``: the app's scaled-out shape as local processes.

``run`` without workers ticks in this process (inline dispatch). ``run --workers N`` is the
Azure shape on one machine: this process plans on the schedule and enqueues; N worker
processes (``python -m shared work``) take messages from the queue like the Functions
host's queue trigger. ``--until-idle`` exits once nothing is due, queued or running: 0 when
every window is done, 1 with the failed windows listed otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.app import App
from shared.engine.queue_loop import QueueLoop
from shared.errors import MoverError
from shared.model import format_ts
from shared.runtime.storage import queue_client

__all__ = ["IDLE_POLL", "failed_windows", "idle_report", "run", "start_workers", "stop_workers", "work"]

IDLE_POLL = 0.5  # seconds between idle checks while workers run a backfill (--until-idle): a few ledger reads


def idle_report(engine: App) -> tuple[int, list[dict[str, Any]]]:
    """(windows due, queued or running; failed windows) over every enabled pipeline."""
    from shared.windows import in_flight

    busy = 0
    now = engine.clock()
    pipelines = [p for p in engine.settings.pipelines if p.enabled]
    for pipeline in pipelines:
        plan = engine.planner.plan(pipeline, record=False)  # reads from the open mark; writes nothing
        requeue = engine.planner.requeue_after(pipeline)
        busy += len(plan.due) + sum(in_flight(s, now, requeue) or s.status == "queued" for s in plan.open_states)
    if busy:
        return busy, []
    return 0, failed_windows(engine, pipelines)


def failed_windows(engine: App, pipelines: list[Any]) -> list[dict[str, Any]]:
    """Every failed window, from the day rollups: only the days that hold one are read whole."""
    out: list[dict[str, Any]] = []
    now = engine.clock()
    for pipeline in pipelines:
        size = pipeline.window.size
        for day in engine.ledger.rollups.sums(pipeline.name, size, now):
            if not day.sums.status_counts().get("failed"):
                continue
            found = engine.ledger.rollups.day(pipeline.name, day.day, size, now)
            for i, code in enumerate(found.codes if found else ""):
                if code in "fxFX" and found is not None:
                    info = found.info.get(i, {})
                    start = format_ts(day.day + i * size)
                    out.append({"pipeline": pipeline.name, "window": start, "attempts": int(info.get("a", 0) or 0),
                                "error": str(info.get("e", ""))})  # fmt: skip
    return out


def start_workers(argv: list[str], count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` worker processes of ``argv``. They ignore Ctrl-C: the parent relays it as SIGTERM
    (``stop_workers``), so a worker finishes its message instead of dying mid-window."""
    return [
        subprocess.Popen(argv, env=os.environ.copy(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # noqa: S603
        for _ in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """SIGTERM every worker, wait for them, kill the ones that do not stop in time."""
    for proc in workers:
        proc.terminate()
    for proc in workers:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(engine: App, args: argparse.Namespace, tick: Any, next_fire: Any) -> int:
    """Plan (and with ``--workers`` enqueue) on the schedule until Ctrl-C, SIGTERM or idle."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    schedule = args.schedule or engine.settings.schedule
    argv = [sys.executable, "-m", "shared"] + (["--settings", args.settings] if args.settings else []) + ["work"]
    workers = start_workers(argv, args.workers)
    shape = (
        f"planner + {args.workers} worker process(es) on queue {engine.settings.queue_name}" if workers else "inline"
    )
    print(f"running ({shape}); schedule {schedule if not args.every else f'every {args.every}s'}; Ctrl-C stops")
    code: int | None = None
    try:
        while not stop.is_set() and code is None:
            try:
                tick(engine, args)
                code = _idle(engine) if args.until_idle else None
            except MoverError as exc:  # e.g. storage unreachable: keep the schedule, like the host
                print(f"tick failed: {exc}", file=sys.stderr)
            now = datetime.now(UTC)
            fire = now + timedelta(seconds=args.every) if args.every else next_fire(schedule, now)
            while code is None and not stop.is_set():  # workers finish between ticks: look for idle meanwhile
                left = (fire - datetime.now(UTC)).total_seconds()
                if left <= 0:
                    break
                stop.wait(min(left, IDLE_POLL) if args.until_idle and workers else left)
                if args.until_idle and workers and not stop.is_set():
                    try:
                        code = _idle(engine)
                    except MoverError as exc:
                        print(f"idle check failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        stop_workers(workers)
    print("stopped")
    return code or 0


def _idle(engine: App) -> int | None:
    """``None`` while anything is due, queued or running; else the exit code (1: failed windows), printed."""
    busy, failed = idle_report(engine)
    if busy:
        return None
    for f in failed:
        print(f"failed: {f['pipeline']} {f['window']} attempts={f['attempts']} {f['error']}")
    print(f"idle: nothing due, queued or running; {len(failed)} failed window(s)")
    return 1 if failed else 0


def work(engine: App, args: argparse.Namespace) -> int:
    """One worker process: take work messages like the host's queue trigger until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    state, name = engine.settings.state, engine.settings.queue_name
    poison = queue_client(state, f"{name}-poison")
    windows = QueueLoop(
        queue_client(state, name),
        lambda body, count: engine.handle(body, dequeue_count=count),
        poison=poison,
        max_dequeue=args.max_dequeue,
        batch=args.batch,
        new_batch_threshold=args.new_batch_threshold,
        invisible_for=int(max(60.0, engine.settings.checkpoint_after.total_seconds() * 1.5)),
    )
    reason = f"failed on all {args.max_dequeue} deliveries"
    poisoned = QueueLoop(poison, lambda body, count: engine.poisoned(body, reason=reason))
    print(f"worker {engine.owner} on queue {name}", flush=True)
    side = threading.Thread(target=poisoned.serve, args=(stop,), kwargs={"idle_wait": 2.0}, daemon=True)
    side.start()
    try:
        windows.serve(stop, idle_wait=args.idle_wait)
    except KeyboardInterrupt:
        stop.set()
    side.join(timeout=30)
    return 0
