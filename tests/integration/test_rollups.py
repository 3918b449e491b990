"""Day rollups against Azurite: exact after crashes and races, built for old ledgers, and status reads that
do not grow with history (docs/reliability.md, "Day rollups")."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient

from shared.ledger import Ledger
from shared.ledger.days import Day, day_key
from shared.ledger.rollups import STALE_INTENT, Rollups
from shared.ledger.rows import new_entity
from shared.model import Window
from shared.ops.status import StatusView
from shared.ops.status_read import status_report
from shared.settings import load_settings
from tests.integration.kill import Killed, die_at

T0 = datetime(2026, 11, 2, tzinfo=UTC)
M5 = timedelta(minutes=5)
LEASE = timedelta(minutes=1)
ROOT = Path(__file__).resolve().parents[2]


class Counting(RequestsTransport):
    """The SDK's own HTTP transport, counting the storage requests it sends (table clients made from
    the service client share it)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def send(self, request, **kwargs):
        self.requests += 1
        return super().send(request, **kwargs)


def ledger_of(conn: str, table: str, transport: Counting | None = None) -> Ledger:
    kwargs = {"transport": transport} if transport else {}
    return Ledger(TableServiceClient.from_connection_string(conn, **kwargs), table)


def w(i: int, size: timedelta = M5) -> Window:
    return Window(T0 + i * size, T0 + (i + 1) * size)


def stored_day(ledger: Ledger, pipeline: str, day: datetime, size: timedelta = M5) -> Day:
    ledger.rollups.flush()  # applies run in the background
    raw = ledger.rollups._raw_get(pipeline, day_key(day))
    assert raw is not None
    return Day.from_entity(raw, size)


def truth(ledger: Ledger, pipeline: str, day: datetime, size: timedelta = M5) -> Day:
    """The day as a build from the window entities sees it (not stored)."""
    fresh = Day.empty(pipeline, day, size)
    for state in ledger.states(pipeline, since=day, until=day + timedelta(days=1)):
        fresh.put(state, force=True)
    return fresh


def same(a: Day, b: Day) -> bool:
    return (a.codes, a.rows, a.bytes, a.quarantined) == (b.codes, b.rows, b.bytes, b.quarantined)


# -- crashes between the window write and the rollup write ------------------------------------------------
def test_a_rollup_converges_after_a_worker_dies_between_the_window_write_and_the_rollup_write(
    storage_conn, unique, monkeypatch
):
    ledger = ledger_of(storage_conn, f"ledger{unique}")
    now = T0 + timedelta(hours=2)
    ledger.record_new("p", [w(i) for i in range(6)], now)
    claim = ledger.claim("p", w(3), owner="a", now=now, lease=LEASE, max_attempts=3)
    assert claim is not None
    ledger.rollups.flush()  # the claim's own apply (a background write) has landed
    die_at(monkeypatch, Rollups, "apply")  # the window is done in the ledger; the worker dies before the rollup
    with pytest.raises(Killed):
        ledger.complete(claim, now=now, rows=42, nbytes=420, outputs=[])
    monkeypatch.undo()
    stale = stored_day(ledger, "p", T0)
    assert stale.codes[3] == "r" and stale.pending  # the rollup still says running, with the intent beside it

    ledger.rollups.flush()
    fresh = ledger.rollups.day("p", T0, M5, now)  # a reader resolves the intent from the window entity
    assert fresh is not None and fresh.codes[3] == "d" and fresh.rows[3] == 42
    assert stored_day(ledger, "p", T0).pending  # a young intent is left to its writer

    later = now + STALE_INTENT + timedelta(seconds=1)
    ledger.rollups.day("p", T0, M5, later)  # past the threshold the reader writes the truth back
    repaired = stored_day(ledger, "p", T0)
    assert not repaired.pending and same(repaired, truth(ledger, "p", T0))
    assert repaired.sums().rows == 42 and repaired.sums().status_counts() == {"pending": 5, "done": 1}


