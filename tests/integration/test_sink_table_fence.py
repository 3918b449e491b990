"""Table sink fencing and parallel transactions against a real Azurite: a run that lost the
window cannot write into it, the winner's commit leaves exactly its rows, duplicates stay
last-wins across lanes, and the manifest names the winning run."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from azure.core.exceptions import ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient

from shared.errors import RetriableError
from shared.model import Batch
from shared.settings import SinkConfig, StorageConfig
from shared.sinks import TableSink
from shared.sinks.table import MARKER_PREFIX
from tests.integration.test_sink_table import COLUMNS, PK, W, make_rows, make_sink, partition, service

__all__ = ["make_sink", "service"]  # fixtures shared with test_sink_table


def rows_by_run(sink: TableSink) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for e in partition(sink.client):
        out.setdefault(e.get("_mover_run", "marker" if e["RowKey"].startswith(MARKER_PREFIX) else "?"), set()).add(
            e["RowKey"]
        )
    return out


def test_a_run_fenced_out_by_a_newer_one_cannot_write_and_the_winner_keeps_exactly_its_rows(make_sink) -> None:
    sink = make_sink()
    stale = sink.open(W)
    stale.write(Batch("requests", COLUMNS, make_rows(150, seed=1)))  # sent before the takeover
    winner = sink.open(W)  # another runner took the window over: the stale run is fenced out
    with pytest.raises(RetriableError, match="took this window's partition over"):
        stale.write(Batch("requests", COLUMNS, make_rows(400, seed=2)))
        stale.commit()  # whatever was still in flight fails here at the latest
    winner.write(Batch("requests", COLUMNS, make_rows(120, seed=3)))
    [out] = winner.commit()
    assert out.rows == 120 and out.extra["run"] == winner.run
    assert rows_by_run(sink) == {winner.run: {f"item%2F3%23{i}" for i in range(120)}}  # no marker, no stale row


def test_a_stalled_run_waking_after_the_winner_committed_changes_nothing(make_sink) -> None:
    sink = make_sink()
    stalled = sink.open(W)
    winner = sink.open(W)
    winner.write(Batch("requests", COLUMNS, make_rows(50, seed=7)))
    winner.commit()
    before = partition(sink.client)
    with pytest.raises(RetriableError):
        stalled.write(Batch("requests", COLUMNS, make_rows(300, seed=8)))
        stalled.commit()
    after = partition(sink.client)
    assert [(e["RowKey"], e["_mover_run"]) for e in after] == [(e["RowKey"], e["_mover_run"]) for e in before]
    assert {e["_mover_run"] for e in after} == {winner.run}


def test_the_same_item_written_twice_across_batches_and_lanes_keeps_the_last_version(make_sink) -> None:
    sink = make_sink()
    writer = sink.open(W)
    first = make_rows(500, seed=4)
    second = [[*r[:2], f"v2 {i}", *r[3:]] for i, r in enumerate(make_rows(500, seed=4)) if i % 5 == 0]
    writer.write(Batch("requests", COLUMNS, first))
    writer.write(Batch("requests", COLUMNS, second))
    writer.commit()
    names = {e["RowKey"]: e["name"] for e in partition(sink.client)}
    assert len(names) == 500
    assert all(names[f"item%2F4%23{i}"] == (f"v2 {i}" if i % 5 == 0 else f"name {i} ü") for i in range(500))


def test_the_manifest_records_the_run_of_every_part(make_sink) -> None:
    sink = make_sink()
    main = sink.open(W)
    main.write(Batch("requests", COLUMNS, make_rows(5)))
    outputs = main.commit()
    late = sink.open(W, part="late-0001")
    late.write(Batch("requests", COLUMNS, make_rows(3, seed=9)))
    outputs += late.commit()
    sink.write_manifest(W, outputs, {})
    files = orjson.loads(sink.client.get_entity(sink.manifest_key(), W.key)["files"])
    assert [(f["part"], f["run"]) for f in files] == [("", main.run), ("late-0001", late.run)]
    assert {e["_mover_run"] for e in partition(sink.client)} == {main.run, late.run}


def entities(client: Any, pk: str = PK) -> int:
    return len(list(client.query_entities("PartitionKey eq @pk", parameters={"pk": pk})))


def test_an_aborted_run_leaves_rows_the_next_commit_replaces(make_sink, service: TableServiceClient) -> None:
    sink = make_sink()
    first = sink.open(W)
    first.write(Batch("requests", COLUMNS, make_rows(230, seed=5)))
    first.abort()
    second = sink.open(W)
    second.write(Batch("requests", COLUMNS, make_rows(10, seed=6)))
    second.commit()
    assert rows_by_run(sink) == {second.run: {f"item%2F6%23{i}" for i in range(10)}}
    assert entities(sink.client) == 10


class _LoseOneResponse(RequestsTransport):
    """The real HTTP transport to Azurite, except that the response to the ``nth`` transaction
    is lost after the service applied it (a connection dropped on the way back)."""

    def __init__(self, nth: int) -> None:
        super().__init__()
        self.nth = nth
        self.batches = 0

    def send(self, request: Any, **kwargs: Any) -> Any:
        response = super().send(request, **kwargs)
        if request.method == "POST" and "$batch" in request.url:
            self.batches += 1
            if self.batches == self.nth:
                raise ServiceResponseError("connection reset after the request was sent")
        return response


@pytest.mark.parametrize("nth", [1, 2, 10], ids=["claim", "first-rows", "release"])
def test_a_transaction_whose_response_was_lost_is_resent_without_looking_fenced(
    storage_conn: str, unique: str, nth: int
) -> None:
    transport = _LoseOneResponse(nth)
    service = TableServiceClient.from_connection_string(storage_conn, transport=transport)
    config = SinkConfig(kind="table", storage=StorageConfig("S", conn_string=storage_conn), container=f"rows{unique}")
    sink = TableSink(config, pipeline="orders", table="requests", service=service)
    writer = sink.open(W)  # batch 1: the lane markers
    writer.write(Batch("requests", COLUMNS, make_rows(40)))  # 40 rows over 8 lanes: batches 2 … 9
    [out] = writer.commit()  # then the stale scan (no batch) and batch 10: release
    assert transport.batches >= nth and out.rows == 40
    assert rows_by_run(sink) == {writer.run: {f"item%2F0%23{i}" for i in range(40)}}
