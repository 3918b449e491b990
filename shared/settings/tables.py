"""One query source, every table: ``"tables": [...]`` (or ``"all"``) expands into one pipeline per table.

A team exporting "its Application Insights" wants every telemetry table. Rather than one
hand-written pipeline per table, a query source may name several tables; at load each becomes
a pipeline of its own — ``{name}-{table}``: its own ledger partition, schema, ``{table}`` in the
sink paths and status section — with the same window, auth, sinks and columns, and
``Pipeline.group`` naming the source it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Sequence
from typing import Any

from shared.mapping.schemas import DIAGNOSTIC_TYPES, TABLES
from shared.settings.fields import NAME, Fields
from shared.settings.model import Pipeline, QuerySourceConfig, SinkConfig

__all__ = ["ALL_TABLES", "check_sinks", "expand", "table_list"]


# The tables "all" means: the classic Application Insights tables, and their workspace names.
ALL_TABLES: dict[str, tuple[str, ...]] = {
    "app_insights": TABLES,  # requests, dependencies, exceptions, traces, customEvents, pageViews, …
    "log_analytics": tuple(DIAGNOSTIC_TYPES),  # AppRequests, AppDependencies, AppExceptions, …
}


def table_list(p: Fields, where: str, kind: str, raw: dict[str, Any]) -> list[str] | None:
    """The tables a query source names in ``tables`` (None when it has no ``tables``); every unknown,
    repeated or mistyped name is reported with the name and a fix."""
    if "tables" not in raw or kind not in ALL_TABLES:
        return None
    known = ALL_TABLES[kind]
    value = raw["tables"]
    if value == "all":
        return list(known)
    if not isinstance(value, list) or not value:
        p.fail(where, f"'tables' must be a non-empty list of table names or \"all\" ({', '.join(known)})")
        return []
    out: list[str] = []
    for i, table in enumerate(value):
        if not isinstance(table, str):
            p.fail(where, f"'tables'[{i}] must be a table name; got {table!r}")
        elif table in out:
            p.fail(where, f"'tables'[{i}] {table!r} is named twice")
        elif table not in known:
            p.fail(where, f"'tables'[{i}] {table!r} {_unknown(kind, table, known)}")
        else:
            out.append(table)
    return out


def _unknown(kind: str, table: str, known: tuple[str, ...]) -> str:
    source = "an Application Insights" if kind == "app_insights" else "a Log Analytics (workspace)"
    # The same table under the other API's name (AppRequests vs. requests): say which name to use.
    other = (
        DIAGNOSTIC_TYPES.get(table)
        if kind == "app_insights"
        else next((ws for ws, classic in DIAGNOSTIC_TYPES.items() if classic == table), None)
    )
    if other:
        return f"is not {source} table name; {kind} sources call it {other!r}"
    close = difflib.get_close_matches(table, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f'is not {source} table; {hint}use one of {", ".join(known)} (or "all")'


def check_sinks(p: Fields, where: str, sinks: Sequence[SinkConfig], tables: int) -> None:
    """The tables of one source share its sinks: a file path must tell them apart."""
    for i, sink in enumerate(sinks):
        fields = set(re.findall(r"{([^{}]*)}", sink.path))
        if sink.kind != "table" and not fields & {"pipeline", "table"}:
            p.fail(
                f"{where} sinks[{i}]",
                f"'path' must contain {{pipeline}} or {{table}}: the {tables} table(s) of this source would"
                " otherwise write the same files",
            )


def expand(p: Fields, where: str, base: Pipeline, tables: list[str]) -> list[Pipeline]:
    """One pipeline per table of ``base`` (whose source named ``tables``): ``{name}-{table}``, the table
    as its query, ``group`` = ``base.name``."""
    source = base.source
    assert isinstance(source, QuerySourceConfig)
    out: list[Pipeline] = []
    for table in tables:
        name = f"{base.name}-{table}"
        if not NAME.match(name):
            p.fail(where, f"table {table!r}: pipeline name {name!r} is over 63 characters; shorten 'name'")
            continue
        one = dataclasses.replace(source, query=table, table=table)
        out.append(dataclasses.replace(base, name=name, source=one, group=base.name))
    return out