def test_a_crash_after_the_intent_and_before_the_window_write_changes_nothing(storage_conn, unique, monkeypatch):
    ledger = ledger_of(storage_conn, f"ledger{unique}")
    now = T0 + timedelta(hours=2)
    ledger.record_new("p", [w(0)], now)
    die_at(monkeypatch, Ledger, "_write")  # announced, never written
    with pytest.raises(Killed):
        ledger.claim("p", w(0), owner="a", now=now, lease=LEASE, max_attempts=3)
    monkeypatch.undo()
    assert ledger.get("p", w(0)).status == "pending"
    ledger.rollups.flush()
    resolved = ledger.rollups.day("p", T0, M5, now + STALE_INTENT * 2)
    assert resolved is not None and resolved.codes[0] == "p" and not stored_day(ledger, "p", T0).pending


def test_a_late_apply_never_overwrites_a_newer_state(storage_conn, unique):
    ledger = ledger_of(storage_conn, f"ledger{unique}")
    now = T0 + timedelta(hours=2)
    ledger.record_new("p", [w(0)], now)
    first = ledger.claim("p", w(0), owner="a", now=now, lease=LEASE, max_attempts=3)
    assert first is not None
    old = ledger.get("p", w(0))
    ledger.complete(first, now=now, rows=7, nbytes=70, outputs=[])
    intent = ledger.rollups.intend("p", [w(0)], now)
    ledger.rollups.apply(intent, [old])  # a slow writer's older state (Seq 2) arrives after Seq 3
    day = stored_day(ledger, "p", T0)
    assert (day.codes[0], day.rows[0], day.seq[0]) == ("d", 7, 3) and not day.pending


def test_rollups_equal_the_window_entities_after_random_transitions_and_crashes(storage_conn, unique, monkeypatch):
    rng = random.Random(7)
    ledger = ledger_of(storage_conn, f"ledger{unique}")
    now = T0 + timedelta(days=2)
    windows = [w(i, timedelta(hours=1)) for i in range(36)]  # two days of hourly windows
    ledger.record_new("p", windows, now)
    kills = 0
    for step in range(150):
        now += timedelta(minutes=2)
        window = rng.choice(windows)
        crash = rng.random() < 0.3
        if crash:
            monkeypatch.setattr(Rollups, "apply", _killer)
        try:
            action = rng.random()
            if action < 0.5:
                claim = ledger.claim("p", window, owner=f"w{step}", now=now, lease=LEASE, max_attempts=3)
                if claim is not None and rng.random() < 0.8:
                    if rng.random() < 0.7:
                        ledger.complete(claim, now=now, rows=rng.randrange(100), nbytes=5, outputs=[])
                    else:
                        ledger.fail(claim, now=now, error="x", next_attempt_at=now, kind="window")
            elif action < 0.8:
                ledger.request_replay("p", [window], now)
            else:
                state = ledger.get("p", window)
                if state is not None and state.status != "done":
                    ledger.mark_queued("p", state, now, max_attempts=3)
        except Killed:
            kills += 1
        finally:
            monkeypatch.undo()
    assert kills > 10
    ledger.rollups.flush()
    for day in (T0, T0 + timedelta(days=1)):
        read = ledger.rollups.day("p", day, timedelta(hours=1), now)  # what status sees: intents resolved
        assert read is not None and same(read, truth(ledger, "p", day, timedelta(hours=1)))
        ledger.rollups.day("p", day, timedelta(hours=1), now + STALE_INTENT * 2)
        stored = stored_day(ledger, "p", day, timedelta(hours=1))  # and what is stored, once repaired
        assert not stored.pending and same(stored, truth(ledger, "p", day, timedelta(hours=1)))


def _killer(*args, **kwargs):
    raise Killed("killed before the rollup apply")


