"""The source port: rows of one window, streamed as batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.model import Batch, Window

__all__ = ["Source", "SourceSummary"]


class Source(Protocol):
    """Yields every row whose event time lies in ``window`` (half-open), in batches.

    Raises ``RetriableError`` / ``FatalError``; must never yield rows of an
    incomplete (truncated) result.
    """

    def read(self, window: Window) -> Iterator[Batch]: ...

    def summary(self) -> SourceSummary:
        """Counts and checkpoint of the last ``read`` (valid once it is exhausted)."""
        ...


@dataclass
class SourceSummary:
    """What a source learned while reading a window, recorded on the window in the ledger."""

    source_count: int | None = None  # rows the source said the window held (query API count)
    quarantined: int = 0  # malformed records set aside
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific checkpoint (e.g. blobs consumed)
