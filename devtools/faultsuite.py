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

When the ledger says every window is done, ``faultsuite_check`` reads every output
blob and compares it with the emulator's rows. The last line printed is::

    FAULTS {"kills": …, "windows": …, "rows_source": …, "rows_out": …, "lost": 0, "duplicated": 0, …}

and the exit status is non-zero when anything was lost, duplicated, wrong or unfinished.
``tests/integration/test_faults.py`` runs the same code with ``SMALL`` figures.
"""

from __future__ import annotations

import argparse
import json
import os
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
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
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
from devtools.faultsuite_queue import QueueChaos
from devtools.faultsuite_runner import ARM_ENV, FROZEN, MARKER, MISSING
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
# Kinds every plan holds (as far as its size allows), most telling first: data committed
# but the ledger not updated; mid-window queries; staged uncommitted blocks; any moment; …
MUST_HIT = ("commit", "query", "stage", "time", "split", "manifest", "checkpoint", "claim", "renew")
_WEIGHTS = {"time": 4, "query": 2, "commit": 2, "stage": 2, "split": 1, "manifest": 1, "checkpoint": 1, "claim": 1,
            "renew": 1}  # fmt: skip
# Small n: an incarnation gets little done before its kill, so kills spread over the backfill.
_NTH = {"query": (2, 12), "split": (1, 3), "stage": (1, 3), "commit": (1, 3), "manifest": (1, 3), "checkpoint": (1, 2),
        "claim": (1, 4), "renew": (1, 2)}  # fmt: skip


@dataclass(frozen=True)
class SuiteConfig:
    """Figures of one run. ``FULL`` is ``make fault``; ``SMALL`` runs in ``make test``."""

    tables: tuple[str, ...] = ("requests", "dependencies", "traces")  # one pipeline per table
    hours: int = 16  # hourly windows per pipeline
    rows_per_hour: tuple[int, int] = (1000, 12000)  # uniform per (table, hour)
    runners: int = 2  # runner processes at once: their claims race on ETags
    kills: int = 24  # planned; kills armed when the backfill ends do not happen …
    min_kills: int = 20  # … so the run fails only below this
    kills_by: float = 0.0  # > 0: arm kills in step with progress, all by this fraction of windows done; 0: at once
    kill_after: tuple[float, float] = (1.0, 4.0)  # kills from outside: seconds after arming
    freezes: int = 3  # SIGSTOP a runner mid-window (before a commit or a manifest, after a query) past its lease,
    freeze_for: float = 12.0  # then SIGCONT: a live owner whose windows others took over (seconds; > 2 leases)
    nth_max: int = 12  # a fault point kills at its n-th pass, n ≤ this (see _NTH)
    point_timeout: float = 6.0  # an armed fault point not reached by then (storage up) → killed from outside
    max_rows: int = 3000  # emulator result cap: more rows come back as PartialError
    max_rows_per_query: int = 5000  # engine sub-window (checkpoint step) size: above max_rows on purpose
    fault_rates: tuple[tuple[str, float], ...] = (
        ("429", 0.04), ("503", 0.03), ("504", 0.01), ("partial", 0.04), ("reset", 0.01), ("truncate", 0.01),
    )  # fmt: skip
    storage_outage_at: float = 0.4  # fraction of windows done when Azurite is stopped …
    storage_down: float = 6.0  # … and seconds until it is started again (longer than the lease)
    lease: str = "PT5S"
    checkpoint_after: str = "PT0.2S"  # MOVER_CHECKPOINT_AFTER: long windows pause and resume (chunk parts) often
    concurrency: int = 3
    max_per_tick: int = 4
    seed: int = 20261102
    deadline: float = 480.0  # seconds for the backfill; unfinished windows then fail the run
    progress_every: float = 2.0
    # queue mode (devtools.faultsuite_queue): planners + workers on the work queue, and its faults
    queue: bool = False
    planners: int = 2  # planner processes at once
    duplicates: int = 6  # copies of waiting messages sent
    stale: int = 8  # messages of done windows sent again (half mid-run, the rest at the end)
    lost: int = 3  # messages deleted right after they were enqueued
    poison: int = 1  # windows whose message fails every delivery until the suite lifts it and replays
    queue_visibility: float = 4.0  # seconds a window may stay queued before its message counts as lost
    retry_after: int = 1  # seconds a failed message stays invisible
    max_dequeue: int = 3  # deliveries before the poison queue


FULL = SuiteConfig()
SMALL = SuiteConfig(
    tables=("requests", "traces"), hours=8, rows_per_hour=(1000, 10000), runners=3, kills=6, min_kills=5, freezes=2,
    nth_max=1,
    kill_after=(0.5, 3.0), point_timeout=6.0, storage_outage_at=0.5, storage_down=4.0, deadline=240.0,
    progress_every=5.0,
)  # fmt: skip
FULL_QUEUE = replace(FULL, queue=True, runners=3, seed=20261202)
SMALL_QUEUE = replace(SMALL, queue=True, duplicates=4, stale=6, lost=2, seed=20261202)


@dataclass(frozen=True)
class Kill:
    """One planned fault of a runner: SIGKILL at the ``nth`` pass of fault ``point``, or ``after``
    seconds after arming (``point == "time"``); with ``freeze``, SIGSTOP at that point instead."""

    point: str
    nth: int = 0
    after: float = 0.0
    freeze: bool = False

    def __str__(self) -> str:
        where = f"time+{self.after:.1f}s" if self.point == "time" else f"{self.point}:{self.nth}"
        return f"freeze@{where}" if self.freeze else where


def kill_plan(
    rng: random.Random, count: int, after: tuple[float, float], nth_max: int = 12, freezes: int = 0
) -> list[Kill]:
    """``count`` kills and ``freezes`` freezes in random order; every kind in ``MUST_HIT`` is among
    the kills while their count allows."""
    kinds = list(MUST_HIT[:count])
    kinds += rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()), k=count - len(kinds))
    kinds += [("freeze-precommit", "freeze-premanifest", "freeze-query")[i % 3] for i in range(freezes)]
    rng.shuffle(kinds)
    plan: list[Kill] = []
    for kind in kinds:
        if kind == "freeze-precommit":  # rows read, about to commit (the whole window, or a paused chunk)
            plan.append(Kill("precommit", nth=rng.randint(1, 2), freeze=True))
        elif kind == "freeze-premanifest":  # files committed, the manifest next
            plan.append(Kill("premanifest", nth=rng.randint(1, 2), freeze=True))
        elif kind == "freeze-query":  # mid-read
            plan.append(Kill("query", nth=rng.randint(2, 6), freeze=True))
        elif kind == "time":
            plan.append(Kill(kind, after=round(rng.uniform(*after), 2)))
        else:
            low, high = _NTH[kind]
            plan.append(Kill(kind, nth=rng.randint(min(low, nth_max), min(high, nth_max))))
    return plan


@dataclass
class SuiteResult:
    """Counters of one run plus the verdict; ``faults_line`` is the machine-readable summary."""

    config: SuiteConfig
    verdict: Verdict
    kills: list[str] = field(default_factory=list)  # where each kill landed
    freezes: list[str] = field(default_factory=list)  # runners frozen past their lease
    crashes: list[str] = field(default_factory=list)  # runner exits nobody asked for: the last log line
    storage_restarts: int = 0
    throttled: int = 0
    partials_served: int = 0
    splits_logged: int = 0  # "partial result" lines in every runner's log (killed runs included)
    pauses_logged: int = 0  # windows paused at a checkpoint, resumed by a later tick
    missing_hooks: list[str] = field(default_factory=list)  # fault points the engine no longer has
    hangs: list[str] = field(default_factory=list)  # runners that did not stop within a minute of SIGTERM
    runners: int = 0  # incarnations started
    seconds: float = 0.0
    timed_out: bool = False
    queue: dict[str, int] = field(default_factory=dict)  # queue mode: faults done to the work queue
    queue_failures: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        out: list[str] = list(self.queue_failures)
        v = self.verdict
        if v.lost or v.duplicated:
            out.append(f"{v.lost} rows lost, {v.duplicated} duplicated")
        if v.foreign or v.misplaced or v.mismatched:
            out.append(f"{v.foreign} foreign, {v.misplaced} misplaced, {v.mismatched} mismatched rows")
        if v.windows_done != v.windows:
            out.append(f"{v.windows - v.windows_done} of {v.windows} windows not done")
        if v.stray_blobs or v.ledger_mismatches:
            out.append(f"{v.stray_blobs} stray blobs, {v.ledger_mismatches} ledger/blob mismatches")
        if len(self.kills) < self.config.min_kills:
            out.append(f"only {len(self.kills)} kills (of {self.config.kills} planned) happened before the backfill"
                       f" ended; {self.config.min_kills} needed")  # fmt: skip
        if len(self.freezes) < self.config.freezes:
            out.append(f"only {len(self.freezes)} of {self.config.freezes} freezes happened")
        if self.storage_restarts < 1:
            out.append("Azurite was never restarted")
        if self.timed_out:
            out.append(f"the backfill did not finish within {self.config.deadline:.0f}s")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def faults_line(self) -> str:
        v = self.verdict
        figures: dict[str, Any] = {
            "kills": len(self.kills), "windows": v.windows, "rows_source": v.rows_source, "rows_out": v.rows_out,
            "lost": v.lost, "duplicated": v.duplicated, "throttled": self.throttled, "truncations_split": v.splits,
        }  # fmt: skip
        if self.config.queue:
            figures["queue"] = self.queue
        return "FAULTS " + json.dumps(figures)

    def details_line(self) -> str:
        v = self.verdict
        points = Counter(k.split(" ", 1)[0] for k in self.kills)
        figures = {
            "seconds": round(self.seconds, 1), "incarnations": self.runners, "crashes": len(self.crashes),
            "freezes": len(self.freezes), "hangs": len(self.hangs),
            "kill_points": dict(sorted(points.items())), "storage_restarts": self.storage_restarts,
            "partials_served": self.partials_served, "splits_logged": self.splits_logged,
            "pauses_logged": self.pauses_logged, "missing_hooks": sorted(set(self.missing_hooks)),
            "foreign": v.foreign, "misplaced": v.misplaced, "mismatched": v.mismatched, "data_blobs": v.data_blobs,
            "stray_blobs": v.stray_blobs, "ledger_mismatches": v.ledger_mismatches, "max_attempts": v.attempts_max,
        }  # fmt: skip
        return "DETAILS " + json.dumps(figures)


# -- processes ---------------------------------------------------------------------------------------


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers (each child leads its own session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGCONT)  # a frozen process acts on SIGTERM only once running
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        proc.wait(timeout=grace)


def _clean_env() -> dict[str, str]:
    """This environment minus the mover's own settings, so a developer's shell cannot leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MOVER_", "AzureWebJobsStorage"))}


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
        args, cwd=ROOT, env=_clean_env(), stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
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
        _terminate(proc)


