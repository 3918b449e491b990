"""Ledger writes on windows nobody holds: queueing, poison failures, replay requests.

Each is a conditional write on the ETag the caller (or this code) read, so it never
overrides a claim, a completion or another writer that got there first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.ledger_rows import new_entity, translate
from shared.model import Window
from shared.windows import WindowState

__all__ = ["Unclaimed"]

_MAX_ERROR = 4000
_CLEAR = ""  # the SDK drops None from a MERGE; an empty string clears a field


class Unclaimed:
    """Mixin of ``Ledger``: changes to windows that no runner holds."""

    _table: TableClient

    if TYPE_CHECKING:  # provided by Ledger / Marks; declared here for the type checker only

        def ensure(self) -> None: ...

        def _get(self, pipeline: str, key: str) -> dict[str, Any] | None: ...

        def reopen(self, pipeline: str, key: str, now: datetime) -> None: ...

    def mark_queued(self, pipeline: str, state: WindowState, now: datetime) -> bool:
        """``queued`` for a window the planner read (ETag): ``False`` when it changed since."""
        fields = {"PartitionKey": pipeline, "RowKey": state.key, "Status": "queued", "QueuedAt": now, "UpdatedAt": now}
        if state.status == "running":  # a dead runner's window: its lease is over, the next claim takes it over
            fields |= {"LeaseUntil": _CLEAR}
        try:
            self._table.update_entity(
                fields, mode=UpdateMode.MERGE, etag=state.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        except AzureError as exc:
            raise translate(exc, "queue") from exc
        return True

    def fail_unclaimed(self, pipeline: str, window: Window, *, now: datetime, error: str, attempts: int) -> bool:
        """Mark a window nobody holds ``failed`` with ``attempts`` used up (a poison message); replayable."""
        for _ in range(5):
            entity = self._get(pipeline, window.key)
            if entity is None:
                return False
            status = entity.get("Status")
            until = entity.get("LeaseUntil")
            if status == "done" or (status == "running" and isinstance(until, datetime) and until > now):
                return False  # it finished, or someone runs it right now: the ledger knows better
            try:
                self._table.update_entity(
                    {
                        "PartitionKey": pipeline,
                        "RowKey": window.key,
                        "Status": "failed",
                        "LastError": error[:_MAX_ERROR],
                        "Attempts": max(int(entity.get("Attempts", 0) or 0), attempts),
                        "NextAttemptAt": _CLEAR,
                        "LeaseOwner": "",
                        "LeaseUntil": _CLEAR,
                        "QueuedAt": _CLEAR,
                        "FinishedAt": now,
                        "UpdatedAt": now,
                        "Poisoned": True,
                    },
                    mode=UpdateMode.MERGE,
                    etag=entity["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return True
            except ResourceModifiedError:
                continue
            except AzureError as exc:
                raise translate(exc, "fail") from exc
        return False

    def request_replay(self, pipeline: str, windows: Sequence[Window], now: datetime) -> int:
        """Queue windows for the next plans: mark them ``pending`` (created if missing).

        A window running right now keeps running; returns how many were queued.
        """
        self.ensure()
        queued = 0
        for window in windows:
            for _ in range(5):
                entity = self._get(pipeline, window.key)
                try:
                    if entity is None:
                        self._table.create_entity(new_entity(pipeline, window, now))
                    else:
                        until = entity.get("LeaseUntil")
                        if entity.get("Status") == "running" and isinstance(until, datetime) and until > now:
                            break
                        self._table.update_entity(
                            {
                                "PartitionKey": pipeline,
                                "RowKey": window.key,
                                "Status": "pending",
                                "Attempts": 0,
                                "Takeovers": 0,
                                "NextAttemptAt": _CLEAR,
                                "QueuedAt": _CLEAR,
                                "UpdatedAt": now,
                            },
                            mode=UpdateMode.MERGE,
                            etag=entity["_etag"],
                            match_condition=MatchConditions.IfNotModified,
                        )
                    queued += 1
                    break
                except (ResourceExistsError, ResourceModifiedError):
                    continue
                except AzureError as exc:
                    raise translate(exc, "replay") from exc
        if windows:
            self.reopen(pipeline, min(w.key for w in windows), now)  # after the windows: see ledger_marks
        return queued
