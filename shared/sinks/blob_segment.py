"""One output file of a blob writer, and the conditions its commit is fenced with.

A segment owns its encoder and the staging stream under it; ``fence`` makes the final
Put Block List replace only the blob this run found, so a runner that lost its lease
cannot overwrite a newer run's file.
"""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from shared.errors import RetriableError
from shared.runtime.membudget import process_budget
from shared.settings import SinkConfig
from shared.sinks._azure import translate
from shared.sinks.formats import Encoder, GzipStream, ParquetEncoder, open_encoder
from shared.sinks.staging import BlockStager, Pipe

__all__ = ["Segment", "content_type", "current_etag", "fence", "overtaken"]

_CONTENT_TYPES = {
    ("jsonl", "none"): "application/x-ndjson",
    ("csv", "none"): "text/csv; charset=utf-8",
    ("parquet", ""): "application/vnd.apache.parquet",
}


def content_type(fmt: str, compression: str) -> str:
    if fmt == "parquet":
        return _CONTENT_TYPES[("parquet", "")]
    return _CONTENT_TYPES.get((fmt, compression), "application/gzip")


def current_etag(blob: BlobClient) -> str | None:
    """The blob's ETag now, ``None`` if it does not exist."""
    try:
        return str(blob.get_blob_properties().etag)
    except ResourceNotFoundError:
        return None
    except AzureError as exc:
        raise translate(exc, f"reading {blob.blob_name}") from exc


def fence(etag: str | None) -> dict[str, Any]:
    """Commit only over the blob this run found (or only if there was none).

    Fencing for runners that lost their lease: a stalled runner that wakes after another
    one took the window over and committed cannot overwrite the newer output.
    """
    if etag is None:
        return {"match_condition": MatchConditions.IfMissing}
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


def overtaken(what: str) -> RetriableError:
    """A fenced write refused: the name changed since this run opened it."""
    return RetriableError(f"{what}: another runner wrote it after this run started (lease lost?); not replacing it")


class Segment:
    """One output file of a writer: its name, encoder and staging stream."""

    def __init__(self, blob: BlobClient, config: SinkConfig, block_size: int, etag: str | None) -> None:
        self.name = blob.blob_name
        self.blob = blob
        self.etag = etag  # the blob as this run found it: the commit only replaces exactly that
        self.stager = BlockStager(blob, block_size=block_size)
        self.pipe: Pipe | None = None
        if config.format == "parquet":
            self.encoder: Encoder = open_encoder(
                "parquet",
                self.stager,
                compression=config.compression,
                row_group_rows=config.row_group_rows,
                row_group_bytes=config.row_group_bytes,
                budget=process_budget(),
            )
        else:
            if config.compression == "gzip":
                gzip = GzipStream(self.stager, config.gzip_level)

                def finish() -> None:
                    gzip.finish()
                    self.stager.finish()

                self.pipe = Pipe(gzip, finish)
            else:
                self.pipe = Pipe(self.stager, self.stager.finish)
            self.encoder = open_encoder(config.format, self.pipe, compression="none")
        self.finished = False

    def finish(self) -> None:
        if self.finished:
            return
        self.encoder.close()
        if self.pipe is not None:
            self.pipe.finish()
        else:
            self.stager.finish()
        self.finished = True

    def cancel(self) -> None:
        if self.pipe is not None:
            self.pipe.cancel()
        if isinstance(self.encoder, ParquetEncoder):
            self.encoder.discard()
        self.stager.cancel()
