"""The status page: the report of ``shared.ops.status`` as one self-contained HTML document.

Server-rendered, no external assets (CSS and script are inlined from ``shared/ops/static``), so
it works offline and behind the function key. Every value is escaped; a Content Security
Policy admits only the page's own script (by hash) and requests to its own origin. The
function key is never rendered: the script reads it from the page's URL or the key field.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from datetime import timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from shared.durations import parse_timestamp
from shared.model import format_ts
from shared.ops.page_text import e, href, num, short, size, span
from shared.ops.status import ATTENTION, STATUSES

__all__ = ["render_html"]

_STATIC = resources.files("shared.ops") / "static"
_CSS = (_STATIC / "status.css").read_text(encoding="utf-8")
_JS = (_STATIC / "status.js").read_text(encoding="utf-8")
_JS_HASH = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; "
    f"script-src 'sha256-{_JS_HASH}'; form-action 'self'; base-uri 'none'"
)
SYMBOLS = {"done": "✓", "running": "▶", "queued": "≡", "pending": "○", "failed": "✗", "missing": "?"}
_FILTERS = (
    ("", "every status"),
    ("failed,missing,running,queued,pending", "not done"),
    ("failed", "failed"),
    ("missing", "missing (gaps)"),
    ("failed,missing", "failed or missing"),
    ("running,queued", "running or queued"),
    ("pending", "pending"),
    ("done", "done"),
)


def _chip(status: str, count: Any, *, label: str | None = None) -> str:
    zero = "" if count else " zero"
    return (
        f"<span class='chip s-{status}{zero}' data-status='{status}' data-count='{e(count)}'>"
        f"<span class='sym' aria-hidden='true'>{SYMBOLS[status]}</span>{e(label or status)}"
        f" <b>{num(count)}</b></span>"
    )


def render_html(report: Mapping[str, Any], params: Mapping[str, str] | None = None) -> str:
    """The whole page; ``params`` are the request's filter values (``from``, ``to``, ``status``), echoed escaped."""
    params = params or {}
    pipelines = list(report.get("pipelines", []))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{e(_CSP)}\">",
        "<meta name='referrer' content='no-referrer'>",
        f"<title>insights-mover status</title><style>{_CSS}</style></head><body>",
        "<header class='top'><h1>insights-mover</h1>",
        f"<span class='meta'>generated {e(report.get('now'))} UTC · by {e(report.get('owner'))}</span></header>",
        "<main>",
        _summary(report.get("summary") or {}),
        _controls(report, params),
        "<div class='legend' aria-label='legend'>",
        *(f"<span class='chip s-{s}'><span class='sym'>{SYMBOLS[s]}</span>{s}</span>" for s in STATUSES),
        "</div>",
    ]
    errors = report.get("errors") or {}
    if errors:
        parts.append("<div class='errors' id='errors'><b>Ledger not readable</b><ul>")
        parts += [f"<li>{e(name)}: {e(err)}</li>" for name, err in errors.items()]
        parts.append("</ul></div>")
    if not pipelines and not errors:
        parts.append("<p class='muted'>No pipelines configured.</p>")
    parts += _grouped(pipelines, params)
    parts += [
        "</main>",
        "<dialog id='confirm'><form method='dialog'><p id='confirm-text'></p>",
        "<p><button value='cancel' id='confirm-cancel'>Cancel</button> ",
        "<button value='confirm' id='confirm-ok' class='primary'>Replay</button></p></form></dialog>",
        f"<script>{_JS}</script></body></html>",
    ]
    return "".join(parts)


def _grouped(pipelines: list[Mapping[str, Any]], params: Mapping[str, str]) -> list[str]:
    """Pipelines in settings order; the tables of one source (``group``) together under its name."""
    out: list[str] = []
    seen: set[str] = set()
    for p in pipelines:
        group = p.get("group")
        if not group:
            out.append(_pipeline(p, params))
            continue
        if group in seen:
            continue
        seen.add(str(group))
        members = [q for q in pipelines if q.get("group") == group]
        out.append(
            f"<section class='group' data-group='{e(group)}'><h2 class='gname'>{e(group)}"
            f" <span class='muted'>{len(members)} tables</span></h2>"
            + "".join(_pipeline(q, params) for q in members)
            + "</section>"
        )
    return out


