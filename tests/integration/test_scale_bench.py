"""``make bench-scale`` in miniature: real planner and worker processes against an emulator that takes
time per query and answers 429 beyond 5 in flight. Checks outcomes only (timing is the bench's job):
every row exactly once, never more than 5 queries in flight, no 429 caused by the app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.scale_runs import backfill
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
    assert result["service_s"] > 0 and result["queries"] >= 8 * 4, result  # count + 3 sub-queries per window
