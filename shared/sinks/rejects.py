"""Rows no sink can store, set aside in the quarantine container instead of failing the window.

``CellGuard`` runs ``split_unconvertible`` on each batch of a window, before any sink sees
it, and streams the rejected rows to ``<pipeline>/<window>/<part|main>/_rows.jsonl`` in the
quarantine container (beside the export sources' bad lines): one JSON line per row with
``table``, ``column`` (the first cell that did not convert), ``reason`` and ``row`` (column
name → the value as it was). A part with no rejected rows removes an earlier run's file
at its name, so the quarantine always matches the latest run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared.errors import ConfigError, DataError
from shared.model import Batch, Window
from shared.runtime.quarantine import Quarantine, QuarantineFile
from shared.sinks.cells import split_unconvertible

__all__ = ["ROWS_FILE", "CellGuard", "rows_quarantine_name"]

log = logging.getLogger(__name__)

ROWS_FILE = "_rows.jsonl"


def rows_quarantine_name(pipeline: str, window: Window, part: str) -> str:
    return f"{pipeline}/{window.key}/{part or 'main'}/{ROWS_FILE}"


class CellGuard:
    """Splits a window's batches; ``open(part)`` … ``check(batch)`` … ``close()`` per part.

    ``quarantine`` opens the quarantine container (called at the first rejected row or the
    first close, so a clean run on a table-only state account needs no blob endpoint).
    Without one (``None``) a rejected row raises ``DataError`` naming the cell: it is never
    dropped unseen. ``count`` is every row rejected by this run.
    """

    def __init__(self, quarantine: Callable[[], Quarantine] | None, pipeline: str, window: Window) -> None:
        self._open_quarantine = quarantine
        self._quarantine: Quarantine | None = None
        self._pipeline = pipeline
        self._window = window
        self._part = ""
        self._file: QuarantineFile | None = None
        self.count = 0

    def open(self, part: str) -> None:
        self._part = part
        self._file = None

    def check(self, batch: Batch) -> Batch:
        """``batch`` without the rows a sink could not store; those are quarantined."""
        good, rejected = split_unconvertible(batch)
        if not rejected:
            return good
        names = batch.names
        for item in rejected:
            entry = {
                "table": batch.table,
                "column": item.column,
                "reason": item.reason,
                "row": dict(zip(names, item.row, strict=False)),
            }
            self._add(entry)
        self.count += len(rejected)
        log.warning(
            "%s %s: %d row(s) quarantined, e.g. %s", self._pipeline, self._window, len(rejected), rejected[0].reason
        )
        return good

    def _container(self) -> Quarantine | None:
        if self._quarantine is None and self._open_quarantine is not None:
            self._quarantine = self._open_quarantine()
        return self._quarantine

    def _add(self, entry: dict[str, Any]) -> None:
        quarantine = self._container()
        if quarantine is None:
            raise DataError(f"table {entry['table']}: {entry['reason']} (no quarantine to set the row aside)")
        if self._file is None:
            name = rows_quarantine_name(self._pipeline, self._window, self._part)
            self._file = quarantine.file(name, "")
        self._file.add_entry(entry)

    def close(self) -> None:
        """Write the part's rejected rows, or remove an earlier run's file when there are none."""
        if self._file is not None:
            self._file.close()
            self._file = None
            return
        try:
            quarantine = self._container()
        except ConfigError:
            return  # no blob endpoint for quarantine: nothing can have been written there
        if quarantine is not None:
            quarantine.delete(rows_quarantine_name(self._pipeline, self._window, self._part))
