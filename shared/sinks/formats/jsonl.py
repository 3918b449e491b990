"""JSON lines: one object per line, keys in column order; takes any column drift."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from shared.errors import DataError
from shared.model import Batch, Column
from shared.sinks.formats.common import GZIP_LEVEL, GzipStream, Writable, dumps_json, json_default, union_columns
from shared.sinks.formats.text_arrow import ArrowPending, json_lines, write_pieces

__all__ = ["JsonlEncoder"]


class JsonlEncoder:
    """One JSON object per line (``\\n``), keys in the batch's column order; nulls kept."""

    def __init__(self, out: Writable, compression: str = "gzip", *, level: int = GZIP_LEVEL) -> None:
        self._gzip = GzipStream(out, level) if compression == "gzip" else None
        self._out: Writable = self._gzip or out
        self._known: dict[str, Column] = {}
        self._last: tuple[Column, ...] = ()
        self._pending = ArrowPending()
        self.rows = 0

    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(self._known.values())

    def fits(self, batch: Batch) -> bool:
        return True

    def write(self, batch: Batch) -> None:
        count = len(batch)
        if not count:
            return
        if batch.arrow is not None:  # column-wise: lines come from Arrow compute, several batches at once
            self._pending.feed(batch, self._encode)
        else:
            self._flush()
            self._out.write(_row_lines(batch))
        if batch.columns != self._last:
            union_columns(self._known, batch)
            self._last = batch.columns
        self.rows += count

    def _encode(self, held: Batch) -> None:
        write_pieces(self._out, json_lines(held))

    def _flush(self) -> None:
        self._pending.flush(self._encode)

    def close(self) -> None:
        """Write what is held; finish the gzip stream. Call it once the last batch is written."""
        self._flush()
        if self._gzip is not None:
            self._gzip.finish()


def _row_lines(batch: Batch) -> bytes:
    names = batch.names
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    # One growing buffer, not a list joined: each orjson result holds a ~16 KB allocation,
    # so a batch of lines kept alive costs ~10x its bytes of RSS, and the join one more copy.
    lines = bytearray()
    try:
        for row in batch.rows:
            lines += dumps(dict(zip(names, row, strict=True)), default=json_default, option=newline)
    except (orjson.JSONEncodeError, ValueError):
        lines = bytearray()
        for row in batch.rows:
            lines += dumps_json(_row_dict(names, row))
            lines += b"\n"
    return bytes(lines)


def _row_dict(names: list[str], row: Sequence[Any]) -> dict[str, Any]:
    if len(row) != len(names):
        raise DataError(f"row has {len(row)} values for {len(names)} columns")
    return dict(zip(names, row, strict=True))
