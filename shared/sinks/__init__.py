"""Sinks: where a window's rows land (blob files or Table Storage), behind one Protocol.

``build_sink`` is the only constructor the runner needs; the concrete classes are
exported for tests and tools.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.paths import data_name, manifest_name
from shared.settings import SinkConfig
from shared.sinks.base import Sink, SinkWriter
from shared.sinks.blob import BlobSink, BlobWriter
from shared.sinks.memory import MemorySink
from shared.sinks.table import TableSink, TableWriter

__all__ = [
    "BlobSink",
    "BlobWriter",
    "MemorySink",
    "Sink",
    "SinkWriter",
    "TableSink",
    "TableWriter",
    "build_sink",
    "data_name",
    "manifest_name",
]


def build_sink(config: SinkConfig, *, pipeline: str, table: str, clock: Callable[[], datetime] | None = None) -> Sink:
    """The sink for ``config.kind`` (``blob``, ``table`` or ``delta``), with shared per-account clients.

    ``clock`` stamps manifests (``written_at``); default is the system UTC clock.
    Raises ``ConfigError`` when the storage account has no endpoint for that kind.
    """
    if config.kind == "blob":
        return BlobSink(config, pipeline=pipeline, table=table, clock=clock)
    if config.kind == "table":
        return TableSink(config, pipeline=pipeline, table=table, clock=clock)
    if config.kind == "delta":
        from shared.sinks.delta import DeltaSink  # imported on use: deltalake is a large native library

        return DeltaSink(config, pipeline=pipeline, table=table, clock=clock)
    raise ValueError(f"unknown sink kind {config.kind!r}")
