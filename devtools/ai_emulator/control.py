"""``/_emulator/*``: drive a running emulator from another process (fault suite, bench).

No auth (loopback dev tool). Datetimes are ISO 8601 text. Endpoints::

    GET    /_emulator/health                     app/workspace ids, emulator now, row counts
    GET    /_emulator/stats                      counters;  POST /_emulator/stats/reset
    POST   /_emulator/generate                   {table, start, end, count, seed?, late_fraction?}
    POST   /_emulator/rows                       {table, rows: [{...}], ingested_at?}
    GET    /_emulator/expected?table=&start=&end=[&rows=false][&visible_only=false][&by=ingestion]
    GET    /_emulator/faults                     pending scripted faults and rates
    POST   /_emulator/faults                     {status, count?, retry_after?, delay?}
                                                 or {rates: {"429": 0.1, ...}, seed?}
                                                 or {scoped: [{status, table, start, end}, ...]}: every
                                                 query of the table over that time gets it, until
                                                 replaced ([] lifts them)
    DELETE /_emulator/faults                     clear scripted faults and rates
    GET    /_emulator/clock                      {now}
    POST   /_emulator/clock                      {now: iso} | {advance: seconds} | {real: true}
    GET    /_emulator/config                     config without secrets
    POST   /_emulator/config                     {max_rows?, max_bytes?, rate_limit?, max_concurrent?,
                                                  latency_ms?, latency_per_1k_rows_ms?}
    POST   /_emulator/reset                      drop telemetry, faults and stats
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from .errors import ApiError, method_not_allowed, not_found
from .faults import ScopedFault
from .timeutil import format_ticks, from_ticks, parse_datetime

if TYPE_CHECKING:
    from .emulator import EmulatorCore as Emulator

__all__ = ["handle_control"]


def _bad(message: str) -> ApiError:
    return ApiError(400, {"error": {"code": "BadArgumentError", "message": message}})


def _dt(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise _bad(f"'{name}' must be an ISO 8601 datetime string")
    try:
        return from_ticks(parse_datetime(value))
    except ValueError as exc:
        raise _bad(f"'{name}': {exc}") from exc


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.lower() not in ("0", "false", "no")


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError as exc:
        raise _bad(f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise _bad("body must be a JSON object")
    return payload


def handle_control(emu: Emulator, method: str, path: list[str], params: dict[str, str], body: bytes) -> tuple[int, Any]:
    """Serve one control request; returns (status, JSON payload) or raises ``ApiError``."""
    route = "/".join(path)
    try:
        return _route(emu, method, route, params, body)
    except (KeyError, ValueError, TypeError) as exc:
        raise _bad(f"{type(exc).__name__}: {exc}") from exc


def _route(emu: Emulator, method: str, route: str, params: dict[str, str], body: bytes) -> tuple[int, Any]:
    key = (method, route)
    if key == ("GET", "health"):
        return 200, {
            "status": "ok",
            "app_id": emu.config.app_id,
            "workspace_id": emu.config.workspace_id,
            "now": format_ticks(emu.now_ticks()),
            "rows": emu.store.tables(),
        }
    if key == ("GET", "stats"):
        return 200, emu.stats.as_dict()
    if key == ("POST", "stats/reset"):
        emu.reset_stats()
        return 200, emu.stats.as_dict()
    if key == ("POST", "generate"):
        p = _json(body)
        n = emu.generate(
            str(p["table"]),
            _dt(p.get("start"), "start"),
            _dt(p.get("end"), "end"),
            int(p.get("count", 100)),
            seed=int(p.get("seed", 0)),
            late_fraction=float(p.get("late_fraction", 0.0)),
        )
        return 200, {"table": p["table"], "rows": n}
    if key == ("POST", "rows"):
        p = _json(body)
        rows = p.get("rows")
        if not isinstance(rows, list):
            raise _bad("'rows' must be a list of objects")
        at = p.get("ingested_at")
        n = emu.add_rows(str(p["table"]), rows, ingested_at=_dt(at, "ingested_at") if at else None)
        return 200, {"table": p["table"], "rows": n}
    if key == ("GET", "expected"):
        table = params.get("table")
        if not table:
            raise _bad("'table' is required")
        start, end = _dt(params.get("start"), "start"), _dt(params.get("end"), "end")
        visible = _flag(params.get("visible_only"), True)
        by = params.get("by") or "event"
        if by not in ("event", "ingestion"):
            raise _bad("'by' must be event or ingestion")
        if _flag(params.get("rows"), True):
            rows = emu.expected(table, start, end, visible_only=visible, by=by)
            return 200, {"table": table, "count": len(rows), "rows": rows}
        return 200, {"table": table, "count": emu.expected_count(table, start, end, visible_only=visible, by=by)}
    if route == "faults":
        return _faults(emu, method, body)
    if route == "clock":
        return _clock(emu, method, body)
    if key == ("GET", "config"):
        return 200, emu.config.public()
    if key == ("POST", "config"):
        p = _json(body)
        for name in ("max_rows", "max_bytes", "rate_limit", "max_concurrent"):
            if name in p:
                value = p[name]
                if value is not None and (not isinstance(value, int) or value < 0):
                    raise _bad(f"'{name}' must be a non-negative integer or null")
                if value is None and name in ("max_rows", "max_bytes"):
                    raise _bad(f"'{name}' cannot be null")
                setattr(emu.config, name, value)
        for name in ("latency_ms", "latency_per_1k_rows_ms"):
            if name in p:
                value = p[name]
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 600_000:
                    raise _bad(f"'{name}' must be a number of milliseconds from 0 to 600000")
                setattr(emu.config, name, float(value))
        return 200, emu.config.public()
    if key == ("POST", "reset"):
        emu.clear()
        emu.faults.clear()
        emu.reset_stats()
        return 200, {"status": "reset"}
    known = {"health", "stats", "stats/reset", "generate", "rows", "expected", "config", "reset"}
    if route in known:
        raise method_not_allowed(method)
    raise not_found(f"unknown control endpoint '/_emulator/{route}'")


def _faults(emu: Emulator, method: str, body: bytes) -> tuple[int, Any]:
    if method == "GET":
        return 200, _fault_state(emu)
    if method == "DELETE":
        emu.faults.clear()
        return 200, _fault_state(emu)
    if method != "POST":
        raise method_not_allowed(method)
    p = _json(body)
    if "rates" in p:
        rates = p["rates"]
        if not isinstance(rates, dict):
            raise _bad("'rates' must be an object")
        seed = p.get("seed")
        emu.faults.set_rates({k: float(v) for k, v in rates.items()}, seed=None if seed is None else int(seed))
    elif "scoped" in p:
        emu.faults.set_scoped(_scoped(p["scoped"]))
    else:
        retry = p.get("retry_after")
        emu.faults.push(
            p.get("status", "delay"),
            count=int(p.get("count", 1)),
            retry_after=None if retry is None else float(retry),
            delay=float(p.get("delay", 0.0)),
        )
    return 200, _fault_state(emu)


def _fault_state(emu: Emulator) -> dict[str, Any]:
    return {"pending": emu.faults.pending(), "rates": emu.faults.rates(), "scoped": emu.faults.scoped()}


def _scoped(items: Any) -> list[ScopedFault]:
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _bad("'scoped' must be a list of {status, table, start, end}")
    out = []
    for item in items:
        table = item.get("table")
        if not isinstance(table, str) or not table:
            raise _bad("a scoped fault needs a 'table'")
        out.append(ScopedFault(item.get("status", ""), table, parse_datetime(_iso(item.get("start"), "start")),
                               parse_datetime(_iso(item.get("end"), "end"))))  # fmt: skip
    return out


def _iso(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"'{name}' must be an ISO 8601 datetime string")
    return value


def _clock(emu: Emulator, method: str, body: bytes) -> tuple[int, Any]:
    from .emulator import SettableClock

    if method == "POST":
        p = _json(body)
        clock = emu.clock if isinstance(emu.clock, SettableClock) else SettableClock(emu.now())
        if p.get("real"):
            clock.real()
        if "now" in p:
            clock.set(_dt(p["now"], "now"))
        if "advance" in p:
            clock.advance(float(p["advance"]))
        emu.clock = clock
    elif method != "GET":
        raise method_not_allowed(method)
    return 200, {"now": format_ticks(emu.now_ticks())}
