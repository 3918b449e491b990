"""The query API emulator over real HTTP: wire format, auth, errors, limits, throttling,
faults, exact window counts, bins, late data, the control API and the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.ai_emulator import Emulator, EmulatorConfig, SettableClock, fetch_window
from devtools.ai_emulator.timeutil import parse_datetime, to_ticks

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "query-api"
ROOT = Path(__file__).resolve().parents[2]
APP, WS, KEY, TOKEN = "emu-app", "emu-ws", "emu-key", "emu-token"
T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
H = timedelta(hours=1)
NOW = T0 + 3 * H
DT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$")


def sample(name: str) -> dict[str, Any]:
    path = SAMPLES / name
    if not path.exists():
        pytest.fail(f"sample {path} is missing (the emulator's wire tests read tests/samples)")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def window_query(table: str, start: datetime, end: datetime, column: str = "timestamp") -> str:
    """Exactly the shape the engine sends."""
    return f"{table}\n| where {column} >= datetime({ts(start)}) and {column} < datetime({ts(end)})"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    emulator = Emulator(EmulatorConfig(app_id=APP, workspace_id=WS, api_key=KEY, token=TOKEN), clock=SettableClock(NOW))
    emulator.start()
    emulator.generate("requests", T0, T0 + 2 * H, 3000, seed=1)
    emulator.generate("dependencies", T0, T0 + 2 * H, 1000, seed=2)
    emulator.generate("traces", T0, T0 + 2 * H, 800, seed=3)
    yield emulator
    emulator.stop()


@pytest.fixture()
def client(emu: Emulator) -> Iterator[httpx.Client]:
    """A keep-alive client; afterwards the emulator's limits, faults and clock are restored."""
    with httpx.Client(base_url=emu.url, headers={"x-api-key": KEY}, timeout=30) as c:
        yield c
    emu.faults.clear()
    emu.config.max_rows, emu.config.max_bytes = 500_000, 64 * 2**20
    emu.config.rate_limit, emu.config.max_concurrent = None, 5
    emu.clock = SettableClock(NOW)


def post(client: httpx.Client, query: str, timespan: str | None = None, path: str = f"/v1/apps/{APP}/query",
         **kw: Any) -> httpx.Response:  # fmt: skip
    return client.post(path, json={"query": query, "timespan": timespan}, **kw)


def table_of(resp: httpx.Response) -> tuple[list[str], list[list[Any]]]:
    body = resp.json()
    t = body["tables"][0]
    return [c["name"] for c in t["columns"]], t["rows"]


# --- wire format -------------------------------------------------------------------------


def test_window_query_wire_format_matches_the_sample(emu: Emulator, client: httpx.Client) -> None:
    start, end = T0 + timedelta(minutes=10), T0 + timedelta(minutes=40)
    resp = post(client, window_query("requests", start, end), f"{ts(start)}/{ts(end)}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    body = resp.json()
    assert list(body) == ["tables"] and len(body["tables"]) == 1
    table = body["tables"][0]
    assert list(table) == ["name", "columns", "rows"] and table["name"] == "PrimaryResult"
    assert table["columns"] == sample("requests-response.json")["tables"][0]["columns"]
    names = [c["name"] for c in table["columns"]]
    expected = emu.expected("requests", start, end)
    assert [dict(zip(names, r, strict=True)) for r in table["rows"]] == expected
    assert 600 < len(expected) < 900
    for row in expected:
        assert DT_RE.match(row["timestamp"]) and to_ticks(start) <= parse_datetime(row["timestamp"]) < to_ticks(end)
        assert row["success"] in ("True", "False") and isinstance(row["itemCount"], int)
        assert isinstance(row["duration"], float) and isinstance(row["customDimensions"], str)
        assert json.loads(row["customDimensions"])["tenant"]


def test_get_route_returns_the_same_as_post(client: httpx.Client) -> None:
    q = window_query("traces", T0, T0 + H)
    got = client.get(f"/v1/apps/{APP}/query", params={"query": q, "timespan": "P1D"})
    assert got.status_code == 200 and got.json() == post(client, q, "P1D").json()


def test_workspace_route_serves_the_same_telemetry(emu: Emulator, client: httpx.Client) -> None:
    start, end = T0, T0 + H
    classic = table_of(post(client, window_query("requests", start, end)))
    resp = post(client, window_query("AppRequests", start, end, "TimeGenerated"), path=f"/v1/workspaces/{WS}/query")
    assert resp.status_code == 200
    names, rows = table_of(resp)
    ws = [dict(zip(names, r, strict=True)) for r in rows]
    cl = [dict(zip(classic[0], r, strict=True)) for r in classic[1]]
    assert len(ws) == len(cl) > 0
    assert [r["_ItemId"] for r in ws] == [r["itemId"] for r in cl]
    assert [r["TimeGenerated"] for r in ws] == [r["timestamp"] for r in cl]
    assert [r["Success"] for r in ws] == [r["success"] == "True" for r in cl]
    assert [r["DurationMs"] for r in ws] == [r["duration"] for r in cl]
    assert [r["Properties"] for r in ws] == [r["customDimensions"] for r in cl]
    assert {r["TenantId"] for r in ws} == {WS}
    assert ws == emu.expected("AppRequests", start, end)


# --- auth and routing ----------------------------------------------------------------------


def test_missing_auth_is_401(emu: Emulator) -> None:
    resp = httpx.post(f"{emu.app_query_url}", json={"query": "requests | take 1"})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "AuthorizationRequiredError"
    assert resp.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["wrong-key", "wrong-token", "wrong-scheme"],
)
def test_wrong_credentials_are_403_like_the_sample(emu: Emulator, headers: dict[str, str]) -> None:
    resp = httpx.post(emu.app_query_url, json={"query": "requests | take 1"}, headers=headers)
    assert resp.status_code == 403
    assert resp.json() == sample("forbidden-403.json")


