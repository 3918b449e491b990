"""What an export window consumed: blob names, ETags and lengths.

A re-sweep compares the hour folder with this record to find late input (new blobs,
grown append blobs), so each byte is moved exactly once. The record rides on the
ledger entity's ``Extra`` property, a Table string of at most 32K characters: small
records are kept inline, bigger ones go to a content-addressed JSON blob in the state
account (``mover-state/<pipeline>/<window>/consumed-<digest>.json``) and ``Extra``
keeps the reference, the counts and the digest. Content addressing makes the write
idempotent (a rerun with the same result rewrites the same name) and means a blob the
ledger points to is never changed underneath it by a later, failed attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.errors import FatalError
from shared.model import Window
from shared.runtime.blob_errors import translate

__all__ = [
    "FORMAT_VERSION",
    "INLINE_LIMIT",
    "STATE_CONTAINER",
    "Consumed",
    "ConsumedStore",
    "decode_entries",
    "digest",
    "encode_entries",
]

FORMAT_VERSION = 1
STATE_CONTAINER = "mover-state"
INLINE_LIMIT = 16_000  # characters of the encoded list kept inline in the ledger's Extra (Table strings ≤ 32K)


@dataclass(frozen=True, slots=True)
class Consumed:
    """One source blob as far as it was moved.

    ``name`` is relative to the hour folder; ``length`` is the byte prefix moved (the
    whole blob for block blobs); ``lines`` the physical lines in that prefix, so line
    numbers of a later append continue where the earlier read stopped.
    """

    name: str
    etag: str
    length: int
    lines: int
    append: bool

    def encode(self) -> list[Any]:
        return [self.name, self.etag, self.length, self.lines, int(self.append)]


def encode_entries(entries: Iterable[Consumed]) -> list[list[Any]]:
    """Sorted by name: the same set always encodes (and digests) the same way."""
    return [e.encode() for e in sorted(entries, key=lambda e: e.name)]


def decode_entries(raw: Any) -> dict[str, Consumed]:
    """Inverse of ``encode_entries``; raises ``FatalError`` on a record this code did not write."""
    if not isinstance(raw, list):
        raise FatalError("consumed-blob record is not a list")
    out: dict[str, Consumed] = {}
    for item in raw:
        if not (isinstance(item, list) and len(item) == 5 and isinstance(item[0], str)):
            raise FatalError(f"consumed-blob record has a malformed entry: {item!r}")
        out[item[0]] = Consumed(item[0], str(item[1]), int(item[2]), int(item[3]), bool(item[4]))
    return out


def digest(encoded: list[list[Any]]) -> str:
    return hashlib.sha256(orjson.dumps(encoded)).hexdigest()


class ConsumedStore:
    """Spill-over of big consumed records into the state account."""

    def __init__(self, service: BlobServiceClient, container: str = STATE_CONTAINER) -> None:
        self._container: ContainerClient = service.get_container_client(container)
        self._name = container
        self._ensured = False

    def save(self, pipeline: str, window: Window, encoded: list[list[Any]], sha: str) -> str:
        """Write (idempotently) and return the reference ``<container>/<blob>``."""
        name = f"{pipeline}/{window.key}/consumed-{sha[:16]}.json"
        body = orjson.dumps({"v": FORMAT_VERSION, "digest": sha, "consumed": encoded})
        try:
            if not self._ensured:
                with contextlib.suppress(ResourceExistsError):
                    self._container.create_container()
                self._ensured = True
            self._container.upload_blob(name, body, overwrite=True)
        except AzureError as exc:
            raise translate(exc, f"state blob {self._name}/{name}") from exc
        return f"{self._name}/{name}"

    def load(self, ref: str, sha: str) -> list[list[Any]]:
        """Read a record back and check it is the one the ledger's digest names."""
        container, _, name = ref.partition("/")
        if container != self._name or not name:
            raise FatalError(f"consumed-blob reference {ref!r} is not in container {self._name!r}")
        try:
            raw = self._container.download_blob(name).readall()
        except ResourceNotFoundError as exc:
            raise FatalError(f"consumed-blob record {ref} is missing from the state account") from exc
        except AzureError as exc:
            raise translate(exc, f"state blob {ref}") from exc
        doc = orjson.loads(raw)
        encoded = doc.get("consumed") if isinstance(doc, Mapping) else None
        if not isinstance(encoded, list) or digest(encoded) != sha:
            raise FatalError(f"consumed-blob record {ref} does not match the digest in the ledger")
        return encoded
