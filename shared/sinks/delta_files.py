"""Parquet data files of a Delta table: streamed writes, footers, and compacted files' segments.

A window's own files are named ``<window key>_<run>_<part>_<n>.parquet``. Maintenance merges
the files of a closed partition into ``<first key>-<last key>_compact_<stamp>.parquet`` and
records, in the file's key-value metadata (``mover.segments``), which window and which original
file each run of rows came from. That record is what lets a later rerun of one window take
exactly its rows out of a merged file (see ``delta_table.commit_window``).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings

from shared.errors import FatalError
from shared.runtime.membudget import process_budget
from shared.settings import SinkConfig
from shared.sinks._azure import translate
from shared.sinks.blob import BLOCK_SIZE, BlockStager
from shared.sinks.formats.arrow import conform
from shared.sinks.formats.parquet import OutputStream

__all__ = [
    "SEGMENTS_KEY",
    "DataFile",
    "FileGone",
    "Segment",
    "compact_name",
    "copy_rows",
    "covers",
    "read_footer",
    "segments_of",
]

SEGMENTS_KEY = b"mover.segments"
_COMPACT = re.compile(r"^(\d{8}T\d{6}Z)-(\d{8}T\d{6}Z)_compact_")
_FOOTER_READ = 64 * 1024


class FileGone(FatalError):
    """A data file named by the ledger is no longer stored (vacuumed)."""


@dataclass(frozen=True)
class Segment:
    """A run of rows in a file: which window they belong to and which original file held them."""

    key: str
    file: str
    rows: int


def segments_of(rel: str, meta: pq.FileMetaData) -> list[Segment]:
    """The file's segments: recorded ones for a compacted file, else the whole file as one."""
    recorded = (meta.metadata or {}).get(SEGMENTS_KEY)
    if recorded:
        return [Segment(str(s["key"]), str(s["file"]), int(s["rows"])) for s in json.loads(recorded)]
    return [Segment(rel.rsplit("/", 1)[-1].split("_", 1)[0], rel, meta.num_rows)]


def covers(rel: str, key: str) -> bool:
    """Whether ``rel`` is a compacted file whose window range includes ``key``."""
    match = _COMPACT.match(rel.rsplit("/", 1)[-1])
    return bool(match and match.group(1) <= key <= match.group(2))


def compact_name(folder: str, segments: Sequence[Segment], stamp: int) -> str:
    keys = sorted(s.key for s in segments)
    return f"{folder}/{keys[0]}-{keys[-1]}_compact_{stamp}.parquet"


class DataFile:
    """One Parquet data file being written: schema fixed at its first row group, blocks
    uploaded as they fill, the blob committed by ``finish``."""

    def __init__(self, container: ContainerClient, name: str, rel: str, config: SinkConfig) -> None:
        self.name, self.rel = name, rel
        self.blob = container.get_blob_client(name)
        self.stager = BlockStager(self.blob, block_size=BLOCK_SIZE)
        self._config = config
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.rows = 0
        self._meta: pq.FileMetaData | None = None

    def fits(self, table: pa.Table) -> bool:
        if self.schema is None:
            known = {f.name: f.type for t in self._pending for f in t.schema}
            return all(known.get(f.name, f.type) == f.type for f in table.schema)
        return all(f.name in self.schema.names and self.schema.field(f.name).type == f.type for f in table.schema)

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        process_budget().force(table.nbytes)  # the pending row group counts in the process's budget
        self.rows += table.num_rows
        if self._pending_rows >= self._config.row_group_rows or self._pending_bytes >= self._config.row_group_bytes:
            self._flush()

    def _let_go(self) -> None:
        process_budget().release(self._pending_bytes)
        self._pending_bytes = 0

    def _flush(self) -> None:
        if not self._pending:
            return
        if self.schema is None:
            self.schema = pa.unify_schemas([t.schema for t in self._pending])
            self._writer = pq.ParquetWriter(
                pa.PythonFile(OutputStream(self.stager), mode="w"), self.schema, compression=self._config.compression
            )
        tables = [conform(t, self.schema) for t in self._pending]
        self._pending, self._pending_rows = [], 0
        self._let_go()
        assert self._writer is not None
        self._writer.write_table(pa.concat_tables(tables), row_group_size=self._config.row_group_rows)

    def finish(self, metadata: dict[bytes, bytes] | None = None) -> pq.FileMetaData:
        """Write the footer (with ``metadata``), commit the blob; returns the footer (once)."""
        if self._meta is not None:
            return self._meta
        self._flush()
        assert self._writer is not None
        if metadata:
            self._writer.add_key_value_metadata(metadata)
        self._writer.close()
        self.stager.finish()
        try:
            self.blob.commit_block_list(
                [BlobBlock(block_id=i) for i in self.stager.block_ids],
                content_settings=ContentSettings(content_type="application/vnd.apache.parquet"),
            )
        except AzureError as exc:
            raise translate(exc, f"committing {self.name}") from exc
        self._meta = self._writer.writer.metadata
        return self._meta

    def cancel(self) -> None:
        self._pending, self._pending_rows = [], 0
        self._let_go()
        self.stager.cancel()


def read_footer(container: ContainerClient, name: str, size: int) -> pq.FileMetaData:
    """A stored file's Parquet footer, read with one or two ranged downloads."""
    blob = container.get_blob_client(name)
    try:
        length = min(size, _FOOTER_READ)
        tail = blob.download_blob(offset=size - length, length=length).readall()
        need = int.from_bytes(tail[-8:-4], "little") + 8
        if need > len(tail):
            tail = blob.download_blob(offset=size - need, length=need).readall()
    except ResourceNotFoundError as exc:
        raise FileGone(f"{name} is no longer stored") from exc
    except AzureError as exc:
        raise translate(exc, f"reading the footer of {name}") from exc
    return pq.read_metadata(pa.BufferReader(tail))


def _batches(container: ContainerClient, name: str) -> Iterator[pa.RecordBatch]:
    """Stream a stored file's rows through a temporary local copy (bounded memory)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp, "data.parquet")
        try:
            with local.open("wb") as fh:
                container.download_blob(name).readinto(fh)
        except ResourceNotFoundError as exc:
            raise FileGone(f"{name} is no longer stored") from exc
        except AzureError as exc:
            raise translate(exc, f"downloading {name}") from exc
        yield from pq.ParquetFile(local).iter_batches(batch_size=50_000)


def copy_rows(
    container: ContainerClient, name: str, out: DataFile, columns: pa.Schema, drop: Sequence[tuple[int, int]] = ()
) -> None:
    """Append a stored file's rows to ``out`` in ``columns``' layout, leaving out the row
    ranges ``drop`` (``[start, end)`` offsets in the file)."""
    offset = 0
    for batch in _batches(container, name):
        table = pa.Table.from_batches([batch])
        start, end = offset, offset + table.num_rows
        offset = end
        cursor = start
        pieces = []
        for a, b in sorted(drop):
            a, b = max(a, start), min(b, end)
            if a >= b:
                continue
            if a > cursor:
                pieces.append(table.slice(cursor - start, a - cursor))
            cursor = b
        if cursor < end:
            pieces.append(table.slice(cursor - start, end - cursor))
        for piece in pieces:
            if piece.num_rows:
                out.write(conform(piece, columns))
