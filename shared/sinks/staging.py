"""Staging blob blocks while data arrives, off the encoding thread (used by the blob sink).

``BlockStager`` counts, hashes and uploads fixed-size blocks (Put Block) on a process-wide
pool; ``Pipe`` runs a downstream ``write`` (gzip + staging) on one helper thread, in order,
so encoding overlaps compression and uploads (zlib, hashlib and sockets release the GIL).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobClient

from shared.sinks._azure import shared_pool, translate
from shared.sinks.formats import Writable

__all__ = ["BLOCK_SIZE", "BlockStager", "Pipe"]

BLOCK_SIZE = 4 * 1024 * 1024
_MAX_IN_FLIGHT = 2  # uploads per stager: bounds memory to ~3 blocks per writer
_MAX_PIPE = 3  # encoded chunks queued for the compress/upload thread


class BlockStager:
    """A write-only stream that stages fixed-size blocks of one blob as data arrives.

    Counts and hashes exactly the bytes that will be stored. Block ids are a random
    writer id plus a sequence number, always the same length (the service rejects
    blocks of one blob whose ids differ in length, uncommitted ones included).
    """

    def __init__(self, blob: BlobClient, *, block_size: int = BLOCK_SIZE) -> None:
        self._blob = blob
        self._block_size = block_size
        self._max_block = 2 * block_size
        self._prefix = uuid.uuid4().hex
        self._buffer = bytearray()
        self._in_flight: deque[Future[None]] = deque()
        self._hash = hashlib.sha256()
        self.block_ids: list[str] = []
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, data: bytes, /) -> int:
        self._hash.update(data)
        self.size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._block_size:
            cut = len(self._buffer) if len(self._buffer) <= self._max_block else self._block_size
            block = bytes(self._buffer[:cut])
            del self._buffer[:cut]
            self._stage(block)
        return len(data)

    def _stage(self, block: bytes) -> None:
        block_id = base64.b64encode(f"{self._prefix}{len(self.block_ids):08d}".encode()).decode()
        self.block_ids.append(block_id)
        while len(self._in_flight) >= _MAX_IN_FLIGHT:
            self._in_flight.popleft().result()
        self._in_flight.append(shared_pool("sink-upload", 8).submit(self._put, block_id, block))

    def _put(self, block_id: str, block: bytes) -> None:
        try:
            self._blob.stage_block(block_id, block, length=len(block))
        except AzureError as exc:
            raise translate(exc, f"staging a block of {self._blob.blob_name}") from exc

    def finish(self) -> None:
        """Stage the last partial block and wait for every upload (errors surface here)."""
        if self._buffer:
            block, self._buffer = bytes(self._buffer), bytearray()
            self._stage(block)
        while self._in_flight:
            self._in_flight.popleft().result()

    def cancel(self) -> None:
        for future in self._in_flight:
            future.cancel()
        self._in_flight.clear()
        self._buffer = bytearray()


class Pipe:
    """Runs ``downstream.write`` on one helper thread, in order, with a short queue."""

    def __init__(self, downstream: Writable, finish: Callable[[], None]) -> None:
        self._downstream = downstream
        self._finish = finish
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-pipe")
        self._pending: deque[Future[Any]] = deque()

    def write(self, data: bytes, /) -> int:
        while len(self._pending) >= _MAX_PIPE:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._downstream.write, data))
        return len(data)

    def finish(self) -> None:
        try:
            self._pending.append(self._pool.submit(self._finish))
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)

    def cancel(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
