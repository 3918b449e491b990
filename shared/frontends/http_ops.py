"""HTTP-facing estimate and verify (plain functions: request data in, ``api.Response`` out), and the
daily verification job.

Every parameter is checked before anything runs: unknown pipeline → 404, bad or reversed
dates, a range over ``MAX_DAYS`` or unknown fields → 400, each with a reason. Both answer
within the 230 s an HTTP function has: the work stops at ``HTTP_LIMIT`` and the answer says
how far it got (``complete``/``complete_range`` false, ``covered_until``). ``GET /api/verify``
only reads; queuing bad windows for replay changes the ledger, so it takes ``POST`` with
``"repair": true``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from shared.app import App
from shared.durations import parse_timestamp
from shared.errors import MoverError
from shared.frontends.http import Response
from shared.model import Window
from shared.ops.estimate import estimate, resolve_range
from shared.ops.verify import Verification, verify
from shared.ops.verify_record import save_verification
from shared.settings import Pipeline

__all__ = ["HTTP_LIMIT", "RECENT", "VERIFY_BUDGET", "estimate_request", "run_verify", "verify_recent", "verify_request"]

log = logging.getLogger(__name__)
HTTP_LIMIT = timedelta(seconds=200)  # HTTP-triggered functions must answer within 230 s
RECENT = timedelta(days=2)  # what the daily verification looks at
VERIFY_BUDGET = timedelta(minutes=8)  # the daily job's time limit (a timer function's default timeout is longer)
_MAX_BODY = 16 * 1024
MAX_LISTED = 5_000  # windows listed in one HTTP answer (the counts always cover every checked window)


def _bad(status: int, reason: str, **extra: Any) -> Response:
    return Response.json(status, {"error": reason, **extra})


def _range(
    engine: App, fields: Mapping[str, Any], allowed: set[str]
) -> tuple[Pipeline, Window, list[str]] | Response:
    """The pipeline and closed range a request names, or the 4xx that says what is wrong."""
    unknown = sorted(set(fields) - allowed)
    if unknown:
        return _bad(400, f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    name = fields.get("pipeline")
    if not isinstance(name, str) or not name.strip():
        return _bad(400, "'pipeline' is required")
    try:
        pipeline = engine.settings.pipeline(name)
    except KeyError:
        return _bad(404, f"unknown pipeline {name[:64]!r}", pipelines=[p.name for p in engine.settings.pipelines])
    bounds: dict[str, datetime | None] = {}
    for key in ("start", "end"):
        value = fields.get(key)
        if value is None or value == "":
            bounds[key] = None
            continue
        if not isinstance(value, str) or len(value) > 64:
            return _bad(400, f"'{key}' must be an ISO 8601 UTC timestamp like 2026-11-02T10:00:00Z")
        try:
            bounds[key] = parse_timestamp(value)
        except ValueError as exc:
            return _bad(400, f"'{key}': {exc} (use ISO 8601 UTC, e.g. 2026-11-02T10:00:00Z)")
    try:
        rng, notes = resolve_range(pipeline, engine.clock(), bounds["start"], bounds["end"])
    except ValueError as exc:
        return _bad(400, str(exc))
    return pipeline, rng, notes


def estimate_request(engine: App, params: Mapping[str, str]) -> Response:
    """``GET /api/estimate?pipeline=&start=&end=``: the backfill estimate as JSON (moves nothing)."""
    checked = _range(engine, params, {"pipeline", "start", "end"})
    if isinstance(checked, Response):
        return checked
    pipeline, rng, notes = checked
    deadline = time.monotonic() + HTTP_LIMIT.total_seconds()
    try:
        result = estimate(engine.source(pipeline), pipeline, rng, notes=notes, deadline=deadline)
    except MoverError as exc:
        log.warning("estimate %s failed: %s", pipeline.name, exc)
        return _bad(503, f"estimate failed: {exc}")
    return Response.json(200, result.as_dict())


def verify_request(engine: App, method: str, body: bytes, params: Mapping[str, str]) -> Response:
    """``GET /api/verify?pipeline=&start=&end=&windows=bad|all`` (read-only) or ``POST`` with the same
    fields (JSON body or query string) and ``"repair": true`` to queue bad windows for replay."""
    fields: dict[str, Any] = dict(params)
    if method == "POST" and body.strip():
        if len(body) > _MAX_BODY:
            return _bad(413, f"request body over {_MAX_BODY} bytes")
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _bad(400, 'body is not valid JSON; send {"pipeline": ..., "repair": true}')
        if not isinstance(parsed, dict):
            return _bad(400, "body must be a JSON object")
        fields |= parsed
    allowed = {"pipeline", "start", "end", "windows"} | ({"repair"} if method == "POST" else set())
    if method != "POST" and "repair" in fields:
        return _bad(405, "repair changes the ledger: use POST /api/verify with repair=true")
    windows = fields.pop("windows", "bad")
    if windows not in ("bad", "all"):
        return _bad(400, "'windows' must be bad or all")
    repair = fields.pop("repair", False)
    if repair not in (True, False, "true", "false"):
        return _bad(400, "'repair' must be true or false")
    checked = _range(engine, fields, allowed - {"windows", "repair"})
    if isinstance(checked, Response):
        return checked
    pipeline, rng, notes = checked
    deadline = time.monotonic() + HTTP_LIMIT.total_seconds()
    try:
        result = run_verify(engine, pipeline, rng, deadline=deadline, repair=repair in (True, "true"))
    except MoverError as exc:
        log.warning("verify %s failed: %s", pipeline.name, exc)
        return _bad(503, f"verify failed: {exc}")
    result.notes[:0] = notes
    return Response.json(200, result.as_dict(windows=str(windows), limit=MAX_LISTED))


def run_verify(
    engine: App, pipeline: Pipeline, rng: Window, *, deadline: float | None, repair: bool
) -> Verification:
    """``verify`` and record the outcome for the status page (a failed record only logs)."""
    result = verify(
        engine.ledger,
        engine.source(pipeline),
        engine.sinks(pipeline),
        pipeline,
        rng,
        now=engine.clock(),
        deadline=deadline,
        repair=repair,
    )
    try:
        save_verification(engine.ledger, result, engine.clock())
    except MoverError as exc:
        log.warning("%s: verification not recorded: %s", pipeline.name, exc)
    return result


def verify_recent(
    engine: App, *, lookback: timedelta = RECENT, budget: timedelta | None = None
) -> list[dict[str, Any]]:
    """The daily job: verify the closed windows of the last ``lookback`` of every enabled pipeline
    and queue the bad ones for replay. One pipeline's failure does not stop the others."""
    deadline = None if budget is None else time.monotonic() + budget.total_seconds()
    out: list[dict[str, Any]] = []
    for pipeline in engine.settings.pipelines:
        if not pipeline.enabled:
            continue
        now = engine.clock()
        try:
            rng, _ = resolve_range(pipeline, now, max(pipeline.window.start, now - lookback), None)
        except ValueError as exc:
            out.append({"pipeline": pipeline.name, "skipped": str(exc)})
            continue
        try:
            result = run_verify(engine, pipeline, rng, deadline=deadline, repair=True)
        except MoverError as exc:
            log.error("verify %s failed: %s", pipeline.name, exc)
            out.append({"pipeline": pipeline.name, "error": str(exc)})
            continue
        out.append(result.as_dict())
    return out
