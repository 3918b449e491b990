"""Table schemas: classic App Insights tables and their Log Analytics (``App*``) twins.

The classic schema is the primary one: rows are stored (and generated) in the classic
column order. A workspace row is *derived* from the classic row through a fixed column
mapping, so both APIs always show the same telemetry, just as a workspace-based
Application Insights resource does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson

from .timeutil import parse_datetime, to_ticks

__all__ = [
    "CLASSIC_TABLES",
    "WORKSPACE_TABLES",
    "Column",
    "TableSchema",
    "WorkspaceContext",
    "classic_name",
    "normalize_row",
    "resolve_table",
    "workspace_converter",
]


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class TableSchema:
    """One table: ordered columns, the time column, and whether it is a workspace table."""

    name: str
    columns: tuple[Column, ...]
    time_column: str
    workspace: bool = False
    classic: str = ""
    index: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {c.name: i for i, c in enumerate(self.columns)})
        if not self.classic:
            object.__setattr__(self, "classic", self.name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def time_index(self) -> int:
        return self.index[self.time_column]

    def column_json(self) -> bytes:
        """The ``columns`` array as the response shows it (cached per schema)."""
        return _column_json(self)


_COLUMN_JSON: dict[str, bytes] = {}


def _column_json(schema: TableSchema) -> bytes:
    key = schema.name
    if key not in _COLUMN_JSON:
        _COLUMN_JSON[key] = orjson.dumps([{"name": c.name, "type": c.type} for c in schema.columns])
    return _COLUMN_JSON[key]


def _cols(spec: str) -> tuple[Column, ...]:
    """``"name:type name2 ..."``; a bare name is a string column."""
    out = []
    for item in spec.split():
        name, _, typ = item.partition(":")
        out.append(Column(name, typ or "string"))
    return tuple(out)


_CONTEXT = (
    " operation_Name operation_Id operation_ParentId operation_SyntheticSource session_Id "
    "user_Id user_AuthenticatedId user_AccountId application_Version client_Type client_Model "
    "client_OS client_IP client_City client_StateOrProvince client_CountryOrRegion client_Browser "
    "cloud_RoleName cloud_RoleInstance appId appName iKey sdkVersion itemId"
)
_DIMS = " customDimensions:dynamic customMeasurements:dynamic"

# Columns between ``timestamp`` and ``customDimensions``. ``requests`` is exactly the
# sample's column list (itemType after itemId, as for dependencies); the other tables
# print itemType right after their own columns — the same layout as the engine's
# shared/mapping/schemas.py.
_SPECIFIC = {
    "requests": "id source name url success resultCode duration:real performanceBucket",
    "dependencies": "id target type name data success resultCode duration:real performanceBucket",
    "traces": "message severityLevel:int",
    "exceptions": (
        "problemId handledAt type message assembly method outerType outerMessage outerAssembly "
        "outerMethod innermostType innermostMessage innermostAssembly innermostMethod "
        "severityLevel:int details:dynamic"
    ),
    "customEvents": "name",
    "pageViews": "id name url duration:real performanceBucket",
    "availabilityResults": "id name location success message size:real duration:real performanceBucket",
}
_ITEM_TYPE_LAST = frozenset({"requests", "dependencies"})


def _classic(name: str, spec: str) -> TableSchema:
    if name in _ITEM_TYPE_LAST:
        layout = "timestamp:datetime " + spec + _DIMS + _CONTEXT + " itemType itemCount:int"
    else:
        layout = "timestamp:datetime " + spec + " itemType" + _DIMS + _CONTEXT + " itemCount:int"
    return TableSchema(name, _cols(layout), "timestamp")


CLASSIC_TABLES: dict[str, TableSchema] = {name: _classic(name, spec) for name, spec in _SPECIFIC.items()}

ITEM_TYPES = {
    "requests": "request",
    "dependencies": "dependency",
    "traces": "trace",
    "exceptions": "exception",
    "customEvents": "customEvent",
    "pageViews": "pageView",
    "availabilityResults": "availabilityResult",
}


# --- workspace (Log Analytics) tables -------------------------------------------------------
# Each entry: (workspace column, type, source). A source is a classic column name, or a
# `$`-token for values the workspace adds (tenant, resource id, billing columns...).

_WS_CONTEXT: tuple[tuple[str, str, str], ...] = (
    ("Properties", "dynamic", "customDimensions"),
    ("Measurements", "dynamic", "customMeasurements"),
    ("OperationName", "string", "operation_Name"),
    ("OperationId", "string", "operation_Id"),
    ("ParentId", "string", "operation_ParentId"),
    ("SyntheticSource", "string", "operation_SyntheticSource"),
    ("SessionId", "string", "session_Id"),
    ("UserId", "string", "user_Id"),
    ("UserAuthenticatedId", "string", "user_AuthenticatedId"),
    ("UserAccountId", "string", "user_AccountId"),
    ("AppVersion", "string", "application_Version"),
    ("AppRoleName", "string", "cloud_RoleName"),
    ("AppRoleInstance", "string", "cloud_RoleInstance"),
    ("ClientType", "string", "client_Type"),
    ("ClientModel", "string", "client_Model"),
    ("ClientOS", "string", "client_OS"),
    ("ClientIP", "string", "client_IP"),
    ("ClientCity", "string", "client_City"),
    ("ClientStateOrProvince", "string", "client_StateOrProvince"),
    ("ClientCountryOrRegion", "string", "client_CountryOrRegion"),
    ("ClientBrowser", "string", "client_Browser"),
    ("ResourceGUID", "string", "appId"),
    ("IKey", "string", "iKey"),
    ("SDKVersion", "string", "sdkVersion"),
    ("ItemCount", "int", "itemCount"),
)
_WS_REF = (("ReferencedItemId", "string", "$empty"), ("ReferencedType", "string", "$empty"))
_WS_TAIL: tuple[tuple[str, str, str], ...] = (
    ("SourceSystem", "string", "$source_system"),
    ("Type", "string", "$type"),
    ("_ResourceId", "string", "$resource_id"),
    ("_SubscriptionId", "string", "$subscription_id"),
    ("_BilledSize", "real", "$billed_size"),
    ("_IsBillable", "string", "$billable"),
    ("_ItemId", "string", "itemId"),
)
_HEAD = (("TenantId", "string", "$tenant"), ("TimeGenerated", "datetime", "timestamp"))

_WS_SPECS: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    "AppRequests": (
        "requests",
        (
            *_HEAD,
            ("Id", "string", "id"),
            ("Source", "string", "source"),
            ("Name", "string", "name"),
            ("Url", "string", "url"),
            ("Success", "bool", "success"),
            ("ResultCode", "string", "resultCode"),
            ("DurationMs", "real", "duration"),
            ("PerformanceBucket", "string", "performanceBucket"),
            *_WS_CONTEXT,
            *_WS_REF,
            *_WS_TAIL,
        ),
    ),
    "AppDependencies": (
        "dependencies",
        (
            *_HEAD,
            ("Id", "string", "id"),
            ("Target", "string", "target"),
            ("DependencyType", "string", "type"),
            ("Name", "string", "name"),
            ("Data", "string", "data"),
            ("Success", "bool", "success"),
            ("ResultCode", "string", "resultCode"),
            ("DurationMs", "real", "duration"),
            ("PerformanceBucket", "string", "performanceBucket"),
            *_WS_CONTEXT,
            *_WS_REF,
            *_WS_TAIL,
        ),
    ),
    "AppTraces": (
        "traces",
        (
            *_HEAD,
            ("Message", "string", "message"),
            ("SeverityLevel", "int", "severityLevel"),
            *_WS_CONTEXT,
            *_WS_REF,
            *_WS_TAIL,
        ),
    ),
    "AppExceptions": (
        "exceptions",
        (
            *_HEAD,
            ("ProblemId", "string", "problemId"),
            ("HandledAt", "string", "handledAt"),
            ("ExceptionType", "string", "type"),
            ("Message", "string", "message"),
            ("Assembly", "string", "assembly"),
            ("Method", "string", "method"),
            ("OuterType", "string", "outerType"),
            ("OuterMessage", "string", "outerMessage"),
            ("OuterAssembly", "string", "outerAssembly"),
            ("OuterMethod", "string", "outerMethod"),
            ("InnermostType", "string", "innermostType"),
            ("InnermostMessage", "string", "innermostMessage"),
            ("InnermostAssembly", "string", "innermostAssembly"),
            ("InnermostMethod", "string", "innermostMethod"),
            ("SeverityLevel", "int", "severityLevel"),
            ("Details", "dynamic", "details"),
            *_WS_CONTEXT,
            *_WS_TAIL,
        ),
    ),
    "AppEvents": (
        "customEvents",
        (*_HEAD, ("Name", "string", "name"), *_WS_CONTEXT, *_WS_TAIL),
    ),
    "AppPageViews": (
        "pageViews",
        (
            *_HEAD,
            ("Id", "string", "id"),
            ("Name", "string", "name"),
            ("Url", "string", "url"),
            ("DurationMs", "real", "duration"),
            ("PerformanceBucket", "string", "performanceBucket"),
            *_WS_CONTEXT,
            *_WS_TAIL,
        ),
    ),
    "AppAvailabilityResults": (
        "availabilityResults",
        (
            *_HEAD,
            ("Id", "string", "id"),
            ("Name", "string", "name"),
            ("Location", "string", "location"),
            ("Success", "bool", "success"),
            ("Message", "string", "message"),
            ("Size", "real", "size"),
            ("DurationMs", "real", "duration"),
            ("PerformanceBucket", "string", "performanceBucket"),
            *_WS_CONTEXT,
            *_WS_TAIL,
        ),
    ),
}

WORKSPACE_TABLES: dict[str, TableSchema] = {
    name: TableSchema(
        name,
        tuple(Column(c, t) for c, t, _ in spec),
        "TimeGenerated",
        workspace=True,
        classic=classic,
    )
    for name, (classic, spec) in _WS_SPECS.items()
}

_CLASSIC_TO_WS = {s.classic: s.name for s in WORKSPACE_TABLES.values()}


def resolve_table(name: str) -> TableSchema:
    """A classic or workspace table by exact (case-sensitive) name; ``KeyError`` otherwise."""
    if name in CLASSIC_TABLES:
        return CLASSIC_TABLES[name]
    return WORKSPACE_TABLES[name]


def classic_name(name: str) -> str:
    """The classic table that stores the rows of ``name`` (itself for classic names)."""
    return resolve_table(name).classic


@dataclass(frozen=True)
class WorkspaceContext:
    """Values a workspace adds to every row."""

    workspace_id: str
    resource_id: str
    subscription_id: str


def _to_bool(value: Any) -> bool | None:
    if value in ("True", "true", True):
        return True
    if value in ("False", "false", False):
        return False
    return None


def workspace_converter(ws_table: str, ctx: WorkspaceContext) -> Callable[[list[Any], int], list[Any]]:
    """A function mapping a decoded classic row (plus its JSON size) to the workspace row."""
    classic, spec = _WS_SPECS[ws_table]
    src = CLASSIC_TABLES[classic].index
    consts: dict[str, Any] = {
        "$tenant": ctx.workspace_id,
        "$empty": "",
        "$source_system": "Azure",
        "$type": ws_table,
        "$resource_id": ctx.resource_id,
        "$subscription_id": ctx.subscription_id,
        "$billable": "True",
    }
    # One C-level itemgetter copies every classic-sourced cell (constant slots read cell 0
    # as a placeholder); then the few constant / bool / size slots are patched in place.
    picks: list[int] = []
    patches: list[tuple[int, Any]] = []
    bools: list[int] = []
    size_at = -1
    for pos, (_name, typ, source) in enumerate(spec):
        if source == "$billed_size":
            picks.append(0)
            size_at = pos
        elif source.startswith("$"):
            picks.append(0)
            patches.append((pos, consts[source]))
        else:
            picks.append(src[source])
            if typ == "bool":
                bools.append(pos)
    pick = itemgetter(*picks)

    def convert(row: list[Any], size: int) -> list[Any]:
        out = list(pick(row))
        for pos, value in patches:
            out[pos] = value
        for pos in bools:
            out[pos] = _to_bool(out[pos])
        if size_at >= 0:
            out[size_at] = float(size)
        return out

    return convert


def workspace_to_classic_names(ws_table: str) -> dict[str, str]:
    """Workspace column → classic column for the columns copied from the classic row."""
    _classic, spec = _WS_SPECS[ws_table]
    return {c: s for c, _t, s in spec if not s.startswith("$")}


def _cell(col: Column, value: Any) -> Any:
    """One input value → the JSON cell the API would return for this column type."""
    if value is None:
        return "" if col.type == "string" else None
    typ = col.type
    if typ == "string":
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return str(value)
        raise TypeError(f"column {col.name}: expected str, got {type(value).__name__}")
    if typ == "dynamic":
        if isinstance(value, str):
            orjson.loads(value)  # must already be JSON text; raises on garbage
            return value
        return orjson.dumps(value).decode()
    if typ in ("int", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"column {col.name}: expected int, got {type(value).__name__}")
        return value
    if typ == "real":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"column {col.name}: expected number, got {type(value).__name__}")
        return float(value)
    if typ == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"column {col.name}: expected bool, got {type(value).__name__}")
        return value
    raise TypeError(f"column {col.name}: unsupported type {typ}")


def normalize_row(table: TableSchema, row: Mapping[str, Any], defaults: Mapping[str, Any]) -> tuple[int, list[Any]]:
    """Validate an explicit row for a classic table → (timestamp ticks, cells in column order).

    ``defaults`` fill absent columns (itemId, itemType, appId...). Unknown keys raise
    ``KeyError``: a typo must not silently vanish from a test's expectations.
    """
    unknown = set(row) - set(table.index)
    if unknown:
        raise KeyError(f"{table.name}: unknown columns {sorted(unknown)}")
    ts_value = row.get(table.time_column)
    if isinstance(ts_value, datetime):
        ticks = to_ticks(ts_value)
    elif isinstance(ts_value, str):
        ticks = parse_datetime(ts_value)
    else:
        raise ValueError(f"{table.name}: row needs a '{table.time_column}' datetime")
    cells: list[Any] = []
    for col in table.columns:
        if col.name == table.time_column:
            cells.append(None)  # filled by the store from ticks
            continue
        value = row[col.name] if col.name in row else defaults.get(col.name)
        cells.append(_cell(col, value))
    return ticks, cells


def workspace_name(classic: str) -> str:
    return _CLASSIC_TO_WS[classic]


def column_names(schema: TableSchema) -> Sequence[str]:
    return schema.names
