"""Hour folders of exported blobs: legacy continuous export and diagnostic settings.

One window is one hour folder (``folder_template`` filled with the window start). Its
blobs are listed page by page, downloaded in ranges of at most 4 MiB with a few ranges
in flight, split into JSON lines, mapped to the pipeline's classic table and yielded in
batches — the hour is never held in memory. The folder is the *delivery* (continuous
export) or *receive* (diagnostic settings) hour, so rows are moved as they are, not
filtered by event time: filtering would drop rows that only ever arrive in a later
folder.

Bad lines (invalid JSON, unknown telemetry type, unparsable event time, a record of
another table) go to quarantine with a reason; the window still completes. What the
window consumed (blob names, ETags, lengths) is recorded in the ledger, and a re-sweep
within ``late_lookback`` moves late blobs and append-blob growth exactly once, as
extra parts ``late-0001``… (see docs/blob-sources.md).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobType, ContainerClient

from shared import mapping
from shared.errors import ConfigError, FatalError, RetriableError
from shared.model import Batch, Column, Window
from shared.runtime.blob_errors import translate
from shared.runtime.quarantine import Quarantine, QuarantineFile
from shared.runtime.storage import blob_service
from shared.settings import ExportSourceConfig, StorageConfig
from shared.sources.base import LatePlan, SourceSummary
from shared.sources.export_lines import Blob, BlobReader, Job, ReadStats
from shared.sources.export_state import (
    FORMAT_VERSION,
    INLINE_LIMIT,
    STATE_CONTAINER,
    Consumed,
    ConsumedStore,
    decode_entries,
    digest,
    encode_entries,
)

if TYPE_CHECKING:
    from shared.windows import WindowState

__all__ = ["CHUNK_BYTES", "ExportBlobSource", "ReadStats", "classic_table", "folder_for", "late_part_name"]

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024  # one ranged GET; the unit of prefetch (memory ≈ concurrency × this)
_MAPPERS: dict[str, Callable[[dict[str, Any]], tuple[str, list[Any]]]] = {
    "continuous_export": mapping.map_export_record,
    "diagnostic_settings": mapping.map_diagnostic_record,
}


def folder_for(template: str, prefix: str, start: datetime) -> str:
    """The hour folder of a window: ``template`` filled in, always ending in ``/``.

    An empty ``prefix`` drops its ``{prefix}/`` segment rather than leaving a leading slash.
    """
    text = template.replace("{prefix}/", "") if not prefix else template
    values = {
        "prefix": prefix,
        "yyyy": f"{start.year:04d}",
        "MM": f"{start.month:02d}",
        "dd": f"{start.day:02d}",
        "HH": f"{start.hour:02d}",
    }
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text if text.endswith("/") else text + "/"


def late_part_name(number: int) -> str:
    """``late-0001`` …: the sink part of the ``number``-th late delivery of a window."""
    return f"late-{number:04d}"


class ExportBlobSource:
    """``Source`` + ``LateAwareSource`` over one container of exported hour folders.

    Not thread-safe: the engine builds one per window run.
    """

    def quarantine_file(self, name: str, blob: str) -> QuarantineFile:
        """A quarantine file for lines of ``blob`` this read sets aside (kept when stale ones are cleared)."""
        self._quarantined_names.add(name)
        return self._quarantine.file(name, blob)

    def __init__(
        self,
        config: ExportSourceConfig,
        *,
        pipeline: str,
        state: StorageConfig,
        quarantine_container: str,
        state_container: str = STATE_CONTAINER,
        inline_limit: int = INLINE_LIMIT,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self._container: ContainerClient = blob_service(config.storage).get_container_client(config.container)
        state_service = blob_service(state)
        self._quarantine = Quarantine(state_service, quarantine_container, source_container=config.container)
        self._store = ConsumedStore(state_service, state_container)
        self._inline_limit = inline_limit
        self._map = _MAPPERS[config.kind]
        self.map_record = self._map  # the readers' view (``export_lines.ReaderHost``)
        self.table = classic_table(config.table)
        self.columns: tuple[Column, ...] = mapping.schema(self.table)
        self.stats = ReadStats()
        self._summary = SourceSummary()
        self._quarantined_names: set[str] = set()

    # -- the Source protocol ----------------------------------------------------------------
    def folder(self, window: Window) -> str:
        return folder_for(self.config.folder_template, self.config.prefix, window.start)

    def read(self, window: Window) -> Iterator[Batch]:
        """Every blob of the window's hour folder, from the start.

        Quarantine of earlier runs of the window (late parts included) that this run did not
        rewrite is deleted at the end: a full rerun replaces everything the window had.
        """
        self._begin()
        folder = self.folder(window)
        blobs = self._list(folder)
        entries: dict[str, Consumed] = {}
        yield from self._consume(window, "", folder, [Job(b, 0, 0) for b in blobs], entries)
        self._quarantine.clear(f"{self.pipeline}/{window.key}/", keep=self._quarantined_names)
        self._finish(window, folder, entries, parts=0)

    def summary(self) -> SourceSummary:
        """``source_count`` = non-blank lines read, ``quarantined``, ``extra`` = consumed record (see module doc)."""
        return self._summary

    # -- the LateAwareSource protocol -------------------------------------------------------
    def resweep(self, window: Window, state: WindowState) -> LatePlan | None:
        """List the hour folder again and compare with what the window consumed.

        New blobs and append-blob growth → a ``part`` plan (read only that); a block blob
        whose ETag changed, or an append blob that shrank, was rewritten → ``replace``.
        Blobs deleted since are ignored (their rows were moved). ``None`` when nothing is new
        or the ledger holds no consumed record of this source.
        """
        extra = state.extra
        folder = self.folder(window)
        if extra.get("v") != FORMAT_VERSION or extra.get("kind") != self.config.kind:
            log.warning("%s %s: no consumed-blob record in the ledger; re-sweep skipped", self.pipeline, window)
            return None
        if extra.get("folder") != folder or extra.get("container") != self.config.container:
            log.warning(
                "%s %s: the ledger's record is of %s/%s, the config reads %s/%s; re-sweep skipped (replay to re-read)",
                self.pipeline, window, extra.get("container"), extra.get("folder"), self.config.container, folder,
            )
            return None
        consumed = self._load(extra)
        jobs: list[list[Any]] = []
        changed: list[str] = []
        fresh = grown = 0
        for blob in self._list(folder):
            rel = blob.name[len(folder):]
            seen = consumed.get(rel)
            if seen is None:
                jobs.append([rel, blob.etag, blob.size, int(blob.append), 0, 0])
                fresh += 1
            elif blob.append and seen.append:
                if blob.size > seen.length:
                    jobs.append([rel, blob.etag, blob.size, 1, seen.length, seen.lines])
                    grown += 1
                elif blob.size < seen.length:
                    changed.append(rel)
            elif blob.etag != seen.etag or blob.append != seen.append:
                changed.append(rel)
        if changed:
            shown = ", ".join(changed[:3]) + (f" (+{len(changed) - 3} more)" if len(changed) > 3 else "")
            return LatePlan(kind="replace", reason=f"{len(changed)} consumed blob(s) were rewritten: {shown}")
        if not jobs:
            return None
        number = int(extra.get("parts", 0)) + 1
        payload = {
            "v": FORMAT_VERSION,
            "folder": folder,
            "part_no": number,
            "jobs": jobs,
            "base": encode_entries(consumed.values()),
        }
        reason = f"{fresh} new blob(s), {grown} grown append blob(s) in {folder}"
        return LatePlan(kind="part", reason=reason, part=late_part_name(number), payload=payload)

    def read_part(self, window: Window, plan: LatePlan) -> Iterator[Batch]:
        """Only the late input named by ``plan``; ``summary().extra`` is the union (old ∪ new).

        ``source_count``/``quarantined`` describe this part alone (the runner adds the earlier
        counts). Quarantine of an earlier, failed attempt of the same part is replaced.
        """
        payload = plan.payload
        if not isinstance(payload, Mapping) or payload.get("v") != FORMAT_VERSION:
            raise FatalError(f"late plan {plan.part!r} was not made by this source")
        self._begin()
        folder = self.folder(window)
        if payload.get("folder") != folder:
            raise FatalError(f"late plan {plan.part!r} is for folder {payload.get('folder')!r}, not {folder!r}")
        entries = decode_entries(payload["base"])
        jobs = [
            Job(Blob(folder + str(rel), str(etag), int(size), bool(append)), int(offset), int(before))
            for rel, etag, size, append, offset, before in payload["jobs"]
        ]
        yield from self._consume(window, plan.part, folder, jobs, entries)
        self._quarantine.clear(f"{self.pipeline}/{window.key}/{plan.part}/", keep=self._quarantined_names)
        self._finish(window, folder, entries, parts=int(payload["part_no"]))

    # -- listing ------------------------------------------------------------------------------
    def _list(self, folder: str) -> list[Blob]:
        """The folder's blobs with data, in name order, through every listing page.

        Empty blobs (and folder markers of hierarchical-namespace accounts) are left out: a
        blob counts once it has data, so an append blob created empty is picked up when it grows.
        """
        out: list[Blob] = []
        try:
            pages = self._container.list_blobs(
                name_starts_with=folder, results_per_page=self.config.list_page_size
            ).by_page()
            for page in pages:
                self.stats.list_pages += 1
                for props in page:
                    if not props.size or props.name.endswith("/"):
                        continue
                    append = props.blob_type == BlobType.APPENDBLOB
                    out.append(Blob(props.name, str(props.etag), int(props.size), append))
        except AzureError as exc:
            raise translate(exc, f"list {self.config.container}/{folder}") from exc
        out.sort(key=lambda b: b.name)
        return out

    # -- reading --------------------------------------------------------------------------------
    def _begin(self) -> None:
        self.stats = ReadStats()
        self._summary = SourceSummary()
        self._quarantined_names = set()

    def _fetch(self, blob: Blob, start: int, end: int) -> bytes | None:
        """Bytes ``[start, end)`` of ``blob``; ``None`` if the blob is gone.

        Block blobs are read under the listed ETag (a rewrite between listing and reading
        fails the read, to be retried); an append blob's listed range never changes, so it is
        read without one and later appends cannot break it.
        """
        client = self._container.get_blob_client(blob.name)
        conditions: dict[str, Any] = {}
        if not blob.append:
            conditions = {"etag": blob.etag, "match_condition": MatchConditions.IfNotModified}
        try:
            stream = client.download_blob(offset=start, length=end - start, max_concurrency=1, **conditions)
            data: bytes = stream.readall()
            return data
        except ResourceNotFoundError:
            return None
        except ResourceModifiedError as exc:
            raise RetriableError(f"blob {blob.name} changed while it was read; the window is read again") from exc
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise RetriableError(f"blob {blob.name} changed while it was read; the window is read again") from exc
            raise translate(exc, f"read {self.config.container}/{blob.name}") from exc
        except AzureError as exc:
            raise translate(exc, f"read {self.config.container}/{blob.name}") from exc

    def _consume(
        self, window: Window, part: str, folder: str, jobs: list[Job], entries: dict[str, Consumed]
    ) -> Iterator[Batch]:
        """Download the jobs' ranges (a few in flight, in order), parse, map, yield batches.

        ``entries`` is updated with what each blob was consumed up to.
        """
        concurrency = self.config.download_concurrency
        batch_rows = self.config.batch_rows
        ranges: Iterator[tuple[int, int, int]] = (
            (i, start, min(start + CHUNK_BYTES, job.blob.size))
            for i, job in enumerate(jobs)
            for start in range(job.offset, job.blob.size, CHUNK_BYTES)
        )
        rows: list[list[Any]] = []
        current = -1
        reader: BlobReader | None = None
        gone: set[int] = set()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="export-read") as pool:
            pending: deque[tuple[int, int, int, Future[bytes | None]]] = deque()

            def refill() -> None:
                while len(pending) < concurrency:
                    item = next(ranges, None)
                    if item is None:
                        return
                    i, start, end = item
                    pending.append((i, start, end, pool.submit(self._fetch, jobs[i].blob, start, end)))

            refill()
            while pending:
                i, start, end, future = pending.popleft()
                refill()
                data = future.result()
                if i in gone:
                    continue
                if i != current:
                    if reader is not None:
                        self._close_blob(reader, entries)
                    current = i
                    job = jobs[i]
                    reader = BlobReader(self, window, part, folder, job)
                assert reader is not None
                if data is None:
                    if start != reader.job.offset:
                        raise RetriableError(f"blob {reader.job.blob.name} vanished while it was read")
                    log.warning("%s %s: blob %s vanished before it was read", self.pipeline, window, jobs[i].blob.name)
                    self.stats.vanished += 1
                    gone.add(i)
                    reader = None
                    current = -1
                    continue
                reader.feed(data, end == reader.job.blob.size, rows)
                while len(rows) >= batch_rows:
                    yield Batch(self.table, self.columns, rows[:batch_rows])
                    del rows[:batch_rows]
            if reader is not None:
                self._close_blob(reader, entries)
        if rows:
            yield Batch(self.table, self.columns, rows)

    def _close_blob(self, reader: BlobReader, entries: dict[str, Consumed]) -> None:
        reader.close()
        job = reader.job
        rel = job.blob.name[len(reader.folder):]
        entries[rel] = Consumed(rel, job.blob.etag, job.blob.size, job.lines_before + reader.line_no, job.blob.append)
        self.stats.blobs += 1
        self.stats.bytes += job.blob.size - job.offset

    def _finish(self, window: Window, folder: str, entries: dict[str, Consumed], *, parts: int) -> None:
        """Build the summary once every batch was taken: the consumed record, inline or spilled."""
        encoded = encode_entries(entries.values())
        sha = digest(encoded)
        extra: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "kind": self.config.kind,
            "container": self.config.container,
            "folder": folder,
            "blobs": len(encoded),
            "bytes": sum(e.length for e in entries.values()),
            "lines": sum(e.lines for e in entries.values()),
            "parts": parts,
            "digest": sha,
        }
        if len(orjson.dumps(encoded)) <= self._inline_limit:
            extra["consumed"] = encoded
        else:
            extra["consumed_ref"] = self._store.save(self.pipeline, window, encoded, sha)
        self._summary = SourceSummary(source_count=self.stats.lines, quarantined=self.stats.quarantined, extra=extra)
        log.debug(
            "%s %s%s: %d blob(s), %d bytes, %d line(s) -> %d row(s), %d quarantined (%d listing page(s))",
            self.pipeline, window, f" {late_part_name(parts)}" if parts else "", self.stats.blobs, self.stats.bytes,
            self.stats.lines, self.stats.rows, self.stats.quarantined, self.stats.list_pages,
        )

    def _load(self, extra: Mapping[str, Any]) -> dict[str, Consumed]:
        sha = str(extra.get("digest", ""))
        if "consumed" in extra:
            encoded = extra["consumed"]
        elif "consumed_ref" in extra:
            encoded = self._store.load(str(extra["consumed_ref"]), sha)
        else:
            raise FatalError("ledger record has neither 'consumed' nor 'consumed_ref'")
        if digest(encoded) != sha:
            raise FatalError("ledger's consumed-blob record does not match its digest")
        return decode_entries(encoded)


def classic_table(table: str) -> str:
    """The classic table for any accepted spelling (``requests``, ``Requests``, ``AppRequests``).

    Raises ``ConfigError`` naming the known tables.
    """
    if table in mapping.SCHEMAS:
        return table
    found = mapping.DIAGNOSTIC_TYPES.get(table) or mapping.EXPORT_TYPES.get(table)
    if found is None:
        raise ConfigError(f"{table!r} is not an Application Insights table; use one of {', '.join(mapping.TABLES)}")
    return found
