"""Problem collection and field readers shared by the settings parsers.

Parsers report every problem instead of stopping at the first: each reader records
what is wrong (where, what, the fix) and returns a usable default so parsing goes on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared.durations import parse_duration, parse_timestamp
from shared.redact import register_connection_string
from shared.settings.connstr import connection_problems, uri_problem
from shared.settings.model import StorageConfig

__all__ = ["CONTAINER", "IDENT", "NAME", "TABLE_HEAD", "TABLE_NAME", "Fields"]

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
# A KQL query that starts with its table: ``requests`` or ``requests | where success == false``.
TABLE_HEAD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\|[\s\S]*)?$")


class Fields:
    """Collects problems instead of stopping at the first."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self._reported: set[tuple[str, str]] = set()

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def int_setting(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return default
        if not (raw.strip().isascii() and raw.strip().isdigit() and len(raw) <= 18):  # int() would take '١٢'
            self.fail(name, f"expected a whole number, got {raw[:40]!r}")
            return default
        value = int(raw)
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

    def storage(self, where: str, setting: str, services: tuple[str, ...] = ("blob", "table")) -> StorageConfig:
        """Resolve a connection setting the way the Functions host does; a malformed one fails here."""
        conn = self.env.get(setting)
        blob_uri = self.env.get(f"{setting}__blobServiceUri") or self.env.get(f"{setting}__serviceUri")
        table_uri = self.env.get(f"{setting}__tableServiceUri")
        queue_uri = self.env.get(f"{setting}__queueServiceUri")
        account = self.env.get(f"{setting}__accountName")
        if account and not blob_uri:
            blob_uri = f"https://{account}.blob.core.windows.net"
        if account and not table_uri:
            table_uri = f"https://{account}.table.core.windows.net"
        if account and not queue_uri:
            queue_uri = f"https://{account}.queue.core.windows.net"
        if not conn and not blob_uri and not table_uri:
            self.fail(
                where,
                f"app setting {setting!r} is not set; give a storage connection string "
                f"(UseDevelopmentStorage=true for Azurite) or {setting}__accountName for managed identity",
            )
            return StorageConfig(setting=setting)
        if conn:
            conn = conn.strip().rstrip(";")  # the Tables SDK rejects a trailing ';'
            register_connection_string(conn)
            for problem in connection_problems(conn, services):
                if (setting, problem) not in self._reported:  # one setting serves many sinks: say it once
                    self._reported.add((setting, problem))
                    self.fail(where, f"app setting {setting!r}: {problem}")
        for suffix, uri in (("__blobServiceUri", blob_uri), ("__tableServiceUri", table_uri)):
            bad_uri = uri_problem(uri) if uri and not conn else None
            if bad_uri:
                self.fail(where, f"app setting {setting + suffix!r} {bad_uri}")
        return StorageConfig(
            setting=setting,
            conn_string=conn or None,
            blob_uri=blob_uri,
            table_uri=table_uri,
            client_id=self.env.get(f"{setting}__clientId"),
            queue_uri=queue_uri,
        )

    # -- pipelines ------------------------------------------------------------------------
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
