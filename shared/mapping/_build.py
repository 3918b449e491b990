"""Compiling declarative field lists into per-table row builders (done once, at import).

A table's specific columns are declared as a tuple of *field specs*, one per column:

* ``"a.b"``            – dotted path into the source object, converted to the column's type;
* ``("a", "b.c")``     – alternatives: the first path that is present (not null) wins;
* a callable           – a ready getter that already returns the canonical value.

``compile_getters`` turns that into closures specialised for the common one-key case, so
the per-record work is a list comprehension over prebuilt closures — no path parsing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shared.mapping.values import CONVERTERS
from shared.model import Column

__all__ = ["EMPTY", "FieldSpec", "Getter", "compile_getters", "dig"]

# Shared read-only stand-in for a missing/odd sub-object (never mutated).
EMPTY: dict[str, Any] = {}

Getter = Callable[[dict[str, Any]], Any]
FieldSpec = str | tuple[str, ...] | Getter


def dig(obj: Any, parts: tuple[str, ...]) -> Any:
    """``obj[p0][p1]…`` through dicts only; ``None`` as soon as a step is missing or not a dict."""
    for part in parts:
        if obj.__class__ is not dict:
            return None
        obj = obj.get(part)
    return obj


def _path_getter(alternatives: tuple[str, ...], convert: Callable[[Any], Any]) -> Getter:
    paths = tuple(tuple(alt.split(".")) for alt in alternatives)
    if len(paths) == 1 and len(paths[0]) == 1:
        key = paths[0][0]

        def one_key(obj: dict[str, Any]) -> Any:
            value = obj.get(key)
            return None if value is None else convert(value)

        return one_key
    if len(paths) == 1 and len(paths[0]) == 2:
        outer, inner = paths[0]

        def two_keys(obj: dict[str, Any]) -> Any:
            sub = obj.get(outer)
            if sub.__class__ is not dict:
                return None
            value = sub.get(inner)
            return None if value is None else convert(value)

        return two_keys

    def first_present(obj: dict[str, Any]) -> Any:
        for parts in paths:
            value = dig(obj, parts)
            if value is not None:
                return convert(value)
        return None

    return first_present


def compile_getters(specs: Sequence[FieldSpec], columns: Sequence[Column]) -> tuple[Getter, ...]:
    """One getter per column; path specs get the column type's converter."""
    if len(specs) != len(columns):
        raise ValueError(f"{len(specs)} field specs for {len(columns)} columns")  # a bug in the tables
    getters: list[Getter] = []
    for spec, column in zip(specs, columns, strict=True):
        if callable(spec):
            getters.append(spec)
        else:
            alternatives = (spec,) if isinstance(spec, str) else spec
            getters.append(_path_getter(alternatives, CONVERTERS[column.type]))
    return tuple(getters)
