"""HTTP-facing operations (replay, status) as plain functions: request data in, (status, body) out.

The function app adapts ``HttpRequest`` to these; tests and the local host call the
same code. Every field of a request is validated (with ``shared.frontends.params``) before anything
is written; bad input gets a 4xx with a reason, and nothing from a request ever reaches a
query except parsed timestamps. Every JSON answer and page is redacted (``shared.redact``).
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

from shared.app import App
from shared.durations import parse_timestamp
from shared.errors import ConfigError, MoverError
from shared.frontends.params import BadRequest, choice, json_fields, quoted, text, time_range, timestamp, whole_number
from shared.model import Window, format_ts
from shared.redact import redact
from shared.settings import load_settings

__all__ = ["Response", "config_error_response", "engine_from_env", "replay", "reset_engine", "status", "with_engine"]

log = logging.getLogger(__name__)
_engine: App | None = None
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
        return cls(status, redact(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()).encode())


def engine_from_env(env: Mapping[str, str] | None = None) -> App:
    """The process-wide engine, built on first use from the app settings (``ConfigError`` if invalid)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = App(load_settings(env))
        return _engine


def reset_engine(engine: App | None = None) -> None:
    """Replace the process-wide engine (tests, settings reload)."""
    global _engine
    with _engine_lock:
        if _engine is not None and _engine is not engine:
            _engine.close()
        _engine = engine


def _bad(status: int, reason: str, **extra: Any) -> Response:
    return Response.json(status, {"error": reason, **extra})


def replay(engine: App, body: bytes, params: Mapping[str, str]) -> Response:
    """``POST /api/replay`` with ``{"pipeline", "start", "end", "mode"?}`` (JSON body or query string).

    The whole request is validated (fields, pipeline, range) before anything is written.
    """
    try:
        fields = json_fields(body, params, _REPLAY_FIELDS, max_body=_MAX_BODY)
        name = text(fields, "pipeline")
        start, end = timestamp(fields, "start"), timestamp(fields, "end")
        mode = choice(fields, "mode", ("auto", "inline", "queue"), "auto")
        try:
            pipeline = engine.settings.pipeline(name)
        except KeyError:
            known = [p.name for p in engine.settings.pipelines]
            return _bad(404, f"unknown pipeline {quoted(name, 64)}", pipelines=known)
        time_range(pipeline, start, end, engine.clock())
    except BadRequest as exc:
        return _bad(exc.status, exc.reason)
    try:
        result = engine.replayer.replay(pipeline, start, end, mode=mode, pause_after=INLINE_LIMIT)
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


def status(engine: App, params: Mapping[str, str]) -> Response:
    """``GET /api/status`` (JSON) or with ``?format=html`` the status page.

    ``from``/``to`` (ISO 8601 UTC or a date) choose the windows shown (default: the newest ones);
    ``status`` (comma-separated) lists only windows in those states; ``pipeline`` shows one
    pipeline, and with ``window`` (a window's start) everything the ledger holds about that window.
    """
    from shared.ops.status import STATUSES, StatusView

    try:
        fmt = choice(params, "format", ("json", "html"), "json")
        recent = whole_number(params, "recent", 20, 1, 500)
    except BadRequest as exc:
        return _bad(exc.status, exc.reason)
    only = params.get("pipeline", "").strip() or None
    if only is not None and only not in {p.name for p in engine.settings.pipelines}:
        return _bad(404, f"unknown pipeline {quoted(only, 64)}", pipelines=[p.name for p in engine.settings.pipelines])
    if params.get("window", "").strip():
        return _window(engine, only, params["window"].strip())
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
    report = engine.status(view=StatusView(since, until, wanted, recent), only=only)
    if fmt == "html":
        from shared.ops.status_page import render_html

        shown = {k: params[k][:64] for k in ("from", "to", "status") if params.get(k)}
        return Response(200, redact(render_html(report, shown)).encode(), "text/html; charset=utf-8")
    return Response.json(200, report)


def _window(engine: App, only: str | None, raw: str) -> Response:
    """One window's ledger record, for drilling down from the page or a script."""
    from shared.ops.status_read import window_detail
    from shared.windows import align_down

    if only is None:
        return _bad(400, "'window' needs 'pipeline'")
    if len(raw) > 64:
        return _bad(400, "'window' is too long")
    try:
        start = parse_timestamp(raw)
    except ValueError as exc:
        return _bad(400, f"'window': {exc} (use the window's start, ISO 8601 UTC)")
    pipeline = engine.settings.pipeline(only)
    size = pipeline.window.size
    if align_down(start, size) != start:
        return _bad(400, f"'window': {format_ts(start)} is not the start of a {only} window")
    try:
        state = engine.ledger.get(only, Window(start, start + size))
    except MoverError as exc:
        return _bad(503, f"ledger not readable: {exc}")
    if state is None:
        return _bad(404, f"{only} has no record of the window starting {format_ts(start)}")
    return Response.json(200, window_detail(only, state, engine.clock()))


def with_engine(op: Callable[[App], Response]) -> Response:
    """Run ``op`` on the process-wide engine; invalid settings answer 503 listing every problem."""
    try:
        engine = engine_from_env()
    except ConfigError as exc:
        return config_error_response(exc)
    return op(engine)


def config_error_response(exc: ConfigError) -> Response:
    """Configuration problems, for operators (no secret is ever part of a problem text)."""
    return Response.json(503, {"error": "invalid configuration", "problems": exc.problems})
