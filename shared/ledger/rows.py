"""Ledger entities ↔ ``WindowState``, storage error translation, and reads that survive bad rows.

An entity the engine cannot read (written by an older version, by hand, or a date the
Tables SDK cannot parse) must never stop a pipeline or the status page: readers skip it
and report its key instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient

from shared.errors import RetriableError, StorageDenied
from shared.model import Window
from shared.windows import Status, WindowState

__all__ = [
    "META_KEY",
    "MIN_YEAR",
    "Unreadable",
    "as_dt",
    "entity_of",
    "new_entity",
    "read_entities",
    "state_of",
    "translate",
]

log = logging.getLogger(__name__)
META_KEY = "~meta"
MIN_YEAR = 1601  # Table Storage holds no earlier date
_STATUSES = frozenset({"pending", "queued", "running", "done", "failed"})
# What the SDK raises while converting a page it cannot parse (e.g. a year it cannot strptime).
_DECODE_ERRORS = (ValueError, TypeError, KeyError, OverflowError, AttributeError)


class Unreadable(ValueError):
    """A ledger entity the engine cannot interpret; skipped and reported, never fatal."""


def as_dt(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def translate(exc: AzureError, what: str) -> Exception:
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return RetriableError(f"ledger {what}: storage unreachable: {exc.message}")
    if isinstance(exc, HttpResponseError) and (exc.status_code or 0) >= 500:
        return RetriableError(f"ledger {what}: storage error {exc.status_code}")
    if isinstance(exc, HttpResponseError) and exc.status_code in (401, 403):
        return StorageDenied(f"ledger {what}: access denied to Table Storage ({exc.status_code})")
    return RetriableError(f"ledger {what}: {type(exc).__name__}: {exc.message}")


def new_entity(pipeline: str, window: Window, now: datetime, status: str = "pending") -> dict[str, Any]:
    """A new window entity; refuses dates Table Storage cannot hold (before 1601)."""
    if window.start.year < MIN_YEAR:
        raise ValueError(f"window {window} starts before {MIN_YEAR}: Table Storage cannot record it")
    queued = {"QueuedAt": now} if status == "queued" else {}
    return queued | {
        "PartitionKey": pipeline,
        "RowKey": window.key,
        "WindowStart": window.start,
        "WindowEnd": window.end,
        "Status": status,
        "Attempts": 0,
        "CreatedAt": now,
        "UpdatedAt": now,
    }


def entity_of(pipeline: str, state: WindowState) -> dict[str, Any]:
    """The entity a state was read from (with ``_etag``): the base a conditional write merges over."""
    dumps = orjson.dumps
    entity: dict[str, Any] = {
        "PartitionKey": pipeline,
        "RowKey": state.key,
        "WindowStart": state.window.start,
        "WindowEnd": state.window.end,
        "Status": state.status,
        "Attempts": state.attempts,
        "Takeovers": state.takeovers,
        "Seq": state.seq,
        "LeaseOwner": state.lease_owner,
        "Rows": state.rows,
        "Bytes": state.bytes,
        "Quarantined": state.quarantined,
        "LastError": state.error,
        "FailKind": state.fail_kind,
        "Outputs": dumps(list(state.outputs)).decode(),
        "Extra": dumps(dict(state.extra)).decode(),
        "LastGood": dumps(dict(state.last_good)).decode() if state.last_good else "",
        "Writing": dumps(list(state.writing)).decode(),
        "Leftovers": dumps([list(x) for x in state.leftovers]).decode(),
        "_etag": state.etag,
    }
    for key, value in (
        ("LeaseUntil", state.lease_until),
        ("NextAttemptAt", state.next_attempt_at),
        ("QueuedAt", state.queued_at),
        ("StartedAt", state.started_at),
        ("FinishedAt", state.finished_at),
        ("UpdatedAt", state.updated_at),
        ("ReplayAt", state.replay_at),
        ("SweepAt", state.sweep_at),
        ("SweptAt", state.swept_at),
        ("SourceCount", state.source_count),
    ):
        if value is not None:
            entity[key] = value
    return entity


def _json(value: Any, default: Any) -> Any:
    return orjson.loads(value) if value else default


def state_of(entity: Mapping[str, Any], etag: str = "") -> WindowState:
    """The window state an entity holds; ``Unreadable`` when any field makes no sense."""
    try:
        start, end = as_dt(entity.get("WindowStart")), as_dt(entity.get("WindowEnd"))
        if start is None or end is None:
            raise Unreadable("no window bounds")
        status = entity.get("Status", "pending")
        if status not in _STATUSES:
            raise Unreadable(f"unknown status {status!r}")
        source_count = entity.get("SourceCount")
        return WindowState(
            window=Window(start, end),
            status=cast(Status, status),
            attempts=int(entity.get("Attempts", 0) or 0),
            lease_owner=str(entity.get("LeaseOwner", "") or ""),
            lease_until=as_dt(entity.get("LeaseUntil")),
            next_attempt_at=as_dt(entity.get("NextAttemptAt")),
            rows=int(entity.get("Rows", 0) or 0),
            bytes=int(entity.get("Bytes", 0) or 0),
            outputs=tuple(_json(entity.get("Outputs"), [])),
            error=str(entity.get("LastError", "") or ""),
            source_count=None if source_count in (None, "") else int(source_count),
            quarantined=int(entity.get("Quarantined", 0) or 0),
            started_at=as_dt(entity.get("StartedAt")),
            finished_at=as_dt(entity.get("FinishedAt")),
            updated_at=as_dt(entity.get("UpdatedAt")),
            extra=_json(entity.get("Extra"), {}),
            queued_at=as_dt(entity.get("QueuedAt")),
            takeovers=int(entity.get("Takeovers", 0) or 0),
            last_good=_json(entity.get("LastGood"), None),
            seq=int(entity.get("Seq", 0) or 0),
            writing=tuple(str(p) for p in _json(entity.get("Writing"), [])),
            leftovers=tuple((int(i), str(n)) for i, n in _json(entity.get("Leftovers"), [])),
            replay_at=as_dt(entity.get("ReplayAt")),
            sweep_at=as_dt(entity.get("SweepAt")),
            swept_at=as_dt(entity.get("SweptAt")),
            fail_kind=str(entity.get("FailKind", "") or ""),
            etag=etag,
        )
    except Unreadable:
        raise
    except (*_DECODE_ERRORS, orjson.JSONDecodeError) as exc:
        raise Unreadable(f"{type(exc).__name__}: {exc}") from exc


def read_entities(
    table: TableClient, query: str, parameters: dict[str, Any], what: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every entity of ``query`` (with ``_etag``), and the keys of those that cannot be decoded.

    The SDK converts a whole page at once, so one undecodable entity would fail the
    page: then the keys are listed alone (strings only) and each entity read by itself.
    """
    try:
        return [_with_etag(e) for e in table.query_entities(query, parameters=parameters)], []
    except AzureError as exc:
        raise translate(exc, what) from exc
    except _DECODE_ERRORS as exc:
        log.error("ledger %s: a page could not be decoded (%s); reading entity by entity", what, exc)
    entities: list[dict[str, Any]] = []
    bad: list[str] = []
    try:
        keys = [
            (str(e["PartitionKey"]), str(e["RowKey"]))
            for e in table.query_entities(query, parameters=parameters, select=["PartitionKey", "RowKey"])
        ]
        for pk, rk in keys:
            try:
                entities.append(_with_etag(table.get_entity(pk, rk)))
            except ResourceNotFoundError:
                continue
            except _DECODE_ERRORS as exc:
                log.error("ledger entity %s/%s cannot be read (%s); skipped", pk, rk, exc)
                bad.append(f"{rk}: {type(exc).__name__}: {exc}")
    except AzureError as exc:
        raise translate(exc, what) from exc
    return entities, bad


def _with_etag(entity: Any) -> dict[str, Any]:
    out = dict(entity)
    out["_etag"] = entity.metadata["etag"]
    return out
