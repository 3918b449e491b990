"""Time as the service sees it: 100 ns ticks, KQL datetime text and ISO 8601 spans.

Kusto datetimes have 100 ns resolution; Python's ``datetime`` stops at microseconds.
The emulator therefore keeps every timestamp as an ``int`` of ticks since the Unix
epoch (UTC), so 7-digit fractions survive a round trip and window edges compare
exactly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

__all__ = [
    "TICKS_PER_DAY",
    "TICKS_PER_HOUR",
    "TICKS_PER_MINUTE",
    "TICKS_PER_MS",
    "TICKS_PER_SECOND",
    "format_ticks",
    "from_ticks",
    "parse_datetime",
    "parse_iso_duration",
    "parse_timespan_param",
    "to_ticks",
]

TICKS_PER_MS = 10_000
TICKS_PER_SECOND = 10_000_000
TICKS_PER_MINUTE = 60 * TICKS_PER_SECOND
TICKS_PER_HOUR = 60 * TICKS_PER_MINUTE
TICKS_PER_DAY = 24 * TICKS_PER_HOUR

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()


def to_ticks(value: datetime) -> int:
    """Ticks since the Unix epoch; raises ``ValueError`` for naive datetimes (no guessing)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND + delta.microseconds * 10


def from_ticks(ticks: int) -> datetime:
    """Aware UTC datetime (sub-microsecond ticks are truncated)."""
    return _EPOCH + timedelta(microseconds=ticks // 10)


@lru_cache(maxsize=4096)
def _minute_prefix(minute: int) -> str:
    return (_EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:")


def format_ticks(ticks: int) -> str:
    """Render like the query API: ``2026-11-02T10:05:45.733Z`` (≤ 7 digits, zeros trimmed)."""
    minute, rest = divmod(ticks, TICKS_PER_MINUTE)
    sec, frac = divmod(rest, TICKS_PER_SECOND)
    if frac:
        return f"{_minute_prefix(minute)}{sec:02d}.{f'{frac:07d}'.rstrip('0')}Z"
    return f"{_minute_prefix(minute)}{sec:02d}Z"


_DT_RE = re.compile(
    r"""^\s*(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})
    (?:[T ](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,7}))?)?)?
    \s*(?P<tz>Z|z|[+-]\d{2}:?\d{2})?\s*$""",
    re.VERBOSE,
)


def parse_datetime(text: str) -> int:
    """Parse ISO 8601-ish text (date, optional time, ≤ 7 fraction digits, optional Z/offset).

    Text without a zone is UTC, as in Kusto. Raises ``ValueError`` for anything else.
    """
    m = _DT_RE.match(text)
    if m is None:
        raise ValueError(f"not a datetime: {text!r}")
    y, mo, d = int(m["y"]), int(m["mo"]), int(m["d"])
    h = int(m["h"] or 0)
    mi = int(m["mi"] or 0)
    s = int(m["s"] or 0)
    days = datetime(y, mo, d, h, mi, s, tzinfo=UTC).toordinal() - _EPOCH_ORDINAL  # validates ranges
    frac = int((m["f"] or "").ljust(7, "0"))
    ticks = ((days * 24 + h) * 60 + mi) * TICKS_PER_MINUTE + s * TICKS_PER_SECOND + frac
    tz = m["tz"]
    if tz and tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = int(digits[:2]) * TICKS_PER_HOUR + int(digits[2:]) * TICKS_PER_MINUTE
        ticks -= sign * offset
    return ticks


_DUR_RE = re.compile(
    r"""^(?P<sign>-)?P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?
    (?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$""",
    re.VERBOSE | re.IGNORECASE,
)


def parse_iso_duration(text: str) -> int:
    """ISO 8601 duration in ticks (``PT1H``, ``P1D``, ``PT3600.0S`` as azure-monitor-query sends).

    Years and months are rejected: their length depends on the calendar.
    """
    m = _DUR_RE.match(text.strip())
    if m is None or text.strip().upper().rstrip("T") in ("P", "-P"):
        raise ValueError(f"not an ISO 8601 duration (years/months unsupported): {text!r}")
    parts = {"w": 7 * TICKS_PER_DAY, "d": TICKS_PER_DAY, "h": TICKS_PER_HOUR}
    parts |= {"m": TICKS_PER_MINUTE, "s": TICKS_PER_SECOND}
    total = 0
    for key, unit in parts.items():
        if m[key]:
            whole, _, frac = m[key].partition(".")
            total += int(whole) * unit + (int(frac.ljust(7, "0")[:7]) * unit // 10**7 if frac else 0)
    return -total if m["sign"] else total


def parse_timespan_param(text: str, now_ticks: int) -> tuple[int, int]:
    """The request's ``timespan``: ``start/end``, ``start/duration``, ``duration/end`` or
    a bare ``duration`` ending now. Returns half-open ``[start, end)`` ticks.
    """
    text = text.strip()
    if "/" in text:
        left, right = (p.strip() for p in text.split("/", 1))
        if left[:1] in ("P", "p", "-"):
            end = parse_datetime(right)
            return end - parse_iso_duration(left), end
        start = parse_datetime(left)
        if right[:1] in ("P", "p", "-"):
            return start, start + parse_iso_duration(right)
        return start, parse_datetime(right)
    return now_ticks - parse_iso_duration(text), now_ticks
