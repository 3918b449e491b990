"""Domain values shared by sources, mapping and sinks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["KQL_TYPES", "Batch", "Column", "OutputFile", "Window", "format_ts", "window_key"]

# Column types as the query API names them. Canonical in-memory values:
# datetime -> ISO 8601 str ending in "Z" (as on the wire, 100 ns kept; sinks convert),
# long/int -> int, real -> float, decimal -> its exact text (str), bool -> bool,
# dynamic -> parsed JSON (dict/list/scalar), string/guid/timespan -> str; None is null.
KQL_TYPES = frozenset({"string", "datetime", "long", "int", "real", "decimal", "bool", "dynamic", "guid", "timespan"})


def format_ts(ts: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` and 7 fractional digits at most, as KQL prints it."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime")
    ts = ts.astimezone(UTC)
    base = ts.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ts.microsecond:06d}Z" if ts.microsecond else f"{base}Z"


def window_key(ts: datetime) -> str:
    """Sortable compact key of a window start, e.g. ``20261102T100000Z`` (Table/blob safe)."""
    return ts.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True, order=True)
class Window:
    """A half-open UTC interval ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty window {self.start}..{self.end}")

    @property
    def key(self) -> str:
        return window_key(self.start)

    @property
    def size(self) -> timedelta:
        return self.end - self.start

    def halves(self) -> tuple[Window, Window]:
        """Split in two at the midpoint (rounded down to a microsecond)."""
        mid = self.start + (self.end - self.start) / 2
        return Window(self.start, mid), Window(mid, self.end)

    def __str__(self) -> str:
        return f"[{format_ts(self.start)}, {format_ts(self.end)})"


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"


class Batch:
    """A slice of one table's rows; ``rows`` hold canonical values in ``columns`` order.

    A batch may instead carry its cells column-wise as an Arrow table (``arrow``; see
    ``shared.sources.wire_arrow`` for the types), which encoders write without a Python
    object per cell. ``rows`` is then built on first use by ``to_rows``, so a consumer that
    needs rows (the Table sink, column mapping) still gets the canonical values.
    """

    __slots__ = ("_rows", "_to_rows", "arrow", "chunk_rows", "columns", "table")

    def __init__(
        self,
        table: str,
        columns: tuple[Column, ...],
        rows: list[list[Any]] | None = None,
        *,
        arrow: Any = None,
        to_rows: Callable[[Any, tuple[Column, ...]], list[list[Any]]] | None = None,
        chunk_rows: int = 0,
    ) -> None:
        if rows is None and (arrow is None or to_rows is None):
            raise ValueError("a batch needs rows, or an Arrow table and its row builder")
        self.table = table
        self.columns = columns
        self._rows = rows
        self._to_rows = to_rows
        self.arrow = arrow  # pyarrow.Table of canonical columns, or None
        # Column-wise: Parquet files are written from chunks of this many rows (0: as they are), the
        # slices the row path hands on, so the same data gives the same pages whichever path decoded it.
        self.chunk_rows = chunk_rows

    @property
    def rows(self) -> list[list[Any]]:
        if self._rows is None:
            assert self._to_rows is not None
            self._rows = self._to_rows(self.arrow, self.columns)
        return self._rows

    @rows.setter
    def rows(self, value: list[list[Any]]) -> None:
        self._rows, self.arrow = value, None

    def with_arrow(self, arrow: Any) -> Batch:
        """A batch of the same table and columns over other Arrow rows (same row builder)."""
        return Batch(self.table, self.columns, arrow=arrow, to_rows=self._to_rows, chunk_rows=self.chunk_rows)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else int(self.arrow.num_rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Batch):
            return NotImplemented
        return (self.table, self.columns, self.rows) == (other.table, other.columns, other.rows)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind = "rows" if self._rows is not None else "arrow"
        return f"Batch({self.table!r}, {len(self.columns)} columns, {len(self)} {kind})"


@dataclass(frozen=True)
class OutputFile:
    """One committed output: what the ledger and the manifest record."""

    name: str
    rows: int
    bytes: int
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
