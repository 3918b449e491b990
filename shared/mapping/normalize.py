"""One normalisation for every source: the same event gives the same cells (pure).

The query API sends cells as KQL holds them: ``""`` for an absent string (KQL strings are
never null), datetimes with 7 fractional digits, ``""`` for an empty dynamic. Blob sources
map absent fields to null and datetimes to microseconds. After mapping, every source's
rows follow these rules (``normalize_rows`` column-wise for query results,
``row_normalizer`` per record for the blob mappers):

* ``string``/``guid``/``timespan``/``decimal``: ``""`` → null (absent and empty are one value, as in KQL);
* ``datetime``: the canonical ``YYYY-MM-DDTHH:MM:SS[.ffffff[f]]Z``: six fractional digits,
  seven when the 7th (100 ns) is not zero, none when all are zero; a value that does not
  parse is left as it is, for the cell check to quarantine its row;
* ``dynamic``: ``""``, ``{}`` and ``[]`` → null.

What cannot be equal across sources is listed in ``NOT_CARRIED`` (docs/mapping.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from types import MappingProxyType
from typing import Any

from shared.mapping.values import normalize_timestamp
from shared.model import Column

__all__ = ["NOT_CARRIED", "normalize_rows", "row_normalizer"]

_TEXT = frozenset({"string", "guid", "timespan", "decimal"})

# Columns a source cannot fill like the query API does, whatever the normalisation:
# continuous export has no app id/name, instrumentation key or SDK version in its
# records (only the blob path names the app); diagnostic-settings lines carry no
# ``_ItemId``, so ``itemId`` is derived from the line (stable, but not the service's id).
NOT_CARRIED: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "continuous_export": frozenset({"appId", "appName", "iKey", "sdkVersion"}),
        "diagnostic_settings": frozenset({"itemId"}),
    }
)


def _empty_dynamic(value: Any) -> bool:
    return value == "" or ((value.__class__ is dict or value.__class__ is list) and not value)


def _datetime(value: Any) -> Any:
    if value.__class__ is str:
        n = len(value)
        if n <= 20:
            return value  # whole seconds "…:SSZ" (or too short to be anything else): as is
        if (n == 28 or n == 27) and value[-1] == "Z" and value[19] == ".":
            # What the service sends (7 digits) or already canonical: slicing, not parsing, per
            # cell of large results; a malformed one is caught by the cell check.
            if n == 28 and value[26] != "0":
                return value  # the 100 ns digit is kept
            return value[:19] + "Z" if value[20:26] == "000000" else value[:26] + "Z"
    fixed = normalize_timestamp(value)
    return value if fixed is None else fixed


def normalize_rows(columns: Sequence[Column], rows: list[list[Any]]) -> list[list[Any]]:
    """Apply the rules in place, column by column; returns ``rows``.

    A column is first scanned in C (``"" in column``) so clean columns cost no Python
    loop: only columns that hold an empty value, and datetime columns, are rewritten.
    """
    if not rows:
        return rows
    for i, col in enumerate(columns):
        kind = col.type
        if kind in _TEXT:
            if "" in map(itemgetter(i), rows):
                for row in rows:
                    if row[i] == "":
                        row[i] = None
        elif kind == "datetime":
            for row in rows:
                value = row[i]
                if value is not None:
                    row[i] = _datetime(value)
        elif kind == "dynamic":
            for row in rows:
                value = row[i]
                if value is not None and _empty_dynamic(value):
                    row[i] = None
    return rows


def row_normalizer(columns: Sequence[Column]) -> Callable[[list[Any]], list[Any]]:
    """The same rules for one row at a time (the blob mappers' rows: datetimes and dynamic
    cells are already canonical there, so only empty strings are looked for)."""
    text = tuple(i for i, c in enumerate(columns) if c.type in _TEXT)

    def normalize(row: list[Any]) -> list[Any]:
        if "" in row:
            for i in text:
                if row[i] == "":
                    row[i] = None
        return row

    return normalize
