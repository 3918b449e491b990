"""The in-memory sink behaves like the blob sink (names, replace, zero-row delete, manifest)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import RetriableError
from shared.model import Batch, Column, Window
from shared.sinks import MemorySink, Sink

W = Window(datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))
COLS = (Column("itemId"), Column("n", "long"))


def test_commit_replace_and_zero_rows() -> None:
    sink: Sink = MemorySink(pipeline="p")
    assert isinstance(sink, MemorySink)
    w = sink.open(W)
    w.write(Batch("t", COLS, [["a", 1], ["b", 2]]))
    [out] = w.commit()
    assert out.name == "p/y=2026/m=11/d=02/h=10/20261102T100000Z.jsonl" and out.rows == 2
    assert sink.rows(out.name) == [{"itemId": "a", "n": 1}, {"itemId": "b", "n": 2}]
    w = sink.open(W)
    w.write(Batch("t", COLS, [["c", 3]]))
    w.commit()
    assert sink.rows(out.name) == [{"itemId": "c", "n": 3}]
    assert sink.open(W).commit() == []
    assert out.name not in sink.files
    m = sink.write_manifest(W, [], {})
    assert sink.manifests[m.name]["rows"] == 0


def test_injected_failures_and_abort() -> None:
    sink = MemorySink()
    w = sink.open(W, part="late-0001")
    w.write(Batch("t", COLS, [["a", 1]]))
    sink.fail_commit = RetriableError("storage down")
    with pytest.raises(RetriableError):
        w.commit()
    assert sink.files == {}
    w = sink.open(W)
    sink.fail_write = RetriableError("once")
    with pytest.raises(RetriableError):
        w.write(Batch("t", COLS, [["a", 1]]))
    w.abort()
    assert sink.aborts == 1
    with pytest.raises(RuntimeError):
        w.write(Batch("t", COLS, [["a", 1]]))


def test_remove() -> None:
    sink = MemorySink()
    w = sink.open(W, part="late-0001")
    w.write(Batch("t", COLS, [["a", 1]]))
    [out] = w.commit()
    sink.remove(out.name)
    sink.remove(out.name)  # missing is fine
    assert sink.files == {}
