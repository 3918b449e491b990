"""The query API's JSON wire format → typed columns and rows (pure).

Cells arrive loosely typed: numbers may be strings, dynamic values are JSON-encoded
strings, booleans may be ``"True"``. Each column gets one converter, chosen once per
response, and only columns that need one are touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson

from shared.errors import FatalError
from shared.mapping.normalize import normalize_rows
from shared.mapping.values import to_decimal
from shared.model import Column
from shared.redact import redact
from shared.sources.wire_arrow import decode_columns

__all__ = [
    "QueryResult",
    "convert_rows",
    "decode_result",
    "describe_error",
    "error_reason",
    "parse_response",
    "parse_result",
    "partial_kind",
    "typed",
]


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[Column, ...]
    rows: list[list[Any]]
    partial: str | None  # the service's reason when the result was cut (HTTP 200 PartialError)
    body_bytes: int = 0  # size of the response body the rows came from (sizes batches by bytes)
    arrow: Any = None  # the cells column-wise (``shared.sources.wire_arrow``) instead of ``rows``
    partial_kind: str = ""  # "truncated", "error" or "warning" (see ``partial_kind``)

    @property
    def num_rows(self) -> int:
        return int(self.arrow.num_rows) if self.arrow is not None else len(self.rows)


def _to_int(v: Any) -> Any:
    if isinstance(v, str):
        return int(v) if v else None
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _to_float(v: Any) -> Any:
    if isinstance(v, str):
        return float(v) if v else None
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def _to_decimal(v: Any) -> Any:
    """The exact text (see ``shared.mapping.values.to_decimal``); text that is not a number is
    kept as it came, for the cell check to quarantine its row."""
    if isinstance(v, str):
        return v if v else None
    return to_decimal(v)


def _to_bool(v: Any) -> Any:
    if isinstance(v, str):
        low = v.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        return v if v else None
    if isinstance(v, int):
        return bool(v)
    return v


def _to_dynamic(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return v
    return v


def _to_str(v: Any) -> Any:
    return v if v is None or isinstance(v, str) else str(v)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "long": _to_int,
    "int": _to_int,
    "real": _to_float,
    "decimal": _to_decimal,
    "bool": _to_bool,
    "boolean": _to_bool,
    "dynamic": _to_dynamic,
    "guid": _to_str,
    "timespan": _to_str,
}


# Per type, the Python types a cell may already have that its converter leaves as they are.
_NONE = type(None)
_CANONICAL: dict[str, frozenset[type]] = {
    "long": frozenset({int, bool, _NONE}),
    "int": frozenset({int, bool, _NONE}),
    "real": frozenset({float, bool, _NONE}),
    "decimal": frozenset({str, _NONE}),
    "bool": frozenset({bool, _NONE}),
    "guid": frozenset({str, _NONE}),
    "timespan": frozenset({str, _NONE}),
}


def convert_rows(columns: tuple[Column, ...], rows: list[list[Any]]) -> list[list[Any]]:
    """Bring cells to the canonical types of ``shared.model`` in place, then apply the
    normalisation every source shares (``shared.mapping.normalize``); returns ``rows``.

    Most columns of a real response already hold their canonical type (numbers as JSON
    numbers): one pass in C over a column's cell types proves it and skips the per-cell
    Python calls. Dynamic cells are JSON text and always parsed, in an inlined loop.
    """
    if not rows:
        return rows
    for i, col in enumerate(columns):
        if col.type == "dynamic":
            _parse_dynamic(rows, i)
            continue
        conv = _CONVERTERS.get(col.type)
        if conv is None or set(map(type, map(itemgetter(i), rows))) <= _CANONICAL[col.type]:
            continue
        for row in rows:
            value = row[i]
            if value is not None:
                row[i] = conv(value)
    return normalize_rows(columns, rows)


def _parse_dynamic(rows: list[list[Any]], i: int) -> None:
    """``_to_dynamic`` on column ``i`` of every row, without a Python call per cell."""
    loads, error = orjson.loads, orjson.JSONDecodeError
    for row in rows:
        value = row[i]
        if value.__class__ is str:
            try:  # noqa: SIM105 - suppress() per cell would cost more than the parse
                row[i] = loads(value)
            except error:
                pass


def parse_result(body: bytes) -> QueryResult:
    """Parse a 200 response body. Raises ``FatalError`` on a body that is not the wire format."""
    return typed(decode_result(body))


def parse_response(body: bytes, *, columnar: bool = False) -> QueryResult:
    """A 200 response body as typed rows; with ``columnar``, column-wise in Arrow instead
    (rows empty, ``arrow`` set) when ``wire_arrow`` can prove the cells exact. A partial
    result comes back untyped. Raises ``FatalError`` on a body that is not the wire format.
    """
    decoded = decode_columns(body) if columnar else None
    if decoded is not None:
        return QueryResult(decoded.columns, [], None, decoded.body_bytes, decoded.table)
    result = decode_result(body)
    if result.partial is not None and result.partial_kind != "warning":  # never used: not converted
        return QueryResult(result.columns, [], result.partial, result.body_bytes, partial_kind=result.partial_kind)
    return typed(result)  # a warning keeps its rows (and its text, for the caller to record)


def typed(result: QueryResult) -> QueryResult:
    """``result`` with its cells converted in place (see ``convert_rows``)."""
    convert_rows(result.columns, result.rows)
    return result


def decode_result(body: bytes) -> QueryResult:
    """Like ``parse_result`` but cells stay as on the wire, so a caller can free ``body``
    before ``typed`` allocates the converted cells (the memory peak of a query)."""
    try:
        doc = orjson.loads(body)
        table = doc["tables"][0]
        columns = tuple(Column(str(c["name"]), str(c["type"]).lower()) for c in table["columns"])
        rows = table["rows"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise FatalError(f"query API returned a body that is not a query result: {exc}") from exc
    if not isinstance(rows, list):
        raise FatalError("query API returned rows that are not a list")
    partial, kind = None, ""
    error = doc.get("error")
    if isinstance(error, dict):
        partial, kind = describe_error(error), partial_kind(error)
    return QueryResult(columns=columns, rows=rows, partial=partial, body_bytes=len(body), partial_kind=kind)


_TRUNCATION = ("E_QUERY_RESULT_SET_TOO_LARGE", "0x80DA0003", "exceed the set limit", "exceeded the internal data size")


def partial_kind(error: dict[str, Any]) -> str:
    """What an HTTP 200 ``PartialError`` means for the rows that came with it.

    - ``truncated``: the result hit the row/size cap (``E_QUERY_RESULT_SET_TOO_LARGE``) — cured by
      splitting the window;
    - ``warning``: every inner error has a severity above 2 (Kusto's rule: severities of 2 or
      less are failures), so the result is complete — the rows are kept and the warning recorded;
    - ``error``: anything else (``E_OVERFLOW``, runaway query, a cross-cluster failure): the
      rows cannot be trusted and splitting does not help — the window fails with the service's code.
    """
    inner: list[dict[str, Any]] = []
    stack: list[Any] = [*(error.get("details") or []), error.get("innererror")]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            inner.append(item)
            stack.append(item.get("innererror"))
    text = " ".join(f"{i.get('code', '')} {i.get('message', '')}" for i in [error, *inner])
    if any(marker.lower() in text.lower() for marker in _TRUNCATION):
        return "truncated"
    severities = [i.get("severity") for i in inner if "severity" in i]
    if severities and all(isinstance(s, int) and s > 2 for s in severities):
        return "warning"
    return "error"


def describe_error(error: dict[str, Any]) -> str:
    """``code: message (inner: code: message)`` from a OneAPI error object, innermost detail included."""
    parts = [f"{error.get('code', '?')}: {error.get('message', '')}".strip()]
    details = error.get("details") if isinstance(error.get("details"), list) else []
    inner = error.get("innererror")
    for item in [*(details or []), inner]:
        while isinstance(item, dict):
            if item.get("message"):
                parts.append(f"{item.get('code', '?')}: {item['message']}")
            item = item.get("innererror")
    return redact(" | ".join(dict.fromkeys(parts)))


def error_reason(body: bytes) -> str:
    """Readable reason from an error response body (OneAPI shape, or raw text)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return redact(body[:300].decode("utf-8", "replace"))
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        return describe_error(doc["error"])
    return redact(str(doc)[:300])
