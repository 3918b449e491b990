"""App settings + pipeline JSON → one validated, frozen ``Settings`` object.

Built once at the edge (function app start, CLI start) from the environment the
Functions host provides. Every problem is collected and reported together in a
``ConfigError`` naming the pipeline, the field and the fix. Secrets are resolved
here and kept out of ``repr``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from shared.durations import format_duration, parse_duration, parse_timestamp
from shared.errors import ConfigError

__all__ = [
    "DEFAULT_ENDPOINTS",
    "AuthConfig",
    "ExportSourceConfig",
    "Pipeline",
    "QuerySourceConfig",
    "Settings",
    "SinkConfig",
    "SourceConfig",
    "StorageConfig",
    "WindowConfig",
]

DEFAULT_ENDPOINTS = {
    "app_insights": "https://api.applicationinsights.io",
    "log_analytics": "https://api.loganalytics.azure.com",
}
DEFAULT_SCOPES = {
    "app_insights": "https://api.applicationinsights.io/.default",
    "log_analytics": "https://api.loganalytics.io/.default",
}
DEFAULT_TIME_COLUMN = {"app_insights": "timestamp", "log_analytics": "TimeGenerated"}
DEFAULT_PATH = "{pipeline}/y={yyyy}/m={MM}/d={dd}/h={HH}/{window}"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_PLACEHOLDERS = frozenset({"pipeline", "table", "yyyy", "MM", "dd", "HH", "mm", "window", "window_end", "part"})
_SIZES_PER_DAY = 86400
_WINDOW_DURATIONS = {"delay": "PT5M", "retry_backoff": "PT2M", "lease": "PT10M", "resweep_lookback": "PT0S"}
_ID_HINT = {"app_insights": "Application ID from the API Access blade", "log_analytics": "workspace ID"}
_SECRET_NAME = {"api_key": "API key", "token": "bearer token"}


@dataclass(frozen=True)
class AuthConfig:
    """How the source proves who it is.

    ``entra``: azure-identity ``DefaultAzureCredential`` (managed identity in Azure,
    developer login locally); ``managed_identity``: a specific (user-assigned) identity;
    ``api_key``: legacy ``x-api-key`` (retired for the public cloud on 2026-03-31, kept for
    local emulators); ``token``: a fixed bearer token from a setting (local/dev only).
    """

    kind: Literal["entra", "managed_identity", "api_key", "token"]
    scope: str
    client_id: str | None = None
    secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StorageConfig:
    """A storage account as the Functions host describes connections.

    Either a connection string (``conn_string``) or identity-based URIs from
    ``<setting>__blobServiceUri`` / ``__tableServiceUri`` (+ optional ``__clientId``).
    """

    setting: str
    conn_string: str | None = field(default=None, repr=False)
    blob_uri: str | None = None
    table_uri: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class QuerySourceConfig:
    """KQL over the App Insights (``/v1/apps/{id}``) or Log Analytics (``/v1/workspaces/{id}``) API."""

    kind: Literal["app_insights", "log_analytics"]
    resource_id: str
    endpoint: str
    query: str
    table: str
    time_column: str
    auth: AuthConfig
    max_rows_per_query: int = 10_000
    timeout_s: float = 180.0
    max_retries: int = 6


@dataclass(frozen=True)
class ExportSourceConfig:
    """Hour folders of exported blobs (legacy continuous export or diagnostic settings).

    ``table`` is the classic table the folder holds (``requests``…). ``min_delay`` is the
    least window delay this kind tolerates: a diagnostic-settings ``PT1H.json`` keeps
    growing after its hour ends. ``batch_rows``, ``list_page_size`` and
    ``download_concurrency`` bound memory and tune throughput (see docs/blob-sources.md).
    """

    kind: Literal["continuous_export", "diagnostic_settings"]
    storage: StorageConfig
    container: str
    prefix: str
    folder_template: str
    table: str
    telemetry_type: str | None = None
    late_lookback: timedelta = timedelta(hours=6)
    min_delay: timedelta = timedelta(minutes=5)
    batch_rows: int = 5_000
    list_page_size: int = 5_000
    download_concurrency: int = 4


SourceConfig = QuerySourceConfig | ExportSourceConfig


@dataclass(frozen=True)
class SinkConfig:
    """Where and how a window's rows land."""

    kind: Literal["blob", "table"]
    storage: StorageConfig
    container: str
    path: str = DEFAULT_PATH
    format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    compression: str = "gzip"
    row_group_rows: int = 25_000


