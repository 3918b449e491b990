"""A replay that fails keeps the window's earlier good run visible, and the watermark where it was:
the earlier outputs are still in place until a new run commits."""

from __future__ import annotations

from shared.model import Window
from shared.ops.status_read import window_detail
from tests.conftest import T0, H, query_pipeline


def test_failed_replay_shows_the_last_good_run_and_keeps_the_watermark(emulator, make_engine, unique):
    window = {"end": "2026-11-02T03:00:00Z", "max_attempts": 1}
    good = make_engine([query_pipeline("requests", "requests", emulator, f"out-{unique}", window=window)])
    assert good.tick().done == 3
    before = good.ledger.get("requests", Window(T0 + H, T0 + 2 * H))
    broken = make_engine(
        [
            query_pipeline(
                "requests", "requests", emulator, f"out-{unique}", window=window, source={"app_id": "no-such-app"}
            )
        ],
        MOVER_LEDGER_TABLE=good.settings.ledger_table,
    )
    result = broken.replayer.replay(broken.settings.pipelines[0], T0 + H, T0 + 2 * H, mode="inline")
    assert [r.outcome for r in result.results] == ["failed"]

    report = good.status()["pipelines"][0]
    assert report["watermark"] == "2026-11-02T03:00:00Z"  # the earlier data never left
    (failed,) = report["failed"]
    assert failed["status"] == "failed" and "404" in failed["error"]
    assert failed["last_good"]["rows"] == before.rows > 0 and failed["landed"]
    record = window_detail("requests", good.ledger.get("requests", Window(T0 + H, T0 + 2 * H)), good.clock())
    assert record["last_good"]["outputs"] and all(  # the window's whole record names the files still in place
        o.endswith((".jsonl.gz", ".json")) for o in record["last_good"]["outputs"]
    )