@pytest.mark.parametrize(
    "headers", [{"x-api-key": KEY}, {"Authorization": f"Bearer {TOKEN}"}], ids=["api-key", "bearer"]
)
def test_both_auth_modes_work(emu: Emulator, headers: dict[str, str]) -> None:
    query = f"{window_query('requests', T0, T0 + 2 * H)}\n| summarize count()"
    resp = httpx.post(emu.app_query_url, json={"query": query}, headers=headers)
    assert resp.status_code == 200 and resp.json()["tables"][0]["rows"] == [[3000]]


@pytest.mark.parametrize(
    "path",
    ["/v1/apps/other-app/query", f"/v1/workspaces/{APP}/query", f"/v1/apps/{APP}/metrics", "/v2/apps/x/query", "/"],
    ids=["unknown-app", "unknown-workspace", "unknown-operation", "unknown-version", "root"],
)
def test_unknown_paths_are_404(client: httpx.Client, path: str) -> None:
    resp = post(client, "requests | take 1", path=path)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "PathNotFoundError"
    assert "innererror" in resp.json()["error"]


# --- 400s ----------------------------------------------------------------------------------


def test_unparsable_query_is_400_syntax_error(client: httpx.Client) -> None:
    resp = post(client, "requests | wher timestamp > ago(1h)")
    assert resp.status_code == 400
    error = resp.json()["error"]
    expected = sample("bad-argument-400.json")["error"]
    assert (error["code"], error["message"]) == (expected["code"], expected["message"])
    assert {k: error["innererror"][k] for k in ("code", "message")} == expected["innererror"]
    assert error["innererror"]["innererror"]["token"] == "wher"


@pytest.mark.parametrize(
    "query", ["Requests | take 1", "requests | where nosuch == 1", "requests | where success == true"],
    ids=["table-case", "unknown-column", "type-mismatch"],
)  # fmt: skip
def test_unknown_names_are_400_semantic_error(client: httpx.Client, query: str) -> None:
    resp = post(client, query)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "BadArgumentError"
    assert resp.json()["error"]["innererror"]["code"] == "SemanticError"


