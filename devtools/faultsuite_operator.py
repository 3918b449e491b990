"""The operator of the queue run: replays through the real CLI, and windows the service fails.

Replays run ``python -m shared replay --pipeline … --start … --end … --mode inline|queue`` — the
command an operator types — one at a time on a thread of their own, while planners and workers
go on: at random moments over the backfill (``random``), to bring back a window the suite
poisoned once its fault is lifted (``poison``), a window the service failed (``overflow``), and
the final strike (``final``). Some inline replays are run through ``devtools.faultsuite_runner``
armed to die mid-run (an operator's terminal that dies after the data commit, say).

What the CLI accepted is read back from the ledger, never assumed: a window was accepted when,
after the CLI exited, its ``ReplayAt`` lies between the CLI's start and exit (the CLI's inline
run and its queued request both write it; nothing else does). That must agree with what the CLI
printed (``queued K of M``; a ``skipped`` inline window was refused). Each accepted window and the
``ReplayAt`` it got is checked at the end (``devtools.faultsuite_settle``): its final record must
come from a run that started after it.

**Overflow windows.** The emulator answers every query of a few windows ``E_OVERFLOW`` (a scoped
fault: what a window's own data can cause). The engine fails such a window fast, as a
window-caused failure that uses an attempt, and closes it after ``max_attempts``. Once it is
closed, the fault is lifted and the window replayed — except ``overflow_left`` of them, which stay
closed: the one final state besides ``done`` the checks accept, with the service's reason.
"""

from __future__ import annotations

import queue
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from azure.core.exceptions import AzureError

from devtools.faultsuite_check import PipelineRange
from devtools.faultsuite_config import SuiteConfig
from devtools.faultsuite_runner import ARM_ENV
from devtools.faultsuite_settle import OVERFLOW_CODE
from shared.errors import MoverError
from shared.ledger import Ledger
from shared.model import Window, format_ts

__all__ = ["Operator", "Replay"]

_ARMS = ("query:2", "stage:1", "commit:1", "manifest:1")  # an inline replay's CLI dies there (every run passes)
_EXTRA = 4  # random replays beyond the plan, while a planned CLI death has not happened yet
_QUEUED = re.compile(r"^queued (\d+) of (\d+) windows", re.MULTILINE)
_INLINE = re.compile(r"^(\S+) (\S+Z) (\w+)", re.MULTILINE)


@dataclass
class Replay:
    """One ``python -m shared replay`` the operator ran, and what came of it."""

    index: int
    pipeline: str
    windows: tuple[Window, ...]
    mode: str  # inline | queue
    why: str  # random | poison | overflow | final
    arm: str = ""  # "<point>:<n>": the CLI dies there
    began: datetime | None = None
    ended: datetime | None = None
    code: int | None = None
    accepted: dict[str, datetime] = field(default_factory=dict)  # window key → the ReplayAt the CLI wrote
    said: str = ""  # what the CLI printed on stdout
    problem: str = ""  # the CLI and the ledger disagree
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def killed(self) -> bool:
        return self.code is not None and self.code < 0

    def __str__(self) -> str:
        span = f"{self.windows[0].key}+{len(self.windows)}"
        return f"replay #{self.index} {self.why} {self.mode} {self.pipeline} {span}" + (
            f" armed {self.arm}" if self.arm else ""
        )


