"""Delta Lake sink: one Delta table per pipeline, one atomic commit per window.

Writers stream a (window, part)'s batches into Parquet files under the table folder
(``date=…/hour=…/<window key>_<run>_<part>_<n>.parquet``, blocks staged as they fill, so
memory stays bounded); such files are invisible to Delta readers until the log adds them.
``commit`` only finishes the files. ``write_manifest`` — called once the window's parts
and checkpoint chunks are all written — is the Delta commit: it adds the window's files
and removes every other file of that window (an earlier run, a crash after a commit, a
superseded late part) in one log entry, with an app transaction per window. See
docs/sinks.md for why the commit sits there and what the app transaction tells.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.errors import DataError, FatalError
from shared.model import Batch, OutputFile, Window
from shared.settings import SinkConfig
from shared.sinks._azure import ensure_once, translate
from shared.sinks.delta_files import (
    SEGMENTS_KEY,
    DataFile,
    FileGone,
    Segment,
    compact_name,
    copy_rows,
    read_footer,
    segments_of,
)
from shared.sinks.delta_table import (
    APP_PREFIX,
    StagedFile,
    commit_window,
    file_stats,
    load_table,
    partition_columns,
    partition_values,
    storage_options,
)
from shared.sinks.formats import batch_to_arrow

__all__ = ["DeltaSink", "DeltaWriter"]

log = logging.getLogger(__name__)

_SCHEMA_TTL = 60.0  # seconds a loaded table schema is trusted for early type checks


class DeltaWriter:
    """Writes one (window, part) as staged Parquet files; ``commit`` finishes them.

    Nothing is visible to table readers until the window's ``write_manifest`` commit.
    """

    def __init__(self, sink: DeltaSink, window: Window, part: str) -> None:
        self._sink = sink
        self.window = window
        self.part = part
        self._run = uuid.uuid4().hex[:12]
        self._files: list[DataFile] = []
        self._state = "open"
        self._table_schema = sink.table_schema()

    def write(self, batch: Batch) -> None:
        """Convert ``batch`` to typed Arrow (the Parquet sink's mapping) and stream it out.

        A column whose type differs from the table's raises ``FatalError`` at once
        (``int`` into a ``long`` column is widened); values that fit no type, ``DataError``.
        """
        if self._state != "open":
            raise RuntimeError(f"delta writer for {self.window} part {self.part!r} is {self._state}")
        if not len(batch):
            return
        for name in self._sink.partitions_of(self.window):
            if name.name in batch.names:
                raise DataError(f"column {name.name!r} collides with the Delta table's partition column; rename it")
        table = self._fit_table(batch_to_arrow(batch))
        try:
            current = self._files[-1] if self._files else None
            if current is None or not current.fits(table):
                current = self._new_file()
            current.write(table)
        except BaseException:
            self.abort()
            raise

    def _fit_table(self, table: pa.Table) -> pa.Table:
        known = self._table_schema
        if known is None:
            return table
        for i, fld in enumerate(table.schema):
            if fld.name not in known.names or known.field(fld.name).type == fld.type:
                continue
            want = known.field(fld.name).type
            if want == pa.int64() and fld.type == pa.int32():
                table = table.set_column(i, pa.field(fld.name, want, metadata=fld.metadata), table.column(i).cast(want))
                continue
            raise FatalError(
                f"Delta table column {fld.name!r} is {want} but window {self.window} has it as {fld.type}; "
                "a type change is not cast silently: map the column to its old type (pipeline 'columns'), "
                "or point the sink at a new table path"
            )
        return table

    def _new_file(self) -> DataFile:
        sink = self._sink
        folder = "/".join(f"{k}={v}" for k, v in partition_values(sink.partitions_of(self.window), self.window).items())
        rel = f"{folder}/{self.window.key}_{self._run}_{self.part or 'main'}_{len(self._files):03d}.parquet"
        file = DataFile(sink.container, f"{sink.root}/{rel}", rel, sink.config)
        if self._files:
            self._files[-1].finish()
            log.info("%s part %r: columns changed; continuing in %s", self.window, self.part, rel)
        self._files.append(file)
        return file

    def commit(self) -> list[OutputFile]:
        """Finish this part's files (uploaded, still outside the table) and list them."""
        if self._state != "open":
            raise RuntimeError(f"delta writer for {self.window} part {self.part!r} is {self._state}")
        outputs: list[OutputFile] = []
        try:
            for file in self._files:
                meta = file.finish()
                assert file.schema is not None
                staged = StagedFile(file.rel, file.stager.size, file.rows, file.schema, file_stats(meta, file.schema))
                self._sink.remember(file.name, staged)
                outputs.append(
                    OutputFile(
                        name=file.name,
                        rows=file.rows,
                        bytes=file.stager.size,
                        sha256=file.stager.sha256,
                        extra={
                            "format": "parquet",
                            "compression": self._sink.config.compression,
                            "part": self.part,
                            "columns": [{"name": f.name, "type": _kql_type(f)} for f in file.schema],
                        },
                    )
                )
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        return outputs

    def abort(self) -> None:
        """Drop what is being written; uploaded files stay outside the table (vacuum removes them)."""
        if self._state != "open":
            return
        self._state = "aborted"
        for file in self._files:
            file.cancel()


def _kql_type(fld: pa.Field) -> str:
    meta: dict[bytes, bytes] = fld.metadata or {}
    return meta.get(b"kql_type", b"string").decode()


class DeltaSink:
    """``Sink`` for ``kind: "delta"``: one table at ``az://<container>/<path>``."""

    def __init__(
        self,
        config: SinkConfig,
        *,
        pipeline: str,
        table: str,
        service: BlobServiceClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if config.kind != "delta":
            raise ValueError(f"DeltaSink needs a delta sink config, got {config.kind!r}")
        if service is None:
            from shared.runtime.storage import blob_service

            service = blob_service(config.storage)
        self.config = config
        self.pipeline = pipeline
        self.table = table
        self.root = config.path.replace("{pipeline}", pipeline).replace("{table}", table).strip("/")
        self.uri = f"az://{config.container}/{self.root}"
        self.options = storage_options(config.storage)
        self.container: ContainerClient = service.get_container_client(config.container)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._staged: OrderedDict[str, StagedFile] = OrderedDict()
        self._stamps: OrderedDict[str, int] = OrderedDict()  # window key → run stamp (paused runs linger)
        self._segments: dict[str, list[Segment]] = {}
        self._last_stamp = 0
        self._schema: tuple[float, pa.Schema | None] | None = None

    def __repr__(self) -> str:
        return f"DeltaSink({self.uri!r}, pipeline={self.pipeline!r})"

    def app_id(self, window: Window) -> str:
        """The app transaction id of a window: one per window, so out-of-order commits stay visible."""
        return f"{APP_PREFIX}:{self.pipeline}:{window.key}"

    def partitions_of(self, window: Window) -> tuple[pa.Field, ...]:
        return partition_columns(self.config.partition_by, window)

    def table_schema(self) -> pa.Schema | None:
        """The table's column schema (cached briefly), ``None`` before the first commit."""
        with self._lock:
            cached = self._schema
        if cached is not None and time.monotonic() - cached[0] < _SCHEMA_TTL:
            return cached[1]
        schema = None
        if self._has_log():  # a new table: no deltalake before its commit (``load_table``)
            dt = load_table(self.uri, self.options)
            schema = pa.schema(dt.schema().to_arrow()) if dt is not None else None
        with self._lock:
            self._schema = (time.monotonic(), schema)
        return schema

    def _has_log(self) -> bool:
        """Whether the table folder holds a ``_delta_log`` entry (one listing call)."""
        try:
            found = self.container.list_blobs(name_starts_with=f"{self.root}/_delta_log/", results_per_page=1)
            return next(iter(found), None) is not None
        except ResourceNotFoundError:  # no container yet: no table yet
            return False
        except AzureError as exc:
            raise translate(exc, f"listing {self.root}/_delta_log") from exc

    def remember(self, name: str, staged: StagedFile) -> None:
        with self._lock:
            self._staged[name] = staged
            while len(self._staged) > 4096:
                self._staged.popitem(last=False)

    def _stamp(self) -> int:
        with self._lock:
            self._last_stamp = max(time.time_ns() // 1000, self._last_stamp + 1)
            return self._last_stamp

    def open(self, window: Window, *, part: str = "") -> DeltaWriter:
        """A writer for ``window``/``part``; the window's run stamp is taken at its first open."""
        ensure_once(
            (self.container.url, ""), self.container.create_container, f"creating container {self.config.container}"
        )
        stamp = self._stamp()
        with self._lock:
            if not part or window.key not in self._stamps:
                self._stamps[window.key] = stamp
                while len(self._stamps) > 4096:
                    self._stamps.popitem(last=False)
        return DeltaWriter(self, window, part)

    def output_name(self, window: Window, part: str = "") -> str:
        """A pseudo-name: a part's files carry a run id, and the window's commit replaces them all."""
        return f"delta:{self.config.container}/{self.root}#{window.key}/{part or 'main'}"

    def remove(self, name: str) -> None:
        """Nothing to do: the window's commit already removed every file it did not add from
        the table; the files stay for time travel until ``vacuum`` deletes them."""
        log.debug("%s: %s is superseded by the window's commit", self.uri, name)

    def _staged_file(self, out: OutputFile) -> StagedFile:
        """What the commit needs about one output; ``FileGone`` if it is no longer stored."""
        with self._lock:
            known = self._staged.get(out.name)
        if known is not None:
            if not self._exists(out.name):  # written here earlier, since compacted and vacuumed
                raise FileGone(f"{out.name} is no longer stored")
            return known
        prefix = f"{self.root}/"
        if not out.name.startswith(prefix):
            raise FatalError(f"{out.name!r} is not a file of Delta table {self.uri}")
        meta = read_footer(self.container, out.name, out.bytes)
        schema = meta.schema.to_arrow_schema()
        staged = StagedFile(out.name[len(prefix) :], out.bytes, meta.num_rows, schema, file_stats(meta, schema))
        self.remember(out.name, staged)
        return staged

    def _exists(self, name: str) -> bool:
        try:
            return bool(self.container.get_blob_client(name).exists())
        except AzureError as exc:
            raise translate(exc, f"checking {name}") from exc

    def _files_of(self, outputs: list[OutputFile]) -> tuple[list[StagedFile], set[str]]:
        """The outputs as staged files, and the (table-relative) names of those no longer stored:
        maintenance merged them into a compacted file and vacuum deleted them."""
        files, gone = [], set()
        for out in outputs:
            try:
                files.append(self._staged_file(out))
            except FileGone:
                gone.add(out.name.removeprefix(f"{self.root}/"))
        return files, gone

    def segments(self, rel: str, size: int) -> list[Segment]:
        """Which windows' rows a (compacted) file holds, from its footer (files never change)."""
        with self._lock:
            known = self._segments.get(rel)
        if known is None:
            known = segments_of(rel, read_footer(self.container, f"{self.root}/{rel}", size))
            with self._lock:
                self._segments[rel] = known
        return known

    def rewrite(self, rel: str, size: int, drop: set[str], columns: pa.Schema) -> StagedFile | None:
        """A compacted file without the segments of original files ``drop`` (``None``: nothing left)."""
        segments = self.segments(rel, size)
        keep = [s for s in segments if s.file not in drop]
        if not keep:
            return None
        ranges, offset = [], 0
        for seg in segments:
            if seg.file in drop:
                ranges.append((offset, offset + seg.rows))
            offset += seg.rows
        new_rel = compact_name(rel.rsplit("/", 1)[0], keep, self._stamp())
        out = DataFile(self.container, f"{self.root}/{new_rel}", new_rel, self.config)
        try:
            copy_rows(self.container, f"{self.root}/{rel}", out, columns, ranges)
            meta = out.finish({SEGMENTS_KEY: json.dumps([s.__dict__ for s in keep]).encode()})
        except BaseException:
            out.cancel()
            raise
        assert out.schema is not None
        with self._lock:
            self._segments[new_rel] = keep
        return StagedFile(new_rel, out.stager.size, out.rows, out.schema, file_stats(meta, out.schema))

    def write_manifest(self, window: Window, outputs: list[OutputFile], info: dict[str, Any]) -> OutputFile:
        """The window's Delta commit: exactly ``outputs`` become the window's rows (see the module doc).

        Returns an ``OutputFile`` naming the table version (``delta:<container>/<path>@v<n>``).
        """
        files, gone = self._files_of([o for o in outputs if o.extra.get("kind", "data") == "data"])
        with self._lock:
            stamp = self._stamps.pop(window.key, None)
        if stamp is None:
            stamp = self._stamp()
        app_id = self.app_id(window)
        result = commit_window(
            self.uri,
            self.options,
            window=window,
            parts=self.partitions_of(window),
            files=files,
            gone=gone,
            merged=self,
            app_id=app_id,
            stamp=stamp,
            metadata={
                "mover.app": app_id,
                "mover.stamp": stamp,
                "mover.pipeline": self.pipeline,
                "mover.window": window.key,
            },
        )
        with self._lock:
            self._schema = None
        log.info(
            "%s window %s: version %s (+%d -%d files)",
            self.uri,
            window.key,
            result.version,
            result.added,
            result.removed,
        )
        return OutputFile(
            name=f"delta:{self.config.container}/{self.root}@"
            + ("empty" if result.version is None else f"v{result.version}"),
            rows=result.rows,
            bytes=sum(f.size for f in files),
            extra={"kind": "manifest", "version": result.version, "stamp": stamp},
        )

    def landed(self, window: Window) -> int | None:
        """The run stamp of the window's last landed commit (``None``: never committed)."""
        dt = load_table(self.uri, self.options)
        return None if dt is None else dt.transaction_version(self.app_id(window))
