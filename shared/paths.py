"""Deterministic blob names of a window's outputs (pure).

The same (pipeline, table, window, part) always renders the same name, which is
what makes a rerun replace its earlier output instead of adding a duplicate.
"""

from __future__ import annotations

import posixpath
import re
from datetime import UTC

from shared.errors import ConfigError
from shared.model import Window, window_key

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_TEMPLATE",
    "EXTENSIONS",
    "PLACEHOLDERS",
    "data_name",
    "extension",
    "manifest_name",
    "render_stem",
    "segment_name",
    "segment_pattern",
]

DEFAULT_PATH = "{pipeline}/y={yyyy}/m={MM}/d={dd}/h={HH}/{window}"  # Hive-style folders per hour
DEFAULT_TEMPLATE = DEFAULT_PATH
PLACEHOLDERS = frozenset({"pipeline", "table", "yyyy", "MM", "dd", "HH", "mm", "window", "window_end", "part"})
EXTENSIONS = {
    ("jsonl", "gzip"): ".jsonl.gz",
    ("jsonl", "none"): ".jsonl",
    ("csv", "gzip"): ".csv.gz",
    ("csv", "none"): ".csv",
}
MANIFEST_SUFFIX = ".manifest.json"
_FIELD = re.compile(r"\{([^{}]*)\}")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,63}$")
# An empty {part} takes one adjacent separator with it: "{window}-{part}" -> "{window}".
_EMPTY_PART = re.compile(r"[-_.]\{part\}|\{part\}[-_.]?")
_MAX_NAME = 1024


def extension(fmt: str, compression: str) -> str:
    """File extension for a format; Parquet compresses inside the file, so always ``.parquet``."""
    if fmt == "parquet":
        return ".parquet"
    try:
        return EXTENSIONS[(fmt, compression)]
    except KeyError:
        raise ConfigError(f"no file extension for format {fmt!r} with compression {compression!r}") from None


def render_stem(template: str, *, pipeline: str, table: str, window: Window, part: str = "") -> str:
    """The blob name without extension.

    Time placeholders are the window start in UTC; ``{window}``/``{window_end}`` are the
    compact keys (``20261102T100000Z``). A non-empty ``part`` goes where ``{part}`` is, or
    is appended as ``-{part}`` when the template has none; an empty one vanishes with
    one neighbouring ``-``/``_``/``.``. Raises ``ConfigError`` for unknown placeholders
    and ``ValueError`` for a part that is not a short ``[A-Za-z0-9_.=-]`` token.
    """
    if part and not _PART.match(part):
        raise ValueError(f"part {part!r} must be 1-64 of [A-Za-z0-9_.=-], starting alphanumeric")
    unknown = sorted(set(_FIELD.findall(template)) - PLACEHOLDERS)
    if unknown:
        raise ConfigError(f"path template {template!r}: unknown placeholder(s) {', '.join(unknown)}")
    has_part = "{part}" in template
    if not part and has_part:
        template = _EMPTY_PART.sub("", template)
    start = window.start.astimezone(UTC)
    values = {
        "pipeline": pipeline,
        "table": table,
        "yyyy": f"{start.year:04d}",
        "MM": f"{start.month:02d}",
        "dd": f"{start.day:02d}",
        "HH": f"{start.hour:02d}",
        "mm": f"{start.minute:02d}",
        "window": window.key,
        "window_end": window_key(window.end),
        "part": part,
    }
    stem = _FIELD.sub(lambda m: values[m.group(1)], template)
    if part and not has_part:
        stem = f"{stem}-{part}"
    stem = re.sub(r"/{2,}", "/", stem).strip("/")
    if not stem or any(seg in (".", "..") for seg in stem.split("/")):
        raise ConfigError(f"path template {template!r} renders to an unusable name {stem!r}")
    return stem


def data_name(
    template: str, *, pipeline: str, table: str, window: Window, part: str = "", fmt: str, compression: str
) -> str:
    """Full blob name of a window's (part's) data file."""
    name = render_stem(template, pipeline=pipeline, table=table, window=window, part=part) + extension(fmt, compression)
    if len(name) > _MAX_NAME:
        raise ConfigError(f"blob name longer than {_MAX_NAME} characters: {name[:80]}…")
    return name


def segment_name(name: str, ext: str, index: int) -> str:
    """Continuation file ``index`` (≥ 1) of a data file: ``…/20261102T100000Z-s001.csv.gz``.

    CSV and Parquet files have one column layout; a batch with new columns starts one.
    """
    if index == 0:
        return name
    if not name.endswith(ext):
        raise ValueError(f"{name!r} does not end with {ext!r}")
    return f"{name[: len(name) - len(ext)]}-s{index:03d}{ext}"


def segment_pattern(name: str, ext: str) -> tuple[str, re.Pattern[str]]:
    """Listing prefix and exact pattern of ``name``'s continuation files (group 1 = index)."""
    stem = name[: len(name) - len(ext)]
    return f"{stem}-s", re.compile(rf"^{re.escape(stem)}-s(\d{{3,}}){re.escape(ext)}$")


def manifest_name(template: str, *, pipeline: str, table: str, window: Window, tag: str = "") -> str:
    """Name of the window's manifest, beside its main data file, one per window.

    ``…/h=10/20261102T100000Z`` → ``…/h=10/_20261102T100000Z.manifest.json``: the leading
    underscore makes Spark, Hive, Synapse and friends skip it when they read a folder
    of data files (as they skip ``_SUCCESS``). With a ``tag`` (the data extension, set when
    two sinks of a pipeline share container and path) it is ``_<window>.<tag>.manifest.json``.
    """
    stem = render_stem(template, pipeline=pipeline, table=table, window=window)
    folder, base = posixpath.split(stem)
    return posixpath.join(folder, f"_{base}{'.' + tag if tag else ''}{MANIFEST_SUFFIX}")
