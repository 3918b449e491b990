"""The fault suite's runner process: ``python -m shared …`` that can SIGKILL itself at a named point.

A kill from outside lands wherever the runner happens to be; most of the time that is
waiting for the next tick or inside a query. To also hit the narrow moments that decide
exactly-once (a block staged but not committed, a blob committed but the ledger not yet
updated, a window claimed but nothing written) the suite writes ``<point>:<n>`` to the
file named by ``FAULTSUITE_ARM_FILE`` — whenever it wants this incarnation armed — and
this process sends itself SIGKILL right after the n-th pass of that point from then on.
``<point>:<n>:freeze`` sends SIGSTOP instead: the process stops mid-window, heartbeat and
all, until the suite sends SIGCONT — a live owner whose leases ran out meanwhile.
The hooks only observe: they call the real method first and change no argument or
result, so what runs is the engine as shipped; SIGKILL skips every ``finally``,
``atexit`` and buffered write, exactly like a host that dies.

Points (each fires *after* the named call returned, ``precommit`` before it):

``claim``     a window was claimed (lease taken, nothing written yet)
``query``     a query API response arrived (mid-window, more queries to come)
``split``     a PartialError result is being split in halves
``stage``     a block was staged (uncommitted data exists)
``precommit`` a window's (or paused window's chunk's) files are about to be committed
``commit``    a data blob was committed (ledger still says ``running``)
``premanifest`` the window's files are committed, its manifest is about to be written
``manifest``  the window manifest was written (the ledger update is next)
``checkpoint`` a paused window's progress was recorded (it is ``pending`` again)
``renew``     a lease heartbeat was written
``enqueue``   a window was marked ``queued`` (T2/T3), its message not sent yet (planners, top-ups)
``sweepmark`` a done window's re-sweep was marked (T11), its message not sent yet (planners)
``record``    new windows were recorded (T1), the frontier not moved yet (planners)

With ``FAULTSUITE_QUEUE_LOG`` set, a worker logs every message it receives, finishes and deletes
with its id and the wall-clock time (``FAULTQRCV``, ``FAULTQFIN``, ``FAULTQDEL``), so the suite
can tell which messages in the queue still carry work the app sent (``devtools.faultsuite_depth``).

A hook whose target moved in the engine is reported on stderr (``FAULTSUITE hook …
missing``) instead of stopping the runner; the suite counts such lines, and kills armed
for that point fall back to kills from outside.
"""

from __future__ import annotations

import faulthandler
import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "ARM_ENV", "CLAIMED", "DELETED", "FINISHED", "FROZEN", "MARKED", "MARKER", "MISSING", "PLANNER_POINTS", "POINTS",
    "POISONED", "RECEIVED", "SENT", "install", "install_queue", "main", "parse",
]  # fmt: skip

ARM_ENV = "FAULTSUITE_ARM_FILE"
MARKER = "FAULTPOINT"
FROZEN = "FAULTFREEZE"
MISSING = "FAULTSUITE hook missing:"
POISONED = "FAULTPOISON"
DELETED = "FAULTQDEL"
RECEIVED = "FAULTQRCV"
FINISHED = "FAULTQFIN"
SENT = "FAULTQSND"
CLAIMED = "FAULTQCLAIM"
MARKED = "FAULTQMARK"
PLANNER_POINTS = ("enqueue", "sweepmark", "record")
POINTS = ("claim", "query", "split", "stage", "precommit", "commit", "premanifest", "manifest", "checkpoint", "renew",
          *PLANNER_POINTS)  # fmt: skip


def parse(spec: str) -> tuple[str, int, bool]:
    """``"commit:2"`` → ``("commit", 2, False)``; ``"query:3:freeze"`` → ``("query", 3, True)``."""
    point, _, rest = spec.strip().partition(":")
    count, _, action = rest.partition(":")
    if point not in POINTS or not count.isdigit() or int(count) < 1 or action not in ("", "freeze"):
        raise ValueError(f"fault spec {spec!r}: expected <point>:<n>[:freeze], point in {POINTS}, n >= 1")
    return point, int(count), action == "freeze"


