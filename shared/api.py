"""HTTP-facing operations (replay, status) as plain functions: request data in, (status, body) out.

The function app adapts ``HttpRequest`` to these; tests and the local host call the
same code. Every field of a request is validated here; bad input gets a 4xx with a
reason, and nothing from a request ever reaches a query except parsed timestamps.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from shared.durations import parse_timestamp
from shared.errors import ConfigError, MoverError
from shared.model import format_ts
from shared.runner import Engine
from shared.settings import Settings

__all__ = ["Response", "config_error_response", "engine_from_env", "replay", "reset_engine", "status", "with_engine"]

log = logging.getLogger(__name__)
_engine: Engine | None = None
_engine_lock = threading.Lock()
_MAX_BODY = 16 * 1024
_REPLAY_FIELDS = {"pipeline", "start", "end", "mode"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
INLINE_LIMIT = timedelta(seconds=180)  # HTTP-triggered functions must answer within 230 s


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, data: Any) -> Response:
        return cls(status, orjson.dumps(data, option=orjson.OPT_INDENT_2))


def engine_from_env(env: Mapping[str, str] | None = None) -> Engine:
    """The process-wide engine, built on first use from the app settings (``ConfigError`` if invalid)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = Engine(Settings.from_env(env))
        return _engine


def reset_engine(engine: Engine | None = None) -> None:
    """Replace the process-wide engine (tests, settings reload)."""
    global _engine
    with _engine_lock:
        if _engine is not None and _engine is not engine:
            _engine.close()
        _engine = engine


def _bad(status: int, reason: str, **extra: Any) -> Response:
    return Response.json(status, {"error": reason, **extra})


def replay(engine: Engine, body: bytes, params: Mapping[str, str]) -> Response:
    """``POST /api/replay`` with ``{"pipeline", "start", "end", "mode"?}`` (JSON body or query string)."""
    if len(body) > _MAX_BODY:
        return _bad(413, f"request body over {_MAX_BODY} bytes")
    fields: dict[str, Any]
    if body.strip():
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _bad(400, 'body is not valid JSON; send {"pipeline": ..., "start": ..., "end": ...}')
        if not isinstance(fields, dict):
            return _bad(400, "body must be a JSON object")
    else:
        fields = dict(params)
    unknown = sorted(set(fields) - _REPLAY_FIELDS)
    if unknown:
        return _bad(400, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_REPLAY_FIELDS))}")
    for key in ("pipeline", "start", "end"):
        value = fields.get(key)
        if not isinstance(value, str) or not value.strip():
            return _bad(400, f"'{key}' is required and must be a string")
        if len(value) > 64:
            return _bad(400, f"'{key}' is too long")
    mode = fields.get("mode", "auto")
    if mode not in ("auto", "inline", "queue"):
        return _bad(400, "'mode' must be auto, inline or queue")
    try:
        pipeline = engine.settings.pipeline(fields["pipeline"])
    except KeyError:
        known = [p.name for p in engine.settings.pipelines]
        return _bad(404, f"unknown pipeline {fields['pipeline'][:64]!r}", pipelines=known)
    try:
        start = parse_timestamp(fields["start"])
        end = parse_timestamp(fields["end"])
    except ValueError as exc:
        return _bad(400, f"{exc} (use ISO 8601 UTC, e.g. 2026-11-02T10:00:00Z)")
    try:
        result = engine.replay(pipeline, start, end, mode=mode, pause_after=INLINE_LIMIT)
    except ValueError as exc:
        return _bad(400, str(exc))
    except MoverError as exc:
        log.error("replay %s failed: %s", pipeline.name, exc)
        return _bad(503, f"replay could not start: {exc}")
    body_out = {
        "pipeline": pipeline.name,
        "mode": result.mode,
        "windows": len(result.windows),
        "first": format_ts(result.windows[0].start),
        "last_end": format_ts(result.windows[-1].end),
        "queued": result.queued,
        "results": [r.as_dict() for r in result.results],
    }
    if result.mode == "queued" or result.queued or any(r.outcome == "paused" for r in result.results):
        return Response.json(202, body_out)  # (partly) left to the timer
    failed = any(r.outcome == "failed" for r in result.results)
    return Response.json(502 if failed else 200, body_out)  # 502: the upstream move failed, see results


def status(engine: Engine, params: Mapping[str, str]) -> Response:
    """``GET /api/status`` (JSON) or with ``?format=html`` the status page.

    ``from``/``to`` (ISO 8601 UTC or a date) limit the windows read to those starting in
    ``[from, to)``; ``status`` (comma-separated) lists only windows in those states.
    """
    from shared.status import STATUSES, StatusView

    fmt = params.get("format", "json")
    if fmt not in ("json", "html"):
        return _bad(400, "'format' must be json or html")
    raw_recent = params.get("recent", "20")
    if not raw_recent.isdigit() or not 1 <= int(raw_recent) <= 500:
        return _bad(400, "'recent' must be a whole number from 1 to 500")
    bounds: dict[str, datetime | None] = {}
    for key in ("from", "to"):
        raw = params.get(key, "").strip()
        if len(raw) > 64:
            return _bad(400, f"'{key}' is too long")
        try:
            bounds[key] = parse_timestamp(f"{raw}T00:00:00Z" if _DATE.match(raw) else raw) if raw else None
        except ValueError as exc:
            return _bad(400, f"'{key}': {exc} (use ISO 8601 UTC, e.g. 2026-11-02T10:00:00Z, or a date 2026-11-02)")
    since, until = bounds["from"], bounds["to"]
    if since and until and until <= since:
        return _bad(400, "'to' must be after 'from'")
    wanted = frozenset(s.strip() for s in params.get("status", "").split(",") if s.strip())
    if wanted - set(STATUSES):
        return _bad(400, f"'status' takes a comma-separated list of {', '.join(STATUSES)}")
    report = engine.status(view=StatusView(since, until, wanted, int(raw_recent)))
    if fmt == "html":
        from shared.status_page import render_html

        shown = {k: params[k][:64] for k in ("from", "to", "status") if params.get(k)}
        return Response(200, render_html(report, shown).encode(), "text/html; charset=utf-8")
    return Response.json(200, report)


def with_engine(op: Callable[[Engine], Response]) -> Response:
    """Run ``op`` on the process-wide engine; invalid settings answer 503 listing every problem."""
    try:
        engine = engine_from_env()
    except ConfigError as exc:
        return config_error_response(exc)
    return op(engine)


def config_error_response(exc: ConfigError) -> Response:
    """Configuration problems, for operators (no secret is ever part of a problem text)."""
    return Response.json(503, {"error": "invalid configuration", "problems": exc.problems})
