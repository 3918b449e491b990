"""The manifest document and the schema recovery for outputs rebuilt from the ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from shared.model import Column, OutputFile, Window
from shared.sinks.manifest import RecentOutputs, build_manifest, encode_manifest, extras_from, output_extra

W = Window(datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))
NOW = datetime(2026, 11, 2, 11, 7, 30, tzinfo=UTC)


def files() -> list[OutputFile]:
    a = output_extra(fmt="csv", compression="gzip", part="", columns=[Column("a", "long"), Column("b")])
    b = output_extra(fmt="csv", compression="gzip", part="", columns=[Column("a", "long"), Column("c", "bool")])
    return [
        OutputFile("x/20261102T100000Z.csv.gz", 3, 100, "aa", a),
        OutputFile("x/20261102T100000Z-s001.csv.gz", 2, 50, "bb", b),
    ]


def doc() -> dict[str, object]:
    return build_manifest(
        pipeline="orders",
        table="requests",
        window=W,
        location="https://acct/c",
        fmt="csv",
        compression="gzip",
        outputs=files(),
        info={"attempt": 2},
        written_at=NOW,
    )


def test_manifest_document() -> None:
    d = doc()
    assert d["manifest_version"] == 1
    assert d["window"] == {"start": "2026-11-02T10:00:00Z", "end": "2026-11-02T11:00:00Z", "key": "20261102T100000Z"}
    assert d["rows"] == 5 and d["bytes"] == 150
    assert d["schema"] == [
        {"name": "a", "type": "long"},
        {"name": "b", "type": "string"},
        {"name": "c", "type": "bool"},
    ]
    assert d["files"] == [
        {
            "name": "x/20261102T100000Z.csv.gz",
            "rows": 3,
            "bytes": 100,
            "sha256": "aa",
            "part": "",
            "columns": ["a", "b"],
        },
        {
            "name": "x/20261102T100000Z-s001.csv.gz",
            "rows": 2,
            "bytes": 50,
            "sha256": "bb",
            "part": "",
            "columns": ["a", "c"],
        },
    ]
    assert d["written_at"] == "2026-11-02T11:07:30Z" and d["info"] == {"attempt": 2}


def test_encode_manifest_round_trips_and_tolerates_odd_info() -> None:
    d = doc()
    d["info"] = {"when": NOW, 1: {2, 3}.__class__.__name__}
    assert orjson.loads(encode_manifest(d))["info"]["1"] == "set"


def test_extras_recovered_from_previous_manifest() -> None:
    extras = extras_from(orjson.loads(encode_manifest(doc())))
    assert extras["x/20261102T100000Z-s001.csv.gz"]["columns"] == [
        {"name": "a", "type": "long"},
        {"name": "c", "type": "bool"},
    ]
    assert extras_from(None) == {}


def test_recent_outputs_fill_in_columns() -> None:
    recent = RecentOutputs(size=1)
    full = files()
    recent.remember(full)  # size 1: only the last is kept
    bare = [OutputFile(f.name, f.rows, f.bytes, f.sha256) for f in full]
    calls: list[int] = []

    def previous() -> dict[str, object]:
        calls.append(1)
        return doc()

    completed = recent.complete(bare, previous)
    assert [c.extra["columns"] for c in completed] == [f.extra["columns"] for f in full]
    assert calls == [1]
    assert recent.complete(full, previous) == full and calls == [1]  # nothing missing: no read
