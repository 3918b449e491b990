"""Parquet through pyarrow, one row group per ``row_group_rows`` rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pyarrow as pa

from shared.model import Batch, Column
from shared.runtime.membudget import ByteBudget
from shared.sinks.formats.arrow import arrow_field, arrow_type, batch_to_arrow, compatible, conform
from shared.sinks.formats.common import Writable, union_columns

if TYPE_CHECKING:
    import pyarrow.parquet as pq

__all__ = ["ROW_GROUP_BYTES", "OutputStream", "ParquetEncoder"]

# A row group is written once it holds this much Arrow data, even before ``row_group_rows`` (the
# default; a sink's ``row_group_mb`` sets it): rows differ tenfold in width, and pending rows are
# held in memory on top of the answers read ahead and the one being decoded. At 4 MiB an answer of
# wide ``requests`` rows (~8,300) is written before the next one is decoded; 32 MiB kept a window's
# peak ~20 MB higher (docs/performance.md, "Memory").
ROW_GROUP_BYTES = 4 * 2**20


class ParquetEncoder:
    """Parquet through pyarrow's ``ParquetWriter``, one row group per ``row_group_rows`` rows.

    Batches are converted to Arrow at once (Python objects are freed) and buffered
    until a row group is full; the file schema is fixed at the first row group as
    the union of the columns seen so far. After that, batches with missing columns
    get nulls, and a batch with a new column or a different type does not ``fit``.
    """

    def __init__(
        self,
        out: Writable,
        compression: str = "snappy",
        *,
        row_group_rows: int = 25_000,
        row_group_bytes: int = ROW_GROUP_BYTES,
        budget: ByteBudget | None = None,
    ) -> None:
        self._out = out
        self._compression = compression
        self._row_group_rows = row_group_rows
        self._row_group_bytes = row_group_bytes
        self._budget = budget  # the pending row group is counted in the process's byte budget
        self._pending_bytes = 0
        self._known: dict[str, Column] = {}
        self._schema: pa.Schema | None = None
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(self._known.values())

    def fits(self, batch: Batch) -> bool:
        for col in batch.columns:
            known = self._known.get(col.name)
            if known is None:
                if self._schema is not None:
                    return False
            elif not compatible(arrow_type(known.type), arrow_type(col.type)):
                return False
        return True

    def write(self, batch: Batch) -> None:
        if not len(batch):
            return
        if not self.fits(batch):
            raise ValueError("batch does not fit this Parquet file's schema; start a new file")
        table = batch_to_arrow(batch)
        union_columns(self._known, batch)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._hold(table.nbytes)
        self.rows += table.num_rows
        if self._pending_rows >= self._row_group_rows:
            self._flush(final=False)
        elif self._pending_bytes >= self._row_group_bytes:  # wide rows: a shorter row group bounds memory
            self._flush(final=True)

    def _hold(self, nbytes: int) -> None:
        self._pending_bytes += nbytes
        if self._budget is not None:
            self._budget.force(nbytes)

    def _let_go(self) -> None:
        if self._budget is not None:
            self._budget.release(self._pending_bytes)
        self._pending_bytes = 0

    def _flush(self, *, final: bool) -> None:
        if not self._pending:
            return
        if self._schema is None:
            import pyarrow.parquet as pq  # loaded by the first Parquet file: JSONL/CSV workers never need it

            self._schema = pa.schema([arrow_field(c) for c in self._known.values()]).with_metadata(
                {"kql_types": orjson.dumps({c.name: c.type for c in self._known.values()}).decode()}
            )
            self._writer = pq.ParquetWriter(
                pa.PythonFile(OutputStream(self._out), mode="w"),
                self._schema,
                compression=self._compression,
            )
        writer = self._writer
        if writer is None:  # unreachable: opened above
            raise RuntimeError("parquet writer not open")
        table = pa.concat_tables([conform(t, self._schema) for t in self._pending])
        self._pending, self._pending_rows = [], 0
        self._let_go()
        size = self._row_group_rows
        full = table.num_rows if final else table.num_rows - table.num_rows % size
        if full:
            writer.write_table(table.slice(0, full), row_group_size=size)
        if full < table.num_rows:
            rest = table.slice(full)
            self._pending = [rest]
            self._pending_rows = table.num_rows - full
            self._hold(rest.nbytes)

    def close(self) -> None:
        self._flush(final=True)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def discard(self) -> None:
        """Drop what is pending (an aborted file) and give its bytes back to the budget."""
        self._pending, self._pending_rows = [], 0
        self._let_go()


class OutputStream:
    """The minimal binary-file face pyarrow expects, over any ``Writable`` (a block stager, say)."""

    closed = False

    def __init__(self, out: Writable) -> None:
        self._out = out
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        """Blocks are flushed by the stager; nothing to do here."""

    def close(self) -> None:
        self.closed = True
