"""Aggregates of the emulator's ``summarize``: KQL's rules (names, types, nulls) and the fast path.

``count()`` and ``sum``/``avg``/``min``/``max`` of one column; nulls are ignored and an
aggregate over no values is null (``count()`` is 0). ``summarize count(), sum(_BilledSize)
[by bin(time | ingestion_time(), span)]`` — what a backfill estimate sends — is answered from
the stored row bytes without decoding: a workspace row's ``_BilledSize`` is the length of its stored
classic JSON (see :mod:`.schema`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from .kql import Agg, Call, ColumnRef, Group, KqlSemanticError, Lit, Summarize
from .schema import TableSchema
from .timeutil import format_ticks

__all__ = [
    "KUSTO_EPOCH_OFFSET",
    "AggFn",
    "agg_column",
    "agg_rows",
    "bins_on_ingestion",
    "check_agg",
    "fast_aggs",
    "summarize_op",
    "time_bin",
]

# KQL bins datetimes on ticks since 0001-01-01, not since the Unix epoch.
KUSTO_EPOCH_OFFSET = 621_355_968_000_000_000
_BILLED = "_BilledSize"
_NUMERIC = frozenset({"int", "long", "real"})
_ORDERED = _NUMERIC | {"datetime", "timespan"}
_AGGS = ("sum", "avg", "min", "max")
Row = list[Any]
RowFn = Callable[[Sequence[Any]], Any]


def check_agg(agg: Agg) -> None:
    """Refuse (SemanticError) an aggregate outside ``count()`` / ``f(column)`` for f in sum, avg, min, max."""
    if agg.func not in _AGGS or len(agg.args) != 1 or not isinstance(agg.args[0], ColumnRef):
        raise KqlSemanticError(
            f"'summarize' operator: aggregation '{agg.func}' with these arguments is not supported by the emulator"
            " (count(), or sum/avg/min/max of one column)",
            agg.pos,
            agg.func,
        )


def agg_column(agg: Agg, column: str, column_type: str) -> tuple[str, str]:
    """Output (name, type) of ``agg.func(column)``: KQL's default name ``<func>_<column>``; ``sum`` of
    an integer column is long, of a real real; ``avg`` is real; ``min``/``max`` keep the column type."""
    if agg.func in ("sum", "avg") and column_type not in _NUMERIC:
        raise KqlSemanticError(f"{agg.func}() expects a numeric column, got {column_type}", agg.pos, agg.func)
    if agg.func in ("min", "max") and column_type not in _ORDERED:
        raise KqlSemanticError(
            f"{agg.func}() expects a numeric or datetime column, got {column_type}", agg.pos, agg.func
        )
    kind = {"avg": "real", "sum": "real" if column_type == "real" else "long"}.get(agg.func, column_type)
    return agg.name or f"{agg.func}_{column}", kind


AggFn = tuple[str, RowFn | None]  # (kind, value of the argument per row; None for count())


def _aggregate(kind: str, values: list[Any]) -> Any:
    """One aggregate over the non-null argument values of a group (KQL ignores nulls)."""
    present = [v for v in values if v is not None]
    if kind == "sum":
        return sum(present) if present else None
    if kind == "avg":
        return sum(present) / len(present) if present else None
    if kind == "min":
        return min(present) if present else None
    return max(present) if present else None  # max


def summarize_op(keyfns: list[RowFn], aggs: list[AggFn]) -> Callable[[list[Row]], list[Row]]:
    """The ``summarize`` stage of the generic path: group by ``keyfns``, one cell per aggregate."""

    def run_summarize(rows: list[Row]) -> list[Row]:
        groups: dict[tuple[Any, ...], list[Row]] = {}
        if not keyfns:
            groups[()] = rows
        else:
            for r in rows:
                groups.setdefault(tuple(f(r) for f in keyfns), []).append(r)
        out: list[Row] = []
        for key, members in groups.items():
            cells: list[Any] = []
            for kind, fn in aggs:
                if fn is None:
                    cells.append(len(members))
                else:
                    cells.append(_aggregate(kind, [fn(r) for r in members]))
            out.append([*key, *cells])
        return out

    return run_summarize


def bins_on_ingestion(expr: object) -> bool:
    """Whether ``expr`` is ``ingestion_time()`` (a bin over the rows' ingestion ticks)."""
    return isinstance(expr, Call) and expr.name == "ingestion_time" and not expr.args


def time_bin(group: Group, schema: TableSchema) -> int | None:
    """The span of ``bin(<time column> | ingestion_time(), <timespan literal>)``, else None."""
    g = group.expr
    if (
        isinstance(g, Call)
        and g.name == "bin"
        and len(g.args) == 2
        and (
            (isinstance(g.args[0], ColumnRef) and g.args[0].name == schema.time_column)
            or bins_on_ingestion(g.args[0])
        )
        and isinstance(g.args[1], Lit)
        and g.args[1].type == "timespan"
        and isinstance(g.args[1].value, int)
        and g.args[1].value > 0
    ):
        return g.args[1].value
    return None


def fast_aggs(tail: list[Any], schema: TableSchema) -> tuple[str | None, int, tuple[str, ...]]:
    """``summarize`` of ``count()`` / ``sum(_BilledSize)`` [by bin(time)]: answerable from the
    stored row bytes (a row's billed size is the length of its stored classic JSON). ``iaggs``:
    the bins are of ``ingestion_time()``."""
    if len(tail) != 1 or not isinstance(tail[0], Summarize) or len(tail[0].by) > 1:
        return None, 0, ()
    stage = tail[0]
    kinds: list[str] = []
    for agg in stage.aggs:
        if agg.func == "count" and not agg.args:
            kinds.append("count")
        elif (
            agg.func == "sum"
            and len(agg.args) == 1
            and isinstance(agg.args[0], ColumnRef)
            and agg.args[0].name == _BILLED
            and _BILLED in schema.index
        ):
            kinds.append("billed")
        else:
            return None, 0, ()
    span = 0
    fast = "aggs"
    if stage.by:
        found = time_bin(stage.by[0], schema)
        if found is None:
            return None, 0, ()
        span = found
        assert isinstance(stage.by[0].expr, Call)
        fast = "iaggs" if bins_on_ingestion(stage.by[0].expr.args[0]) else "aggs"
    return fast, span, tuple(kinds)


def agg_rows(ts: list[int], rows: list[bytes], span: int, kinds: tuple[str, ...]) -> list[bytes]:
    """Rows of ``summarize count()/sum(_BilledSize) [by bin(time, span)]`` (span 0: one row);
    ``ts`` are the ticks binned (event or ingestion)."""
    groups: dict[int, list[float]] = {}  # bin → [rows, billed bytes]
    off = KUSTO_EPOCH_OFFSET
    for t, raw in zip(ts, rows, strict=True):
        key = (t + off) // span if span else 0
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = [0, 0.0]
        acc[0] += 1
        acc[1] += len(raw)
    if not span and not groups:
        groups[0] = [0, 0.0]

    def cells(acc: list[float]) -> list[Any]:
        return [int(acc[0]) if k == "count" else (acc[1] if acc[0] else None) for k in kinds]

    if not span:
        return [orjson.dumps(cells(groups[0]))]
    return [orjson.dumps([format_ticks(b * span - off), *cells(a)]) for b, a in sorted(groups.items())]
