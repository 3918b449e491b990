"""Output size per sink format, measured by encoding one sampled window in memory (pure apart from the read).

The estimate of what the lake will hold is the sample's encoded bytes per row times the
rows of the range: the same encoders the sinks use (gzip level, Parquet row groups), so
the only guess is that the sample is typical — which the estimate says.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from shared import mapping
from shared.model import Batch, Window
from shared.settings import Pipeline, SinkConfig
from shared.sinks.formats import Encoder, JsonlEncoder, open_encoder
from shared.sources.query_api import QueryApiSource

__all__ = ["Sample", "SinkSample", "encode_sample", "json_bytes", "sample_query"]


@dataclass(frozen=True)
class SinkSample:
    sink: int
    kind: str
    format: str
    compression: str
    bytes: int  # encoded bytes of the sample's rows
    basis: str
    half_bytes: int = 0  # encoded bytes of its first half: with ``bytes``, splits per-file overhead from per-row size

    def model(self, rows: int) -> tuple[float, float]:
        """(bytes per file, bytes per row) fitted through the half and the whole sample (pure).

        A Parquet file carries a schema and footer whatever its rows; gzip a header; so a small
        sample extrapolated per row alone overstates big backfills."""
        half = rows // 2
        if half < 1 or rows - half < 1 or self.half_bytes <= 0:
            return 0.0, self.bytes / max(1, rows)
        per_row = max(0.0, (self.bytes - self.half_bytes) / (rows - half))
        return max(0.0, self.bytes - per_row * rows), per_row


@dataclass(frozen=True)
class Sample:
    """One window read for sizing: its rows, their JSON size and how each sink would encode them."""

    window: Window
    rows: int
    json_bytes: int
    seconds: float  # wall time of the read (one query for a query source)
    sinks: tuple[SinkSample, ...]

    def as_dict(self) -> dict[str, Any]:
        from shared.model import format_ts

        return {
            "window": [format_ts(self.window.start), format_ts(self.window.end)],
            "rows": self.rows,
            "json_bytes": self.json_bytes,
            "seconds": round(self.seconds, 3),
        }


class _Counter:
    """A ``Writable`` that only counts."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes, /) -> int:
        self.n += len(data)
        return len(data)


def json_bytes(batches: Iterable[Batch]) -> int:
    """Size of the rows as JSON arrays (the basis of a row's size when the table has no ``_BilledSize``)."""
    return sum(len(orjson.dumps(row, default=str)) for b in batches for row in b.rows)


def _encode(config: SinkConfig, batches: list[Batch]) -> int:
    """Bytes the sink would write for ``batches``, continuation files included (CSV/Parquet drift)."""
    counter = _Counter()

    def fresh() -> Encoder:
        if config.kind == "table":
            return JsonlEncoder(counter, "none")
        return open_encoder(
            config.format,
            counter,
            compression=config.compression,
            row_group_rows=config.row_group_rows,
            row_group_bytes=config.row_group_bytes,
            gzip_level=config.gzip_level,
        )

    encoder = fresh()
    for batch in batches:
        if not encoder.fits(batch):
            encoder.close()
            encoder = fresh()
        encoder.write(batch)
    encoder.close()
    return counter.n


def _first(batches: list[Batch]) -> list[Batch]:
    """The first half of the rows of ``batches`` (same columns)."""
    want = sum(len(b) for b in batches) // 2
    out: list[Batch] = []
    for b in batches:
        if want <= 0:
            break
        out.append(Batch(b.table, b.columns, b.rows[:want]))
        want -= len(out[-1])
    return out


def encode_sample(pipeline: Pipeline, batches: list[Batch]) -> tuple[SinkSample, ...]:
    """Every sink of ``pipeline`` encoding the (column-mapped) sample."""
    if pipeline.columns is not None:
        batches = [mapping.apply_columns(b, pipeline.columns) for b in batches]
    out: list[SinkSample] = []
    for i, config in enumerate(pipeline.sinks):
        if config.kind == "table":
            basis = "table entities, approximated by the rows' uncompressed JSON size"
            fmt, compression = "table", "none"
        else:
            basis = "encoded like the sink (same format and compression) on the sampled window"
            fmt, compression = config.format, config.compression
        whole = _encode(config, batches)
        out.append(SinkSample(i, config.kind, fmt, compression, whole, basis, _encode(config, _first(batches))))
    return tuple(out)


def sample_query(pipeline: Pipeline, source: QueryApiSource, window: Window) -> Sample:
    """Read ``window`` with one row query (the engine's own fetch) and size it for every sink."""
    began = time.monotonic()
    batches = list(source.read_step(window))
    seconds = time.monotonic() - began
    rows = sum(len(b) for b in batches)
    return Sample(window, rows, json_bytes(batches), seconds, encode_sample(pipeline, batches))
