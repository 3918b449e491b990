"""The fault suite's processes: the planned faults (``Kill``) and one incarnation of a runner,
worker or planner process (``Runner``), which the suite arms, kills, freezes and reaps."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from devtools.faultsuite_runner import MARKER

__all__ = ["MUST_HIT", "Kill", "Runner", "clean_env", "kill_plan", "planner_kill_plan", "terminate"]

# Kinds every plan holds (as far as its size allows), most telling first: data committed
# but the ledger not updated; mid-window queries; staged uncommitted blocks; any moment; …
MUST_HIT = ("commit", "query", "stage", "time", "split", "manifest", "checkpoint", "claim", "renew")
_WEIGHTS = {"time": 4, "query": 2, "commit": 2, "stage": 2, "split": 1, "manifest": 1, "checkpoint": 1, "claim": 1,
            "renew": 1}  # fmt: skip
# Small n: an incarnation gets little done before its kill, so kills spread over the backfill.
_NTH = {"query": (2, 12), "split": (1, 3), "stage": (1, 3), "commit": (1, 3), "manifest": (1, 3), "checkpoint": (1, 2),
        "claim": (1, 4), "renew": (1, 2)}  # fmt: skip



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



def planner_kill_plan(rng: random.Random, count: int, after: tuple[float, float]) -> list[Kill]:
    """``count`` planner kills: at a random moment, or right after a queue mark whose message is not
    sent yet (T2 ``enqueue``, T11 ``sweepmark``) or new windows were recorded (T1 ``record``)."""
    kinds = ["time", "enqueue", "sweepmark", "record"][:count]
    kinds += rng.choices(["time", "enqueue", "sweepmark"], weights=[3, 2, 1], k=count - len(kinds))
    rng.shuffle(kinds)
    plan = []
    for kind in kinds:
        if kind == "time":
            plan.append(Kill(kind, after=round(rng.uniform(*after), 2)))
        else:
            plan.append(Kill(kind, nth=rng.randint(1, 3 if kind != "record" else 1)))
    return plan


def terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
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


def clean_env() -> dict[str, str]:
    """This environment minus the mover's own settings, so a developer's shell cannot leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MOVER_", "AzureWebJobsStorage"))}



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