def _summary(summary: Mapping[str, Any]) -> str:
    counts = summary.get("counts") or {}

    def card(label: str, value: str, key: str, alert: bool = False) -> str:
        cls = "card alert" if alert else "card"
        return f"<div class='{cls}' data-summary='{key}'><b>{value}</b>{e(label)}</div>"

    lag = summary.get("max_lag_seconds")
    cards = [
        card("pipelines", num(summary.get("pipelines")), "pipelines"),
        *(
            card(f"{SYMBOLS[s]} {s}", num(counts.get(s)), s, alert=s in ("failed", "missing") and bool(counts.get(s)))
            for s in STATUSES
        ),
        card("rows", num(summary.get("rows")), "rows"),
        card("bytes", e(size(summary.get("bytes"))), "bytes"),
        card("quarantined", num(summary.get("quarantined")), "quarantined", alert=bool(summary.get("quarantined"))),
        card(f"max lag ({summary.get('most_lagging') or '-'})", e(span(lag) or "0s"), "lag"),
        card("oldest watermark", e(short(summary.get("oldest_watermark"))), "watermark"),
    ]
    share = summary.get("verified_share")
    if share is not None:
        cards.append(card("verified", f"{float(share) * 100:.1f}%", "verified", alert=float(share) < 1))
    if summary.get("history_complete") is False:
        cards.append(card("history being summarised (counts partial)", "…", "history", alert=True))
    if summary.get("unreadable"):
        cards.append(card("unreadable ledgers", num(summary["unreadable"]), "unreadable", alert=True))
    return "<section class='cards' id='summary' aria-label='summary'>" + "".join(cards) + "</section>"


def _controls(report: Mapping[str, Any], params: Mapping[str, str]) -> str:
    """Filter by time range and status (a plain GET form), quick ranges, the key field and auto-refresh."""
    chosen = params.get("status", "")
    options = "".join(
        f"<option value='{e(v)}'{' selected' if v == chosen else ''}>{e(label)}</option>" for v, label in _FILTERS
    )
    if chosen and chosen not in {v for v, _ in _FILTERS}:
        options += f"<option value='{e(chosen)}' selected>{e(chosen)}</option>"
    quick = ""
    try:
        now = parse_timestamp(str(report.get("now")))
        spans = (("24 h", timedelta(days=1)), ("7 days", timedelta(days=7)), ("30 days", timedelta(days=30)))
        links = [
            f"<a class='keep' href='{e(href(**{'from': format_ts(now - d), 'status': chosen}))}'>{n}</a>"
            for n, d in spans
        ]
        quick = (
            "<span class='quick'>last "
            + " ".join(links)
            + f" <a class='keep' href='{e(href(status=chosen))}'>all</a></span>"
        )
    except ValueError:
        pass
    return (
        "<div class='controls'><form id='filter' method='get'><input type='hidden' name='format' value='html'>"
        "<div class='row'>"
        f"{_field('from', 'from (UTC)', '2026-11-02 or …T10:00:00Z', params)}"
        f"{_field('to', 'to (UTC)', '2026-11-03', params)}"
        f"<label>status<{'select'} name='status'>{options}</select></label>"
        "<button type='submit' id='apply'>Apply</button></div></form>"
        f"{quick}"
        "<label>function key (for replay; read from ?code= if present)"
        "<input id='fkey' type='password' autocomplete='off' spellcheck='false' size='24'></label>"
        "<label><span><input type='checkbox' id='autorefresh' checked> refresh every minute</span></label>"
        "</div>"
    )


def _field(name: str, label: str, hint: str, params: Mapping[str, str]) -> str:
    value = e(params.get(name, ""))
    return f"<label>{label}<input name='{name}' size='22' placeholder='{e(hint)}' value='{value}'></label>"


