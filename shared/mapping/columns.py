"""The user column spec (a pipeline's optional ``columns``): select, rename, add.

Shape (every key optional; see docs/mapping.md)::

    {"include": ["timestamp", "name", "duration"],          # or "exclude": [...]
     "rename":  {"duration": "duration_ms"},
     "add":     {"tenant": "customDimensions.tenant",        # path shorthand
                 "slow":   {"path": "customMeasurements.ms", "type": "real"}},
     "on_missing": "null"}                                   # or "error"

A bare list ``["timestamp", "name"]`` is shorthand for ``{"include": [...]}``.
Output order: the kept columns (``include`` order, else the batch's order), then ``add``
in the order written. It works on batches from any source, after mapping, so paths address
the flat row: the first segment is a column, the rest walks into its dynamic value.

``apply_columns`` compiles a plan once per distinct (spec, input columns) and then only
runs index lookups and prebuilt closures per row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any, Literal

from shared.errors import FatalError
from shared.mapping.values import CONVERTERS, to_dynamic
from shared.model import KQL_TYPES, Batch, Column

__all__ = ["AddedColumn", "ColumnSpec", "apply_columns", "parse_column_spec"]

_OUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_ROOT = re.compile(r"[^.\[\]\"']+")
_STEP = re.compile(r"""\.([^.\[\]"']+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|\['([^']*)'\]""")
_KEYS = ("include", "exclude", "rename", "add", "on_missing")
_TYPES = ", ".join(sorted(KQL_TYPES))


@dataclass(frozen=True)
class AddedColumn:
    """A new column read from ``path``: ``root`` column, then ``steps`` into its dynamic value.

    ``type`` None keeps the value as found (the root column's type for a bare column,
    ``dynamic`` inside one); a KQL type converts it (unreadable → null).
    """

    name: str
    path: str
    root: str
    steps: tuple[str | int, ...] = ()
    type: str | None = None


@dataclass(frozen=True)
class ColumnSpec:
    """Parsed ``columns``; immutable and hashable so plans can be cached per spec."""

    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()
    add: tuple[AddedColumn, ...] = ()
    on_missing: Literal["null", "error"] = "null"
    renames: dict[str, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "renames", dict(self.rename))

    @property
    def is_identity(self) -> bool:
        """True when applying the spec would return the batch unchanged."""
        return self.include is None and not self.exclude and not self.rename and not self.add


def parse_path(path: str) -> tuple[str, tuple[str | int, ...]]:
    """``customDimensions.tenant`` / ``details[0].type`` / ``customDimensions["a.b"]`` →
    (root column, steps). Raises ``ValueError`` on anything else."""
    if not isinstance(path, str):
        raise ValueError("a path must be a string like customDimensions.tenant")
    root = _ROOT.match(path)
    if root is None:
        raise ValueError(f"{path!r} must start with a column name, like customDimensions.tenant")
    steps: list[str | int] = []
    pos = root.end()
    while pos < len(path):
        step = _STEP.match(path, pos)
        if step is None:
            raise ValueError(
                f"{path!r} is not a path like customDimensions.tenant, details[0].type or "
                f'customDimensions["key.with.dots"] (problem at character {pos + 1})'
            )
        key, index, dq, sq = step.groups()
        if index is not None:
            steps.append(int(index))
        elif dq is not None:
            steps.append(re.sub(r"\\(.)", r"\1", dq))
        else:
            steps.append(key if key is not None else sq)
        pos = step.end()
    return root.group(0).strip(), tuple(steps)


def _names(where: str, raw: Any, problems: list[str]) -> tuple[str, ...] | None:
    """The validated name list, or None (with a problem recorded) when it is not one."""
    example = '["timestamp", "name"]'
    if not isinstance(raw, list) or not all(isinstance(n, str) and n.strip() for n in raw):
        problems.append(f"'{where}' must be a list of column names like {example}; got {raw!r}")
        return None
    names = tuple(n.strip() for n in raw)
    for name in names:
        if any(c in name for c in ".[]"):
            problems.append(
                f"'{where}' entry {name!r} is a path, not a column; to read a value inside a column use "
                f'"add": {{"{_suggest(name)}": "{name}"}}'
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"'{where}' lists {', '.join(map(repr, dupes))} more than once; list each column once")
    return names


def _suggest(path: str) -> str:
    tail = re.split(r"[.\[\]\"']+", path.strip(".[]\"'"))[-1]
    return tail if _OUT_NAME.match(tail) else "new_name"


def _out_name(where: str, name: Any, problems: list[str]) -> bool:
    if isinstance(name, str) and _OUT_NAME.match(name):
        return True
    problems.append(
        f"{where}: {name!r} is not a valid column name (start with a letter or '_', then letters, digits, "
        "'_'; at most 255 characters)"
    )
    return False


def _added(name: str, raw: Any, problems: list[str]) -> AddedColumn | None:
    where = f"'add.{name}'"
    kql_type: Any = None
    if isinstance(raw, dict):
        for key in sorted(set(raw) - {"path", "type"}):
            problems.append(f"{where} has unknown field {key!r}; allowed: path, type")
        path, kql_type = raw.get("path"), raw.get("type")
        if path is None:
            problems.append(f'{where} needs a "path", e.g. {{"path": "customDimensions.{name}", "type": "string"}}')
            return None
    else:
        path = raw
    if not isinstance(path, str):
        problems.append(
            f'{where} must be a path string like "customDimensions.{name}" or an object '
            f'{{"path": "customDimensions.{name}", "type": "string"}}; got {raw!r}'
        )
        return None
    if kql_type is not None and kql_type not in KQL_TYPES:
        problems.append(f"{where} has unknown type {kql_type!r}; use one of: {_TYPES}")
        return None
    try:
        root, steps = parse_path(path)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    return AddedColumn(name=name, path=path, root=root, steps=steps, type=kql_type)


def parse_column_spec(raw: Any) -> ColumnSpec:
    """Validate a pipeline's ``columns`` JSON into a ``ColumnSpec``.

    Accepts the object form, a bare list (= ``include``), ``None`` (keep everything) or a
    ``ColumnSpec``. Raises ``ValueError`` naming every offending field and how to fix it.
    """
    if raw is None:
        return ColumnSpec()
    if isinstance(raw, ColumnSpec):
        return raw
    if isinstance(raw, list):
        raw = {"include": raw}
    if not isinstance(raw, dict):
        raise ValueError(
            'must be an object like {"include": ["timestamp", "name"], "rename": {...}, "add": {...}} '
            f"or a list of column names; got {raw!r}"
        )
    problems: list[str] = []
    for key in sorted(set(raw) - set(_KEYS), key=str):
        problems.append(f"unknown field {key!r}; allowed: {', '.join(_KEYS)}")
    include = _names("include", raw["include"], problems) if "include" in raw else None
    exclude = (_names("exclude", raw["exclude"], problems) or ()) if "exclude" in raw else ()
    if "include" in raw and "exclude" in raw:
        problems.append("use either 'include' (keep only these) or 'exclude' (keep all but these), not both")
    if include == () and not raw.get("add"):
        problems.append("'include' is empty and nothing is added: the output would have no columns")

    rename: list[tuple[str, str]] = []
    raw_rename = raw.get("rename", {})
    if not isinstance(raw_rename, dict):
        problems.append(f'\'rename\' must be an object like {{"duration": "duration_ms"}}; got {raw_rename!r}')
        raw_rename = {}
    for old, new in raw_rename.items():
        if not _out_name(f"'rename.{old}'", new, problems):
            continue
        if include is not None and old not in include:
            problems.append(f"'rename' key {old!r} is not in 'include'; add it there or drop the rename")
        elif old in exclude:
            problems.append(f"'rename' key {old!r} is also in 'exclude'; a dropped column cannot be renamed")
        else:
            rename.append((old, new))

    added: list[AddedColumn] = []
    raw_add = raw.get("add", {})
    if not isinstance(raw_add, dict):
        problems.append(
            '\'add\' must be an object like {"tenant": "customDimensions.tenant"} or '
            f'{{"tenant": {{"path": "customDimensions.tenant", "type": "string"}}}}; got {raw_add!r}'
        )
        raw_add = {}
    for name, spec in raw_add.items():
        if _out_name(f"'add' key {name!r}", name, problems):
            column = _added(name, spec, problems)
            if column is not None:
                added.append(column)

    on_missing = raw.get("on_missing", "null")
    if on_missing not in ("null", "error"):
        problems.append(f'\'on_missing\' must be "null" (absent columns become null) or "error"; got {on_missing!r}')
        on_missing = "null"

    renames = dict(rename)
    outputs = [renames.get(n, n) for n in include] if include is not None else list(renames.values())
    outputs += [a.name for a in added]
    for dupe in sorted({n for n in outputs if outputs.count(n) > 1}):
        problems.append(f"output column {dupe!r} would appear twice; rename or drop one of them")
    if problems:
        raise ValueError("; ".join(problems))
    return ColumnSpec(
        include=include,
        exclude=exclude,
        rename=tuple(rename),
        add=tuple(added),
        on_missing=on_missing,
    )


# -- application -------------------------------------------------------------------------
RowFn = Callable[[list[Any]], list[Any]]


def _walk(value: Any, steps: tuple[str | int, ...]) -> Any:
    """Follow ``steps`` into dicts/lists; JSON-encoded dynamic text is decoded on the way."""
    for step in steps:
        if value.__class__ is str:
            value = to_dynamic(value)
        if isinstance(value, dict):
            value = value.get(step if isinstance(step, str) else str(step))
        elif isinstance(value, list):
            index = step if isinstance(step, int) else int(step) if step.isdigit() else None
            if index is None or index >= len(value):
                return None
            value = value[index]
        else:
            return None
        if value is None:
            return None
    return value


def _extractor(index: int | None, steps: tuple[str | int, ...], kql_type: str | None) -> Callable[[list[Any]], Any]:
    convert = CONVERTERS[kql_type] if kql_type else None
    if index is None:
        return lambda row: None
    if not steps:
        if convert is None:
            return itemgetter(index)
        return lambda row: convert(row[index])
    if convert is None:
        return lambda row: _walk(row[index], steps)
    return lambda row: convert(_walk(row[index], steps))


@dataclass(frozen=True)
class _Plan:
    columns: tuple[Column, ...]
    run: RowFn


@lru_cache(maxsize=512)
def _plan(spec: ColumnSpec, columns: tuple[Column, ...]) -> _Plan:
    positions = {c.name: i for i, c in enumerate(columns)}
    if spec.include is not None:
        kept = list(spec.include)
    else:
        excluded = set(spec.exclude)
        kept = [c.name for c in columns if c.name not in excluded]
    missing = [n for n in kept if n not in positions] + [a.root for a in spec.add if a.root not in positions]
    if spec.on_missing == "error":
        missing += [old for old, _ in spec.rename if old not in positions]
        if missing:
            raise FatalError(
                f"columns: {', '.join(map(repr, dict.fromkeys(missing)))} not in this batch "
                f'(it has: {", ".join(positions)}); fix the names or set "on_missing": "null"'
            )

    out: list[Column] = []
    indexes: list[int | None] = []
    for name in kept:
        index = positions.get(name)
        out.append(Column(spec.renames.get(name, name), columns[index].type if index is not None else "string"))
        indexes.append(index)
    adds = []
    for add in spec.add:
        index = positions.get(add.root)
        if add.type:
            kql_type = add.type
        elif index is None:
            kql_type = "string"
        else:
            kql_type = "dynamic" if add.steps else columns[index].type
        out.append(Column(add.name, kql_type))
        adds.append(_extractor(index, add.steps, add.type))

    names = [c.name for c in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FatalError(f"columns: output column(s) {', '.join(map(repr, dupes))} would appear twice in this batch")
    return _Plan(tuple(out), _row_fn(indexes, adds))


def _row_fn(indexes: list[int | None], adds: list[Callable[[list[Any]], Any]]) -> RowFn:
    if None in indexes:  # absent included columns: one extractor per output column
        funcs = [_extractor(i, (), None) for i in indexes] + adds
        return lambda row: [f(row) for f in funcs]
    picked = [i for i in indexes if i is not None]
    if len(picked) >= 2:
        pick = itemgetter(*picked)
        if not adds:
            return lambda row: [*pick(row)]
        return lambda row: [*pick(row), *[f(row) for f in adds]]
    head: list[Callable[[list[Any]], Any]] = [itemgetter(i) for i in picked]
    funcs = head + adds
    return lambda row: [f(row) for f in funcs]


def apply_columns(batch: Batch, spec: ColumnSpec) -> Batch:
    """``batch`` projected through ``spec`` (a new Batch; the input is not modified).

    Raises ``FatalError`` when ``on_missing`` is ``"error"`` and a named column is absent,
    or when renames/adds collide with kept columns of this batch.
    """
    if spec.is_identity:
        return batch
    plan = _plan(spec, batch.columns)
    run = plan.run
    return Batch(batch.table, plan.columns, [run(row) for row in batch.rows])
