"""RFC 4180 CSV with a header; the first batch fixes the columns."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import Any

from shared.errors import DataError
from shared.model import Batch, Column
from shared.sinks.formats.arrow import ARROW_TYPES
from shared.sinks.formats.common import GZIP_LEVEL, GzipStream, Writable, dumps_json, json_cell, utf8
from shared.sinks.formats.text_arrow import ArrowPending, csv_records, write_pieces

__all__ = ["CsvEncoder"]


def _csv_bool(value: Any) -> Any:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def _csv_dynamic(value: Any) -> Any:
    return None if value is None else dumps_json(value).decode("utf-8")


class CsvEncoder:
    """RFC 4180 CSV (CRLF, minimal quoting) with a header; the first batch fixes the columns.

    Later batches may lack columns (empty cells) or reorder them; a batch with a new
    column does not ``fit`` and goes to a continuation file. Null and ``""`` both
    become an empty cell (CSV cannot tell them apart).
    """

    def __init__(self, out: Writable, compression: str = "gzip", *, level: int = GZIP_LEVEL) -> None:
        self._gzip = GzipStream(out, level) if compression == "gzip" else None
        self._out: Writable = self._gzip or out
        self._columns: tuple[Column, ...] = ()
        self._index: dict[str, int] = {}
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\r\n")
        self._pending = ArrowPending()
        self.rows = 0

    @property
    def columns(self) -> tuple[Column, ...]:
        return self._columns

    def fits(self, batch: Batch) -> bool:
        return not self._columns or all(name in self._index for name in batch.names)

    def write(self, batch: Batch) -> None:
        count = len(batch)
        if not count:
            return
        if batch.arrow is not None and len(batch.columns) > 1 and (batch.columns == self._columns or not self._columns):
            self._header(batch)  # column-wise: records come from Arrow compute, several batches at once
            self._pending.feed(batch, self._encode)
            self.rows += count
            return
        self._flush()
        width = len(batch.columns)
        if any(len(row) != width for row in batch.rows):
            raise DataError(f"table {batch.table}: rows do not all have {width} values")
        if not self._columns:
            self._header(batch)
        elif not self.fits(batch):
            raise ValueError("batch has columns this CSV file has no header for; start a new file")
        rows: Any = batch.rows
        converters = self._converters(batch)
        if batch.columns != self._columns:
            width = len(self._columns)
            positions = [self._index[name] for name in batch.names]

            def place(row: Sequence[Any]) -> list[Any]:
                out: list[Any] = [None] * width
                for pos, value in zip(positions, row, strict=False):
                    out[pos] = value
                return out

            rows = [place(row) for row in rows]
        if converters:
            rows = [_convert(row, converters) for row in rows]
        self._csv.writerows(rows)
        self._out.write(self._flush_text())
        self.rows += count

    def _header(self, batch: Batch) -> None:
        """The first batch fixes the columns and writes the header row."""
        if self._columns:
            return
        self._columns = batch.columns
        self._index = {c.name: i for i, c in enumerate(batch.columns)}
        self._csv.writerow(batch.names)
        self._out.write(self._flush_text())

    def _flush_text(self) -> bytes:
        data = utf8(self._text.getvalue())
        self._text.seek(0)
        self._text.truncate()
        return data

    def _converters(self, batch: Batch) -> list[tuple[int, Callable[[Any], Any]]]:
        """Cell converters by file position; only bool/dynamic/unknown columns need one."""
        out: list[tuple[int, Callable[[Any], Any]]] = []
        for col in batch.columns:
            pos = self._index[col.name]
            if col.type == "bool":
                out.append((pos, _csv_bool))
            elif col.type == "dynamic":
                out.append((pos, _csv_dynamic))
            elif col.type not in ARROW_TYPES:
                out.append((pos, json_cell))
        return out

    def _encode(self, held: Batch) -> None:
        write_pieces(self._out, csv_records(held))

    def _flush(self) -> None:
        self._pending.flush(self._encode)

    def close(self) -> None:
        """Write what is held; finish the gzip stream. Call it once the last batch is written."""
        self._flush()
        if self._gzip is not None:
            self._gzip.finish()


def _convert(row: Sequence[Any], converters: list[tuple[int, Callable[[Any], Any]]]) -> list[Any]:
    out = list(row)
    for pos, fn in converters:
        out[pos] = fn(out[pos])
    return out
