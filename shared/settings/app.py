"""App settings + pipeline JSON → one validated ``Settings`` (every problem in one ``ConfigError``)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.durations import format_duration
from shared.errors import ConfigError
from shared.model import format_ts
from shared.settings import sinks as sink_section
from shared.settings import sources as source_section
from shared.settings import tables as table_section
from shared.settings.fields import CONTAINER as _CONTAINER
from shared.settings.fields import NAME as _NAME
from shared.settings.fields import TABLE_NAME as _TABLE_NAME
from shared.settings.fields import Fields
from shared.settings.memory import default_budget_mb
from shared.settings.model import (
    ExportSourceConfig,
    Pipeline,
    QuerySourceConfig,
    Settings,
    SinkConfig,
    SourceConfig,
    WindowConfig,
)

__all__ = ["INGESTION_DELAY", "parse_settings"]

_SIZES_PER_DAY = 86400
DEFAULT_SCHEDULE = "0 */5 * * * *"
# Windows align to the Unix epoch; Table Storage holds no date before 1601 (the SDK reads no year < 1000).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_WINDOW_DURATIONS = {"delay": "PT5M", "retry_backoff": "PT2M", "lease": "PT10M", "resweep_lookback": "PT0S"}
# Default delay of windows bounded by ingestion_time(): the service stamps a row when its ingestion
# completes, so a row is queryable at about its stamp; the delay covers only the spread between that
# stamp and the commit (concurrent ingestions, service node clocks vs. this app's clock). Late
# telemetry needs no delay here: it lands in the window of its ingestion. `verify` shows a window
# that gained rows after it was moved as `short` (raise the delay then).
INGESTION_DELAY = timedelta(minutes=2)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``env`` (default: this process's environment, where the Functions host puts
    the app settings); raises ``ConfigError`` listing every problem."""
    return parse_settings(dict(os.environ if env is None else env))


def parse_settings(env: dict[str, str]) -> Settings:
    """Parse app settings; raises ``ConfigError`` listing every problem."""
    return _settings(Fields(env))


def _settings(p: Fields) -> Settings:
    raw = p.env.get("MOVER_PIPELINES", "").strip()
    doc: Any = None
    if not raw:
        p.fail(
            "MOVER_PIPELINES",
            "missing; set it to the pipelines JSON or a path to a JSON file (see README)",
        )
    else:
        doc = _load_json(p, raw)
    state_setting = p.env.get("MOVER_STATE_CONNECTION_SETTING") or "AzureWebJobsStorage"
    state = p.storage("ledger storage (MOVER_STATE_CONNECTION_SETTING)", state_setting)
    pipelines: list[Pipeline] = []
    if doc is not None:
        if isinstance(doc, dict):
            p.reject_unknown("MOVER_PIPELINES", doc, {"pipelines", "$schema"})
        items = doc.get("pipelines") if isinstance(doc, dict) else doc
        if not isinstance(items, list) or not items:
            p.fail("MOVER_PIPELINES", 'expected {"pipelines": [ ... ]} with at least one pipeline')
        else:
            for i, item in enumerate(items):
                pipelines.extend(pipeline(p, i, item))
            names = [x.name for x in pipelines]
            for dup in sorted({n for n in names if names.count(n) > 1}):
                p.fail(f"pipeline {dup!r}", "name used twice; names must be unique")
    ledger_table = p.env.get("MOVER_LEDGER_TABLE", "moverledger")
    if not _TABLE_NAME.match(ledger_table):
        p.fail("MOVER_LEDGER_TABLE", f"{ledger_table!r} is not a valid table name (3-63 letters/digits)")
    quarantine = p.env.get("MOVER_QUARANTINE_CONTAINER", "mover-quarantine")
    if not _CONTAINER.match(quarantine):
        p.fail("MOVER_QUARANTINE_CONTAINER", f"{quarantine!r} is not a valid container name")
    dispatch = p.env.get("MOVER_DISPATCH", "queue") or "queue"
    if dispatch not in ("queue", "inline"):
        p.fail("MOVER_DISPATCH", f"must be queue (planner + queue workers) or inline (one process); got {dispatch!r}")
        dispatch = "queue"
    queue_name = p.env.get("MOVER_QUEUE_NAME", "mover-windows") or "mover-windows"
    if not _CONTAINER.match(queue_name) or len(queue_name) > 56:
        p.fail("MOVER_QUEUE_NAME", f"{queue_name!r} is not a valid queue name (3-56 lowercase letters, digits, '-')")
    settings = Settings(
        pipelines=tuple(pipelines),
        state=state,
        ledger_table=ledger_table,
        quarantine_container=quarantine,
        schedule=schedule(p),
        max_concurrency=p.int_setting("MOVER_MAX_CONCURRENCY", 4, 1, 64),
        time_budget=p.duration_setting("MOVER_TIME_BUDGET", timedelta(minutes=4)),
        checkpoint_after=p.duration_setting("MOVER_CHECKPOINT_AFTER", timedelta(minutes=8)),
        replay_max_windows=p.int_setting("MOVER_REPLAY_MAX_WINDOWS", 24 * 31, 1, 100_000),
        replay_inline_windows=p.int_setting("MOVER_REPLAY_INLINE_WINDOWS", 6, 0, 1000),
        dispatch="inline" if dispatch == "inline" else "queue",
        queue_name=queue_name,
        memory_budget_mb=p.int_setting("MOVER_MEMORY_BUDGET_MB", default_budget_mb(p.env), 8, 65_536),
        query_handoff_ms=p.int_setting("MOVER_QUERY_HANDOFF_MS", 500, 0, 10_000),
    )
    if p.problems:
        raise ConfigError(p.problems)
    return settings


