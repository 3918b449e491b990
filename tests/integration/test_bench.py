"""``make bench`` machinery in a small configuration: every scenario runs and its output is exact.

No timing is asserted (shared machines are noisy); only that each scenario moved every row,
the output blobs hold them, the BENCH line is complete, and a tick with nothing due makes
one ledger query per pipeline.
"""

from __future__ import annotations

import subprocess
import sys

import orjson

from bench.stack import ROOT

ROWS = 20_000
KEYS = {"rows", "jsonl_rows_per_s", "parquet_rows_per_s", "limit_rows_per_s", "ratio_jsonl", "ratio_parquet",
        "peak_rss_mb", "jsonl_cpu_s_per_1m", "parquet_cpu_s_per_1m", "limit_cpu_s_per_1m",
        "three_windows_peak_rss_mb", "four_windows_peak_rss_mb"}  # fmt: skip


def test_bench_small_run_moves_every_row_and_prints_bench_line(tmp_path):
    report_path = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--rows", str(ROWS), "--ledger", "3x8", "--ledger", "3x48",
         "--table-rows", "300", "--json", str(report_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("BENCH ")
    bench = orjson.loads(last[len("BENCH ") :])
    assert set(bench) == KEYS
    assert bench["rows"] == ROWS
    assert all(isinstance(bench[k], int | float) and bench[k] > 0 for k in KEYS)

    report = orjson.loads(report_path.read_bytes())
    assert report["failures"] == []
    scenarios = report["scenarios"]
    for name in ("jsonl", "parquet", "delta", "csv", "limit"):
        assert scenarios[name]["rows"] == ROWS, name
        assert scenarios[name]["counted_rows"] == ROWS, name  # counted back from the blobs in Azurite
        assert scenarios[name]["blobs"] == 1, name
        assert scenarios[name]["peak_rss_mb"] > 0
    assert scenarios["serve"]["rows"] == ROWS
    table = report["table_sink"]  # full-width rows into the Table sink, counted back from Azurite
    assert table["rows"] == 300 and table["sink_entities_per_s"] > 0 and table["store_entities_per_s"] > 0
    assert scenarios["jsonl"]["queries"] == scenarios["limit"]["queries"]  # the planner counted, before the clock
    assert "WARNING" not in done.stdout  # the limit wrote byte-identical JSONL
    for n, point in report["windows_at_once"].items():  # 3 and 4 windows in one process, every row counted back
        assert point["rows"] == int(n) * ROWS and point["windows"] == int(n) and point["peak_rss_mb"] > 0
    assert sorted(report["windows_at_once"]) == ["3", "4"]

    ticks = report["scheduler"]
    assert [(t["pipelines"], t["entities"]) for t in ticks] == [(3, 24), (3, 144)]
    for tick in ticks:
        # per pipeline: the meta row (frontier, open mark) and one range query from the open mark
        assert tick["warm"]["requests"] == {"get": tick["pipelines"], "query": tick["pipelines"]}
        # the first plan also moves each open mark up to the frontier (one conditional merge per pipeline), and
        # the process looks once at each pipeline's rollup state (built: nothing more) and the rollup table
        n = tick["pipelines"]
        assert tick["cold"]["requests"] == {"get": 2 * n, "query": n, "patch": n, "create_table": 2}
