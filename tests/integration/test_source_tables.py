"""One query source naming several tables moves each as a pipeline of its own — against Azurite and
the session emulator (requests, dependencies and traces from T0)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from shared.model import Window
from tests.conftest import T0, H, blob_names, expected_rows, query_pipeline, read_jsonl_gz

TABLES = ("requests", "dependencies", "traces")
W0 = Window(T0, T0 + H)


def test_every_table_of_a_source_lands_in_its_own_pipeline(emulator, make_engine, storage_conn, unique):
    container = f"out-{unique}"
    pipe = query_pipeline("shop", "requests", emulator, container, source={"tables": list(TABLES)})
    del pipe["source"]["query"]
    del pipe["sink"]
    pipe["sinks"] = [{"container": container}, {"container": container, "path": "by-table/{table}/{window}"}]
    engine = make_engine([pipe], now=T0 + H + timedelta(minutes=10))
    names = [f"shop-{t}" for t in TABLES]
    assert [p.name for p in engine.settings.pipelines] == names
    assert {p.group for p in engine.settings.pipelines} == {"shop"}

    report = engine.tick()
    assert sorted((r.pipeline, r.window, r.outcome) for r in report.results) == sorted((n, W0, "done") for n in names)
    for table, name in zip(TABLES, names, strict=True):
        state = engine.ledger.get(name, W0)  # its own ledger partition
        default, by_table = (o["name"] for o in state.outputs if o["kind"] == "data")
        assert default == f"{name}/y=2026/m=11/d=02/h=00/20261102T000000Z.jsonl.gz"
        assert by_table == f"by-table/{table}/20261102T000000Z.jsonl.gz"
        want = expected_rows(emulator, table, W0.start, W0.end)
        for blob in (default, by_table):
            got = read_jsonl_gz(storage_conn, container, blob)
            assert Counter(r["itemId"] for r in got) == Counter(r["itemId"] for r in want)
            assert {r["itemType"] for r in got} == {want[0]["itemType"]}  # its own table's rows and schema
    assert len([n for n in blob_names(storage_conn, container) if n.endswith(".jsonl.gz")]) == 2 * len(TABLES)
    status = engine.status()
    assert [p["pipeline"] for p in status["pipelines"]] == names  # a status section per table
