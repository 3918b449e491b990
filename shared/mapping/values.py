"""Canonical cell values: one converter per KQL type, shared by every source.

Converters never raise: a value that cannot be read as the column's type becomes ``None``
(null), so one odd field never fails a window. Only the event time is strict (see
``normalize_timestamp``): without it a record cannot be placed in a window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from shared.durations import parse_timestamp
from shared.model import format_ts

__all__ = [
    "CONVERTERS",
    "SEVERITY_LEVELS",
    "brief",
    "coerce",
    "normalize_timestamp",
    "performance_bucket",
    "to_bool",
    "to_datetime",
    "to_decimal",
    "to_dynamic",
    "to_int",
    "to_real",
    "to_severity",
    "to_str",
]

_fromisoformat = datetime.fromisoformat


def normalize_timestamp(value: Any) -> str | None:
    """ISO 8601 with offset/Z → the project's canonical ``YYYY-MM-DDTHH:MM:SS[.ffffff[f]]Z``.

    ``…Z`` strings (what App Insights writes) keep their 100 ns digit when it is not zero
    (seven fractional digits), else the result is ``format_ts(parse_timestamp(value))`` (six
    digits, none when zero); other offsets are converted at microseconds. The fast path runs
    once per line of large hour folders. Returns ``None`` for anything not an aware timestamp.
    """
    if value.__class__ is str:
        n = len(value)
        if n >= 20 and value[-1] == "Z" and value[10] == "T":
            head = value[:19]
            try:
                _fromisoformat(head)
            except ValueError:
                pass  # let the general parser decide (and word the refusal)
            else:
                if n == 20:
                    return value
                frac = value[20:-1]
                if value[19] == "." and frac.isdigit() and frac.isascii():
                    ticks = frac[:7].ljust(7, "0")  # 100 ns is the finest the service keeps
                    if ticks[6] != "0":
                        return f"{head}.{ticks}Z"
                    return f"{head}.{ticks[:6]}Z" if ticks != "0000000" else head + "Z"
        try:
            return format_ts(parse_timestamp(value))
        except ValueError:
            return None
    if isinstance(value, datetime):
        return format_ts(value) if value.tzinfo is not None else None
    return None


def brief(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters, for error messages about untrusted input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_datetime(value: Any) -> str | None:
    return None if value is None else normalize_timestamp(value)


def to_str(value: Any) -> str | None:
    """KQL ``tostring``: bools ``true``/``false``, whole floats without ``.0``, JSON for objects."""
    if value is None or value.__class__ is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, dict | list):
        try:
            return orjson.dumps(value).decode()
        except TypeError:
            return str(value)
    if isinstance(value, datetime):
        return normalize_timestamp(value)
    return str(value)


def to_int(value: Any) -> int | None:
    """KQL ``toint``/``tolong``: truncates reals, parses numeric strings, else null."""
    if value is None or value.__class__ is int:
        return value
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if math.isfinite(number) else None
    return None


def to_real(value: Any) -> float | None:
    if value is None or value.__class__ is float:
        return value
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


_TRUE = frozenset({"true", "True", "TRUE", "1"})
_FALSE = frozenset({"false", "False", "FALSE", "0"})


_DECIMAL_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def to_decimal(value: Any) -> str | None:
    """KQL ``decimal`` as its exact text (the service sends it as a JSON string: a .NET decimal
    has up to 29 significant digits, which no float holds); numbers as their shortest text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        return text if _DECIMAL_TEXT.fullmatch(text) else None
    return None


def to_bool(value: Any) -> bool | None:
    if value is None or value.__class__ is bool:
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def to_dynamic(value: Any) -> Any:
    """Parsed JSON. A JSON-encoded object/array string (query API cells) is decoded."""
    if value.__class__ is str and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


CONVERTERS: MappingProxyType[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "string": to_str,
        "guid": to_str,
        "timespan": to_str,
        "datetime": to_datetime,
        "long": to_int,
        "int": to_int,
        "real": to_real,
        "decimal": to_decimal,
        "bool": to_bool,
        "dynamic": to_dynamic,
    }
)


def coerce(value: Any, kql_type: str) -> Any:
    """``value`` as the canonical Python value of ``kql_type`` (null if unreadable).

    Raises ``KeyError`` for a type name outside ``shared.model.KQL_TYPES``.
    """
    return CONVERTERS[kql_type](value)


# App Insights' performanceBucket boundaries (upper bounds in ms, exclusive).
_BUCKETS: tuple[tuple[float, str], ...] = (
    (250.0, "<250ms"),
    (500.0, "250ms-500ms"),
    (1_000.0, "500ms-1sec"),
    (3_000.0, "1sec-3sec"),
    (7_000.0, "3sec-7sec"),
    (15_000.0, "7sec-15sec"),
    (30_000.0, "15sec-30sec"),
    (60_000.0, "30sec-1min"),
    (120_000.0, "1min-2min"),
    (300_000.0, "2min-5min"),
)


def performance_bucket(duration_ms: float | None) -> str | None:
    """The bucket label App Insights stores beside a duration (``<250ms`` … ``>=5min``)."""
    if duration_ms is None:
        return None
    for bound, label in _BUCKETS:
        if duration_ms < bound:
            return label
    return ">=5min" if duration_ms == duration_ms else None  # NaN has no bucket


# SDK severity names (Export Data Model writes names, the workspace writes numbers).
SEVERITY_LEVELS: MappingProxyType[str, int] = MappingProxyType(
    {"Verbose": 0, "Information": 1, "Warning": 2, "Error": 3, "Critical": 4}
)


def to_severity(value: Any) -> int | None:
    if value is None or value.__class__ is int:
        return value
    if isinstance(value, str):
        level = SEVERITY_LEVELS.get(value)
        if level is not None:
            return level
    return to_int(value)
