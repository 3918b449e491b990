"""The streaming properties ``make bench`` relies on, against a dense emulator hour.

A minute holding more rows than ``max_rows_per_query`` is still cut into sub-windows near
the limit; a response reaches the sinks whole, with slices of ~``BATCH_BYTES`` as its chunk hint; the per-column fast
path of ``convert_rows`` gives exactly what the per-cell converters give.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import httpx
import pytest

from bench.scenarios import bench_settings
from devtools.ai_emulator import Emulator, EmulatorConfig, SettableClock
from shared.mapping.normalize import normalize_rows
from shared.model import Column, Window
from shared.runtime.auth import HeaderProvider
from shared.settings import QuerySourceConfig
from shared.sources.query_api import QueryApiSource, batch_rows
from shared.sources.wire import _CONVERTERS, convert_rows

HOUR = Window(datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))
ROWS = 12_000


@pytest.fixture(scope="module")
def dense() -> Iterator[Emulator]:
    """12,000 requests in one hour (200 a minute) on a private emulator."""
    clock = SettableClock(HOUR.end + timedelta(days=1))
    emu = Emulator(EmulatorConfig(app_id="dense-app", token="dense-token"), clock=clock)
    emu.start()
    emu.generate("requests", HOUR.start, HOUR.end, ROWS, seed=7)
    yield emu
    emu.stop()


def source(emu: Emulator, max_rows: int) -> QueryApiSource:
    """The pipeline the bench runs, as the app would load it (``bench.scenarios.bench_settings``)."""
    spec = {"storage": "UseDevelopmentStorage=true", "emulator": emu.url, "app_id": "dense-app", "token": "dense-token",
            "start": "2026-11-02T10:00:00Z", "container": "unused", "ledger_table": "unused",
            "max_rows_per_query": max_rows}  # fmt: skip
    config = bench_settings(spec).pipeline("bench").source
    assert isinstance(config, QuerySourceConfig)
    return QueryApiSource(config, httpx.Client(), HeaderProvider(config.auth))


def test_dense_minutes_are_cut_to_the_row_limit(dense):
    src = source(dense, 40)  # each 1-minute bin holds ~200 rows: ~5 sub-windows per bin
    subs = src.plan(HOUR)
    assert subs[0].start == HOUR.start and subs[-1].end == HOUR.end
    assert all(a.end == b.start for a, b in pairwise(subs))  # a tiling, in order
    counts = [dense.expected_count("requests", s.start, s.end) for s in subs]
    assert sum(counts) == ROWS
    assert len(subs) >= ROWS // 40
    assert max(counts) <= 2 * 40  # even cuts of a bin: near the limit, never a whole dense minute


def test_a_response_reaches_the_sinks_whole_with_slices_of_batch_bytes(dense):
    """A column-wise answer is one batch (its memory is the byte budget's); its chunk hint is the
    ~``BATCH_BYTES`` slice the row path hands on, which Parquet pages follow."""
    src = source(dense, 500_000)
    before = dense.stats.bytes_returned
    batches = list(src.read(HOUR))
    wire = dense.stats.bytes_returned - before  # the count per bin (~2 KB) + the one data response
    (batch,) = batches
    assert batch.arrow is not None and len(batch) == ROWS
    assert abs(batch.chunk_rows - batch_rows(ROWS, wire)) <= batch.chunk_rows // 100
    assert src.stats.queries == 2 and src.summary().source_count == ROWS  # count per bin + one query
    ids = [row[[c.name for c in batch.columns].index("itemId")] for row in batch.rows]
    assert len(set(ids)) == ROWS


def per_cell(ctype: str, values: list[object]) -> list[object]:
    """Each cell on its own through its converter, then the shared normalisation."""
    conv = _CONVERTERS.get(ctype)
    cells = [[v if conv is None or v is None else conv(v)] for v in values]
    return [row[0] for row in normalize_rows((Column("c", ctype),), cells)]


@pytest.mark.parametrize(
    ("ctype", "values"),
    [
        ("long", [1, None, 2, True]), ("long", [1, "2", 3.0, None]), ("int", ["", "7"]),
        ("real", [1.5, None, False]), ("real", [1.5, 2, "3.5"]), ("bool", [True, None]), ("bool", ["True", 0, "x"]),
        ("guid", ["a", None]), ("guid", ["a", 5]), ("timespan", ["00:00:01", 3]),
        ("dynamic", ['{"a":1}', None, "[1]", "not json", "", 5, {"b": 2}]), ("string", ["x", None]),
    ],
    ids=["long-canonical", "long-mixed", "int-str", "real-canonical", "real-mixed", "bool-canonical", "bool-mixed",
         "guid-canonical", "guid-int", "timespan-mixed", "dynamic", "string"],
)  # fmt: skip
def test_column_fast_path_equals_per_cell_conversion(ctype, values):
    rows = [[v, "keep"] for v in values]
    got = convert_rows((Column("c", ctype), Column("s", "string")), rows)
    assert [r[0] for r in got] == per_cell(ctype, values)
    assert [type(r[0]) for r in got] == [type(v) for v in per_cell(ctype, values)]
    assert [r[1] for r in got] == ["keep"] * len(values)
