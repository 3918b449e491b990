"""Lines of one exported blob → mapped rows; bad lines (or a blob that is not text) to quarantine.

A blob is read in byte ranges and lines may straddle them. Text is UTF-8 (a UTF-8
byte-order mark is skipped); a UTF-16 blob (byte-order mark ``FF FE`` / ``FE FF``) is decoded
incrementally; a blob with NUL bytes and no byte-order mark is set aside whole as one item.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from shared.errors import DataError
from shared.model import Window
from shared.runtime.quarantine import QuarantineFile, quarantine_name

__all__ = ["Blob", "BlobReader", "Job", "ReadStats", "ReaderHost"]

_BOM = b"\xef\xbb\xbf"
_UTF16 = ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


@dataclass(frozen=True, slots=True)
class Blob:
    name: str  # full blob name
    etag: str
    size: int
    append: bool


@dataclass(frozen=True, slots=True)
class Job:
    """Read ``blob`` from byte ``offset``; its earlier lines (append growth) number ``lines_before``."""

    blob: Blob
    offset: int
    lines_before: int


@dataclass
class ReadStats:
    """Counters of the last read (tests, bench, logs)."""

    blobs: int = 0
    bytes: int = 0
    lines: int = 0  # non-blank lines = records offered to the mapping
    rows: int = 0
    quarantined: int = 0
    list_pages: int = 0
    vanished: int = 0


class ReaderHost(Protocol):
    """What a reader needs from the source it reads for (``ExportBlobSource``)."""

    pipeline: str
    table: str
    stats: ReadStats

    def map_record(self, record: Any) -> tuple[str, list[Any]]: ...

    def quarantine_file(self, name: str, blob: str) -> QuarantineFile: ...


class BlobReader:
    """Turns one blob's byte ranges into rows; lines may straddle ranges."""

    __slots__ = ("_decoder", "_skip", "_source", "_tail", "folder", "job", "line_no", "part", "quarantine", "window")

    def __init__(self, source: ReaderHost, window: Window, part: str, folder: str, job: Job) -> None:
        self._source = source
        self.window = window
        self.part = part
        self.folder = folder
        self.job = job
        self.line_no = 0  # physical lines of this read (numbering continues after lines_before)
        self._tail = b""
        self.quarantine: QuarantineFile | None = None
        self._decoder: codecs.IncrementalDecoder | None = None  # a UTF-16 blob (it had a BOM)
        self._skip = False  # the blob was quarantined whole

    def feed(self, data: bytes, last: bool, rows: list[list[Any]]) -> None:
        if self._skip:
            return
        if self.job.offset == 0 and self.line_no == 0 and not self._tail and self._decoder is None:
            data = self._start(data)
            if self._skip:
                return
        if self._decoder is not None:
            try:
                data = self._decoder.decode(data, last).encode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                self._whole(data, f"blob is not valid UTF-16 past its byte-order mark: {exc}")
                return
        if self._tail:
            data = self._tail + data
        lines = data.split(b"\n")
        self._tail = b"" if last else lines.pop()
        if last and lines and not lines[-1]:
            lines.pop()  # the final newline ends the last line; it does not start an empty one
        self._parse(lines, rows)

    def _start(self, data: bytes) -> bytes:
        """The first bytes of a blob: strip a UTF-8 BOM, decode after a UTF-16 one, and set a
        blob with NUL bytes and no BOM (UTF-16 without one, binary) aside whole."""
        if data.startswith(_BOM):
            return data[len(_BOM) :]
        for bom, encoding in _UTF16:
            if data.startswith(bom):
                self._decoder = codecs.getincrementaldecoder(encoding)("strict")
                return data[len(bom) :]
        if b"\x00" in data[:4096]:
            self._whole(data, "blob is not UTF-8 text (NUL bytes, no byte-order mark: UTF-16 without a BOM, or binary)")
        return data

    def _whole(self, data: bytes, reason: str) -> None:
        """Quarantine the whole blob as one item (its first bytes shown) and skip the rest of it."""
        self._skip = True
        self._tail = b""
        self.line_no += 1
        self._source.stats.lines += 1
        self._bad(data[:256], reason, self.job.lines_before + self.line_no)

    def _parse(self, lines: list[bytes], rows: list[list[Any]]) -> None:
        source = self._source
        want = source.table
        map_record = source.map_record
        loads = orjson.loads
        line_no = self.job.lines_before + self.line_no
        append = rows.append
        before = len(rows)
        blank = 0
        for raw in lines:
            line_no += 1
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw or raw.isspace():
                blank += 1
                continue
            try:
                table, row = map_record(loads(raw))
            except orjson.JSONDecodeError as exc:
                self._bad(raw, f"invalid JSON: {exc}", line_no)
                continue
            except DataError as exc:
                self._bad(raw, str(exc), line_no)
                continue
            if table != want:
                self._bad(raw, f"a {table} record in a pipeline of table {want} (the folder holds {want})", line_no)
                continue
            append(row)
        records = len(rows) - before
        stats = source.stats
        stats.rows += records
        stats.lines += len(lines) - blank  # quarantined lines were counted by _bad into stats.quarantined
        self.line_no = line_no - self.job.lines_before

    def _bad(self, raw: bytes, reason: str, line_no: int) -> None:
        source = self._source
        if self.quarantine is None:
            name = quarantine_name(source.pipeline, self.window, self.part, self.job.blob.name)
            self.quarantine = source.quarantine_file(name, self.job.blob.name)
        self.quarantine.add(raw, reason, line_no)
        source.stats.quarantined += 1

    def close(self) -> None:
        assert self._skip or not self._tail, "the last range of a blob ends every line"
        if self.quarantine is not None:
            self.quarantine.close()
