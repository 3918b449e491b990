"""The work queue's depth during a queue run, and how much of it the app itself caused.

The platform scales queue workers on the queue's message count, and docs/scale.md bounds it:
a pipeline never has more than ``max_per_tick`` windows queued or running, nor more than
``max_per_tick`` re-sweeps in flight, so the queue holds at most ``pipelines × max_per_tick``
window messages plus as many sweep messages. ``DepthSampler`` reads the queue's approximate
message count (visible and invisible messages; exact on Azurite) every ``every`` seconds on
its own thread. ``depth_figures`` then takes from each sample what is not work the app has
in flight, from the processes' logs of what they sent, received, finished, deleted and claimed
(``devtools.faultsuite_runner``):

* the suite's own messages — copies of waiting messages, late messages of done windows — noted
  here with their id and send time, until a worker began to delete them;
* messages held by a worker the suite SIGKILLed or froze (they come back after the visibility
  timeout and are dropped), and messages whose handler already returned but whose delete has not
  (the host deletes a message after its function returns; the app sent the next one already);
* older messages of a window (or re-sweep) whose work the app sent again (a takeover), and
  messages whose work was done through another one while they waited.

What is left — the windows and re-sweeps the queue holds work for — is checked against the bound.
Apart from that, ``early_resends`` lists work the app sent again too soon, which the depth alone
(counting a window once however many messages it has) would not show.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient

from devtools.faultsuite_runner import CLAIMED, DELETED, FINISHED, RECEIVED, SENT

__all__ = [
    "DepthFigures", "DepthSampler", "claims", "decisions", "deletions", "depth_figures", "early_resends", "measure",
    "overtaken", "receipts", "sends", "spent",
]  # fmt: skip


class DepthSampler:
    """Samples ``queue``'s message count until stopped; samples taken while storage is away are skipped."""

    def __init__(self, connection_string: str, queue: str, every: float) -> None:
        self.queue = queue
        self._client = QueueClient.from_connection_string(connection_string, queue, retry_total=0)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="depth", daemon=True)
        self._lock = threading.Lock()
        self.samples: list[tuple[float, int]] = []  # (unix time the answer came, messages)
        self.injected: dict[str, float] = {}  # id of a message the suite sent → unix time its send returned

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def note_injected(self, message_id: str) -> None:
        with self._lock:
            self.injected[message_id] = time.time()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                count = int(self._client.get_queue_properties().approximate_message_count or 0)
            except AzureError:
                continue  # Azurite is being restarted
            with self._lock:
                self.samples.append((time.time(), count))


_EVENT = re.compile(
    rf"^({RECEIVED}|{FINISHED}|{DELETED}) (\S+) (\S+) (\d+(?:\.\d+)?)(?: (\d+(?:\.\d+)?))?$", re.MULTILINE
)
_Trail = list[tuple[float, str, str, float]]  # (time, kind, log, end of a delete)


def _trails(logs: Mapping[str, str], queue: str) -> dict[str, _Trail]:
    """Message id → what workers did with it, in time order (a delete at the time it began)."""
    trails: dict[str, _Trail] = {}
    for name, text in logs.items():
        for kind, queue_name, ident, at, end in _EVENT.findall(text):
            if queue_name == queue:
                trails.setdefault(ident, []).append((float(at), kind, name, float(end or at)))
    rank = {RECEIVED: 0, FINISHED: 1, DELETED: 2}  # a handler returns before its delete begins, at the same ms
    for trail in trails.values():
        trail.sort(key=lambda event: (event[0], rank[event[1]]))
    return trails


_SENT = re.compile(rf"^{SENT} (\S+) (\S+) (\d+(?:\.\d+)?) (\S+) (\S+) (\S+)(?: (\d+(?:\.\d+)?))?$", re.MULTILINE)


