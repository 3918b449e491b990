"""Reading a window's steps ahead of the writer: in parallel, handed on in step order, and
bounded by the process's byte budget, so the service never waits on the writer and memory
never grows with the window."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from shared.model import Batch
from shared.runtime.membudget import ByteBudget, process_budget
from shared.settings import Pipeline, QuerySourceConfig
from shared.sources import Prefetched

__all__ = ["Ahead", "parallel_of"]


def parallel_of(pipeline: Pipeline) -> int:
    """Sub-queries of one window in flight: ``parallel_queries``, else the whole query budget."""
    source = pipeline.source
    return source.in_flight if isinstance(source, QuerySourceConfig) else 1


class Ahead:
    """Reads a window's steps ahead of the writer, handing each one's batches on in step order:
    files never depend on timing (same data, same bytes).

    ``parallel`` is the number of queries at the service; the source holds it with its own
    lanes (``QueryApiSource``), around the budget. Besides the step being written, up to
    ``parallel`` steps are read ahead when they are fetched raw and decoded by the writer
    (``prefetch``), ``parallel + 1`` when a read-ahead thread decodes its step, as far as the
    process's byte budget (``shared.runtime.membudget``) allows: each step read ahead reserves its
    expected size (the largest step seen so far) before its query is sent and gives it back
    once written. The step the writer needs is always read, so a window never waits on
    another one's memory.
    """

    def __init__(
        self,
        steps: list[Callable[[], Iterator[Batch]]],
        *,
        parallel: int,
        budget: ByteBudget | None = None,
        prefetch: list[Callable[[], Prefetched]] | None = None,
    ) -> None:
        self.steps = steps
        self.prefetch = prefetch  # fetch ahead, decode when read (a ``PrefetchingSource``)
        self.parallel = max(1, parallel)
        self.budget = budget or process_budget()
        self._depth = self.parallel + (1 if prefetch is not None else 2)  # steps held, the one written included
        self._pool = ThreadPoolExecutor(self._depth - 1, thread_name_prefix="subquery") if self.parallel > 1 else None
        self._pending: dict[int, Future[list[Batch] | Prefetched]] = {}
        self._held: dict[int, int] = {}  # step → bytes reserved for it
        self._largest = 0  # bytes of the largest step read so far

    @property
    def _estimate(self) -> int:
        return max(self._largest, _MIN_ESTIMATE) if self._largest else _FIRST_ESTIMATE

    def read(self, index: int) -> Iterator[Batch]:
        if self._pool is None:
            return self.steps[index]()
        for ahead in range(index, min(len(self.steps), index + self._depth)):
            if ahead in self._pending:
                continue
            estimate = self._estimate
            if ahead == index:
                self.budget.force(estimate)
            elif not self.budget.try_reserve(estimate):
                break  # the rest when written steps give memory back
            self._held[ahead] = estimate
            work = self.prefetch[ahead] if self.prefetch is not None else partial(_collect, self.steps[ahead])
            self._pending[ahead] = self._pool.submit(work)
        got = self._pending.pop(index).result()
        size = got.nbytes if isinstance(got, Prefetched) else sum(_nbytes(b) for b in got)
        self._largest = max(self._largest, size)
        self.budget.adjust(size - self._held[index])
        self._held[index] = size
        return self._drain(index, got)

    def _drain(self, index: int, got: list[Batch] | Prefetched) -> Iterator[Batch]:
        """Hand batches on, dropping each from the buffer as it goes (a prefetched step is decoded
        here, on the writer's thread); the step's bytes go back to the budget once written."""
        try:
            yield from (got.decode() if isinstance(got, Prefetched) else _drain(got))
        finally:
            self.budget.release(self._held.pop(index, 0))

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:  # paused or failed: what is still in flight is not needed any more
            for future in self._pending.values():
                future.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)
        for held in self._held.values():
            self.budget.release(held)
        self._held.clear()


_FIRST_ESTIMATE = 8 * 2**20  # before any step came back (10,000 rows of ~800 bytes)
_MIN_ESTIMATE = 2**20


def _nbytes(batch: Batch) -> int:
    """Memory a batch holds: its Arrow buffers, or ~64 bytes per Python cell of a row batch."""
    if batch.arrow is not None:
        return int(batch.arrow.nbytes)
    return len(batch) * max(1, len(batch.columns)) * 64


def _collect(step: Callable[[], Iterator[Batch]]) -> list[Batch]:
    return list(step())


def _drain(batches: list[Batch]) -> Iterator[Batch]:
    """Hand batches on and drop each from the buffer as it goes (a step's memory shrinks while written)."""
    batches.reverse()
    while batches:
        yield batches.pop()
