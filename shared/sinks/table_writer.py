"""Writing one (window, part) into its Table Storage partition: parallel lanes, fenced per run.

See ``shared.sinks.table`` for the whole design (keys, lanes, fencing, stale-run cleanup).
"""

from __future__ import annotations

import logging
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError, ServiceRequestError, ServiceResponseError
from azure.data.tables import RequestTooLargeError, TableClient, TableTransactionError, UpdateMode

from shared.errors import RetriableError
from shared.model import Batch, Column, OutputFile, Window
from shared.sinks._azure import shared_pool, translate
from shared.sinks.manifest import RecentOutputs, output_extra
from shared.sinks.table_entities import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    PART,
    RUN,
    Layout,
    layout_of,
    payload_size,
    row_entity,
    sizes,
)

__all__ = ["LANES", "MARKER_PREFIX", "SEQ", "TableWriter", "delete_all"]

log = logging.getLogger(__name__)

LANES = 8  # transactions in flight per writer (measured: docs/sinks.md)
MARKER_PREFIX = "~mover~"  # RowKeys of the fencing markers ("~" sorts after ids and hashes)
_PER_TX = MAX_BATCH - 1  # one operation of each transaction is the lane's marker
_SENDS = 3  # a transaction whose connection dropped is sent again (the SDK does not resend a POST)
SEQ = "_mover_seq"  # on a marker: how many transactions of its lane landed


def _fenced(what: str) -> RetriableError:
    return RetriableError(f"{what}: another run took this window's partition over (lease lost?); not writing")


def _resend(call: Callable[[], Any]) -> Any:
    """``call()``, again after a dropped connection (for requests that are safe to repeat)."""
    for attempt in range(_SENDS):
        try:
            return call()
        except (ServiceRequestError, ServiceResponseError):
            if attempt == _SENDS - 1:
                raise
    raise AssertionError("unreachable")


