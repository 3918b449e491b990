"""The runner slots of the fault suite: inline runners (``python -m shared run``) or, in the queue run,
queue workers (``python -m shared work``), each started through ``devtools.faultsuite_runner``.

Every slot always holds a live incarnation: one that died is reaped and replaced. Incarnations are
armed with the next fault of the seeded plan — a SIGKILL at a fault point or at a random moment, or
a freeze (SIGSTOP past the lease, then SIGCONT) — in step with progress, and never so that every
runner is frozen at once: one must stay free to take the frozen ones' windows.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path

from devtools.faultsuite_config import SuiteConfig
from devtools.faultsuite_procs import Kill, Runner, terminate
from devtools.faultsuite_queue import QueueChaos
from devtools.faultsuite_result import SuiteResult
from devtools.faultsuite_runner import ARM_ENV, FROZEN

__all__ = ["Workers"]


class Workers:
    """The slots, their incarnations and the worker fault plan; counts go into ``result``."""

    def __init__(self, config: SuiteConfig, workdir: Path, root: Path, plan: list[Kill], result: SuiteResult,
                 log: Callable[[str], None], fault: Callable[[str], None]) -> None:  # fmt: skip
        self.config = config
        self.workdir = workdir
        self.root = root
        self.plan = plan
        self.unarmed = list(reversed(plan))
        self.result = result
        self.log = log
        self.fault = fault  # a fault hit the app now (the queue run's recovery clock)
        self.slots: list[Runner | None] = [None] * config.runners
        self.down: dict[str, list[tuple[float, float]]] = {}  # worker log → spans (unix) it was killed or frozen

    @property
    def quiet(self) -> bool:
        """Every planned fault was fired and no slot is armed or frozen."""
        return not self.unarmed and all(r is None or r.kill is None for r in self.slots)

    def keep(self, now: float, env: Mapping[str, str], progress: float) -> None:
        """Keep every slot filled: thaw, reap, kill, freeze and arm its incarnations."""
        cfg = self.config
        for slot, runner in enumerate(self.slots):
            if runner is not None and runner.frozen_until is not None:
                if now >= runner.frozen_until:
                    runner.signal(signal.SIGCONT)
                    self._went_down(runner, until=time.time())
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
                runner = self._start(env)
            if runner.kill is None and self.unarmed and len(self.plan) - len(self.unarmed) < self._allowed(progress):
                fault = self._next_fault()
                if fault is not None:
                    runner.arm(fault)
            self.slots[slot] = runner

    def storage_back(self) -> None:
        """No fault point can be reached without storage: the clocks of armed points restart."""
        for armed in self.slots:
            if armed is not None and armed.kill is not None and armed.kill.point != "time":
                armed.armed_at = time.monotonic()

    def kill_pid(self, pid: int) -> str | None:
        """SIGKILL the (unfrozen) worker with this pid now — the final strike; ``None`` if none is."""
        for slot, runner in enumerate(self.slots):
            if runner is not None and runner.proc.pid == pid and runner.frozen_until is None:
                runner.sigkill()
                self._went_down(runner)
                self.slots[slot] = None
                self.result.kills.append("strike")
                return f"worker #{runner.index}"
        return None

    def stop(self) -> None:
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
            terminate(runner.proc)

    def kill_all(self) -> None:
        for runner in self.slots:
            if runner is not None:
                runner.sigkill()
        self.slots = [None] * len(self.slots)

    def _start(self, env: Mapping[str, str]) -> Runner:
        index = self.result.runners = self.result.runners + 1
        log = self.workdir / f"runner-{index:03d}.log"
        arm_file = self.workdir / f"runner-{index:03d}.arm"
        argv = [sys.executable, "-m", "devtools.faultsuite_runner", "run", "--every", "0.5"]
        if self.config.queue:  # the slots hold workers; planners run beside them (faultsuite_planners)
            argv = QueueChaos.worker_argv(self.config.max_dequeue)
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv, cwd=self.root, env={**env, ARM_ENV: str(arm_file)}, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        return Runner(index, proc, log, arm_file)

    def _went_down(self, runner: Runner, *, until: float = float("inf")) -> None:
        """A worker died (or froze, or thawed: ``until`` closes the span its freeze opened)."""
        spans = self.down.setdefault(runner.log.name, [])
        if until != float("inf") and spans and spans[-1][1] == float("inf"):
            spans[-1] = (spans[-1][0], until)
        else:
            spans.append((time.time(), until))

    def _next_fault(self) -> Kill | None:
        """The next planned fault (``unarmed`` is the plan reversed), but never a freeze that would
        leave no runner unfrozen: one must stay free to take the frozen ones' windows and be killed."""
        frozen = sum(1 for r in self.slots if r is not None and r.kill is not None and r.kill.freeze)
        busy = frozen >= self.config.runners - 1
        for i in range(len(self.unarmed) - 1, -1, -1):
            if not (busy and self.unarmed[i].freeze):
                return self.unarmed.pop(i)
        return None

    def _allowed(self, progress: float) -> int:
        """Kills that may be armed by now: one per runner at once, the rest spread until ``kills_by``."""
        cfg = self.config
        planned = cfg.kills + cfg.freezes
        lead = min(cfg.runners, planned)
        if cfg.kills_by <= 0:
            return planned
        return min(planned, lead + int((planned - lead) * progress / cfg.kills_by))

    def _freeze(self, runner: Runner, point: str | None) -> None:
        """The runner stopped itself at its fault point (or is stopped now, if it never got there):
        its heartbeat stops too, its leases run out and the other runner takes its windows; after
        ``freeze_for`` it goes on as if nothing had happened."""
        runner.signal(signal.SIGSTOP)  # (again): the point may have been reached but not yet acted on
        runner.frozen_until = time.monotonic() + self.config.freeze_for
        where = point or f"time ({runner.kill} not reached)"
        self.result.freezes.append(where)
        self._went_down(runner)
        self.fault(f"freeze of runner #{runner.index}")
        self.log(f"freeze {len(self.result.freezes)}/{self.config.freezes}: runner #{runner.index} stopped at"
                 f" {where} for {self.config.freeze_for:.0f}s")  # fmt: skip

    def _kill(self, runner: Runner) -> None:
        """SIGKILL from outside: a time kill, or the fallback for a fault point not reached."""
        runner.sigkill()
        assert runner.kill is not None
        where = "time" if runner.kill.point == "time" else f"time ({runner.kill} not reached)"
        self.result.kills.append(f"{where} {runner.armed_for:.1f}s")
        self._went_down(runner)
        self.fault(f"kill of runner #{runner.index}")
        self.log(f"kill {len(self.result.kills)}/{self.config.kills}: SIGKILL runner #{runner.index} at {where}")

    def _reap(self, runner: Runner) -> None:
        """Account for a runner that exited: a planned self-kill, or a crash (logged, restarted)."""
        code = runner.proc.returncode
        point = runner.fault_point()
        if code == -signal.SIGKILL and point:
            self.result.kills.append(point)
            self._went_down(runner)  # when it was reaped: at most one loop round after it died
            self.fault(f"kill of runner #{runner.index} at {point}")
            self.log(f"kill {len(self.result.kills)}/{self.config.kills}: runner #{runner.index} SIGKILLed at {point}")
            return
        tail = runner.tail()
        self.result.crashes.append(tail.splitlines()[-1] if tail else f"exit {code}")
        self.log(f"runner #{runner.index} exited with {code} (not killed by the suite); last lines:\n{tail}")
        if len(self.result.crashes) > 20:
            raise RuntimeError("the runner keeps crashing; see its log above")