@pytest.mark.parametrize(
    ("body", "inner"),
    [(b"{not json", "InvalidRequestBody"), (b'{"timespan": "PT1H"}', "QueryValidationError"),
     (b'{"query": "requests", "timespan": "yesterday"}', "InvalidTimespan"), (b"[]", "InvalidRequestBody")],
    ids=["bad-json", "no-query", "bad-timespan", "not-an-object"],
)  # fmt: skip
def test_bad_requests_are_400(client: httpx.Client, body: bytes, inner: str) -> None:
    resp = client.post(f"/v1/apps/{APP}/query", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["innererror"]["code"] == inner


# --- limits --------------------------------------------------------------------------------


def test_row_limit_gives_http_200_partial_error_like_the_sample(emu: Emulator, client: httpx.Client) -> None:
    emu.config.max_rows = 25
    resp = post(client, window_query("requests", T0, T0 + H))
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == ["tables", "error"]
    assert len(body["tables"][0]["rows"]) == 25
    expected = sample("partial-result-200.json")["error"]
    assert body["error"]["code"] == "PartialError" == expected["code"]
    detail, want = body["error"]["details"][0], expected["details"][0]
    assert {k: detail[k] for k in ("code", "message")} == {k: want[k] for k in ("code", "message")}
    assert detail["innererror"]["code"] == want["innererror"]["code"]
    assert detail["innererror"]["message"] == want["innererror"]["message"].replace("500000", "25")
    assert emu.stats.partials >= 1


def test_byte_limit_gives_partial_error(emu: Emulator, client: httpx.Client) -> None:
    emu.config.max_bytes = 50_000
    resp = post(client, window_query("requests", T0, T0 + H))
    assert resp.status_code == 200 and len(resp.content) <= 52_000
    body = resp.json()
    assert body["error"]["code"] == "PartialError"
    assert "data size limit 50000" in body["error"]["details"][0]["innererror"]["message"]
    assert 0 < len(body["tables"][0]["rows"]) < emu.expected_count("requests", T0, T0 + H)


def test_a_result_at_the_limit_is_complete(emu: Emulator, client: httpx.Client) -> None:
    n = emu.expected_count("requests", T0, T0 + H)
    emu.config.max_rows = n
    body = post(client, window_query("requests", T0, T0 + H)).json()
    assert "error" not in body and len(body["tables"][0]["rows"]) == n


# --- throttling and faults -------------------------------------------------------------------


def test_injected_429_has_retry_after_like_the_sample(emu: Emulator, client: httpx.Client) -> None:
    emu.faults.push(status=429, retry_after=3, count=2)
    before = emu.stats.throttled
    for _ in range(2):
        resp = post(client, "requests | take 1")
        assert resp.status_code == 429 and resp.headers["retry-after"] == "3"
        assert resp.json() == sample("throttled-429.json")
    assert post(client, "requests | take 1").status_code == 200
    assert emu.stats.throttled - before == 2


def test_rate_limit_per_identity(emu: Emulator, client: httpx.Client) -> None:
    emu.reset_stats()
    emu.config.rate_limit = 3
    codes = [post(client, "requests | take 1").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    blocked = post(client, "requests | take 1")
    assert 1 <= int(blocked.headers["retry-after"]) <= 30
    other = post(client, "requests | take 1", headers={"x-api-key": "", "Authorization": f"Bearer {TOKEN}"})
    assert other.status_code == 200  # another identity has its own budget


def test_concurrency_limit_answers_429_while_a_query_runs(emu: Emulator, client: httpx.Client) -> None:
    emu.config.max_concurrent = 1
    emu.faults.push("delay", delay=1.0)
    results: list[int] = []

    def slow_query() -> None:
        with httpx.Client(base_url=emu.url, headers={"x-api-key": KEY}) as other:
            results.append(post(other, "requests | take 1").status_code)

    slow = threading.Thread(target=slow_query)
    slow.start()
    deadline = time.monotonic() + 10
    while emu.gate.active == 0:
        assert time.monotonic() < deadline, "the slow query never started"
        time.sleep(0.01)
    resp = post(client, "requests | take 1")
    slow.join(timeout=10)
    assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
    assert results == [200]


@pytest.mark.parametrize(
    ("status", "code"), [(503, "ServiceUnavailableError"), (504, "GatewayTimeout"), (500, "InternalServerError")],
    ids=["503", "504", "500"],
)  # fmt: skip
def test_injected_server_errors(emu: Emulator, client: httpx.Client, status: int, code: str) -> None:
    emu.faults.push(status)
    resp = post(client, "requests | take 1")
    assert resp.status_code == status and resp.json()["error"]["code"] == code
    assert "innererror" in resp.json()["error"]
    assert post(client, "requests | take 1").status_code == 200


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_connection_faults_break_the_transport(emu: Emulator, client: httpx.Client, kind: str) -> None:
    emu.faults.push(kind)
    before = emu.stats.resets
    with pytest.raises(httpx.TransportError):
        post(client, window_query("requests", T0, T0 + H))
    assert emu.stats.resets == before + 1
    assert post(client, "requests | take 1").status_code == 200  # a new connection works


def test_forced_partial(emu: Emulator, client: httpx.Client) -> None:
    emu.faults.push("partial")
    n = emu.expected_count("requests", T0, T0 + H)
    body = post(client, window_query("requests", T0, T0 + H)).json()
    assert body["error"]["code"] == "PartialError" and len(body["tables"][0]["rows"]) == n // 2


def test_a_scoped_fault_follows_one_window_of_one_table_until_lifted(emu: Emulator, client: httpx.Client) -> None:
    scope = {"status": "overflow", "table": "requests", "start": ts(T0 + H), "end": ts(T0 + 2 * H)}
    assert client.post("/_emulator/faults", json={"scoped": [scope]}).json()["scoped"][0]["table"] == "requests"
    before = emu.stats.overflows
    inside = post(client, window_query("requests", T0 + H, T0 + 2 * H), f"{ts(T0 + H)}/{ts(T0 + 2 * H)}").json()
    assert inside["error"]["code"] == "PartialError" and "E_OVERFLOW" in str(inside["error"])
    quarter = f"{ts(T0 + H + timedelta(minutes=15))}/{ts(T0 + H + timedelta(minutes=30))}"
    assert "error" in post(client, "requests | count", quarter).json()  # any query overlapping it, every time
    assert "error" not in post(client, window_query("requests", T0, T0 + H), f"{ts(T0)}/{ts(T0 + H)}").json()
    span = f"{ts(T0 + H)}/{ts(T0 + 2 * H)}"
    assert "error" not in post(client, window_query("traces", T0 + H, T0 + 2 * H), span).json()
    assert emu.stats.overflows == before + 2
    assert client.post("/_emulator/faults", json={"scoped": []}).json()["scoped"] == []
    assert "error" not in post(client, window_query("requests", T0 + H, T0 + 2 * H), span).json()
    bad = {"scoped": [scope | {"status": "reset"}]}
    assert client.post("/_emulator/faults", json=bad).status_code == 400


def test_faults_do_not_hit_auth_failures(emu: Emulator, client: httpx.Client) -> None:
    emu.faults.push(503)
    assert post(client, "requests | take 1", headers={"x-api-key": "wrong"}).status_code == 403
    assert post(client, "requests | take 1").status_code == 503


# --- exact answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("minutes", [1, 5, 10, 60], ids=lambda m: f"{m}m-windows")
def test_window_counts_are_exact_and_tile(emu: Emulator, client: httpx.Client, minutes: int) -> None:
    step = timedelta(minutes=minutes)
    total = 0
    for i in range(int(2 * H / step)):
        start = T0 + i * step
        body = post(client, f"{window_query('requests', start, start + step)}\n| summarize count()").json()
        [[count]] = body["tables"][0]["rows"]
        assert count == emu.expected_count("requests", start, start + step)
        total += count
    assert total == 3000


def test_summarize_by_bin_as_the_engine_sends_it(emu: Emulator, client: httpx.Client) -> None:
    q = f"{window_query('dependencies', T0, T0 + 2 * H)}\n| summarize count() by bin(timestamp, 60s)"
    resp = post(client, q, f"{ts(T0)}/{ts(T0 + 2 * H)}")
    table = resp.json()["tables"][0]
    assert table["columns"] == [{"name": "timestamp", "type": "datetime"}, {"name": "count_", "type": "long"}]
    assert sum(c for _, c in table["rows"]) == 1000
    for bin_start, count in table["rows"]:
        start = datetime.fromisoformat(bin_start.replace("Z", "+00:00"))
        assert count == emu.expected_count("dependencies", start, start + timedelta(minutes=1)) > 0
    assert len(table["rows"]) == len({r["timestamp"][:16] for r in emu.expected("dependencies", T0, T0 + 2 * H)})


def test_late_rows_are_invisible_until_ingested(emu: Emulator, client: httpx.Client) -> None:
    clock = SettableClock(NOW)
    emu.clock = clock
    window = (T0 - 5 * H, T0 - 4 * H)  # a window with no other data
    late_at = NOW + timedelta(minutes=30)
    rows = [{"timestamp": window[0] + timedelta(minutes=i), "id": f"late-{i}", "name": "GET /late"} for i in range(5)]
    emu.add_rows("requests", rows, ingested_at=late_at)
    emu.add_rows("requests", [{"timestamp": window[0], "id": "on-time"}], ingested_at=window[0])
    q = window_query("requests", *window)
    assert [r[1] for r in table_of(post(client, q))[1]] == ["on-time"]
    assert [r["id"] for r in emu.expected("requests", *window)] == ["on-time"]
    ingest_q = (f"requests | where ingestion_time() >= datetime({ts(NOW)}) "
                f"and ingestion_time() < datetime({ts(NOW + H)})")  # fmt: skip
    assert table_of(post(client, ingest_q, "P7D"))[1] == []
    clock.set(late_at)
    assert len(table_of(post(client, q))[1]) == 6
    assert sorted(r[1] for r in table_of(post(client, ingest_q, "P7D"))[1]) == [f"late-{i}" for i in range(5)]
    assert len(emu.expected("requests", *window)) == 6


# --- control API, stats, bench, CLI ----------------------------------------------------------


def test_control_api_drives_a_fresh_emulator() -> None:
    with Emulator(EmulatorConfig(app_id="ctl", api_key=KEY)) as emu, httpx.Client(base_url=emu.url) as c:
        assert c.get("/_emulator/health").json()["app_id"] == "ctl"
        assert c.post("/_emulator/clock", json={"now": "2026-11-02T20:00:00Z"}).json()["now"] == "2026-11-02T20:00:00Z"
        gen = {"table": "requests", "start": "2026-11-02T10:00:00Z", "end": "2026-11-02T11:00:00Z", "count": 120,
               "seed": 9, "late_fraction": 0.0}  # fmt: skip
        assert c.post("/_emulator/generate", json=gen).json() == {"table": "requests", "rows": 120}
        rows = [{"timestamp": "2026-11-02T10:30:00Z", "id": "x1"}]
        assert c.post("/_emulator/rows", json={"table": "requests", "rows": rows}).json()["rows"] == 1
        params = {"table": "requests", "start": "2026-11-02T10:00:00Z", "end": "2026-11-02T11:00:00Z"}
        full = c.get("/_emulator/expected", params=params).json()
        assert full["count"] == 121 == len(full["rows"])
        assert c.get("/_emulator/expected", params=params | {"rows": "false"}).json() == {"table": "requests",
                                                                                          "count": 121}  # fmt: skip
        assert c.post("/_emulator/faults", json={"status": 429, "count": 1, "retry_after": 7}).status_code == 200
        assert c.get("/_emulator/faults").json()["pending"][0]["status"] == 429
        resp = c.post("/v1/apps/ctl/query", json={"query": "requests"}, headers={"x-api-key": KEY})
        assert resp.status_code == 429 and resp.headers["retry-after"] == "7"
        assert c.post("/_emulator/config", json={"max_rows": 10}).json()["max_rows"] == 10
        body = c.post("/v1/apps/ctl/query", json={"query": "requests"}, headers={"x-api-key": KEY}).json()
        assert body["error"]["code"] == "PartialError"
        stats = c.get("/_emulator/stats").json()
        assert (stats["requests"], stats["throttled"], stats["partials"]) == (2, 1, 1)
        assert stats["status_counts"] == {"429": 1, "200": 1}
        assert c.post("/_emulator/clock", json={"advance": 60}).json()["now"] == "2026-11-02T20:01:00Z"
        assert c.post("/_emulator/faults", json={"rates": {"503": 1.0}}).json()["rates"] == {"503": 1.0}
        assert c.post("/v1/apps/ctl/query", json={"query": "requests"}, headers={"x-api-key": KEY}).status_code == 503
        assert c.delete("/_emulator/faults").json() == {"pending": [], "rates": {}, "scoped": []}
        assert c.post("/_emulator/reset").json() == {"status": "reset"}
        assert c.get("/_emulator/health").json()["rows"]["requests"] == 0
        assert c.post("/_emulator/faults", json={"status": "boom"}).status_code == 400
        assert c.get("/_emulator/nope").status_code == 404


def test_stats_count_outcomes(emu: Emulator, client: httpx.Client) -> None:
    emu.reset_stats()
    post(client, "requests | take 2")
    post(client, "requests | wher")
    post(client, "requests | take 1", headers={"x-api-key": "bad"})
    s = emu.stats
    assert (s.requests, s.queries, s.bad_requests, s.auth_failures, s.errors, s.rows_returned) == (3, 1, 1, 1, 2, 2)
    assert s.status_counts == {200: 1, 400: 1, 403: 1} and s.bytes_returned > 0


def test_bench_fetch_reads_the_whole_window(emu: Emulator) -> None:
    result = fetch_window(emu.url, APP, T0, T0 + 2 * H, slices=12, concurrency=2, api_key=KEY)
    assert (result.rows, result.requests, result.partials) == (3000, 12, 0)
    assert result.mb_per_s > 0 and "rows/s" in str(result)


def test_cli_serves_until_sigterm() -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "devtools.ai_emulator", "--port", "0", "--app-id", "cli-app", "--api-key", "k",
           "--seed-history", "PT10M", "--rate", "20", "--late-fraction", "0", "--fault-rate-429", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        health = httpx.get(f"{url}/_emulator/health").json()
        assert health["app_id"] == "cli-app" and sum(health["rows"].values()) > 0
        now = parse_datetime(health["now"])
        assert now > 0
        resp = httpx.post(f"{url}/v1/apps/cli-app/query", json={"query": "requests | summarize count()"},
                          headers={"x-api-key": "k"})  # fmt: skip
        assert resp.status_code == 200 and resp.json()["tables"][0]["rows"][0][0] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
