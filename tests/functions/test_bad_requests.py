"""Requests that used to 5xx or poison the ledger: each is a 4xx with a reason, and the app stays healthy."""

from __future__ import annotations

import json

import pytest

from shared.frontends import http as api
from tests.conftest import query_pipeline
from tests.functions.test_function_app import NOW, get, post


@pytest.fixture()
def engine(emulator, make_engine, unique):
    engine = make_engine([query_pipeline("requests", "requests", emulator, f"out-{unique}")], now=NOW)
    api.reset_engine(engine)
    return engine


@pytest.mark.parametrize(
    ("start", "end", "fragment"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:05:00Z", "before the pipeline's window start"),
        ("0001-01-01T00:00:00+01:00", "2026-11-02T01:00:00Z", "outside the supported range"),
        ("2026-11-02T00:00:00Z", "9999-12-31T23:59:59-01:00", "outside the supported range"),
        ("2026-11-02T00:00:00Z", "9999-12-31T23:59:59Z", "not closed yet"),
        ("1900-01-01T00:00:00Z", "1900-01-01T01:00:00Z", "before the pipeline's window start"),
        ("2020-01-01T00:00:00Z", "2020-01-01T01:00:00Z", "before the pipeline's window start"),
    ],
    ids=["year-1", "year-0-in-utc", "past-9999-in-utc", "align-past-9999", "1900", "2020"],
)
def test_calendar_edges_and_ranges_before_start_are_refused_and_change_nothing(functions, engine, start, end, fragment):
    resp = post(functions.http["replay"], {"pipeline": "requests", "start": start, "end": end})
    body = json.loads(resp.get_body())
    assert resp.status_code == 400, body
    assert fragment in body["error"]
    assert list(engine.ledger.states("requests")) == []  # nothing written
    status = get(functions.http["status"])
    assert status.status_code == 200 and json.loads(status.get_body())["errors"] == {}
    assert engine.tick().errors == {}  # every pipeline still ticks


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"recent": "²"}, "'recent' must be a whole number from 1 to 500; got '²'"),
        ({"recent": "١٠"}, "'recent' must be a whole number"),
        ({"recent": "99999999999999999999"}, "'recent' must be a whole number"),
        ({"format": "HTML"}, "'format' must be json or html"),
    ],
)
def test_status_params_are_ascii_and_exact(functions, engine, params, fragment):
    resp = get(functions.http["status"], params)
    assert resp.status_code == 400
    assert fragment in json.loads(resp.get_body())["error"]


def test_function_key_in_the_query_string_is_not_a_field(functions, engine):
    params = {"code": "function-key", "pipeline": "requests", "start": "2026-11-02T00:00:00Z"}
    resp = post(functions.http["replay"], b"", params | {"end": "2026-11-02T01:00:00Z"})
    assert resp.status_code == 200, resp.get_body()
