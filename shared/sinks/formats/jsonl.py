"""JSON lines: one object per line, keys in column order; takes any column drift."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from shared.errors import DataError
from shared.model import Batch, Column
from shared.sinks.formats.common import GZIP_LEVEL, GzipStream, Writable, dumps_json, json_default, union_columns

__all__ = ["JsonlEncoder"]


class JsonlEncoder:
    """One JSON object per line (``\\n``), keys in the batch's column order; nulls kept."""

    def __init__(self, out: Writable, compression: str = "gzip", *, level: int = GZIP_LEVEL) -> None:
        self._gzip = GzipStream(out, level) if compression == "gzip" else None
        self._out: Writable = self._gzip or out
        self._known: dict[str, Column] = {}
        self._last: tuple[Column, ...] = ()
        self.rows = 0

    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(self._known.values())

    def fits(self, batch: Batch) -> bool:
        return True

    def write(self, batch: Batch) -> None:
        if not batch.rows:
            return
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
        if batch.columns != self._last:
            union_columns(self._known, batch)
            self._last = batch.columns
        self._out.write(bytes(lines))
        self.rows += len(batch.rows)

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.finish()


def _row_dict(names: list[str], row: Sequence[Any]) -> dict[str, Any]:
    if len(row) != len(names):
        raise DataError(f"row has {len(row)} values for {len(names)} columns")
    return dict(zip(names, row, strict=True))
