"""The per-pipeline marks that keep planning O(pipelines) whatever the history.

The ``~meta`` row of a pipeline's partition holds the **frontier** (end of the newest
window ever recorded) and the **open mark** (key of the oldest window that may still need
work). A plan reads the meta row, then only the not-done windows from the open mark on —
a RowKey range, so its cost follows the open windows, not the years already moved.

Why the open mark is safe with concurrent writers: whoever re-opens a window behind the mark
(a replay, a forced claim, a claim of a window no plan recorded) writes the window and the
meta row in one entity group transaction (``shared.ledger.write``), which changes the meta
ETag even when the mark does not move; a planner advances the mark only conditionally on the
meta ETag it read *before* its range query. So a window re-opened after the planner's read
always either shows in its query or fails its advance, and no crash separates the two writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.errors import RetriableError
from shared.ledger.rollups import Rollups
from shared.ledger.rows import META_KEY, Unreadable, as_dt, new_entity, read_entities, state_of, translate
from shared.ledger.write import Writes, window_of
from shared.model import Window, window_key
from shared.windows import WindowState

__all__ = ["Marks", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """What one plan needs: frontier, open mark (+ the meta ETag to advance it), open windows."""

    frontier: datetime | None
    states: tuple[WindowState, ...]
    open_from: str = ""
    meta_etag: str | None = None
    unreadable: tuple[str, ...] = ()
    operations: int = 0  # storage requests this read made (pages count one each)


class Marks(Writes):
    """Mixin of ``Ledger``: frontier, open mark and the planning read."""

    _table: TableClient
    unreadable: dict[str, list[str]]

    rollups: Rollups

    def snapshot(self, pipeline: str, *, since: datetime | None = None) -> Snapshot:
        """Meta row, the not-done windows from the open mark on, and done windows from ``since`` on."""
        self.ensure()
        meta = self._get(pipeline, META_KEY)
        open_from = str(meta.get("OpenFrom") or "") if meta else ""
        ops = 1
        query = "PartitionKey eq @p and RowKey ge @open and RowKey lt @meta and Status ne 'done'"
        params = {"p": pipeline, "open": open_from, "meta": META_KEY}
        entities, bad = read_entities(self._table, query, params, "snapshot")
        ops += 1 + len(entities) // 1000
        if since is not None:
            done_query = "PartitionKey eq @p and RowKey ge @since and RowKey lt @meta and Status eq 'done'"
            done, bad_done = read_entities(
                self._table, done_query, {"p": pipeline, "since": window_key(since), "meta": META_KEY}, "snapshot"
            )
            entities += done
            bad += bad_done
            ops += 1 + len(done) // 1000
        states: list[WindowState] = []
        for entity in entities:
            try:
                states.append(state_of(entity, entity["_etag"]))
            except Unreadable as exc:
                bad.append(f"{entity.get('RowKey')}: {exc}")
        self.unreadable[pipeline] = bad
        return Snapshot(
            frontier=as_dt(meta.get("Frontier")) if meta else None,
            states=tuple(states),
            open_from=open_from,
            meta_etag=meta["_etag"] if meta else None,
            unreadable=tuple(bad),
            operations=ops,
        )

    def advance_open_mark(self, pipeline: str, key: str, etag: str | None, now: datetime) -> bool:
        """Move the open mark forward to ``key`` if the meta row is unchanged since the plan read it."""
        if etag is None:
            return False
        try:
            self._table.update_entity(
                {"PartitionKey": pipeline, "RowKey": META_KEY, "OpenFrom": key, "UpdatedAt": now},
                mode=UpdateMode.MERGE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False  # someone re-opened a window (or moved the frontier): the next plan sees it
        except AzureError as exc:
            raise translate(exc, "open mark") from exc
        return True

    def _update_meta(
        self, pipeline: str, now: datetime, change: Callable[[dict[str, Any] | None], dict[str, Any] | None], what: str
    ) -> None:
        """Apply ``change`` (meta row → fields to merge, ``None``: nothing to do) under the row's ETag,
        creating the row when missing; concurrent writers make it read and try again."""
        for _ in range(10):
            meta = self._get(pipeline, META_KEY)
            fields = change(meta)
            if fields is None:
                return
            entity = {"PartitionKey": pipeline, "RowKey": META_KEY, **fields, "UpdatedAt": now}
            try:
                if meta is None:
                    self._table.create_entity(entity)
                else:
                    self._table.update_entity(
                        entity, mode=UpdateMode.MERGE, etag=meta["_etag"], match_condition=MatchConditions.IfNotModified
                    )
                return
            except (ResourceExistsError, ResourceModifiedError):
                continue
            except AzureError as exc:
                raise translate(exc, what) from exc
        raise RetriableError(f"ledger {what} of {pipeline}: too much contention")

    def record_new(
        self, pipeline: str, windows: Sequence[Window], now: datetime, *, status: str = "pending"
    ) -> list[Window]:
        """T1: create ``pending`` (or ``queued``) entities for new windows, then move the frontier past them.

        Returns the windows this call created (another planner may have created the rest).
        Entities first, frontier second: a crash in between leaves windows the next plan
        sees twice (creation is idempotent), never a window nobody recorded.
        """
        if not windows:
            return []
        self.ensure()
        created: list[Window] = []
        intent = self.rollups.intend(pipeline, list(windows), now)
        states: list[WindowState] = []
        try:
            for i in range(0, len(windows), 100):  # a Table transaction holds at most 100 operations
                chunk = windows[i : i + 100]
                rows = [new_entity(pipeline, w, now, status) | {"Seq": 1} for w in chunk]
                try:
                    results = self._table.submit_transaction([("create", row) for row in rows])
                    pairs = list(zip(rows, (str(r["etag"]) for r in results), strict=True))
                except TableTransactionError:
                    pairs = []
                    for row in rows:  # some exist already (another planner, or a crash): create the rest one by one
                        try:
                            pairs.append((row, str(self._table.create_entity(row)["etag"])))
                        except ResourceExistsError:
                            pass
                        except AzureError as exc:
                            raise translate(exc, "record") from exc
                except AzureError as exc:
                    raise translate(exc, "record") from exc
                for row, etag in pairs:
                    created.append(window_of(row))
                    states.append(state_of(row, etag))
        except BaseException:
            self.rollups.apply_partial(intent, states)
            raise
        self.rollups.apply(intent, states)
        self.advance_frontier(pipeline, max(w.end for w in windows), now)
        return created

    def advance_frontier(self, pipeline: str, end: datetime, now: datetime) -> None:
        """Move the frontier forward to ``end`` (never back), tolerating concurrent writers."""

        def forward(meta: dict[str, Any] | None) -> dict[str, Any] | None:
            current = as_dt(meta.get("Frontier")) if meta else None
            return None if current is not None and current >= end else {"Frontier": end}

        self._update_meta(pipeline, now, forward, "frontier")

    def frontier(self, pipeline: str) -> datetime | None:
        entity = self._get(pipeline, META_KEY)
        return None if entity is None else as_dt(entity.get("Frontier"))
