"""``make bench-scale`` in miniature: real planner and worker processes against an emulator that takes
time per query and answers 429 beyond 5 in flight, and the status point over two lengths of history.
Checks outcomes only (timing is the bench's job): every row exactly once, never more than 5 queries in
flight, no 429 caused by the app; status, page, verify and the idle check answer right with the same
number of storage requests for 25 and for 100 days of history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.scale_runs import backfill
from bench.scale_status import MEASURED, growth, status_summary
from bench.scheduler import scheduler
from bench.stack import EmulatorProcess
from devtools.azurite import Azurite

START = datetime(2026, 11, 5, tzinfo=UTC)


def test_queue_backfill_stays_under_the_query_cap_and_moves_every_row_once(azurite: Azurite) -> None:
    tables = ["requests", "traces"]
    extra = ["--latency-ms", "300", "--latency-per-1k-rows-ms", "100", "--rate-limit", "200"]
    with EmulatorProcess(extra=extra) as emu:
        assert emu.control("GET", "config")["latency_ms"] == 300.0
        for seed, table in enumerate(tables, start=1):
            end = START + timedelta(hours=4)
            emu.control("POST", "generate", {"table": table, "start": START.isoformat(), "end": end.isoformat(),
                                             "count": 4 * 3000, "seed": seed})  # fmt: skip
        result = backfill(azurite.connection_string, emu, tables, START, 4, workers=2, max_rows_per_query=1000)
    assert result["exact"], result
    assert result["windows"] == result["windows_done"] == 8, result
    assert result["rows_out"] == result["rows"] == 24_000, result
    assert result["lost"] == result["duplicated"] == 0, result
    assert 2 <= result["max_in_flight"] <= 5, result  # parallel sub-queries, never past the cap
    assert result["app_429"] == 0, result
    assert result["service_s"] > 0 and result["queries"] >= 8 * 3, result  # 3 sub-queries per window + counts
    assert 0 < result["span_s"] <= result["seconds"] and result["fill"] > 0, result  # the queries' own span


def test_status_point_makes_the_same_storage_requests_for_25_and_100_days_of_history(
    azurite: Azurite, unique: str
) -> None:
    points = []
    with EmulatorProcess() as emu:
        for windows in (25 * 24, 100 * 24):
            spec = {"storage": azurite.connection_string, "emulator": emu.url, "app_id": emu.app_id,
                    "token": emu.token, "ledger_table": f"status{windows}{unique}", "pipelines": 2,
                    "windows": windows, "size": "PT1H", "open": 12, "tick": False, "status": True}  # fmt: skip
            points.append(scheduler(spec))  # raises when a read answers wrong (counts, verdicts, failed list)
    short, long = (p["status"] for p in points)
    assert short["failed_windows"] == long["failed_windows"] == 4  # 2 per pipeline, closed
    assert short["verified_windows"] == long["verified_windows"] == 24  # one day, every window complete
    for key, _ in MEASURED:
        assert short[key]["requests"] == long[key]["requests"] > 0, (key, short[key], long[key])
    assert short["json_default"]["by_table"] == {"days": 8, "ledger": 2}  # 5 per pipeline, see docs/scale.md
    assert short["json_31d"]["by_table"] == {"days": 6, "ledger": 2}  # the range's days in one query
    assert short["idle"]["by_table"] == {"ledger": 4, "days": 6}  # a plan; the sums and 2 failed days
    assert short["verify_1d"]["by_table"] == {"ledger": 2}  # the day's windows, the recorded result
    assert growth([status_summary(p) for p in points]) == []
