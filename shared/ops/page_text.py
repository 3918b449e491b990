"""Text of the status page's cells: escaped values, counts, sizes, spans and short times."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

__all__ = ["e", "href", "num", "short", "size", "span"]


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def num(value: Any) -> str:
    return f"{int(value or 0):,}"


def size(value: Any) -> str:
    size = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return ""  # unreachable


def span(seconds: Any) -> str:
    """Seconds as ``2d 3h``, ``4h 05m``, ``3m 20s`` or ``12s``; blank when unknown."""
    if seconds is None:
        return ""
    total = int(float(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def short(ts: Any) -> str:
    """``2026-11-02T10:00:00Z`` → ``11-02 10:00`` (the page is in UTC throughout)."""
    text = str(ts or "")
    return f"{text[5:10]} {text[11:16]}" if len(text) >= 16 else text


def href(**params: str) -> str:
    return "?" + urlencode({"format": "html", **{k: v for k, v in params.items() if v}})
