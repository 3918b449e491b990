"""The status report and page from ledger states (pure: no storage, no browser)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.ledger.days import Day, day_of
from shared.ledger.rollups import DaySums
from shared.model import Window
from shared.ops.status import DETAIL_LIMIT, LIST_LIMIT, History, StatusView, days_to_read, pipeline_status, summarize
from shared.ops.status_page import render_html
from shared.settings import Pipeline, load_settings
from shared.windows import WindowState

T0 = datetime(2026, 11, 2, tzinfo=UTC)
H = timedelta(hours=1)
NOW = T0 + 8 * H + timedelta(minutes=10)  # due until 08:00


def pipeline(name: str = "requests", start: datetime = T0) -> Pipeline:
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "KEY": "k",
        "MOVER_PIPELINES": json.dumps(
            {
                "pipelines": [
                    {
                        "name": name,
                        "source": {"kind": "app_insights", "app_id": "a", "query": "requests"},
                        "window": {"size": "PT1H", "start": start.isoformat(), "delay": "PT5M"},
                        "sink": {"container": "out"},
                    }
                ]
            }
        ),
    }
    return load_settings(env).pipelines[0]


def w(i: int) -> Window:
    return Window(T0 + i * H, T0 + (i + 1) * H)


def ledger_states() -> list[WindowState]:
    done = [
        WindowState(
            w(i),
            "done",
            attempts=1,
            rows=10,
            bytes=100,
            outputs=({"name": f"o{i}"},),
            started_at=T0 + i * H,
            finished_at=T0 + i * H + timedelta(seconds=30),
        )
        for i in range(2)
    ]
    return [
        *done,
        WindowState(
            w(2),
            "failed",
            attempts=2,
            rows=7,
            error="fatal: broke",
            started_at=NOW - timedelta(minutes=2),
            finished_at=NOW - timedelta(minutes=1),
            next_attempt_at=NOW + timedelta(minutes=5),
            lease_owner="stale-owner",
            last_good={
                "rows": 40,
                "bytes": 400,
                "outputs": [{"name": "good.jsonl.gz"}],
                "finished_at": "2026-11-02T03:00:00Z",
            },
        ),
        WindowState(
            w(3), "running", attempts=1, lease_owner="worker-7", started_at=NOW - timedelta(minutes=3), takeovers=1
        ),
        WindowState(w(4), "queued", lease_owner="planner", queued_at=NOW - timedelta(minutes=1)),
        WindowState(w(5), "pending"),
    ]  # 06:00-08:00 never recorded


def history(states: list[WindowState], size: timedelta = H) -> History:
    """What the rollups hold for ``states`` (the same ``Day`` code the ledger writes), every day read whole."""
    days: dict[datetime, Day] = {}
    for state in states:
        start = day_of(state.window.start)
        days.setdefault(start, Day.empty("p", start, size)).put(state)
    return History([DaySums(d.day, d.sums(), True) for d in sorted(days.values(), key=lambda d: d.day)], days)


def report_of(states, p=None, now=NOW, view=None):
    return pipeline_status(p or pipeline(), now, view or StatusView(), history(states))


def test_windows_view_states_gaps_and_details():
    report = report_of(ledger_states())
    assert report["view"] == "windows"
    assert report["counts"] == {"done": 2, "running": 1, "queued": 1, "pending": 1, "failed": 1, "missing": 2}
    assert report["grid"] == [{"day": "2026-11-02", "from": "2026-11-02T00:00:00Z", "codes": "ddFrqp.." + "-" * 16}]
    # 02:00 failed a replay but its last good run is in place: it still counts as landed
    assert (report["watermark"], report["lag_seconds"], report["missing"]) == ("2026-11-02T03:00:00Z", 5 * 3600.0, 6)
    assert [(x["start"][11:16], x["status"]) for x in report["windows"]] == [
        ("02:00", "failed"), ("03:00", "running"), ("04:00", "queued"), ("07:00", "missing"), ("06:00", "missing"),
        ("05:00", "pending"),
    ]  # fmt: skip
    by_start = {x["start"][11:16]: x for x in report["windows"]}
    failed = by_start["02:00"]
    assert failed["last_good"] == {"rows": 40} and failed["landed"]
    assert (failed["rows"], failed["error"], failed.get("worker")) == (7, "fatal: broke", None)
    assert failed["next_attempt_at"] == "2026-11-02T08:15:00Z" and not failed.get("closed")
    assert (by_start["03:00"]["worker"], by_start["03:00"]["takeovers"]) == ("worker-7", 1)
    assert (by_start["04:00"]["worker"], by_start["04:00"]["queued_at"]) == ("planner", "2026-11-02T08:09:00Z")
    assert by_start["07:00"]["status"] == "missing" and by_start["07:00"]["end"] == "2026-11-02T08:00:00Z"
    assert [x["start"][11:16] for x in report["recent"]] == ["05:00", "04:00", "03:00", "02:00", "01:00", "00:00"]


def test_status_filter_lists_only_those_but_counts_all():
    report = report_of(ledger_states(), view=StatusView(statuses=frozenset({"failed", "missing"})))
    assert [x["status"] for x in report["windows"]] == ["failed", "missing", "missing"]
    assert report["counts"]["done"] == 2


def test_ranged_view_counts_its_range_and_keeps_the_pipelines_watermark_and_failures():
    view = StatusView(since=T0 + 3 * H, until=T0 + 7 * H)
    report = report_of(ledger_states(), view=view)
    assert report["watermark"] == "2026-11-02T03:00:00Z"  # 02:00 failed a replay; its good run is in place
    assert report["range_counts"] == {"done": 0, "running": 1, "queued": 1, "pending": 1, "failed": 0, "missing": 1}
    assert report["counts"]["done"] == 2  # the whole history
    assert [f["start"] for f in report["failed"]] == ["2026-11-02T02:00:00Z"]  # failed anywhere, not just in range
    assert report["range"] == {"from": "2026-11-02T03:00:00Z", "to": "2026-11-02T07:00:00Z"}


def test_long_ranges_aggregate_per_day_and_list_failed_first():
    start = T0 - 60 * 24 * H
    p = pipeline("big", start)
    now = T0 + timedelta(minutes=10)
    n = 60 * 24
    states = [WindowState(Window(start + i * H, start + (i + 1) * H), "done", rows=1, bytes=2) for i in range(n - 3)]
    states[5] = replace(states[5], status="failed", error="old failure")
    states += [WindowState(Window(start + i * H, start + (i + 1) * H), "pending") for i in range(n - 3, n - 1)]
    assert n > DETAIL_LIMIT
    report = report_of(states, p, now, StatusView(since=start))
    assert report["view"] == "days" and "grid" not in report
    assert len(report["days"]) == 60 and report["days"][0]["day"] == "2026-11-01"
    newest = report["days"][0]["counts"]
    assert newest == {"done": 21, "running": 0, "queued": 0, "pending": 2, "failed": 0, "missing": 1}
    assert report["days"][-1]["counts"]["failed"] == 1 and report["days"][-1]["rows"] == 24
    assert sum(d["windows"] for d in report["days"]) == n
    assert [x["status"] for x in report["windows"]] == ["failed", "missing", "pending", "pending"]
    assert report["windows_total"] == 4


def test_default_view_is_the_newest_windows_and_stays_small():
    start = T0 - 365 * 24 * H
    p = pipeline("year", start)
    states = [WindowState(Window(start + i * H, start + (i + 1) * H), "done", rows=5) for i in range(365 * 24)]
    report = report_of(states, p, T0 + timedelta(minutes=10))
    assert report["range"] == {"from": "2026-10-26T00:00:00Z", "to": "2026-11-02T00:00:00Z"}  # 7 days
    assert report["counts"]["done"] == 365 * 24 and report["rows"] == 5 * 365 * 24  # totals: the whole year
    assert report["watermark"] == "2026-11-02T00:00:00Z" and report["lag_seconds"] == 0
    assert len(json.dumps(report)) < 20_000


def test_only_the_days_a_report_needs_are_read_whole():
    start = T0 - 365 * 24 * H
    p = pipeline("year", start)
    states = [WindowState(Window(start + i * H, start + (i + 1) * H), "done") for i in range(365 * 24)]
    states[100] = replace(states[100], status="failed", error="x")
    now = T0 + timedelta(minutes=10)
    sums = history(states).sums
    want = days_to_read(p.window, now, StatusView(), sums)
    range_days = {T0 - d * 24 * H for d in range(1, 8)}
    failed_day = start + 4 * 24 * H
    assert want == range_days | {failed_day}  # 7 shown + the day with the failure (the first day's sums are exact)
    report = pipeline_status(p, now, StatusView(), History(sums, {d: history(states).days[d] for d in want}))
    assert report["watermark"] == "2025-11-06T04:00:00Z"  # the failed window (no good run) stops the watermark
    assert [f["start"] for f in report["failed"]] == ["2025-11-06T04:00:00Z"]


def test_day_listing_is_capped():
    start = T0 - 100 * 24 * H
    states = [WindowState(Window(start + i * H, start + (i + 1) * H), "pending") for i in range(100 * 24)]
    report = report_of(states, pipeline("big", start), T0 + timedelta(minutes=10), StatusView(since=start))
    assert len(report["windows"]) == LIST_LIMIT and report["windows_total"] == 2400
    assert report["windows"][0]["start"] == "2026-11-01T23:00:00Z"  # newest first


def test_summary_adds_up_pipelines():
    a = report_of(ledger_states(), pipeline("a"))
    b = report_of(ledger_states()[:2], pipeline("b"))
    a["verified"] = {"checked": 10, "complete": 9}
    report = summarize({"pipelines": [a, b], "errors": {"c": "storage unreachable"}})
    s = report["summary"]
    assert (s["pipelines"], s["unreadable"], s["rows"], s["counts"]["failed"], s["counts"]["missing"]) == (
        2, 1, 47, 1, 8,
    )  # fmt: skip
    assert (s["max_lag_seconds"], s["most_lagging"], s["oldest_watermark"]) == (6 * 3600.0, "b", "2026-11-02T02:00:00Z")
    assert s["verified_share"] == 0.9


def _page(report_pipelines, **extra) -> str:
    report = summarize(
        {"now": "2026-11-02T08:10:00Z", "owner": "me", "pipelines": report_pipelines, "errors": {}, **extra}
    )
    return render_html(report, {"from": "<i>x</i>"})


def test_page_escapes_every_value_and_allows_only_its_own_script():
    states = ledger_states()
    states[2] = replace(states[2], error='<img src=x onerror=alert(1)> & "quoted"', lease_owner="<b>")
    states[3] = replace(states[3], lease_owner="'><script>alert(2)</script>")
    page = _page([report_of(states)], errors={"<p>": "<em>down</em>"})
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quoted&quot;" in page
    assert "<script>alert(2)" not in page and "&lt;script&gt;alert(2)" in page
    assert "<em>down</em>" not in page and "<i>x</i>" not in page
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1  # the page's own, nothing injected
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    (csp,) = re.findall(r"http-equiv='Content-Security-Policy' content=\"(.*?)\"", page)
    assert f"script-src 'sha256-{digest}'" in html.unescape(csp) and "default-src 'none'" in html.unescape(csp)
    assert "http://" not in page and "https://" not in page  # no external assets


@pytest.mark.parametrize(
    ("verified", "shown"),
    [
        (
            {"checked": 20, "complete": 19, "share": 0.95, "at": "2026-11-02T08:00:00Z"},
            "95.0% (19 of 20) at 11-02 08:00",
        ),
        (None, None),
    ],
    ids=["verified", "absent"],
)
def test_page_shows_verification_when_present(verified, shown):
    report = report_of(ledger_states())
    if verified:
        report["verified"] = verified
    page = _page([report])
    if shown:
        assert f"<div data-fact='verified'><dt>verified</dt><dd>{shown}</dd></div>" in page
    else:
        assert "data-fact='verified'" not in page
