"""An upstream error that echoes the credentials the engine sent reaches no ledger, log or page."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest
from azure.data.tables import TableClient

from shared.frontends import http as api
from shared.model import Window
from tests.conftest import T0, TOKEN, H, query_pipeline
from tests.functions.test_function_app import NOW, get, post

API_KEY = "test-key"  # the session emulator's key (tests/conftest.py)
SECRETS = (TOKEN, API_KEY, quote(f"Bearer {TOKEN}", safe=""))


@pytest.fixture()
def engine(emulator, make_engine, unique):
    keyed = query_pipeline(
        "keyed", "traces", emulator, f"keyed-{unique}", source={"auth": {"kind": "api_key", "setting": "TEST_KEY"}}
    )
    bearer = query_pipeline("bearer", "requests", emulator, f"bearer-{unique}")
    engine = make_engine([bearer, keyed], now=NOW, TEST_KEY=API_KEY)
    api.reset_engine(engine)
    yield engine
    emulator.faults.clear()


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_echoed_credentials_are_redacted_everywhere(functions, engine, emulator, storage_conn, caplog):
    window = {"start": "2026-11-02T00:00:00Z", "end": "2026-11-02T01:00:00Z"}
    caplog.set_level(logging.INFO)
    answers = []
    for name in ("bearer", "keyed"):
        emulator.faults.push("echo")
        resp = post(functions.http["replay"], {"pipeline": name, **window})
        answers.append(resp.get_body().decode())
        assert resp.status_code == 502, answers[-1]  # the move failed upstream
    assert emulator.faults.pending() == []  # both echoes were served

    table = TableClient.from_connection_string(storage_conn, engine.settings.ledger_table)
    stored = [e["LastError"] for e in table.list_entities() if e.get("Status") == "failed"]
    assert len(stored) == 2
    for error in stored:
        assert "[redacted]" in error and "bad request" in error  # the reason survives, the secret does not
        assert_no_secret(error)
    state = engine.ledger.get("keyed", Window(T0, T0 + H))
    assert state.status == "failed" and "x-api-key=[redacted]" in state.error

    page = get(functions.http["status"], {"format": "html"}).get_body().decode()
    report = get(functions.http["status"]).get_body().decode()
    assert "[redacted]" in page and "[redacted]" in report
    for text in (page, report, *answers):
        assert_no_secret(text)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "attempt 1 failed" in logged and "[redacted]" in logged
    assert_no_secret(logged)
    assert_no_secret(json.dumps(engine.status()))  # what the engine reports holds none either