def delete_all(client: TableClient, entities: Iterable[Mapping[str, Any]]) -> int:
    """Delete entities (of one partition) in transactions of 100; returns how many."""
    deleted = 0
    chunk: list[tuple[str, dict[str, Any]]] = []
    for entity in entities:
        chunk.append(("delete", {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"]}))
        if len(chunk) == MAX_BATCH:
            client.submit_transaction(chunk)
            deleted, chunk = deleted + len(chunk), []
    if chunk:
        client.submit_transaction(chunk)
        deleted += len(chunk)
    return deleted


class _Lane:
    """Pending entities of one lane, its marker's ETag and its transaction in flight."""

    def __init__(self, row_key: str, etag: str) -> None:
        self.row_key = row_key
        self.etag = etag
        self.pending: dict[str, dict[str, Any]] = {}
        self.pending_bytes = 0
        self.flight: Future[None] | None = None
        self.seq = 0  # transactions of this lane that landed (kept on the marker)

    def wait(self) -> None:
        flight, self.flight = self.flight, None
        if flight is not None:
            flight.result()


class WriterHost(Protocol):
    """What a writer needs from its sink (``TableSink``)."""

    client: TableClient
    table_name: str
    recent: RecentOutputs

    def partition_key(self, window: Window) -> str: ...

    def output_name(self, window: Window, part: str = "") -> str: ...


class TableWriter:
    """Upserts one (window, part) into its partition; see the module doc. Fed by one thread."""

    def __init__(self, sink: WriterHost, window: Window, part: str, *, lanes: int = LANES) -> None:
        self._sink = sink
        self.window = window
        self.part = part
        self.partition_key = sink.partition_key(window)
        self.run = uuid.uuid4().hex
        self.rows = 0
        self.bytes = 0
        self._known: dict[str, Column] = {}
        self._layouts: dict[tuple[Column, ...], Layout] = {}
        self._state = "open"
        self._lanes = self._claim(lanes)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._state == "open":
            self.abort()

    def _claim(self, lanes: int) -> list[_Lane]:
        """Fence out every other run of this partition, then create this run's lane markers."""
        client, pk = self._sink.client, self.partition_key
        try:
            others = client.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": pk, "lo": MARKER_PREFIX, "hi": MARKER_PREFIX[:-1] + chr(ord(MARKER_PREFIX[-1]) + 1)},
                select=["PartitionKey", "RowKey"],
            )
            fenced = delete_all(client, others)
            keys = [f"{MARKER_PREFIX}{self.run}~{i}" for i in range(lanes)]
            markers = [{"PartitionKey": pk, "RowKey": k, RUN: self.run, "_mover_lane": True} for k in keys]
            # upsert: the run id is new, and a resend after a dropped connection is harmless
            results = _resend(lambda: client.submit_transaction([("upsert", m) for m in markers]))
        except AzureError as exc:
            raise translate(exc, f"claiming {self._sink.table_name}/{pk}") from exc
        if fenced:
            log.info("%s: fenced out %d lane(s) of an earlier run", pk, fenced)
        return [_Lane(k, str(r["etag"])) for k, r in zip(keys, results, strict=True)]

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"table writer for {self.partition_key} is {self._state}")

    def write(self, batch: Batch) -> None:
        """Upsert ``batch`` (transactions of ≤ 99 rows, ``LANES`` in flight); raises
        ``RetriableError``/``FatalError`` (also of an earlier batch's transaction), or
        ``DataError`` (before sending anything of the batch) for a malformed row."""
        self._check_open()
        if not batch.rows:
            return
        layout = self._layouts.get(batch.columns)
        if layout is None:
            layout = self._layouts[batch.columns] = layout_of(batch.columns)
        entities = [
            row_entity(layout, row, partition_key=self.partition_key, run=self.run, part=self.part)
            for row in batch.rows
        ]
        for col in batch.columns:
            self._known.setdefault(col.name, col)
        try:
            self._add(entities)
        except BaseException:
            self.abort()
            raise
        self.rows += len(batch.rows)

    def _add(self, entities: list[dict[str, Any]]) -> None:
        lanes = self._lanes
        for entity in entities:
            key = entity["RowKey"]
            lane = lanes[zlib.crc32(key.encode("utf-8", "surrogatepass")) % len(lanes)]
            stored, size = sizes(entity)
            if key in lane.pending:
                # The same item twice: one transaction may not touch a key twice; last wins.
                lane.pending_bytes -= payload_size(lane.pending.pop(key))
            elif len(lane.pending) >= _PER_TX or lane.pending_bytes + size > MAX_BATCH_BYTES:
                self._send(lane)
            lane.pending[key] = entity
            lane.pending_bytes += size
            self.bytes += stored

    def _send(self, lane: _Lane) -> None:
        """Hand the lane's pending entities to the pool, after its previous transaction."""
        lane.wait()
        if not lane.pending:
            return
        ops = [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in lane.pending.values()]
        lane.pending, lane.pending_bytes = {}, 0
        lane.flight = shared_pool("sink-table", 16).submit(self._submit, lane, ops)

    def _submit(self, lane: _Lane, ops: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        """One fenced transaction: ``ops`` plus the lane marker's update under its ETag.

        The SDK does not resend a transaction (a POST) whose connection dropped; it is sent
        again here. If the first one had landed, the marker's ETag moved and the resend is
        refused: the marker's sequence number then tells our own landing from a takeover.
        """
        seq = lane.seq + 1
        marker = {"PartitionKey": self.partition_key, "RowKey": lane.row_key, RUN: self.run, SEQ: seq}
        fence = {"mode": UpdateMode.MERGE, "etag": lane.etag, "match_condition": MatchConditions.IfNotModified}
        where = f"{self._sink.table_name}/{self.partition_key}"
        resent = False

        def send() -> list[Mapping[str, Any]]:
            nonlocal resent
            for attempt in range(_SENDS):
                try:
                    return self._sink.client.submit_transaction([*ops, ("update", marker, fence)])
                except (ServiceRequestError, ServiceResponseError):
                    if attempt == _SENDS - 1:
                        raise
                    resent = True
            raise AssertionError("unreachable")

        try:
            results = send()
        except RequestTooLargeError as exc:
            if len(ops) == 1:
                raise translate(exc, f"upserting into {where}") from exc
            half = len(ops) // 2
            self._submit(lane, ops[:half])
            self._submit(lane, ops[half:])
            return
        except TableTransactionError as exc:
            if exc.status_code in (404, 412):
                if resent and self._landed(lane, seq):
                    return
                raise _fenced(f"writing {where}") from exc
            raise translate(exc, f"writing {where}") from exc
        except AzureError as exc:
            raise translate(exc, f"writing {where}") from exc
        lane.etag, lane.seq = str(results[-1]["etag"]), seq

    def _landed(self, lane: _Lane, seq: int) -> bool:
        """Whether transaction ``seq`` of ``lane`` is the one the marker shows (then adopt its ETag)."""
        try:
            entity = self._sink.client.get_entity(self.partition_key, lane.row_key)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise translate(exc, f"reading the marker of {self.partition_key}") from exc
        if entity.get(RUN) != self.run or entity.get(SEQ) != seq:
            return False
        lane.etag, lane.seq = str(entity.metadata["etag"]), seq
        return True

    def _drain(self) -> None:
        for lane in self._lanes:
            self._send(lane)
        for lane in self._lanes:
            lane.wait()

    def commit(self) -> list[OutputFile]:
        """Send what is pending, delete this part's entities of other runs, drop the lane
        markers, and describe the partition (``[]`` for zero rows)."""
        self._check_open()
        try:
            self._drain()
            deleted = self._delete_stale()
            self._release()
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        outputs = self._outputs()
        self._sink.recent.remember(outputs)
        log.debug(
            "window %s part %r: %d rows -> table %s/%s (%d stale deleted)",
            self.window,
            self.part,
            self.rows,
            self._sink.table_name,
            self.partition_key,
            deleted,
        )
        return outputs

    def _outputs(self) -> list[OutputFile]:
        if not self.rows:
            return []
        name = self._sink.output_name(self.window, self.part)
        extra = output_extra(fmt="table", compression="none", part=self.part, columns=tuple(self._known.values()))
        extra.update(table=self._sink.table_name, partition_key=self.partition_key, run=self.run)
        return [OutputFile(name=name, rows=self.rows, bytes=self.bytes, extra=extra)]

    def _delete_stale(self) -> int:
        """Delete (fenced, on lane 0) the part's entities that another run wrote."""
        try:
            stale = list(
                self._sink.client.query_entities(
                    f"PartitionKey eq @pk and {PART} eq @part and {RUN} ne @run",
                    parameters={"pk": self.partition_key, "part": self.part or "main", "run": self.run},
                    select=["PartitionKey", "RowKey"],
                )
            )
        except AzureError as exc:
            raise translate(exc, f"listing stale entities of {self.partition_key}") from exc
        lane = self._lanes[0]
        for first in range(0, len(stale), _PER_TX):
            keys = stale[first : first + _PER_TX]
            self._submit(
                lane, [("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]}, {}) for e in keys]
            )
        return len(stale)

    def _release(self) -> None:
        """Delete this run's markers, each under its ETag (a fenced run fails here too)."""
        ops = [
            ("delete", {"PartitionKey": self.partition_key, "RowKey": lane.row_key},
             {"etag": lane.etag, "match_condition": MatchConditions.IfNotModified})
            for lane in self._lanes
        ]  # fmt: skip
        resent = False

        def send() -> None:
            nonlocal resent
            for attempt in range(_SENDS):
                try:
                    self._sink.client.submit_transaction(ops)
                    return
                except (ServiceRequestError, ServiceResponseError):
                    if attempt == _SENDS - 1:
                        raise
                    resent = True

        try:
            send()
        except TableTransactionError as exc:
            if exc.status_code == 404 and resent:
                return  # the first send deleted them
            if exc.status_code in (404, 412):
                raise _fenced(f"committing {self.partition_key}") from exc
            raise translate(exc, f"committing {self.partition_key}") from exc
        except AzureError as exc:
            raise translate(exc, f"committing {self.partition_key}") from exc

    def abort(self) -> None:
        """Drop what is pending; transactions already sent stay (see the module doc)."""
        if self._state == "open":
            self._state = "aborted"
            for lane in self._lanes:
                lane.pending = {}
                if lane.flight is not None:
                    lane.flight.cancel()
