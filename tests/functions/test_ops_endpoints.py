"""``/api/estimate`` and ``/api/verify`` through the decorated functions (real ``HttpRequest``), and the
daily verification timer that exists only when ``MOVER_VERIFY_SCHEDULE`` is set."""

from __future__ import annotations

import importlib.util
import json
from datetime import timedelta
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient

from devtools.funchost import index_app
from shared.frontends import http as api
from shared.model import Window, format_ts
from tests.conftest import T0, H, blob_names, query_pipeline

NOW = T0 + 6 * H + timedelta(minutes=10)


def call(fn, method="GET", params=None, body=b""):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = func.HttpRequest(method=method, url="http://localhost/api/x", headers={}, params=params or {},
                           route_params={}, body=raw)  # fmt: skip
    resp = fn.call(req)
    return resp.status_code, json.loads(resp.get_body())


@pytest.fixture()
def engine(emulator, make_engine, unique):
    pipe = query_pipeline("requests", "requests", emulator, f"out-{unique}", window={"end": format_ts(T0 + 6 * H)})
    engine = make_engine([pipe], now=NOW)
    api.reset_engine(engine)
    return engine


def test_estimate_endpoint_answers_the_emulators_truth(functions, engine, emulator):
    status, body = call(functions.http["estimate"], params={"pipeline": "requests", "end": "2026-11-02T03:00:00Z"})
    assert status == 200, body
    assert body["totals"]["windows"] == 3
    assert body["totals"]["rows"] == emulator.expected_count("requests", T0, T0 + 3 * H)
    assert list(engine.ledger.states("requests")) == []


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({}, 400, "'pipeline' is required"),
        ({"pipeline": "nope"}, 404, "unknown pipeline"),
        ({"pipeline": "requests", "start": "yesterday"}, 400, "ISO 8601"),
        ({"pipeline": "requests", "start": "2026-11-02T03:00:00Z", "end": "2026-11-02T01:00:00Z"}, 400, "after"),
        ({"pipeline": "requests", "start": "2024-01-01T00:00:00Z"}, 400, "at most 400"),
        ({"pipeline": "requests", "start": "2027-01-01T00:00:00Z"}, 400, "no closed window"),
        ({"pipeline": "requests", "query": "x"}, 400, "unknown parameter"),
    ],
    ids=["no-pipeline", "unknown-pipeline", "bad-date", "reversed", "too-large", "future", "unknown-param"],
)
@pytest.mark.parametrize("route", ["estimate", "verify"])
def test_bad_requests_get_a_reason(functions, engine, route, params, status, fragment):
    got, body = call(functions.http[route], params=params)
    assert got == status and fragment in body["error"], body


def test_verify_get_reads_and_post_repairs(functions, engine, storage_conn, unique):
    engine.tick()
    fn = functions.http["verify"]
    status, body = call(fn, params={"pipeline": "requests", "windows": "all"})
    assert status == 200 and body["ok"] and body["checked"] == 6 and len(body["windows"]) == 6
    sink = f"out-{unique}"
    victim = next(n for n in blob_names(storage_conn, sink) if n.endswith("20261102T020000Z.jsonl.gz"))
    BlobServiceClient.from_connection_string(storage_conn).get_blob_client(sink, victim).delete_blob()
    status, body = call(fn, params={"pipeline": "requests", "repair": "true"})
    assert status == 405 and "POST" in body["error"]
    status, body = call(fn, params={"pipeline": "requests"})
    assert status == 200 and not body["ok"] and body["counts"]["missing"] == 1 and body["repaired"] == 0
    status, body = call(fn, "POST", body={"pipeline": "requests", "repair": True})
    assert status == 200 and body["repaired"] == 1
    assert engine.ledger.get("requests", Window(T0 + 2 * H, T0 + 3 * H)).status == "pending"
    assert call(fn, "POST", body=b"{nope")[0] == 400
    assert call(fn, "POST", body={"pipeline": "requests", "repair": "maybe"})[0] == 400


def test_daily_verify_timer_exists_only_when_scheduled(functions, engine, monkeypatch, storage_conn, unique):
    assert "mover_verify" not in functions.timers
    monkeypatch.setenv("MOVER_VERIFY_SCHEDULE", "0 30 3 * * *")
    path = Path(__file__).resolve().parents[2] / "function_app.py"
    spec = importlib.util.spec_from_file_location("function_app_with_verify", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    timers = index_app(module.app).timers
    assert timers["mover_verify"].schedule == "0 30 3 * * *"
    engine.tick()
    sink = f"out-{unique}"
    victim = next(n for n in blob_names(storage_conn, sink) if n.endswith("20261102T040000Z.jsonl.gz"))
    BlobServiceClient.from_connection_string(storage_conn).get_blob_client(sink, victim).delete_blob()
    timers["mover_verify"].call(TimerRequest())
    assert engine.ledger.get("requests", Window(T0 + 4 * H, T0 + 5 * H)).status == "pending"  # queued for replay
    [entry] = engine.status()["pipelines"]
    assert (entry["verified"]["checked"], entry["verified"]["complete"]) == (6, 5)