# -- a ledger from before rollups ------------------------------------------------------------------------
def test_a_ledger_from_before_rollups_is_built_with_progress_while_writers_run(storage_conn, unique):
    table = f"ledger{unique}"
    ledger = ledger_of(storage_conn, table)
    ledger.ensure()
    start = T0 - timedelta(days=90)  # in the past of the real clock too: the CLI builds up to "now"
    now = T0 + timedelta(days=70)
    old = [Window(start + i * timedelta(hours=1), start + (i + 1) * timedelta(hours=1)) for i in range(60 * 24)]
    client = ledger._table
    for i in range(0, len(old), 100):
        client.submit_transaction([("create", new_entity("p", x, now, "pending") | {"Status": "done", "Rows": 1})
                                   for x in old[i : i + 100]])  # fmt: skip
    settings = _settings(storage_conn, table, start=start)
    args = [sys.executable, "-m", "shared", "--settings", str(settings), "rollups", "--days", "20"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert ledger.request_replay("p", [old[30 * 24]], now) == 1  # an operator and a worker meanwhile
    claim = ledger.claim("p", old[30 * 24], owner="a", now=now, lease=LEASE, max_attempts=3)
    assert claim is not None
    ledger.complete(claim, now=now, rows=99, nbytes=1, outputs=[])
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    assert "day(s) built, next" in out and "p: rollups complete" in out  # progress, then done
    assert ledger.rollups.built("p")
    sums = ledger.rollups.sums("p", timedelta(hours=1), now)
    assert sum(d.sums.recorded for d in sums) == 60 * 24
    assert sum(d.sums.rows for d in sums) == 60 * 24 - 1 + 99


def done_history(ledger: Ledger, pipeline: str, windows: list[Window], now: datetime) -> None:
    """A moved history, fast: done entities written in transactions, then rollups built by the migration."""
    ledger.ensure()
    for i in range(0, len(windows), 100):
        ledger._table.submit_transaction([
            ("create", new_entity(pipeline, x, now) | {"Status": "done", "Rows": 10, "Bytes": 100, "Seq": 1})
            for x in windows[i : i + 100]
        ])  # fmt: skip
    while not ledger.rollups.migrate(pipeline, windows[0].size, until=now, now=now, max_days=400).done:
        pass


def _settings(conn: str, table: str, *, start: datetime, size: str = "PT1H") -> Path:
    pipeline = {
        "name": "p",
        "source": {"kind": "app_insights", "app_id": "a", "query": "requests", "endpoint": "http://127.0.0.1:9"},
        "window": {"size": size, "start": start.isoformat().replace("+00:00", "Z")},
        "sink": {"container": "out"},
    }
    values = {"AzureWebJobsStorage": conn, "MOVER_LEDGER_TABLE": table}
    values["MOVER_PIPELINES"] = json.dumps({"pipelines": [pipeline]})
    path = Path(f"/tmp/{table}.settings.json")
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


# -- status at any history length -----------------------------------------------------------------------
def test_status_makes_the_same_number_of_storage_requests_for_200_and_5000_windows(storage_conn, unique):
    table = f"ledger{unique}"
    now = T0 + timedelta(minutes=7)
    counts = {}
    for windows in (200, 5000):
        start = T0 - windows * M5
        name = f"p{windows}"
        writer = ledger_of(storage_conn, table)
        done_history(writer, name, [Window(start + i * M5, start + (i + 1) * M5) for i in range(windows - 2)], now)
        writer.record_new(name, [Window(T0 - 2 * M5, T0 - M5), Window(T0 - M5, T0)], now)  # the newest: pending
        values = json.loads(_settings(storage_conn, table, start=start, size="PT5M").read_text())["Values"]
        pipelines = json.loads(values["MOVER_PIPELINES"])
        pipelines["pipelines"][0]["name"] = name
        settings = load_settings(values | {"MOVER_PIPELINES": json.dumps(pipelines)})
        counting = Counting()
        reader = ledger_of(storage_conn, table, counting)
        reader.ensure()
        reader.rollups.ensure()
        before = counting.requests
        report = status_report(reader, settings, now=now, owner="t", view=StatusView())
        (p,) = report["pipelines"]
        assert (p["counts"]["done"], p["counts"]["pending"], p["view"]) == (windows - 2, 2, "windows")
        assert len(json.dumps(report)) < 100_000
        counts[windows] = counting.requests - before
    print(f"status requests per pipeline: {counts}")
    assert counts[200] == counts[5000] <= 8, counts  # bounded by what is shown, not by history
