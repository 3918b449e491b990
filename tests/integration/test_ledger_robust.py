"""An entity the engine cannot read (written by hand, by an older version) is reported and skipped:
never fatal to planning, ticks or the status page; requests that would write one are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient

from shared.model import Window
from tests.conftest import T0, H, query_pipeline


@pytest.fixture()
def engine(emulator, make_engine, unique):
    pipeline = query_pipeline("requests", "requests", emulator, f"out-{unique}", window={"end": "2026-11-02T03:00:00Z"})
    return make_engine([pipeline])


def _put(storage_conn: str, table: str, entity: dict) -> None:
    service = TableServiceClient.from_connection_string(storage_conn)
    service.create_table_if_not_exists(table)
    service.get_table_client(table).upsert_entity(entity)


@pytest.mark.parametrize(
    "entity",
    [
        # a year the Tables SDK cannot parse back ("1-01-01T00:00:00.000000Z")
        {"RowKey": "00010101T000000Z", "WindowStart": datetime(1, 1, 1, tzinfo=UTC),
         "WindowEnd": datetime(1, 1, 1, 1, tzinfo=UTC), "Status": "pending"},
        {"RowKey": "20261102T010000Z", "Status": "pending"},  # no bounds
        {"RowKey": "20261102T010000Z", "WindowStart": T0 + H, "WindowEnd": T0 + 2 * H, "Status": "weird"},
        {"RowKey": "20261102T010000Z", "WindowStart": T0 + H, "WindowEnd": T0 + 2 * H, "Status": "done",
         "Outputs": "{not json"},
    ],
    ids=["year-1", "no-bounds", "unknown-status", "bad-json"],
)  # fmt: skip
def test_unreadable_entity_is_skipped_and_reported(engine, storage_conn, entity):
    engine.ledger.ensure()
    _put(storage_conn, engine.settings.ledger_table, {"PartitionKey": "requests", **entity})
    report = engine.tick()
    assert report.errors == {}
    done = {s.window.start for s in engine.ledger.states("requests") if s.status == "done"}
    assert {T0, T0 + 2 * H} <= done  # the readable windows moved
    status = engine.status()
    assert status["pipelines"][0]["pipeline"] == "requests"
    assert "unreadable ledger entity skipped" in status["errors"]["requests"]
    assert entity["RowKey"] in status["errors"]["requests"]


def test_the_ledger_refuses_windows_table_storage_cannot_hold(engine):
    window = Window(datetime(1600, 12, 31, 23, tzinfo=UTC), datetime(1601, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="before 1601"):
        engine.ledger.request_replay("requests", [window], T0)
    with pytest.raises(ValueError, match="before 1601"):
        engine.ledger.claim("requests", window, owner="x", now=T0, lease=timedelta(minutes=1), max_attempts=1)
    assert list(engine.ledger.states("requests")) == []
