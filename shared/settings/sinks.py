"""Sink sections of a pipeline: blob files (JSONL, CSV, Parquet) or Table Storage."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any

from shared.settings.fields import CONTAINER as _CONTAINER
from shared.settings.fields import TABLE_NAME as _TABLE_NAME
from shared.settings.fields import Fields
from shared.settings.model import DEFAULT_PATH, SinkConfig

__all__ = ["PLACEHOLDERS", "separate_outputs", "sink"]

PLACEHOLDERS = frozenset({"pipeline", "table", "yyyy", "MM", "dd", "HH", "mm", "window", "window_end", "part"})
_PLACEHOLDERS = PLACEHOLDERS


def sink(p: Fields, where: str, raw: Any) -> SinkConfig | None:
    if not isinstance(raw, dict):
        p.fail(where, 'must be an object like {"kind": "blob", "container": "telemetry"}')
        return None
    kind = raw.get("kind", "blob")
    if kind not in ("blob", "table"):
        p.fail(where, f"unknown kind {kind!r}; use blob or table")
        return None
    storage = p.storage(where, str(raw.get("connection_setting", "AzureWebJobsStorage")))
    container = raw.get("container" if kind == "blob" else "table")
    if kind == "blob" and (not isinstance(container, str) or not _CONTAINER.match(container)):
        p.fail(
            where,
            f"'container' must be a valid blob container name (3-63 lowercase letters, digits, '-'); got {container!r}",
        )
    if kind == "table" and (not isinstance(container, str) or not _TABLE_NAME.match(container)):
        p.fail(where, f"'table' must be a valid table name (3-63 letters/digits); got {container!r}")
    fmt = raw.get("format", "jsonl")
    if fmt not in ("jsonl", "csv", "parquet"):
        p.fail(where, f"'format' must be jsonl, csv or parquet; got {fmt!r}")
    compression = raw.get("compression", "snappy" if fmt == "parquet" else "gzip")
    allowed = ("snappy", "zstd", "gzip", "none") if fmt == "parquet" else ("gzip", "none")
    if compression not in allowed:
        p.fail(where, f"'compression' for {fmt} must be one of {', '.join(allowed)}; got {compression!r}")
    path = raw.get("path", DEFAULT_PATH)
    if not isinstance(path, str):
        p.fail(where, "'path' must be a string template")
        path = DEFAULT_PATH
    names = set(re.findall(r"{([^{}]*)}", path))
    for unknown in sorted(names - _PLACEHOLDERS):
        p.fail(where, f"'path' has unknown placeholder {{{unknown}}}; allowed: {', '.join(sorted(_PLACEHOLDERS))}")
    if kind == "blob" and not ({"window"} <= names or {"yyyy", "MM", "dd", "HH", "mm"} <= names):
        p.fail(where, "'path' must contain {window} (or {yyyy} {MM} {dd} {HH} {mm}) so each window has its own name")
    rg = p.whole(where, raw, "row_group_rows", 25_000, 1_000, 1_000_000)
    if not isinstance(container, str):
        return None
    return SinkConfig(
        kind=kind,
        storage=storage,
        container=container,
        path=path.strip("/"),
        format=fmt if fmt in ("jsonl", "csv", "parquet") else "jsonl",
        compression=str(compression),
        row_group_rows=rg,
    )


def separate_outputs(p: Fields, where: str, sinks: list[SinkConfig]) -> list[SinkConfig]:
    """Sinks of one pipeline must not write the same names: the same blob container, path and
    format (or the same table) is refused; blob sinks that share container and path but differ
    in format or compression get a manifest name with their extension (``manifest_tag``)."""
    places = Counter((s.kind, s.storage.setting, s.container, s.path if s.kind == "blob" else "") for s in sinks)
    seen: set[tuple[str, str, str, str, str]] = set()
    out: list[SinkConfig] = []
    for index, s in enumerate(sinks):
        ext = _extension(s) if s.kind == "blob" else ""
        key = (s.kind, s.storage.setting, s.container, s.path if s.kind == "blob" else "", ext)
        if key in seen:
            what = f"table {s.container!r}" if s.kind == "table" else f".{ext} files at {s.container}/{s.path}"
            p.fail(
                f"{where} sinks[{index}]",
                f"writes the same names as an earlier sink ({what}); change 'path' or 'container'",
            )
        seen.add(key)
        shared = s.kind == "blob" and places[key[:4]] > 1
        out.append(dataclasses.replace(s, manifest_tag=ext) if shared else s)
    return out


def _extension(s: SinkConfig) -> str:
    """The data files' extension without the dot (as ``shared.sinks.paths.extension``)."""
    if s.format == "parquet":
        return "parquet"
    return s.format + (".gz" if s.compression == "gzip" else "")
