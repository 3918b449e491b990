"""An in-memory ``Sink`` with the blob sink's semantics, for unit tests of the runner.

Same names (path template), same replace-on-commit, same zero-row deletion, same
manifest document; the bytes are uncompressed JSONL. Failures can be injected.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.model import Batch, OutputFile, Window
from shared.paths import DEFAULT_TEMPLATE, data_name, manifest_name
from shared.sinks.formats import JsonlEncoder
from shared.sinks.manifest import build_manifest, encode_manifest, output_extra

__all__ = ["MemorySink", "MemoryWriter"]


class MemoryWriter:
    def __init__(self, sink: MemorySink, window: Window, part: str) -> None:
        self._sink = sink
        self.window = window
        self.part = part
        self.name = sink.output_name(window, part)
        self._buffer = io.BytesIO()
        self._encoder = JsonlEncoder(self._buffer, compression="none")
        self._state = "open"

    def write(self, batch: Batch) -> None:
        if self._state != "open":
            raise RuntimeError(f"writer for {self.name} is {self._state}")
        if self._sink.fail_write is not None:
            error, self._sink.fail_write = self._sink.fail_write, None
            raise error
        self._encoder.write(batch)

    def commit(self) -> list[OutputFile]:
        if self._state != "open":
            raise RuntimeError(f"writer for {self.name} is {self._state}")
        if self._sink.fail_commit is not None:
            error, self._sink.fail_commit = self._sink.fail_commit, None
            self._state = "aborted"
            raise error
        self._state = "committed"
        self._sink.commits += 1
        self._encoder.close()  # writes what the encoder still holds
        if self._encoder.rows == 0:
            self._sink.files.pop(self.name, None)
            return []
        data = self._buffer.getvalue()
        self._sink.files[self.name] = data
        extra = output_extra(fmt="jsonl", compression="none", part=self.part, columns=self._encoder.columns)
        return [OutputFile(self.name, self._encoder.rows, len(data), hashlib.sha256(data).hexdigest(), extra)]

    def abort(self) -> None:
        if self._state == "open":
            self._state = "aborted"
            self._sink.aborts += 1


class MemorySink:
    """``files`` maps committed names to bytes, ``manifests`` names to documents.

    Set ``fail_write`` / ``fail_commit`` to an exception to make the next call raise it once.
    """

    def __init__(
        self,
        *,
        pipeline: str = "pipeline",
        table: str = "table",
        path: str = DEFAULT_TEMPLATE,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.table = table
        self.path = path
        self._clock = clock or (lambda: datetime.now(UTC))
        self.files: dict[str, bytes] = {}
        self.manifests: dict[str, dict[str, Any]] = {}
        self.commits = 0
        self.aborts = 0
        self.fail_write: BaseException | None = None
        self.fail_commit: BaseException | None = None

    def open(self, window: Window, *, part: str = "") -> MemoryWriter:
        return MemoryWriter(self, window, part)

    def output_name(self, window: Window, part: str = "") -> str:
        return data_name(
            self.path,
            pipeline=self.pipeline,
            table=self.table,
            window=window,
            part=part,
            fmt="jsonl",
            compression="none",
        )

    def remove(self, name: str) -> None:
        self.files.pop(name, None)
        self.manifests.pop(name, None)

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of a committed file, decoded."""
        return [orjson.loads(line) for line in self.files[name].splitlines()]

    def write_manifest(self, window: Window, outputs: list[OutputFile], info: dict[str, Any]) -> OutputFile:
        name = manifest_name(self.path, pipeline=self.pipeline, table=self.table, window=window)
        doc = build_manifest(
            pipeline=self.pipeline,
            table=self.table,
            window=window,
            location="memory:",
            fmt="jsonl",
            compression="none",
            outputs=outputs,
            info=info,
            written_at=self._clock(),
        )
        self.manifests[name] = doc
        data = encode_manifest(doc)
        return OutputFile(name, doc["rows"], len(data), hashlib.sha256(data).hexdigest(), {"kind": "manifest"})
