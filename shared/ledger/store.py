"""The window ledger in Azure Table Storage: one entity per (pipeline, window).

PartitionKey = pipeline name, RowKey = window start key (``20261102T100000Z``), so a
pipeline's windows sort by time within one partition. A ``~meta`` row holds the
frontier and the open mark (``shared.ledger.marks``), which let a plan read only the
windows that may still need work; a second table holds the day rollups status reads
(``shared.ledger.rollups``).

Every state change is one conditional write on the entity's ETag (or one transaction with
the meta row): docs/reliability.md lists them. Two runners can never both claim a window,
and a runner whose lease was taken over cannot mark it done on top of the new owner's state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.core.exceptions import AzureError
from azure.data.tables import TableClient, TableServiceClient

from shared.ledger.claim import CLEAR, Claim, LeaseLost, closed_fields, forget_checkpoint, free_takeovers
from shared.ledger.finish import Finish
from shared.ledger.marks import Marks, Snapshot
from shared.ledger.rollups import Rollups
from shared.ledger.rows import META_KEY, MIN_YEAR, Unreadable, new_entity, read_entities, state_of, translate
from shared.ledger.unclaimed import Unclaimed
from shared.ledger.write import Lost
from shared.model import Window, window_key
from shared.windows import WindowState

__all__ = ["META_KEY", "Claim", "LeaseLost", "Ledger", "Snapshot", "free_takeovers"]

log = logging.getLogger(__name__)


def _resume_part(state: WindowState) -> str:
    """The part a claim of ``state`` will write first: the next chunk of a checkpoint, else the main part."""
    checkpoint = state.extra.get("checkpoint")
    chunks = int(checkpoint.get("chunks", 0) or 0) if isinstance(checkpoint, Mapping) else 0
    return f"c{chunks:04d}" if chunks else ""


class Ledger(Finish, Unclaimed, Marks):
    """Table-backed ledger. Thread-safe (the SDK client is)."""

    def __init__(self, service: TableServiceClient, table: str) -> None:
        self._service = service
        self._table_name = table
        self._table: TableClient = service.get_table_client(table)
        self._ensured = False
        self.unreadable: dict[str, list[str]] = {}  # pipeline → entities the last read had to skip
        self.rollups = Rollups(service, f"{table[:59]}days", self)

    # -- reading --------------------------------------------------------------------------
    def states(
        self, pipeline: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[WindowState]:
        """Readable windows of a pipeline, oldest first; unreadable ones reported.

        ``since``/``until`` bound the window starts (``since <= start < until``) as a RowKey
        range: a caller reads only the windows it reports.
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

    def first_start(self, pipeline: str) -> datetime | None:
        """Start of the oldest recorded window, from the keys alone (an entity the SDK cannot decode,
        or one from before Table Storage's 1601, is passed over)."""
        self.ensure()
        query = "PartitionKey eq @p and RowKey lt @m"
        try:
            for entity in self._table.query_entities(
                query, parameters={"p": pipeline, "m": META_KEY}, select=["RowKey"], results_per_page=20
            ):
                try:
                    start = datetime.strptime(str(entity["RowKey"]), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                except ValueError:
                    continue
                if start.year >= MIN_YEAR:
                    return start
        except AzureError as exc:
            raise translate(exc, "first window") from exc
        return None

    def get(self, pipeline: str, window: Window) -> WindowState | None:
        entity = self._get(pipeline, window.key)
        return None if entity is None else state_of(entity, entity["_etag"])

    # -- claiming ---------------------------------------------------------------------------
    def claim(
        self,
        pipeline: str,
        window: Window,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        max_attempts: int,
        part: str | None = None,
        expect: str | None = None,
    ) -> Claim | None:
        """T4 (and T12 with ``expect``): take the window for this run, or ``None`` when it is not ours.

        Not ours: another runner holds a live lease; it is done (unless ``expect`` names the done
        record's ETag a sweep planned from — any other ETag means something newer happened);
        it failed and waits for its next attempt or is closed. Taking over an expired lease
        gives the dead run's attempt back (``free_takeovers``); a window with no attempt left is
        closed instead of claimed. ``part`` is what this run may commit (``Writing``); ``None``: the
        main part, or the next chunk when the window resumes a checkpoint.
        """
        self.ensure()
        for _ in range(5):
            entity, state = self.current(pipeline, window.key)
            if entity is None:
                if expect is not None:
                    return None
                fresh = new_entity(pipeline, window, now) | self._running(owner, 1, now, now + lease, [part or ""])
                try:  # a window outside the plan: the open mark comes back to it in the same write
                    etag, row = self.transition(pipeline, None, fresh, now, reopen=window.key)
                except Lost:
                    continue
                return Claim(pipeline, window, owner, 1, etag, now + lease, None, row)
            if state is None:
                log.error("%s %s: ledger entity unreadable; replay it to rewrite", pipeline, window)
                return None
            if expect is not None and entity["_etag"] != expect:
                return None
            if state.status == "running" and state.lease_until and state.lease_until > now:
                return None
            if state.status == "done" and expect is None:
                return None
            waiting = state.next_attempt_at is not None and state.next_attempt_at > now
            if state.status == "failed" and (state.attempts >= max_attempts or waiting):
                return None
            takeover = state.status == "running"
            free = takeover and state.takeovers < free_takeovers(max_attempts)
            attempts = state.attempts if free else state.attempts + 1
            if state.status in ("queued", "pending", "running") and state.attempts >= max_attempts and not free:
                try:  # no attempt left (a run that keeps dying, or a window from before this rule): closed
                    self.transition(pipeline, entity, closed_fields(state, now), now)
                except Lost:
                    continue
                return None
            part = _resume_part(state) if part is None else part
            fields = self._running(owner, attempts, now, now + lease, [*state.writing, part])
            if takeover:
                fields["Takeovers"] = state.takeovers + 1
            # a done window sits behind the open mark: its sweep claim brings the mark back with it
            reopen = window.key if state.status == "done" else None
            try:
                etag, row = self.transition(pipeline, entity, fields, now, reopen=reopen)
            except Lost:
                continue
            return Claim(pipeline, window, owner, attempts, etag, now + lease, state, row)
        return None

    def force_claim(
        self, pipeline: str, window: Window, *, owner: str, now: datetime, lease: timedelta
    ) -> Claim | None:
        """T10 (inline replay): claim whatever the status but a live lease, as one transaction with the
        meta row. An old checkpoint is dropped (its chunks become ``Leftovers``): the run starts over."""
        self.ensure()
        for _ in range(5):
            entity, state = self.current(pipeline, window.key)
            if state is not None and state.status == "running" and state.lease_until and state.lease_until > now:
                return None  # someone runs it right now: a queued replay (T9) would supersede it instead
            fields = self._running(owner, 1, now, now + lease, [])
            fields |= {"Takeovers": 0, "ReplayAt": now, "NextAttemptAt": CLEAR}
            if entity is None:
                fields = new_entity(pipeline, window, now) | fields
            else:
                fields |= forget_checkpoint(state)
            try:
                etag, row = self.transition(pipeline, entity, fields, now, reopen=window.key)
            except Lost:
                continue
            return Claim(pipeline, window, owner, 1, etag, now + lease, state, row)
        return None

    @staticmethod
    def _running(owner: str, attempts: int, now: datetime, until: datetime, writing: Sequence[str]) -> dict[str, Any]:
        return {
            "Status": "running",
            "Attempts": attempts,
            "LeaseOwner": owner,
            "LeaseUntil": until,
            "QueuedAt": CLEAR,
            "StartedAt": now,
            "UpdatedAt": now,
            "Writing": orjson.dumps(sorted(set(writing))).decode(),
        }

    def renew(self, claim: Claim, now: datetime, lease: timedelta) -> None:
        """T5: extend the lease of a long window. Raises ``LeaseLost`` if it was taken over."""
        until = now + lease
        with claim.lock:
            try:
                claim.etag = self.merge_if(claim.pipeline, claim.window.key, claim.etag, {"LeaseUntil": until})
            except Lost as exc:
                claim.lost.set()
                raise LeaseLost(f"{claim.pipeline} {claim.window}: lease taken over") from exc
            claim.entity["LeaseUntil"] = until
        claim.lease_until = until