class Operator:
    """Runs replays on a thread, schedules the random ones, drives the overflow windows."""

    def __init__(self, config: SuiteConfig, pipelines: list[PipelineRange], workdir: Path, rng: random.Random,
                 log: Callable[[str], None], avoid: set[str]) -> None:  # fmt: skip
        self.config = config
        self.pipelines = pipelines
        self.workdir = workdir
        self.rng = rng
        self.log = log
        self.avoid = avoid  # "<pipeline> <key>" of windows random replays leave alone (the poison ones)
        self.replays: list[Replay] = []
        self._requests: queue.Queue[Replay | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._next_random = 0.0
        self._random_issued = 0
        candidates = [(p.name, p.table, w) for p in pipelines for w in p.windows() if f"{p.name} {w.key}" not in avoid]
        chosen = rng.sample(candidates, min(config.overflow, len(candidates)))
        self.overflow: dict[str, tuple[str, Window]] = {f"{n} {w.key}": (t, w) for n, t, w in chosen}
        self.overflow_lift = set(list(self.overflow)[config.overflow_left :])
        self.overflow_closed: dict[str, str] = {}  # "<pipeline> <key>" → the reason it was closed with
        self._lifted: set[str] = set()
        self._env: dict[str, str] = {}
        self._ledger: Ledger | None = None
        self._set_scoped: Callable[[list[dict[str, str]]], None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self, env: Mapping[str, str], ledger: Ledger, set_scoped: Callable[[list[dict[str, str]]], None],
              root: Path) -> None:  # fmt: skip
        """Set the overflow faults and start the replay thread."""
        self._env, self._ledger, self._set_scoped = dict(env), ledger, set_scoped
        self._push_scoped()
        if self.overflow:
            self.log("overflow windows (every query answered E_OVERFLOW): " + ", ".join(sorted(self.overflow)))
        self._thread = threading.Thread(target=self._serve, args=(root,), name="operator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._requests.put(None)
        if self._thread is not None:
            self._thread.join(timeout=200)

    @property
    def idle(self) -> bool:
        """Every replay requested so far has run (the main loop is the only one that requests)."""
        return all(r.done.is_set() for r in self.replays)

    def request(self, pipeline: str, windows: list[Window], mode: str, why: str, arm: str = "") -> Replay:
        replay = Replay(len(self.replays) + 1, pipeline, tuple(windows), mode, why, arm)
        self.replays.append(replay)
        self._requests.put(replay)
        return replay

    # -- the suite's loop -------------------------------------------------------------------------------
    def step(self, progress: float, ledger: Ledger) -> None:
        """Random replays in step with ``progress`` (all issued by 90 % of the backfill, or after it), and
        the overflow windows: once closed, lifted and replayed (or left). ``ledger``: the loop's, which
        fails at once while storage is away."""
        cfg = self.config
        allowed = cfg.replays if progress >= 0.9 else int(cfg.replays * progress / 0.9)
        now = time.monotonic()
        due = self._random_issued < allowed or (allowed == cfg.replays and self.random_left > 0)
        if due and self.idle and now >= self._next_random:
            self._random()
            self._next_random = now + self.rng.uniform(0.5, 3.0)
        with suppress(AzureError, MoverError):  # storage is being restarted: next round
            self._overflow_round(ledger)

    def _overflow_round(self, ledger: Ledger) -> None:
        for entry, (_table, window) in self.overflow.items():
            if entry in self.overflow_closed:
                continue
            name = entry.split(" ")[0]
            state = ledger.get(name, window)
            if state is None or not (state.closed and state.fail_kind == "window" and OVERFLOW_CODE in state.error):
                continue
            self.overflow_closed[entry] = state.error
            if entry in self.overflow_lift:
                self._push_scoped(without=entry)
                self.log(f"operator: {entry} was closed ({state.error[:80]}…); fault lifted, replaying it")
                self.request(name, [window], "queue", "overflow")
            else:
                self.log(f"operator: {entry} was closed ({state.error[:80]}…); left closed")

    @property
    def random_left(self) -> int:
        """Random replays still to come: the plan's, and a few more while a planned CLI death is missing."""
        planned = self.config.replays - self._random_issued
        if planned > 0:
            return planned
        extra = self.config.replays + _EXTRA - self._random_issued
        return extra if self._deaths_missing and extra > 0 else 0

    @property
    def _deaths_missing(self) -> int:
        """Planned CLI deaths neither happened nor armed in a replay still to run."""
        armed = sum(1 for r in self.replays if r.arm and (r.killed or not r.done.is_set()))
        return max(0, self.config.replay_kills - armed)

    @property
    def overflow_settled(self) -> bool:
        return len(self.overflow_closed) == len(self.overflow)

    def _random(self) -> None:
        spec = self.rng.choice(self.pipelines)
        free = [i for i, w in enumerate(spec.windows()) if f"{spec.name} {w.key}" not in self.avoid]
        first = self.rng.choice(free)
        count = 2 if first + 1 in free and self.rng.random() < 0.5 else 1
        windows = spec.windows()[first : first + count]
        mode = self.rng.choice(("inline", "queue"))
        arm = ""
        left = self.config.replays - self._random_issued
        missing = self._deaths_missing
        if missing and left <= missing * 2:
            mode = "inline"
        if mode == "inline" and missing and (self.rng.random() < 0.5 or left <= missing * 2):
            arm = self.rng.choice(_ARMS)
        self._random_issued += 1
        self.request(spec.name, windows, mode, "random", arm)

    def _push_scoped(self, without: str = "") -> None:
        assert self._set_scoped is not None
        if without:
            self._lifted.add(without)
        self._set_scoped([
            {"status": "overflow", "table": table, "start": format_ts(w.start), "end": format_ts(w.end)}
            for entry, (table, w) in self.overflow.items() if entry not in self._lifted
        ])  # fmt: skip

    # -- the replay thread ------------------------------------------------------------------------------
    def _serve(self, root: Path) -> None:
        while (replay := self._requests.get()) is not None:
            try:
                self._run(replay, root)
            except Exception as exc:  # a broken run is reported, never takes the suite down
                replay.problem = f"the suite could not run it: {type(exc).__name__}: {exc}"
            finally:
                replay.done.set()

    def _run(self, replay: Replay, root: Path) -> None:
        start, end = replay.windows[0].start, replay.windows[-1].end
        args = ["replay", "--pipeline", replay.pipeline, "--start", format_ts(start), "--end", format_ts(end),
                "--mode", replay.mode]  # fmt: skip
        env = dict(self._env)
        if replay.arm:  # the real CLI, with the fault points of devtools.faultsuite_runner
            arm_file = self.workdir / f"replay-{replay.index:03d}.arm"
            arm_file.write_text(replay.arm)
            argv, env[ARM_ENV] = [sys.executable, "-m", "devtools.faultsuite_runner", *args], str(arm_file)
        else:
            argv = [sys.executable, "-m", "shared", *args]
        log = self.workdir / f"replay-{replay.index:03d}.log"
        replay.began = datetime.now(UTC)
        with log.open("wb") as err:
            proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
                argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, timeout=180,
                check=False,
            )  # fmt: skip
        replay.ended = datetime.now(UTC)
        replay.code = proc.returncode
        replay.said = proc.stdout.decode(errors="replace").strip()
        with log.open("a") as out:
            out.write(f"\n--- stdout (exit {replay.code}) ---\n{replay.said}\n")
        replay.accepted = self._accepted(replay)
        replay.problem = replay.problem or _disagreement(replay)
        outcome = "killed" if replay.killed else f"exit {replay.code}"
        self.log(f"operator: {replay}: {outcome}, accepted {len(replay.accepted)}/{len(replay.windows)}"
                 + (f"; PROBLEM: {replay.problem}" if replay.problem else ""))  # fmt: skip

    def _accepted(self, replay: Replay) -> dict[str, datetime]:
        """The windows whose ``ReplayAt`` this CLI run wrote (read back; storage may be restarting)."""
        assert self._ledger is not None and replay.began is not None and replay.ended is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                states = [self._ledger.get(replay.pipeline, w) for w in replay.windows]
                break
            except (AzureError, MoverError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        return {
            s.key: s.replay_at
            for s in states
            if s is not None and s.replay_at is not None and replay.began <= s.replay_at <= replay.ended
        }


def _disagreement(replay: Replay) -> str:
    """What the CLI printed against what the ledger holds ("" when they agree)."""
    if replay.killed:
        return ""  # it printed nothing; the ledger alone says what it did
    if replay.mode == "queue":
        match = _QUEUED.search(replay.said)
        said = int(match.group(1)) if match else 0
        if said != len(replay.accepted):
            return f"the CLI said it queued {said}, the ledger holds {len(replay.accepted)} requests of this run"
        return ""
    for _pipeline, start, outcome in _INLINE.findall(replay.said):
        key = next((w.key for w in replay.windows if format_ts(w.start) == start), "")
        took = key in replay.accepted
        if outcome == "skipped" and took:
            return f"{start}: the CLI said skipped, the ledger has its replay"
        if outcome in ("done", "paused", "lease_lost") and not took:
            return f"{start}: the CLI said {outcome}, the ledger has no replay of this run"
    return ""

