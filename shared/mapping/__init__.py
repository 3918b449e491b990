"""Source records → flat typed rows of the classic App Insights tables; user column specs.

Pure logic, no I/O. A window moved through the query API, continuous-export blobs or
diagnostic-settings blobs lands the same table with the same columns (names, order, KQL
types) and canonical values (see ``shared.model``):

* ``map_export_record``      Export Data Model line → (table, row)
* ``map_diagnostic_record``  workspace-schema resource-log line → (table, row)
* ``schema`` / ``SCHEMAS``   the classic tables' columns
* ``parse_column_spec`` / ``apply_columns``  a pipeline's ``columns``: select, rename, add
* ``coerce``                 one value as the canonical value of a KQL type

The full mapping tables and the column-spec reference are in docs/mapping.md.
"""

from __future__ import annotations

from shared.mapping.columns import AddedColumn, ColumnSpec, apply_columns, parse_column_spec, parse_path
from shared.mapping.diagnostic import map_diagnostic_record
from shared.mapping.export import map_export_record
from shared.mapping.schemas import (
    COMMON_COLUMNS,
    DIAGNOSTIC_CATEGORIES,
    DIAGNOSTIC_TYPES,
    EXPORT_PAYLOADS,
    EXPORT_TYPES,
    ITEM_TYPES,
    LAYOUTS,
    SCHEMAS,
    TABLES,
    TableLayout,
    schema,
)
from shared.mapping.values import coerce, normalize_timestamp, performance_bucket

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
    "AddedColumn",
    "ColumnSpec",
    "TableLayout",
    "apply_columns",
    "coerce",
    "map_diagnostic_record",
    "map_export_record",
    "normalize_timestamp",
    "parse_column_spec",
    "parse_path",
    "performance_bucket",
    "schema",
]
