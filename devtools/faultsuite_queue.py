"""The fault suite's queue mode: the queue's own faults, around the app's scaled-out shape.

``SuiteConfig(queue=True)`` runs the app's scaled-out shape instead of inline runners: planner
processes (``devtools.faultsuite_planners``) and worker processes (``python -m shared work``) in
the runner slots, which the suite SIGKILLs mid-window as before, and an operator replaying
windows through the CLI (``devtools.faultsuite_operator``). Besides, this module does to the
queue what the cloud may do:

* **duplicates** — copies of messages waiting in the queue are sent again;
* **late / stale** — messages seen earlier are sent again once their window is done
  (mid-run, and all at once at the end, before the verdict);
* **lost** — messages are received and deleted right after they were enqueued: their
  windows stay ``queued`` until a planner notices (``FAULTSUITE_QUEUE_VISIBILITY`` stands
  in for the host's 10 minutes) and enqueues them again;
* **poison** — every delivery of a listed window's message raises in the worker
  (``FAULTSUITE_POISON_FILE``, see ``faultsuite_runner``), so it ends on
  ``<queue>-poison`` and the window ``failed``; the suite then lifts the fault and the
  operator replays the window through the CLI, which must still move it exactly once.

Every message the suite sends itself is noted with its id (``devtools.faultsuite_depth``), so
the queue depth the app causes can be told from the suite's own. Counters go into the
``FAULTS`` line under ``queue``.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError

from devtools.faultsuite_check import PipelineRange
from devtools.faultsuite_config import SuiteConfig
from devtools.faultsuite_runner import POISONED
from shared.engine.messages import BadMessage, WorkMessage
from shared.errors import MoverError
from shared.ledger import Ledger
from shared.runtime.storage import queue_client
from shared.settings import StorageConfig

if TYPE_CHECKING:
    from devtools.faultsuite_depth import DepthSampler
    from devtools.faultsuite_operator import Operator

__all__ = ["QUEUE_NAME", "QueueChaos"]

QUEUE_NAME = "faultsuite-work"


class QueueChaos:
    """The queue faults, driven one ``step`` at a time by the suite's loop."""

    def __init__(self, config: SuiteConfig, pipelines: list[PipelineRange], workdir: Path, rng: random.Random,
                 log: Callable[[str], None]) -> None:  # fmt: skip
        self.config = config
        self.pipelines = pipelines
        self.workdir = workdir
        self.rng = rng
        self.log = log
        self.poison_file = workdir / "poison.txt"
        windows = [(p.name, w) for p in pipelines for w in p.windows()]
        self.poison = [f"{name} {w.key}" for name, w in rng.sample(windows, min(config.poison, len(windows)))]
        self.poison_file.write_text("\n".join(self.poison) + "\n")
        self.seen: dict[bytes, WorkMessage] = {}  # window messages peeked in the queue, oldest first
        names = ("duplicates", "stale", "lost", "poisoned", "poison_replayed", "poison_deliveries", "stale_at_end",
                 "ignored_logged")  # fmt: skip
        self.counts = dict.fromkeys(names, 0)
        self._replayed: set[str] = set()
        self._queue: Any = None
        self._poison_queue: Any = None
        self.depth: DepthSampler | None = None
        self.deleted: dict[str, float] = {}  # app messages the suite deleted (lost) → when
        self.operator: Operator | None = None

    def env(self) -> dict[str, str]:
        """What planners and workers need besides the suite's runner settings."""
        return {
            "MOVER_QUEUE_NAME": QUEUE_NAME,
            "FAULTSUITE_QUEUE_VISIBILITY": str(self.config.queue_visibility),
            "FAULTSUITE_RETRY_AFTER": str(self.config.retry_after),
            "FAULTSUITE_POISON_FILE": str(self.poison_file),
            "FAULTSUITE_QUEUE_LOG": "1",
        }

    @staticmethod
    def worker_argv(max_dequeue: int) -> list[str]:
        return [sys.executable, "-m", "devtools.faultsuite_runner", "work", "--idle-wait", "0.2",
                "--max-dequeue", str(max_dequeue)]  # fmt: skip

    def connect(self, storage: str) -> None:
        config = StorageConfig("AzureWebJobsStorage", conn_string=storage)
        self._queue = queue_client(config, QUEUE_NAME)
        self._poison_queue = queue_client(config, QUEUE_NAME + "-poison")
        for client in (self._queue, self._poison_queue):
            with suppress(ResourceExistsError):
                client.create_queue()

    # -- queue faults ---------------------------------------------------------------------------------
    def step(self, done: int, total: int, ledger: Ledger) -> None:
        """One round of faults, in step with progress; storage errors just skip the round."""
        with suppress(AzureError, MoverError):
            self._step(done / total if total else 1.0, ledger)

    def _peek(self) -> list[tuple[bytes, WorkMessage]]:
        found = []
        for message in self._queue.peek_messages(max_messages=32):
            body = message.content if isinstance(message.content, bytes) else str(message.content).encode()
            try:
                decoded = WorkMessage.decode(body)
            except BadMessage:
                continue
            if decoded.kind == "window":
                self.seen.setdefault(body, decoded)
                found.append((body, decoded))
        return found

    def _step(self, progress: float, ledger: Ledger) -> None:
        cfg, counts = self.config, self.counts
        waiting = self._peek()
        if waiting and counts["lost"] < cfg.lost and progress >= 0.1 * counts["lost"]:  # early: recovery takes long
            for message in self._queue.receive_messages(max_messages=1, visibility_timeout=30):
                self._queue.delete_message(message)  # lost for good: only the ledger still knows the window
                self.deleted[message.id] = time.time()
                counts["lost"] += 1
                self.log(f"queue: deleted a message right after it was enqueued (lost {counts['lost']}/{cfg.lost})")
        if waiting and counts["duplicates"] < cfg.duplicates and progress >= 0.1:
            body, _ = self.rng.choice(waiting)
            self._inject(body)
            counts["duplicates"] += 1
        if counts["stale"] < cfg.stale // 2 and progress >= 0.5:
            for body, message in list(self.seen.items()):
                state = ledger.get(message.pipeline, message.window)
                if state is not None and state.status == "done":
                    self._inject(body)
                    counts["stale"] += 1
                    del self.seen[body]
                    break
        self._poison_round(ledger)

    def _inject(self, body: bytes) -> None:
        """Send a message of the suite's own (noted, so the depth the app causes can be told apart)."""
        sent = self._queue.send_message(body)
        if self.depth is not None:
            self.depth.note_injected(sent.id)

    def _poison_round(self, ledger: Ledger) -> None:
        """A poison window that ended ``failed``: lift the fault, replay it through the CLI (as an operator would)."""
        for entry in self.poison:
            if entry in self._replayed:
                continue
            name, key = entry.split(" ")
            spec = next(p for p in self.pipelines if p.name == name)
            window = next(w for w in spec.windows() if w.key == key)
            state = ledger.get(name, window)
            if state is None or state.status != "failed" or "poison" not in (state.error or ""):
                continue
            self.counts["poisoned"] += 1
            rest = [e for e in self.poison if e != entry and e not in self._replayed]
            self.poison_file.write_text("\n".join(rest) + "\n")
            assert self.operator is not None
            self.operator.request(name, [window], "queue", "poison")
            self._replayed.add(entry)
            self.counts["poison_replayed"] += 1
            self.log(f"queue: {entry} ended failed via the poison queue; fault lifted, window replayed")

    @property
    def poison_settled(self) -> bool:
        """Every poison window reached the poison queue and was handed to the operator."""
        return self.counts["poison_replayed"] >= len(self.poison)

    def finish(self, ledger: Ledger, deadline: float) -> None:
        """Every window final: send the remaining late messages (of done windows), wait for both queues to drain."""
        for body, message in list(self.seen.items()):
            if self.counts["stale"] >= self.config.stale:
                break
            state = ledger.get(message.pipeline, message.window)
            if state is not None and state.status == "done":
                self._inject(body)
                self.counts["stale"] += 1
                self.counts["stale_at_end"] += 1
        self.log(f"queue: {self.counts['stale_at_end']} late messages for done windows sent; waiting for the drain")
        empty = 0  # visible messages only: a killed worker's message stays invisible for the visibility timeout
        while time.monotonic() < deadline:
            waiting = sum(len(q.peek_messages(max_messages=1)) for q in (self._queue, self._poison_queue))
            empty = empty + 1 if waiting == 0 else 0
            if empty >= 3:  # taken by now; the workers finish what they hold when stopped
                return
            time.sleep(0.3)
        self.log("queue: did not drain before the deadline")

    def count_logs(self) -> None:
        logs = [p.read_text(errors="replace") for p in self.workdir.glob("runner-*.log")]
        self.counts["poison_deliveries"] = sum(text.count(POISONED + " ") for text in logs)
        self.counts["ignored_logged"] = sum(text.count(": nothing to do (") for text in logs)

    def failures(self) -> list[str]:
        cfg, c = self.config, self.counts
        out = []
        if c["lost"] < cfg.lost or c["duplicates"] < cfg.duplicates or c["stale"] < cfg.stale:
            out.append(f"queue faults short of the plan: {c}")
        if c["poison_replayed"] < len(self.poison):
            out.append(f"{len(self.poison) - c['poison_replayed']} poison window(s) never reached the poison queue")
        return out
