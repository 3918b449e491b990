"""The per-window manifest (pure): what a reader needs to trust a window's files.

Written after every part of a window is committed, so its presence means "this
window is complete"; it lists each file with rows, bytes and the SHA-256 of the
stored bytes, so a reader can verify what it downloaded.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from shared.model import OutputFile, Window, format_ts

__all__ = ["MANIFEST_VERSION", "RecentOutputs", "build_manifest", "encode_manifest", "extras_from", "output_extra"]

MANIFEST_VERSION = 1


def output_extra(*, fmt: str, compression: str, part: str, columns: Sequence[Any]) -> dict[str, Any]:
    """``OutputFile.extra`` of a data file; the manifest reads the schema from here."""
    return {
        "format": fmt,
        "compression": compression,
        "part": part,
        "columns": [{"name": c.name, "type": c.type} for c in columns],
    }


def build_manifest(
    *,
    pipeline: str,
    table: str,
    window: Window,
    location: str,
    fmt: str,
    compression: str,
    outputs: Sequence[OutputFile],
    info: dict[str, Any],
    written_at: datetime,
) -> dict[str, Any]:
    """The manifest document; ``schema`` is the union of the files' columns, first-seen order."""
    schema: dict[str, str] = {}
    files = []
    for out in outputs:
        columns = out.extra.get("columns", [])
        for col in columns:
            schema.setdefault(col["name"], col["type"])
        files.append(
            {
                "name": out.name,
                "rows": out.rows,
                "bytes": out.bytes,
                "sha256": out.sha256,
                "part": out.extra.get("part", ""),
                "columns": [c["name"] for c in columns],
                # the run whose rows these are (Table sink: every entity carries it)
                **({"run": out.extra["run"]} if "run" in out.extra else {}),
            }
        )
    return {
        "manifest_version": MANIFEST_VERSION,
        "pipeline": pipeline,
        "table": table,
        "window": {"start": format_ts(window.start), "end": format_ts(window.end), "key": window.key},
        "location": location,
        "format": fmt,
        "compression": compression,
        "rows": sum(o.rows for o in outputs),
        "bytes": sum(o.bytes for o in outputs),
        "files": files,
        "schema": [{"name": name, "type": kind} for name, kind in schema.items()],
        "written_at": format_ts(written_at),
        "info": info,
    }


def encode_manifest(doc: dict[str, Any]) -> bytes:
    """Indented JSON (it is read by people too); anything odd in ``info`` becomes a string."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str) + b"\n"


def extras_from(previous: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``OutputFile.extra`` per file name, recovered from an earlier manifest document."""
    if not previous:
        return {}
    types = {c.get("name"): c.get("type", "string") for c in previous.get("schema", []) if isinstance(c, dict)}
    out: dict[str, dict[str, Any]] = {}
    for f in previous.get("files", []):
        if isinstance(f, dict) and "name" in f:
            out[str(f["name"])] = {
                "format": previous.get("format", ""),
                "compression": previous.get("compression", ""),
                "part": f.get("part", ""),
                "columns": [{"name": n, "type": types.get(n, "string")} for n in f.get("columns", [])],
            }
            if "run" in f:
                out[str(f["name"])]["run"] = f["run"]
    return out


class RecentOutputs:
    """Bounded, thread-safe memory of what this process committed (name → extra).

    The runner may hand ``write_manifest`` outputs rebuilt from the ledger without
    their ``extra``; the schema comes back from here, or else from the previous manifest.
    """

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, outputs: Sequence[OutputFile]) -> None:
        with self._lock:
            for out in outputs:
                self._items[out.name] = out.extra
                self._items.move_to_end(out.name)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def complete(
        self, outputs: Sequence[OutputFile], previous: Callable[[], dict[str, Any] | None]
    ) -> list[OutputFile]:
        """``outputs`` with ``extra["columns"]`` filled in; ``previous`` is read only if needed."""
        with self._lock:
            known = {o.name: self._items[o.name] for o in outputs if o.name in self._items}
        if any("columns" not in o.extra and o.name not in known for o in outputs):
            known = {**extras_from(previous()), **known}
        return [
            dataclasses.replace(o, extra={**known[o.name], **o.extra})
            if "columns" not in o.extra and o.name in known
            else o
            for o in outputs
        ]