@dataclass
class Runner:
    """One incarnation of a runner process and the kill it is armed with, if any yet."""

    index: int
    proc: subprocess.Popen[bytes]
    log: Path
    arm_file: Path
    kill: Kill | None = None
    armed_at: float = 0.0
    log_mark: int = 0  # log size when armed: markers before it belong to an earlier fault
    frozen_until: float | None = None

    def arm(self, kill: Kill) -> None:
        """From now on: die at the kill's fault point (the runner reads the file), or be killed after its time."""
        self.kill, self.armed_at = kill, time.monotonic()
        self.log_mark = self.log.stat().st_size
        if kill.point != "time":
            part = self.arm_file.with_suffix(".part")
            part.write_text(f"{kill.point}:{kill.nth}" + (":freeze" if kill.freeze else ""))
            part.replace(self.arm_file)  # atomic: the runner never reads half a spec

    @property
    def armed_for(self) -> float:
        return time.monotonic() - self.armed_at

    def kill_due(self, point_timeout: float) -> bool:
        """Time to kill it from outside: its time has come, or its fault point was not reached."""
        if self.kill is None:
            return False
        return self.armed_for >= (self.kill.after if self.kill.point == "time" else point_timeout)

    def signal(self, signum: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def sigkill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def fault_point(self, marker: str = MARKER) -> str | None:
        """What the runner printed right before killing (freezing) itself since it was armed, if it did."""
        with self.log.open("rb") as f:
            f.seek(self.log_mark)
            text = f.read().decode(errors="replace")
        at = text.rfind(marker + " ")
        return text[at + len(marker) + 1 :].splitlines()[0].strip() if at >= 0 else None

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


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
        self.slots: list[Runner | None] = [None] * config.runners
        self.chaos = QueueChaos(config, self.pipelines, workdir, self.rng, self.log) if config.queue else None

    def log(self, message: str) -> None:
        self.say(f"[{time.monotonic() - self.began:6.1f}s] {message}")

    def run(self) -> SuiteResult:
        cfg = self.config
        with ExitStack() as stack:
            azurite = Azurite(location=str(self.workdir / "azurite"))
            stack.callback(azurite.stop)
            azurite.start()
            emu_log = stack.enter_context((self.workdir / "emulator.log").open("wb"))
            url = stack.enter_context(emulator_process(cfg, emu_log))
            control = stack.enter_context(httpx.Client(base_url=url, timeout=120))
            stack.callback(self._kill_runners)  # on errors and Ctrl-C; the normal end stops them gently first
            self.log(f"azurite :{azurite.blob_port} (data in {self.workdir}), emulator {url}")
            rows = self._seed(control)
            self.log(f"seeded {rows:,} rows: {len(self.pipelines)} tables × {cfg.hours} hourly windows")
            # retry_total=0: while Azurite is down a progress poll fails at once instead of stalling the loop.
            ledger = Ledger(TableServiceClient.from_connection_string(azurite.connection_string, retry_total=0),
                            LEDGER_TABLE)  # fmt: skip
            env = self._runner_env(azurite.connection_string, url)
            if self.chaos is not None:
                self.chaos.connect(azurite.connection_string)
                env = {**env, **self.chaos.env()}
                stack.callback(self.chaos.stop_planners, lambda p: _terminate(p, 5.0))
                self.log(f"queue mode: {cfg.planners} planners, workers in the slots; poison {self.chaos.poison}")
            plan = kill_plan(self.rng, cfg.kills, cfg.kill_after, cfg.nth_max, cfg.freezes)
            self.log(f"kill plan ({cfg.runners} runners): " + ", ".join(map(str, plan)))
            self._drive(plan, env, ledger, azurite, control)
            if azurite.proc is None:  # the deadline passed while it was down: the verdict needs it
                azurite.start()
            if self.chaos is not None:
                if not self.result.timed_out:
                    full = Ledger(TableServiceClient.from_connection_string(azurite.connection_string), LEDGER_TABLE)
                    self.chaos.finish(full, time.monotonic() + 90)
                self.chaos.stop_planners(_terminate)
            self._stop_runners()
            if self.chaos is not None:
                self.chaos.count_logs()
                self.result.queue = dict(self.chaos.counts)
                self.result.queue_failures = self.chaos.failures()
            logs = [p.read_text(errors="replace") for p in sorted(self.workdir.glob("runner-*.log"))]
            self.result.splits_logged = sum(text.count("partial result") for text in logs)
            self.result.pauses_logged = sum(text.count("; paused, resumes") for text in logs)
            self.result.missing_hooks = [
                line.split(MISSING, 1)[1].strip() for text in logs for line in text.splitlines() if MISSING in line
            ]
            stats = control.get("/_emulator/stats").json()
            self.result.throttled = int(stats["throttled"])
            self.result.partials_served = int(stats["partials"])
            self.log("backfill over; reading every output blob and comparing it with the source")
            blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
            self.result.verdict = verify(
                self.pipelines, container=blobs.get_container_client(CONTAINER),
                ledger=Ledger(TableServiceClient.from_connection_string(azurite.connection_string), LEDGER_TABLE),
                control=control,
            )  # fmt: skip
        self.result.seconds = time.monotonic() - self.began
        return self.result

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
        return total

    def _runner_env(self, storage: str, url: str) -> dict[str, str]:
        """The runners' app settings: short lease, generous attempts, fast window retries."""
        cfg = self.config
        end = self.pipelines[0].start + cfg.hours * HOUR
        pipelines = [
            {
                "name": spec.name,
                "source": {"kind": "app_insights", "app_id": APP_ID, "endpoint": url, "query": spec.table,
                           "auth": {"kind": "token", "setting": "FAULTSUITE_TOKEN"},
                           "max_rows_per_query": cfg.max_rows_per_query, "max_retries": 10, "timeout_seconds": 30},
                "window": {"size": "PT1H", "start": format_ts(spec.start), "end": format_ts(end), "delay": "PT5M",
                           "max_per_tick": cfg.max_per_tick, "max_attempts": 100, "retry_backoff": "PT1S",
                           "lease": cfg.lease},
                "sink": {"container": CONTAINER, "format": "jsonl"},
            }
            for spec in self.pipelines
        ]  # fmt: skip
        return _clean_env() | {
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

    def _start_runner(self, env: Mapping[str, str]) -> Runner:
        index = self.result.runners = self.result.runners + 1
        log = self.workdir / f"runner-{index:03d}.log"
        arm_file = self.workdir / f"runner-{index:03d}.arm"
        env = {**env, ARM_ENV: str(arm_file)}
        argv = [sys.executable, "-m", "devtools.faultsuite_runner", "run", "--every", "0.5"]
        if self.config.queue:  # the slots hold workers; planners run beside them (QueueChaos)
            argv = QueueChaos.worker_argv(self.config.max_dequeue)
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv,
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        return Runner(index, proc, log, arm_file)

    def _stop_runners(self) -> None:
        """SIGTERM every live runner (it finishes its tick and exits), SIGKILL a stuck one."""
        runners = [r for r in self.slots if r is not None]
        self.slots = [None] * len(self.slots)
        for runner in runners:
            runner.signal(signal.SIGTERM)
            runner.signal(signal.SIGCONT)
        for runner in runners:  # a thawed runner finishes its stale tick first (its writes are checked too)
            try:
                runner.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                runner.signal(signal.SIGUSR1)  # faulthandler: every thread's stack into its log
                with suppress(subprocess.TimeoutExpired):
                    runner.proc.wait(timeout=2)
                self.result.hangs.append(f"runner #{runner.index}")
                self.log(f"runner #{runner.index} did not stop within 60s of SIGTERM; stacks in {runner.log.name}")
            _terminate(runner.proc)

    def _kill_runners(self) -> None:
        for runner in self.slots:
            if runner is not None:
                runner.sigkill()
        self.slots = [None] * len(self.slots)

    def _drive(self, plan: list[Kill], env: Mapping[str, str], ledger: Ledger, azurite: Azurite,
               control: httpx.Client) -> None:  # fmt: skip
        """Until every window is done: keep the runner slots filled, arm and fire kills in step
        with progress, take Azurite away once, print progress. Polls with short waits; the
        deadline bounds it."""
        cfg, result = self.config, self.result
        total = len(self.pipelines) * cfg.hours
        deadline = self.began + cfg.deadline
        unarmed = list(reversed(plan))
        done = 0
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
                self.log("Azurite started again (same ports, same data on disk)")
                for armed in self.slots:  # no fault point can be reached without storage: their clocks restart
                    if armed is not None and armed.kill is not None and armed.kill.point != "time":
                        armed.armed_at = time.monotonic()
            for slot, runner in enumerate(self.slots):
                if runner is not None and runner.frozen_until is not None:
                    if now >= runner.frozen_until:
                        runner.signal(signal.SIGCONT)
                        runner.frozen_until, runner.kill = None, None
                        self.log(f"thawed runner #{runner.index}; its windows have other owners by now")
                    continue
                if runner is not None and runner.proc.poll() is not None:
                    self._reap(runner)
                    runner = None
                elif runner is not None and runner.kill is not None and runner.kill.freeze:
                    froze = runner.fault_point(FROZEN)
                    if froze is not None or runner.kill_due(cfg.point_timeout):
                        self._freeze(runner, froze)
                        continue
                elif runner is not None and runner.kill_due(cfg.point_timeout):
                    self._kill(runner)
                    runner = None
                if runner is None:
                    runner = self._start_runner(env)
                if runner.kill is None and unarmed and len(plan) - len(unarmed) < self._kills_allowed(done, total):
                    fault = self._next_fault(unarmed)
                    if fault is not None:
                        runner.arm(fault)
                self.slots[slot] = runner
            if now >= next_poll and storage_back_at is None:
                next_poll = now + 0.5
                counts = self._statuses(ledger)
                if self.chaos is not None:
                    self.chaos.keep_planners(env, ROOT)
                    if counts is not None:
                        self.chaos.step(counts["done"], total, ledger)
                if counts is not None:
                    done = counts["done"]
                    if now >= next_progress:
                        next_progress = now + cfg.progress_every
                        self._progress(counts, total, control)
                    if done == total:
                        self.log(f"all {total} windows done")
                        return
                    if not result.storage_restarts and done >= cfg.storage_outage_at * total:
                        self.log(f"stopping Azurite for {cfg.storage_down:.0f}s ({done}/{total} windows done)")
                        azurite.stop()
                        storage_back_at = time.monotonic() + cfg.storage_down
            wake.wait(0.05)

    def _next_fault(self, unarmed: list[Kill]) -> Kill | None:
        """The next planned fault (``unarmed`` is the plan reversed), but never a freeze that would
        leave no runner unfrozen: one must stay free to take the frozen ones' windows and be killed."""
        frozen = sum(1 for r in self.slots if r is not None and r.kill is not None and r.kill.freeze)
        busy = frozen >= self.config.runners - 1
        for i in range(len(unarmed) - 1, -1, -1):
            if not (busy and unarmed[i].freeze):
                return unarmed.pop(i)
        return None

    def _kills_allowed(self, done: int, total: int) -> int:
        """Kills that may be armed by now: one per runner at once, the rest spread until ``kills_by``."""
        cfg = self.config
        planned = cfg.kills + cfg.freezes
        lead = min(cfg.runners, planned)
        if cfg.kills_by <= 0:
            return planned
        share = done / (cfg.kills_by * total)
        return min(planned, lead + int((planned - lead) * share))

    def _freeze(self, runner: Runner, point: str | None) -> None:
        """The runner stopped itself at its fault point (or is stopped now, if it never got there):
        its heartbeat stops too, its leases run out and the other runner takes its windows; after
        ``freeze_for`` it goes on as if nothing had happened."""
        runner.signal(signal.SIGSTOP)  # (again): the point may have been reached but not yet acted on
        runner.frozen_until = time.monotonic() + self.config.freeze_for
        where = point or f"time ({runner.kill} not reached)"
        self.result.freezes.append(where)
        self.log(f"freeze {len(self.result.freezes)}/{self.config.freezes}: runner #{runner.index} stopped at"
                 f" {where} for {self.config.freeze_for:.0f}s")  # fmt: skip

    def _kill(self, runner: Runner) -> None:
        """SIGKILL from outside: a time kill, or the fallback for a fault point not reached."""
        runner.sigkill()
        assert runner.kill is not None
        where = "time" if runner.kill.point == "time" else f"time ({runner.kill} not reached)"
        self.result.kills.append(f"{where} {runner.armed_for:.1f}s")
        self.log(f"kill {len(self.result.kills)}/{self.config.kills}: SIGKILL runner #{runner.index} at {where}")

    def _reap(self, runner: Runner) -> None:
        """Account for a runner that exited: a planned self-kill, or a crash (logged, restarted)."""
        code = runner.proc.returncode
        point = runner.fault_point()
        if code == -signal.SIGKILL and point:
            self.result.kills.append(point)
            self.log(f"kill {len(self.result.kills)}/{self.config.kills}: runner #{runner.index} SIGKILLed at {point}")
            return
        tail = runner.tail()
        self.result.crashes.append(tail.splitlines()[-1] if tail else f"exit {code}")
        self.log(f"runner #{runner.index} exited with {code} (not killed by the suite); last lines:\n{tail}")
        if len(self.result.crashes) > 20:
            raise RuntimeError("the runner keeps crashing; see its log above")

    def _statuses(self, ledger: Ledger) -> Counter[str] | None:
        """Window counts by status (unrecorded windows count as pending); ``None`` while storage is away."""
        counts: Counter[str] = Counter()
        try:
            for spec in self.pipelines:
                counts.update(s.status for s in ledger.states(spec.name))
        except (AzureError, MoverError):
            return None
        counts["pending"] += len(self.pipelines) * self.config.hours - sum(counts.values())
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.faultsuite", description="fault-injection suite")
    parser.add_argument("--small", action="store_true", help="the smaller run of make test")
    parser.add_argument("--queue", action="store_true", help="planners + queue workers, and the queue's own faults")
    parser.add_argument("--seed", type=int, help="RNG seed of data, kill plan and emulator faults")
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