class _Trigger:
    """Counts passes of the armed point and kills (or freezes) the process on the n-th.

    The arm file is looked for at each pass until it appears (a ``stat`` — cheap next
    to the HTTP call every point follows), then read once; a freeze removes it again.
    """

    def __init__(self, arm_file: str) -> None:
        self._file = arm_file
        self._armed: tuple[str, int, bool] | None = None
        self._seen = 0
        self._lock = threading.Lock()

    def passed(self, point: str, detail: str) -> None:
        with self._lock:
            if self._armed is None:
                if not os.path.exists(self._file):
                    return
                with open(self._file) as f:
                    self._armed = parse(f.read())
            if point != self._armed[0]:
                return
            self._seen += 1
            if self._seen != self._armed[1]:
                return
            nth, freeze = self._seen, self._armed[2]
            # os.write: no Python buffering between the marker and the signal.
            if freeze:
                # Disarm before stopping: after SIGCONT the runner goes on, and the suite may arm it again.
                self._armed, self._seen = None, 0
                os.unlink(self._file)
                os.write(2, f"\n{FROZEN} {point} #{nth} {detail}\n".encode())
                os.kill(os.getpid(), signal.SIGSTOP)
                return
            os.write(2, f"\n{MARKER} {point} #{nth} {detail}\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)


def _after(
    owner: Any,
    name: str,
    trigger: _Trigger,
    point: str,
    detail: Callable[..., str],
    *,
    before: bool = False,
    took: Callable[[Any], bool] = lambda result: True,
) -> None:
    """Wrap ``owner.name`` so ``trigger`` sees every return from it that ``took`` something (every
    call, with ``before``)."""
    original = getattr(owner, name, None) if owner is not None else None
    if original is None:
        os.write(2, f"{MISSING} {getattr(owner, '__name__', owner)}.{name} ({point})\n".encode())
        return

    def describe(*args: Any, **kwargs: Any) -> str:
        try:  # the engine's signatures move; a hook must never be what fails a window
            return detail(*args, **kwargs)
        except Exception:
            return ""

    @functools.wraps(original)
    def hooked(*args: Any, **kwargs: Any) -> Any:
        if before:
            trigger.passed(point, describe(*args, **kwargs))
        result = original(*args, **kwargs)
        if not before and took(result):  # e.g. a claim returning None took nothing
            trigger.passed(point, describe(*args, **kwargs))
        return result

    setattr(owner, name, hooked)


def install(arm_file: str) -> None:
    """Hook every point; the kill waits for ``arm_file`` (see the module doc)."""
    import shared.engine.run
    from shared.ledger import Ledger
    from shared.model import Window
    from shared.sinks.blob import BlobSink, BlobWriter, BlockStager
    from shared.sources.query_api import QueryApiSource

    run_class: Any = getattr(shared.engine.run, "_Run", None)  # private: the step that commits a window's files
    def of_claim(_self: Any, claim: Any, *_: Any, **__: Any) -> str:
        return f"{claim.pipeline} {claim.window.key}"

    trigger = _Trigger(arm_file)
    def of_window_arg(_self: Any, pipeline: str, window: Any, *_: Any, **__: Any) -> str:
        return f"{pipeline} {window.key}"

    def of_state(_self: Any, pipeline: str, state: Any, *_: Any, **__: Any) -> str:
        return f"{pipeline} {state.key}"

    def taken(result: Any) -> bool:
        return result is not None

    _after(Ledger, "claim", trigger, "claim", of_window_arg, took=taken)
    _after(QueryApiSource, "_post", trigger, "query", lambda self, *_, **__: self.config.table)
    _after(Window, "halves", trigger, "split", lambda self, *_, **__: str(self))
    _after(BlockStager, "_put", trigger, "stage", lambda self, *_, **__: self._blob.blob_name)
    _after(run_class, "commit", trigger, "precommit", lambda self, part="", *_, **__: f"{self.window} {part}".strip(),
           before=True)  # fmt: skip
    _after(BlobWriter, "_commit_segment", trigger, "commit", lambda _self, segment, *_, **__: segment.name)
    def of_window(self: Any, window: Any, *_: Any, **__: Any) -> str:
        return f"{self.pipeline} {window.key}"

    _after(BlobSink, "write_manifest", trigger, "premanifest", of_window, before=True)
    _after(BlobSink, "write_manifest", trigger, "manifest", of_window)
    _after(Ledger, "checkpoint", trigger, "checkpoint", of_claim)
    _after(Ledger, "renew", trigger, "renew", of_claim)
    _after(Ledger, "mark_queued", trigger, "enqueue", of_state, took=bool)  # queued, the message not yet sent
    _after(Ledger, "mark_sweep", trigger, "sweepmark", of_state, took=taken)  # marked, the message not yet sent
    _after(Ledger, "record_new", trigger, "record", lambda _self, pipeline, *_, **__: pipeline, took=bool)


def install_queue() -> None:
    """Queue-mode knobs from the environment: shorter timings, and poison windows.

    ``FAULTSUITE_QUEUE_VISIBILITY`` (seconds) stands in for the host's 10 minutes: how long a message
    stays invisible once a worker took it (a dead worker's message comes back after it), and after
    which (plus the lease) a window still ``queued`` counts as having lost its message.
    ``FAULTSUITE_RETRY_AFTER`` (seconds) for the 30 s a failed message stays invisible.
    ``FAULTSUITE_POISON_FILE`` names a file of ``<pipeline> <window key>`` lines: while a window
    is listed, every delivery of its message raises (a handler bug, say), so the queue retries it
    and finally moves it to the poison queue.
    """
    import logging

    logging.getLogger("shared.engine.handlers").setLevel(logging.DEBUG)  # the suite counts "nothing to do" lines
    visibility = os.environ.get("FAULTSUITE_QUEUE_VISIBILITY")
    if visibility:
        from datetime import timedelta

        import shared.engine.planner

        shared.engine.planner.QUEUE_VISIBILITY = timedelta(seconds=float(visibility))
    retry = os.environ.get("FAULTSUITE_RETRY_AFTER")
    if retry or visibility:
        from shared.engine.queue_loop import QueueLoop

        post_init = QueueLoop.__post_init__

        def shorter(self: QueueLoop) -> None:
            if retry:
                self.retry_after = int(retry)
            if visibility:
                self.invisible_for = max(1, round(float(visibility)))
            post_init(self)

        QueueLoop.__post_init__ = shorter  # type: ignore[method-assign]
    if os.environ.get("FAULTSUITE_QUEUE_LOG"):
        _log_queue()
    poison_file = os.environ.get("FAULTSUITE_POISON_FILE")
    if poison_file:
        from shared.app import App
        from shared.engine.messages import BadMessage, WorkMessage

        handle = App.handle

        def poisoned(self: App, body: bytes | str, *, dequeue_count: int = 1) -> str:
            try:
                message = WorkMessage.decode(body)
                with open(poison_file) as f:
                    listed = f.read().split("\n")
            except (BadMessage, OSError):
                listed = []
            else:
                if message.kind == "window" and f"{message.pipeline} {message.window.key}" in listed:
                    os.write(2, f"\n{POISONED} {message.pipeline} {message.window.key} #{dequeue_count}\n".encode())
                    raise RuntimeError(f"faultsuite: poison message for {message.pipeline} {message.window.key}")
            return handle(self, body, dequeue_count=dequeue_count)

        App.handle = poisoned  # type: ignore[method-assign]


def _log_queue() -> None:
    """A line per message this process sent (``FAULTQSND <queue> <id> <time> <kind> <pipeline> <start>
    <time the ledger decided it>``: the window's ``queued`` or sweep mark, or its creation, T1–T3/T11),
    received (``FAULTQRCV <queue> <id> <time>``), finished — its handler returned, the delete comes next
    (``FAULTQFIN <queue> <id> <time>``) — and deleted (``FAULTQDEL <queue> <id> <time the delete began>
    <time it returned>``); every window it claimed (``FAULTQCLAIM <pipeline> <start> <time> <id of the
    message it was handling, or ->``) and every
    queue mark it tried (``FAULTQMARK <kind> <pipeline> <start> <ETag read> <outcome> <time>``). Times are
    unix seconds."""
    import time

    from azure.storage.queue import QueueClient

    from shared.engine.queue_loop import QueueLoop

    def line(kind: str, queue: str, message: Any, *times: float) -> None:
        stamps = " ".join(f"{t:.6f}" for t in times)
        os.write(2, f"\n{kind} {queue} {getattr(message, 'id', message)} {stamps}\n".encode())

    receive, finish, process = QueueLoop._receive, QueueLoop._delete, QueueLoop._process
    delete, send = QueueClient.delete_message, QueueClient.send_message
    handling = threading.local()  # the message this thread is handling, if any

    def processed(self: QueueLoop, message: Any) -> None:
        handling.id = message.id
        try:
            process(self, message)
        finally:
            handling.id = "-"

    def received(self: QueueLoop) -> list[Any]:
        messages = receive(self)
        at = time.time()
        for message in messages:
            line(RECEIVED, self.queue.queue_name, message, at)
        return messages

    def finished(self: QueueLoop, message: Any) -> None:
        line(FINISHED, self.queue.queue_name, message, time.time())
        finish(self, message)

    def deleted(self: QueueClient, message: Any, *args: Any, **kwargs: Any) -> None:
        began = time.time()  # the message may be gone from here on
        delete(self, message, *args, **kwargs)
        line(DELETED, self.queue_name, message, began, time.time())

    def sent(self: QueueClient, content: Any, *args: Any, **kwargs: Any) -> Any:
        message = send(self, content, *args, **kwargs)
        at = time.time()
        try:
            body = json.loads(content)
            what = f"{body['kind']} {body['pipeline']} {body['start']}"
        except (ValueError, TypeError, KeyError):
            what = "? ? ?"
        decided = decisions.get(tuple(what.split(" ")), at)
        os.write(2, f"\n{SENT} {self.queue_name} {message.id} {at:.6f} {what} {decided:.6f}\n".encode())
        return message

    from shared.ledger import Ledger
    from shared.model import format_ts

    claim, force_claim = Ledger.claim, Ledger.force_claim
    mark_sweep, mark_queued, record_new = Ledger.mark_sweep, Ledger.mark_queued, Ledger.record_new
    decisions: dict[tuple[str, ...], float] = {}  # (kind, pipeline, start) → when this process last marked it

    def mark(kind: str, pipeline: str, state: Any, outcome: object) -> None:
        at, start = time.time(), format_ts(state.window.start)
        if outcome:
            decisions[(kind, pipeline, start)] = at
        os.write(2, f"\n{MARKED} {kind} {pipeline} {start} {state.etag} {outcome} {at:.6f}\n".encode())

    def claimed(original: Any) -> Any:
        def wrapped(self: Ledger, pipeline: str, window: Any, *args: Any, **kwargs: Any) -> Any:
            taken = original(self, pipeline, window, *args, **kwargs)
            if taken is not None:
                at, start, by = time.time(), format_ts(window.start), getattr(handling, "id", "-")
                os.write(2, f"\n{CLAIMED} {pipeline} {start} {at:.6f} {by}\n".encode())
            return taken

        return wrapped

    def sweep_marked(self: Ledger, pipeline: str, state: Any, now: Any) -> str | None:
        etag = mark_sweep(self, pipeline, state, now)
        mark("sweep", pipeline, state, etag)
        return etag

    def queue_marked(self: Ledger, pipeline: str, state: Any, now: Any, **kwargs: Any) -> bool:
        queued = mark_queued(self, pipeline, state, now, **kwargs)
        mark("window", pipeline, state, queued)
        return queued

    def recorded(self: Ledger, pipeline: str, windows: Any, now: Any, **kwargs: Any) -> Any:
        created = record_new(self, pipeline, windows, now, **kwargs)
        at = time.time()
        for window in created:
            decisions[("window", pipeline, format_ts(window.start))] = at
        return created

    Ledger.claim = claimed(claim)  # type: ignore[method-assign]
    Ledger.force_claim = claimed(force_claim)  # type: ignore[method-assign]
    Ledger.mark_sweep = sweep_marked  # type: ignore[method-assign,assignment]
    Ledger.mark_queued = queue_marked  # type: ignore[method-assign,assignment]
    Ledger.record_new = recorded  # type: ignore[method-assign,assignment]
    QueueLoop._receive = received  # type: ignore[method-assign]
    QueueLoop._process = processed  # type: ignore[method-assign]
    QueueClient.send_message = sent  # type: ignore[method-assign]
    QueueLoop._delete = finished  # type: ignore[method-assign]
    QueueClient.delete_message = deleted  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.faultsuite_runner run --every 0.5``: the CLI of ``shared``, armed."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the suite asks for stacks of a runner that hangs
    install_queue()  # first: its logging sits inside the fault points, so a process killed at one logged it
    arm_file = os.environ.get(ARM_ENV, "")
    if arm_file:
        install(arm_file)
    from shared.frontends.cli import main as shared_main

    return shared_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
