"""The window ledger in Azure Table Storage: one entity per (pipeline, window).

PartitionKey = pipeline name, RowKey = window start key (``20261102T100000Z``), so a
pipeline's windows sort by time within one partition. A ``~meta`` row holds the
frontier and the open mark (``shared.ledger_marks``), which let a plan read only the
windows that may still need work.

Every state change is a conditional write on the entity's ETag: two runners can
never both claim a window, and a runner whose lease was taken over cannot mark it
done on top of the new owner's state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.ledger_marks import Marks, Snapshot
from shared.ledger_rows import META_KEY, Unreadable, new_entity, read_entities, state_of, translate
from shared.ledger_unclaimed import Unclaimed
from shared.model import Window, format_ts, window_key
from shared.redact import redact
from shared.windows import WindowState

__all__ = ["META_KEY", "Claim", "LeaseLost", "Ledger", "Snapshot"]

log = logging.getLogger(__name__)
_MAX_ERROR = 4000
_CLEAR = ""  # the SDK drops None from a MERGE; an empty string clears a field


class LeaseLost(Exception):
    """Our claim was taken over (lease expired and another runner reclaimed the window)."""


@dataclass
class Claim:
    """Proof that this runner holds a window; the ETag advances with every renewal."""

    pipeline: str
    window: Window
    owner: str
    attempts: int
    etag: str
    lease_until: datetime
    previous: WindowState | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Ledger(Unclaimed, Marks):
    """Table-backed ledger. Thread-safe (the SDK client is)."""

    def __init__(self, service: TableServiceClient, table: str) -> None:
        self._service = service
        self._table_name = table
        self._table: TableClient = service.get_table_client(table)
        self._ensured = False
        self.unreadable: dict[str, list[str]] = {}  # pipeline → entities the last read had to skip

    def ensure(self) -> None:
        """Create the table on first use (idempotent)."""
        if self._ensured:
            return
        try:
            self._service.create_table_if_not_exists(self._table_name)
        except AzureError as exc:
            raise translate(exc, "create table") from exc
        self._ensured = True

    # -- reading --------------------------------------------------------------------------
    def states(
        self, pipeline: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[WindowState]:
        """Readable windows of a pipeline, oldest first (status page, tests); unreadable ones reported.

        ``since``/``until`` bound the window starts (``since <= start < until``) as a RowKey
        range, so a status page for a few days reads only those entities.
        """
        self.ensure()
        low = window_key(since) if since else ""
        high = min(window_key(until), META_KEY) if until else META_KEY
        query = "PartitionKey eq @p and RowKey ge @lo and RowKey lt @hi"
        entities, bad = read_entities(self._table, query, {"p": pipeline, "lo": low, "hi": high}, "list")
        for entity in entities:
            try:
                yield state_of(entity, entity["_etag"])
            except Unreadable as exc:
                log.error("ledger entity %s/%s cannot be read (%s); skipped", pipeline, entity.get("RowKey"), exc)
                bad.append(f"{entity.get('RowKey')}: {exc}")
        self.unreadable[pipeline] = bad

    def failed(self, pipeline: str) -> list[WindowState]:
        """Every ``failed`` window of a pipeline (status pages: those out of retries sit behind the open mark)."""
        self.ensure()
        query = "PartitionKey eq @p and RowKey lt @m and Status eq 'failed'"
        entities, _ = read_entities(self._table, query, {"p": pipeline, "m": META_KEY}, "failed")
        out: list[WindowState] = []
        for entity in entities:
            try:
                out.append(state_of(entity, entity["_etag"]))
            except Unreadable:
                continue  # reported by the full reads
        return out

    def get(self, pipeline: str, window: Window) -> WindowState | None:
        entity = self._get(pipeline, window.key)
        return None if entity is None else state_of(entity, entity["_etag"])

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

    # -- claiming and finishing -------------------------------------------------------------
    def claim(
        self,
        pipeline: str,
        window: Window,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        max_attempts: int,
        force: bool = False,
    ) -> Claim | None:
        """Take the window for this runner, or ``None`` when it is not ours to run now.

        Not ours: another runner holds a live lease; or (unless ``force``) it is done, or
        failed with no retries left / not yet due for retry. Taking over an expired lease
        (its runner died) is counted in ``Takeovers``; only after ``max_attempts`` of them
        does a takeover use up an attempt, so crashes cannot leave a healthy window failed.
        """
        self.ensure()
        until = now + lease
        for _ in range(3):
            entity = self._get(pipeline, window.key)
            if entity is None:
                fresh = new_entity(pipeline, window, now) | self._running(owner, 1, now, until)
                try:
                    meta = self._table.create_entity(fresh)
                except ResourceExistsError:
                    continue
                except AzureError as exc:
                    raise translate(exc, "claim") from exc
                self.reopen(pipeline, window.key, now)  # a window outside the plan: let the planner see it
                return Claim(pipeline, window, owner, 1, str(meta["etag"]), until)
            try:
                state = state_of(entity, entity["_etag"])
            except Unreadable as exc:
                if not force:
                    log.error("%s %s: ledger entity unreadable (%s); replay it to rewrite", pipeline, window, exc)
                    return None
                state = WindowState(window=window, status="failed", etag=entity["_etag"])
            if state.status == "running" and state.lease_until and state.lease_until > now:
                return None
            if not force and state.status == "done":
                return None
            waiting = state.next_attempt_at is not None and state.next_attempt_at > now
            if not force and state.status == "failed" and (state.attempts >= max_attempts or waiting):
                return None
            takeover = state.status == "running" and not force
            free = takeover and state.takeovers < max_attempts
            attempts = 1 if force or state.attempts == 0 else state.attempts + (0 if free else 1)
            update = {"PartitionKey": pipeline, "RowKey": window.key} | self._running(owner, attempts, now, until)
            if takeover:
                update["Takeovers"] = state.takeovers + 1
            if force:
                update["Takeovers"] = 0
            try:
                meta = self._table.update_entity(
                    update, mode=UpdateMode.MERGE, etag=entity["_etag"], match_condition=MatchConditions.IfNotModified
                )
            except ResourceModifiedError:
                return None  # someone else changed it first: theirs
            except AzureError as exc:
                raise translate(exc, "claim") from exc
            if force:
                self.reopen(pipeline, window.key, now)  # it may sit behind the open mark (done, or out of retries)
            return Claim(pipeline, window, owner, attempts, str(meta["etag"]), until, previous=state)
        return None

    @staticmethod
    def _running(owner: str, attempts: int, now: datetime, until: datetime) -> dict[str, Any]:
        return {
            "Status": "running",
            "Attempts": attempts,
            "LeaseOwner": owner,
            "LeaseUntil": until,
            "StartedAt": now,
            "UpdatedAt": now,
        }

    def renew(self, claim: Claim, now: datetime, lease: timedelta) -> None:
        """Extend the lease of a long window. Raises ``LeaseLost`` if it was taken over."""
        until = now + lease
        self._write(claim, {"LeaseUntil": until, "UpdatedAt": now})
        claim.lease_until = until

    def complete(
        self,
        claim: Claim,
        *,
        now: datetime,
        rows: int,
        nbytes: int,
        outputs: Sequence[Mapping[str, Any]],
        source_count: int | None = None,
        quarantined: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Mark done with counts and output names (also kept as the last good run). ``LeaseLost`` if taken over."""
        good = {
            "rows": rows,
            "bytes": nbytes,
            "outputs": [o.get("name") for o in outputs],
            "finished_at": format_ts(now),
        }
        fields: dict[str, Any] = {
            "Status": "done",
            "Rows": rows,
            "Bytes": nbytes,
            "Outputs": orjson.dumps([dict(o) for o in outputs]).decode(),
            "LastGood": orjson.dumps(good).decode(),
            "LastError": "",
            "LeaseOwner": "",
            "LeaseUntil": _CLEAR,
            "NextAttemptAt": _CLEAR,
            "QueuedAt": _CLEAR,
            "FinishedAt": now,
            "UpdatedAt": now,
            "Quarantined": quarantined,
            "SourceCount": _CLEAR if source_count is None else source_count,
        }
        if extra is not None:
            fields["Extra"] = orjson.dumps(extra).decode()
        self._write(claim, fields)

    def fail(self, claim: Claim, *, now: datetime, error: str, next_attempt_at: datetime | None) -> None:
        """Record a failure; the window stays visible as ``failed`` with its reason."""
        self._write(
            claim,
            {
                "Status": "failed",
                "LastError": redact(error)[:_MAX_ERROR],
                "LeaseOwner": "",
                "LeaseUntil": _CLEAR,
                "QueuedAt": _CLEAR,
                "NextAttemptAt": _CLEAR if next_attempt_at is None else next_attempt_at,
                "FinishedAt": now,
                "UpdatedAt": now,
            },
        )

    def checkpoint(self, claim: Claim, *, now: datetime, extra: dict[str, Any]) -> None:
        """Record a paused window's progress and hand it back as ``pending`` for the next run.

        The claim's attempt is given back too: pausing is not a failure.
        """
        self._write(
            claim,
            {
                "Status": "pending",
                "Attempts": max(0, claim.attempts - 1),
                "Extra": orjson.dumps(extra).decode(),
                "LeaseOwner": "",
                "LeaseUntil": _CLEAR,
                "QueuedAt": _CLEAR,
                "UpdatedAt": now,
            },
        )

    def _write(self, claim: Claim, fields: dict[str, Any]) -> None:
        with claim.lock:
            entity = {"PartitionKey": claim.pipeline, "RowKey": claim.window.key, **fields}
            try:
                meta = self._table.update_entity(
                    entity, mode=UpdateMode.MERGE, etag=claim.etag, match_condition=MatchConditions.IfNotModified
                )
            except ResourceModifiedError as exc:
                raise LeaseLost(f"{claim.pipeline} {claim.window}: lease taken over") from exc
            except ResourceNotFoundError as exc:
                raise LeaseLost(f"{claim.pipeline} {claim.window}: entity vanished") from exc
            except AzureError as exc:
                raise translate(exc, "update") from exc
            claim.etag = str(meta["etag"])
