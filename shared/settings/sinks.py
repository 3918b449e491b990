"""Sink sections of a pipeline: blob files (JSONL, CSV, Parquet) or Table Storage."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from shared.errors import ConfigError
from shared.model import Window
from shared.settings.fields import CONTAINER as _CONTAINER
from shared.settings.fields import TABLE_NAME as _TABLE_NAME
from shared.settings.fields import Fields
from shared.settings.model import DEFAULT_PATH, SinkConfig

__all__ = ["PLACEHOLDERS", "delta_sink", "path_problems", "separate_outputs", "sink"]

PLACEHOLDERS = frozenset({"pipeline", "table", "yyyy", "MM", "dd", "HH", "mm", "window", "window_end", "part"})
_PLACEHOLDERS = PLACEHOLDERS
_BLOB_FIELDS = {
    "kind", "connection_setting", "container", "format", "compression", "path", "row_group_rows", "row_group_mb",
    "gzip_level",
}  # fmt: skip
_TABLE_FIELDS = {"kind", "connection_setting", "table"}
_MAX_BLOB_NAME = 1024
# Blob names may hold most Unicode, but control characters, '\\' (turned into '/' by some tools)
# and the URL delimiters '?' and '#' make names that readers cannot list or open reliably.
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\?#]")
_SAMPLE = Window(datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))


def path_problems(path: str, *, blob: bool) -> list[str]:
    """Why ``path`` cannot name every window's blobs (empty when it can).

    The template is rendered for a sample window with the real renderer, so what passes
    here renders at run time too.
    """
    from shared.paths import manifest_name, render_stem

    depth, problems = 0, []
    for i, ch in enumerate(path):
        depth += 1 if ch == "{" else -1 if ch == "}" else 0
        if depth < 0 or depth > 1:
            what = "a '}' without its '{'" if depth < 0 else "a '{' inside another '{...}'"
            return [f"has {what} at character {i + 1}: {path[:80]!r}"]
    if depth:
        return [f"has a '{{' that is never closed at character {path.rfind('{') + 1}: {path[:80]!r}"]
    names = set(re.findall(r"{([^{}]*)}", path))
    for unknown in sorted(names - _PLACEHOLDERS):
        problems.append(f"has unknown placeholder {{{unknown}}}; allowed: {', '.join(sorted(_PLACEHOLDERS))}")
    if blob and not ({"window"} <= names or {"yyyy", "MM", "dd", "HH", "mm"} <= names):
        problems.append("must contain {window} (or {yyyy} {MM} {dd} {HH} {mm}) so each window has its own name")
    bad = sorted(set(_BAD_CHARS.findall(path)))
    if bad:
        problems.append(f"has characters blob names cannot hold safely: {' '.join(repr(c) for c in bad)}")
    segments = path.strip("/").split("/")
    if any(seg in (".", "..") for seg in segments):
        problems.append("must not contain '.' or '..' segments (blob names are not resolved like file paths)")
    if "" in segments:
        problems.append("has an empty segment ('//'); each '/' must separate two names")
    if problems or not blob:
        return problems
    try:
        sample = "p" * 63  # the longest pipeline name
        # The longest names a window gets: a late part's checkpoint chunk with a schema continuation.
        stem = render_stem(path.strip("/"), pipeline=sample, table=sample, window=_SAMPLE, part="late-0001-c0001")
        manifest = manifest_name(path.strip("/"), pipeline=sample, table=sample, window=_SAMPLE)
        longest = max(len(stem + "-s0001.jsonl.gz"), len(manifest))
        if longest > _MAX_BLOB_NAME:
            problems.append(
                f"renders blob names of up to {longest} characters (with a {len(sample)}-character pipeline"
                f" name); blob names may have at most {_MAX_BLOB_NAME}"
            )
    except ConfigError as exc:
        problems.append(f"does not render to a usable blob name: {'; '.join(exc.problems)}")
    except ValueError as exc:
        problems.append(f"does not render to a usable blob name: {exc}")
    return problems


def sink(p: Fields, where: str, raw: Any) -> SinkConfig | None:
    if not isinstance(raw, dict):
        p.fail(where, 'must be an object like {"kind": "blob", "container": "telemetry"}')
        return None
    kind = raw.get("kind", "blob")
    if kind == "delta":
        return delta_sink(p, where, raw)
    if kind not in ("blob", "table"):
        p.fail(where, f"unknown kind {kind!r}; use blob, table or delta")
        return None
    p.reject_unknown(where, raw, _BLOB_FIELDS if kind == "blob" else _TABLE_FIELDS)
    storage = p.storage(where, str(raw.get("connection_setting", "AzureWebJobsStorage")), (kind,))
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
    for problem in path_problems(path, blob=kind == "blob"):
        p.fail(where, f"'path' {problem}")
    rg = p.whole(where, raw, "row_group_rows", 25_000, 1_000, 1_000_000)
    rg_mb = p.whole(where, raw, "row_group_mb", 4, 1, 1024)
    level = p.whole(where, raw, "gzip_level", 5, 1, 9)
    if "gzip_level" in raw and (fmt == "parquet" or compression != "gzip"):
        p.fail(where, "'gzip_level' applies to jsonl and csv with gzip compression only; remove it")
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
        row_group_mb=rg_mb,
        gzip_level=level,
    )


def delta_sink(p: Fields, where: str, raw: dict[str, Any]) -> SinkConfig | None:
    """``{"kind": "delta", "container": …, "path": "{pipeline}", "partition_by": "date_hour",
    "optimize": true, "vacuum_retention": "P7D"}``: one Delta table per pipeline."""
    known = {
        "kind", "container", "path", "partition_by", "connection_setting", "compression", "row_group_rows",
        "row_group_mb", "optimize", "vacuum_retention",
    }  # fmt: skip
    p.reject_unknown(where, raw, known)
    storage = p.storage(where, str(raw.get("connection_setting", "AzureWebJobsStorage")))
    container = raw.get("container")
    if not isinstance(container, str) or not _CONTAINER.match(container):
        p.fail(
            where,
            f"'container' must be a valid blob container name (3-63 lowercase letters, digits, '-'); got {container!r}",
        )
    path = raw.get("path", "{pipeline}")
    if not isinstance(path, str) or not path.strip("/"):
        p.fail(where, '\'path\' must be the table\'s folder, e.g. "{pipeline}" or "lake/{pipeline}"')
        path = "{pipeline}"
    for unknown in sorted(set(re.findall(r"{([^{}]*)}", path)) - {"pipeline", "table"}):
        p.fail(where, f"'path' has unknown placeholder {{{unknown}}}; a table path allows {{pipeline}} and {{table}}")
    partition_by = raw.get("partition_by", "")
    if partition_by not in ("", "date", "date_hour"):
        p.fail(where, f"'partition_by' must be date or date_hour; got {partition_by!r}")
        partition_by = ""
    optimize = raw.get("optimize", True)
    if not isinstance(optimize, bool):
        p.fail(where, "'optimize' must be true or false")
        optimize = True
    retention = None
    if raw.get("vacuum_retention", "P7D") is not None:
        retention = p.duration_field(where, raw, "vacuum_retention", "P7D")
    compression = raw.get("compression", "snappy")
    if compression not in ("snappy", "zstd"):
        p.fail(where, f"'compression' for delta must be snappy or zstd; got {compression!r}")
        compression = "snappy"
    rg = p.whole(where, raw, "row_group_rows", 100_000, 1_000, 1_000_000)
    rg_mb = p.whole(where, raw, "row_group_mb", 4, 1, 1024)
    if not isinstance(container, str):
        return None
    return SinkConfig(
        kind="delta",
        storage=storage,
        container=container,
        path=path.strip("/"),
        format="parquet",
        compression=str(compression),
        row_group_rows=rg,
        row_group_mb=rg_mb,
        partition_by=partition_by,
        optimize=optimize,
        vacuum_retention=retention,
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
    """The data files' extension without the dot (as ``shared.paths.extension``)."""
    if s.format == "parquet":
        return "parquet"
    return s.format + (".gz" if s.compression == "gzip" else "")
