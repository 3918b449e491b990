"""The queue run's planner processes: one or two at a time, SIGKILLed per a seeded plan.

A planner is ``python -m shared run --enqueue --every 0.5`` (the timer's tick loop: plan, mark
windows ``queued``, send their messages, send re-sweeps), started through
``devtools.faultsuite_runner`` so it can die at an exact point. The timer is a singleton in
Azure, but a host failing over can run two ticks at once, so the count changes between one
and ``planners`` every few seconds (``planner_phase``). Kills follow ``planner_kill_plan``: at a
random moment, or right after a queue mark whose message is not sent yet (``enqueue``: T2/T3,
``sweepmark``: T11) or new windows were recorded before the frontier moved (``record``: T1).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from devtools.faultsuite_config import SuiteConfig
from devtools.faultsuite_procs import Kill, Runner, planner_kill_plan, terminate
from devtools.faultsuite_runner import ARM_ENV

__all__ = ["Planners"]


class Planners:
    """Keeps the planner processes running, varies how many, arms and fires their kills."""

    def __init__(self, config: SuiteConfig, workdir: Path, rng: random.Random, log: Callable[[str], None]) -> None:
        self.config = config
        self.workdir = workdir
        self.rng = rng
        self.log = log
        self.plan: list[Kill] = planner_kill_plan(rng, config.planner_kills, config.planner_kill_after)
        self._unarmed = list(reversed(self.plan))
        self.running: list[Runner] = []
        self._stopping: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.kills: list[str] = []  # where each kill landed
        self.kill_times: list[float] = []  # unix time of each
        self.crashes: list[str] = []
        self.want = config.planners
        self.most_at_once = 0
        self.seconds_two = 0.0  # how long two or more planners ran at once
        self._next_change = time.monotonic() + rng.uniform(*config.planner_phase)
        self._last_step: float | None = None

    @property
    def unfired(self) -> int:
        """Planned kills not done yet (armed or not)."""
        return len(self.plan) - len(self.kills)

    def step(self, env: Mapping[str, str], root: Path, allowed: int) -> None:
        """One round: reap and kill, change the count now and then, start the missing, arm the next kill
        while fewer than ``allowed`` of the plan are armed or done."""
        now = time.monotonic()
        if self._last_step is not None and len(self.running) >= 2:
            self.seconds_two += now - self._last_step
        self._last_step = now
        self._stopping = [p for p in self._stopping if p.poll() is None]
        for planner in list(self.running):
            if planner.proc.poll() is not None:
                self._reap(planner)
                self.running.remove(planner)
            elif planner.kill_due(self.config.point_timeout):
                self._kill(planner)
                self.running.remove(planner)
        if now >= self._next_change:
            self.want = self.rng.randint(1, self.config.planners)
            self._next_change = now + self.rng.uniform(*self.config.planner_phase)
            while len(self.running) > self.want:  # stopped gently, like a host that scales in
                extra = min(self.running, key=lambda p: p.kill is not None)
                extra.signal(signal.SIGTERM)
                self._stopping.append(extra.proc)
                self.running.remove(extra)
        while len(self.running) < self.want:
            self.running.append(self._start(env, root))
        self.most_at_once = max(self.most_at_once, len(self.running))
        for planner in self.running:
            if planner.kill is None and self._unarmed and len(self.plan) - len(self._unarmed) < allowed:
                planner.arm(self._unarmed.pop())

    def _start(self, env: Mapping[str, str], root: Path) -> Runner:
        self.started += 1
        log = self.workdir / f"planner-{self.started:03d}.log"
        arm_file = self.workdir / f"planner-{self.started:03d}.arm"
        argv = [sys.executable, "-m", "devtools.faultsuite_runner", "run", "--enqueue", "--every", "0.5"]
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv, cwd=root, env={**env, ARM_ENV: str(arm_file)}, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        return Runner(self.started, proc, log, arm_file)

    def _kill(self, planner: Runner) -> None:
        planner.sigkill()
        assert planner.kill is not None
        where = "time" if planner.kill.point == "time" else f"time ({planner.kill} not reached)"
        self._killed(planner, f"{where} {planner.armed_for:.1f}s")

    def _killed(self, planner: Runner, where: str) -> None:
        self.kills.append(where)
        self.kill_times.append(time.time())
        self.log(f"planner kill {len(self.kills)}/{len(self.plan)}: planner #{planner.index} at {where}")

    def _reap(self, planner: Runner) -> None:
        point = planner.fault_point()
        if planner.proc.returncode == -signal.SIGKILL and point:
            self._killed(planner, point)
            return
        tail = planner.tail()
        self.crashes.append(tail.splitlines()[-1] if tail else f"exit {planner.proc.returncode}")
        self.log(f"planner #{planner.index} exited with {planner.proc.returncode}; last lines:\n{tail}")

    def kill_one(self) -> str:
        """SIGKILL a running planner now (the final strike); what was killed."""
        planner = self.running.pop(0)
        planner.sigkill()
        self._killed(planner, "final strike")
        return f"planner #{planner.index}"

    def stop(self, grace: float = 10.0) -> None:
        for planner in self.running:
            terminate(planner.proc, grace)
        for proc in self._stopping:
            terminate(proc, grace)
        self.running, self._stopping = [], []
