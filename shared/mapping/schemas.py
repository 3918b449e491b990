"""The classic Application Insights tables: column names, order and KQL types.

One table-like structure (``SCHEMAS``) so that every source lands the same schema for the
same table: the query API (``requests`` …), continuous-export blobs and diagnostic-settings
blobs. ``requests`` is exactly the column list the query API returns
(``samples/query-api/requests-response.json``); the other tables follow the documented
classic schemas (see docs/mapping.md). A local query-API emulator may reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from shared.model import Column

__all__ = [
    "COMMON_COLUMNS",
    "DIAGNOSTIC_CATEGORIES",
    "DIAGNOSTIC_TYPES",
    "EXPORT_PAYLOADS",
    "EXPORT_TYPES",
    "ITEM_TYPES",
    "LAYOUTS",
    "SCHEMAS",
    "TABLES",
    "TableLayout",
    "schema",
]


def _cols(spec: str) -> tuple[Column, ...]:
    """``"a b:real c:dynamic"`` → Columns (string unless typed); keeps the table literal compact."""
    out = []
    for token in spec.split():
        name, _, kql_type = token.partition(":")
        out.append(Column(name, kql_type or "string"))
    return tuple(out)


# Context columns of every classic table, in query-API order (requests-response.json).
COMMON_COLUMNS: tuple[Column, ...] = _cols(
    "operation_Name operation_Id operation_ParentId operation_SyntheticSource session_Id user_Id"
    " user_AuthenticatedId user_AccountId application_Version client_Type client_Model client_OS"
    " client_IP client_City client_StateOrProvince client_CountryOrRegion client_Browser"
    " cloud_RoleName cloud_RoleInstance appId appName iKey sdkVersion itemId"
)

# Table-specific columns between ``timestamp`` and the rest.
_SPECIFIC: dict[str, str] = {
    "requests": "id source name url success resultCode duration:real performanceBucket",
    "dependencies": "id target type name data success resultCode duration:real performanceBucket",
    "exceptions": (
        "problemId handledAt type message assembly method outerType outerMessage outerAssembly"
        " outerMethod innermostType innermostMessage innermostAssembly innermostMethod"
        " severityLevel:int details:dynamic"
    ),
    "traces": "message severityLevel:int",
    "customEvents": "name",
    "pageViews": "id name url duration:real performanceBucket",
    "browserTimings": (
        "name url networkDuration:real sendDuration:real receiveDuration:real"
        " processingDuration:real totalDuration:real performanceBucket"
    ),
    "availabilityResults": "id name location success message size:real duration:real performanceBucket",
    "customMetrics": "name value:real valueCount:int valueSum:real valueMin:real valueMax:real valueStdDev:real",
    "performanceCounters": "name category counter instance value:real",
}


@dataclass(frozen=True)
class TableLayout:
    """How a classic row is laid out: ``timestamp``, ``specific``, [``itemType``],
    ``customDimensions``, [``customMeasurements``], ``COMMON_COLUMNS`` (… ``itemId``),
    [``itemType``], [``itemCount``]. The mappers build rows in exactly this order."""

    specific: tuple[Column, ...]
    item_type_first: bool  # itemType right after the table's own columns (else after itemId)
    measurements: bool  # has customMeasurements
    item_count: bool  # has itemCount

    def columns(self) -> tuple[Column, ...]:
        item_type = (Column("itemType"),)
        return (
            (Column("timestamp", "datetime"),)
            + self.specific
            + (item_type if self.item_type_first else ())
            + (Column("customDimensions", "dynamic"),)
            + ((Column("customMeasurements", "dynamic"),) if self.measurements else ())
            + COMMON_COLUMNS
            + (() if self.item_type_first else item_type)
            + ((Column("itemCount", "int"),) if self.item_count else ())
        )


# requests is exactly the query API's list (samples/query-api/requests-response.json): itemType
# after itemId; dependencies alike. The other classic tables print itemType right after their
# own columns. customMetrics/performanceCounters have no customMeasurements and no itemCount
# (a metric's count is valueCount).
_ITEM_TYPE_LAST = frozenset({"requests", "dependencies"})
_NO_MEASUREMENTS = frozenset({"customMetrics", "performanceCounters"})

LAYOUTS: MappingProxyType[str, TableLayout] = MappingProxyType(
    {
        table: TableLayout(
            specific=_cols(spec),
            item_type_first=table not in _ITEM_TYPE_LAST,
            measurements=table not in _NO_MEASUREMENTS,
            item_count=table not in _NO_MEASUREMENTS,
        )
        for table, spec in _SPECIFIC.items()
    }
)
SCHEMAS: MappingProxyType[str, tuple[Column, ...]] = MappingProxyType(
    {table: layout.columns() for table, layout in LAYOUTS.items()}
)
TABLES: tuple[str, ...] = tuple(SCHEMAS)

# ``itemType`` value of each classic table.
ITEM_TYPES: MappingProxyType[str, str] = MappingProxyType(
    {
        "requests": "request",
        "dependencies": "dependency",
        "exceptions": "exception",
        "traces": "trace",
        "customEvents": "customEvent",
        "pageViews": "pageView",
        "browserTimings": "browserTiming",
        "availabilityResults": "availabilityResult",
        "customMetrics": "customMetric",
        "performanceCounters": "performanceCounter",
    }
)

# Continuous-export folder type → classic table (folder names as the portal wrote them,
# plus the aliases people use in settings).
EXPORT_TYPES: MappingProxyType[str, str] = MappingProxyType(
    {
        "Requests": "requests",
        "Rdd": "dependencies",
        "RemoteDependency": "dependencies",
        "Dependencies": "dependencies",
        "Exceptions": "exceptions",
        "Event": "customEvents",
        "Messages": "traces",
        "PageViews": "pageViews",
        "PageViewPerformance": "browserTimings",
        "Availability": "availabilityResults",
        "Metrics": "customMetrics",
        "PerformanceCounters": "performanceCounters",
    }
)

# Export Data Model payload key (the one-element array beside ``context``) → classic table.
EXPORT_PAYLOADS: MappingProxyType[str, str] = MappingProxyType(
    {
        "request": "requests",
        "remoteDependency": "dependencies",
        "basicException": "exceptions",
        "event": "customEvents",
        "message": "traces",
        "view": "pageViews",
        "clientPerformance": "browserTimings",
        "availability": "availabilityResults",
        "metric": "customMetrics",
        "performanceCounter": "performanceCounters",
    }
)

# Workspace table (``Type`` of a diagnostic-settings line) → classic table.
DIAGNOSTIC_TYPES: MappingProxyType[str, str] = MappingProxyType(
    {
        "AppRequests": "requests",
        "AppDependencies": "dependencies",
        "AppExceptions": "exceptions",
        "AppTraces": "traces",
        "AppEvents": "customEvents",
        "AppPageViews": "pageViews",
        "AppBrowserTimings": "browserTimings",
        "AppAvailabilityResults": "availabilityResults",
        "AppMetrics": "customMetrics",
        "AppPerformanceCounters": "performanceCounters",
    }
)

# Diagnostic-settings container name (``insights-logs-<category>``) → classic table.
DIAGNOSTIC_CATEGORIES: MappingProxyType[str, str] = MappingProxyType(
    {f"insights-logs-{kind.lower()}": table for kind, table in DIAGNOSTIC_TYPES.items()}
)


def schema(table: str) -> tuple[Column, ...]:
    """Columns of a classic table in query-API order.

    Accepts the classic name (``requests``), a workspace name (``AppRequests``) or a
    continuous-export type (``Requests``). Raises ``KeyError`` naming the known tables.
    """
    cols = SCHEMAS.get(table)
    if cols is None:
        classic = DIAGNOSTIC_TYPES.get(table) or EXPORT_TYPES.get(table)
        if classic is None:
            raise KeyError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
        cols = SCHEMAS[classic]
    return cols
