"""``make fault``: a backfill under crashes, freezes, throttling, truncation and a storage outage; every row checked.

Why: the engine promises exactly-once outputs from at-least-once execution (data first,
then the ledger; ETag claims; leases; checkpoints; splits; retries). Unit tests check each
piece; only real processes dying or stalling at awkward moments show the pieces add up.

What runs, all on loopback, all started and stopped here:

* **Azurite** with persistence on disk, stopped once mid-run for longer than a lease
  and started again on the same ports;
* the **query API emulator** in its own process, answering 429 (``Retry-After``), 503,
  504, connection resets, bodies cut mid-stream and forced ``PartialError`` at random,
  rate-limiting like the service, and cutting every result over ``max_rows`` rows — so
  hours with more rows than that really are truncated and must be split;
* the **runners** — ``python -m shared run`` via ``devtools.faultsuite_runner``, two at
  once so claims race — SIGKILLed again and again per a seeded plan and restarted each
  time. A kill lands at a random moment (from outside) or at an exact fault point
  inside: after a claim, a query, a split, a staged block, a committed blob (ledger not
  yet updated), the manifest, a checkpoint, a heartbeat. A few times a runner is instead
  *frozen* (SIGSTOP) right before a commit or after a query for longer than its lease,
  then continued: a live owner whose windows others took over meanwhile. Long windows
  pause and resume often (short ``MOVER_CHECKPOINT_AFTER``), so chunks are in play too.

With ``--queue`` the slots hold queue workers instead, and the randomized queue run adds planner
processes, operator replays through the CLI, re-sweeps, overflow windows and the queue's own faults
(``devtools.faultsuite_queuerun``), ending with a final strike whose recovery is measured.

When the ledger says every window is done, ``faultsuite_check`` reads every output
blob and compares it with the emulator's rows. The last line printed is::

    FAULTS {"kills": …, "windows": …, "rows_source": …, "rows_out": …, "lost": 0, "duplicated": 0, …}

and the exit status is non-zero when anything was lost, duplicated, wrong or unfinished.
``tests/integration/test_faults.py`` runs the queue run with ``SMALL_QUEUE`` figures.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx
from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from devtools.azurite import Azurite
from devtools.faultsuite_check import PipelineRange, Verdict, verify
from devtools.faultsuite_config import FULL, FULL_QUEUE, SMALL, SMALL_QUEUE, SuiteConfig
from devtools.faultsuite_depth import measure
from devtools.faultsuite_procs import Kill, clean_env, kill_plan, terminate
from devtools.faultsuite_queue import QUEUE_NAME
from devtools.faultsuite_queuerun import QueueRun
from devtools.faultsuite_result import SuiteResult
from devtools.faultsuite_runner import MISSING
from devtools.faultsuite_settle import closed_by_window, settle
from devtools.faultsuite_workers import Workers
from shared.durations import parse_duration
from shared.errors import MoverError
from shared.ledger import Ledger
from shared.model import format_ts

__all__ = [
    "FULL", "FULL_QUEUE", "SMALL", "SMALL_QUEUE", "Kill", "SuiteConfig", "SuiteResult", "kill_plan", "main",
    "run_suite",
]  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent
APP_ID = "faultsuite-app"
TOKEN = "faultsuite-token"  # noqa: S105 - the emulator's throwaway local token
LEDGER_TABLE = "faultledger"
CONTAINER = "faultsuite-out"
HOUR = timedelta(hours=1)
_STATUSES = ("pending", "queued", "running", "done", "failed")


# -- processes ---------------------------------------------------------------------------------------


def _pump(stream: IO[bytes], lines: queue.Queue[bytes]) -> None:
    for line in stream:
        lines.put(line)


@contextmanager
def emulator_process(config: SuiteConfig, log: IO[bytes]) -> Iterator[str]:
    """The query API emulator in its own process (faults seeded); yields its base URL."""
    args = [
        sys.executable, "-m", "devtools.ai_emulator", "--port", "0", "--no-seeder", "--app-id", APP_ID,
        "--token", TOKEN, "--api-key", "", "--max-rows", str(config.max_rows), "--seed", str(config.seed),
    ]  # fmt: skip
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        args, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        try:
            url = lines.get(timeout=60).decode().strip()
        except queue.Empty:
            raise RuntimeError("the emulator printed no URL within 60 s") from None
        if not url.startswith("http://"):
            raise RuntimeError(f"the emulator printed {url!r} instead of its URL (exit code {proc.poll()})")
        faults = f"{url}/_emulator/faults"
        for scripted in ({"status": 429, "count": 2, "retry_after": 1}, {"status": 503, "count": 1}):
            httpx.post(faults, json=scripted, timeout=30).raise_for_status()  # every run sees each kind
        rates = dict(config.fault_rates)  # the control API takes every kind, "truncate" included
        httpx.post(faults, json={"rates": rates, "seed": config.seed}, timeout=30).raise_for_status()
        yield url
    finally:
        terminate(proc)


# -- the run ----------------------------------------------------------------------------------------


class _Suite:
    """Starts the processes, drives kills and the storage outage, polls the ledger, verifies."""

    def __init__(self, config: SuiteConfig, workdir: Path, say: Callable[[str], None]) -> None:
        self.config = config
        self.workdir = workdir
        self.say = say
        self.rng = random.Random(config.seed)
        self.began = time.monotonic()
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = now - (config.hours + 2) * HOUR  # every window long closed (delay PT5M), no row late
        self.pipelines = [PipelineRange(t, t, start, config.hours) for t in config.tables]
        self.result = SuiteResult(config, Verdict())
        self.q = QueueRun(config, self.pipelines, workdir, self.rng, self.log) if config.queue else None
        self.progress = 0.0  # the most windows ever final at once, as a fraction (replays reopen some)
        plan = kill_plan(self.rng, config.kills, config.kill_after, config.nth_max, config.freezes)
        self.workers = Workers(config, workdir, ROOT, plan, self.result, self.log, self._fault)

    def log(self, message: str) -> None:
        wall = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-4]  # the processes' logs carry this clock
        self.say(f"[{time.monotonic() - self.began:6.1f}s {wall}] {message}")

    def run(self) -> SuiteResult:
        cfg = self.config
        with ExitStack() as stack:
            azurite = Azurite(location=str(self.workdir / "azurite"))
            stack.callback(azurite.stop)
            azurite.start()
            emu_log = stack.enter_context((self.workdir / "emulator.log").open("wb"))
            url = stack.enter_context(emulator_process(cfg, emu_log))
            control = stack.enter_context(httpx.Client(base_url=url, timeout=120))
            stack.callback(self.workers.kill_all)  # on errors and Ctrl-C; the normal end stops them gently first
            self.log(f"azurite :{azurite.blob_port} (data in {self.workdir}), emulator {url}")
            rows = self._seed(control)
            self.log(f"seeded {rows:,} rows: {len(self.pipelines)} tables × {cfg.hours} hourly windows")
            # retry_total=0: while Azurite is down a progress poll fails at once instead of stalling the loop.
            ledger = Ledger(TableServiceClient.from_connection_string(azurite.connection_string, retry_total=0),
                            LEDGER_TABLE)  # fmt: skip
            env = self._runner_env(azurite.connection_string, url)
            full = Ledger(TableServiceClient.from_connection_string(azurite.connection_string), LEDGER_TABLE)
            if self.q is not None:
                env = {**env, **self.q.env()}
                stack.callback(self.q.stop)
                self.q.start(azurite.connection_string, env, full, control, ROOT)
            self.log(f"kill plan ({cfg.runners} runners): " + ", ".join(map(str, self.workers.plan)))
            if self.q is not None:
                self.log("planner kill plan: " + ", ".join(map(str, self.q.planners.plan)))
            self._drive(env, ledger, azurite, control)
            if azurite.proc is None:  # the deadline passed while it was down: the verdict needs it
                azurite.start()
            if self.q is not None:
                self.q.stop_planners()
                if not self.result.timed_out:
                    self.q.chaos.finish(full, time.monotonic() + 90)
            self.workers.stop()
            if self.q is not None:
                self.q.stop()
                self._queue_figures(full)
            logs = [p.read_text(errors="replace") for p in sorted(self.workdir.glob("runner-*.log"))]
            self.result.splits_logged = sum(text.count("partial result") for text in logs)
            self.result.pauses_logged = sum(text.count("; paused, resumes") for text in logs)
            self.result.missing_hooks = [
                line.split(MISSING, 1)[1].strip() for text in logs for line in text.splitlines() if MISSING in line
            ]
            stats = control.get("/_emulator/stats").json()
            self.result.throttled = int(stats["throttled"])
            self.result.partials_served = int(stats["partials"])
            self.result.overflows_served = int(stats.get("overflows", 0))
            self.result.warnings_served = int(stats.get("warnings", 0))
            self.log("backfill over; reading every output blob and comparing it with the source")
            blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
            closed = {(p, k) for p, k, _ in self.result.settled.closed} if self.result.settled else set()
            self.result.verdict = verify(
                self.pipelines, container=blobs.get_container_client(CONTAINER), ledger=full, control=control,
                closed=closed,
            )  # fmt: skip
        self.result.seconds = time.monotonic() - self.began
        return self.result

    def _queue_figures(self, ledger: Ledger) -> None:
        """The queue run's own checks, once everything has stopped: final states, replays, recovery, depth."""
        assert self.q is not None
        q, cfg, result = self.q, self.config, self.result
        q.chaos.count_logs()
        result.queue = dict(q.chaos.counts)
        result.queue_failures = q.chaos.failures()
        result.planner_kills = list(q.planners.kills)
        result.planners = {"incarnations": q.planners.started, "most_at_once": q.planners.most_at_once,
                           "seconds_with_two": round(q.planners.seconds_two, 1), "crashes": len(q.planners.crashes)}
        result.replays = list(q.operator.replays)
        faults = list(q.faults) + [(r.ended, f"{r} died") for r in result.replays if r.killed and r.ended]
        states = {spec.name: list(ledger.states(spec.name)) for spec in self.pipelines}
        bound = timedelta(seconds=cfg.queue_visibility) + parse_duration(cfg.lease)
        result.settled = settle(self.pipelines, states, q.accepted(), faults, bound)
        if q.depth is not None:
            sweeps = 2 if cfg.resweep_lookback else 1
            result.depth = measure(
                self.workdir, QUEUE_NAME, q.depth, suite_deleted=q.chaos.deleted, down=self.workers.down,
                bound=len(self.pipelines) * cfg.max_per_tick * sweeps, replayed=q.replayed(),
                limit=bound.total_seconds(), began=time.time() - (time.monotonic() - self.began),
            )  # fmt: skip

    def _seed(self, control: httpx.Client) -> int:
        """Rows per (table, hour) drawn from the seeded RNG; all ingested long before the run."""
        total = 0
        low, high = self.config.rows_per_hour
        for t, spec in enumerate(self.pipelines):
            for i, window in enumerate(spec.windows()):
                count = self.rng.randint(low, high)
                body = {"table": spec.table, "start": format_ts(window.start), "end": format_ts(window.end),
                        "count": count, "seed": self.config.seed + 1000 * t + i, "late_fraction": 0.0}  # fmt: skip
                control.post("/_emulator/generate", json=body).raise_for_status()
                total += count
                if self.q is not None:
                    self.q.rows[f"{spec.name} {window.key}"] = count
        return total

    def _runner_env(self, storage: str, url: str) -> dict[str, str]:
        """The runners' app settings: short lease, fast window retries (and re-sweeps in the queue run)."""
        cfg = self.config
        end = self.pipelines[0].start + cfg.hours * HOUR
        pipelines = [
            {
                "name": spec.name,
                "source": {"kind": "app_insights", "app_id": APP_ID, "endpoint": url, "query": spec.table,
                           "auth": {"kind": "token", "setting": "FAULTSUITE_TOKEN"},
                           "max_rows_per_query": cfg.max_rows_per_query, "max_retries": 10, "timeout_seconds": 30},
                "window": {"size": "PT1H", "start": format_ts(spec.start), "end": format_ts(end), "delay": "PT5M",
                           "max_per_tick": cfg.max_per_tick, "max_attempts": cfg.max_attempts, "retry_backoff": "PT1S",
                           "lease": cfg.lease} | ({"resweep_lookback": cfg.resweep_lookback} if cfg.resweep_lookback
                                                  else {}),
                "sink": {"container": CONTAINER, "format": "jsonl"},
            }
            for spec in self.pipelines
        ]  # fmt: skip
        return clean_env() | {
            "AzureWebJobsStorage": storage,
            "FAULTSUITE_TOKEN": TOKEN,
            "MOVER_PIPELINES": json.dumps({"pipelines": pipelines}),
            "MOVER_LEDGER_TABLE": LEDGER_TABLE,
            "MOVER_QUARANTINE_CONTAINER": "faultsuite-quarantine",
            "MOVER_MAX_CONCURRENCY": str(cfg.concurrency),
            "MOVER_TIME_BUDGET": "PT2M",
            "MOVER_CHECKPOINT_AFTER": cfg.checkpoint_after,
            "PYTHONUNBUFFERED": "1",
        }

    def _drive(self, env: Mapping[str, str], ledger: Ledger, azurite: Azurite, control: httpx.Client) -> None:
        """Until every window is done: keep the runner slots filled, arm and fire kills in step
        with progress, take Azurite away once, print progress. Polls with short waits; the
        deadline bounds it."""
        cfg, result = self.config, self.result
        total = len(self.pipelines) * cfg.hours
        deadline = self.began + cfg.deadline
        next_poll = next_progress = 0.0
        storage_back_at: float | None = None  # set while Azurite is down
        wake = threading.Event()  # never set: the waits below are poll intervals
        while True:
            now = time.monotonic()
            if now > deadline:
                result.timed_out = True
                self.log(f"deadline of {cfg.deadline:.0f}s passed; stopping")
                return
            if storage_back_at is not None and now >= storage_back_at:
                azurite.start()
                storage_back_at = None
                result.storage_restarts += 1
                self._fault("Azurite restarted")
                self.log("Azurite started again (same ports, same data on disk)")
                self.workers.storage_back()
            self.workers.keep(now, env, self.progress)
            if now >= next_poll and storage_back_at is None:
                next_poll = now + (0.5 if self.q is None else 0.2)
                counts = self._statuses(ledger)
                if counts is not None:
                    self.progress = max(self.progress, counts["final"] / total)
                if self.q is not None and counts is not None:
                    quiet = self.workers.quiet and result.storage_restarts > 0
                    self.q.step(env, ROOT, counts=counts, total=total, ledger=ledger, progress=self.progress,
                                quiet=quiet, kill_worker=self.workers.kill_pid)  # fmt: skip
                if counts is not None:
                    if now >= next_progress:
                        next_progress = now + cfg.progress_every
                        self._progress(counts, total, control)
                    if self.q.finished if self.q is not None else counts["done"] == total:
                        self.log(f"all {total} windows final")
                        return
                    if not result.storage_restarts and counts["final"] >= cfg.storage_outage_at * total:
                        self.log(f"stopping Azurite for {cfg.storage_down:.0f}s ({counts['final']}/{total} final)")
                        azurite.stop()
                        storage_back_at = time.monotonic() + cfg.storage_down
            wake.wait(0.05)

    def _fault(self, what: str) -> None:
        if self.q is not None:
            self.q.fault(what)

    def _statuses(self, ledger: Ledger) -> Counter[str] | None:
        """Window counts by status (unrecorded windows count as pending); ``None`` while storage is away."""
        counts: Counter[str] = Counter()
        try:
            for spec in self.pipelines:
                for state in ledger.states(spec.name):
                    counts[state.status] += 1
                    counts["closed"] += closed_by_window(state)
        except (AzureError, MoverError):
            return None
        counts["pending"] += len(self.pipelines) * self.config.hours - sum(counts[s] for s in _STATUSES)
        counts["final"] = counts["done"] + counts["closed"]
        return counts

    def _progress(self, counts: Counter[str], total: int, control: httpx.Client) -> None:
        try:
            stats: dict[str, Any] = control.get("/_emulator/stats", timeout=5).json()
        except httpx.HTTPError:
            stats = {}
        status = stats.get("status_counts", {})
        self.log(
            f"windows done {counts['done']}/{total}, running {counts['running']}, failed {counts['failed']}, "
            f"pending {counts['pending']} | kills {len(self.result.kills)}/{self.config.kills}, "
            f"freezes {len(self.result.freezes)}/{self.config.freezes}, "
            f"incarnations {self.result.runners} | emulator: {stats.get('throttled', '?')}×429 "
            f"{status.get('503', 0)}×503 {status.get('504', 0)}×504 {stats.get('resets', '?')} resets "
            f"{stats.get('partials', '?')} partial"
        )