def schedule(p: Fields) -> str:
    """``MOVER_SCHEDULE``: a six-field NCRONTAB (with seconds), as the timer trigger reads it."""
    raw = p.env.get("MOVER_SCHEDULE") or DEFAULT_SCHEDULE
    fields = raw.split()
    hint = "a six-field NCRONTAB with seconds, e.g. '0 */5 * * * *' (every 5 minutes)"
    if len(fields) != 6:
        p.fail("MOVER_SCHEDULE", f"must be {hint}; got {len(fields)} field(s) in {raw[:60]!r}")
        return DEFAULT_SCHEDULE
    from croniter import croniter

    if not croniter.is_valid(" ".join([*fields[1:], fields[0]])):  # croniter wants the seconds last
        p.fail("MOVER_SCHEDULE", f"is not {hint}; got {raw[:60]!r}")
        return DEFAULT_SCHEDULE
    return raw


def _load_json(p: Fields, raw: str) -> Any:
    text = raw
    if not raw.lstrip().startswith(("{", "[")):
        try:
            text = Path(raw).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:  # no such file, a name no file can have, not UTF-8
            reason = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            p.fail("MOVER_PIPELINES", f"not JSON and not a readable JSON file ({reason}): {raw[:80]!r}")
            return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        p.fail("MOVER_PIPELINES", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    except RecursionError:
        p.fail("MOVER_PIPELINES", "invalid JSON: nested too deeply")
    return None


def pipeline(p: Fields, index: int, item: Any) -> list[Pipeline]:
    """The pipeline of ``item``, or one per table when its query source names ``tables``."""
    where = f"pipelines[{index}]"
    if not isinstance(item, dict):
        p.fail(where, "must be an object")
        return []
    raw_name = item.get("name")
    valid_name = isinstance(raw_name, str) and bool(_NAME.match(raw_name))
    if not valid_name:
        p.fail(where, f"'name' must be 1-63 letters, digits, '-' or '_' starting with a letter; got {raw_name!r}")
    else:
        where = f"pipeline {raw_name!r}"
    name = str(raw_name) if valid_name else f"pipeline{index}"  # keep checking the rest: every problem at once
    known = {"name", "source", "window", "sink", "sinks", "columns", "enabled", "description"}
    p.reject_unknown(where, item, known)
    before = len(p.problems)
    source = source_section.source(p, where, name, item.get("source"))
    tables = (
        table_section.table_list(p, f"{where} source", source.kind, item["source"])
        if isinstance(source, QuerySourceConfig)
        else None
    )
    window_config = window(p, where, item.get("window"), source)
    raw_sinks = item.get("sinks", [item["sink"]] if "sink" in item else None)
    sinks: list[SinkConfig] = []
    if not isinstance(raw_sinks, list) or not raw_sinks:
        p.fail(where, "needs 'sink' (an object) or 'sinks' (a non-empty list)")
    else:
        for j, raw in enumerate(raw_sinks):
            parsed = sink_section.sink(p, f"{where} sinks[{j}]", raw)
            if parsed is not None:
                sinks.append(parsed)
        sinks = sink_section.separate_outputs(p, where, sinks)
        if tables:
            table_section.check_sinks(p, where, sinks, len(tables))
    columns = item.get("columns")
    if columns is not None:
        columns = column_spec(p, where, columns)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        p.fail(where, "'enabled' must be true or false")
    if not valid_name or len(p.problems) > before or source is None or window_config is None:
        return []
    one = Pipeline(
        name=name, source=source, window=window_config, sinks=tuple(sinks), columns=columns, enabled=bool(enabled)
    )
    return [one] if tables is None else table_section.expand(p, where, one, tables)


def column_spec(p: Fields, where: str, raw: Any) -> Any:
    from shared import mapping  # local import: mapping owns the column-spec grammar

    try:
        return mapping.parse_column_spec(raw)
    except ValueError as exc:
        p.fail(f"{where} columns", str(exc))
        return None


def window(p: Fields, where: str, raw: Any, source: SourceConfig | None) -> WindowConfig | None:
    where = f"{where} window"
    if not isinstance(raw, dict):
        p.fail(where, 'must be an object like {"size": "PT1H", "start": "2026-11-01T00:00:00Z"}')
        return None

    size = p.duration_field(where, raw, "size", "PT1H")
    if size < timedelta(minutes=1) or size > timedelta(days=1) or _SIZES_PER_DAY % int(size.total_seconds()):
        p.fail(where, "'size' must divide a day evenly, from PT1M to P1D (e.g. PT5M, PT15M, PT1H, P1D)")
        return None
    if isinstance(source, ExportSourceConfig) and size != timedelta(hours=1):
        p.fail(where, f"'size' must be PT1H for {source.kind} sources (they are laid out in hour folders)")
    start = p.ts(where, "start", raw.get("start"), required=True)
    end = p.ts(where, "end", raw.get("end"), required=False)
    for key, value in (("start", start), ("end", end)):
        if value is not None and not _EARLIEST <= value <= _LATEST:
            p.fail(where, f"'{key}' {format_ts(value)} must be from 1970-01-01 to 9000-01-01 (UTC)")
        elif value is not None and (value - _EARLIEST) % size:
            down = value - (value - _EARLIEST) % size
            up = down + size
            p.fail(
                where,
                f"'{key}' {format_ts(value)} is not aligned to the window size {format_duration(size)};"
                f" use {format_ts(down)} or {format_ts(up)}",
            )
    if start and end and end <= start:
        p.fail(where, "'end' must be after 'start'")

    known = {
        "size",
        "start",
        "end",
        "delay",
        "max_per_tick",
        "max_attempts",
        "retry_backoff",
        "lease",
        "resweep_lookback",
    }
    p.reject_unknown(where, raw, known)
    durations = {k: p.duration_field(where, raw, k, d) for k, d in _WINDOW_DURATIONS.items()}
    max_per_tick = p.whole(where, raw, "max_per_tick", 12, 1, 10_000)
    max_attempts = p.whole(where, raw, "max_attempts", 5, 1, 100)
    if start is None:
        return None
    config = WindowConfig(
        size=size, start=start, end=end, max_per_tick=max_per_tick, max_attempts=max_attempts, **durations
    )
    if isinstance(source, QuerySourceConfig) and source.window_by == "ingestion" and "delay" not in raw:
        config = dataclasses.replace(config, delay=INGESTION_DELAY)  # commit latency only: see the constant
    if isinstance(source, ExportSourceConfig):
        if "delay" not in raw:
            config = dataclasses.replace(config, delay=max(config.delay, source.min_delay))
        elif config.delay < source.min_delay:
            p.fail(
                where,
                f"'delay' must be at least {format_duration(source.min_delay)} for {source.kind} sources"
                f" (exported blobs keep growing after their hour); got {raw['delay']}",
            )
    return config
