"""The emulator's KQL subset: tokenizer, parser, planner and evaluator, table-driven.

A small hand-made ``requests`` table (edge timestamps, 7-digit fractions, a late row) is
queried in-process; every supported form must give the exact answer, everything else a
SyntaxError/SemanticError — never a wrong answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from devtools.ai_emulator import Emulator, EmulatorConfig, KqlSemanticError, KqlSyntaxError, SettableClock
from devtools.ai_emulator.kql import parse, tokenize
from devtools.ai_emulator.timeutil import (
    format_ticks,
    parse_datetime,
    parse_iso_duration,
    parse_timespan_param,
    to_ticks,
)

T10 = datetime(2026, 11, 2, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 2, 12, tzinfo=UTC)
MIN = timedelta(minutes=1)

# id, timestamp, name, resultCode, success, duration, itemCount, ingested_at
ROWS: list[tuple[str, str, str, str, bool, float, int, datetime]] = [
    ("r1", "2026-11-02T10:00:00Z", "GET /a", "200", True, 10.5, 1, T10 + MIN),
    ("r2", "2026-11-02T10:15:30.1234567Z", "GET /b", "500", False, 250.0, 1, T10 + 16 * MIN),
    ("r3", "2026-11-02T10:59:59.9999999Z", "POST /c", "200", True, 3.25, 5, T10 + 61 * MIN),
    ("r4", "2026-11-02T11:00:00Z", "GET /a", "404", True, 99.0, 1, T10 + 61 * MIN),
    ("r5", "2026-11-02T09:59:59.999Z", "GET /a", "200", True, 1.0, 1, T10),
    ("r6", "2026-11-02T10:30:00Z", "GET /late", "200", True, 5.0, 1, NOW + 60 * MIN),  # not yet ingested
    ("r7", "2026-11-02T10:45:00Z", "GET /b", "200", True, 7.0, 2, T10 + 90 * MIN),  # late but landed
]


@pytest.fixture(scope="module")
def emu() -> Emulator:
    emulator = Emulator(EmulatorConfig(app_id="kql-app", workspace_id="kql-ws"), clock=SettableClock(NOW))
    for rid, ts, name, code, ok, duration, count, ingested in ROWS:
        row = {"timestamp": ts, "id": rid, "name": name, "resultCode": code, "success": ok,
               "duration": duration, "itemCount": count, "customDimensions": {"k": rid}}  # fmt: skip
        emulator.add_rows("requests", [row], ingested_at=ingested)
    return emulator


def ids(emu: Emulator, query: str, timespan: str | None = None, kind: str = "app") -> list[str]:
    columns, rows = emu.query_rows(kind, query, timespan)
    key = "id" if kind == "app" else "Id"
    idx = [c.name for c in columns].index(key)
    return [r[idx] for r in rows]


def between(lo: str, hi: str, col: str = "timestamp", op: str = ">=", table: str = "requests") -> str:
    """``table | where col op lo and col < hi`` (the engine's window shape)."""
    return f"{table} | where {col} {op} datetime({lo}) and {col} < datetime({hi})"


W = between("2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z")
HOUR10 = ["r1", "r2", "r7", "r3"]
ING = "ingestion_time()"

ROW_CASES = [
    ("engine-window", W, HOUR10),
    ("engine-window-newline", W.replace(" | where", "\n| where"), HOUR10),
    ("space-date-form", between("2026-11-02 10:00", "2026-11-02 11:00"), HOUR10),
    ("quoted-7-digits", between('"2026-11-02T10:00:00.0000000Z"', "2026-11-02T11:00:00Z"), HOUR10),
    ("offset-literal", between("2026-11-02T11:00:00+01:00", "2026-11-02T11:00:00Z"), HOUR10),
    ("microsecond-literal", between("2026-11-02T10:00:00.000000Z", "2026-11-02T11:00:00.000000Z"), HOUR10),
    ("date-only", between("2026-11-02", "2026-11-03"), ["r5", "r1", "r2", "r7", "r3", "r4"]),
    ("strict-greater", between("2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z", op=">"), ["r2", "r7", "r3"]),
    ("last-tick-inclusive", "requests | where timestamp <= datetime(2026-11-02T10:59:59.9999999Z)"
     " and timestamp >= datetime(2026-11-02T10:59:00Z)", ["r3"]),
    ("equal-7-digits", "requests | where timestamp == datetime(2026-11-02T10:15:30.1234567Z)", ["r2"]),
    ("equal-no-rounding", "requests | where timestamp == datetime(2026-11-02T10:15:30.123456Z)", []),
    ("literal-on-left", "requests | where datetime(2026-11-02T11:00:00Z) <= timestamp", ["r4"]),
    ("string-eq", 'requests | where name == "GET /a"', ["r5", "r1", "r4"]),
    ("string-neq-single-quotes", "requests | where name != 'GET /a'", ["r2", "r7", "r3"]),
    ("string-neq-angle", "requests | where name <> 'GET /a'", ["r2", "r7", "r3"]),
    ("classic-success-is-string", 'requests | where success == "False"', ["r2"]),
    ("real-ge-int", "requests | where duration >= 99", ["r2", "r4"]),
    ("real-lt-real", "requests | where duration < 10.5", ["r5", "r7", "r3"]),
    ("int-gt", "requests | where itemCount > 1", ["r7", "r3"]),
    ("negative-literal", "requests | where duration > -1 and itemCount < 2", ["r5", "r1", "r2", "r4"]),
    ("or-and-parens", f'{W} and (name == "GET /a" or resultCode == "500")', ["r1", "r2"]),
    ("and-binds-tighter", 'requests | where name == "GET /a" or resultCode == "500" and itemCount == 1',
     ["r5", "r1", "r2", "r4"]),
    ("not", 'requests | where not(success == "True")', ["r2"]),
    ("multiple-where", f'{W}\n| where name == "GET /b"\n| where itemCount == 2', ["r7"]),
    ("filter-alias", 'requests | filter name == "POST /c"', ["r3"]),
    ("ingestion-window", between("2026-11-02T11:00:00Z", "2026-11-02T12:00:00Z", col=ING), ["r7", "r3", "r4"]),
    ("ingestion-and-time", f"{W} and {ING} > datetime(2026-11-02T11:00:00Z)", ["r7", "r3"]),
    ("ingestion-late-invisible", f"requests | where {ING} > datetime(2026-11-02T12:00:00Z)", []),
    ("ago", "requests | where timestamp > ago(1h) and timestamp <= now()", []),
    ("ago-2h", "requests | where timestamp >= ago(2h)", ["r1", "r2", "r7", "r3", "r4"]),
    ("order-default-desc", f"{W} | order by duration", ["r2", "r1", "r7", "r3"]),
    ("order-asc", f"{W} | sort by duration asc", ["r3", "r7", "r1", "r2"]),
    ("order-two-keys", "requests | order by name asc, timestamp desc", ["r4", "r1", "r5", "r7", "r2", "r3"]),
    ("order-time-desc-take", "requests | order by timestamp desc | take 2", ["r4", "r3"]),
    ("order-time-asc", f"{W} | order by timestamp asc", HOUR10),
    ("take-after-where", f"{W} | take 2", ["r1", "r2"]),
    ("limit", "requests | limit 1", ["r5"]),
    ("take-zero", "requests | take 0", []),
    ("take-then-where", 'requests | take 2 | where name == "GET /a"', ["r5", "r1"]),
    ("comment", "// a comment\nrequests // table\n| where name == 'POST /c' // filter", ["r3"]),
    ("trailing-semicolon", "requests | where name == 'POST /c';", ["r3"]),
    ("bracket-name", "requests | where ['name'] == 'POST /c'", ["r3"]),
    ("verbatim-string", 'requests | where name == @"POST /c"', ["r3"]),
    ("todatetime", 'requests | where timestamp == todatetime("2026-11-02T11:00:00Z")', ["r4"]),
]  # fmt: skip


@pytest.mark.parametrize(("query", "expected"), [c[1:] for c in ROW_CASES], ids=[c[0] for c in ROW_CASES])
def test_rows(emu: Emulator, query: str, expected: list[str]) -> None:
    assert ids(emu, query) == expected


TIMESPAN_CASES = [
    ("start-end", "2026-11-02T10:00:00Z/2026-11-02T11:00:00Z", HOUR10),
    ("start-duration", "2026-11-02T10:00:00Z/PT1H", HOUR10),
    ("duration-end", "PT1H/2026-11-02T11:00:00Z", HOUR10),
    ("sdk-offset-form", "2026-11-02T10:00:00+00:00/2026-11-02T11:00:00+00:00", HOUR10),
    ("sdk-seconds-duration", "2026-11-02T10:00:00.000000Z/PT3600.0S", HOUR10),
    ("bare-duration-ends-now", "PT1H", ["r4"]),
    ("days", "P1D", ["r5", "r1", "r2", "r7", "r3", "r4"]),
]


@pytest.mark.parametrize(("timespan", "expected"), [c[1:] for c in TIMESPAN_CASES], ids=[c[0] for c in TIMESPAN_CASES])
def test_timespan_filters_like_a_where(emu: Emulator, timespan: str, expected: list[str]) -> None:
    assert ids(emu, "requests", timespan) == expected


def test_timespan_and_where_intersect(emu: Emulator) -> None:
    assert ids(emu, W, "2026-11-02T10:30:00Z/PT2H") == ["r7", "r3"]


AGG_CASES = [
    ("count", f"{W} | summarize count()", [{"name": "count_", "type": "long"}], [[4]]),
    ("count-alias", f"{W} | summarize n = count()", [{"name": "n", "type": "long"}], [[4]]),
    ("count-empty", "requests | where timestamp > datetime(2030-01-01) | summarize count()",
     [{"name": "count_", "type": "long"}], [[0]]),
    ("count-operator", f"{W} | count", [{"name": "Count", "type": "long"}], [[4]]),
    ("bin-1h", "requests | summarize count() by bin(timestamp, 1h)",
     [{"name": "timestamp", "type": "datetime"}, {"name": "count_", "type": "long"}],
     [["2026-11-02T09:00:00Z", 1], ["2026-11-02T10:00:00Z", 4], ["2026-11-02T11:00:00Z", 1]]),
    ("bin-seconds-as-engine-sends", f"{W}\n| summarize count() by bin(timestamp, 900s)",
     [{"name": "timestamp", "type": "datetime"}, {"name": "count_", "type": "long"}],
     [["2026-11-02T10:00:00Z", 1], ["2026-11-02T10:15:00Z", 1], ["2026-11-02T10:45:00Z", 2]]),
    ("bin-empty-bins-omitted", f"{W} | summarize count() by bin(timestamp, 1m)",
     [{"name": "timestamp", "type": "datetime"}, {"name": "count_", "type": "long"}],
     [["2026-11-02T10:00:00Z", 1], ["2026-11-02T10:15:00Z", 1], ["2026-11-02T10:45:00Z", 1],
      ["2026-11-02T10:59:00Z", 1]]),
    ("bin-alias-generic", f"{W} and itemCount >= 1 | summarize c = count() by t = bin(timestamp, 30m)",
     [{"name": "t", "type": "datetime"}, {"name": "c", "type": "long"}],
     [["2026-11-02T10:00:00Z", 2], ["2026-11-02T10:30:00Z", 2]]),
    ("by-column", f"{W} | summarize count() by name",
     [{"name": "name", "type": "string"}, {"name": "count_", "type": "long"}],
     [["GET /a", 1], ["GET /b", 2], ["POST /c", 1]]),
    ("project", f"{W} | where itemCount > 1 | project id, duration, when = timestamp",
     [{"name": "id", "type": "string"}, {"name": "duration", "type": "real"}, {"name": "when", "type": "datetime"}],
     [["r7", 7.0, "2026-11-02T10:45:00Z"], ["r3", 3.25, "2026-11-02T10:59:59.9999999Z"]]),
    ("project-then-order", f"{W} | project id, itemCount | order by itemCount desc, id asc",
     [{"name": "id", "type": "string"}, {"name": "itemCount", "type": "int"}],
     [["r3", 5], ["r7", 2], ["r1", 1], ["r2", 1]]),
    ("summarize-then-where", "requests | summarize count() by name | where count_ > 1",
     [{"name": "name", "type": "string"}, {"name": "count_", "type": "long"}],
     [["GET /a", 3], ["GET /b", 2]]),
    ("sum-avg-min-max", f"{W} | summarize sum(duration), avg(duration), min(itemCount), max(timestamp), "
     "sum(itemCount)",
     [{"name": "sum_duration", "type": "real"}, {"name": "avg_duration", "type": "real"},
      {"name": "min_itemCount", "type": "int"}, {"name": "max_timestamp", "type": "datetime"},
      {"name": "sum_itemCount", "type": "long"}],
     [[270.75, 67.6875, 1, "2026-11-02T10:59:59.9999999Z", 9]]),
    ("sum-by-name", f"{W} | summarize n = count(), d = sum(duration) by name",
     [{"name": "name", "type": "string"}, {"name": "n", "type": "long"}, {"name": "d", "type": "real"}],
     [["GET /a", 1, 10.5], ["GET /b", 2, 257.0], ["POST /c", 1, 3.25]]),
    ("sum-empty-is-null", "requests | where timestamp > datetime(2030-01-01) | summarize count(), sum(duration)",
     [{"name": "count_", "type": "long"}, {"name": "sum_duration", "type": "real"}], [[0, None]]),
    ("bin-ingestion-1h", f"requests | summarize count() by bin({ING}, 1h)",
     [{"name": "Column1", "type": "datetime"}, {"name": "count_", "type": "long"}],
     [["2026-11-02T10:00:00Z", 3], ["2026-11-02T11:00:00Z", 3]]),
    ("bin-ingestion-as-engine-sends",
     between("2026-11-02T11:00:00Z", "2026-11-02T12:00:00Z", col=ING) + f"\n| summarize count() by bin({ING}, 60s)",
     [{"name": "Column1", "type": "datetime"}, {"name": "count_", "type": "long"}],
     [["2026-11-02T11:01:00Z", 2], ["2026-11-02T11:30:00Z", 1]]),
    ("bin-ingestion-generic", f"requests | where name == 'GET /b' | summarize c = count() by t = bin({ING}, 1h)",
     [{"name": "t", "type": "datetime"}, {"name": "c", "type": "long"}],
     [["2026-11-02T10:00:00Z", 1], ["2026-11-02T11:00:00Z", 1]]),
]  # fmt: skip


@pytest.mark.parametrize(("query", "columns", "rows"), [c[1:] for c in AGG_CASES], ids=[c[0] for c in AGG_CASES])
def test_tables(emu: Emulator, query: str, columns: list[dict[str, str]], rows: list[list[Any]]) -> None:
    cols, got = emu.query_rows("app", query)
    assert [{"name": c.name, "type": c.type} for c in cols] == columns
    assert sorted(got, key=str) == sorted(rows, key=str)


def test_workspace_tables_see_the_same_rows(emu: Emulator) -> None:
    q = W.replace("requests", "AppRequests").replace("timestamp", "TimeGenerated")
    assert ids(emu, q, kind="workspace") == HOUR10
    assert ids(emu, "AppRequests | where Success == false", kind="workspace") == ["r2"]
    assert ids(emu, "AppRequests | where Success and DurationMs > 50", kind="workspace") == ["r4"]
    _, rows = emu.query_rows("workspace", "AppRequests | where Id == 'r2' | project Properties, _ItemId, Type")
    assert rows[0][0] == '{"k":"r2"}' and rows[0][2] == "AppRequests" and rows[0][1]


SYNTAX_ERRORS = [
    ("empty", ""),
    ("dangling-pipe", "requests |"),
    ("where-without-predicate", "requests | where"),
    ("unknown-operator", "requests | wher x"),
    ("unsupported-extend", "requests | extend x = 1"),
    ("unsupported-contains", "requests | where name contains 'a'"),
    ("unsupported-in", "requests | where name in ('a', 'b')"),
    ("bad-date", "requests | where timestamp > datetime(2026-13-01)"),
    ("eight-fraction-digits", "requests | where timestamp > datetime(2026-11-02T10:00:00.12345678Z)"),
    ("unterminated-string", "requests | where name == 'abc"),
    ("take-needs-int", "requests | take x"),
    ("order-needs-by", "requests | order name"),
    ("unbalanced-paren", "requests | where (name == 'a'"),
    ("stray-token", "requests )"),
    ("let-statement", "let x = 1; requests"),
    ("two-literals", "requests | where name == 'a' 'b'"),
    ("bad-timespan-unit", "requests | summarize count() by bin(timestamp, 5q)"),
    ("unknown-char", "requests | where name == 'a' # x"),
    ("union", "union requests, traces"),
]


@pytest.mark.parametrize("query", [c[1] for c in SYNTAX_ERRORS], ids=[c[0] for c in SYNTAX_ERRORS])
def test_syntax_errors(emu: Emulator, query: str) -> None:
    with pytest.raises(KqlSyntaxError):
        emu.execute("app", query)


SEMANTIC_ERRORS = [
    ("table-names-are-case-sensitive", "Requests"),
    ("unknown-table", "nosuchtable | take 1"),
    ("workspace-table-on-app-route", "AppRequests | take 1"),
    ("unknown-column", "requests | where nosuch == 1"),
    ("string-vs-bool", "requests | where success == true"),
    ("string-ordering", "requests | where name < 'b'"),
    ("real-vs-string", "requests | where duration == 'x'"),
    ("datetime-vs-number", "requests | where timestamp > 5"),
    ("non-bool-predicate", "requests | where name"),
    ("and-needs-bools", "requests | where name and success == 'True'"),
    ("unsupported-aggregation", "requests | summarize stdev(duration)"),
    ("sum-of-string", "requests | summarize sum(name)"),
    ("sum-of-expression", "requests | summarize sum(duration > 1)"),
    ("billed-size-not-on-classic-tables", "requests | summarize sum(_BilledSize)"),
    ("bin-on-string", "requests | summarize count() by bin(name, 1h)"),
    ("bin-zero", "requests | summarize count() by bin(timestamp, 0s)"),
    ("bin-on-number-span", "requests | summarize count() by bin(timestamp, 60)"),
    ("project-unknown", "requests | project nosuch"),
    ("column-gone-after-project", "requests | project id | where name == 'x'"),
    ("ingestion-time-after-project", "requests | project id | where ingestion_time() > ago(1h)"),
    ("ingestion-bin-after-project", "requests | project id | summarize count() by bin(ingestion_time(), 1h)"),
    ("dynamic-compare", "requests | where customDimensions == 'x'"),
    ("group-by-dynamic", "requests | summarize count() by customDimensions"),
    ("order-by-dynamic", "requests | order by customDimensions"),
    ("unknown-function", "requests | where strlen(name) > 1"),
    ("duplicate-output", "requests | project id, id"),
]


@pytest.mark.parametrize("query", [c[1] for c in SEMANTIC_ERRORS], ids=[c[0] for c in SEMANTIC_ERRORS])
def test_semantic_errors(emu: Emulator, query: str) -> None:
    with pytest.raises(KqlSemanticError):
        emu.execute("app", query)


def test_fast_and_generic_paths_agree_on_generated_data() -> None:
    emu = Emulator(EmulatorConfig(), clock=SettableClock(NOW))
    emu.generate("requests", T10, T10 + timedelta(hours=1), 3000, seed=7, late_fraction=0.2)
    lo, hi = "datetime(2026-11-02T10:07:00Z)", "datetime(2026-11-02T10:41:30.5Z)"
    fast = emu.execute("app", f"requests | where timestamp >= {lo} and timestamp < {hi}")
    generic = emu.execute("app", f"requests | where timestamp >= {lo} and timestamp < {hi} and itemCount >= 0")
    assert fast.rows == generic.rows and len(fast.rows) > 1000
    for span in ("7m", "1m", "90s", "1h"):
        f = emu.query_rows("app", f"requests | summarize count() by bin(timestamp, {span})")[1]
        g = emu.query_rows("app", f"requests | where itemCount >= 0 | summarize count() by bin(timestamp, {span})")[1]
        assert f == sorted(g)
        assert sum(c for _, c in f) == emu.expected_count("requests", T10, T10 + timedelta(hours=1))


def test_ingestion_bins_agree_on_both_paths_and_count_every_visible_row_once() -> None:
    """``count() by bin(ingestion_time(), …)`` (what the engine sends for ingestion-time windows) and
    ``sum(_BilledSize)`` by it: the fast path (ingestion ticks, no decoding) matches the evaluator, and
    the bins hold each visible row exactly once whatever its event time."""
    emu = Emulator(EmulatorConfig(), clock=SettableClock(NOW + timedelta(hours=2)))
    emu.generate("requests", T10, T10 + timedelta(hours=1), 2000, seed=5, late_fraction=0.3)
    span = "2026-11-01T00:00:00Z/2026-11-04T00:00:00Z"
    for bin_size in ("1m", "7m", "1h"):
        q = f"requests | summarize count() by bin({ING}, {bin_size})"
        fast = emu.query_rows("app", q, span)[1]
        generic = emu.query_rows("app", q.replace("| summarize", "| where itemCount >= 0 | summarize"), span)[1]
        assert fast == sorted(generic) and sum(n for _, n in fast) == 2000 - invisible(emu)
    w = "AppRequests | summarize n = count(), b = sum(_BilledSize) by bin(ingestion_time(), 30m)"
    fast_ws = emu.query_rows("workspace", w, span)[1]
    generic_ws = emu.query_rows("workspace", w.replace("| summarize", "| where _BilledSize > 0 | summarize"), span)[1]
    assert fast_ws == sorted(generic_ws) and len(fast_ws) > 2  # late rows bin hours after their event time
    hour = T10 + timedelta(hours=1)
    late = emu.expected("requests", hour, hour + timedelta(hours=1), by="ingestion")
    assert late and all(r["timestamp"] < "2026-11-02T11:00:00Z" for r in late)


def invisible(emu: Emulator) -> int:
    """Rows stored but not ingested yet at the emulator's clock."""
    return emu.expected_count("requests", T10, NOW + timedelta(days=1), visible_only=False) - emu.expected_count(
        "requests", T10, NOW + timedelta(days=1)
    )


def test_billed_size_is_the_stored_row_size_and_fast_and_generic_sums_agree() -> None:
    """``_BilledSize`` (workspace tables) is each row's stored JSON size; the fast path that
    answers ``count(), sum(_BilledSize) by bin`` from stored bytes matches the evaluator."""
    emu = Emulator(EmulatorConfig(), clock=SettableClock(NOW))
    emu.generate("requests", T10, T10 + timedelta(hours=1), 2000, seed=3, late_fraction=0.3)
    rows = emu.query_rows("workspace", "AppRequests | project _BilledSize")[1]
    stored = [len(orjson.dumps(list(r.values()))) for r in emu.expected("requests", T10, T10 + timedelta(hours=1))]
    assert sorted(r[0] for r in rows) == sorted(float(n) for n in stored)
    q = "AppRequests | summarize n = count(), b = sum(_BilledSize) by bin(TimeGenerated, 5m)"
    fast = emu.query_rows("workspace", q)[1]
    generic = emu.query_rows("workspace", q.replace("| summarize", "| where _BilledSize > 0 | summarize"))[1]
    assert fast == sorted(generic) and len(fast) == 12
    assert sum(n for _, n, _ in fast) == len(stored) and sum(b for _, _, b in fast) == sum(stored)
    (_, [[n, b]]) = emu.query_rows("workspace", "AppRequests | summarize count(), sum(_BilledSize)")
    assert (n, b) == (len(stored), sum(stored))


def test_bin_is_anchored_at_kusto_epoch_not_unix_epoch() -> None:
    """7m does not divide a day: bins start at multiples of 7m since 0001-01-01 like Kusto."""
    emu = Emulator(EmulatorConfig(), clock=SettableClock(NOW))
    emu.add_rows("requests", [{"timestamp": "2026-11-02T10:00:00Z"}])
    (_, [[start, count]]) = emu.query_rows("app", "requests | summarize count() by bin(timestamp, 7m)")
    origin = datetime(1, 1, 1, tzinfo=UTC)
    span = timedelta(minutes=7)
    expected = origin + ((T10 - origin) // span) * span
    assert (parse_datetime(start), count) == (to_ticks(expected), 1)


def test_tokenizer_reads_timespans_and_datetimes() -> None:
    toks = tokenize("bin(timestamp, 1.5h) 100ms 2d 10tick datetime( 2026-11-02 )")
    spans = [t.value for t in toks if t.kind == "timespan"]
    assert spans == [54_000_000_000, 1_000_000, 1_728_000_000_000, 10]
    assert [t.value for t in toks if t.kind == "datetime"] == [parse_datetime("2026-11-02T00:00:00Z")]


def test_parse_shapes_the_engine_query() -> None:
    q = parse(f"{W}\n| summarize count() by bin(timestamp, 60s)")
    assert q.table == "requests" and [type(s).__name__ for s in q.stages] == ["Where", "Summarize"]


FORMAT_CASES = [
    ("whole-second", "2026-11-02T10:05:45Z", "2026-11-02T10:05:45Z"),
    ("millis", "2026-11-02T10:05:45.733Z", "2026-11-02T10:05:45.733Z"),
    ("trailing-zeros-trimmed", "2026-11-02T10:05:45.7330000Z", "2026-11-02T10:05:45.733Z"),
    ("seven-digits", "2026-11-02T10:05:45.1234567Z", "2026-11-02T10:05:45.1234567Z"),
    ("no-zone-is-utc", "2026-11-02T10:05:45", "2026-11-02T10:05:45Z"),
    ("negative-offset", "2026-11-02T05:05:45-05:00", "2026-11-02T10:05:45Z"),
    ("before-epoch", "1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.5Z"),
]


@pytest.mark.parametrize(("text", "wire"), [c[1:] for c in FORMAT_CASES], ids=[c[0] for c in FORMAT_CASES])
def test_datetime_round_trip(text: str, wire: str) -> None:
    assert format_ticks(parse_datetime(text)) == wire


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT1H", 3600), ("P1D", 86400), ("PT3600.0S", 3600), ("PT1M30S", 90), ("P1W", 604800), ("PT0.5S", 0.5)],
    ids=["hour", "day", "sdk-seconds", "min-sec", "week", "fraction"],
)
def test_iso_durations(text: str, seconds: float) -> None:
    assert parse_iso_duration(text) == int(seconds * 10_000_000)


@pytest.mark.parametrize("text", ["P1M", "P1Y", "1h", "P", "PT", "nonsense/PT1H"], ids=str)
def test_invalid_timespans(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timespan_param(text, 0)


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError):
        to_ticks(datetime(2026, 11, 2))  # naive: the point of the test


def test_result_cells_are_json_cells(emu: Emulator) -> None:
    result = emu.execute("app", "requests | where id == 'r2'")
    row = orjson.loads(result.rows[0])
    cells = dict(zip([c.name for c in result.columns], row, strict=True))
    assert cells["timestamp"] == "2026-11-02T10:15:30.1234567Z"
    assert cells["success"] == "False" and cells["duration"] == 250.0 and cells["itemCount"] == 1
    assert cells["customDimensions"] == '{"k":"r2"}' and cells["customMeasurements"] is None
    assert cells["operation_SyntheticSource"] == "" and cells["itemType"] == "request"