def run_suite(config: SuiteConfig = FULL, *, workdir: Path | None = None,
              say: Callable[[str], None] = print) -> SuiteResult:  # fmt: skip
    """Run the suite once; every process it started is stopped when it returns or raises.

    ``workdir`` holds Azurite's data and every process log (default: a temporary folder,
    removed after a passing run, kept and named after a failing one).
    """
    owned = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="faultsuite-")) if workdir is None else workdir
    folder.mkdir(parents=True, exist_ok=True)
    passed = False
    try:
        result = _Suite(config, folder, say).run()
        passed = result.ok
        return result
    finally:
        if owned and passed:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            say(f"logs and Azurite data in {folder}")


def _seed(text: str) -> int:
    return random.SystemRandom().randrange(1, 2**31) if text == "random" else int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.faultsuite", description="fault-injection suite")
    parser.add_argument("--small", action="store_true", help="the smaller run of make test")
    parser.add_argument("--queue", action="store_true", help="planners + queue workers, and the queue's own faults")
    parser.add_argument("--seed", type=_seed, help="RNG seed of data, fault plans and emulator faults; 'random': a new"
                        " one (printed on the FAULTS line, so the run can be repeated with it)")
    parser.add_argument("--kills", type=int, help="SIGKILLs of runner processes")
    parser.add_argument("--hours", type=int, help="hourly windows per pipeline")
    parser.add_argument("--runners", type=int, help="runner processes at once")
    parser.add_argument("--deadline", type=float, help="seconds the backfill may take")
    parser.add_argument("--workdir", type=Path, help="keep Azurite data and logs here")
    args = parser.parse_args(argv)
    names = ("seed", "kills", "hours", "runners", "deadline")
    given = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    base = (SMALL_QUEUE if args.small else FULL_QUEUE) if args.queue else (SMALL if args.small else FULL)
    config = replace(base, **given)

    def on_term(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)  # cleanup runs on `kill` as on Ctrl-C

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        result = run_suite(config, workdir=args.workdir, say=say)
    except KeyboardInterrupt:
        say("interrupted; every process the suite started is stopped")
        return 130
    for problem in result.verdict.problems:
        say(f"  problem: {problem}")
    for crash in result.crashes:
        say(f"  runner crash: {crash}")
    for failure in result.failures:
        say(f"FAILED: {failure}")
    say(result.details_line())
    say(result.faults_line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
