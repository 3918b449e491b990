"""Blob sink (Blob Storage and ADLS Gen2): stream, stage blocks, commit atomically.

A writer encodes batches, compresses them incrementally and uploads ~4–8 MiB
blocks with Put Block while the window is still being read; ``commit`` turns the
staged blocks into the blob with one Put Block List. Until then readers see the
previous complete blob (or none); a crash or ``abort`` leaves only uncommitted
blocks, which are invisible, discarded by the next commit of that name and
garbage-collected by the service after a week. Only Put Block / Put Block List /
Put Blob / Delete / List are used: they behave the same on flat and
hierarchical-namespace accounts and on Azurite.

For text formats, compression, hashing and staging run on a helper thread
(zlib, hashlib and sockets release the GIL), so encoding JSON overlaps them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient, ContentSettings

from shared.errors import DataError
from shared.model import Batch, OutputFile, Window
from shared.paths import data_name, extension, manifest_name, segment_name, segment_pattern
from shared.settings import SinkConfig
from shared.sinks._azure import ensure_once, translate
from shared.sinks.blob_segment import Segment, content_type, current_etag, fence, overtaken
from shared.sinks.manifest import RecentOutputs, build_manifest, encode_manifest, output_extra
from shared.sinks.staging import BLOCK_SIZE, BlockStager

__all__ = ["BLOCK_SIZE", "BlobSink", "BlobWriter", "BlockStager"]

log = logging.getLogger(__name__)

class BlobWriter:
    """Writes one (window, part) to its deterministic blob name(s); see the module doc.

    Not thread-safe: one writer is fed by one thread. Usable as a context manager
    that aborts unless ``commit`` was called.
    """

    def __init__(self, sink: BlobSink, window: Window, part: str) -> None:
        self._sink = sink
        self.window = window
        self.part = part
        self.name = sink.data_name(window, part)
        self._segments: list[Segment] = []
        self._state = "open"
        self._etag = current_etag(sink.container.get_blob_client(self.name))

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._state == "open":
            self.abort()

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"writer for {self.name} is {self._state}")

    def write(self, batch: Batch) -> None:
        """Encode and stage ``batch``; raises ``RetriableError``/``FatalError`` from uploads,
        ``DataError`` for values that fit no column type."""
        self._check_open()
        if not len(batch):
            return
        try:
            segment = self._segments[-1] if self._segments else self._new_segment()
            if not segment.encoder.fits(batch):
                # New columns (or a changed type) in a CSV/Parquet file: finish this file
                # and continue in the next deterministic continuation file.
                segment.finish()
                segment = self._new_segment()
                log.info("%s: columns changed; continuing in %s", self.name, segment.name)
            segment.encoder.write(batch)
        except DataError:
            raise  # encoders reject a bad batch before changing state: the writer goes on
        except BaseException:
            self.abort()
            raise

    def _new_segment(self) -> Segment:
        sink = self._sink
        name = segment_name(self.name, sink.extension, len(self._segments))
        blob = sink.container.get_blob_client(name)
        etag = self._etag if name == self.name else current_etag(blob)
        segment = Segment(blob, sink.config, sink.block_size, etag)
        self._segments.append(segment)
        return segment

    def commit(self) -> list[OutputFile]:
        """Commit every file of this part, then delete leftovers of an earlier run.

        Zero rows: nothing is written, and a file of an earlier run at this name is
        deleted, so outputs always match the latest run. Returns one ``OutputFile``
        per file (name, rows, stored bytes, SHA-256 of the stored bytes).
        """
        self._check_open()
        sink = self._sink
        try:
            for segment in self._segments:
                segment.finish()
            outputs: list[OutputFile] = []
            for segment in self._segments:
                if segment.encoder.rows == 0:
                    continue
                self._commit_segment(segment)
                outputs.append(
                    OutputFile(
                        name=segment.name,
                        rows=segment.encoder.rows,
                        bytes=segment.stager.size,
                        sha256=segment.stager.sha256,
                        extra=output_extra(
                            fmt=sink.config.format,
                            compression=sink.compression,
                            part=self.part,
                            columns=segment.encoder.columns,
                        ),
                    )
                )
            self._delete_stale(committed={o.name for o in outputs})
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        sink.recent.remember(outputs)
        log.debug(
            "window %s part %r: %d rows -> %d file(s) %s",
            self.window,
            self.part,
            sum(o.rows for o in outputs),
            len(outputs),
            self.name,
        )
        return outputs

    def _commit_segment(self, segment: Segment) -> None:
        sink = self._sink
        try:
            segment.blob.commit_block_list(
                [BlobBlock(block_id=i) for i in segment.stager.block_ids],
                **fence(segment.etag),
                content_settings=ContentSettings(content_type=content_type(sink.config.format, sink.compression)),
                metadata={
                    "rows": str(segment.encoder.rows),
                    "sha256": segment.stager.sha256,
                    "window": self.window.key,
                    "pipeline": sink.pipeline,
                },
            )
        except (ResourceModifiedError, ResourceExistsError) as exc:
            raise overtaken(f"committing {segment.name}") from exc
        except AzureError as exc:
            raise translate(exc, f"committing {segment.name}") from exc

    def _delete_stale(self, *, committed: set[str]) -> None:
        """Delete this part's files that this run did not commit (left by earlier runs)."""
        sink = self._sink
        stale: list[str] = []
        if self.name not in committed and self._etag is not None:
            # Only the file this run found: one written since (by a newer owner) stays.
            sink.delete(self.name, etag=self._etag)
        if sink.config.format != "jsonl":  # only CSV/Parquet ever have continuation files
            prefix, pattern = segment_pattern(self.name, sink.extension)
            try:
                stale += [
                    item.name
                    for item in sink.container.list_blobs(name_starts_with=prefix)
                    if pattern.match(item.name) and item.name not in committed
                ]
            except AzureError as exc:
                raise translate(exc, f"listing {prefix}*") from exc
        for name in stale:
            sink.delete(name)

    def abort(self) -> None:
        """Drop local buffers and pending uploads; nothing is committed, the previous
        output stays. Staged blocks are invisible and expire on their own."""
        if self._state != "open":
            return
        self._state = "aborted"
        for segment in self._segments:
            segment.cancel()


