"""What one fault-suite run found: counters, the verdicts, the ``FAULTS`` and ``DETAILS`` lines."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devtools.faultsuite_check import Verdict
from devtools.faultsuite_config import SuiteConfig

if TYPE_CHECKING:
    from devtools.faultsuite_depth import DepthFigures
    from devtools.faultsuite_operator import Replay
    from devtools.faultsuite_settle import Settled

__all__ = ["SuiteResult"]


@dataclass
class SuiteResult:
    """Counters of one run plus the verdict; ``faults_line`` is the machine-readable summary."""

    config: SuiteConfig
    verdict: Verdict
    kills: list[str] = field(default_factory=list)  # where each kill of a runner (worker) landed
    freezes: list[str] = field(default_factory=list)  # runners frozen past their lease
    crashes: list[str] = field(default_factory=list)  # runner exits nobody asked for: the last log line
    storage_restarts: int = 0
    throttled: int = 0
    partials_served: int = 0
    overflows_served: int = 0
    warnings_served: int = 0
    splits_logged: int = 0  # "partial result" lines in every runner's log (killed runs included)
    pauses_logged: int = 0  # windows paused at a checkpoint, resumed by a later tick
    missing_hooks: list[str] = field(default_factory=list)  # fault points the engine no longer has
    hangs: list[str] = field(default_factory=list)  # runners that did not stop within a minute of SIGTERM
    runners: int = 0  # incarnations started
    seconds: float = 0.0
    timed_out: bool = False
    queue: dict[str, int] = field(default_factory=dict)  # queue mode: faults done to the work queue
    queue_failures: list[str] = field(default_factory=list)
    # the queue run
    planner_kills: list[str] = field(default_factory=list)
    planners: dict[str, Any] = field(default_factory=dict)  # incarnations, most at once, seconds with two
    replays: list[Replay] = field(default_factory=list)
    settled: Settled | None = None
    depth: DepthFigures | None = None

    @property
    def replay_kills(self) -> int:
        return sum(1 for r in self.replays if r.killed)

    @property
    def failures(self) -> list[str]:
        out: list[str] = list(self.queue_failures)
        v = self.verdict
        if v.lost or v.duplicated:
            out.append(f"{v.lost} rows lost, {v.duplicated} duplicated")
        if v.foreign or v.misplaced or v.mismatched:
            out.append(f"{v.foreign} foreign, {v.misplaced} misplaced, {v.mismatched} mismatched rows")
        if v.windows_done + v.windows_closed != v.windows:
            out.append(f"{v.windows - v.windows_done - v.windows_closed} of {v.windows} windows not done")
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
        if self.config.queue:
            out += self._queue_failures()
        return out

    def _queue_failures(self) -> list[str]:
        cfg, out = self.config, []
        if self.settled is not None:
            out += self.settled.problems
        out += [f"{r}: {r.problem}" for r in self.replays if r.problem]
        if self.depth is not None and self.depth.over:
            out.append(f"queue depth above {self.depth.bound} (app messages): " + "; ".join(self.depth.over[:5]))
        if self.depth is not None and self.depth.early:
            out.append("work sent again while its message still waited: " + "; ".join(self.depth.early[:5]))
        if len(self.planner_kills) < cfg.planner_kills:
            out.append(f"only {len(self.planner_kills)} of {cfg.planner_kills} planner kills happened")
        if cfg.planners > 1 and self.planners.get("most_at_once", 0) < 2:
            out.append("never two planners at once")
        if sum(1 for r in self.replays if r.why == "random") < cfg.replays:
            out.append(f"only {sum(1 for r in self.replays if r.why == 'random')} of {cfg.replays} replays ran")
        if cfg.replays and not any(r.accepted for r in self.replays):
            out.append("no replay was accepted")
        if self.replay_kills < cfg.replay_kills:
            out.append(f"only {self.replay_kills} of {cfg.replay_kills} replay CLIs died mid-run")
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
            figures = {"seed": self.config.seed} | figures | self._queue_figures()
        return "FAULTS " + json.dumps(figures)

    def _queue_figures(self) -> dict[str, Any]:
        s, d = self.settled, self.depth
        kills = {"worker": len(self.kills), "planner": len(self.planner_kills), "replay_cli": self.replay_kills}
        return {
            "kills": sum(kills.values()), "kills_by": kills,
            "replays": len(self.replays), "replayed_windows": sum(len(r.accepted) for r in self.replays),
            "stuck": len(s.stuck) if s else None, "closed_by_window": len(s.closed) if s else None,
            "rows_withheld": self.verdict.rows_withheld,
            "recovery_s": round(s.recovery_s, 1) if s else None,
            "recovery_bound_s": round(s.recovery_bound_s, 1) if s else None,
            "queue_depth_max": d.max_app if d else None, "queue_depth_bound": d.bound if d else None,
            "queue": self.queue,
        }  # fmt: skip

    def details_line(self) -> str:
        v = self.verdict
        points = Counter(k.split(" ", 1)[0] for k in self.kills)
        figures: dict[str, Any] = {
            "seconds": round(self.seconds, 1), "incarnations": self.runners, "crashes": len(self.crashes),
            "freezes": len(self.freezes), "hangs": len(self.hangs),
            "kill_points": dict(sorted(points.items())), "storage_restarts": self.storage_restarts,
            "partials_served": self.partials_served, "splits_logged": self.splits_logged,
            "pauses_logged": self.pauses_logged, "missing_hooks": sorted(set(self.missing_hooks)),
            "foreign": v.foreign, "misplaced": v.misplaced, "mismatched": v.mismatched, "data_blobs": v.data_blobs,
            "stray_blobs": v.stray_blobs, "ledger_mismatches": v.ledger_mismatches, "max_attempts": v.attempts_max,
        }  # fmt: skip
        if self.config.queue:
            figures |= self._queue_details()
        return "DETAILS " + json.dumps(figures)

    def _queue_details(self) -> dict[str, Any]:
        s, d = self.settled, self.depth
        modes = Counter(f"{r.why}/{r.mode}" for r in self.replays)
        return {
            "planner_kill_points": dict(sorted(Counter(k.split(" ", 1)[0] for k in self.planner_kills).items())),
            "planners": self.planners,
            "replays_by": dict(sorted(modes.items())),
            "replays_refused": sum(len(r.windows) - len(r.accepted) for r in self.replays),
            "replay_kill_points": [r.arm for r in self.replays if r.killed],
            "overflows_served": self.overflows_served, "warnings_served": self.warnings_served,
            "final_states": dict(s.statuses) if s else {},
            "last_fault": s.last_fault if s else "", "last_window": s.last_window if s else "",
            "queue_depth": d.as_dict() if d else {},
        }  # fmt: skip
