"""Type-check, plan and run a parsed KQL query against the telemetry store.

Two execution paths give the same answers:

* **fast path** — the query is ``T`` followed by ``where`` stages made only of range
  conjuncts on the time column / ``ingestion_time()`` and at most one simple tail
  (``take``, ``count``, ``summarize count() [by bin(time | ingestion_time(), span)]``,
  ``order by time``, or ``summarize`` of ``count()`` / ``sum(_BilledSize)`` [by bin(…)] —
  what a backfill estimate sends).
  Rows are never decoded: the store bisects its sorted tick arrays and the response is
  joined from the pre-serialized row bytes. This is what the mover sends, so it is what
  the benchmark measures.
* **generic path** — anything else in the subset: rows in the narrowed time range are
  decoded and every stage is evaluated on values (three-valued logic, KQL null rules).

A query outside the subset raises ``KqlSyntaxError``/``KqlSemanticError`` — never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

import orjson

from .aggregate import KUSTO_EPOCH_OFFSET as _KUSTO_EPOCH_OFFSET
from .aggregate import AggFn, agg_column, agg_rows, bins_on_ingestion, check_agg, fast_aggs, summarize_op, time_bin
from .kql import (
    Agg,
    Call,
    ColumnRef,
    Compare,
    CountOp,
    Expr,
    Group,
    KqlSemanticError,
    Lit,
    Logical,
    OrderBy,
    Project,
    Query,
    Summarize,
    Take,
    Where,
    parse,
)
from .schema import CLASSIC_TABLES, TableSchema
from .timeutil import format_ticks, parse_datetime

__all__ = ["OutCol", "Plan", "QueryResult", "RowSource", "Selection", "compile_query", "run"]

_NUMERIC = frozenset({"int", "long", "real"})
_ORDERED = _NUMERIC | {"datetime", "timespan"}
_MIN = -(2**63)
_MAX = 2**63 - 1

Row = list[Any]
RowFn = Callable[[Sequence[Any]], Any]


@dataclass(frozen=True)
class OutCol:
    name: str
    type: str


@dataclass(frozen=True)
class Selection:
    """Rows of one table in time order: ticks, ingestion ticks and JSON row bytes."""

    ts: list[int]
    ing: list[int]
    rows: list[bytes]


class RowSource(Protocol):
    """What the planner needs from the store."""

    def select(self, schema: TableSchema, ts_lo: int, ts_hi: int, ing_lo: int, ing_hi: int, now: int) -> Selection: ...


@dataclass
class _Scope:
    columns: list[OutCol]
    ingest_index: int | None  # hidden column: row's ingestion ticks (source rows only)
    source: bool  # rows still carry [.., ingest, original index] and the source layout

    @property
    def index(self) -> dict[str, int]:
        return {c.name: i for i, c in enumerate(self.columns)}


@dataclass
class _Typed:
    type: str
    fn: RowFn
    const: bool = False
    value: Any = None


def _const(typ: str, value: Any) -> _Typed:
    def const(_row: Sequence[Any]) -> Any:
        return value

    return _Typed(typ, const, True, value)


def _sem(message: str, pos: int = 0, token: str = "") -> KqlSemanticError:
    return KqlSemanticError(message, pos, token)


def _compile_expr(expr: Expr, scope: _Scope, now: int, op: str) -> _Typed:
    if isinstance(expr, Lit):
        return _const(expr.type, expr.value)
    if isinstance(expr, ColumnRef):
        idx = scope.index.get(expr.name)
        if idx is None:
            raise _sem(
                f"'{op}' operator: Failed to resolve scalar expression named '{expr.name}'",
                expr.pos,
                expr.name,
            )
        return _Typed(scope.columns[idx].type, itemgetter(idx))
    if isinstance(expr, Call):
        return _compile_call(expr, scope, now, op)
    if isinstance(expr, Compare):
        return _compile_compare(expr, scope, now, op)
    left = _compile_expr(expr.left, scope, now, op)
    right = _compile_expr(expr.right, scope, now, op)
    if left.type != "bool" or right.type != "bool":
        raise _sem(f"'{expr.op}' expects bool operands", expr.pos, expr.op)
    lf, rf = left.fn, right.fn
    if expr.op == "and":

        def and_(r: Sequence[Any]) -> bool | None:
            a = lf(r)
            if a is False:
                return False
            b = rf(r)
            if b is False:
                return False
            return None if a is None or b is None else True

        return _Typed("bool", and_)

    def or_(r: Sequence[Any]) -> bool | None:
        a = lf(r)
        if a is True:
            return True
        b = rf(r)
        if b is True:
            return True
        return None if a is None or b is None else False

    return _Typed("bool", or_)


def _compile_call(expr: Call, scope: _Scope, now: int, op: str) -> _Typed:
    name, args = expr.name, expr.args
    if name == "ingestion_time":
        if args:
            raise _sem("ingestion_time() takes no arguments", expr.pos, name)
        if scope.ingest_index is None:
            raise _sem(
                "ingestion_time() is only available on table rows (before project/summarize)",
                expr.pos,
                name,
            )
        return _Typed("datetime", itemgetter(scope.ingest_index))
    if name == "now" and not args:
        return _const("datetime", now)
    if name == "ago" and len(args) == 1:
        span = _compile_expr(args[0], scope, now, op)
        if not (span.const and span.type == "timespan"):
            raise _sem("ago() expects a timespan literal", expr.pos, name)
        return _const("datetime", now - int(span.value))
    if name == "not" and len(args) == 1:
        inner = _compile_expr(args[0], scope, now, op)
        if inner.type != "bool":
            raise _sem("not() expects a bool argument", expr.pos, name)
        fn = inner.fn

        def not_(r: Sequence[Any]) -> bool | None:
            v = fn(r)
            return None if v is None else not v

        return _Typed("bool", not_)
    if name == "todatetime" and len(args) == 1:
        inner = _compile_expr(args[0], scope, now, op)
        if inner.const and inner.type == "string":
            try:
                return _const("datetime", parse_datetime(str(inner.value)))
            except ValueError:
                return _const("datetime", None)
        if inner.type == "datetime":
            return inner
    raise _sem(
        f"'{op}' operator: function '{name}' with {len(args)} argument(s) is not supported by the emulator",
        expr.pos,
        name,
    )


def _compatible(a: str, b: str, op: str) -> bool:
    if a in _NUMERIC and b in _NUMERIC:
        return True
    if a != b:
        return False
    if a in _ORDERED:
        return True
    return a in ("string", "bool") and op in ("==", "!=")


_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compile_compare(expr: Compare, scope: _Scope, now: int, op: str) -> _Typed:
    left = _compile_expr(expr.left, scope, now, op)
    right = _compile_expr(expr.right, scope, now, op)
    if not _compatible(left.type, right.type, expr.op):
        raise _sem(
            f"Cannot compare values of types {left.type} and {right.type} with '{expr.op}'",
            expr.pos,
            expr.op,
        )
    lf, rf, cmp = left.fn, right.fn, _PY_OPS[expr.op]

    def compare(r: Sequence[Any]) -> bool | None:
        a = lf(r)
        b = rf(r)
        if a is None or b is None:
            return None
        return cmp(a, b)

    return _Typed("bool", compare)


# --- ranges ----------------------------------------------------------------------------------


@dataclass
class _Ranges:
    ts_lo: int = _MIN
    ts_hi: int = _MAX
    ing_lo: int = _MIN
    ing_hi: int = _MAX

    def narrow(self, target: str, op: str, value: int) -> None:
        lo, hi = {
            ">=": (value, _MAX),
            ">": (value + 1, _MAX),
            "<": (_MIN, value),
            "<=": (_MIN, value + 1),
            "==": (value, value + 1),
        }[op]
        if target == "ts":
            self.ts_lo, self.ts_hi = max(self.ts_lo, lo), min(self.ts_hi, hi)
        else:
            self.ing_lo, self.ing_hi = max(self.ing_lo, lo), min(self.ing_hi, hi)


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}


def _conjuncts(expr: Expr) -> list[Expr]:
    if isinstance(expr, Logical) and expr.op == "and":
        return _conjuncts(expr.left) + _conjuncts(expr.right)
    return [expr]


def _range_target(expr: Expr, time_column: str) -> str | None:
    if isinstance(expr, ColumnRef) and expr.name == time_column:
        return "ts"
    if isinstance(expr, Call) and expr.name == "ingestion_time" and not expr.args:
        return "ing"
    return None


def _absorb_range(expr: Expr, scope: _Scope, time_column: str, now: int, ranges: _Ranges) -> bool:
    """Fold ``time op const`` / ``ingestion_time() op const`` into ``ranges``; False if not one."""
    if not isinstance(expr, Compare) or expr.op not in _FLIP:
        return False
    for side, other, op in ((expr.left, expr.right, expr.op), (expr.right, expr.left, _FLIP[expr.op])):
        target = _range_target(side, time_column)
        if target is None:
            continue
        value = _compile_expr(other, scope, now, "where")
        if value.const and value.type == "datetime" and isinstance(value.value, int):
            ranges.narrow(target, op, value.value)
            return True
    return False


# --- stages ----------------------------------------------------------------------------------

RowsOp = Callable[[list[Row]], list[Row]]


def _where_op(pred: RowFn) -> RowsOp:
    return lambda rows: [r for r in rows if pred(r) is True]


def _project_op(idxs: list[int]) -> RowsOp:
    return lambda rows: [[r[i] for i in idxs] for r in rows]


def _take_op(n: int) -> RowsOp:
    return lambda rows: rows[:n]


def _order_op(keys: list[tuple[int, bool, bool]]) -> RowsOp:
    def run_sort(rows: list[Row]) -> list[Row]:
        out = list(rows)
        for idx, desc, nulls_first in reversed(keys):
            # nulls sort as a separate leading/trailing group; stable multi-pass sort
            null_high = nulls_first == desc

            def key(r: Row, i: int = idx, high: bool = null_high) -> tuple[bool, Any]:
                v = r[i]
                return ((v is None) == high, v)

            out.sort(key=key, reverse=desc)
        return out

    return run_sort


def _bin_value(value: int | None, span: int) -> int | None:
    if value is None:
        return None
    return (value + _KUSTO_EPOCH_OFFSET) // span * span - _KUSTO_EPOCH_OFFSET


# --- plan ------------------------------------------------------------------------------------


@dataclass
class Plan:
    """A checked query: where to read, and how to finish (fast tail or generic stages)."""

    schema: TableSchema
    ts_lo: int
    ts_hi: int
    ing_lo: int
    ing_hi: int
    columns: list[OutCol]
    fast: str | None  # None (generic) | "rows" | "take" | "count" | "bin" | "ibin" | "desc" | "aggs" | "iaggs"
    fast_arg: int = 0
    filters: list[RowFn] = field(default_factory=list)  # leading where stages, applied while decoding
    ops: list[RowsOp] = field(default_factory=list)
    out_source: bool = False  # generic result rows still map 1:1 to stored row bytes
    fast_aggs: tuple[str, ...] = ()  # "aggs": per output aggregate, "count" or "billed" (sum of _BilledSize)


@dataclass
class QueryResult:
    columns: list[OutCol]
    rows: list[bytes]  # each a serialized JSON array
    source_rows: int = 0  # rows read from the store (for stats)

    @property
    def columns_json(self) -> bytes:
        return orjson.dumps([{"name": c.name, "type": c.type} for c in self.columns])


def compile_query(
    text: str,
    tables: dict[str, TableSchema],
    now: int,
    timespan: tuple[int, int] | None = None,
) -> Plan:
    """Parse and check ``text`` against ``tables`` (the route's tables) into a :class:`Plan`."""
    query = parse(text)
    return _plan(query, tables, now, timespan)


def _plan(query: Query, tables: dict[str, TableSchema], now: int, timespan: tuple[int, int] | None) -> Plan:
    schema = tables.get(query.table)
    if schema is None:
        raise _sem(
            f"Failed to resolve table or column expression named '{query.table}'",
            query.table_pos,
            query.table,
        )
    ncols = len(schema.columns)
    scope = _Scope([OutCol(c.name, c.type) for c in schema.columns], ncols, True)
    ranges = _Ranges()
    if timespan is not None:
        ranges.ts_lo, ranges.ts_hi = timespan

    ops: list[RowsOp] = []
    filters: list[RowFn] = []
    leading = True
    pure_ranges = True
    tail: list[Any] = []
    for stage in query.stages:
        if isinstance(stage, Where):
            pred = _compile_expr(stage.predicate, scope, now, "where")
            if pred.type != "bool":
                raise _sem("'where' predicate must be of type bool", stage.pos, "where")
            if leading:
                for conj in _conjuncts(stage.predicate):
                    if not _absorb_range(conj, scope, schema.time_column, now, ranges):
                        pure_ranges = False
            if leading:
                filters.append(pred.fn)
            else:
                ops.append(_where_op(pred.fn))
                tail.append(stage)
            continue
        leading = False
        tail.append(stage)
        ops.append(_compile_stage(stage, scope, schema, now))

    fast: str | None = None
    fast_arg = 0
    aggs: tuple[str, ...] = ()
    if pure_ranges:
        fast, fast_arg = _fast_tail(tail, schema)
        if fast is None:
            fast, fast_arg, aggs = fast_aggs(tail, schema)
    plan = Plan(
        schema,
        ranges.ts_lo,
        ranges.ts_hi,
        ranges.ing_lo,
        ranges.ing_hi,
        list(scope.columns),
        fast,
        fast_arg,
        filters,
        ops,
        scope.source,
    )
    plan.fast_aggs = aggs
    return plan


def _fast_tail(tail: list[Any], schema: TableSchema) -> tuple[str | None, int]:
    if not tail:
        return "rows", 0
    first = tail[0]
    if len(tail) == 1 and isinstance(first, Take):
        return "take", first.count
    if len(tail) == 1 and isinstance(first, CountOp):
        return "count", 0
    if (
        len(tail) == 1
        and isinstance(first, Summarize)
        and len(first.aggs) == 1
        and first.aggs[0].func == "count"
        and not first.aggs[0].args
    ):
        if not first.by:
            return "count", 0
        if len(first.by) == 1:
            span = time_bin(first.by[0], schema)
            if span is not None:
                g = first.by[0].expr
                assert isinstance(g, Call)
                return ("ibin" if bins_on_ingestion(g.args[0]) else "bin"), span
    if isinstance(first, OrderBy) and len(first.keys) == 1 and len(tail) <= 2:
        key = first.keys[0]
        rest = tail[1:]
        if key.column.name == schema.time_column and (not rest or isinstance(rest[0], Take)):
            n = rest[0].count if rest else -1
            return ("desc" if key.descending else "asc"), n
    return None, 0


def _compile_stage(stage: Any, scope: _Scope, schema: TableSchema, now: int) -> RowsOp:
    """Compile a non-where stage and update ``scope`` in place to its output columns."""
    if isinstance(stage, Take):
        return _take_op(stage.count)
    if isinstance(stage, Project):
        idxs: list[int] = []
        cols: list[OutCol] = []
        index = scope.index
        for out_name, ref in stage.columns:
            if ref.name not in index:
                raise _sem(
                    f"'project' operator: Failed to resolve scalar expression named '{ref.name}'",
                    ref.pos,
                    ref.name,
                )
            idxs.append(index[ref.name])
            cols.append(OutCol(out_name, scope.columns[index[ref.name]].type))
        _check_unique(cols, stage.pos)
        scope.columns, scope.ingest_index, scope.source = cols, None, False
        return _project_op(idxs)
    if isinstance(stage, OrderBy):
        keys: list[tuple[int, bool, bool]] = []
        index = scope.index
        for key in stage.keys:
            if key.column.name not in index:
                raise _sem(
                    f"'order' operator: Failed to resolve scalar expression named '{key.column.name}'",
                    key.column.pos,
                    key.column.name,
                )
            i = index[key.column.name]
            if scope.columns[i].type == "dynamic":
                raise _sem("cannot order by a dynamic column", key.column.pos, key.column.name)
            keys.append((i, key.descending, key.nulls_first))
        return _order_op(keys)
    if isinstance(stage, CountOp):
        scope.columns, scope.ingest_index, scope.source = [OutCol("Count", "long")], None, False
        return summarize_op([], [("count", None)])
    assert isinstance(stage, Summarize)
    return _compile_summarize(stage, scope, now)


def _check_unique(cols: list[OutCol], pos: int) -> None:
    seen: set[str] = set()
    for c in cols:
        if c.name in seen:
            raise _sem(f"duplicate output column name '{c.name}'", pos, c.name)
        seen.add(c.name)


def _compile_summarize(stage: Summarize, scope: _Scope, now: int) -> RowsOp:
    keyfns: list[RowFn] = []
    out: list[OutCol] = []
    for group in stage.by:
        keyfn, col = _compile_group(group, scope, now)
        keyfns.append(keyfn)
        out.append(col)
    aggs: list[AggFn] = []
    for agg in stage.aggs:
        fn, col = _compile_agg(agg, scope, now)
        aggs.append((agg.func, fn))
        out.append(col)
    _check_unique(out, stage.pos)
    scope.columns, scope.ingest_index, scope.source = out, None, False
    return summarize_op(keyfns, aggs)


def _compile_agg(agg: Agg, scope: _Scope, now: int) -> tuple[RowFn | None, OutCol]:
    """``count()``, or ``sum``/``avg``/``min``/``max`` of one column (rules in :mod:`.aggregate`)."""
    if agg.func == "count" and not agg.args:
        return None, OutCol(agg.name or "count_", "long")
    check_agg(agg)
    assert isinstance(agg.args[0], ColumnRef)
    typed = _compile_expr(agg.args[0], scope, now, "summarize")
    name, kind = agg_column(agg, agg.args[0].name, typed.type)
    return typed.fn, OutCol(name, kind)


def _compile_group(group: Group, scope: _Scope, now: int) -> tuple[RowFn, OutCol]:
    expr = group.expr
    if isinstance(expr, ColumnRef):
        typed = _compile_expr(expr, scope, now, "summarize")
        if typed.type == "dynamic":
            raise _sem("cannot group by a dynamic column", expr.pos, expr.name)
        return typed.fn, OutCol(group.name or expr.name, typed.type)
    if isinstance(expr, Call) and expr.name == "bin":
        if len(expr.args) != 2 or not (isinstance(expr.args[0], ColumnRef) or bins_on_ingestion(expr.args[0])):
            raise _sem("bin() expects (column or ingestion_time(), timespan)", expr.pos, "bin")
        col = expr.args[0]
        typed = _compile_expr(col, scope, now, "summarize")
        span = _compile_expr(expr.args[1], scope, now, "summarize")
        if typed.type != "datetime" or span.type != "timespan" or not span.const:
            raise _sem(
                "bin() is supported on a datetime column with a timespan literal only",
                expr.pos,
                "bin",
            )
        if int(span.value) <= 0:
            raise _sem("bin() size must be positive", expr.pos, "bin")
        fn, size = typed.fn, int(span.value)
        # An unnamed bin of a column is named for the column; of ingestion_time(), Column1 (Kusto's name
        # for an unnamed computed column).
        name = group.name or (col.name if isinstance(col, ColumnRef) else "Column1")
        return (lambda r: _bin_value(fn(r), size)), OutCol(name, "datetime")
    raise _sem(
        "'summarize' by-expressions must be a column or bin(column, timespan) in the emulator",
        group.pos,
        "by",
    )


# --- execution -------------------------------------------------------------------------------


def run(plan: Plan, store: RowSource, now: int) -> QueryResult:
    """Execute ``plan`` against ``store`` with rows visible at ``now`` (ingestion ≤ now)."""
    if plan.fast in ("aggs", "iaggs"):  # classic bytes: their length is the billed size, no workspace conversion
        classic = CLASSIC_TABLES[plan.schema.classic]
        sel = store.select(classic, plan.ts_lo, plan.ts_hi, plan.ing_lo, plan.ing_hi, now)
        ticks = sel.ing if plan.fast == "iaggs" else sel.ts
        return QueryResult(plan.columns, agg_rows(ticks, sel.rows, plan.fast_arg, plan.fast_aggs), len(sel.rows))
    sel = store.select(plan.schema, plan.ts_lo, plan.ts_hi, plan.ing_lo, plan.ing_hi, now)
    fast, n = plan.fast, plan.fast_arg
    read = len(sel.rows)
    if fast == "rows":
        return QueryResult(plan.columns, sel.rows, read)
    if fast == "take":
        return QueryResult(plan.columns, sel.rows[:n], read)
    if fast == "asc":
        return QueryResult(plan.columns, sel.rows if n < 0 else sel.rows[:n], read)
    if fast == "desc":
        rev = sel.rows[::-1]
        return QueryResult(plan.columns, rev if n < 0 else rev[:n], read)
    if fast == "count":
        return QueryResult(plan.columns, [b"[%d]" % read], read)
    if fast in ("bin", "ibin"):
        return QueryResult(plan.columns, _bin_counts(sel.ing if fast == "ibin" else sel.ts, n), read)
    return _run_generic(plan, sel)


def _bin_counts(ts: list[int], span: int) -> list[bytes]:
    counts: dict[int, int] = {}
    off = _KUSTO_EPOCH_OFFSET
    for t in ts:
        b = (t + off) // span
        counts[b] = counts.get(b, 0) + 1
    return [orjson.dumps([format_ticks(b * span - off), c]) for b, c in sorted(counts.items())]


def _run_generic(plan: Plan, sel: Selection) -> QueryResult:
    schema = plan.schema
    time_idx = schema.time_index
    dt_idx = [i for i, c in enumerate(schema.columns) if c.type == "datetime" and i != time_idx]
    rows: list[Row] = []
    loads = orjson.loads
    filters = plan.filters
    # Decode one row at a time and keep only what the leading where stages accept, so a
    # selective filter over a big range never holds every decoded row in memory.
    for k, (raw, t, g) in enumerate(zip(sel.rows, sel.ts, sel.ing, strict=True)):
        r = loads(raw)
        r[time_idx] = t
        for i in dt_idx:
            if r[i] is not None:
                r[i] = parse_datetime(r[i])
        r.append(g)
        r.append(k)
        if all(f(r) is True for f in filters):
            rows.append(r)
    for op in plan.ops:
        rows = op(rows)
    if plan.out_source:
        return QueryResult(plan.columns, [sel.rows[r[-1]] for r in rows], len(sel.rows))
    dt_out = [i for i, c in enumerate(plan.columns) if c.type == "datetime"]
    width = len(plan.columns)
    out: list[bytes] = []
    for r in rows:
        if len(r) != width:
            r = r[:width]
        for i in dt_out:
            if r[i] is not None:
                r[i] = format_ticks(r[i])
        out.append(orjson.dumps(r))
    return QueryResult(plan.columns, out, len(sel.rows))
