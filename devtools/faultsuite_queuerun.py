"""What the randomized queue run adds to the suite's loop, and its phases.

Beside the worker slots the suite keeps filled and kills (``devtools.faultsuite``), the queue run
has planner processes (``faultsuite_planners``), the queue's own faults (``faultsuite_queue``), an
operator replaying through the CLI (``faultsuite_operator``) and a sampler of the queue's depth
(``faultsuite_depth``). It goes through three phases:

1. **chaos** — the backfill with every fault of the plan, spread over it: worker and planner
   kills, freezes, the Azurite restart, replays, duplicate/late/lost/poison messages, overflow
   windows. It ends once every planned fault happened and every window reached a final state;
2. **strike** — the last fault, at a moment that tests recovery: the operator replays the two
   neighbouring windows with the fewest rows (queued), and as soon as one of them runs, the worker
   running it and a planner are SIGKILLed together;
3. **settle** — nothing is done to the app any more until every window is final again. The
   recovery time (``faultsuite_settle``) runs from the strike to the last window's final state.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx
from azure.core.exceptions import AzureError

from devtools.faultsuite_check import PipelineRange
from devtools.faultsuite_config import SuiteConfig
from devtools.faultsuite_depth import DepthSampler
from devtools.faultsuite_operator import Operator, Replay
from devtools.faultsuite_planners import Planners
from devtools.faultsuite_queue import QUEUE_NAME, QueueChaos
from devtools.faultsuite_settle import Accepted
from shared.errors import MoverError
from shared.ledger import Ledger
from shared.model import format_ts

__all__ = ["QueueRun"]


class QueueRun:
    """Planners, queue faults, the operator and the depth sampler, stepped by the suite's loop."""

    def __init__(self, config: SuiteConfig, pipelines: list[PipelineRange], workdir: Path, rng: random.Random,
                 log: Callable[[str], None]) -> None:  # fmt: skip
        self.config = config
        self.pipelines = pipelines
        self.rng = rng
        self.log = log
        self.chaos = QueueChaos(config, pipelines, workdir, rng, log)
        self.planners = Planners(config, workdir, rng, log)
        self.operator = Operator(config, pipelines, workdir, rng, log, avoid=set(self.chaos.poison))
        self.chaos.operator = self.operator
        self.depth: DepthSampler | None = None
        self.faults: list[tuple[datetime, str]] = []  # when each fault hit the app: the last one starts recovery
        self.rows: dict[str, int] = {}  # "<pipeline> <window key>" → its source rows (as seeded)
        self.phase = "chaos"
        self._strike: Replay | None = None
        self._strike_tries = 0

    def env(self) -> dict[str, str]:
        return self.chaos.env()

    def start(self, storage: str, env: Mapping[str, str], ledger: Ledger, control: httpx.Client, root: Path) -> None:
        self.chaos.connect(storage)
        self.depth = self.chaos.depth = DepthSampler(storage, QUEUE_NAME, self.config.depth_every)
        self.depth.start()

        def set_scoped(items: list[dict[str, str]]) -> None:
            control.post("/_emulator/faults", json={"scoped": items}).raise_for_status()

        self.operator.start(env, ledger, set_scoped, root)
        self.log(f"queue run: up to {self.config.planners} planners, workers in the slots; poison {self.chaos.poison}")

    def fault(self, what: str) -> None:
        """A fault hit the app now (the suite's own kills, freezes and restarts are noted here too)."""
        self.faults.append((datetime.now(UTC), what))

    @property
    def finished(self) -> bool:
        return self.phase == "done"

    def step(self, env: Mapping[str, str], root: Path, *, counts: Counter[str], total: int, ledger: Ledger,
             progress: float, quiet: bool, kill_worker: Callable[[int], str | None]) -> None:  # fmt: skip
        """One round. ``quiet``: the suite's own plan (worker kills, freezes, the restart) is used up."""
        if self.phase == "chaos":
            allowed = self._allowed(progress)
            self.planners.step(env, root, allowed)
            self.chaos.step(counts["done"], total, ledger)
            self.operator.step(progress, ledger)
            everything = quiet and not self.planners.unfired and not self.operator.random_left
            settled = counts["final"] == total and self.operator.idle and self.operator.overflow_settled
            if everything and settled and self.chaos.poison_settled:
                self.phase = "strike" if self.config.final_strike else "done"
                self.log(f"every planned fault happened and every window is final; {self.phase} next")
        else:
            self.planners.step(env, root, 0)  # keep them running, no more kills
            if self.phase == "strike":
                self._step_strike(ledger, kill_worker)
            elif self.phase == "settle" and counts["final"] == total:
                self.phase = "done"
                self.log("every window is final again after the strike")

    def _allowed(self, progress: float) -> int:
        """Planner kills that may be armed by now: spread until ``kills_by`` of the backfill, then all."""
        planned = len(self.planners.plan)
        by = self.config.kills_by or 1.0
        return planned if progress >= by else 1 + int((planned - 1) * progress / by)

    def _step_strike(self, ledger: Ledger, kill_worker: Callable[[int], str | None]) -> None:
        """Replay two windows; once one of them runs, SIGKILL its worker and a planner."""
        if self._strike is None or (self._strike.done.is_set() and not self._strike.accepted):
            self._strike_tries += 1
            if self._strike_tries > 5:
                self.log("strike: no replay was accepted five times; settling without it")
                self.phase = "settle"
                return
            self._strike = self._request_strike()
            return
        if not self._strike.done.is_set():
            return
        try:
            states = [ledger.get(self._strike.pipeline, w) for w in self._strike.windows]
        except (AzureError, MoverError):
            return
        running = [s for s in states if s is not None and s.status == "running" and s.lease_owner]
        for state in running:
            pid = int(state.lease_owner.split(":")[1]) if state.lease_owner.count(":") >= 2 else 0
            worker = kill_worker(pid)
            if worker is None:
                continue
            planner = self.planners.kill_one() if self.planners.running else "no planner"
            self.fault(f"final strike: {worker} running {self._strike.pipeline} {state.key}, and {planner}")
            self.log(f"strike: SIGKILLed {worker} while it ran {self._strike.pipeline} {state.key}, and {planner}")
            self.phase = "settle"
            return
        since = min(self._strike.accepted.values())
        if all(s is not None and s.status == "done" and s.started_at and s.started_at >= since for s in states):
            self._strike = None  # all of them ran and finished between two looks: again

    def _request_strike(self) -> Replay:
        """Replay the two neighbouring windows of one pipeline with the fewest rows (never a poison or
        overflow window): what the strike measures is the recovery, not a long window's own run."""
        skip = set(self.operator.overflow) | set(self.chaos.poison)
        pairs = [
            (sum(self.rows.get(f"{spec.name} {w.key}", 0) for w in windows[i : i + 2]), spec.name, windows[i : i + 2])
            for spec in self.pipelines
            for windows in [spec.windows()]
            for i in range(len(windows) - 1)
            if not any(f"{spec.name} {w.key}" in skip for w in windows[i : i + 2])
        ]
        _, name, windows = min(pairs, key=lambda pair: pair[0])
        return self.operator.request(name, list(windows), "queue", "final")

    def replayed(self) -> dict[str, list[float]]:
        """"<pipeline> <window start>" → when replays of it were accepted (unix), as the send logs name windows."""
        out: dict[str, list[float]] = {}
        for replay in self.operator.replays:
            for window in replay.windows:
                if window.key in replay.accepted:
                    at = replay.accepted[window.key].timestamp()
                    out.setdefault(f"{replay.pipeline} {format_ts(window.start)}", []).append(at)
        return out

    def accepted(self) -> list[Accepted]:
        return [
            Accepted(r.pipeline, key, at, r.mode, str(r))
            for r in self.operator.replays
            for key, at in r.accepted.items()
        ]

    def stop_planners(self) -> None:
        """Before the last late messages and the drain: their re-sweeps would keep the queue busy."""
        self.planners.stop()

    def stop(self) -> None:
        """Stop planners and the operator (the end, or an error); the sampler last."""
        self.planners.stop()
        self.operator.stop()
        if self.depth is not None:
            self.depth.stop()
