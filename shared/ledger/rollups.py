"""Day rollups in their own table (``<ledger>days``): status at any history length in a few reads.

Every status change of a window makes three writes (docs/reliability.md, "Day rollups"):
``intend`` on the day entity, the transition on the window entity (``shared.ledger.store``), then
``apply`` on the day entity. Readers ``resolve`` the intents they find by reading those
windows, so a rollup is never silently wrong; a day that is missing or unbuilt is built
from the window entities under the day entity's ETag. The table is small (one entity per
pipeline and day), so a year of status is one query per pipeline, on Azurite as on Azure.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.errors import MoverError, RetriableError
from shared.ledger.days import DAY, NONE, Day, Sums, day_from_key, day_key, day_of
from shared.ledger.rows import translate
from shared.model import Window
from shared.windows import WindowState, align_down

__all__ = ["STALE_INTENT", "DaySums", "Intent", "Migration", "Rollups", "WindowReader"]

log = logging.getLogger(__name__)
STALE_INTENT = timedelta(minutes=1)  # an intent older than this has lost its writer: readers repair it
_STATE_KEY = "~state"  # per pipeline: the build state of its rollups, and the entities nobody can read
_SUM_FIELDS = ["RowKey", "Codes_n", "SRows", "SBytes", "SQuar", "Lo", "Hi", "Pend", "Built", "Size"]
_TRIES = 20


class WindowReader(Protocol):
    """The window entities (``shared.ledger.store.Ledger``), read to build and resolve days."""

    def states(
        self, pipeline: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[WindowState]: ...

    def get(self, pipeline: str, window: Window) -> WindowState | None: ...

    def first_start(self, pipeline: str) -> datetime | None: ...

    unreadable: dict[str, list[str]]


@dataclass(frozen=True)
class Intent:
    """A writer's announcement that these windows are changing (one id, per day the slots)."""

    pipeline: str
    id: str
    size: timedelta
    slots: dict[datetime, list[int]]


@dataclass(frozen=True)
class DaySums:
    day: datetime
    sums: Sums
    built: bool


@dataclass(frozen=True)
class Migration:
    """Progress of building a pipeline's rollups from a ledger that had none."""

    done: bool
    next_day: datetime | None = None
    built_now: int = 0


