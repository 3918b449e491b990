"""The cell check every batch passes once, before any sink sees it (pure).

Sinks differ in what they can hold: JSONL takes anything, the Table sink turns odd
values into strings, Parquet (the strictest) refuses a cell its column type cannot hold.
If each sink decided alone, one bad cell would fail a whole window in one sink and pass
in another. So the engine splits each batch here, by the Parquet typing rules
(``coerce_array``): rows whose every cell converts go to every sink, each other row goes
to quarantine with the column and the reason, and the window completes.

The common case costs one vectorised conversion per typed column; strings and dynamic
columns always convert and are not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.errors import DataError
from shared.model import Batch
from shared.sinks.formats.arrow import coerce_array

__all__ = ["Rejected", "split_unconvertible"]

# Columns of these types accept any value (strings, JSON text): nothing to check.
_ALWAYS = frozenset({"string", "guid", "timespan", "dynamic"})


@dataclass(frozen=True)
class Rejected:
    """A row no sink gets: the cells as they were, the first column that did not convert, why."""

    row: list[Any]
    column: str | None
    reason: str


def _cell_reason(value: Any, kql_type: str, name: str) -> str | None:
    """Why ``value`` does not convert to ``kql_type`` (``None`` when it does)."""
    try:
        coerce_array([value], kql_type, name)
    except (DataError, ValueError, TypeError, OverflowError) as exc:
        return f"column {name!r} ({kql_type}): {_brief(value)} does not convert: {exc}"
    return None


def _brief(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def split_unconvertible(batch: Batch) -> tuple[Batch, list[Rejected]]:
    """``batch`` without the rows a sink could not store, and those rows with their reasons.

    A row of the wrong width, or with a cell its column type cannot hold (an integer
    beyond 64 bits, a number or datetime that does not parse, a real beyond float range
    …), is rejected whole. Returns ``batch`` itself when every row is fine.
    """
    if batch.arrow is not None:  # decoded column-wise: every cell was converted already
        return batch, []
    width = len(batch.columns)
    rejected: dict[int, Rejected] = {}
    rows = batch.rows
    for index, row in enumerate(rows):
        if len(row) != width:
            rejected[index] = Rejected(list(row), None, f"row has {len(row)} values for {width} columns")
    checked: Sequence[list[Any]] = rows if not rejected else [r for i, r in enumerate(rows) if i not in rejected]
    positions = [i for i in range(len(rows)) if i not in rejected]
    for col_index, col in enumerate(batch.columns):
        if col.type in _ALWAYS or not checked:
            continue
        values = [row[col_index] for row in checked]
        try:
            coerce_array(values, col.type, col.name)
            continue
        except (DataError, ValueError, TypeError, OverflowError):
            pass
        for pos, value in zip(positions, values, strict=True):
            if pos in rejected or value is None:
                continue
            reason = _cell_reason(value, col.type, col.name)
            if reason is not None:
                rejected[pos] = Rejected(list(rows[pos]), col.name, reason)
    if not rejected:
        return batch, []
    good = [row for i, row in enumerate(rows) if i not in rejected]
    return Batch(batch.table, batch.columns, good), [rejected[i] for i in sorted(rejected)]
