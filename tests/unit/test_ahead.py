"""``Ahead``: steps read ahead in parallel, handed on in step order, with a bounded read-ahead."""

from __future__ import annotations

import threading
import time

from shared.engine.ahead import Ahead
from shared.model import Batch, Column
from shared.sources.base import Prefetched

COLUMNS = (Column("n", "long"),)


def _poll(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Steps:
    """Steps that record when they start and finish only when released (step 0 at once)."""

    def __init__(self, count: int) -> None:
        self.started: set[int] = set()
        self.release = [threading.Event() for _ in range(count)]
        self.release[0].set()
        self.lock = threading.Lock()

    def step(self, index: int):
        def run():
            with self.lock:
                self.started.add(index)
            assert self.release[index].wait(10), f"step {index} never released"
            yield Batch("t", COLUMNS, [[index * 10]])
            yield Batch("t", COLUMNS, [[index * 10 + 1]])

        return run


def test_steps_come_out_in_order_whatever_order_they_finish():
    steps = Steps(8)
    out: list[int] = []
    with Ahead([steps.step(i) for i in range(8)], parallel=3) as ahead:
        out += [row[0] for batch in ahead.read(0) for row in batch.rows]
        for event in reversed(steps.release):  # the last submitted finishes first
            event.set()
        for index in range(1, 8):
            out += [row[0] for batch in ahead.read(index) for row in batch.rows]
    assert out == [n for i in range(8) for n in (i * 10, i * 10 + 1)]


def test_read_ahead_stops_at_parallel_plus_two_steps():
    """``parallel`` at the service, one decoding, one written: nothing further is read into memory."""
    steps = Steps(12)
    with Ahead([steps.step(i) for i in range(12)], parallel=3) as ahead:
        list(ahead.read(0))
        _poll(lambda: len(steps.started) == 5, "the read-ahead threads to start")
        assert steps.started == {0, 1, 2, 3, 4}  # four threads: step 0 done, 1-4 read ahead
        assert sorted(ahead._pending) == [1, 2, 3, 4]
        steps.release[4].set()  # a later step finishing frees a thread, but the read-ahead is full
        _poll(lambda: ahead._pending[4].done(), "step 4 to finish")
        assert steps.started == {0, 1, 2, 3, 4}
        steps.release[1].set()
        list(ahead.read(1))  # the writer moves on: one more step may be read
        _poll(lambda: 5 in steps.started, "step 5 to start")
        assert steps.started == {0, 1, 2, 3, 4, 5}
        for event in steps.release:
            event.set()


def test_raw_steps_are_read_ahead_parallel_deep():
    """Steps fetched raw and decoded by the writer need no decoding thread: ``parallel`` at the
    service beside the step being written, nothing more in memory."""
    steps = Steps(12)

    def fetch(index: int) -> Prefetched:
        list(steps.step(index)())  # records the start, waits for the release
        return Prefetched(1, lambda: iter([Batch("t", COLUMNS, [[index]])]))

    raw = [lambda i=i: fetch(i) for i in range(12)]
    with Ahead([steps.step(i) for i in range(12)], parallel=3, prefetch=raw) as ahead:
        assert [b.rows for b in ahead.read(0)] == [[[0]]]
        _poll(lambda: len(steps.started) == 4, "the read-ahead threads to start")
        assert sorted(ahead._pending) == [1, 2, 3]
        steps.release[3].set()
        _poll(lambda: ahead._pending[3].done(), "step 3 to finish")
        assert 4 not in ahead._pending and 4 not in steps.started
        steps.release[1].set()
        list(ahead.read(1))
        _poll(lambda: 4 in steps.started, "step 4 to be sent")
        for event in steps.release:
            event.set()


def test_parallel_one_reads_in_the_callers_thread():
    seen: list[str] = []

    def step():
        seen.append(threading.current_thread().name)
        yield Batch("t", COLUMNS, [[1]])

    with Ahead([step, step], parallel=1) as ahead:
        for index in range(2):
            list(ahead.read(index))
    assert seen == [threading.current_thread().name] * 2
