"""Pure encoders: batches in, bytes of one output file out (JSONL, CSV, Parquet).

Encoders do no I/O of their own: they write to any object with ``write(bytes)``
(a ``BytesIO`` in tests and benchmarks, the block stager of the blob sink in
production), so every byte a reader will see is produced by code that is unit
tested without Azure. Text formats compress inline with a streaming zlib object
(gzip framing, ``wbits=31``); Parquet compresses inside pyarrow.

Schema drift: JSONL takes anything. CSV and Parquet files have one fixed column
layout; ``fits(batch)`` says whether a batch can go into the current file, and
the caller (the blob writer) starts a continuation file when it cannot. Parquet
buffers up to ``row_group_rows`` rows before its schema is fixed, so drift in
the first row group is unified in place.
"""

from __future__ import annotations

from typing import Literal

from shared.runtime.membudget import ByteBudget
from shared.sinks.formats.arrow import ARROW_TYPES, arrow_type, batch_to_arrow, coerce_array
from shared.sinks.formats.common import GZIP_LEVEL, Encoder, GzipStream, Writable, dumps_json
from shared.sinks.formats.csvfile import CsvEncoder
from shared.sinks.formats.jsonl import JsonlEncoder
from shared.sinks.formats.parquet import ROW_GROUP_BYTES, ParquetEncoder

__all__ = [
    "ARROW_TYPES",
    "GZIP_LEVEL",
    "CsvEncoder",
    "Encoder",
    "FormatName",
    "GzipStream",
    "JsonlEncoder",
    "ParquetEncoder",
    "Writable",
    "arrow_type",
    "batch_to_arrow",
    "coerce_array",
    "dumps_json",
    "open_encoder",
]

FormatName = Literal["jsonl", "csv", "parquet"]


def open_encoder(
    fmt: FormatName | str,
    out: Writable,
    *,
    compression: str = "gzip",
    row_group_rows: int = 25_000,
    row_group_bytes: int = ROW_GROUP_BYTES,
    budget: ByteBudget | None = None,
    gzip_level: int = GZIP_LEVEL,
) -> Encoder:
    """The encoder for a sink format writing to ``out`` (compression included); ``budget``
    counts a Parquet file's pending row group."""
    if fmt == "jsonl":
        return JsonlEncoder(out, compression, level=gzip_level)
    if fmt == "csv":
        return CsvEncoder(out, compression, level=gzip_level)
    if fmt == "parquet":
        return ParquetEncoder(
            out, compression, row_group_rows=row_group_rows, row_group_bytes=row_group_bytes, budget=budget
        )
    raise ValueError(f"unknown format {fmt!r}")
