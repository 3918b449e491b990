"""A window's bounds as KQL and as the request ``timespan`` (pure): event time or ingestion time.

``window_by: event`` (the default) bounds a window by the table's time column: the query gets
``| where t >= start and t < end`` appended and the request's ``timespan`` is the window. A row
the service commits after the window was moved is only picked up by a re-sweep.

``window_by: ingestion`` bounds it by ``ingestion_time()`` — when the service committed the row
and it became queryable. Every row has exactly one such time, so every row lands in exactly one
window whatever its event time, and a window closed longer than the commit latency never gains a
row. Two service facts shape the text:

- ``ingestion_time()`` has a value only in the context of a table (null after ``summarize``,
  ``join`` …), so the bound goes right after the query's leading table, before the user's
  operators; the bin of a count comes after them, so those operators must keep table rows
  (``where``, ``extend``, ``project-away`` …).
- The query API's ``timespan`` filters the *time column*, not ingestion time. A row committed
  in the window may carry an older event time (an SDK that buffered offline) or, from a skewed
  client clock, a newer one, so the timespan reaches ``max_event_lag`` before the window and
  ``max_event_lead`` after it. Rows beyond that are not returned: the documented bound.
"""

from __future__ import annotations

from shared.model import Window, format_ts
from shared.settings import QuerySourceConfig
from shared.settings.fields import TABLE_HEAD

__all__ = ["INGESTION_TIME", "TABLE_HEAD", "bin_expression", "bounded_query", "split_table", "timespan"]

INGESTION_TIME = "ingestion_time()"


def split_table(query: str) -> tuple[str, str]:
    """``(table, rest)`` of a query starting with its table (``rest`` begins with ``|`` or is empty).

    Raises ``ValueError`` when the query does not start with a table name (``let``, ``union`` …)."""
    match = TABLE_HEAD.match(query)
    if match is None:
        raise ValueError(f"query does not start with a table name: {query[:60]!r}")
    return match.group(1), (match.group(2) or "").strip()


def _where(column: str, window: Window) -> str:
    return f"| where {column} >= datetime({format_ts(window.start)}) and {column} < datetime({format_ts(window.end)})"


def bounded_query(config: QuerySourceConfig, window: Window) -> str:
    """The pipeline's KQL restricted to the rows of ``[start, end)`` (event or ingestion time)."""
    if config.window_by != "ingestion":
        return f"{config.query}\n{_where(config.time_column, window)}"
    table, rest = split_table(config.query)
    bounded = f"{table}\n{_where(INGESTION_TIME, window)}"
    return f"{bounded}\n{rest}" if rest else bounded


def bin_expression(config: QuerySourceConfig) -> str:
    """What a count bins on: the time column, or ``ingestion_time()`` for ingestion windows."""
    return INGESTION_TIME if config.window_by == "ingestion" else config.time_column


def timespan(config: QuerySourceConfig, window: Window) -> str:
    """The request's ``timespan`` (ISO 8601 ``start/end`` on the time column) for ``window``:
    the window itself, or for ingestion windows the window widened by the event-time bounds."""
    if config.window_by != "ingestion":
        return f"{format_ts(window.start)}/{format_ts(window.end)}"
    return f"{format_ts(window.start - config.max_event_lag)}/{format_ts(window.end + config.max_event_lead)}"
