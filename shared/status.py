"""The status report: per pipeline counts, watermark, lag and recent windows (from the ledger)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from shared.model import format_ts
from shared.settings import Pipeline
from shared.windows import WindowState, due_end

__all__ = ["pipeline_status", "render_html"]


def pipeline_status(
    pipeline: Pipeline, states: Iterable[WindowState], now: datetime, *, recent: int = 20
) -> dict[str, Any]:
    """Summary of one pipeline (pure).

    ``watermark`` is the end of the contiguous run of done windows from the pipeline's
    start: everything before it has landed. ``lag`` is how far it trails the newest window
    that is due now; ``missing`` counts due windows not done yet (gaps included).
    """
    ordered = sorted(states, key=lambda s: s.window.start)
    counts = Counter(s.status for s in ordered)
    cfg = pipeline.window
    watermark = cfg.start
    for state in ordered:
        if state.window.end <= watermark:
            continue  # before the configured start (replayed history)
        if state.window.start != watermark or state.status != "done":
            break
        watermark = state.window.end
    due = due_end(cfg, now)
    due_windows = max(0, int((due - cfg.start) / cfg.size))
    done_due = sum(1 for s in ordered if s.status == "done" and s.window.end <= due)
    lag = max(0.0, (due - watermark).total_seconds())
    failed = [s for s in ordered if s.status == "failed"]
    return {
        "pipeline": pipeline.name,
        "enabled": pipeline.enabled,
        "window_size_s": int(cfg.size.total_seconds()),
        "counts": {k: counts.get(k, 0) for k in ("done", "running", "pending", "failed")},
        "rows": sum(s.rows for s in ordered),
        "bytes": sum(s.bytes for s in ordered),
        "quarantined": sum(s.quarantined for s in ordered),
        "watermark": format_ts(watermark),
        "due_until": format_ts(due),
        "lag_seconds": lag,
        "missing": max(0, due_windows - done_due),
        "failed": [_window(s) for s in failed[-recent:]],
        "recent": [_window(s) for s in ordered[-recent:]][::-1],
    }


def _window(state: WindowState) -> dict[str, Any]:
    return {
        "start": format_ts(state.window.start),
        "end": format_ts(state.window.end),
        "status": state.status,
        "attempts": state.attempts,
        "rows": state.rows,
        "bytes": state.bytes,
        "quarantined": state.quarantined,
        "outputs": [o.get("name") for o in state.outputs],
        "error": state.error,
        "finished_at": format_ts(state.finished_at) if state.finished_at else None,
    }


def render_html(report: dict[str, Any]) -> str:
    """A small self-contained status page (no scripts, escapes every value)."""
    from html import escape

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>insights-mover status</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0 2em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.failed{color:#b00}.done{color:#070}</style>",
        f"</head><body><h1>insights-mover</h1><p>generated {escape(str(report.get('now', '')))}</p>",
    ]
    for p in report.get("pipelines", []):
        c = p["counts"]
        parts.append(
            f"<h2>{escape(p['pipeline'])}</h2><p>watermark {escape(p['watermark'])} · lag {p['lag_seconds']:.0f}s · "
            f"missing {p['missing']} · done {c['done']} · running {c['running']} · pending {c['pending']} · "
            f"failed {c['failed']} · rows {p['rows']} · quarantined {p['quarantined']}</p>"
            "<table><tr><th>window</th><th>status</th><th>attempts</th><th>rows</th><th>bytes</th><th>error</th></tr>"
        )
        for w in p["recent"]:
            parts.append(
                f"<tr><td>{escape(w['start'])}</td><td class='{escape(w['status'])}'>{escape(w['status'])}</td>"
                f"<td>{w['attempts']}</td><td>{w['rows']}</td><td>{w['bytes']}</td><td>{escape(w['error'])}</td></tr>"
            )
        parts.append("</table>")
    for name, err in report.get("errors", {}).items():
        parts.append(f"<p class='failed'>{escape(name)}: {escape(err)}</p>")
    parts.append("</body></html>")
    return "".join(parts)