def sends(logs: Mapping[str, str], queue: str) -> dict[str, tuple[float, str]]:
    """Message id → (unix time its send returned, "<kind> <pipeline> <window start>") for every message
    a planner or worker sent to ``queue`` (for telling what the queue held when it was deepest)."""
    return {ident: (float(at), f"{kind} {pipeline} {start}") for text in logs.values()
            for name, ident, at, kind, pipeline, start, _ in _SENT.findall(text) if name == queue}  # fmt: skip


def decisions(logs: Mapping[str, str], queue: str) -> dict[str, float]:
    """Message id → when the ledger decided it (the queue or sweep mark, or the window's creation, that
    the send followed), for the messages whose sender logged it."""
    return {ident: float(decided) for text in logs.values()
            for name, ident, _, _, _, _, decided in _SENT.findall(text) if name == queue and decided}  # fmt: skip


_CLAIMED = re.compile(rf"^{CLAIMED} (\S+) (\S+) (\d+(?:\.\d+)?)(?: (\S+))?$", re.MULTILINE)


def claims(logs: Mapping[str, str], *, by: bool = False) -> dict[str, list[Any]]:
    """"<pipeline> <window start>" → when a run claimed it (unix times; with ``by``: (time, id of the message
    the claim came from, "-" for none, e.g. an inline replay)), from every process's log."""
    out: dict[str, list[Any]] = {}
    for text in logs.values():
        for pipeline, start, at, message in _CLAIMED.findall(text):
            out.setdefault(f"{pipeline} {start}", []).append((float(at), message or "-") if by else float(at))
    return out


def receipts(logs: Mapping[str, str], queue: str) -> dict[str, float]:
    """Message id → when a worker first received it from ``queue`` (unix time)."""
    out: dict[str, float] = {}
    for ident, trail in _trails(logs, queue).items():
        times = [at for at, kind, _, _ in trail if kind == RECEIVED]
        if times:
            out[ident] = times[0]
    return out


_SLACK = 2.0  # seconds: a planner's QueuedAt is written before the send returns (its logged time)


def early_resends(
    sent: _Sent,
    gone: Mapping[str, float],
    received: Mapping[str, float],
    replayed: Mapping[str, list[float]],
    limit: float,
    claimed: Mapping[str, list[float]] | None = None,
    decided: Mapping[str, float] | None = None,
) -> list[str]:
    """Work the app sent again while its earlier message still waited in the queue, never taken by a
    worker, clearly less than ``limit`` (visibility + lease) after it was sent — with nothing in between
    that calls for a new message: no run claimed the window (through any of its messages; its pause,
    death or failure needs one) and no operator replayed it. A ``queued`` window's message counts as lost
    only after ``limit`` (T2), so each of these is work sent twice too soon. ``replayed`` and
    ``claimed``: "<pipeline> <start>" → when replays of it were accepted / runs claimed it (unix).
    ``decided``: message id → when the ledger decided it (the mark its send followed); messages are
    ordered and compared by it, since a send may come well after its mark (a process descheduled)."""
    by_work: dict[str, list[tuple[float, str]]] = {}
    for ident, (at, what) in sent.items():
        by_work.setdefault(what, []).append(((decided or {}).get(ident, at), ident))
    out = []
    for what, messages in by_work.items():
        messages.sort()
        window = " ".join(what.split(" ")[1:])
        for i, (again, _ident) in enumerate(messages):
            for first, earlier in messages[:i]:
                waiting = again < gone.get(earlier, float("inf")) and received.get(earlier, float("inf")) > again
                asked = any(first < at <= again for at in replayed.get(window, []))
                asked = asked or any(first < at <= again for at in (claimed or {}).get(window, []))
                if waiting and again - first < limit - _SLACK and not asked:
                    out.append(f"{what}: sent again {again - first:.1f}s after a message still waiting ({earlier})")
    return out


def deletions(logs: Mapping[str, str], queue: str, *, ended: bool = False) -> dict[str, float]:
    """Message id → when a worker first began (``ended``: finished) to delete it from ``queue`` (unix time)."""
    out: dict[str, float] = {}
    for ident, trail in _trails(logs, queue).items():
        times = [end if ended else at for at, kind, _, end in trail if kind == DELETED]
        if times:
            out[ident] = times[0]
    return out


