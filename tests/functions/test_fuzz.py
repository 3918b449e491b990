"""The bad-input suite, small: malformed requests over HTTP and malformed settings; the app stays healthy.

``make fuzz`` runs the full version (``devtools/fuzz.py``).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from devtools.fuzz import app_env, fuzz
from tests.conftest import APP_ID, TOKEN

REQUESTS, SETTINGS = 60, 30


def test_malformed_requests_and_settings_get_reasons_and_leave_the_app_healthy(
    functions, storage_conn, emulator, unique, monkeypatch
):
    now = datetime.now(UTC)
    start = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    emulator.generate("requests", start, now, count=300, seed=7)
    env = app_env(storage_conn, emulator.url, unique, start.strftime("%Y-%m-%dT%H:%M:%SZ"), app_id=APP_ID, token=TOKEN)
    for key in env:
        monkeypatch.setenv(key, os.environ.get(key, ""))  # restored after the test

    report = fuzz(functions, env, requests=REQUESTS, settings=SETTINGS, seed=11, now=now)

    print("FUZZ", report.summary())
    assert report.failures == []
    assert report.requests == REQUESTS and report.settings == SETTINGS
    assert sum(report.statuses.values()) == REQUESTS
    assert all(400 <= status < 500 for status in report.statuses)
