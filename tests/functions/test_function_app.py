"""The decorated functions, invoked the way the host does: real TimerRequest / HttpRequest objects."""

from __future__ import annotations

import json
from datetime import timedelta

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared.frontends import http as api
from shared.model import Window
from tests.conftest import T0, H, blob_names, query_pipeline, read_jsonl_gz

NOW = T0 + 6 * H + timedelta(minutes=10)


def post(fn, body, params=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = func.HttpRequest(
        method="POST",
        url="http://localhost/api/replay",
        headers={"Content-Type": "application/json"},
        params=params or {},
        route_params={},
        body=raw,
    )
    return fn.call(req)


def get(fn, params=None):
    req = func.HttpRequest(
        method="GET", url="http://localhost/api/status", headers={}, params=params or {}, route_params={}, body=b""
    )
    return fn.call(req)


@pytest.fixture()
def engine(emulator, make_engine, unique):
    engine = make_engine(
        [query_pipeline("requests", "requests", emulator, f"out-{unique}", window={"max_per_tick": 3})], now=NOW
    )
    api.reset_engine(engine)
    return engine


def test_app_indexes_timer_and_http_triggers(functions):
    assert set(functions.timers) == {"mover_tick"}
    timer = functions.timers["mover_tick"]
    assert timer.schedule == "0 */5 * * * *" and timer.run_on_startup is False
    assert set(functions.http) == {"replay", "status", "estimate", "verify"}
    assert functions.http["replay"].methods == ("POST",)
    assert functions.http["estimate"].methods == ("GET",)
    assert functions.http["verify"].methods == ("GET", "POST")
    assert functions.http["status"].methods == ("GET",)
    assert {f.auth_level for f in functions.http.values()} == {"FUNCTION"}


def test_timer_moves_due_windows(functions, engine, storage_conn, unique):
    functions.timers["mover_tick"].call(TimerRequest(past_due=True))
    states = list(engine.ledger.states("requests"))
    assert [(s.window.start, s.status) for s in states] == [(T0 + i * H, "done") for i in range(3)]  # max_per_tick 3
    names = [n for n in blob_names(storage_conn, f"out-{unique}") if n.endswith(".jsonl.gz")]
    assert len(names) == 3
    assert sum(len(read_jsonl_gz(storage_conn, f"out-{unique}", n)) for n in names) == sum(s.rows for s in states) > 0


def test_replay_inline_reruns_windows(functions, engine):
    resp = post(
        functions.http["replay"],
        {"pipeline": "requests", "start": "2026-11-02T01:00:00Z", "end": "2026-11-02T03:00:00Z"},
    )
    body = json.loads(resp.get_body())
    assert resp.status_code == 200, body
    assert body["mode"] == "inline" and body["windows"] == 2
    assert [r["outcome"] for r in body["results"]] == ["done", "done"]
    assert engine.ledger.get("requests", Window(T0 + H, T0 + 2 * H)).status == "done"


def test_replay_widens_to_whole_windows_and_queues_large_ranges(functions, engine):
    resp = post(
        functions.http["replay"],
        {"pipeline": "requests", "start": "2026-11-02T00:30:00Z", "end": "2026-11-02T05:10:00Z", "mode": "queue"},
    )
    body = json.loads(resp.get_body())
    assert resp.status_code == 202, body
    assert (body["first"], body["last_end"], body["queued"]) == ("2026-11-02T00:00:00Z", "2026-11-02T06:00:00Z", 6)
    assert [s.status for s in engine.ledger.states("requests")] == ["pending"] * 6
    report = engine.tick()
    assert [r.window.start for r in report.results] == [T0, T0 + H, T0 + 2 * H]  # queued windows run oldest first


def test_replay_accepts_query_string(functions, engine):
    resp = post(
        functions.http["replay"],
        b"",
        {"pipeline": "requests", "start": "2026-11-02T00:00:00Z", "end": "2026-11-02T01:00:00Z"},
    )
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        ({"start": "2026-11-02T00:00:00Z", "end": "2026-11-02T01:00:00Z"}, 400, "'pipeline' is required"),
        (
            {"pipeline": "requests", "start": 5, "end": "2026-11-02T01:00:00Z"},
            400,
            "'start' is required and must be a string",
        ),
        ({"pipeline": "requests", "start": "yesterday", "end": "2026-11-02T01:00:00Z"}, 400, "ISO 8601"),
        ({"pipeline": "requests", "start": "2026-11-02T00:00:00", "end": "2026-11-02T01:00:00Z"}, 400, "UTC offset"),
        (
            {"pipeline": "requests", "start": "2026-11-02T03:00:00Z", "end": "2026-11-02T01:00:00Z"},
            400,
            "'end' must be after 'start'",
        ),
        (
            {"pipeline": "requests", "start": "2020-01-01T00:00:00Z", "end": "2026-11-02T01:00:00Z"},
            400,
            "before the pipeline's window start 2026-11-02T00:00:00Z",
        ),
        (
            {"pipeline": "requests", "start": "2026-11-02T05:00:00Z", "end": "2026-11-02T07:00:00Z"},
            400,
            "not closed yet",
        ),
        ({"pipeline": "nope", "start": "2026-11-02T00:00:00Z", "end": "2026-11-02T01:00:00Z"}, 404, "unknown pipeline"),
        (
            {"pipeline": "requests", "start": "2026-11-02T00:00:00Z) | take 1 //", "end": "2026-11-02T01:00:00Z"},
            400,
            "ISO 8601",
        ),
        (
            {"pipeline": "requests | take 1", "start": "2026-11-02T00:00:00Z", "end": "2026-11-02T01:00:00Z"},
            404,
            "unknown pipeline",
        ),
        (
            {
                "pipeline": "requests",
                "start": "2026-11-02T00:00:00Z",
                "end": "2026-11-02T01:00:00Z",
                "query": "requests | take 1",
            },
            400,
            "unknown field(s) 'query'",
        ),
        (
            {"pipeline": "requests", "start": "2026-11-02T00:00:00Z", "end": "2026-11-02T01:00:00Z", "mode": "now"},
            400,
            "'mode' must be",
        ),
        (b"x" * 20000, 413, "over"),
    ],
    ids=[
        "bad-json",
        "not-object",
        "no-pipeline",
        "start-not-string",
        "start-words",
        "naive",
        "reversed",
        "before-start",
        "open-window",
        "unknown-pipeline",
        "kql-in-start",
        "kql-in-pipeline",
        "extra-field",
        "bad-mode",
        "too-big",
    ],
)
def test_replay_rejects_bad_input_with_reason(functions, engine, body, status, fragment):
    resp = post(functions.http["replay"], body)
    assert resp.status_code == status
    assert fragment in json.loads(resp.get_body())["error"]
    assert list(engine.ledger.states("requests")) == []  # nothing ran


