"""Quarantine for malformed export lines: set aside with a reason, never dropped silently.

Each source blob with bad lines gets one JSON-lines blob in the state account at a
deterministic name ``<pipeline>/<window>/<part|main>/<source blob>.jsonl``; a rerun
writes the same names and then deletes what it did not rewrite (a full rerun: the whole
window prefix; a late part: its own), so quarantine never holds duplicates. Lines are
``{"line", "reason", "source_blob", "line_no", "container"}``. Memory stays bounded:
big quarantines are staged as blocks.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Collection
from typing import Any

import orjson
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, BlobServiceClient, ContainerClient

from shared.model import Window
from shared.runtime.blob_errors import translate

__all__ = ["Quarantine", "QuarantineFile", "quarantine_name"]

_BLOCK = 4 * 1024 * 1024
_MAX_NAME = 1024  # Azure blob name limit
_ensured: set[tuple[str, str]] = set()
_ensured_lock = threading.Lock()


def quarantine_name(pipeline: str, window: Window, part: str, source_blob: str) -> str:
    """Deterministic per (pipeline, window, part, source blob); hashed only if it would exceed 1024 chars."""
    name = f"{pipeline}/{window.key}/{part or 'main'}/{source_blob}.jsonl"
    if len(name) > _MAX_NAME:
        short = hashlib.sha256(source_blob.encode()).hexdigest()[:32]
        name = f"{pipeline}/{window.key}/{part or 'main'}/{short}.jsonl"
    return name


class Quarantine:
    """The quarantine container of the state account, created on first use."""

    def __init__(self, service: BlobServiceClient, container: str, *, source_container: str = "") -> None:
        self._service = service
        self._client: ContainerClient = service.get_container_client(container)
        self.container = container
        self._source_container = source_container

    def _ensure(self, *, again: bool = False) -> None:
        key = (self._service.url, self.container)
        with _ensured_lock:
            if again:
                _ensured.discard(key)
            elif key in _ensured:
                return
        try:
            self._client.create_container()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise translate(exc, f"quarantine container {self.container}") from exc
        with _ensured_lock:
            _ensured.add(key)

    def delete(self, name: str) -> None:
        """Remove one quarantine blob (an earlier run's); a missing one is fine."""
        try:
            self._client.delete_blob(name)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise translate(exc, f"quarantine {self.container}/{name}") from exc

    def clear(self, prefix: str, *, keep: Collection[str] = ()) -> int:
        """Delete earlier quarantine under ``prefix`` except ``keep`` (just rewritten); returns how many."""
        removed = 0
        try:
            for props in self._client.list_blobs(name_starts_with=prefix):
                if props.name in keep:
                    continue
                try:
                    self._client.delete_blob(props.name)
                    removed += 1
                except ResourceNotFoundError:
                    pass
        except ResourceNotFoundError:
            return removed  # no container yet: nothing was ever quarantined
        except AzureError as exc:
            raise translate(exc, f"quarantine {self.container}/{prefix}") from exc
        return removed

    def file(self, name: str, source_blob: str) -> QuarantineFile:
        return QuarantineFile(self, name, source_blob)


class QuarantineFile:
    """The bad lines of one source blob; written on ``close`` (blocks staged past 4 MiB)."""

    def __init__(self, owner: Quarantine, name: str, source_blob: str) -> None:
        self._owner = owner
        self.name = name
        self._source_blob = source_blob
        self._buffer = bytearray()
        self._blocks: list[BlobBlock] = []
        self.count = 0

    def add(self, line: bytes, reason: str, line_no: int) -> None:
        entry: dict[str, Any] = {
            "line": line.decode("utf-8", "backslashreplace"),
            "reason": reason,
            "source_blob": self._source_blob,
            "line_no": line_no,
            "container": self._owner._source_container,
        }
        self.add_entry(entry)

    def add_entry(self, entry: dict[str, Any]) -> None:
        """One JSON line; what orjson refuses (integers beyond 64 bits …) goes through the stdlib."""
        try:
            self._buffer += orjson.dumps(entry, option=orjson.OPT_NON_STR_KEYS, default=str)
        except orjson.JSONEncodeError:
            self._buffer += json.dumps(entry, default=str, ensure_ascii=True).encode("ascii")
        self._buffer += b"\n"
        self.count += 1
        if len(self._buffer) >= _BLOCK:
            self._stage()

    def _stage(self) -> None:
        block_id = f"{len(self._blocks):08d}"
        data = bytes(self._buffer)
        self._write(lambda blob: blob.stage_block(block_id, data))
        self._blocks.append(BlobBlock(block_id=block_id))
        self._buffer.clear()

    def _write(self, op: Callable[[BlobClient], object]) -> None:
        """Run ``op`` on our blob; recreate the container once if it vanished (e.g. storage was reset)."""
        blob = self._owner._client.get_blob_client(self.name)
        for again in (False, True):
            self._owner._ensure(again=again)
            try:
                op(blob)
                return
            except ResourceNotFoundError as exc:
                if again:
                    raise translate(exc, f"quarantine {self.name}") from exc
            except AzureError as exc:
                raise translate(exc, f"quarantine {self.name}") from exc

    def close(self) -> int:
        """Commit what was collected (nothing is written for a clean blob); returns the count."""
        if not self.count:
            return 0
        if not self._blocks:
            data = bytes(self._buffer)
            self._write(lambda blob: blob.upload_blob(data, overwrite=True))
        else:
            if self._buffer:
                self._stage()
            blocks = list(self._blocks)
            self._write(lambda blob: blob.commit_block_list(blocks))
        self._buffer.clear()
        return self.count
