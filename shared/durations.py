"""ISO 8601 durations and timestamps as they appear in settings and requests."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["format_duration", "parse_duration", "parse_timestamp"]

_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> timedelta:
    """``PT15M`` → 15 minutes. Raises ``ValueError`` on anything else (years/months are ambiguous)."""
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if not match or text.strip().upper() in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration like PT15M, PT1H or P1D: {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    try:
        return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    except OverflowError:
        raise ValueError(f"duration is too long: {text[:40]!r}") from None


def format_duration(delta: timedelta) -> str:
    """Inverse of ``parse_duration`` for whole seconds (``PT1H30M``)."""
    total = int(delta.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if v)
    out = "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
    return out if out != "P" else "PT0S"


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 timestamp → aware UTC datetime. A value without offset is refused, not guessed."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    # Python 3.11 parses up to 6 fractional digits; KQL prints 7.
    frac = re.match(r"^(.*T\d\d:\d\d:\d\d\.\d{6})\d+(.*)$", raw)
    if frac:
        raw = frac.group(1) + frac.group(2)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}") from None
    if value.tzinfo is None:
        raise ValueError(f"timestamp needs a UTC offset or Z: {text!r}")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC
        raise ValueError(f"timestamp is outside the supported range (years 1-9999 in UTC): {text!r}") from None
