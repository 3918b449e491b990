"""Source sections of a pipeline: query API (App Insights / Log Analytics) and exported blobs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from shared.redact import register
from shared.settings.fields import CONTAINER as _CONTAINER
from shared.settings.fields import IDENT as _IDENT
from shared.settings.fields import TABLE_HEAD, Fields
from shared.settings.model import DEFAULT_ENDPOINTS, AuthConfig, ExportSourceConfig, QuerySourceConfig, SourceConfig

__all__ = ["DEFAULT_SCOPES", "DEFAULT_TIME_COLUMN", "source"]

DEFAULT_SCOPES = {
    "app_insights": "https://api.applicationinsights.io/.default",
    "log_analytics": "https://api.loganalytics.io/.default",
}
DEFAULT_TIME_COLUMN = {"app_insights": "timestamp", "log_analytics": "TimeGenerated"}
_ID_HINT = {"app_insights": "Application ID from the API Access blade", "log_analytics": "workspace ID"}
_SECRET_NAME = {"api_key": "API key", "token": "bearer token"}
_QUERY_FIELDS = {
    "kind",
    "endpoint",
    "query",
    "table",
    "table_name",
    "time_column",
    "auth",
    "max_rows_per_query",
    "timeout_seconds",
    "max_retries",
    "retention",
    "parallel_queries",
    "max_concurrent_queries",
    "max_requests_per_30s",
    "window_by",
    "max_event_lag",
    "max_event_lead",
    "tables",
}
# How far back the query API still returns data by default: Application Insights keeps 90 days,
# a Log Analytics workspace 30 (both up to 730 days interactively, set per app/workspace/table).
_RETENTION = {"app_insights": "P90D", "log_analytics": "P30D"}
_AUTH_FIELDS = {
    "entra": {"kind", "scope", "client_id"},
    "managed_identity": {"kind", "scope", "client_id"},
    "api_key": {"kind", "scope", "setting"},
    "token": {"kind", "scope", "setting"},
}


def source(p: Fields, where: str, pipeline: str, raw: Any) -> SourceConfig | None:
    where = f"{where} source"
    if not isinstance(raw, dict):
        p.fail(
            where,
            "must be an object with 'kind' (app_insights, log_analytics, continuous_export, diagnostic_settings)",
        )
        return None
    kind = raw.get("kind", "app_insights")
    if kind in ("app_insights", "log_analytics"):
        return query_source(p, where, pipeline, kind, raw)
    if kind in ("continuous_export", "diagnostic_settings"):
        return export_source(p, where, pipeline, kind, raw)
    p.fail(where, f"unknown kind {kind!r}; use app_insights, log_analytics, continuous_export or diagnostic_settings")
    return None


def query_source(
    p: Fields, where: str, pipeline: str, kind: Literal["app_insights", "log_analytics"], raw: dict[str, Any]
) -> QuerySourceConfig | None:
    id_field = "app_id" if kind == "app_insights" else "workspace_id"
    p.reject_unknown(where, raw, {id_field, *_QUERY_FIELDS})
    resource_id = raw.get(id_field)
    if not isinstance(resource_id, str) or not re.match(r"^[A-Za-z0-9-]{1,64}$", resource_id):
        p.fail(
            where,
            f"'{id_field}' is required (the {_ID_HINT[kind]}; letters, digits, '-')",
        )
    endpoint = raw.get("endpoint", DEFAULT_ENDPOINTS[kind])
    if not isinstance(endpoint, str) or not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", endpoint):
        p.fail(where, f"'endpoint' must be a base URL like {DEFAULT_ENDPOINTS[kind]}; got {endpoint!r}")
        endpoint = DEFAULT_ENDPOINTS[kind]
    query = raw.get("query", raw.get("table"))
    if "tables" in raw:  # one pipeline per table (shared.settings.tables): each gets its table as query
        for one in ("query", "table", "table_name"):
            if one in raw:
                p.fail(where, f"'{one}' and 'tables' exclude each other: 'tables' makes one pipeline per table")
        query = "tables"
    if not isinstance(query, str) or not query.strip():
        p.fail(where, "'query' is required: a table name (e.g. requests) or a KQL query without time bounds")
        query = ""
    query = query.strip()
    table = raw.get("table_name") or (query if _IDENT.match(query) else pipeline)
    time_column = raw.get("time_column", DEFAULT_TIME_COLUMN[kind])
    if not isinstance(time_column, str) or not _IDENT.match(time_column):
        p.fail(where, f"'time_column' must be a column name; got {time_column!r}")
    for bad in (";", "\x00"):
        if bad in query:
            p.fail(where, f"'query' must be a single KQL expression (no {bad!r})")
    auth_config = auth(p, where, kind, raw.get("auth"))
    max_rows = p.whole(where, raw, "max_rows_per_query", 10_000, 1, 500_000)
    timeout = raw.get("timeout_seconds", 180)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 1 <= timeout <= 600:
        p.fail(where, "'timeout_seconds' must be a number from 1 to 600")
        timeout = 180
    retries = p.whole(where, raw, "max_retries", 6, 0, 20)
    parallel = p.whole(where, raw, "parallel_queries", 5, 1, 50) if "parallel_queries" in raw else None
    retention = p.duration_field(where, raw, "retention", _RETENTION[kind])
    if not timedelta(days=1) <= retention <= timedelta(days=4383):
        p.fail(where, f"'retention' must be from P1D to P4383D (12 years); got {raw.get('retention')}")
    max_concurrent = p.whole(where, raw, "max_concurrent_queries", 5, 1, 50)
    max_requests = p.whole(where, raw, "max_requests_per_30s", 180, 1, 10_000)
    window_by, lag, lead = _window_by(p, where, raw, query)
    if auth_config is None or not isinstance(resource_id, str):
        return None
    return QuerySourceConfig(
        kind=kind,
        resource_id=resource_id,
        endpoint=endpoint.rstrip("/"),
        query=query,
        table=str(table),
        time_column=str(time_column),
        auth=auth_config,
        max_rows_per_query=max_rows,
        timeout_s=float(timeout),
        max_retries=retries,
        parallel_queries=parallel,
        retention=retention,
        max_concurrent_queries=max_concurrent,
        max_requests_per_30s=max_requests,
        window_by=window_by,
        max_event_lag=lag,
        max_event_lead=lead,
    )


def _window_by(
    p: Fields, where: str, raw: dict[str, Any], query: str
) -> tuple[Literal["event", "ingestion"], timedelta, timedelta]:
    """``window_by`` (event | ingestion) and, for ingestion windows, how far the request timespan
    reaches before (``max_event_lag``) and after (``max_event_lead``) the window on the time column."""
    window_by = raw.get("window_by", "event")
    if window_by not in ("event", "ingestion"):
        p.fail(
            where,
            f"'window_by' must be event (windows bounded by the time column) or ingestion (by ingestion_time());"
            f" got {window_by!r}",
        )
        window_by = "event"
    lag = p.duration_field(where, raw, "max_event_lag", "P2D")
    lead = p.duration_field(where, raw, "max_event_lead", "P1D")
    if window_by == "event":
        for key in sorted({"max_event_lag", "max_event_lead"} & set(raw)):
            p.fail(where, f"'{key}' applies only with \"window_by\": \"ingestion\"")
        return "event", lag, lead
    if "time_column" in raw:
        p.fail(
            where,
            "'time_column' has no effect with \"window_by\": \"ingestion\" (windows are bounded by"
            " ingestion_time(), and the request timespan applies to the table's own time column); remove it",
        )
    for key, value in (("max_event_lag", lag), ("max_event_lead", lead)):
        if not timedelta(0) <= value <= timedelta(days=30):
            p.fail(where, f"'{key}' must be from PT0S to P30D; got {raw.get(key)}")
    if query and query != "tables" and not TABLE_HEAD.match(query):
        p.fail(
            where,
            "with \"window_by\": \"ingestion\" the 'query' must start with its table (e.g. 'requests | where"
            " success == false'): the window's ingestion_time() bound goes right after the table, where the"
            " service still knows each row's ingestion time",
        )
    return "ingestion", lag, lead


def auth(p: Fields, where: str, kind: str, raw: Any) -> AuthConfig | None:
    raw = {"kind": "entra"} if raw is None else raw
    where = f"{where} auth"
    if not isinstance(raw, dict):
        p.fail(where, 'must be an object like {"kind": "entra"}')
        return None
    scope = str(raw.get("scope", DEFAULT_SCOPES[kind]))
    akind = raw.get("kind", "entra")
    if isinstance(akind, str) and akind in _AUTH_FIELDS:
        p.reject_unknown(where, raw, _AUTH_FIELDS[akind])
    if akind in ("entra", "managed_identity"):
        client_id = raw.get("client_id")
        if akind == "managed_identity" and client_id is not None and not isinstance(client_id, str):
            p.fail(where, "'client_id' must be a string (the user-assigned identity's client ID)")
        return AuthConfig(kind=akind, scope=scope, client_id=client_id)
    if akind in ("api_key", "token"):
        setting = raw.get("setting")
        if not isinstance(setting, str) or not setting:
            p.fail(
                where,
                f"'setting' must name the app setting that holds the {_SECRET_NAME[akind]}",
            )
            return None
        secret = p.env.get(setting)
        if not secret:
            p.fail(
                where,
                f"app setting {setting!r} is not set (it should hold the {_SECRET_NAME[akind]})",
            )
            return None
        register(secret)
        return AuthConfig(kind=akind, scope=scope, secret=secret, setting=setting)
    p.fail(where, f"unknown kind {akind!r}; use entra, managed_identity, api_key or token")
    return None


def export_source(
    p: Fields, where: str, pipeline: str, kind: Literal["continuous_export", "diagnostic_settings"], raw: dict[str, Any]
) -> ExportSourceConfig | None:
    from shared import mapping  # local import: mapping owns the table names

    known = {
        "kind",
        "connection_setting",
        "container",
        "prefix",
        "folder_template",
        "table_name",
        "telemetry_type",
        "late_lookback",
        "min_delay",
        "batch_rows",
        "list_page_size",
        "download_concurrency",
    }
    p.reject_unknown(where, raw, known)
    storage = p.storage(where, str(raw.get("connection_setting", "AzureWebJobsStorage")), ("blob",))
    container = raw.get("container")
    if not isinstance(container, str) or not _CONTAINER.match(container):
        p.fail(where, f"'container' must be a valid blob container name; got {container!r}")
    prefix = str(raw.get("prefix", "")).strip("/")
    default_template = (
        "{prefix}/{yyyy}-{MM}-{dd}/{HH}/"
        if kind == "continuous_export"
        else "{prefix}/y={yyyy}/m={MM}/d={dd}/h={HH}/m=00/"
    )
    template = str(raw.get("folder_template", default_template))
    for needed in ("{yyyy}", "{MM}", "{dd}", "{HH}"):
        if needed not in template:
            p.fail(where, f"'folder_template' must contain {needed} (one folder per hour)")
    for unknown in sorted(set(re.findall(r"{([^{}]*)}", template)) - {"prefix", "yyyy", "MM", "dd", "HH"}):
        p.fail(where, f"'folder_template' has unknown placeholder {{{unknown}}}; allowed: prefix, yyyy, MM, dd, HH")
    ttype = raw.get("telemetry_type")
    if ttype is not None and not isinstance(ttype, str):
        p.fail(where, "'telemetry_type' must be a string like Requests")
        ttype = None
    # The folder names its table: <app>_<ikey>/<Type> for continuous export, insights-logs-<category> for
    # diagnostic settings. An explicit table must agree, or every line would be quarantined.
    implied = (
        mapping.EXPORT_TYPES.get(prefix.rsplit("/", 1)[-1])
        if kind == "continuous_export"
        else mapping.DIAGNOSTIC_CATEGORIES.get(container)
        if isinstance(container, str)
        else None
    )
    given = raw.get("table_name") or ttype
    table = str(given) if given else implied or pipeline
    aliases = {**mapping.EXPORT_TYPES, **mapping.DIAGNOSTIC_TYPES, **{t: t for t in mapping.SCHEMAS}}
    classic = aliases.get(table)
    if classic is None:
        p.fail(
            where,
            f"table {table!r} is not an Application Insights table; set 'table_name' to one of"
            f" {', '.join(mapping.TABLES)} (or 'telemetry_type' to a continuous-export folder type like Requests)",
        )
    elif implied and classic != implied:
        holder = "prefix" if kind == "continuous_export" else "container"
        p.fail(
            where,
            f"'table_name'/'telemetry_type' says {classic} but the {holder} holds {implied};"
            " every line would be quarantined",
        )

    lookback = p.duration_field(where, raw, "late_lookback", "PT6H")
    if lookback > timedelta(days=7):
        p.fail(where, "'late_lookback' must be at most P7D (each tick lists every folder in it again)")
    # An append blob PT1H.json is written until after its hour has ended: reading it early
    # would move a partial hour (its growth would still follow, but as a late part).
    floor = timedelta(minutes=5) if kind == "diagnostic_settings" else timedelta(0)
    min_delay = p.duration_field(where, raw, "min_delay", "PT15M" if kind == "diagnostic_settings" else "PT5M")
    if min_delay < floor:
        p.fail(
            where,
            f"'min_delay' must be at least PT5M for diagnostic_settings (PT1H.json blobs keep growing after"
            f" their hour); got {raw.get('min_delay')}",
        )
    batch_rows = p.whole(where, raw, "batch_rows", 5_000, 100, 100_000)
    page_size = p.whole(where, raw, "list_page_size", 5_000, 1, 5_000)
    concurrency = p.whole(where, raw, "download_concurrency", 4, 1, 32)
    if not isinstance(container, str) or classic is None:
        return None
    return ExportSourceConfig(
        kind=kind,
        storage=storage,
        container=container,
        prefix=prefix,
        folder_template=template,
        table=classic,
        telemetry_type=ttype,
        late_lookback=lookback,
        min_delay=min_delay,
        batch_rows=batch_rows,
        list_page_size=page_size,
        download_concurrency=concurrency,
    )
