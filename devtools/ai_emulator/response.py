"""Response bodies for query results, including the service's result-size limits.

Over ``max_rows`` records or ``max_bytes`` of row data the service still answers
HTTP 200, cuts the rows and adds a top-level ``PartialError``; this module does the same.
The body is returned as parts (prefix, joined rows, suffix) so the server can send a
64 MB result without one more copy.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

import orjson

from .errors import partial_error, partial_other
from .query import QueryResult

__all__ = ["Rendered", "render"]


@dataclass(frozen=True)
class Rendered:
    parts: list[bytes]
    length: int
    rows: int
    partial: str | None  # None | "rows" | "bytes" | "forced" | "overflow" | "warning"


def render(
    result: QueryResult, max_rows: int, max_bytes: int, *, force_partial: bool = False, other: str = ""
) -> Rendered:
    """The body for ``result``; ``other`` (``overflow``/``warning``) adds a partial error that is not a cap."""
    rows = result.rows
    partial: str | None = None
    error: bytes | None = None
    if len(rows) > max_rows:
        rows = rows[:max_rows]
        partial = "rows"
        error = orjson.dumps(partial_error("rows", max_rows))
    # Each row costs its bytes plus a separating comma.
    if rows and sum(map(len, rows)) + len(rows) > max_bytes:
        sizes = list(accumulate(len(r) + 1 for r in rows))
        rows = rows[: bisect_right(sizes, max_bytes)]
        partial = "bytes"
        error = orjson.dumps(partial_error("bytes", max_bytes))
    if force_partial and partial is None:
        rows = rows[: len(rows) // 2]
        partial = "forced"
        error = orjson.dumps(partial_error("rows", max(len(rows), 1)))
    if other and partial is None:
        if other == "overflow":
            rows = rows[: len(rows) // 2]
        partial = other
        error = orjson.dumps(partial_other(other))
    prefix = b'{"tables":[{"name":"PrimaryResult","columns":' + result.columns_json + b',"rows":['
    body = b",".join(rows)
    suffix = b"]}]" + (b',"error":' + error if error is not None else b"") + b"}"
    return Rendered([prefix, body, suffix], len(prefix) + len(body) + len(suffix), len(rows), partial)
