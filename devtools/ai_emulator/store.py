"""In-memory telemetry: per classic table, hour buckets of pre-serialized rows.

Each row is kept as the JSON bytes of its classic cell array plus two ints: event ticks
and ingestion ticks. A bucket sorts lazily (only after out-of-order inserts), so a window
query is two bisects and a slice, and a response is a ``b",".join`` of stored bytes.
Workspace (``App*``) bytes are derived lazily per row the first time a workspace query
touches it, then cached beside the classic bytes.

Visibility: a row exists for queries only once ``ingestion ticks <= now`` — that is how
late-arriving data is modelled.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from .query import Selection
from .schema import CLASSIC_TABLES, WORKSPACE_TABLES, TableSchema, WorkspaceContext, workspace_converter
from .timeutil import TICKS_PER_HOUR

__all__ = ["TelemetryStore"]

_BUCKET = TICKS_PER_HOUR


class _Bucket:
    """One hour of one table; lists stay parallel and, when ``ordered``, sorted by ticks."""

    __slots__ = ("ing", "max_ing", "min_ing", "ordered", "rows", "ts", "ws")

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.ing: list[int] = []
        self.rows: list[bytes] = []
        self.ws: list[bytes | None] | None = None
        self.ordered = True
        self.max_ing = -(2**63)
        self.min_ing = 2**63

    def add(self, ts: Sequence[int], ing: Sequence[int], rows: Sequence[bytes]) -> None:
        if self.ordered and ts:
            last = self.ts[-1] if self.ts else -(2**63)
            prev = last
            for t in ts:
                if t < prev:
                    self.ordered = False
                    break
                prev = t
        self.ts.extend(ts)
        self.ing.extend(ing)
        self.rows.extend(rows)
        if self.ws is not None:
            self.ws.extend([None] * len(rows))
        if ing:
            self.max_ing = max(self.max_ing, max(ing))
            self.min_ing = min(self.min_ing, min(ing))

    def sort(self) -> None:
        if self.ordered:
            return
        order = sorted(range(len(self.ts)), key=self.ts.__getitem__)
        self.ts = [self.ts[i] for i in order]
        self.ing = [self.ing[i] for i in order]
        self.rows = [self.rows[i] for i in order]
        if self.ws is not None:
            ws = self.ws
            self.ws = [ws[i] for i in order]
        self.ordered = True


class TelemetryStore:
    """Thread-safe row store shared by the HTTP server, the seeder and the test API."""

    def __init__(self, workspace: WorkspaceContext) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, dict[int, _Bucket]] = {name: {} for name in CLASSIC_TABLES}
        self._converters: dict[str, Callable[[list[Any], int], list[Any]]] = {
            ws.classic: workspace_converter(ws.name, workspace) for ws in WORKSPACE_TABLES.values()
        }

    def add(self, table: str, ts: Sequence[int], ing: Sequence[int], rows: Sequence[bytes]) -> int:
        """Insert rows of a classic table (any order); returns how many were added."""
        if not (len(ts) == len(ing) == len(rows)):
            raise ValueError("ts, ing and rows must have the same length")
        buckets = self._tables[table]
        groups: dict[int, tuple[list[int], list[int], list[bytes]]] = {}
        for t, g, r in zip(ts, ing, rows, strict=True):
            grp = groups.get(t // _BUCKET)
            if grp is None:
                grp = groups[t // _BUCKET] = ([], [], [])
            grp[0].append(t)
            grp[1].append(g)
            grp[2].append(r)
        with self._lock:
            for key, (gts, ging, grows) in groups.items():
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = _Bucket()
                bucket.add(gts, ging, grows)
        return len(rows)

    def clear(self, table: str | None = None) -> None:
        with self._lock:
            for name in [table] if table else list(self._tables):
                self._tables[name] = {}

    def count(self, table: str) -> int:
        """All stored rows of a classic table, visible or not."""
        with self._lock:
            return sum(len(b.ts) for b in self._tables[table].values())

    def tables(self) -> dict[str, int]:
        with self._lock:
            return {n: sum(len(b.ts) for b in bs.values()) for n, bs in self._tables.items()}

    def select(self, schema: TableSchema, ts_lo: int, ts_hi: int, ing_lo: int, ing_hi: int, now: int) -> Selection:
        """Rows with ``ts in [ts_lo, ts_hi)``, ``ingestion in [ing_lo, ing_hi)`` and
        ``ingestion <= now``, in time order, as ``schema`` (classic or workspace) bytes."""
        out_ts: list[int] = []
        out_ing: list[int] = []
        out_rows: list[bytes] = []
        if ts_lo >= ts_hi:
            return Selection(out_ts, out_ing, out_rows)
        vis_hi = min(ing_hi, now + 1)
        convert = self._converters[schema.classic] if schema.workspace else None
        with self._lock:
            buckets = self._tables[schema.classic]
            for key in sorted(buckets):
                if (key + 1) * _BUCKET <= ts_lo or key * _BUCKET >= ts_hi:
                    continue
                b = buckets[key]
                b.sort()
                i = bisect_left(b.ts, ts_lo)
                j = bisect_left(b.ts, ts_hi)
                if i >= j:
                    continue
                if ing_lo <= b.min_ing and b.max_ing < vis_hi:
                    idx: Iterable[int] = range(i, j)
                    out_ts.extend(b.ts[i:j])
                    out_ing.extend(b.ing[i:j])
                else:
                    ing = b.ing
                    idx = [k for k in range(i, j) if ing_lo <= ing[k] < vis_hi]
                    out_ts.extend([b.ts[k] for k in idx])
                    out_ing.extend([ing[k] for k in idx])
                if convert is None:
                    if isinstance(idx, range):
                        out_rows.extend(b.rows[i:j])
                    else:
                        rows = b.rows
                        out_rows.extend([rows[k] for k in idx])
                else:
                    out_rows.extend(_workspace_rows(b, idx, convert))
        return Selection(out_ts, out_ing, out_rows)


def _workspace_rows(b: _Bucket, idx: Iterable[int], convert: Callable[[list[Any], int], list[Any]]) -> list[bytes]:
    if b.ws is None:
        b.ws = [None] * len(b.rows)
    ws, rows = b.ws, b.rows
    out: list[bytes] = []
    loads, dumps = orjson.loads, orjson.dumps
    for k in idx:
        cached = ws[k]
        if cached is None:
            raw = rows[k]
            cached = ws[k] = dumps(convert(loads(raw), len(raw)))
        out.append(cached)
    return out
