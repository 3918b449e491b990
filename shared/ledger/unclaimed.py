"""Ledger writes on windows no run holds: queueing (T2, T3), sweep marks (T11, T13), poison (T15),
replay requests (T9).

Each is a conditional write on the ETag the caller (or this code) read, so it never
overrides a claim, a completion or another writer that got there first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import TableClient

from shared.ledger.claim import CLEAR, closed_fields, forget_checkpoint, free_takeovers
from shared.ledger.rows import Unreadable, entity_of, new_entity, read_entities, state_of
from shared.ledger.write import Lost, Writes
from shared.model import Window
from shared.windows import WindowState

__all__ = ["Unclaimed"]

log = logging.getLogger(__name__)
_MAX_ERROR = 4000


class Unclaimed(Writes):
    """Mixin of ``Ledger``: changes to windows that no runner holds."""

    _table: TableClient

    def mark_queued(self, pipeline: str, state: WindowState, now: datetime, *, max_attempts: int) -> bool:
        """T2 (and T3 for a ``running`` window whose lease ran out): ``queued`` If-Match the plan's ETag.

        ``False`` when the window changed since the plan read it, or when a dead run used up its
        window's last attempt (then it is closed instead: only a replay reopens it).
        """
        fields: dict[str, Any] = {"Status": "queued", "QueuedAt": now, "UpdatedAt": now}
        if state.status == "running":  # its run died: the lease ran out without an outcome
            free = state.takeovers < free_takeovers(max_attempts)
            if not free and state.attempts >= max_attempts:
                fields = closed_fields(state, now)
            else:
                fields |= {"LeaseOwner": "", "LeaseUntil": CLEAR, "Takeovers": state.takeovers + 1}
                if free:
                    fields["Attempts"] = max(0, state.attempts - 1)  # the dead run's attempt is given back
        try:
            self.transition(pipeline, entity_of(pipeline, state), fields, now)
        except Lost:
            return False
        return bool(fields["Status"] == "queued")

    def mark_sweep(self, pipeline: str, state: WindowState, now: datetime) -> str | None:
        """T11: a re-sweep message is about to be sent for this done window; the new ETag (the sweep
        claims If-Match exactly it), or ``None`` when the window changed since the plan read it."""
        try:
            return self.merge_if(pipeline, state.key, state.etag, {"SweepAt": now})
        except Lost:
            return None

    def mark_swept(self, pipeline: str, window: Window, etag: str, now: datetime) -> None:
        """T13: a re-sweep found nothing new (the next one may be sent); quietly nothing if it changed."""
        try:
            self.merge_if(pipeline, window.key, etag, {"SweptAt": now})
        except Lost:
            return

    def poison(self, pipeline: str, window: Window, *, now: datetime, error: str, backoff: timedelta) -> bool:
        """T15: a work message failed on every delivery. The window becomes ``failed`` (transient) and
        comes back after ``backoff`` × 2^(times poisoned), at most 6 hours: attempts are unchanged,
        so an outage never closes it."""
        for _ in range(5):
            entity, state = self.current(pipeline, window.key)
            if entity is None or state is None:
                return False
            live = state.status == "running" and state.lease_until is not None and state.lease_until > now
            if state.status == "done" or live:
                return False  # it finished, or someone runs it right now: the ledger knows better
            poisoned = int(entity.get("Poisoned", 0) or 0)
            fields = {
                "Status": "failed",
                "LastError": error[:_MAX_ERROR],
                "FailKind": "transient",
                "NextAttemptAt": now + min(backoff * 2 ** min(poisoned, 16), timedelta(hours=6)),
                "LeaseOwner": "",
                "LeaseUntil": CLEAR,
                "QueuedAt": CLEAR,
                "FinishedAt": now,
                "UpdatedAt": now,
                "Poisoned": poisoned + 1,
            }
            try:
                self.transition(pipeline, entity, fields, now)
                return True
            except Lost:
                continue
        return False

    def request_replay(self, pipeline: str, windows: Sequence[Window], now: datetime) -> int:
        """T9: each window becomes ``pending`` with fresh attempts and ``ReplayAt``, and the open mark
        comes back to it in the same transaction. A window running right now is taken from its run
        (whose next ledger write fails): the operator's request is newer. Returns how many were marked.
        """
        self.ensure()
        if not windows:
            return 0
        first, last = min(windows), max(windows)
        query = "PartitionKey eq @p and RowKey ge @lo and RowKey le @hi"
        found, _ = read_entities(self._table, query, {"p": pipeline, "lo": first.key, "hi": last.key}, "replay")
        by_key = {str(e["RowKey"]): e for e in found}
        items = [(by_key.get(w.key), self._replay_fields(pipeline, w, by_key.get(w.key), now)) for w in windows]
        marked = 0
        for window, result in zip(windows, self.transition_many(pipeline, items, now, reopen=True), strict=True):
            if result is not None:
                marked += 1
                continue
            for _ in range(5):  # changed between the read and the write: read it again
                entity, _state = self.current(pipeline, window.key)
                try:
                    self.transition(pipeline, entity, self._replay_fields(pipeline, window, entity, now), now,
                                    reopen=window.key)  # fmt: skip
                except Lost:
                    continue
                marked += 1
                break
            else:
                log.warning("%s %s: replay request lost to concurrent writers five times", pipeline, window)
        return marked

    def _replay_fields(
        self, pipeline: str, window: Window, entity: Mapping[str, Any] | None, now: datetime
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "Status": "pending",
            "Attempts": 0,
            "Takeovers": 0,
            "NextAttemptAt": CLEAR,
            "QueuedAt": CLEAR,
            "LeaseOwner": "",
            "LeaseUntil": CLEAR,
            "FailKind": "",
            "ReplayAt": now,
            "UpdatedAt": now,
        }
        if entity is None:
            return new_entity(pipeline, window, now) | fields
        try:
            state = state_of(entity, str(entity.get("_etag", "")))
        except Unreadable:  # the replay rewrites what the engine needs
            return fields | {"WindowStart": window.start, "WindowEnd": window.end, "Extra": "{}"}
        return fields | forget_checkpoint(state)
