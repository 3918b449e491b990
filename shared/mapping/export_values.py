"""Value rules of the Export Data Model: ticks, success flags, severity, the full url (pure)."""

from __future__ import annotations

from typing import Any

from shared.mapping._build import Getter
from shared.mapping.values import performance_bucket, to_real, to_severity, to_str

__all__ = [
    "TICKS_PER_MS",
    "availability_success",
    "bucket",
    "duration",
    "sev",
    "success",
    "ticks_to_ms",
    "true_false",
    "url",
]

TICKS_PER_MS = 10_000


def ticks_to_ms(value: Any) -> float | None:
    """A duration metric (``{"value": ticks}`` or a bare number of ticks) in milliseconds."""
    if value.__class__ is dict:
        value = value.get("value")
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, int | float):
        value = to_real(value)
        if value is None:
            return None
    return float(value) / TICKS_PER_MS


def duration(key: str) -> Getter:
    def get(item: dict[str, Any]) -> float | None:
        return ticks_to_ms(item.get(key))

    return get


def bucket(key: str) -> Getter:
    def get(item: dict[str, Any]) -> str | None:
        return performance_bucket(ticks_to_ms(item.get(key)))

    return get


def true_false(value: Any) -> str | None:
    """Classic ``success`` in requests/dependencies: the strings ``True``/``False``."""
    flag = value if value.__class__ is bool else None
    if flag is None and value is not None:
        text = str(value).strip().lower()
        flag = True if text in ("true", "1") else False if text in ("false", "0") else None
    return None if flag is None else ("True" if flag else "False")


def success(item: dict[str, Any]) -> str | None:
    return true_false(item.get("success"))


def availability_success(item: dict[str, Any]) -> str | None:
    """Classic availabilityResults.success is ``"1"``/``"0"``: from ``result`` (Pass/Fail),
    else ``availabilityMetric.value`` (1.0/0.0)."""
    result = item.get("result")
    if isinstance(result, str) and result:
        return "1" if result.strip().lower() in ("pass", "passed", "true", "success") else "0"
    metric = item.get("availabilityMetric")
    value = to_real(metric.get("value") if metric.__class__ is dict else metric)
    if value is None:
        flag = true_false(item.get("success"))
        return None if flag is None else ("1" if flag == "True" else "0")
    return "1" if value >= 1.0 else "0"


def url(item: dict[str, Any]) -> str | None:
    """The full URL, as the query API has it. Exported requests often hold only the path in
    ``url``; then it is rebuilt from ``urlData`` (``protocol``/``scheme`` if given, else
    ``https``; ``host``, with ``port`` when given; the path, else ``urlData.base``)."""
    url = item.get("url")
    url = None if url is None else to_str(url)
    if url and "://" in url:
        return url
    data = item.get("urlData")
    if not isinstance(data, dict):
        return url or None
    host = data.get("host")
    if not isinstance(host, str) or not host:
        return url or None
    path = url or data.get("base") or ""
    if not isinstance(path, str):
        path = to_str(path) or ""
    if path and not path.startswith("/"):
        path = "/" + path
    scheme = data.get("protocol") or data.get("scheme") or "https"
    port = data.get("port")
    netloc = f"{host}:{port}" if port not in (None, "", 80, 443, "80", "443") and ":" not in host else host
    return f"{str(scheme).rstrip(':/')}://{netloc}{path}"


def sev(item: dict[str, Any]) -> int | None:
    return to_severity(item.get("severityLevel"))
