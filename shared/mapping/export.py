"""Continuous export (Export Data Model) → rows of the classic tables.

One exported line holds a one-element payload array under a type key (``request``,
``remoteDependency`` …), a common ``context`` and ``internal.data.id``. Each type's columns
are compiled once into getters (see ``_build``); per record we find the payload key, read
the event time, and run the prebuilt getters. Durations arrive in ticks (10,000 = 1 ms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.errors import DataError
from shared.mapping._build import EMPTY, FieldSpec, compile_getters
from shared.mapping.export_values import availability_success, bucket, duration, sev, success, url
from shared.mapping.normalize import row_normalizer
from shared.mapping.schemas import EXPORT_PAYLOADS, ITEM_TYPES, LAYOUTS
from shared.mapping.values import (
    brief,
    normalize_timestamp,
    to_int,
    to_real,
    to_str,
)

__all__ = ["map_export_record"]

Specific = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], list[Any]]

def _plain(specs: tuple[FieldSpec, ...], table: str) -> Specific:
    getters = compile_getters(specs, LAYOUTS[table].specific)

    def specific(item: dict[str, Any], ctx: dict[str, Any], record: dict[str, Any]) -> list[Any]:
        return [get(item) for get in getters]

    return specific


def _first(obj: dict[str, Any], *keys: str) -> Any:
    """The first of ``keys`` present with a non-null value (``""`` counts as present)."""
    for key in keys:
        value = obj.get(key)
        if value is not None:
            return value
    return None


def _strs(values: list[Any]) -> list[Any]:
    return [v if v is None or v.__class__ is str else to_str(v) for v in values]


def _top_frame(item: dict[str, Any]) -> dict[str, Any]:
    stack = item.get("parsedStack")
    if stack.__class__ is list and stack and stack[0].__class__ is dict:
        return stack[0]
    return EMPTY


_DETAIL_KEYS = (
    ("id", "id"),
    ("outerId", "outerId"),
    ("exceptionType", "type"),
    ("message", "message"),
    ("hasFullStack", "hasFullStack"),
    ("parsedStack", "parsedStack"),
    ("stack", "stack"),
)


def _exception(item: dict[str, Any], ctx: dict[str, Any], record: dict[str, Any]) -> list[Any]:
    """Outer fields from the first basicException entry, innermost* from the last one, and
    ``details`` as the list of entries (type/message/ids/stack) like the classic column.
    ``problemId`` is derived as ``"<type> at <method>"`` when the record carries none."""
    entries = record.get("basicException")
    chain = [e for e in entries if e.__class__ is dict] if entries.__class__ is list else []
    if not chain:
        chain = [item]
    last = chain[-1]
    top, last_top = _top_frame(item), _top_frame(last)
    details = [d for e in chain if (d := {out: e[key] for key, out in _DETAIL_KEYS if e.get(key) is not None})]
    kind = _first(item, "exceptionType", "typeName")
    method = _first(item, "method", "failedUserCodeMethod") or top.get("method")
    problem = _first(item, "problemId", "exceptionGroup")
    if problem is None and kind:
        # App Insights' grouping key: "<type> at <failing method>".
        problem = f"{kind} at {method}" if method else kind
    strings = _strs(
        [
            problem,
            item.get("handledAt"),
            kind,
            item.get("message"),
            _first(item, "assembly", "failedUserCodeAssembly") or top.get("assembly"),
            method,
            item.get("outerExceptionType"),
            item.get("outerExceptionMessage"),
            item.get("outerExceptionThrownAtAssembly"),
            item.get("outerExceptionThrownAtMethod"),
            _first(last, "exceptionType", "typeName"),
            last.get("message"),
            _first(last, "assembly", "failedUserCodeAssembly") or last_top.get("assembly"),
            _first(last, "method", "failedUserCodeMethod") or last_top.get("method"),
        ]
    )
    strings.append(sev(item))
    strings.append(details or None)
    return strings


def _metric(item: dict[str, Any], ctx: dict[str, Any], record: dict[str, Any]) -> list[Any]:
    """TrackMetric values live in ``context.custom.metrics[0]`` as ``{name: {value, count,
    min, max, stdDev, sum}}`` (``metric`` is an empty array); a ``metric[0]`` object with a
    ``name`` is read too. Only the first metric is used, as App Insights storage does."""
    name: Any = None
    data: Any = None
    if item.get("name") is not None:
        name, data = item.get("name"), item
    else:
        custom = ctx.get("custom")
        metrics = custom.get("metrics") if custom.__class__ is dict else None
        if metrics.__class__ is list:
            for entry in metrics:
                if entry.__class__ is dict and entry:
                    name, data = next(iter(entry.items()))
                    break
    if data.__class__ is not dict:
        data = {"value": data}
    value = to_real(data.get("value"))
    total = data.get("sum")
    return [
        to_str(name),
        value,
        to_int(data.get("count")),
        value if total is None else to_real(total),
        to_real(data.get("min")),
        to_real(data.get("max")),
        to_real(data.get("stdDev")),
    ]


def _perf_counter(item: dict[str, Any], ctx: dict[str, Any], record: dict[str, Any]) -> list[Any]:
    """``performanceCounter[0]``: ``categoryName``/``counterName``/``instanceName``/``value``;
    older exports name the counter by a key holding ``{"value": …}`` — both are read."""
    counter = _first(item, "counterName", "counter")
    value = item.get("value")
    if value.__class__ is dict:
        value = value.get("value")
    if counter is None and value is None:
        for key, sub in item.items():
            if sub.__class__ is dict and "value" in sub:
                counter, value = key, sub["value"]
                break
    return [
        to_str(_first(item, "name") or counter),
        to_str(_first(item, "categoryName", "category")),
        to_str(counter),
        to_str(_first(item, "instanceName", "instance")),
        to_real(value),
    ]


# -- per-type column specs (between ``timestamp`` and ``customDimensions``) -------------------
_PLAIN_SPECS: dict[str, tuple[FieldSpec, ...]] = {
    "requests": (
        "id", "source", "name", url, success, ("responseCode", "resultCode"),
        duration("durationMetric"), bucket("durationMetric"),
    ),
    "dependencies": (
        "id", ("target", "urlData.host"), ("dependencyTypeName", "type"), "name",
        ("commandName", "data", "url"), success, "resultCode",
        duration("durationMetric"), bucket("durationMetric"),
    ),
    "traces": (("raw", "message"), sev),
    "customEvents": ("name",),
    "pageViews": ("id", "name", url, duration("durationMetric"), bucket("durationMetric")),
    "browserTimings": (
        "name", url, duration("networkConnection"), duration("sendRequest"),
        duration("receiveRequest"), duration("clientProcess"), duration("total"), bucket("total"),
    ),
    "availabilityResults": (
        "testRunId", "testName", "runLocation", availability_success, "message",
        "dataSizeMetric.value", duration("durationMetric"), bucket("durationMetric"),
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _TypeMap:
    table: str
    item_type: str
    item_type_first: bool
    specific: Specific
    measurements: bool
    item_count: bool
    normalize: Callable[[list[Any]], list[Any]]


def _type_maps() -> dict[str, _TypeMap]:
    special: dict[str, Specific] = {
        "exceptions": _exception,
        "customMetrics": _metric,
        "performanceCounters": _perf_counter,
    }
    maps = {}
    for key, table in EXPORT_PAYLOADS.items():
        layout = LAYOUTS[table]
        maps[key] = _TypeMap(
            table=table,
            item_type=ITEM_TYPES[table],
            item_type_first=layout.item_type_first,
            specific=special.get(table) or _plain(_PLAIN_SPECS[table], table),
            measurements=layout.measurements,
            item_count=layout.item_count,
            normalize=row_normalizer(layout.columns()),
        )
    return maps


_TYPES = _type_maps()
_PAYLOAD_LIST = ", ".join(EXPORT_PAYLOADS)


# -- common context ----------------------------------------------------------------------
def _sub(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if value.__class__ is dict else EMPTY


def _dimensions(custom: dict[str, Any]) -> dict[str, Any] | None:
    """``[{"k1": "v1"}, {"k2": "v2"}]`` → ``{"k1": "v1", "k2": "v2"}``; empty → null."""
    dims = custom.get("dimensions")
    if dims.__class__ is list:
        merged: dict[str, Any] = {}
        for entry in dims:
            if entry.__class__ is dict:
                merged.update(entry)
        return merged or None
    return (dims or None) if dims.__class__ is dict else None


def _measurements(custom: dict[str, Any]) -> dict[str, Any] | None:
    """``[{"m": {"value": 1.5, …}}]`` → ``{"m": 1.5}``; empty → null."""
    metrics = custom.get("metrics")
    if metrics.__class__ is not list:
        return None
    merged: dict[str, Any] = {}
    for entry in metrics:
        if entry.__class__ is dict:
            for key, value in entry.items():
                merged[key] = value.get("value") if value.__class__ is dict else value
    return merged or None


def _item_count(item: dict[str, Any], data: dict[str, Any]) -> int:
    """``count`` (100 / sampling %) when given, else derived from ``samplingRate``; 1 if unsampled."""
    count = item.get("count")
    if count.__class__ is int and count > 0:
        return count
    count = to_int(count)
    if count is not None and count > 0:
        return count
    rate = to_real(data.get("samplingRate"))
    if rate is not None and 0 < rate <= 100:
        return max(1, round(100 / rate))
    return 1


def _common(ctx: dict[str, Any], record: dict[str, Any]) -> list[Any]:
    """operation_Name … itemId (without itemType/itemCount), strings as the schema says."""
    op = _sub(ctx, "operation")
    user = _sub(ctx, "user")
    device = _sub(ctx, "device")
    loc = _sub(ctx, "location")
    internal = _sub(_sub(record, "internal"), "data")
    values = [
        op.get("name"),
        op.get("id"),
        op.get("parentId"),
        op.get("syntheticSource"),
        _sub(ctx, "session").get("id"),
        user.get("anonId"),
        user.get("authId"),
        user.get("accountId"),
        _sub(ctx, "application").get("version"),
        device.get("type"),
        device.get("deviceModel"),
        device.get("osVersion"),
        loc.get("clientip"),
        loc.get("city"),
        loc.get("province"),
        loc.get("country"),
        device.get("browserVersion") or device.get("browser"),
        device.get("roleName"),
        device.get("roleInstance"),
        None,  # appId: not in the Export Data Model (the blob path names the app)
        None,  # appName
        None,  # iKey: only in the blob path ({app}_{ikey}/…)
        None,  # sdkVersion
        internal.get("id"),
    ]
    for value in values:
        if value is not None and value.__class__ is not str:
            return _strs(values)
    return values


def map_export_record(record: dict[str, Any]) -> tuple[str, list[Any]]:
    """One Export Data Model document → ``(classic table, row in schema(table) order)``.

    Missing or odd fields become null; raises ``DataError`` (the caller quarantines the
    line) only when the record is not an object, has no known payload key or an empty
    payload, or its ``context.data.eventTime`` is missing or not an ISO 8601 UTC timestamp.
    """
    if record.__class__ is not dict:
        raise DataError(f"continuous-export record is not a JSON object but {type(record).__name__}")
    for key in record:
        spec = _TYPES.get(key)
        if spec is not None:
            break
    else:
        raise DataError(
            f"continuous-export record has no known telemetry payload (keys: {brief(list(record))}; "
            f"expected one of: {_PAYLOAD_LIST})"
        )
    items = record[key]
    if items.__class__ is list:
        item = items[0] if items and items[0].__class__ is dict else EMPTY
    else:
        item = items if items.__class__ is dict else EMPTY
    ctx = _sub(record, "context")
    data = _sub(ctx, "data")
    raw_time = data.get("eventTime")
    if raw_time is None:
        raise DataError(f"{key} record has no context.data.eventTime")
    timestamp = normalize_timestamp(raw_time)
    if timestamp is None:
        raise DataError(f"{key} record: context.data.eventTime {brief(raw_time)} is not an ISO 8601 UTC timestamp")
    custom = _sub(ctx, "custom")
    if not item and (key != "metric" or not custom.get("metrics")):
        # Nothing but context: the row would be all nulls. (A metric's values live in
        # context.custom.metrics, its ``metric`` array is empty by design.)
        raise DataError(f"{key} record has an empty payload ({brief(items)}): no telemetry to move")
    row: list[Any] = [timestamp]
    row += spec.specific(item, ctx, record)
    if spec.item_type_first:
        row.append(spec.item_type)
    row.append(_dimensions(custom))
    if spec.measurements:
        row.append(_measurements(custom))
    row += _common(ctx, record)
    if not spec.item_type_first:
        row.append(spec.item_type)
    if spec.item_count:
        row.append(_item_count(item, data))
    return spec.table, spec.normalize(row)
