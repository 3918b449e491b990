"""The window ledger in Azure Table Storage: one entity per (pipeline, window).

PartitionKey = pipeline name, RowKey = window start key (``20261102T100000Z``), so a
pipeline's windows sort by time within one partition. A ``~meta`` row holds the
frontier (end of the newest window ever recorded), which lets a tick read only the
windows that are not done (plus a look-back) in a single query.

Every state change is a conditional write on the entity's ETag: two runners can
never both claim a window, and a runner whose lease was taken over cannot mark it
done on top of the new owner's state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.errors import FatalError, RetriableError
from shared.model import Window, window_key
from shared.redact import redact
from shared.windows import Status, WindowState

__all__ = ["META_KEY", "Claim", "LeaseLost", "Ledger", "Snapshot"]

log = logging.getLogger(__name__)
META_KEY = "~meta"
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


@dataclass(frozen=True)
class Snapshot:
    """What one tick needs to plan a pipeline: frontier + windows not done (+ look-back)."""

    frontier: datetime | None
    states: tuple[WindowState, ...]


def _dt(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _translate(exc: AzureError, what: str) -> Exception:
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return RetriableError(f"ledger {what}: storage unreachable: {exc.message}")
    if isinstance(exc, HttpResponseError) and (exc.status_code or 0) >= 500:
        return RetriableError(f"ledger {what}: storage error {exc.status_code}")
    if isinstance(exc, HttpResponseError) and exc.status_code in (401, 403):
        return FatalError(f"ledger {what}: access denied to Table Storage ({exc.status_code})")
    return RetriableError(f"ledger {what}: {type(exc).__name__}: {exc.message}")


class Ledger:
    """Table-backed ledger. Thread-safe (the SDK client is)."""

    def __init__(self, service: TableServiceClient, table: str) -> None:
        self._service = service
        self._table_name = table
        self._table: TableClient = service.get_table_client(table)
        self._ensured = False

    def ensure(self) -> None:
        """Create the table on first use (idempotent)."""
        if self._ensured:
            return
        try:
            self._service.create_table_if_not_exists(self._table_name)
        except AzureError as exc:
            raise _translate(exc, "create table") from exc
        self._ensured = True

    # -- reading --------------------------------------------------------------------------
    def snapshot(self, pipeline: str, *, since: datetime | None = None) -> Snapshot:
        """One query: the meta row, every window not done, and done windows from ``since`` on."""
        self.ensure()
        floor = window_key(since) if since else META_KEY
        # The SDK substitutes only space-separated @words, hence the spaces inside the parentheses.
        query = "PartitionKey eq @p and ( Status ne 'done' or RowKey ge @floor )"
        frontier: datetime | None = None
        states: list[WindowState] = []
        try:
            for entity in self._table.query_entities(query, parameters={"p": pipeline, "floor": floor}):
                if entity["RowKey"] == META_KEY:
                    frontier = _dt(entity.get("Frontier"))
                else:
                    states.append(self._state(entity))
        except AzureError as exc:
            raise _translate(exc, "snapshot") from exc
        return Snapshot(frontier=frontier, states=tuple(states))

    def states(self, pipeline: str) -> Iterator[WindowState]:
        """Every recorded window of a pipeline, oldest first (status page, tests)."""
        self.ensure()
        try:
            for entity in self._table.query_entities(
                "PartitionKey eq @p and RowKey lt @m", parameters={"p": pipeline, "m": META_KEY}
            ):
                yield self._state(entity)
        except AzureError as exc:
            raise _translate(exc, "list") from exc

    def get(self, pipeline: str, window: Window) -> WindowState | None:
        entity = self._get(pipeline, window.key)
        return None if entity is None else self._state(entity)

    def frontier(self, pipeline: str) -> datetime | None:
        entity = self._get(pipeline, META_KEY)
        return None if entity is None else _dt(entity.get("Frontier"))

    def _get(self, pipeline: str, key: str) -> dict[str, Any] | None:
        self.ensure()
        try:
            entity = self._table.get_entity(pipeline, key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _translate(exc, "get") from exc
        out = dict(entity)
        out["_etag"] = entity.metadata["etag"]
        return out

    @staticmethod
    def _state(entity: dict[str, Any]) -> WindowState:
        start, end = _dt(entity.get("WindowStart")), _dt(entity.get("WindowEnd"))
        assert start is not None and end is not None, f"ledger entity {entity.get('RowKey')} lacks bounds"
        outputs_raw = entity.get("Outputs") or "[]"
        extra_raw = entity.get("Extra") or "{}"
        return WindowState(
            window=Window(start, end),
            status=cast(Status, entity.get("Status", "pending")),
            attempts=int(entity.get("Attempts", 0) or 0),
            lease_owner=str(entity.get("LeaseOwner", "") or ""),
            lease_until=_dt(entity.get("LeaseUntil")),
            next_attempt_at=_dt(entity.get("NextAttemptAt")),
            rows=int(entity.get("Rows", 0) or 0),
            bytes=int(entity.get("Bytes", 0) or 0),
            outputs=tuple(orjson.loads(outputs_raw)),
            error=str(entity.get("LastError", "") or ""),
            source_count=None if entity.get("SourceCount") in (None, "") else int(entity["SourceCount"]),
            quarantined=int(entity.get("Quarantined", 0) or 0),
            started_at=_dt(entity.get("StartedAt")),
            finished_at=_dt(entity.get("FinishedAt")),
            updated_at=_dt(entity.get("UpdatedAt")),
            extra=orjson.loads(extra_raw),
            queued_at=_dt(entity.get("QueuedAt")),
            takeovers=int(entity.get("Takeovers", 0) or 0),
            last_good=orjson.loads(entity["LastGood"]) if entity.get("LastGood") else None,
        )

    # -- recording new windows --------------------------------------------------------------
    def record_new(self, pipeline: str, windows: Sequence[Window], now: datetime) -> None:
        """Create ``pending`` entities for new windows, then move the frontier past them.

        Entities first, frontier second: a crash in between leaves windows the next tick
        sees twice (creation is idempotent), never a window nobody recorded.
        """
        if not windows:
            return
        self.ensure()
        for i in range(0, len(windows), 100):  # a Table transaction holds at most 100 operations
            chunk = windows[i : i + 100]
            ops = [("create", self._new_entity(pipeline, w, now)) for w in chunk]
            try:
                self._table.submit_transaction(ops)
            except TableTransactionError:
                for w in chunk:  # some already exist (another runner, or a crash): create the rest one by one
                    try:
                        self._table.create_entity(self._new_entity(pipeline, w, now))
                    except ResourceExistsError:
                        pass
                    except AzureError as exc:
                        raise _translate(exc, "record") from exc
            except AzureError as exc:
                raise _translate(exc, "record") from exc
        self.advance_frontier(pipeline, max(w.end for w in windows), now)

    @staticmethod
    def _new_entity(pipeline: str, window: Window, now: datetime) -> dict[str, Any]:
        return {
            "PartitionKey": pipeline,
            "RowKey": window.key,
            "WindowStart": window.start,
            "WindowEnd": window.end,
            "Status": "pending",
            "Attempts": 0,
            "CreatedAt": now,
            "UpdatedAt": now,
        }

    def advance_frontier(self, pipeline: str, end: datetime, now: datetime) -> None:
        """Move the frontier forward to ``end`` (never back), tolerating concurrent writers."""
        for _ in range(10):
            entity = self._get(pipeline, META_KEY)
            try:
                if entity is None:
                    self._table.create_entity(
                        {"PartitionKey": pipeline, "RowKey": META_KEY, "Frontier": end, "UpdatedAt": now}
                    )
                    return
                current = _dt(entity.get("Frontier"))
                if current is not None and current >= end:
                    return
                self._table.update_entity(
                    {"PartitionKey": pipeline, "RowKey": META_KEY, "Frontier": end, "UpdatedAt": now},
                    mode=UpdateMode.MERGE,
                    etag=entity["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return
            except (ResourceExistsError, ResourceModifiedError):
                continue
            except AzureError as exc:
                raise _translate(exc, "frontier") from exc
        raise RetriableError(f"ledger frontier of {pipeline}: too much contention")

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
        failed with no retries left / not yet due for retry.
        """
        self.ensure()
        until = now + lease
        for _ in range(3):
            entity = self._get(pipeline, window.key)
            if entity is None:
                fresh = self._new_entity(pipeline, window, now) | self._running(owner, 1, now, until)
                try:
                    meta = self._table.create_entity(fresh)
                except ResourceExistsError:
                    continue
                except AzureError as exc:
                    raise _translate(exc, "claim") from exc
                return Claim(pipeline, window, owner, 1, str(meta["etag"]), until)
            state = self._state(entity)
            if state.status == "running" and state.lease_until and state.lease_until > now:
                return None
            if not force and state.status == "done":
                return None
            waiting = state.next_attempt_at is not None and state.next_attempt_at > now
            if not force and state.status == "failed" and (state.attempts >= max_attempts or waiting):
                return None
            attempts = 1 if force or (state.status == "pending" and state.attempts == 0) else state.attempts + 1
            update = {"PartitionKey": pipeline, "RowKey": window.key} | self._running(owner, attempts, now, until)
            try:
                meta = self._table.update_entity(
                    update, mode=UpdateMode.MERGE, etag=entity["_etag"], match_condition=MatchConditions.IfNotModified
                )
            except ResourceModifiedError:
                return None  # someone else changed it first: theirs
            except AzureError as exc:
                raise _translate(exc, "claim") from exc
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
        """Mark done with counts and output names. Raises ``LeaseLost`` if taken over."""
        fields: dict[str, Any] = {
            "Status": "done",
            "Rows": rows,
            "Bytes": nbytes,
            "Outputs": orjson.dumps([dict(o) for o in outputs]).decode(),
            "LastError": "",
            "LeaseOwner": "",
            "LeaseUntil": _CLEAR,
            "NextAttemptAt": _CLEAR,
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
                "NextAttemptAt": _CLEAR if next_attempt_at is None else next_attempt_at,
                "FinishedAt": now,
                "UpdatedAt": now,
            },
        )

    def request_replay(self, pipeline: str, windows: Sequence[Window], now: datetime) -> int:
        """Queue windows for the next ticks: mark them ``pending`` (created if missing).

        A window running right now keeps running; returns how many were queued.
        """
        self.ensure()
        queued = 0
        for window in windows:
            for _ in range(5):
                entity = self._get(pipeline, window.key)
                try:
                    if entity is None:
                        self._table.create_entity(self._new_entity(pipeline, window, now))
                    else:
                        state = self._state(entity)
                        if state.status == "running" and state.lease_until and state.lease_until > now:
                            break
                        self._table.update_entity(
                            {
                                "PartitionKey": pipeline,
                                "RowKey": window.key,
                                "Status": "pending",
                                "Attempts": 0,
                                "NextAttemptAt": _CLEAR,
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
                    raise _translate(exc, "replay") from exc
        return queued

    def checkpoint(self, claim: Claim, *, now: datetime, extra: dict[str, Any]) -> None:
        """Record a paused window's progress and hand it back as ``pending`` for the next tick.

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
                raise _translate(exc, "update") from exc
            claim.etag = str(meta["etag"])
