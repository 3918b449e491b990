"""The status page in real headless Chromium, served by the function app through ``devtools.funchost``.

The ledger is real (Azurite) and filled through the real ``Ledger``/``App``: done,
failed (with a last good run), running, queued, pending and missing windows. The browser
loads the page, a screenshot is taken, and the DOM is checked state by state; the replay
action is driven like an operator does: select, cancel (nothing sent), confirm (sent).
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import azure.functions as func
import pytest
from playwright.sync_api import BrowserContext, Page, Request, expect, sync_playwright

from devtools.funchost import FunctionIndex, LocalHost
from shared.frontends import http as api
from shared.model import Window
from tests.conftest import T0, H, query_pipeline

CHROMIUM = "/usr/bin/chromium"  # Debian's package; .ci/run installs it
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
NOW = T0 + 10 * H + timedelta(minutes=10)  # due until 10:00
KEY = "page-test-key"
EVIL = "<script>window.__pwned = 1</script> & 'quotes'"


def w(i: int) -> Window:
    return Window(T0 + i * H, T0 + (i + 1) * H)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1400, "height": 900}
        )
        yield context
        context.close()


@pytest.fixture()
def host(functions: FunctionIndex) -> Iterator[LocalHost]:
    server = LocalHost(FunctionIndex(timers={}, http=functions.http), port=0)  # HTTP only: the test drives the engine
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def page(browser: BrowserContext) -> Iterator[Page]:
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    tab.close()
    assert errors == []  # the page's script ran without errors


@pytest.fixture()
def engine(emulator, make_engine, storage_conn, unique):
    engine = make_engine(
        [
            query_pipeline("requests", "requests", emulator, f"out-{unique}"),
            query_pipeline("traces", "traces", emulator, f"tr-{unique}", enabled=False),
        ],
        now=NOW,
        MOVER_REPLAY_INLINE_WINDOWS="4",
    )
    api.reset_engine(engine)
    pipeline = engine.settings.pipeline("requests")
    ledger = engine.ledger
    for i in range(3):  # 00:00-03:00 done, real rows
        assert engine.worker.run_window(pipeline, w(i)).outcome == "done"
    good = ledger.get("requests", w(2))
    assert good is not None and good.rows > 0
    # 02:00 replayed and failed: the ledger keeps its last good run apart from the failed attempt
    claim = ledger.force_claim("requests", w(2), owner="replayer", now=NOW, lease=H)
    assert claim is not None
    ledger.fail(claim, now=NOW, error="fatal: query API 400 " + EVIL, next_attempt_at=None)
    # 03:00 failed with a retry planned
    claim = ledger.claim("requests", w(3), owner="worker-1", now=NOW, lease=H, max_attempts=3)
    assert claim is not None
    ledger.fail(claim, now=NOW, error="retriable: query API 503", next_attempt_at=NOW + timedelta(minutes=4))
    # 04:00 running on worker-7 (live lease)
    assert ledger.claim("requests", w(4), owner="worker-7", now=NOW, lease=H, max_attempts=3) is not None
    # 05:00 queued by the planner, 06:00 pending (replay requested); 07:00-10:00 never recorded: missing
    assert ledger.request_replay("requests", [w(5), w(6)], NOW) == 2
    ledger.advance_frontier("requests", w(6).end, NOW)  # as the planner does after recording windows
    assert ledger.mark_queued("requests", ledger.get("requests", w(5)), NOW, max_attempts=3)
    return engine


def test_page_shows_every_state_and_takes_a_screenshot(host, engine, page, tmp_path_factory):
    page.goto(f"{host.url}/api/status?format=html&refresh=0&code={KEY}")
    section = page.locator("section.pipeline[data-pipeline='requests']")
    cells = section.locator(".timeline .cell")
    expect(cells).to_have_count(10)  # 00:00-10:00
    statuses = ["done", "done", "failed", "failed", "running", "queued", "pending", *["missing"] * 3]
    for i, status in enumerate(statuses):
        expect(cells.nth(i)).to_have_attribute("data-status", status)
    for i, symbol in zip((0, 2, 4, 5, 6, 7), ("✓", "✗", "▶", "≡", "○", "?"), strict=True):
        expect(cells.nth(i)).to_have_text(symbol)  # not colour only
    expect(cells.nth(2)).to_have_class(re.compile(r"\blanded\b"))  # 02:00 failed a replay; its good run is in place
    for status, count in {"done": 2, "failed": 2, "running": 1, "queued": 1, "pending": 1, "missing": 3}.items():
        chip = section.locator(f".counts .chip[data-status='{status}']")
        expect(chip).to_have_attribute("data-count", str(count))
        expect(chip).to_have_text(re.compile(r"^[✓✗▶≡○?]"))
    expect(section.locator("[data-fact='watermark'] dd")).to_have_text("2026-11-02T03:00:00Z")
    expect(section.locator("[data-fact='lag'] dd")).to_have_text("7h 00m")

    attention = section.locator("table.windows").first
    failed = attention.locator("tr.w[data-status='failed'][data-start='2026-11-02T02:00:00Z']")
    expect(failed).to_contain_text(EVIL)  # shown as text, escaped
    assert page.evaluate("window.__pwned") is None  # and never run
    expect(failed.locator(".last-good")).to_contain_text("last good run in place: ")
    expect(section.locator("tr.w[data-start='2026-11-02T03:00:00Z']").first).to_contain_text("retry 11-02 10:14")
    expect(section.locator("tr.w[data-status='running']").first).to_contain_text("worker-7")
    expect(section.locator("table.windows").first.locator("tr.w[data-status='missing']")).to_have_count(3)
    expect(page.locator("#summary [data-summary='failed'] b")).to_have_text("2")
    expect(page.locator("section.pipeline[data-pipeline='traces'] .badge").first).to_have_text("disabled")
    expect(section.locator("form.replay button.replay-btn")).to_be_visible()
    expect(page.locator("#fkey")).to_have_value(KEY)  # from the page's own URL
    expect(page.locator("#autorefresh")).not_to_be_checked()  # &refresh=0
    with urllib.request.urlopen(f"{host.url}/api/status?format=html&code={KEY}") as resp:
        assert KEY not in resp.read().decode()  # the server never renders the key

    shot = tmp_path_factory.mktemp("status-page") / "status.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    print(f"screenshot: {shot} ({len(data)} bytes)")


def test_a_windows_record_link_opens_its_whole_ledger_record(host, engine, page):
    page.goto(f"{host.url}/api/status?format=html&refresh=0&code={KEY}")
    row = page.locator("section.pipeline[data-pipeline='requests'] tr.w[data-start='2026-11-02T02:00:00Z']").first
    row.locator("a.detail").click()
    page.wait_for_url("**window=2026-11-02T02**")
    assert f"code={KEY}" in page.url
    record = json.loads(page.locator("body").inner_text())
    assert (record["status"], record["closed"], record["last_good"]["rows"]) == ("failed", True, record["rows"])
    assert record["outputs"] and record["replay_at"] == "2026-11-02T10:10:00Z"


def test_replay_needs_confirmation_then_posts_with_the_key(host, engine, page):
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/api/replay") else None)
    page.goto(f"{host.url}/api/status?format=html&refresh=0&code={KEY}")
    section = page.locator("section.pipeline[data-pipeline='requests']")
    form = section.locator("form.replay")

    section.locator(".cell[data-start='2026-11-02T03:00:00Z']").click()
    section.locator(".cell[data-start='2026-11-02T02:00:00Z']").click(modifiers=["Shift"])
    expect(form.locator("input[name='start']")).to_have_value("2026-11-02T02:00:00Z")
    expect(form.locator("input[name='end']")).to_have_value("2026-11-02T04:00:00Z")
    expect(section.locator(".cell.sel")).to_have_count(2)

    form.locator("button.replay-btn").click()
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("from 2026-11-02T02:00:00Z to 2026-11-02T04:00:00Z")
    page.locator("#confirm-cancel").click()
    expect(form.locator("output")).to_contain_text("nothing was sent")  # the dialog's close event comes first
    assert sent == []
    assert engine.ledger.get("requests", w(3)).status == "failed"

    form.locator("button.replay-btn").click()
    page.locator("#confirm-ok").click()
    out = form.locator("output")
    expect(out).to_have_text(re.compile(r"^200"), timeout=30_000)
    expect(out).to_contain_text("inline: 2 window(s)")
    expect(out).to_contain_text("2 done")
    (request,) = sent
    assert request.method == "POST" and request.headers["x-functions-key"] == KEY
    assert json.loads(request.post_data or "") == {
        "pipeline": "requests",
        "start": "2026-11-02T02:00:00Z",
        "end": "2026-11-02T04:00:00Z",
    }
    assert [engine.ledger.get("requests", w(i)).status for i in (2, 3)] == ["done", "done"]


def test_replay_refusal_shows_the_reason(host, engine, page):
    page.goto(f"{host.url}/api/status?format=html&refresh=0")  # no key in the URL: the operator types one
    page.locator("#fkey").fill("typed-key")
    form = page.locator("section.pipeline[data-pipeline='requests'] form.replay")
    form.locator("input[name='start']").fill("2026-11-02T09:00:00Z")
    form.locator("input[name='end']").fill("2026-11-02T12:00:00Z")  # not closed yet
    with page.expect_request("**/api/replay") as req:
        form.locator("button.replay-btn").click()
        page.locator("#confirm-ok").click()
    assert req.value.headers["x-functions-key"] == "typed-key"
    out = form.locator("output")
    expect(out).to_have_text(re.compile(r"^400"))
    expect(out).to_contain_text("not closed yet")
    expect(out).to_have_attribute("data-ok", "false")
    assert engine.ledger.get("requests", w(9)) is None


def test_filter_by_status_and_range(host, engine, page):
    page.goto(f"{host.url}/api/status?format=html&refresh=0&code={KEY}")
    page.locator("#filter input[name='from']").fill("2026-11-02T02:00:00Z")
    page.locator("#filter input[name='to']").fill("2026-11-02T08:00:00Z")
    page.locator("#filter select[name='status']").select_option("failed,missing")
    page.locator("#apply").click()
    page.wait_for_url("**from=2026-11-02T02**")
    assert f"code={KEY}" in page.url and "refresh=0" in page.url  # both stay in the URL across navigation
    section = page.locator("section.pipeline[data-pipeline='requests']")
    expect(section.locator(".timeline .cell")).to_have_count(6)  # 02:00-08:00
    expect(section.locator(".timeline .cell.dim")).to_have_count(3)  # running, queued, pending dimmed
    listed = section.locator("table.windows").first.locator("tr.w")
    expect(listed).to_have_count(3)
    for i, status in enumerate(["failed", "failed", "missing"]):
        expect(listed.nth(i)).to_have_attribute("data-status", status)
    expect(section.locator("[data-fact='watermark'] dd")).to_have_text("2026-11-02T03:00:00Z")  # the pipeline's


def test_thousands_of_windows_aggregate_by_day(host, make_engine, emulator, page, unique, tmp_path_factory):
    days = 125
    start = T0 - days * 24 * H
    now = T0 + timedelta(minutes=10)
    engine = make_engine(
        [query_pipeline("big", "requests", emulator, f"big-{unique}", window={"start": start.isoformat()})], now=now
    )
    api.reset_engine(engine)
    windows = [Window(start + i * H, start + (i + 1) * H) for i in range(days * 24)]
    engine.ledger.record_new("big", windows[:-5], now)  # the last 5 hours never recorded: missing
    for i in range(2952, 2976):  # the day before the gap moved and done
        claim = engine.ledger.claim("big", windows[i], owner="w", now=now, lease=H, max_attempts=1)
        assert claim is not None
        engine.ledger.complete(claim, now=now, rows=i, nbytes=10 * i, outputs=[{"name": f"big/{i}.jsonl.gz"}])
    for i in (10, 2000):
        claim = engine.ledger.claim("big", windows[i], owner="w", now=now, lease=H, max_attempts=1)
        assert claim is not None
        engine.ledger.fail(claim, now=now, error=f"fatal: window {i} broke", next_attempt_at=None)

    page.goto(f"{host.url}/api/status?format=html&refresh=0&code={KEY}&from={start.date().isoformat()}")
    section = page.locator("section.pipeline[data-pipeline='big']")
    expect(section).to_have_attribute("data-view", "days")
    day_rows = section.locator("table.days tr.dayrow")
    expect(day_rows).to_have_count(days)
    pending = section.locator(".counts .chip[data-status='pending']")
    expect(pending).to_have_attribute("data-count", str(3000 - 5 - 2 - 24))
    expect(section.locator(".counts .chip[data-status='missing']")).to_have_attribute("data-count", "5")
    newest = day_rows.first
    expect(newest).to_have_attribute("data-day", "2026-11-01")
    expect(newest).to_contain_text("5 missing")
    expect(day_rows.nth(1)).to_have_attribute("data-day", "2026-10-31")
    expect(day_rows.nth(1)).to_contain_text("24 done")
    expect(section.locator("table.windows").first.locator("tr.w[data-status='failed']")).to_have_count(2)  # however old
    shot = tmp_path_factory.mktemp("status-page") / "status-days.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    day_rows.nth(1).click()  # select the whole done day and replay it: 24 windows are queued in the ledger
    form = section.locator("form.replay")
    expect(form.locator("input[name='start']")).to_have_value("2026-10-31T00:00:00Z")
    expect(form.locator("input[name='end']")).to_have_value("2026-11-01T00:00:00Z")
    form.locator("button.replay-btn").click()
    page.locator("#confirm-ok").click()
    expect(form.locator("output")).to_have_text(re.compile(r"^202"), timeout=30_000)
    expect(form.locator("output")).to_contain_text("24 queued")
    day = engine.ledger.states("big", since=windows[2952].start, until=windows[2976].start)
    assert {s.status for s in day} == {"pending"}

    newest.locator("a.drill").click()  # one day, window by window
    page.wait_for_url("**from=2026-11-01**")
    assert f"code={KEY}" in page.url
    section = page.locator("section.pipeline[data-pipeline='big']")
    expect(section).to_have_attribute("data-view", "windows")
    expect(section.locator(".timeline .cell")).to_have_count(24)
    expect(section.locator(".timeline .cell[data-status='missing']")).to_have_count(5)


def test_the_default_page_shows_the_newest_windows_and_the_whole_history_in_its_totals(
    host, make_engine, emulator, page, unique
):
    days = 40
    start = T0 - days * 24 * H
    now = T0 + timedelta(minutes=10)
    engine = make_engine(
        [query_pipeline("old", "requests", emulator, f"old-{unique}", window={"start": start.isoformat()})], now=now
    )
    api.reset_engine(engine)
    engine.ledger.record_new("old", [Window(start + i * H, start + (i + 1) * H) for i in range(days * 24)], now)
    page.goto(f"{host.url}/api/status?format=html&refresh=0")
    section = page.locator("section.pipeline[data-pipeline='old']")
    expect(section).to_have_attribute("data-view", "windows")
    expect(section.locator(".timeline .day")).to_have_count(7)  # the newest week, window by window
    expect(section.locator(".counts .chip[data-status='pending']")).to_have_attribute("data-count", str(days * 24))


def test_status_json_for_a_range_reads_only_that_range(host, engine):
    url = f"{host.url}/api/status?from=2026-11-02T03:00:00Z&to=2026-11-02T06:00:00Z&status=failed,queued"
    with urllib.request.urlopen(url) as resp:
        report = json.loads(resp.read())
    p = next(p for p in report["pipelines"] if p["pipeline"] == "requests")
    assert p["range_counts"] == {"done": 0, "running": 1, "queued": 1, "pending": 0, "failed": 1, "missing": 0}
    assert p["counts"] == {"done": 2, "running": 1, "queued": 1, "pending": 1, "failed": 2, "missing": 3}
    assert [(x["start"], x["status"], x.get("worker", "")) for x in p["windows"]] == [
        ("2026-11-02T03:00:00Z", "failed", ""),
        ("2026-11-02T05:00:00Z", "queued", ""),
    ]
    assert p["watermark"] == "2026-11-02T03:00:00Z"  # the pipeline's, not the range's (02:00 has a good run)
    assert [f["start"] for f in p["failed"]] == ["2026-11-02T03:00:00Z", "2026-11-02T02:00:00Z"]  # newest first
    assert report["summary"]["counts"]["failed"] == 2


def test_status_of_one_pipeline_and_one_window(functions, engine):
    report = json.loads(_get(functions, {"pipeline": "traces"}).get_body())
    assert [p["pipeline"] for p in report["pipelines"]] == ["traces"]
    record = json.loads(_get(functions, {"pipeline": "requests", "window": "2026-11-02T04:00:00Z"}).get_body())
    assert (record["status"], record["worker"], record["attempts"]) == ("running", "worker-7", 1)
    missing = _get(functions, {"pipeline": "requests", "window": "2026-11-02T08:00:00Z"})
    assert missing.status_code == 404 and "no record" in json.loads(missing.get_body())["error"]


def test_ledger_reads_only_the_range_and_never_the_meta_row(engine):
    states = engine.ledger.states
    assert [s.window.start.hour for s in states("requests", since=T0 + 3 * H, until=T0 + 6 * H)] == [3, 4, 5]
    assert [s.window.start.hour for s in states("requests", since=T0 + 5 * H)] == [5, 6]  # ~meta excluded
    assert [s.window.start.hour for s in states("requests", until=T0 + 2 * H)] == [0, 1]
    assert len(list(states("requests"))) == 7


def _get(functions, params):
    req = func.HttpRequest(method="GET", url="http://localhost/api/status", headers={}, params=params, body=b"")
    return functions.http["status"].call(req)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"from": "yesterday"}, "'from': not an ISO 8601 timestamp"),
        ({"to": "2026-11-02T10:00:00"}, "'to': timestamp needs a UTC offset"),
        ({"from": "2026-11-02T05:00:00Z", "to": "2026-11-02"}, "'to' must be after 'from'"),
        ({"from": "2026-11-02T05:00:00Z" + "0" * 60}, "'from' is too long"),
        ({"status": "failed,broken"}, "'status' takes a comma-separated list of done, running, queued"),
        ({"format": "html", "status": "<script>"}, "'status' takes"),
        ({"window": "2026-11-02T04:00:00Z"}, "'window' needs 'pipeline'"),
        ({"pipeline": "requests", "window": "2026-11-02T04:30:00Z"}, "is not the start of a requests window"),
        ({"pipeline": "requests", "window": "soon"}, "'window': not an ISO 8601 timestamp"),
    ],
    ids=["words", "naive", "reversed", "long", "unknown-status", "html-status", "window-alone", "unaligned", "words-w"],
)
def test_status_rejects_bad_parameters_with_a_reason(functions, engine, params, fragment):
    resp = _get(functions, params)
    assert resp.status_code == 400 and resp.mimetype == "application/json"
    assert fragment in json.loads(resp.get_body())["error"]


def test_status_accepts_dates_as_utc_midnight(functions, engine):
    resp = _get(functions, {"from": "2026-11-02", "to": "2026-11-03", "format": "html", "status": "failed"})
    assert resp.status_code == 200 and b"value='2026-11-02'" in resp.get_body()
    report = json.loads(_get(functions, {"from": "2026-11-02", "to": "2026-11-03"}).get_body())
    p = next(p for p in report["pipelines"] if p["pipeline"] == "requests")
    assert p["range"] == {"from": "2026-11-02T00:00:00Z", "to": "2026-11-02T10:00:00Z"}