def _pipeline(p: Mapping[str, Any], params: Mapping[str, str]) -> str:
    name = str(p["pipeline"])
    counts = p.get("counts") or {}
    badge = "" if p.get("enabled", True) else " <span class='badge'>disabled</span>"
    lag = float(p.get("lag_seconds") or 0)
    behind = p.get("enabled", True) and lag > 2 * int(p.get("window_size_s") or 0)
    lag_badge = f" <span class='badge bad'>lag {e(span(lag))}</span>" if behind else ""
    rng = p.get("range") or {}
    facts = [
        ("watermark", e(p.get("watermark"))),
        ("lag", e(span(lag) or "0s")),
        ("due until", e(p.get("due_until"))),
        ("window", e(span(p.get("window_size_s")))),
        ("rows", num(p.get("rows"))),
        ("bytes", e(size(p.get("bytes")))),
        ("quarantined", num(p.get("quarantined"))),
        ("range", f"{e(short(rng.get('from')))} – {e(short(rng.get('to')))}"),
    ]
    verified = p.get("verified")
    if isinstance(verified, Mapping):
        share = float(verified.get("share") or 0) * 100
        facts.append(
            (
                "verified",
                f"{share:.1f}% ({num(verified.get('complete'))} of {num(verified.get('checked'))})"
                f" at {e(short(verified.get('at')))}",
            )
        )
    if p.get("history_complete") is False:
        facts.append(("history", "being summarised: totals cover the days summarised so far"))
    in_view = p.get("range_counts") or {}
    parts = [
        f"<section class='pipeline' data-pipeline='{e(name)}' data-view='{e(p.get('view'))}'>",
        f"<h2>{e(name)}{badge}{lag_badge}</h2>",
        "<dl class='facts'>",
        *(f"<div data-fact='{k}'><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts),
        "</dl><p class='counts' title='all windows of the pipeline'>",
        *(_chip(s, counts.get(s, 0)) for s in STATUSES),
        "</p><p class='muted in-view' data-in-view='1'>in this range: ",
        e(" · ".join(f"{num(in_view[s])} {s}" for s in STATUSES if in_view.get(s)) or "no windows"),
        "</p>",
    ]
    if p.get("view") == "days":
        parts.append(_days(p.get("days") or [], params))
    else:
        parts.append(_timeline(p.get("grid") or [], int(p.get("window_size_s") or 3600), params.get("status", "")))
    parts.append(_windows(name, p.get("windows") or [], int(p.get("windows_total") or 0), p.get("recent") or []))
    parts.append(
        f"<form class='replay' data-pipeline='{e(name)}' autocomplete='off'><b>Replay</b>"
        "<label>from <input name='start' size='21' placeholder='click a window'></label>"
        "<label>to <input name='end' size='21' placeholder='shift-click for a range'></label>"
        "<button type='button' class='replay-btn primary'>Replay…</button>"
        "<output aria-live='polite'></output></form></section>"
    )
    return "".join(parts)


_CODES = {"p": "pending", "q": "queued", "r": "running", "d": "done", "f": "failed", "x": "failed", ".": "missing"}


def _timeline(grid: Iterable[Mapping[str, Any]], size_s: int, chosen: str) -> str:
    """One row per UTC day (newest first), one cell per window: colour, symbol and a title that says it all."""
    wanted = set(chosen.split(",")) - {""}
    step = timedelta(seconds=size_s)
    rows = []
    for row in grid:
        day = parse_timestamp(str(row["from"]))
        cells = []
        for i, code in enumerate(str(row.get("codes", ""))):
            if code == "-" or code.lower() not in _CODES:
                continue
            start, status = day + i * step, _CODES[code.lower()]
            begins, ends = format_ts(start), format_ts(start + step)  # once per cell: a week of 5-minute cells
            extra = (" landed" if code.isupper() else "") + (" closed" if code in "xX" else "")
            dim = " dim" if wanted and status not in wanted else ""
            title = f"{short(begins)}–{ends[11:16]} UTC: {status}"
            title += " (an earlier run's data is in place)" if code.isupper() else ""
            title += " (closed: replay to retry)" if code in "xX" else ""
            title = e(title)
            cells.append(
                f"<button type='button' class='cell s-{status}{extra}{dim}' data-start='{begins}'"
                f" data-end='{ends}' data-status='{status}' title='{title}'"
                f" aria-label='{title}'>{SYMBOLS.get(status, '·')}</button>"
            )
        if cells:
            label = f"<span class='dlabel'>{e(row['day'])}</span>"
            rows.append(f"<div class='day'>{label}<div class='cells'>{''.join(cells)}</div></div>")
    if not rows:
        return "<p class='muted'>No windows in this range.</p>"
    return "<div class='timeline' role='group' aria-label='windows per day'>" + "".join(rows) + "</div>"


def _days(days: Iterable[Mapping[str, Any]], params: Mapping[str, str]) -> str:
    """Day aggregation for long ranges: a stacked bar with the counts in words, and a link to the day's windows."""
    rows = []
    for d in days:
        counts = d.get("counts") or {}
        segs = "".join(
            f"<span class='seg s-{s}' style='flex-grow:{int(counts[s])}'></span>" for s in STATUSES if counts.get(s)
        )
        words = " · ".join(f"{SYMBOLS[s]} {num(counts[s])} {s}" for s in STATUSES if counts.get(s))
        link = href(**{"from": str(d["from"]), "to": str(d["to"]), "status": params.get("status", "")})
        worst = next((s for s in ("failed", "missing", "running", "queued", "pending") if counts.get(s)), "done")
        rows.append(
            f"<tr class='dayrow s-{worst}' data-start='{e(d['from'])}' data-end='{e(d['to'])}'"
            f" data-day='{e(d['day'])}'>"
            f"<td>{e(d['day'])}</td><td><div class='bar'>{segs}</div></td><td class='st'>{e(words)}</td>"
            f"<td class='num'>{num(d.get('rows'))}</td><td class='num'>{e(size(d.get('bytes')))}</td>"
            f"<td class='num'>{num(d.get('quarantined'))}</td>"
            f"<td><a class='keep drill' href='{e(link)}'>windows ›</a></td></tr>"
        )
    if not rows:
        return "<p class='muted'>No windows in this range.</p>"
    return (
        "<table class='days'><thead><tr><th>day (UTC)</th><th>windows</th><th>status</th><th class='num'>rows</th>"
        "<th class='num'>bytes</th><th class='num'>quarantined</th><th></th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _window_row(pipeline: str, w: Mapping[str, Any]) -> str:
    status = str(w["status"])
    detail = ""
    if w.get("error"):
        detail += f"<div class='err'>{e(w['error'])}</div>"
    good = w.get("last_good")
    if isinstance(good, Mapping):
        detail += (
            f"<div class='last-good' data-last-good='1'>last good run in place: {num(good.get('rows'))} rows</div>"
        )
    if w.get("closed"):
        detail += "<div class='muted'>closed: no attempt left; replay it once the cause is fixed</div>"
    attempts = f"{num(w.get('attempts'))}" + (f" (+{num(w['takeovers'])} takeovers)" if w.get("takeovers") else "")
    when = w.get("next_attempt_at") or w.get("queued_at") or ""
    when_label = "retry " if w.get("next_attempt_at") else "queued " if w.get("queued_at") else ""
    link = ""
    if status != "missing":
        record = "?" + urlencode({"pipeline": pipeline, "window": str(w["start"])})
        link = (
            f"<a class='keep detail' href='{e(record)}' title='the window&#39;s whole ledger record (JSON)'>record</a>"
        )
    return (
        f"<tr class='w s-{e(status)}' data-start='{e(w['start'])}' data-end='{e(w['end'])}'"
        f" data-status='{e(status)}'>"
        f"<td>{e(short(w['start']))}–{e(str(w['end'])[11:16])}</td>"
        f"<td class='st'><span class='sym'>{SYMBOLS.get(status, '·')}</span> {e(status)}</td>"
        f"<td>{e(w.get('worker'))}</td><td class='num'>{e(attempts)}</td><td class='num'>{num(w.get('rows'))}</td>"
        f"<td class='num'>{e(size(w.get('bytes')))}</td><td class='num'>{num(w.get('quarantined'))}</td>"
        f"<td>{e(when_label)}{e(short(when))}</td><td>{detail}</td><td>{link}</td></tr>"
    )


def _rank(status: str) -> int:
    return ATTENTION.index(status) if status in ATTENTION else len(ATTENTION)


def _windows(pipeline: str, windows: list[Mapping[str, Any]], total: int, recent: list[Mapping[str, Any]]) -> str:
    """Windows needing attention first (not done, gaps included), then the newest windows folded away."""
    head = (
        "<table class='windows'><thead><tr><th>window (UTC)</th><th>status</th><th>worker</th>"
        "<th class='num'>attempts</th><th class='num'>rows</th><th class='num'>bytes</th>"
        "<th class='num'>quarantined</th><th>next</th><th>error · last good run</th><th></th></tr></thead><tbody>"
    )
    attention = sorted(windows, key=lambda w: (_rank(str(w["status"])), "~" + str(w["start"])))
    attention.sort(key=lambda w: _rank(str(w["status"])))  # by status, newest first within one
    parts = [f"<h3>Needs attention ({num(total)})</h3>"]
    if attention:
        parts.append(head + "".join(_window_row(pipeline, w) for w in attention) + "</tbody></table>")
    else:
        parts.append("<p class='muted'>Nothing failed, missing or waiting in this range.</p>")
    if total > len(windows):
        parts.append(f"<p class='muted'>{num(total - len(windows))} more not listed: narrow the range.</p>")
    if recent:
        parts.append(f"<details><summary>Newest windows ({len(recent)})</summary>{head}")
        parts.append("".join(_window_row(pipeline, w) for w in recent) + "</tbody></table></details>")
    return "".join(parts)