def spent(
    logs: Mapping[str, str], queue: str, down: Mapping[str, list[tuple[float, float]]]
) -> list[tuple[str, float, float]]:
    """Spans (unix times) in which a message was still in the queue but carried no work any more:

    * **held by the dead** — its worker was SIGKILLed or frozen while holding it: from then until the
      message was next received or deleted. Nobody can delete it; it comes back after the visibility
      timeout and is dropped then, while the app has sent its window again (T3);
    * **finished** — its handler returned (the window done, paused or skipped, and the next window's
      message already sent), the delete is next: until the delete returned.

    ``logs``: worker log name → text; ``down``: log name → the spans its process was down (a kill: until
    ``inf``).
    """
    spans = []
    for ident, trail in _trails(logs, queue).items():
        for i, (at, kind, holder, _) in enumerate(trail):
            following = trail[i + 1] if i + 1 < len(trail) else None
            after = float("inf") if following is None else following[3] if following[1] == DELETED else following[0]
            if kind == RECEIVED:
                spans += [(ident, a, min(b, after)) for a, b in down.get(holder, []) if at <= a < after]
            elif kind == FINISHED:
                spans.append((ident, at, after))
    return spans


_Sent = Mapping[str, tuple[float, str]]  # message id → (time its send returned, "<kind> <pipeline> <start>")


def overtaken(
    logs: Mapping[str, str], queue: str, sent: _Sent, decided: Mapping[str, float], claimed: Mapping[str, list[Any]]
) -> list[tuple[str, float, float]]:
    """Spans in which a message still waited in the queue while its work was done through another one: a
    run claimed its window — through another message, or an operator's inline replay — after the message
    was decided and before any worker took it. It will find the window taken or done and be dropped."""
    trails = _trails(logs, queue)
    spans = []
    for ident, (at, what) in sent.items():
        since = decided.get(ident, at)
        taken = [t for t, kind, _, _ in trails.get(ident, []) if kind in (RECEIVED, DELETED)]
        window = " ".join(what.split(" ")[1:])
        first = min((t for t, message in claimed.get(window, []) if t > since and message != ident), default=None)
        if first is None or any(since <= t <= first for t in taken):
            continue
        after = [t for t in taken if t > first]
        spans.append((ident, first, min(after) if after else float("inf")))
    return spans


@dataclass
class DepthFigures:
    """The queue's depth over the run: all messages, the suite's own, the spent ones, and the app's work."""

    bound: int
    samples: int = 0
    max_total: int = 0
    max_injected: int = 0
    max_app: int = 0
    max_spent: int = 0  # held by dead workers, finished awaiting their delete, or superseded
    over: list[str] = field(default_factory=list)  # samples where the app's work passed the bound
    early: list[str] = field(default_factory=list)  # work sent again too soon (``early_resends``)
    series: list[tuple[float, int, int, int]] = field(default_factory=list, repr=False)  # (s, all, suite's, spent)

    def as_dict(self) -> dict[str, int]:
        return {"max": self.max_app, "bound": self.bound, "max_all": self.max_total,
                "suite_messages_max": self.max_injected, "spent_max": self.max_spent,
                "early_resends": len(self.early), "samples": self.samples}  # fmt: skip


