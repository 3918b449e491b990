"""Emulator data side, without HTTP: generator, store visibility, workspace mapping,
explicit rows, the seeder, fault scripting, throttling and result limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from devtools.ai_emulator import CLASSIC_TABLES, WORKSPACE_TABLES, Emulator, EmulatorConfig, SettableClock
from devtools.ai_emulator.faults import FaultInjector
from devtools.ai_emulator.query import OutCol, QueryResult
from devtools.ai_emulator.response import render
from devtools.ai_emulator.seeder import TABLE_WEIGHTS, Seeder
from devtools.ai_emulator.throttle import ConcurrencyGate, RateLimiter
from devtools.ai_emulator.timeutil import parse_datetime

T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
H = timedelta(hours=1)
NOW = T0 + 6 * H

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "datetime": (str,),
    "dynamic": (str,),
    "real": (float,),
    "int": (int,),
    "long": (int,),
    "bool": (bool,),
}


def _check_cells(columns: list[tuple[str, str]], row: list[Any]) -> None:
    assert len(row) == len(columns)
    for (name, typ), value in zip(columns, row, strict=True):
        if value is None:
            assert typ not in ("string", "datetime"), f"{name} is null"
            continue
        assert isinstance(value, _PY_TYPES[typ]), f"{name}: {value!r} is not {typ}"
        if typ == "dynamic":
            assert isinstance(value, str)
            orjson.loads(value)
        if typ == "datetime":
            assert isinstance(value, str)
            parse_datetime(value)


@pytest.fixture()
def emu() -> Emulator:
    return Emulator(EmulatorConfig(app_id="data-app", workspace_id="data-ws"), clock=SettableClock(NOW))


@pytest.mark.parametrize("table", list(CLASSIC_TABLES))
def test_generated_rows_match_classic_and_workspace_schemas(emu: Emulator, table: str) -> None:
    assert emu.generate(table, T0, T0 + H, 200, seed=3) == 200
    rows = emu.expected(table, T0, T0 + H)
    assert len(rows) == 200
    columns = [(c.name, c.type) for c in CLASSIC_TABLES[table].columns]
    for row in rows:
        _check_cells(columns, list(row.values()))
        assert row["appId"] == "data-app" and row["itemCount"] >= 1
    ws = next(s for s in WORKSPACE_TABLES.values() if s.classic == table)
    ws_rows = emu.expected(ws.name, T0, T0 + H)
    ws_columns = [(c.name, c.type) for c in ws.columns]
    for row in ws_rows:
        _check_cells(ws_columns, list(row.values()))
        assert row["TenantId"] == "data-ws" and row["Type"] == ws.name
    assert [r["_ItemId"] for r in ws_rows] == [r["itemId"] for r in rows]
    assert [r["TimeGenerated"] for r in ws_rows] == [r["timestamp"] for r in rows]
    assert len({r["itemId"] for r in rows}) == 200


def test_generator_is_deterministic_and_seed_sensitive() -> None:
    a = Emulator(EmulatorConfig(), clock=SettableClock(NOW))
    b = Emulator(EmulatorConfig(), clock=SettableClock(NOW))
    a.generate("requests", T0, T0 + H, 300, seed=5)
    b.generate("requests", T0, T0 + H, 300, seed=5)
    assert a.expected("requests", T0, T0 + H) == b.expected("requests", T0, T0 + H)
    b.clear()
    b.generate("requests", T0, T0 + H, 300, seed=6)
    assert a.expected("requests", T0, T0 + H) != b.expected("requests", T0, T0 + H)


def test_requests_rows_have_benchmark_width(emu: Emulator) -> None:
    emu.generate("requests", T0, T0 + H, 5000, seed=1)
    result = emu.execute("app", "requests")
    average = sum(map(len, result.rows)) / len(result.rows)
    assert 800 <= average <= 1500
    assert all(b'"customDimensions"' not in r and b"tenant" in r for r in result.rows[:50])


def test_timestamps_stay_inside_the_window_and_mix_precisions(emu: Emulator) -> None:
    emu.generate("traces", T0, T0 + timedelta(seconds=2), 500, seed=2)
    rows = emu.expected("traces", T0 - H, T0 + H)
    assert len(rows) == 500
    stamps = [r["timestamp"] for r in rows]
    assert all("2026-11-02T10:00:0" in s for s in stamps)
    assert any(len(s.split(".")[-1]) == 8 for s in stamps if "." in s)  # 7 digits + Z
    assert stamps == sorted(stamps, key=parse_datetime)


def test_late_rows_become_visible_when_the_clock_passes_their_ingestion(emu: Emulator) -> None:
    clock = SettableClock(T0 + H + timedelta(seconds=30))
    emu.clock = clock
    n = emu.generate("requests", T0, T0 + H, 1000, seed=4, late_fraction=0.3, late_delay=(7200, 10800))
    visible = emu.expected_count("requests", T0, T0 + H)
    assert 600 < visible < 800  # ~70% on time (ingested within seconds)
    assert emu.expected_count("requests", T0, T0 + H, visible_only=False) == n
    clock.advance(timedelta(hours=3))
    assert emu.expected_count("requests", T0, T0 + H) == n


def test_explicit_rows_are_normalized_like_the_api(emu: Emulator) -> None:
    emu.add_rows(
        "requests",
        [{"timestamp": T0 + timedelta(microseconds=5), "id": "a", "success": True, "duration": 3,
          "customDimensions": {"x": 1}, "resultCode": 200}],
    )  # fmt: skip
    [row] = emu.expected("requests", T0, T0 + H)
    assert row["timestamp"] == "2026-11-02T10:00:00.000005Z"
    assert (row["success"], row["duration"], row["resultCode"]) == ("True", 3.0, "200")
    assert row["customDimensions"] == '{"x":1}' and row["customMeasurements"] is None
    assert row["itemType"] == "request" and row["itemCount"] == 1 and len(row["itemId"]) == 36
    assert row["url"] == "" and row["appId"] == "data-app"


def test_explicit_rows_by_workspace_names(emu: Emulator) -> None:
    emu.add_rows("AppTraces", [{"TimeGenerated": "2026-11-02T10:00:01Z", "Message": "hi", "SeverityLevel": 2}])
    [ws] = emu.expected("AppTraces", T0, T0 + H)
    [classic] = emu.expected("traces", T0, T0 + H)
    assert (ws["Message"], ws["SeverityLevel"], classic["message"]) == ("hi", 2, "hi")


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"timestamp": T0, "nosuch": 1}, KeyError),
        ({"id": "no timestamp"}, ValueError),
        ({"timestamp": datetime(2026, 11, 2)}, ValueError),  # naive on purpose
        ({"timestamp": T0, "itemCount": "1"}, TypeError),
        ({"timestamp": T0, "customDimensions": "{not json"}, ValueError),
    ],
    ids=["unknown-column", "missing-timestamp", "naive-datetime", "wrong-type", "bad-dynamic"],
)
def test_explicit_rows_are_validated(emu: Emulator, row: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        emu.add_rows("requests", [row])


def test_store_sorts_out_of_order_inserts_and_spans_buckets(emu: Emulator) -> None:
    emu.add_rows("requests", [{"timestamp": T0 + timedelta(hours=2), "id": "c"}])
    emu.add_rows("requests", [{"timestamp": T0, "id": "a"}, {"timestamp": T0 + timedelta(minutes=90), "id": "b"}])
    emu.add_rows("requests", [{"timestamp": T0 - timedelta(seconds=1), "id": "z"}])
    assert [r["id"] for r in emu.expected("requests", T0 - H, T0 + 3 * H)] == ["z", "a", "b", "c"]
    assert [r["id"] for r in emu.expected("requests", T0, T0 + timedelta(hours=2))] == ["a", "b"]


def test_seeder_fills_history_and_ticks_with_the_clock(emu: Emulator) -> None:
    clock = SettableClock(NOW)
    emu.clock = clock
    seeder = Seeder(emu.store, emu.generator, emu.now_ticks, rate=20, late_fraction=0.1, seed=1)
    added = seeder.fill(emu.now_ticks() - 3600 * 10_000_000, emu.now_ticks())
    assert abs(added - 20 * 3600) <= len(TABLE_WEIGHTS)
    counts = emu.store.tables()
    assert counts["requests"] > counts["exceptions"] > 0
    assert emu.expected_count("requests", NOW - H, NOW) < counts["requests"]  # some are late
    clock.advance(10)
    assert seeder.tick() in range(192, 209)
    assert emu.store.tables()["requests"] > counts["requests"]


def test_fault_queue_then_rates() -> None:
    faults = FaultInjector(seed=1)
    faults.push(429, retry_after=2, count=2)
    faults.push("reset")
    got = [faults.next() for _ in range(4)]
    assert [f.status if f else None for f in got] == [429, 429, "reset", None]
    assert got[0] is not None and got[0].retry_after == 2
    faults.set_rates({503: 0.5})
    hits = sum(1 for _ in range(1000) if faults.next() is not None)
    assert 400 < hits < 600
    faults.clear()
    assert faults.next() is None


@pytest.mark.parametrize("bad", [{"status": 200}, {"status": "boom"}, {"status": 429, "count": 0}], ids=str)
def test_fault_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultInjector().push(**bad)


def test_rate_limiter_and_gate() -> None:
    limiter = RateLimiter()
    assert [limiter.check("a", 2, 30.0) for _ in range(2)] == [None, None]
    retry = limiter.check("a", 2, 30.0)
    assert retry is not None and 1 <= retry <= 30
    assert limiter.check("b", 2, 30.0) is None  # per identity
    assert limiter.check("a", None, 30.0) is None  # off
    gate = ConcurrencyGate()
    assert gate.try_enter(1) and not gate.try_enter(1)
    gate.leave()
    assert gate.try_enter(1) and gate.peak == 1


def _result(n: int, width: int = 10) -> QueryResult:
    return QueryResult([OutCol("x", "string")], [orjson.dumps(["a" * width]) for _ in range(n)])


@pytest.mark.parametrize(
    ("n", "max_rows", "max_bytes", "force", "rows", "partial"),
    [
        (10, 10, 10**6, False, 10, None),
        (11, 10, 10**6, False, 10, "rows"),
        (10, 100, 15 * 5, False, 5, "bytes"),
        (10, 100, 10**6, True, 5, "forced"),
        (0, 100, 10**6, False, 0, None),
    ],
    ids=["at-limit", "rows", "bytes", "forced", "empty"],
)
def test_render_limits(n: int, max_rows: int, max_bytes: int, force: bool, rows: int, partial: str | None) -> None:
    out = render(_result(n), max_rows, max_bytes, force_partial=force)
    body = orjson.loads(b"".join(out.parts))
    assert len(body["tables"][0]["rows"]) == rows == out.rows and out.partial == partial
    assert out.length == len(b"".join(out.parts))
    if partial:
        assert body["error"]["code"] == "PartialError"
        assert "E_QUERY_RESULT_SET_TOO_LARGE" in body["error"]["details"][0]["innererror"]["message"]
    else:
        assert "error" not in body
