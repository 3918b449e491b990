"""The budget's entities in storage: one partition per identity and endpoint (I/O only).

Every call that changes a slot is conditional on the ETag its caller read or wrote last, so two
instances never both take one slot; ``shared.budget.slots.Budget`` decides what to write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.budget.hold import Hold
from shared.budget.state import PAUSE_ROW, SlotView, Snapshot, pack_times, slot_row, unpack_times
from shared.errors import RetriableError

__all__ = ["SlotStore"]

log = logging.getLogger(__name__)
_IF_MATCH: dict[str, Any] = {"mode": UpdateMode.MERGE, "match_condition": MatchConditions.IfNotModified}
# Times are stored as Double milliseconds (exact below 2**53): a Python int above 2**31 is not an Edm.Int64.


class SlotStore:
    """Reads and writes one budget partition; ``count`` tallies each call (``BudgetCounts`` fields)."""

    def __init__(self, table: TableClient, key: str, holder: str, count: Callable[..., None]) -> None:
        self.table = table
        self.key = key
        self.holder = holder
        self._count = count
        self._table_ready = False

    def read(self) -> Snapshot:
        try:
            entities = list(self.table.query_entities("PartitionKey eq @pk", parameters={"pk": self.key}))
        except ResourceNotFoundError:
            self._ensure_table()
            entities = []
        except AzureError as exc:
            raise RetriableError(f"query budget storage read failed: {exc}") from exc
        finally:
            self._count(reads=1)
        slots: dict[int, SlotView] = {}
        paused_until, pause_etag = 0, None
        for e in entities:
            row, etag = str(e["RowKey"]), str(e.metadata["etag"])
            if row == PAUSE_ROW:
                paused_until, pause_etag = int(e.get("until", 0)), etag
            elif row.startswith("slot-") and row[5:].isdigit():
                times = unpack_times(e.get("log"), int(e.get("base", 0)))
                slots[int(row[5:])] = SlotView(int(e.get("expires", 0)), str(e.get("holder", "")), times, etag)
        return Snapshot(slots, paused_until, pause_etag)

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        try:
            self.table.create_table()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise RetriableError(f"query budget table {self.table.table_name}: {exc}") from exc
        self._table_ready = True

    def take(self, slot: int, etag: str | None, times: list[int], base: int, expires: int, *, what: str) -> str | None:
        """Take ``slot`` and log the request in one conditional write (``etag`` None: create it).
        Returns the new etag, or ``None`` when another instance changed the slot first."""
        entity = {
            "PartitionKey": self.key,
            "RowKey": slot_row(slot),
            "holder": self.holder,
            "expires": float(expires),
            "base": float(base),
            "log": pack_times(times, base),
        }
        try:
            if etag is None:
                meta = self.table.create_entity(entity)
            else:
                meta = self.table.update_entity(entity, etag=etag, **_IF_MATCH)
        except (ResourceExistsError, ResourceModifiedError):  # 409 / 412: another instance was first
            self._count(conflicts=1)
            return None
        except AzureError as exc:
            raise RetriableError(f"query budget {what} failed: {exc}") from exc
        self._count(**{what: 1})
        return str(meta["etag"])

    def write_slot(self, hold: Hold, *, expires: int, what: str) -> bool:
        """Move a held slot's expiry (a renewal, or 0: a release). False when the slot was lost
        (expired and taken meanwhile) or, for a release, when storage failed: it then expires."""
        row = slot_row(hold.slot)
        entity = {"PartitionKey": self.key, "RowKey": row, "holder": self.holder, "expires": float(expires)}
        self._count(**{what: 1})
        try:
            meta = self.table.update_entity(entity, etag=hold.etag, **_IF_MATCH)
        except ResourceModifiedError:
            hold.lost = True
            self._count(lost=1)
            log.warning("query budget %s: slot %d expired while held (taken by another query)", self.key, hold.slot)
            return False
        except AzureError as exc:
            log.warning("query budget %s: %s of slot %d failed: %s", self.key, what, hold.slot, exc)
            return what == "renewals"  # keep trying to renew; a failed release just expires
        hold.etag = str(meta["etag"])
        return True

    def write_pause(self, until: int) -> None:
        """Hold every instance off until ``until`` (ms), unless a later pause is there. Best effort."""
        entity = {"PartitionKey": self.key, "RowKey": PAUSE_ROW, "until": float(until)}
        for _ in range(3):
            try:
                snap = self.read()
                if snap.paused_until >= until:
                    return
                self._count(pauses=1)
                if snap.pause_etag is None:
                    self.table.create_entity(entity)
                else:
                    self.table.update_entity(entity, etag=snap.pause_etag, **_IF_MATCH)
                return
            except (ResourceExistsError, ResourceModifiedError):
                continue  # another instance paused at the same time: read theirs
            except (AzureError, RetriableError) as exc:
                log.warning("query budget %s: could not share a pause: %s", self.key, exc)
                return
