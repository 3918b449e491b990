"""Request parameters → typed values, or a ``BadRequest`` with the reason (pure).

Every HTTP operation validates all of its input here before it touches the ledger:
a request either parses completely or is answered 4xx and changes nothing. The
helpers take the raw value (a JSON field or a query-string parameter) and never
echo more than a short, ``repr``-quoted prefix of it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import orjson

from shared.durations import format_duration, parse_timestamp
from shared.model import format_ts
from shared.settings import Pipeline, QuerySourceConfig
from shared.windows import align_down, align_up, due_end

__all__ = [
    "HOST_PARAMS",
    "BadRequest",
    "choice",
    "json_fields",
    "optional_timestamp",
    "quoted",
    "text",
    "time_range",
    "timestamp",
    "whole_number",
]

# Added by the Functions host or the caller's tooling, never part of an operation's input.
HOST_PARAMS = frozenset({"code"})
_MAX_TEXT = 64


class BadRequest(Exception):
    """The request cannot be served as sent: ``status`` (4xx) and a reason for the caller."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def quoted(value: Any, limit: int = 40) -> str:
    """A short ``repr`` of untrusted input for an error text (never the whole of it)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_fields(body: bytes, params: Mapping[str, str], allowed: Collection[str], *, max_body: int) -> dict[str, Any]:
    """The operation's fields: a JSON object body, or the query string when the body is empty.

    Unknown fields are refused (a typo must not be ignored); ``code`` (the function key) is
    the host's and is dropped from the query string.
    """
    if len(body) > max_body:
        raise BadRequest(f"request body over {max_body} bytes", 413)
    body = body.removeprefix(b"\xef\xbb\xbf")
    fields: Any
    if body.strip():
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest(
                "body is not valid JSON (UTF-8); send an object like "
                '{"pipeline": "requests", "start": "2026-11-02T10:00:00Z", "end": "2026-11-02T12:00:00Z"}'
            ) from None
        if not isinstance(fields, dict):
            raise BadRequest(f"body must be a JSON object, got {type(fields).__name__}")
    else:
        fields = {k: v for k, v in params.items() if k not in HOST_PARAMS}
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        names = ", ".join(quoted(k) for k in unknown[:5])
        raise BadRequest(f"unknown field(s) {names}; allowed: {', '.join(sorted(allowed))}")
    return dict(fields)


def text(fields: Mapping[str, Any], key: str, *, limit: int = _MAX_TEXT) -> str:
    """A required, non-empty string field of at most ``limit`` characters."""
    value = fields.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"'{key}' is required and must be a string")
    if len(value) > limit:
        raise BadRequest(f"'{key}' is too long (at most {limit} characters)")
    return value


def timestamp(fields: Mapping[str, Any], key: str) -> datetime:
    """A required ISO 8601 timestamp with an offset (``Z``), as aware UTC."""
    raw = text(fields, key)
    try:
        return parse_timestamp(raw)
    except ValueError as exc:
        raise BadRequest(f"'{key}': {exc} (use ISO 8601 UTC, e.g. 2026-11-02T10:00:00Z)") from None


def optional_timestamp(fields: Mapping[str, Any], key: str) -> datetime | None:
    """Like ``timestamp``, ``None`` when the field is absent (e.g. status ``from``/``to``)."""
    return None if fields.get(key) is None else timestamp(fields, key)


def whole_number(params: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    """A whole number in ``[low, high]``: ASCII digits only (``int`` would take ``²`` or ``١``)."""
    raw = params.get(key)
    if raw is None:
        return default
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 9:
        value = int(raw)
    else:
        raise BadRequest(f"'{key}' must be a whole number from {low} to {high}; got {quoted(raw)}")
    if not low <= value <= high:
        raise BadRequest(f"'{key}' must be a whole number from {low} to {high}; got {value}")
    return value


def choice(params: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    """One of ``allowed`` (exact, case-sensitive), ``default`` when absent."""
    raw = params.get(key, default)
    if not isinstance(raw, str) or raw not in allowed:
        raise BadRequest(f"'{key}' must be {', '.join(allowed[:-1])} or {allowed[-1]}; got {quoted(raw)}")
    return raw


def time_range(pipeline: Pipeline, start: datetime, end: datetime, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` widened to whole windows, refused unless every window may be moved.

    A window must lie within the pipeline's ``[start, end)``, be closed (``end + delay <=
    now``) and, for a query source, not be older than its retention (the API has nothing
    to return for it: the window would be recorded done with no rows).
    """
    config = pipeline.window
    if end <= start:
        raise BadRequest("'end' must be after 'start'")
    if start < config.start:
        raise BadRequest(
            f"'start' {format_ts(start)} is before the pipeline's window start {format_ts(config.start)};"
            " there are no windows before it"
        )
    if config.end is not None and end > config.end:
        raise BadRequest(
            f"'end' {format_ts(end)} is after the pipeline's window end {format_ts(config.end)};"
            " there are no windows after it"
        )
    latest = due_end(config, now)
    if end > latest:
        raise BadRequest(
            f"windows up to {format_ts(end)} are not closed yet (latest due window ends {format_ts(latest)}"
            " = now - delay); replaying an open window would save incomplete data"
        )
    first, last = align_down(start, config.size), align_up(end, config.size)
    source = pipeline.source
    if isinstance(source, QuerySourceConfig):
        oldest = align_up(now - source.retention, config.size)
        if first < oldest:
            raise BadRequest(
                f"'start' {format_ts(start)} is older than the source's retention"
                f" ({format_duration(source.retention)}): the oldest window the API still holds starts"
                f" {format_ts(oldest)} (raise source.retention if your workspace keeps data longer)"
            )
    return first, last
