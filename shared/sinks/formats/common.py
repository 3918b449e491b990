"""What every encoder shares: the output and encoder protocols, JSON and gzip helpers."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson
from zlib_ng import zlib_ng

from shared.model import Batch, Column, format_ts

__all__ = [
    "GZIP_LEVEL",
    "Encoder",
    "GzipStream",
    "Writable",
    "dumps_json",
    "json_cell",
    "json_default",
    "union_columns",
    "utf8",
]

# Deflate by zlib-ng (same gzip format, any reader): at level 5 it writes ~3% smaller files
# than zlib's default level 6 with about half its CPU (docs/performance.md). Outputs are kept
# for a long time, so size wins over the last bit of speed (level 1 is 2.8x faster, 85% bigger).
GZIP_LEVEL = 5


class Writable(Protocol):
    """Where encoded bytes go."""

    def write(self, data: bytes, /) -> Any: ...


class Encoder(Protocol):
    """Turns batches into the bytes of one file; ``close`` writes trailers (gzip, Parquet footer)."""

    rows: int

    @property
    def columns(self) -> tuple[Column, ...]:
        """Every column seen so far, first-seen order (the file's schema for the manifest)."""
        ...

    def fits(self, batch: Batch) -> bool:
        """Whether ``batch`` can go into this file without breaking its column layout."""
        ...

    def write(self, batch: Batch) -> None: ...

    def close(self) -> None: ...


def json_default(value: Any) -> Any:
    """orjson fallback for values outside canonical JSON (mapping should not produce them)."""
    if isinstance(value, datetime):
        return format_ts(value) if value.tzinfo else value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps_json(value: Any) -> bytes:
    """Compact JSON like ``orjson.dumps``, falling back to the stdlib for what orjson refuses
    (integers beyond 64 bits, non-string keys, lone surrogates; ASCII-escaped there), so no
    value can fail a window."""
    try:
        return orjson.dumps(value, default=json_default)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), default=json_default).encode("ascii")


def utf8(text: str) -> bytes:
    """UTF-8; a lone surrogate (invalid Unicode, possible from JSON ``\\ud800``) becomes U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


class GzipStream:
    """Streaming gzip (RFC 1952, zlib-ng) onto ``out``; mtime 0, so equal input gives equal bytes."""

    def __init__(self, out: Writable, level: int = GZIP_LEVEL) -> None:
        self._out = out
        self._zip = zlib_ng.compressobj(level, zlib_ng.DEFLATED, 31)

    def write(self, data: bytes, /) -> int:
        chunk = self._zip.compress(data)
        if chunk:
            self._out.write(chunk)
        return len(data)

    def finish(self) -> None:
        self._out.write(self._zip.flush())


def union_columns(known: dict[str, Column], batch: Batch) -> None:
    for col in batch.columns:
        if col.name not in known:
            known[col.name] = col


def json_cell(value: Any) -> Any:
    """Generic text cell for values whose column type does not say what they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return dumps_json(value).decode("utf-8")
    return value
