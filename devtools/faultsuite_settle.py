"""The queue run's checks besides the rows (``devtools.faultsuite_check``): how every window ended,
that every replay the CLI accepted was honoured, and how fast the app recovered from the last fault.

* **Final states.** A window ends ``done``, or ``failed`` and closed for a failure the window
  itself causes — only ``E_OVERFLOW``, the one such failure the suite injects, with
  ``FailKind`` ``window`` and the service's message as its reason. Anything else (pending,
  queued, running, failed with a next attempt, closed because its runs died) is **stuck**.
* **Replays.** For every window a replay accepted (``devtools.faultsuite_operator``): its final
  record has ``ReplayAt`` ≥ the accepted time (no later write lost the request) and
  ``StartedAt`` after it — the final outcome comes from a run the request caused, not from one
  that was running already. An inline replay's own run starts at the very instant it is accepted
  (the CLI's forced claim writes both), so there ``StartedAt`` may equal it.
* **Recovery.** From the last fault (kill, freeze, Azurite restart) to the moment the last window
  reached its final state (its ``FinishedAt``), which must be within lease + visibility: a dead
  run's lease runs out and a planner takes the window back (T3), a lost message is sent again
  after visibility + lease from its ``QueuedAt`` — both before the last fault ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from devtools.faultsuite_check import PipelineRange
from shared.windows import WindowState

__all__ = ["OVERFLOW_CODE", "Accepted", "Settled", "closed_by_window", "settle"]

OVERFLOW_CODE = "E_OVERFLOW"


@dataclass(frozen=True)
class Accepted:
    """One window of a replay the CLI accepted, with the ``ReplayAt`` it wrote."""

    pipeline: str
    key: str
    at: datetime
    mode: str  # inline | queue
    replay: str  # which replay, for messages


def closed_by_window(state: WindowState) -> bool:
    """Closed for a failure the window causes, with the service's reason: the one such failure the suite injects."""
    return state.closed and state.fail_kind == "window" and OVERFLOW_CODE in state.error


@dataclass
class Settled:
    """How the windows ended and what the checks found."""

    statuses: Counter[str] = field(default_factory=Counter)  # final records: done, closed, or their status
    stuck: list[str] = field(default_factory=list)
    closed: list[tuple[str, str, str]] = field(default_factory=list)  # (pipeline, key, reason): accepted
    replays_checked: int = 0
    replay_problems: list[str] = field(default_factory=list)
    last_fault: str = ""
    last_fault_at: datetime | None = None
    last_window: str = ""
    last_final_at: datetime | None = None
    recovery_s: float = 0.0
    recovery_bound_s: float = 0.0

    @property
    def problems(self) -> list[str]:
        out = [f"stuck: {s}" for s in self.stuck[:20]] + self.replay_problems[:20]
        if self.recovery_s > self.recovery_bound_s:
            out.append(f"{self.last_window} reached its final state {self.recovery_s:.1f}s after the last fault"
                       f" ({self.last_fault}); lease + visibility is {self.recovery_bound_s:.1f}s")  # fmt: skip
        return out


def settle(
    pipelines: Iterable[PipelineRange],
    states: Mapping[str, list[WindowState]],
    accepted: Iterable[Accepted],
    faults: Iterable[tuple[datetime, str]],
    bound: timedelta,
) -> Settled:
    """Check the final ledger ``states`` (per pipeline) against the replays and the faults of the run."""
    out = Settled(recovery_bound_s=bound.total_seconds())
    final: dict[tuple[str, str], WindowState] = {}
    for spec in pipelines:
        by_key = {s.key: s for s in states.get(spec.name, [])}
        for window in spec.windows():
            where = f"{spec.name} {window.key}"
            state = by_key.get(window.key)
            if state is None:
                out.statuses["unrecorded"] += 1
                out.stuck.append(f"{where}: not in the ledger")
                continue
            final[(spec.name, window.key)] = state
            if state.status == "done":
                out.statuses["done"] += 1
            elif closed_by_window(state):
                out.statuses["closed"] += 1
                out.closed.append((spec.name, window.key, state.error[:160]))
            else:
                out.statuses[state.status] += 1
                out.stuck.append(f"{where}: {state.status} (attempts {state.attempts}, {state.fail_kind or '-'}):"
                                 f" {state.error[:160]}")  # fmt: skip
    for item in accepted:
        out.replays_checked += 1
        state = final.get((item.pipeline, item.key))
        where = f"{item.replay} {item.pipeline} {item.key} (accepted {item.at:%H:%M:%S.%f})"
        if state is None:
            out.replay_problems.append(f"{where}: the window is not in the ledger")
            continue
        if state.replay_at is None or state.replay_at < item.at:
            out.replay_problems.append(f"{where}: the final ReplayAt is {state.replay_at}: the request was lost")
        started = state.started_at
        if started is None or started < item.at or (started == item.at and item.mode != "inline"):
            out.replay_problems.append(f"{where}: the final record comes from a run started {started}, not after it")
    last = max(faults, default=None)
    if last is not None:
        out.last_fault_at, out.last_fault = last
        ends = [(s.finished_at, f"{p} {k}") for (p, k), s in final.items() if s.finished_at is not None]
        if ends:
            out.last_final_at, out.last_window = max(ends)
            out.recovery_s = max(0.0, (out.last_final_at - last[0]).total_seconds())
    return out
