"""Diagnostic settings (workspace schema, ``AppRequests`` …) → rows of the classic tables.

Lines of ``insights-logs-<category>/…/PT1H.json`` carry the workspace columns (PascalCase,
``Success`` as bool, ``DurationMs``, ``Properties`` as an object) and the event time in
``time``. Log Analytics query rows (``TimeGenerated``, ``_ItemId``, ``_ResourceId``) use the
same names, so a row turned into a dict maps the same way. Getters are compiled once per
``Type``; per record it is one dict lookup plus the prebuilt getters.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from shared.errors import DataError
from shared.mapping._build import FieldSpec, Getter, compile_getters
from shared.mapping.normalize import row_normalizer
from shared.mapping.schemas import DIAGNOSTIC_TYPES, ITEM_TYPES, LAYOUTS
from shared.mapping.values import (
    brief,
    normalize_timestamp,
    performance_bucket,
    to_dynamic,
    to_int,
    to_real,
    to_severity,
    to_str,
)

__all__ = ["map_diagnostic_record"]

_TYPE_LIST = ", ".join(DIAGNOSTIC_TYPES)
_ITEM_ID_NAMESPACE = uuid.UUID("5b0f0c8e-6d1b-4c9a-9a57-1d0c6b6e2f41")  # fixed: ids must never change


def _true_false(record: dict[str, Any]) -> str | None:
    """Workspace ``Success`` (bool) → classic ``"True"``/``"False"`` string."""
    value = record.get("Success")
    if value is None:
        return None
    if value.__class__ is not bool:
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0"):
            return None
        value = text in ("true", "1")
    return "True" if value else "False"


def _one_zero(record: dict[str, Any]) -> str | None:
    """Classic availabilityResults.success is ``"1"``/``"0"``."""
    flag = _true_false(record)
    return None if flag is None else ("1" if flag == "True" else "0")


def _bucket(duration_field: str) -> Getter:
    """The stored ``PerformanceBucket``, or computed from the duration when absent."""

    def get(record: dict[str, Any]) -> str | None:
        stored = record.get("PerformanceBucket")
        if stored:
            return to_str(stored)
        return performance_bucket(to_real(record.get(duration_field)))

    return get


def _severity(record: dict[str, Any]) -> int | None:
    return to_severity(record.get("SeverityLevel"))


# Classic column ← workspace field, for the columns between ``timestamp`` and ``customDimensions``.
_SPECS: dict[str, tuple[FieldSpec, ...]] = {
    "requests": ("Id", "Source", "Name", "Url", _true_false, "ResultCode", "DurationMs", _bucket("DurationMs")),
    "dependencies": (
        "Id", "Target", "DependencyType", "Name", "Data", _true_false, "ResultCode", "DurationMs",
        _bucket("DurationMs"),
    ),
    "exceptions": (
        "ProblemId", "HandledAt", "ExceptionType", "Message", "Assembly", "Method", "OuterType",
        "OuterMessage", "OuterAssembly", "OuterMethod", "InnermostType", "InnermostMessage",
        "InnermostAssembly", "InnermostMethod", _severity, "Details",
    ),
    "traces": ("Message", _severity),
    "customEvents": ("Name",),
    "pageViews": ("Id", "Name", "Url", "DurationMs", _bucket("DurationMs")),
    "browserTimings": (
        "Name", "Url", "NetworkDurationMs", "SendDurationMs", "ReceiveDurationMs", "ProcessingDurationMs",
        "TotalDurationMs", _bucket("TotalDurationMs"),
    ),
    "availabilityResults": (
        "Id", "Name", "Location", _one_zero, "Message", "Size", "DurationMs", _bucket("DurationMs"),
    ),
    # AppMetrics dropped ``value``: classic value == valueSum (the SDK's Value is the Sum).
    "customMetrics": (
        "Name", ("Sum", "ValueSum"), ("ItemCount", "ValueCount"), ("Sum", "ValueSum"),
        ("Min", "ValueMin"), ("Max", "ValueMax"), "ValueStdDev",
    ),
    # AppPerformanceCounters dropped ``Counter``: classic counter == name.
    "performanceCounters": ("Name", "Category", ("Counter", "Name"), "Instance", "Value"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _TypeMap:
    table: str
    item_type: str
    item_type_first: bool
    getters: tuple[Getter, ...]
    measurements: bool
    item_count: bool
    normalize: Callable[[list[Any]], list[Any]]


def _type_maps() -> dict[str, _TypeMap]:
    maps = {}
    for kind, table in DIAGNOSTIC_TYPES.items():
        layout = LAYOUTS[table]
        maps[kind] = _TypeMap(
            table=table,
            item_type=ITEM_TYPES[table],
            item_type_first=layout.item_type_first,
            getters=compile_getters(_SPECS[table], layout.specific),
            measurements=layout.measurements,
            item_count=layout.item_count,
            normalize=row_normalizer(layout.columns()),
        )
    return maps


_TYPES = _type_maps()


def _dynamic(value: Any) -> Any:
    """``Properties``/``Measurements``: an object (or its JSON text); empty → null."""
    value = to_dynamic(value)
    return value or None


def _app_name(record: dict[str, Any]) -> str | None:
    """Classic ``appName`` is the component's name: the last segment of the resource id
    (resource logs upper-case it; Azure resource names are case-insensitive, so lower-case)."""
    rid = record.get("_ResourceId") or record.get("resourceId")
    if not isinstance(rid, str) or not rid.strip("/"):
        return None
    return rid.rstrip("/").rsplit("/", 1)[-1].lower()


def _derived_item_id(record: dict[str, Any]) -> str:
    """Resource-log lines carry no ``_ItemId``: a UUID (v5) of the line's content, so a rerun
    (and the Table sink's row key) gets the same id; it is not the service's item id."""
    try:
        doc = orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        doc = repr(sorted(record.items(), key=lambda kv: str(kv[0]))).encode("utf-8", "surrogatepass")
    return str(uuid.uuid5(_ITEM_ID_NAMESPACE, doc.decode("utf-8", "surrogatepass")))


def _common(record: dict[str, Any]) -> list[Any]:
    get = record.get
    values = [
        get("OperationName"),
        get("OperationId"),
        get("ParentId"),
        get("SyntheticSource"),
        get("SessionId"),
        get("UserId"),
        get("UserAuthenticatedId"),
        get("UserAccountId"),
        get("AppVersion"),
        get("ClientType"),
        get("ClientModel"),
        get("ClientOS"),
        get("ClientIP"),
        get("ClientCity"),
        get("ClientStateOrProvince"),
        get("ClientCountryOrRegion"),
        get("ClientBrowser"),
        get("AppRoleName"),
        get("AppRoleInstance"),
        get("ResourceGUID"),
        _app_name(record),
        get("IKey"),
        get("SDKVersion"),
        get("_ItemId") or _derived_item_id(record),
    ]
    for value in values:
        if value is not None and value.__class__ is not str:
            return [v if v is None or v.__class__ is str else to_str(v) for v in values]
    return values


def _item_count(record: dict[str, Any]) -> int:
    count = to_int(record.get("ItemCount"))
    return count if count is not None and count > 0 else 1


def map_diagnostic_record(record: dict[str, Any]) -> tuple[str, list[Any]]:
    """One workspace-schema resource-log line → ``(classic table, row in schema(table) order)``.

    Missing or odd fields become null; raises ``DataError`` (the caller quarantines the
    line) when the record is not an object, its ``Type`` is not an Application Insights
    table, or ``time``/``TimeGenerated`` is missing or not an ISO 8601 UTC timestamp.
    """
    if record.__class__ is not dict:
        raise DataError(f"diagnostic-settings record is not a JSON object but {type(record).__name__}")
    kind = record.get("Type")
    spec = _TYPES.get(kind) if kind.__class__ is str else None
    if spec is None:
        raise DataError(f"diagnostic-settings record has unknown Type {brief(kind)}; expected one of: {_TYPE_LIST}")
    raw_time = record.get("time")
    if raw_time is None:
        raw_time = record.get("TimeGenerated")
        if raw_time is None:
            raise DataError(f"{kind} record has neither 'time' nor 'TimeGenerated'")
    timestamp = normalize_timestamp(raw_time)
    if timestamp is None:
        raise DataError(f"{kind} record: time {brief(raw_time)} is not an ISO 8601 UTC timestamp")
    row: list[Any] = [timestamp]
    row += [get(record) for get in spec.getters]
    if spec.item_type_first:
        row.append(spec.item_type)
    row.append(_dynamic(record.get("Properties")))
    if spec.measurements:
        row.append(_dynamic(record.get("Measurements")))
    row += _common(record)
    if not spec.item_type_first:
        row.append(spec.item_type)
    if spec.item_count:
        row.append(_item_count(record))
    return spec.table, spec.normalize(row)
