"""The validated settings as frozen dataclasses (what the engine reads; parsing lives beside).

Secrets are resolved by the parser and kept out of ``repr``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from shared.errors import ConfigError
from shared.paths import DEFAULT_PATH

__all__ = [
    "DEFAULT_ENDPOINTS",
    "DEFAULT_PATH",
    "AuthConfig",
    "ExportSourceConfig",
    "Pipeline",
    "QuerySourceConfig",
    "Settings",
    "SinkConfig",
    "SourceConfig",
    "StorageConfig",
    "WindowConfig",
    "load_local_settings",
]

DEFAULT_ENDPOINTS = {
    "app_insights": "https://api.applicationinsights.io",
    "log_analytics": "https://api.loganalytics.azure.com",
}


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
    setting: str | None = None  # the app setting holding the secret (names the identity; not secret)


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
    queue_uri: str | None = None


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
    parallel_queries: int | None = None  # sub-queries of one window in flight; None: the whole query budget
    retention: timedelta = timedelta(days=90)  # how far back the API still holds data (bounds replays)
    max_concurrent_queries: int = 5  # shared by every pipeline with this identity + endpoint (shared/budget.py)
    max_requests_per_30s: int = 180
    # What bounds a window: ``event`` the time column (late rows need re-sweeps), ``ingestion``
    # ``ingestion_time()`` (every row in exactly one window, see shared/sources/kql.py). The request
    # timespan of an ingestion window reaches back ``max_event_lag`` and ahead ``max_event_lead``
    # on the time column: rows whose event time lies further from their ingestion are not returned.
    window_by: Literal["event", "ingestion"] = "event"
    max_event_lag: timedelta = timedelta(days=2)
    max_event_lead: timedelta = timedelta(days=1)

    @property
    def in_flight(self) -> int:
        """Sub-queries of one window at the service at once: ``parallel_queries``, else the whole budget."""
        return self.parallel_queries or self.max_concurrent_queries


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

    kind: Literal["blob", "table", "delta"]
    storage: StorageConfig
    container: str
    path: str = DEFAULT_PATH
    format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    compression: str = "gzip"
    row_group_rows: int = 25_000
    row_group_mb: int = 4  # Parquet/Delta: a row group is also cut at this many MB of pending Arrow data
    gzip_level: int = 5  # JSONL/CSV with gzip: the deflate level (1 fastest … 9 smallest; 5 the default)
    # delta only: partition columns ("" = date_hour for windows under a day, else date),
    # and what the maintenance timer does (compact closed days; vacuum past a retention).
    partition_by: Literal["", "date", "date_hour"] = ""
    optimize: bool = True
    vacuum_retention: timedelta | None = timedelta(days=7)
    # Set at load when another sink of the pipeline writes the same container and path: the
    # manifest is then ``_<window>.<manifest_tag>.manifest.json`` so the two do not collide.
    manifest_tag: str = ""

    @property
    def row_group_bytes(self) -> int:
        """``row_group_mb`` in bytes: what the Parquet writers compare their pending Arrow data with."""
        return self.row_group_mb * 2**20


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
    # The source group a pipeline was expanded from (a query source naming several ``tables``):
    # ``{group}-{table}`` is the pipeline's name; None for a pipeline written as such.
    group: str | None = None


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
    dispatch: Literal["queue", "inline"] = "queue"  # queue: the timer plans, queue-triggered workers move
    queue_name: str = "mover-windows"
    memory_budget_mb: int = 64  # rows read ahead of the writers, per process (shared.runtime.membudget)
    query_handoff_ms: int = 500  # a released query slot waits this long for the process's next query (0: off)

    def pipeline(self, name: str) -> Pipeline:
        for p in self.pipelines:
            if p.name == name:
                return p
        raise KeyError(name)


def load_local_settings(path: str | Path) -> dict[str, str]:
    """``Values`` of a Functions ``local.settings.json`` (what ``func start`` puts in the env)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    values = data.get("Values", {})
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: 'Values' must be an object")
    return {str(k): str(v) for k, v in values.items()}