def depth_figures(
    samples: list[tuple[float, int]],
    injected: Mapping[str, float],
    deleted: Mapping[str, float],
    spent_spans: list[tuple[str, float, float]],
    bound: int,
    began: float,
    sent: _Sent | None = None,
    gone: Mapping[str, float] | None = None,
) -> DepthFigures:
    """Each sample minus what in it is not work the app has in flight:

    * the suite's own messages (sent before the sample, their delete not begun before it);
    * the app's messages that carried no work any more (``spent`` spans);
    * **superseded** messages: with ``sent`` (the app's sends from the logs, ``gone``: when each one's
      delete returned), every message of a window or re-sweep but the newest one still in the queue. A
      newer one exists because the app sent the work again — a takeover (T3) after the lease of a run
      that died, stalled or lost storage ran out — and the older one is dropped when it is delivered.

    A suite message counts from when its send returned until its delete began: a sample taken just
    before or after either moment may hold it without subtracting it, never the other way round.
    """
    figures = DepthFigures(bound=bound, samples=len(samples))
    never = float("inf")
    for at, total in samples:
        mine = {i for i, t in injected.items() if t <= at < deleted.get(i, never)}
        idle = {i for i, a, b in spent_spans if a <= at < b} - mine
        older = _superseded(at, sent, gone or deleted) - mine - idle if sent else set()
        app = total - len(mine) - len(idle) - len(older)
        figures.max_total = max(figures.max_total, total)
        figures.max_injected = max(figures.max_injected, len(mine))
        figures.max_spent = max(figures.max_spent, len(idle) + len(older))
        figures.max_app = max(figures.max_app, app)
        figures.series.append((round(at - began, 2), total, len(mine), len(idle) + len(older)))
        if app > bound and len(figures.over) < 20:
            held = _held(at, sent, gone or deleted, mine | idle | older) if sent else ""
            figures.over.append(f"{at - began:.1f}s: {total} messages, {len(mine)} the suite's, "
                                f"{len(idle) + len(older)} spent{held}")  # fmt: skip
    return figures


def _present(at: float, sent: _Sent, gone: Mapping[str, float]) -> list[tuple[float, str, str]]:
    """(sent at, id, what) of every logged app message in the queue at ``at``."""
    return [(t, ident, what) for ident, (t, what) in sent.items() if t <= at < gone.get(ident, float("inf"))]


def _superseded(at: float, sent: _Sent, gone: Mapping[str, float]) -> set[str]:
    """Ids of messages in the queue at ``at`` with a newer one for the same work (kind, pipeline, window)."""
    newest: dict[str, tuple[float, str]] = {}
    older: set[str] = set()
    for t, ident, what in sorted(_present(at, sent, gone)):
        if what in newest:
            older.add(newest[what][1])
        newest[what] = (t, ident)
    return older


def _held(at: float, sent: _Sent, gone: Mapping[str, float], left_out: set[str]) -> str:
    """What the app's work in the queue at ``at`` was, by kind and pipeline (the logs' view of a deep sample)."""
    by_kind: dict[str, int] = {}
    for _, ident, what in _present(at, sent, gone):
        if ident not in left_out:
            kind_pipeline = " ".join(what.split(" ")[:2])
            by_kind[kind_pipeline] = by_kind.get(kind_pipeline, 0) + 1
    return f" (logged: {by_kind})"


def measure(
    workdir: Path,
    queue: str,
    sampler: DepthSampler,
    *,
    suite_deleted: Mapping[str, float],
    down: Mapping[str, list[tuple[float, float]]],
    bound: int,
    replayed: Mapping[str, list[float]],
    limit: float,
    began: float,
) -> DepthFigures:
    """The run's depth figures and early re-sends from the processes' logs in ``workdir`` (workers are
    ``runner-*.log``); the samples go to ``depth.csv`` there. ``suite_deleted``: app messages the suite
    deleted itself (lost messages) → when."""
    every = {p.name: p.read_text(errors="replace") for p in workdir.glob("*.log")}
    workers = {name: text for name, text in every.items() if name.startswith("runner-")}
    sent = sends(every, queue)
    gone = {**deletions(workers, queue, ended=True), **suite_deleted}
    decided = decisions(every, queue)
    idle = spent(workers, queue, down) + overtaken(workers, queue, sent, decided, claims(every, by=True))
    figures = depth_figures(sampler.samples, sampler.injected, deletions(workers, queue), idle, bound, began,
                            sent=sent, gone=gone)  # fmt: skip
    figures.early = early_resends(sent, gone, receipts(workers, queue), replayed, limit, claims(every), decided)
    rows = [",".join(map(str, row)) for row in figures.series]
    (workdir / "depth.csv").write_text("seconds,messages,suite_messages,spent\n" + "\n".join(rows) + "\n")
    return figures