class BlobSink:
    """``Sink`` for ``kind: "blob"``: one writer per (window, part), plus the window manifest."""

    def __init__(
        self,
        config: SinkConfig,
        *,
        pipeline: str,
        table: str,
        service: BlobServiceClient | None = None,
        clock: Callable[[], datetime] | None = None,
        block_size: int = BLOCK_SIZE,
    ) -> None:
        if config.kind != "blob":
            raise ValueError(f"BlobSink needs a blob sink config, got {config.kind!r}")
        if service is None:
            from shared.runtime.storage import blob_service

            service = blob_service(config.storage)
        self.config = config
        self.pipeline = pipeline
        self.table = table
        self.compression = config.compression
        self.extension = extension(config.format, config.compression)
        self.block_size = block_size
        self.container: ContainerClient = service.get_container_client(config.container)
        self.recent = RecentOutputs()
        self._manifests: dict[str, str | None] = {}  # window key → the manifest's ETag when a run opened it
        self._clock = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:
        return f"BlobSink({self.config.container!r}, pipeline={self.pipeline!r}, format={self.config.format!r})"

    def data_name(self, window: Window, part: str = "") -> str:
        return data_name(
            self.config.path,
            pipeline=self.pipeline,
            table=self.table,
            window=window,
            part=part,
            fmt=self.config.format,
            compression=self.config.compression,
        )

    def manifest_name(self, window: Window) -> str:
        return manifest_name(
            self.config.path, pipeline=self.pipeline, table=self.table, window=window, tag=self.config.manifest_tag
        )

    def _ensure_container(self) -> None:
        ensure_once(
            (self.container.url, ""),
            self.container.create_container,
            f"creating container {self.config.container}",
        )

    def open(self, window: Window, *, part: str = "") -> BlobWriter:
        """A writer for ``window``/``part``; creates the container on first use in this process."""
        self._ensure_container()
        # The manifest as this run found it: ``write_manifest`` replaces only exactly that.
        self._manifests[window.key] = current_etag(self.container.get_blob_client(self.manifest_name(window)))
        return BlobWriter(self, window, part)

    def output_name(self, window: Window, part: str = "") -> str:
        return self.data_name(window, part)

    def remove(self, name: str) -> None:
        """Delete an earlier output (data file or manifest); a missing one is fine."""
        self.delete(name)

    def delete(self, name: str, *, etag: str | None = None) -> None:
        """Delete a blob; a missing one is fine, and so is one changed since ``etag`` (kept)."""
        condition: dict[str, Any] = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        try:
            self.container.delete_blob(name, **condition)
        except (ResourceNotFoundError, ResourceModifiedError):
            return
        except AzureError as exc:
            raise translate(exc, f"deleting {name}") from exc
        log.info("deleted stale %s", name)

    def _read_json(self, name: str) -> dict[str, Any] | None:
        """An existing JSON blob (the previous manifest), or ``None`` if missing or unreadable."""
        try:
            data = self.container.download_blob(name).readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, f"reading {name}") from exc
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None

    def write_manifest(self, window: Window, outputs: list[OutputFile], info: dict[str, Any]) -> OutputFile:
        """Write ``_<window>.manifest.json`` beside the window's data (one Put Blob, atomic).

        Call it after every part of the window is committed, with all of the window's
        outputs; rewriting it later (late parts) replaces it.
        """
        self._ensure_container()
        name = self.manifest_name(window)
        outputs = self.recent.complete(outputs, lambda: self._read_json(name))
        doc = build_manifest(
            pipeline=self.pipeline,
            table=self.table,
            window=window,
            location=self.container.url,
            fmt=self.config.format,
            compression=self.compression,
            outputs=outputs,
            info=info,
            written_at=self._clock(),
        )
        data = encode_manifest(doc)
        # Fenced like the data files: a runner that lost its lease must not replace the new owner's.
        conditions = fence(self._manifests.pop(window.key)) if window.key in self._manifests else {}
        try:
            self.container.upload_blob(
                name,
                data,
                overwrite=True,
                content_settings=ContentSettings(content_type="application/json"),
                **conditions,
            )
        except (ResourceModifiedError, ResourceExistsError) as exc:
            raise overtaken(f"writing manifest {name}") from exc
        except AzureError as exc:
            raise translate(exc, f"writing manifest {name}") from exc
        return OutputFile(
            name=name,
            rows=doc["rows"],
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            extra={"kind": "manifest"},
        )