def test_status_json_and_page(functions, engine):
    engine.tick()
    resp = get(functions.http["status"])
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    report = json.loads(resp.get_body())
    (p,) = report["pipelines"]
    assert p["pipeline"] == "requests"
    assert p["counts"] == {"done": 3, "running": 0, "queued": 0, "pending": 0, "failed": 0, "missing": 3}
    assert p["watermark"] == "2026-11-02T03:00:00Z"
    assert p["missing"] == 3  # due until 06:00, three done
    assert p["lag_seconds"] == 3 * 3600
    assert [w["start"] for w in p["recent"]] == ["2026-11-02T02:00:00Z", "2026-11-02T01:00:00Z", "2026-11-02T00:00:00Z"]
    page = get(functions.http["status"], {"format": "html"})
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b"<section class='pipeline' data-pipeline='requests'" in page.get_body()
    assert get(functions.http["status"], {"format": "xml"}).status_code == 400
    assert get(functions.http["status"], {"recent": "0"}).status_code == 400


def test_invalid_configuration_answers_503_with_problems(functions, monkeypatch):
    monkeypatch.setenv("MOVER_PIPELINES", '{"pipelines": [{"name": "x"}]}')
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    api.reset_engine(None)
    resp = get(functions.http["status"])
    assert resp.status_code == 503
    problems = json.loads(resp.get_body())["problems"]
    assert any("pipeline 'x'" in p for p in problems)