class Rollups:
    """The rollup table; thread-safe like the SDK client."""

    def __init__(self, service: TableServiceClient, table: str, reader: WindowReader) -> None:
        self._service = service
        self._name = table
        self._table: TableClient = service.get_table_client(table)
        self._reader = reader
        self._ensured = False
        self._migrated: set[str] = set()
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="rollup")
        self._lock = threading.Lock()
        self._inflight: set[Future[None]] = set()
        self.requests = 0  # storage requests made (benchmarks and the status request-count test)

    def ensure(self) -> None:
        if self._ensured:
            return
        try:
            self._service.create_table_if_not_exists(self._name)
        except AzureError as exc:
            raise translate(exc, "create rollup table") from exc
        self._ensured = True

    # -- writers ---------------------------------------------------------------------------------
    def intend(self, pipeline: str, windows: Sequence[Window], now: datetime) -> Intent:
        """Announce changes before they happen; raises ``RetriableError`` if the day cannot be written
        (then the caller must not make the change: an unannounced change could go unseen)."""
        self.ensure()
        size = windows[0].size if windows else DAY
        slots: dict[datetime, list[int]] = {}
        for window in windows:
            day = day_of(window.start)
            slots.setdefault(day, []).append(Day.empty(pipeline, day, size).slot(window.start))
        intent = Intent(pipeline, uuid.uuid4().hex[:12], size, slots)
        for day, day_slots in slots.items():
            self._update(pipeline, day, size, lambda d, s=day_slots: d.intend(s, intent.id, now))  # type: ignore[misc]
        return intent

    def apply(self, intent: Intent, states: Sequence[WindowState]) -> None:
        """Take the written states into their days and withdraw the intent, in the background: the
        transition is made already and the intent covers the gap (readers resolve it), so a run does
        not wait for its rollup. Never raises; ``flush`` waits for what is in flight."""
        self._submit(intent, list(states), settle_all=True)

    def apply_partial(self, intent: Intent, states: Sequence[WindowState]) -> None:
        """Like ``apply``, but the intent stays on every slot not in ``states`` (their writes may
        or may not have happened: a storage error left that unknown)."""
        self._submit(intent, list(states), settle_all=False)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every apply handed to the background is written (tests, shutdown)."""
        with self._lock:
            pending = list(self._inflight)
        wait(pending, timeout=timeout)

    def _submit(self, intent: Intent, states: list[WindowState], *, settle_all: bool) -> None:
        future = self._pool.submit(self._apply, intent, states, settle_all=settle_all)
        with self._lock:
            self._inflight.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._inflight.discard(future)
        error = future.exception()
        if error is not None:  # a bug, not storage (those are logged in _apply): never silent
            log.error("rollup apply failed (readers resolve its intent): %r", error)

    def _apply(self, intent: Intent, states: Sequence[WindowState], *, settle_all: bool) -> None:
        by_day: dict[datetime, list[WindowState]] = {}
        for state in states:
            by_day.setdefault(day_of(state.window.start), []).append(state)
        for day, slots in intent.slots.items():
            written = by_day.get(day, [])

            def change(d: Day, written: list[WindowState] = written, slots: list[int] = slots) -> None:
                for state in written:
                    if state.window.size == d.size:
                        d.put(state)
                d.settle(slots if settle_all else [d.slot(s.window.start) for s in written], intent.id)

            try:
                stored = self._update(intent.pipeline, day, intent.size, change)
                if not stored.built:
                    self.build(intent.pipeline, day, intent.size)
            except MoverError as exc:
                log.warning("%s %s: rollup not updated (readers resolve it): %s", intent.pipeline, day_key(day), exc)

    def build(self, pipeline: str, day: datetime, size: timedelta) -> Day:
        """The day from its window entities, written under the ETag read first (see the module doc)."""
        self.ensure()
        for _ in range(_TRIES):
            current = self._get(pipeline, day_key(day))
            fresh = Day.empty(pipeline, day, size)
            for state in self._reader.states(pipeline, since=day, until=day + DAY):
                if state.window.size == size and align_down(state.window.start, size) == state.window.start:
                    fresh.put(state, force=True)
            self.note_unreadable(pipeline, self._reader.unreadable.get(pipeline, []), day=day)
            if current is not None:
                fresh.pending = current.pending
                fresh.etag = current.etag
            if self._write(fresh):
                return fresh
        raise RetriableError(f"rollup of {pipeline} {day_key(day)}: too much contention to build it")

    # -- readers ---------------------------------------------------------------------------------
    def days(self, pipeline: str, first: datetime, last: datetime, size: timedelta, now: datetime) -> list[Day]:
        """Stored days ``first..last`` (inclusive), intents resolved; days never written are absent."""
        self.ensure()
        query = "PartitionKey eq @p and RowKey ge @lo and RowKey le @hi"
        params = {"p": pipeline, "lo": day_key(day_of(first)), "hi": day_key(day_of(last))}
        return [self.resolve(Day.from_entity(e, size), now) for e in self._query(query, params)]

    def day(self, pipeline: str, day: datetime, size: timedelta, now: datetime) -> Day | None:
        found = self._get(pipeline, day_key(day), size)
        return None if found is None else self.resolve(found, now)

    def sums(self, pipeline: str, size: timedelta, now: datetime) -> list[DaySums]:
        """Every day's totals, oldest first: one query per 1,000 days (only the sums travel)."""
        self.ensure()
        out: list[DaySums] = []
        query = "PartitionKey eq @p and RowKey ge 'd' and RowKey lt 'e'"
        for entity in self._query(query, {"p": pipeline}, select=_SUM_FIELDS):
            pending = str(entity.get("Pend") or "{}") != "{}"
            stored = int(entity.get("Size", 0) or 0)
            if pending or stored != int(size.total_seconds()):  # resolve (or rebuild) before trusting the sums
                day = self._get(pipeline, str(entity["RowKey"]), size)
                if day is None:
                    continue
                day = self.resolve(day, now)
                out.append(DaySums(day.day, day.sums(), day.built))
                continue
            day_start = day_from_key(str(entity["RowKey"]))
            out.append(DaySums(day_start, Sums.from_entity(entity), bool(entity.get("Built"))))
        return out

    def resolve(self, day: Day, now: datetime) -> Day:
        """Slots with intents take the window entity's state now; stale intents are written back."""
        if not day.built:
            try:
                return self.build(day.pipeline, day.day, day.size)
            except MoverError as exc:
                log.warning("%s %s: rollup not built yet: %s", day.pipeline, day.key, exc)
        if not day.pending:
            return day
        for slot in sorted(day.pending):
            try:
                state = self._reader.get(day.pipeline, day.window(slot))
            except MoverError as exc:
                log.warning("%s %s: cannot resolve slot %d: %s", day.pipeline, day.key, slot, exc)
                continue
            if state is not None:
                day.put(state, force=True)
            elif day.codes[slot] != NONE:
                day.codes[slot] = NONE
                day.rows[slot] = day.bytes[slot] = day.quarantined[slot] = day.seq[slot] = 0
                day.info.pop(slot, None)
        stale = day.stale_intents(now, STALE_INTENT)
        if stale and day.etag is not None:
            repaired = Day.from_entity(day.to_entity() | {"_etag": day.etag}, day.size)
            for slot, ids in stale.items():
                for intent in ids:
                    repaired.settle([slot], intent)
            if self._write(repaired):
                log.info("%s %s: %d stale rollup intent(s) repaired", day.pipeline, day.key, len(stale))
                return repaired
        return day

    # -- migration ----------------------------------------------------------------------------------
    def state(self, pipeline: str) -> tuple[bool, list[str]]:
        """(rollups exist for every recorded day, ledger entities nobody can read) — one read."""
        raw = self._raw_get(pipeline, _STATE_KEY)
        built = pipeline in self._migrated or bool(raw is not None and raw.get("Done"))
        if built:
            self._migrated.add(pipeline)
        bad = orjson.loads(raw["Unreadable"]) if raw is not None and raw.get("Unreadable") else []
        return built, [str(b) for b in bad]

    def known_built(self, pipeline: str) -> bool:
        """Built, as far as this process already knows (no read)."""
        return pipeline in self._migrated

    def built(self, pipeline: str) -> bool:
        """Rollups exist for every recorded day (built from the start, or a finished migration)."""
        return pipeline in self._migrated or self.state(pipeline)[0]

    def note_unreadable(self, pipeline: str, found: list[str], *, day: datetime | None = None) -> None:
        """Remember ledger entities a read had to skip (a hand edit, an older version) for status pages,
        which never read window entities. ``day``: a whole day was read, so its earlier entries are
        replaced by ``found`` (a replayed entity is readable again); else ``found`` is only added."""
        if not found and day is None:
            return
        current = self.state(pipeline)[1]
        prefix = day.strftime("%Y%m%d") if day is not None else None
        keep = [e for e in current if prefix is None or not e.startswith(prefix)]
        entries = sorted(set(keep) | set(found))[:50]
        if entries == sorted(current):
            return
        try:
            self.requests += 1
            self._table.upsert_entity(
                {"PartitionKey": pipeline, "RowKey": _STATE_KEY, "Unreadable": orjson.dumps(entries).decode()}
            )
        except AzureError as exc:
            raise translate(exc, "rollup state") from exc

    def migrate(
        self, pipeline: str, size: timedelta, *, until: datetime, now: datetime, max_days: int = 31
    ) -> Migration:
        """Build up to ``max_days`` more days of a ledger written before rollups existed (idempotent,
        safe beside running workers: each day is built under its ETag)."""
        if pipeline in self._migrated:
            return Migration(True)
        self.ensure()
        raw = self._raw_get(pipeline, _STATE_KEY)
        if raw is not None and raw.get("Done"):
            self._migrated.add(pipeline)
            return Migration(True)
        if raw is None:
            first = self._reader.first_start(pipeline)
            if first is None:
                self._put_build(pipeline, None, done=True, now=now)
                self._migrated.add(pipeline)
                return Migration(True)
            start = day_of(first)
        else:
            start = raw["Next"]
        end = day_of(until)
        last = min(end, start + (max_days - 1) * DAY)
        built = {d.day for d in self.sums(pipeline, size, now) if d.built and start <= d.day <= last}
        count = 0
        day = start
        while day <= last:
            if day not in built:
                self.build(pipeline, day, size)
                count += 1
            day += DAY
        done = day > end
        self._put_build(pipeline, None if done else day, done=done, now=now)
        if done:
            self._migrated.add(pipeline)
        return Migration(done, None if done else day, count)

    def _put_build(self, pipeline: str, next_day: datetime | None, *, done: bool, now: datetime) -> None:
        entity: dict[str, Any] = {"PartitionKey": pipeline, "RowKey": _STATE_KEY, "Done": done, "UpdatedAt": now}
        if next_day is not None:
            entity["Next"] = next_day
        try:
            self.requests += 1
            self._table.upsert_entity(entity, mode=UpdateMode.MERGE)
        except AzureError as exc:
            raise translate(exc, "rollup migration") from exc

    # -- storage ----------------------------------------------------------------------------------
    def _update(self, pipeline: str, day: datetime, size: timedelta, change: Callable[[Day], None]) -> Day:
        """Read the day (or start it, unbuilt), ``change`` it, write it If-Match; re-read on conflicts."""
        self.ensure()
        for _ in range(_TRIES):
            current = self._get(pipeline, day_key(day), size) or Day.empty(pipeline, day, size, built=False)
            change(current)
            if self._write(current):
                return current
        raise RetriableError(f"rollup of {pipeline} {day_key(day)}: too much contention")

    def _write(self, day: Day) -> bool:
        """Insert (no ETag yet) or replace If-Match; ``False`` when another writer got there first."""
        entity = day.to_entity()
        try:
            self.requests += 1
            if day.etag is None:
                meta = self._table.create_entity(entity)
            else:
                meta = self._table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=day.etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        except AzureError as exc:
            raise translate(exc, "rollup") from exc
        day.etag = str(meta["etag"])
        return True

    def _get(self, pipeline: str, key: str, size: timedelta | None = None) -> Day | None:
        raw = self._raw_get(pipeline, key)
        return None if raw is None else Day.from_entity(raw, size)

    def _raw_get(self, pipeline: str, key: str) -> dict[str, Any] | None:
        self.ensure()
        try:
            self.requests += 1
            entity = self._table.get_entity(pipeline, key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, "rollup read") from exc
        return dict(entity) | {"_etag": entity.metadata["etag"]}

    def _query(self, query: str, params: dict[str, Any], select: list[str] | None = None) -> list[dict[str, Any]]:
        try:
            pages = self._table.query_entities(query, parameters=params, select=select).by_page()
            out: list[dict[str, Any]] = []
            for page in pages:
                self.requests += 1
                out += [dict(e) | {"_etag": e.metadata["etag"]} for e in page]
            return out
        except AzureError as exc:
            raise translate(exc, "rollup query") from exc
