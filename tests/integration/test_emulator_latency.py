"""The emulator's per-query service time: held inside the concurrency gate, set at start or over
the control API, and summed in the stats (what the scale bench computes its ideal time from)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx

from devtools.ai_emulator import Emulator, EmulatorConfig

T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)


def _query(emu: Emulator, out: list[int]) -> None:
    body = {"query": "requests | take 40", "timespan": f"{T0.isoformat()}/{(T0 + timedelta(hours=1)).isoformat()}"}
    response = httpx.post(emu.app_query_url, json=body, headers={"x-api-key": "k"}, timeout=30)
    out.append(response.status_code)


def test_latency_holds_the_slot_and_is_counted():
    emu = Emulator(EmulatorConfig(app_id="lat", api_key="k", max_concurrent=1, latency_ms=400)).start()
    try:
        emu.clock.set(T0 + timedelta(days=1))  # type: ignore[attr-defined]
        emu.generate("requests", T0, T0 + timedelta(hours=1), count=40, seed=3)
        httpx.post(f"{emu.url}/_emulator/config", json={"latency_per_1k_rows_ms": 1000}).raise_for_status()
        first = threading.Thread(target=_query, args=(emu, statuses := []))
        first.start()
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while emu.gate.active == 0 and datetime.now(UTC) < deadline:  # the first query is inside its latency
            threading.Event().wait(0.01)
        _query(emu, statuses)  # the cap is 1: a second query meanwhile is refused, not queued
        first.join()
        stats = emu.stats
        assert sorted(statuses) == [200, 429]
        assert stats.peak_concurrency == 1
        assert stats.latency_ms_total == 440  # 400 ms + 40 rows at 1 s per 1,000 rows
        assert emu.config.public()["latency_per_1k_rows_ms"] == 1000.0
    finally:
        emu.stop()


def test_latency_settings_are_checked():
    emu = Emulator(EmulatorConfig(app_id="lat")).start()
    try:
        bad = httpx.post(f"{emu.url}/_emulator/config", json={"latency_ms": -1})
        assert bad.status_code == 400
        assert "latency_ms" in bad.json()["error"]["message"]
        assert emu.config.latency_ms == 0.0
    finally:
        emu.stop()
