"""The pure parts of estimate and verify: ranges, spans, query counts, time at the budget, verdicts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from shared.model import Window
from shared.ops.estimate import queries_for, resolve_range, seconds_at_budget
from shared.ops.verify import judge
from shared.ops.verify_blobs import count_lines
from shared.settings import AuthConfig, Pipeline, QuerySourceConfig, SinkConfig, StorageConfig, WindowConfig
from shared.sources.counts import SPAN_WINDOWS, Pacer, budget_of, spans
from shared.windows import WindowState

T0 = datetime(2026, 11, 2, tzinfo=UTC)
H = timedelta(hours=1)
SOURCE = QuerySourceConfig(
    kind="app_insights",
    resource_id="app",
    endpoint="http://localhost",
    query="requests",
    table="requests",
    time_column="timestamp",
    auth=AuthConfig(kind="entra", scope="s"),
)


def pipeline(size: timedelta = H, end: datetime | None = None) -> Pipeline:
    storage = StorageConfig(setting="S", conn_string="x")
    return Pipeline("p", SOURCE, WindowConfig(size=size, start=T0, end=end), (SinkConfig("blob", storage, "out"),))


RANGE_CASES = [
    ("defaults", None, None, T0 + 5 * H + 10 * timedelta(minutes=1), (T0, T0 + 5 * H), 0),
    ("widened", T0 + 30 * timedelta(minutes=1), T0 + 2 * H + 1 * timedelta(minutes=1), T0 + 9 * H, (T0, T0 + 3 * H), 0),
    ("end-clamped", T0, T0 + 20 * H, T0 + 5 * H + 10 * timedelta(minutes=1), (T0, T0 + 5 * H), 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("start", "end", "now", "expected", "notes"), [c[1:] for c in RANGE_CASES], ids=[c[0] for c in RANGE_CASES]
)
def test_resolve_range(start, end, now, expected, notes) -> None:
    rng, got_notes = resolve_range(pipeline(), now, start, end)
    assert (rng.start, rng.end) == expected and len(got_notes) == notes


@pytest.mark.parametrize(
    ("start", "end", "fragment"),
    [
        (T0 + 2 * H, T0 + H, "'end' must be after 'start'"),
        (T0 + 100 * H, None, "no closed window"),
        (T0 - timedelta(days=500), T0 + H, "at most 400"),
    ],
    ids=["reversed", "future", "too-long"],
)
def test_resolve_range_refuses_with_a_reason(start, end, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        resolve_range(pipeline(), T0 + 10 * H, start, end)


def test_default_start_keeps_the_range_within_the_limit() -> None:
    rng, notes = resolve_range(pipeline(), T0 + timedelta(days=30, minutes=10), None, None, max_days=7)
    assert (rng.start, rng.end) == (T0 + timedelta(days=23), T0 + timedelta(days=30)) and "at most 7 days" in notes[0]


def test_spans_tile_the_range_in_whole_windows_within_the_caps() -> None:
    size = timedelta(minutes=5)
    end = T0 + timedelta(days=365)
    parts = spans(T0, end, size)
    assert parts[0].start == T0 and parts[-1].end == end
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))
    assert all(p.size <= timedelta(days=7) and p.size / size <= SPAN_WINDOWS for p in parts)
    assert all((p.start - T0) % size == timedelta(0) for p in parts) and len(parts) == 53
    minute = spans(T0, T0 + timedelta(days=30), timedelta(minutes=1))
    assert max(p.size for p in minute) == timedelta(days=7)  # 10,080 windows: the days cap binds first


@pytest.mark.parametrize(("rows", "limit", "expected"), [(0, 10, 2), (10, 10, 2), (11, 10, 3), (95, 10, 11)], ids=str)
def test_queries_for_mirrors_the_engine_plan(rows, limit, expected) -> None:
    assert queries_for(rows, limit) == expected


def test_seconds_at_budget_is_the_tighter_of_rate_and_concurrency() -> None:
    assert seconds_at_budget(360, 5, 180, 0.1) == 60.0  # rate-bound: 360 requests at 6/s
    assert seconds_at_budget(360, 5, 180, 5.0) == 360.0  # latency-bound: 5 s each, 5 at a time


def test_budget_defaults_when_the_settings_carry_none() -> None:
    assert budget_of(SOURCE) == (5, 180)


def test_pacer_lets_the_budget_through_then_waits() -> None:
    now = [0.0]
    pacer = Pacer(3, clock=lambda: now[0])
    for _ in range(3):
        pacer.wait()  # returns at once
    now[0] = 30.0  # the first three fell out of the 30 s log
    pacer.wait()
    assert len(pacer._sent) == 1


def state(rows: int = 10, quarantined: int = 0) -> WindowState:
    return WindowState(window=Window(T0, T0 + H), status="done", rows=rows, quarantined=quarantined)


VERDICTS = [
    ("complete", state(), 10, [10], [], "", "complete"),
    ("complete-with-quarantine", state(8, 2), 10, [8], [], "", "complete"),
    ("late-rows", state(), 12, [10], [], "", "short"),
    ("rewritten-blob", state(), None, [10], [], "the source changed", "short"),
    ("manifest-behind-ledger", state(), 10, [9], [], "", "short"),
    ("duplicates", state(), 10, [14], [], "", "over"),
    ("source-lost-rows", state(), 7, [10], [], "", "over"),
    ("no-manifest", state(), 10, [None], [], "", "missing"),
    ("blob-gone", state(), 10, [10], ["sink 0: output blob x is missing"], "", "missing"),
    ("missing-beats-short", state(), 12, [None], [], "", "missing"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("st", "source", "manifests", "problems", "late", "verdict"),
    [c[1:] for c in VERDICTS],
    ids=[c[0] for c in VERDICTS],
)
def test_judge(st, source, manifests, problems, late, verdict) -> None:
    check = judge(st, source, manifests, problems, late)
    assert check.verdict == verdict
    assert (check.detail == "") == (verdict == "complete")


@pytest.mark.parametrize(("data", "lines"), [(b"", 0), (b"a\nb\n", 2), (b"a\n\n  \nb", 2), (b"a\r\nb\r\n", 2)], ids=str)
def test_count_lines_counts_records_not_blank_lines(data, lines) -> None:
    assert count_lines(data) == lines


@pytest.mark.parametrize(
    ("whole", "half", "rows", "expected"),
    [(1100, 600, 10, (100.0, 100.0)), (500, 0, 10, (0.0, 50.0)), (300, 300, 1, (0.0, 300.0))],
    ids=["overhead-and-rows", "no-half-measured", "one-row"],
)
def test_output_model_splits_per_file_overhead_from_per_row_size(whole, half, rows, expected) -> None:
    from shared.ops.estimate_sample import SinkSample

    assert SinkSample(0, "blob", "parquet", "snappy", whole, "", half).model(rows) == expected