@dataclass(frozen=True)
class WindowConfig:
    """Tumbling-window schedule of one pipeline."""

    size: timedelta
    start: datetime
    end: datetime | None = None
    delay: timedelta = timedelta(minutes=5)
    max_per_tick: int = 12
    max_attempts: int = 5
    retry_backoff: timedelta = timedelta(minutes=2)
    lease: timedelta = timedelta(minutes=10)
    resweep_lookback: timedelta = timedelta(0)


@dataclass(frozen=True)
class Pipeline:
    name: str
    source: SourceConfig
    window: WindowConfig
    sinks: tuple[SinkConfig, ...]
    columns: Any = None
    enabled: bool = True


@dataclass(frozen=True)
class Settings:
    pipelines: tuple[Pipeline, ...]
    state: StorageConfig
    ledger_table: str = "moverledger"
    quarantine_container: str = "mover-quarantine"
    schedule: str = "0 */5 * * * *"
    max_concurrency: int = 4
    time_budget: timedelta = timedelta(minutes=4)
    replay_max_windows: int = 24 * 31
    replay_inline_windows: int = 6
    checkpoint_after: timedelta = timedelta(minutes=8)

    def pipeline(self, name: str) -> Pipeline:
        for p in self.pipelines:
            if p.name == name:
                return p
        raise KeyError(name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Parse app settings; raises ``ConfigError`` listing every problem."""
        return _Parser(dict(os.environ if env is None else env)).settings()


def load_local_settings(path: str | Path) -> dict[str, str]:
    """``Values`` of a Functions ``local.settings.json`` (what ``func start`` puts in the env)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    values = data.get("Values", {})
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: 'Values' must be an object")
    return {str(k): str(v) for k, v in values.items()}


class _Parser:
    """Collects problems instead of stopping at the first."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    # -- app settings -------------------------------------------------------------------
    def settings(self) -> Settings:
        raw = self.env.get("MOVER_PIPELINES", "").strip()
        doc: Any = None
        if not raw:
            self.fail(
                "MOVER_PIPELINES",
                "missing; set it to the pipelines JSON or a path to a JSON file (see README)",
            )
        else:
            doc = self._load_json(raw)
        state = self.storage(
            "MOVER_STATE_CONNECTION", self.env.get("MOVER_STATE_CONNECTION_SETTING", "AzureWebJobsStorage")
        )
        pipelines: list[Pipeline] = []
        if doc is not None:
            items = doc.get("pipelines") if isinstance(doc, dict) else doc
            if not isinstance(items, list) or not items:
                self.fail("MOVER_PIPELINES", 'expected {"pipelines": [ ... ]} with at least one pipeline')
            else:
                for i, item in enumerate(items):
                    p = self.pipeline(i, item)
                    if p is not None:
                        pipelines.append(p)
                names = [p.name for p in pipelines]
                for dup in sorted({n for n in names if names.count(n) > 1}):
                    self.fail(f"pipeline {dup!r}", "name used twice; names must be unique")
        ledger_table = self.env.get("MOVER_LEDGER_TABLE", "moverledger")
        if not _TABLE_NAME.match(ledger_table):
            self.fail("MOVER_LEDGER_TABLE", f"{ledger_table!r} is not a valid table name (3-63 letters/digits)")
        quarantine = self.env.get("MOVER_QUARANTINE_CONTAINER", "mover-quarantine")
        if not _CONTAINER.match(quarantine):
            self.fail("MOVER_QUARANTINE_CONTAINER", f"{quarantine!r} is not a valid container name")
        settings = Settings(
            pipelines=tuple(pipelines),
            state=state,
            ledger_table=ledger_table,
            quarantine_container=quarantine,
            schedule=self.env.get("MOVER_SCHEDULE", "0 */5 * * * *"),
            max_concurrency=self.int_setting("MOVER_MAX_CONCURRENCY", 4, 1, 64),
            time_budget=self.duration_setting("MOVER_TIME_BUDGET", timedelta(minutes=4)),
            checkpoint_after=self.duration_setting("MOVER_CHECKPOINT_AFTER", timedelta(minutes=8)),
            replay_max_windows=self.int_setting("MOVER_REPLAY_MAX_WINDOWS", 24 * 31, 1, 100_000),
            replay_inline_windows=self.int_setting("MOVER_REPLAY_INLINE_WINDOWS", 6, 0, 1000),
        )
        if self.problems:
            raise ConfigError(self.problems)
        return settings

    def _load_json(self, raw: str) -> Any:
        text = raw
        if not raw.lstrip().startswith(("{", "[")):
            path = Path(raw)
            if not path.is_file():
                self.fail("MOVER_PIPELINES", f"not JSON and no such file: {raw!r}")
                return None
            text = path.read_text(encoding="utf-8")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            self.fail("MOVER_PIPELINES", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
            return None

    def int_setting(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            self.fail(name, f"expected a whole number, got {raw!r}")
            return default
        if not low <= value <= high:
            self.fail(name, f"must be between {low} and {high}, got {value}")
        return value

    def duration_setting(self, name: str, default: timedelta) -> timedelta:
        raw = self.env.get(name)
        if not raw:
            return default
        try:
            return parse_duration(raw)
        except ValueError as exc:
            self.fail(name, str(exc))
            return default

    def whole(self, where: str, raw: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
        """``raw[key]`` as a whole number in ``[low, high]``; ``default`` when absent (or invalid, reported)."""
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(where, f"'{key}' must be a whole number from {low} to {high}")
            return default
        return value

    def duration_field(self, where: str, raw: Mapping[str, Any], key: str, default: str) -> timedelta:
        """``raw[key]`` as an ISO 8601 duration; ``default`` when absent (or invalid, reported)."""
        try:
            return parse_duration(str(raw.get(key, default)))
        except ValueError as exc:
            self.fail(where, f"'{key}': {exc}")
            return parse_duration(default)

    def reject_unknown(self, where: str, raw: Mapping[str, Any], known: set[str]) -> None:
        for key in sorted(set(raw) - known):
            self.fail(where, f"unknown field {key!r}; allowed: {', '.join(sorted(known))}")

    def storage(self, where: str, setting: str) -> StorageConfig:
        """Resolve a connection setting the way the Functions host does."""
        conn = self.env.get(setting)
        blob_uri = self.env.get(f"{setting}__blobServiceUri") or self.env.get(f"{setting}__serviceUri")
        table_uri = self.env.get(f"{setting}__tableServiceUri")
        account = self.env.get(f"{setting}__accountName")
        if account and not blob_uri:
            blob_uri = f"https://{account}.blob.core.windows.net"
        if account and not table_uri:
            table_uri = f"https://{account}.table.core.windows.net"
        if not conn and not blob_uri and not table_uri:
            self.fail(
                where,
                f"app setting {setting!r} is not set; give a storage connection string "
                f"(UseDevelopmentStorage=true for Azurite) or {setting}__accountName for managed identity",
            )
            return StorageConfig(setting=setting)
        if conn:
            conn = conn.strip().rstrip(";")  # the Tables SDK rejects a trailing ';'
        return StorageConfig(
            setting=setting,
            conn_string=conn or None,
            blob_uri=blob_uri,
            table_uri=table_uri,
            client_id=self.env.get(f"{setting}__clientId"),
        )

    # -- pipelines ------------------------------------------------------------------------
    def pipeline(self, index: int, item: Any) -> Pipeline | None:
        where = f"pipelines[{index}]"
        if not isinstance(item, dict):
            self.fail(where, "must be an object")
            return None
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            self.fail(where, f"'name' must be 1-63 letters, digits, '-' or '_' starting with a letter; got {name!r}")
            return None
        where = f"pipeline {name!r}"
        known = {"name", "source", "window", "sink", "sinks", "columns", "enabled", "description"}
        self.reject_unknown(where, item, known)
        before = len(self.problems)
        source = self.source(where, name, item.get("source"))
        window = self.window(where, item.get("window"), source)
        raw_sinks = item.get("sinks", [item["sink"]] if "sink" in item else None)
        sinks: list[SinkConfig] = []
        if not isinstance(raw_sinks, list) or not raw_sinks:
            self.fail(where, "needs 'sink' (an object) or 'sinks' (a non-empty list)")
        else:
            for j, raw in enumerate(raw_sinks):
                sink = self.sink(f"{where} sinks[{j}]", raw)
                if sink is not None:
                    sinks.append(sink)
        columns = item.get("columns")
        if columns is not None:
            columns = self.columns(where, columns)
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            self.fail(where, "'enabled' must be true or false")
        if len(self.problems) > before or source is None or window is None:
            return None
        return Pipeline(
            name=name, source=source, window=window, sinks=tuple(sinks), columns=columns, enabled=bool(enabled)
        )

    def columns(self, where: str, raw: Any) -> Any:
        from shared import mapping  # local import: mapping owns the column-spec grammar

        try:
            return mapping.parse_column_spec(raw)
        except ValueError as exc:
            self.fail(f"{where} columns", str(exc))
            return None

    def source(self, where: str, pipeline: str, raw: Any) -> SourceConfig | None:
        where = f"{where} source"
        if not isinstance(raw, dict):
            self.fail(
                where,
                "must be an object with 'kind' (app_insights, log_analytics, continuous_export, diagnostic_settings)",
            )
            return None
        kind = raw.get("kind", "app_insights")
        if kind in ("app_insights", "log_analytics"):
            return self.query_source(where, pipeline, kind, raw)
        if kind in ("continuous_export", "diagnostic_settings"):
            return self.export_source(where, pipeline, kind, raw)
        self.fail(
            where, f"unknown kind {kind!r}; use app_insights, log_analytics, continuous_export or diagnostic_settings"
        )
        return None

    def query_source(
        self, where: str, pipeline: str, kind: Literal["app_insights", "log_analytics"], raw: dict[str, Any]
    ) -> QuerySourceConfig | None:
        id_field = "app_id" if kind == "app_insights" else "workspace_id"
        resource_id = raw.get(id_field)
        if not isinstance(resource_id, str) or not re.match(r"^[A-Za-z0-9-]{1,64}$", resource_id):
            self.fail(
                where,
                f"'{id_field}' is required (the {_ID_HINT[kind]}; letters, digits, '-')",
            )
        endpoint = raw.get("endpoint", DEFAULT_ENDPOINTS[kind])
        if not isinstance(endpoint, str) or not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", endpoint):
            self.fail(where, f"'endpoint' must be a base URL like {DEFAULT_ENDPOINTS[kind]}; got {endpoint!r}")
            endpoint = DEFAULT_ENDPOINTS[kind]
        query = raw.get("query", raw.get("table"))
        if not isinstance(query, str) or not query.strip():
            self.fail(where, "'query' is required: a table name (e.g. requests) or a KQL query without time bounds")
            query = ""
        query = query.strip()
        table = raw.get("table_name") or (query if _IDENT.match(query) else pipeline)
        time_column = raw.get("time_column", DEFAULT_TIME_COLUMN[kind])
        if not isinstance(time_column, str) or not _IDENT.match(time_column):
            self.fail(where, f"'time_column' must be a column name; got {time_column!r}")
        for bad in (";", "\x00"):
            if bad in query:
                self.fail(where, f"'query' must be a single KQL expression (no {bad!r})")
        auth = self.auth(where, kind, raw.get("auth"))
        max_rows = self.whole(where, raw, "max_rows_per_query", 10_000, 1, 500_000)
        timeout = raw.get("timeout_seconds", 180)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 1 <= timeout <= 600:
            self.fail(where, "'timeout_seconds' must be a number from 1 to 600")
            timeout = 180
        retries = self.whole(where, raw, "max_retries", 6, 0, 20)
        if auth is None or not isinstance(resource_id, str):
            return None
        return QuerySourceConfig(
            kind=kind,
            resource_id=resource_id,
            endpoint=endpoint.rstrip("/"),
            query=query,
            table=str(table),
            time_column=str(time_column),
            auth=auth,
            max_rows_per_query=max_rows,
            timeout_s=float(timeout),
            max_retries=retries,
        )

    def auth(self, where: str, kind: str, raw: Any) -> AuthConfig | None:
        raw = {"kind": "entra"} if raw is None else raw
        where = f"{where} auth"
        if not isinstance(raw, dict):
            self.fail(where, 'must be an object like {"kind": "entra"}')
            return None
        scope = str(raw.get("scope", DEFAULT_SCOPES[kind]))
        akind = raw.get("kind", "entra")
        if akind in ("entra", "managed_identity"):
            client_id = raw.get("client_id")
            if akind == "managed_identity" and client_id is not None and not isinstance(client_id, str):
                self.fail(where, "'client_id' must be a string (the user-assigned identity's client ID)")
            return AuthConfig(kind=akind, scope=scope, client_id=client_id)
        if akind in ("api_key", "token"):
            setting = raw.get("setting")
            if not isinstance(setting, str) or not setting:
                self.fail(
                    where,
                    f"'setting' must name the app setting that holds the {_SECRET_NAME[akind]}",
                )
                return None
            secret = self.env.get(setting)
            if not secret:
                self.fail(
                    where,
                    f"app setting {setting!r} is not set (it should hold the {_SECRET_NAME[akind]})",
                )
                return None
            return AuthConfig(kind=akind, scope=scope, secret=secret)
        self.fail(where, f"unknown kind {akind!r}; use entra, managed_identity, api_key or token")
        return None

    def export_source(
        self, where: str, pipeline: str, kind: Literal["continuous_export", "diagnostic_settings"], raw: dict[str, Any]
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
        self.reject_unknown(where, raw, known)
        storage = self.storage(where, str(raw.get("connection_setting", "AzureWebJobsStorage")))
        container = raw.get("container")
        if not isinstance(container, str) or not _CONTAINER.match(container):
            self.fail(where, f"'container' must be a valid blob container name; got {container!r}")
        prefix = str(raw.get("prefix", "")).strip("/")
        default_template = (
            "{prefix}/{yyyy}-{MM}-{dd}/{HH}/"
            if kind == "continuous_export"
            else "{prefix}/y={yyyy}/m={MM}/d={dd}/h={HH}/m=00/"
        )
        template = str(raw.get("folder_template", default_template))
        for needed in ("{yyyy}", "{MM}", "{dd}", "{HH}"):
            if needed not in template:
                self.fail(where, f"'folder_template' must contain {needed} (one folder per hour)")
        for unknown in sorted(set(re.findall(r"{([^{}]*)}", template)) - {"prefix", "yyyy", "MM", "dd", "HH"}):
            self.fail(
                where, f"'folder_template' has unknown placeholder {{{unknown}}}; allowed: prefix, yyyy, MM, dd, HH"
            )
        ttype = raw.get("telemetry_type")
        if ttype is not None and not isinstance(ttype, str):
            self.fail(where, "'telemetry_type' must be a string like Requests")
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
            self.fail(
                where,
                f"table {table!r} is not an Application Insights table; set 'table_name' to one of"
                f" {', '.join(mapping.TABLES)} (or 'telemetry_type' to a continuous-export folder type like Requests)",
            )
        elif implied and classic != implied:
            holder = "prefix" if kind == "continuous_export" else "container"
            self.fail(
                where,
                f"'table_name'/'telemetry_type' says {classic} but the {holder} holds {implied};"
                " every line would be quarantined",
            )

        lookback = self.duration_field(where, raw, "late_lookback", "PT6H")
        if lookback > timedelta(days=7):
            self.fail(where, "'late_lookback' must be at most P7D (each tick lists every folder in it again)")
        # An append blob PT1H.json is written until after its hour has ended: reading it early
        # would move a partial hour (its growth would still follow, but as a late part).
        floor = timedelta(minutes=5) if kind == "diagnostic_settings" else timedelta(0)
        min_delay = self.duration_field(where, raw, "min_delay", "PT15M" if kind == "diagnostic_settings" else "PT5M")
        if min_delay < floor:
            self.fail(
                where,
                f"'min_delay' must be at least PT5M for diagnostic_settings (PT1H.json blobs keep growing after"
                f" their hour); got {raw.get('min_delay')}",
            )
        batch_rows = self.whole(where, raw, "batch_rows", 5_000, 100, 100_000)
        page_size = self.whole(where, raw, "list_page_size", 5_000, 1, 5_000)
        concurrency = self.whole(where, raw, "download_concurrency", 4, 1, 32)
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

    def window(self, where: str, raw: Any, source: SourceConfig | None) -> WindowConfig | None:
        where = f"{where} window"
        if not isinstance(raw, dict):
            self.fail(where, 'must be an object like {"size": "PT1H", "start": "2026-11-01T00:00:00Z"}')
            return None

        size = self.duration_field(where, raw, "size", "PT1H")
        if size < timedelta(minutes=1) or size > timedelta(days=1) or _SIZES_PER_DAY % int(size.total_seconds()):
            self.fail(where, "'size' must divide a day evenly, from PT1M to P1D (e.g. PT5M, PT15M, PT1H, P1D)")
            return None
        if isinstance(source, ExportSourceConfig) and size != timedelta(hours=1):
            self.fail(where, f"'size' must be PT1H for {source.kind} sources (they are laid out in hour folders)")
        start = self.ts(where, "start", raw.get("start"), required=True)
        end = self.ts(where, "end", raw.get("end"), required=False)
        for key, value in (("start", start), ("end", end)):
            if value is not None and int(value.timestamp()) % int(size.total_seconds()):
                self.fail(where, f"'{key}' {value.isoformat()} is not aligned to the window size {raw.get('size')}")
        if start and end and end <= start:
            self.fail(where, "'end' must be after 'start'")

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
        self.reject_unknown(where, raw, known)
        durations = {k: self.duration_field(where, raw, k, d) for k, d in _WINDOW_DURATIONS.items()}
        max_per_tick = self.whole(where, raw, "max_per_tick", 12, 1, 10_000)
        max_attempts = self.whole(where, raw, "max_attempts", 5, 1, 100)
        if start is None:
            return None
        config = WindowConfig(
            size=size, start=start, end=end, max_per_tick=max_per_tick, max_attempts=max_attempts, **durations
        )
        if isinstance(source, ExportSourceConfig):
            if "delay" not in raw:
                config = dataclasses.replace(config, delay=max(config.delay, source.min_delay))
            elif config.delay < source.min_delay:
                self.fail(
                    where,
                    f"'delay' must be at least {format_duration(source.min_delay)} for {source.kind} sources"
                    f" (exported blobs keep growing after their hour); got {raw['delay']}",
                )
        return config

    def ts(self, where: str, key: str, raw: Any, *, required: bool) -> datetime | None:
        if raw is None:
            if required:
                self.fail(where, f"'{key}' is required (ISO 8601 UTC, e.g. 2026-11-01T00:00:00Z)")
            return None
        try:
            return parse_timestamp(str(raw))
        except ValueError as exc:
            self.fail(where, f"'{key}': {exc}")
            return None

    def sink(self, where: str, raw: Any) -> SinkConfig | None:
        if not isinstance(raw, dict):
            self.fail(where, 'must be an object like {"kind": "blob", "container": "telemetry"}')
            return None
        kind = raw.get("kind", "blob")
        if kind not in ("blob", "table"):
            self.fail(where, f"unknown kind {kind!r}; use blob or table")
            return None
        storage = self.storage(where, str(raw.get("connection_setting", "AzureWebJobsStorage")))
        container = raw.get("container" if kind == "blob" else "table")
        if kind == "blob" and (not isinstance(container, str) or not _CONTAINER.match(container)):
            self.fail(
                where,
                f"'container' must be a valid blob container name (3-63 lowercase letters, digits, '-');"
                f" got {container!r}",
            )
        if kind == "table" and (not isinstance(container, str) or not _TABLE_NAME.match(container)):
            self.fail(where, f"'table' must be a valid table name (3-63 letters/digits); got {container!r}")
        fmt = raw.get("format", "jsonl")
        if fmt not in ("jsonl", "csv", "parquet"):
            self.fail(where, f"'format' must be jsonl, csv or parquet; got {fmt!r}")
        compression = raw.get("compression", "snappy" if fmt == "parquet" else "gzip")
        allowed = ("snappy", "zstd", "gzip", "none") if fmt == "parquet" else ("gzip", "none")
        if compression not in allowed:
            self.fail(where, f"'compression' for {fmt} must be one of {', '.join(allowed)}; got {compression!r}")
        path = raw.get("path", DEFAULT_PATH)
        if not isinstance(path, str):
            self.fail(where, "'path' must be a string template")
            path = DEFAULT_PATH
        names = set(re.findall(r"{([^{}]*)}", path))
        for unknown in sorted(names - _PLACEHOLDERS):
            self.fail(
                where, f"'path' has unknown placeholder {{{unknown}}}; allowed: {', '.join(sorted(_PLACEHOLDERS))}"
            )
        if kind == "blob" and not ({"window"} <= names or {"yyyy", "MM", "dd", "HH", "mm"} <= names):
            self.fail(
                where, "'path' must contain {window} (or {yyyy} {MM} {dd} {HH} {mm}) so each window has its own name"
            )
        rg = self.whole(where, raw, "row_group_rows", 25_000, 1_000, 1_000_000)
        if not isinstance(container, str):
            return None
        return SinkConfig(
            kind=kind,
            storage=storage,
            container=container,
            path=path.strip("/"),
            format=fmt if fmt in ("jsonl", "csv", "parquet") else "jsonl",
            compression=str(compression),
            row_group_rows=rg,
        )
