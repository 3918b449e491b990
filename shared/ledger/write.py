"""The one write of each ledger transition, framed by the day rollup's intent and apply.

A status change of a window is a single conditional write on its entity (If-Match the ETag
the writer read, or a create), or — when the pipeline's open mark must come back with it
(a replay, a forced claim, a window claimed outside the plan) — one entity group
transaction of the window and the ``~meta`` row, so no crash can leave one without the
other. Every such write adds 1 to ``Seq`` and is announced to the day rollup before it is
made (``shared.ledger.rollups``). See docs/reliability.md for the table of transitions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.errors import RetriableError
from shared.ledger.claim import CLEAR
from shared.ledger.rollups import Rollups
from shared.ledger.rows import META_KEY, Unreadable, state_of, translate
from shared.model import Window
from shared.windows import WindowState

__all__ = ["CLEAR", "Lost", "Writes", "window_of"]



class Lost(Exception):
    """The entity changed since the writer read it: the newer decision stands."""


def window_of(entity: Mapping[str, Any]) -> Window:
    return Window(entity["WindowStart"], entity["WindowEnd"])


def _if_match(etag: str) -> dict[str, Any]:
    return {"mode": UpdateMode.MERGE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


class Writes:
    """The base of ``Ledger``'s parts: its table, the rollups, reads of one entity, ``transition``
    (status changes) and ``merge_if`` (bookkeeping writes)."""

    _service: TableServiceClient
    _table_name: str
    _table: TableClient
    _ensured: bool
    rollups: Rollups

    def ensure(self) -> None:
        """Create the table on first use (idempotent)."""
        if self._ensured:
            return
        try:
            self._service.create_table_if_not_exists(self._table_name)
        except AzureError as exc:
            raise translate(exc, "create table") from exc
        self._ensured = True

    def _get(self, pipeline: str, key: str) -> dict[str, Any] | None:
        self.ensure()
        try:
            entity = self._table.get_entity(pipeline, key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, "get") from exc
        out = dict(entity)
        out["_etag"] = entity.metadata["etag"]
        return out

    def record(self, partition: str, key: str) -> dict[str, Any] | None:
        """One of the ledger's own records beside the windows (a partition no pipeline has, e.g.
        ``~verify``), or None."""
        return self._get(partition, key)

    def put_record(self, entity: Mapping[str, Any]) -> None:
        """Replace such a record whole (last writer wins: it holds a report, not a decision)."""
        self.ensure()
        try:
            self._table.upsert_entity(dict(entity), mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise translate(exc, f"writing {entity['PartitionKey']}/{entity['RowKey']}") from exc


    def transition(
        self,
        pipeline: str,
        entity: Mapping[str, Any] | None,
        fields: Mapping[str, Any],
        now: datetime,
        *,
        reopen: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Write ``fields`` over ``entity`` (If-Match its ``_etag``; ``None``: create ``fields``).

        ``reopen``: lower the meta row's open mark to this key in the same transaction.
        Returns the new ETag and the entity as written; raises ``Lost`` when the entity changed
        first, the engine's storage errors otherwise (the rollup intent then stays for readers).
        """
        done = self.transition_many(pipeline, [(entity, fields)], now, reopen=reopen is not None)
        if done[0] is None:
            raise Lost(str((entity or fields).get("RowKey")))
        return done[0]

    def transition_many(
        self,
        pipeline: str,
        items: Sequence[tuple[Mapping[str, Any] | None, Mapping[str, Any]]],
        now: datetime,
        *,
        reopen: bool = False,
    ) -> list[tuple[str, dict[str, Any]] | None]:
        """``transition`` for several windows under one rollup intent; ``None`` for each one lost."""
        rows: list[dict[str, Any]] = []
        for entity, fields in items:
            base = dict(entity or {})
            row = base | dict(fields) | {"Seq": int(base.get("Seq", 0) or 0) + 1}
            row.pop("_etag", None)
            rows.append(row)
        intent = self.rollups.intend(pipeline, [window_of(r) for r in rows], now)
        out: list[tuple[str, dict[str, Any]] | None] = []
        written: list[WindowState] = []
        try:
            for (entity, fields), row in zip(items, rows, strict=True):
                etag_in = (entity or {}).get("_etag") if entity is not None else None
                try:
                    etag = self._write(pipeline, etag_in, row, fields, str(row["RowKey"]) if reopen else None, now)
                except Lost:
                    out.append(None)
                    continue
                out.append((etag, row))
                with contextlib.suppress(Unreadable):  # an entity rewritten by hand: readers resolve its slot
                    written.append(state_of(row, etag))
        except BaseException:
            if written:  # what was written before the failure is known; the rest stays announced
                self.rollups.apply_partial(intent, written)
            raise
        self.rollups.apply(intent, written)
        return out

    def _write(
        self,
        pipeline: str,
        etag: str | None,
        row: dict[str, Any],
        fields: Mapping[str, Any],
        reopen: str | None,
        now: datetime,
    ) -> str:
        key = str(row["RowKey"])
        update = {"PartitionKey": pipeline, "RowKey": key, **fields, "Seq": row["Seq"]}
        if reopen is None:
            try:
                if etag is None:
                    meta = self._table.create_entity(row)
                else:
                    meta = self._table.update_entity(
                        update, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
            except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError) as exc:
                raise Lost(key) from exc
            except AzureError as exc:
                raise translate(exc, "update") from exc
            return str(meta["etag"])
        window_op: tuple[Any, ...] = ("create", row) if etag is None else ("update", update, _if_match(etag))
        for _ in range(10):
            current = self._get(pipeline, META_KEY)
            mark = str(current.get("OpenFrom") or "") if current else reopen
            meta_row = {"PartitionKey": pipeline, "RowKey": META_KEY, "OpenFrom": min(mark, reopen), "UpdatedAt": now}
            meta_op: tuple[Any, ...] = (
                ("create", meta_row) if current is None else ("update", meta_row, _if_match(current["_etag"]))
            )
            try:
                result = self._table.submit_transaction([window_op, meta_op])
            except TableTransactionError as exc:
                if exc.status_code in (404, 409, 412) and exc.index == 0:
                    raise Lost(key) from exc
                if exc.status_code in (409, 412):
                    continue  # the meta row moved (a plan advanced its mark): read it again
                raise translate(exc, "update") from exc
            except AzureError as exc:
                raise translate(exc, "update") from exc
            return str(result[0]["etag"])
        raise RetriableError(f"ledger {pipeline}: the meta row is too busy to re-open {key}")

    def merge_if(self, pipeline: str, key: str, etag: str, fields: Mapping[str, Any]) -> str:
        """A bookkeeping merge that changes no status (a lease, a sweep mark): If-Match, no rollup."""
        try:
            meta = self._table.update_entity(
                {"PartitionKey": pipeline, "RowKey": key, **fields},
                mode=UpdateMode.MERGE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise Lost(key) from exc
        except AzureError as exc:
            raise translate(exc, "update") from exc
        return str(meta["etag"])

    def current(self, pipeline: str, key: str) -> tuple[dict[str, Any] | None, WindowState | None]:
        """The entity (with ``_etag``) and its state; the state is ``None`` when unreadable or missing."""
        entity = self._get(pipeline, key)
        if entity is None:
            return None, None
        try:
            return entity, state_of(entity, entity["_etag"])
        except Unreadable:
            return entity, None
