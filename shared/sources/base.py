"""The source port: rows of one window, streamed as batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from shared.model import Batch, Window
from shared.outcomes import SourceSummary

if TYPE_CHECKING:
    from shared.windows import WindowState

__all__ = ["LateAwareSource", "LatePlan", "Prefetched", "PrefetchingSource", "Source", "SourceSummary", "SteppedSource"]


@runtime_checkable
class Source(Protocol):
    """Yields every row whose time lies in ``window`` (half-open), in batches: the event time, or
    for a query source with ``window_by: ingestion`` the time the service committed the row.

    Raises ``RetriableError`` / ``FatalError``; must never yield rows of an
    incomplete (truncated) result.
    """

    def read(self, window: Window) -> Iterator[Batch]: ...

    def summary(self) -> SourceSummary:
        """Counts and checkpoint of the last ``read`` (valid once it is exhausted)."""
        ...


@dataclass(frozen=True)
class LatePlan:
    """What a re-sweep of a done window found.

    ``replace``: the source changed under the window (e.g. its count grew): run the whole
    window again and replace its outputs. ``part``: only new input appeared (e.g. blobs
    delivered late): read just that (``read_part``) into an extra deterministic part named
    ``part``, keeping earlier outputs. ``payload`` is the source's own description of the new input.
    """

    kind: Literal["replace", "part"]
    reason: str
    part: str = ""
    payload: Any = None


@runtime_checkable
class LateAwareSource(Source, Protocol):
    """A source that can tell whether a done window has new data (within a look-back)."""

    def resweep(self, window: Window, state: WindowState) -> LatePlan | None:
        """``None`` when nothing changed since ``state`` (the ledger record of the done window)."""
        ...

    def read_part(self, window: Window, plan: LatePlan) -> Iterator[Batch]:
        """Rows of the new input only (``part`` plans); ``summary()`` then describes it."""
        ...


@runtime_checkable
class SteppedSource(Source, Protocol):
    """A source whose window splits into ordered steps; a long window can pause between steps
    (checkpoint) and resume on the next tick without reading the earlier steps again."""

    def plan(self, window: Window) -> list[Window]:
        """Sub-windows tiling ``window``, in order."""
        ...

    def plan_many(self, windows: list[Window]) -> dict[Window, tuple[list[Window], int]]:
        """``plan`` for several contiguous windows at once (and the rows counted in each), ahead of their runs."""
        ...

    def use_plan(self, steps: list[Window], planned: int) -> list[Window]:
        """Take a plan made ahead by ``plan_many`` instead of planning again."""
        ...

    def read_step(self, sub: Window) -> Iterator[Batch]: ...


@dataclass(frozen=True)
class Prefetched:
    """A step whose input is fetched (``nbytes`` held) and whose rows come when ``decode`` is called."""

    nbytes: int
    decode: Callable[[], Iterator[Batch]]


@runtime_checkable
class PrefetchingSource(SteppedSource, Protocol):
    """A stepped source that can fetch a step's input ahead and decode it later, on the writer's
    thread: read-ahead then holds raw input, and one step at a time is decoded."""

    def prefetch_step(self, sub: Window) -> Prefetched: ...
