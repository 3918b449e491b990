"""The app's own telemetry (OpenTelemetry): a span per window and the mover's metrics.

Everything OpenTelemetry lives here. ``configure(env)`` runs once per process at the edge
(function app, CLI): with ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set it starts the
``azure-monitor-opentelemetry`` distro, otherwise it does nothing and every call below goes
to OpenTelemetry's no-op providers (cheap, so the engine calls them unconditionally).
``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` (``ClientId=<id>;Authorization=AAD``, the
setting the Functions host reads too) makes the exporter send with that managed identity,
which Entra-only ingestion (local auth off) requires.

The distro's defaults would export a dependency span for every query and storage call and
every log record of every library; a mover that reads the same App Insights resource would
then move its own telemetry back in a loop that grows with its work. So ``configure`` keeps
only what is bounded per window: the window spans, the ``mover.*`` metrics and the engine's
own log records (logger ``shared``). See ``docs/telemetry.md``.

Metric names are shared with the alerts: ``mover.rows``, ``mover.window.duration``,
``mover.lag``, ``mover.windows.failed``, ``mover.quarantined``, ``mover.query.throttled``,
each with the attribute ``pipeline`` (the duration also with ``outcome``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, cast

from opentelemetry import metrics, trace

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.model import Window
    from shared.outcomes import SourceSummary, WindowResult
    from shared.settings import Pipeline

__all__ = [
    "AUTHENTICATION_SETTING",
    "INSTRUMENTATIONS_SETTING",
    "SCOPE",
    "configure",
    "configured",
    "ingestion_credential",
    "source_done",
    "throttled",
    "traced_window",
    "use_providers",
]

log = logging.getLogger(__name__)
SCOPE = "insights_mover"
CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"  # ClientId=<id>;Authorization=AAD
INSTRUMENTATIONS_SETTING = "MOVER_TELEMETRY_INSTRUMENTATIONS"  # comma list to turn back on, e.g. "httpx"
# The distro's library instrumentations: each would add a span per HTTP/storage call.
_INSTRUMENTATIONS = ("azure_sdk", "django", "fastapi", "flask", "httpx", "psycopg2", "requests", "urllib", "urllib3")
_QUERY_ATTR_MAX = 1024
P = ParamSpec("P")


class _Clocked(Protocol):
    clock: Callable[[], datetime]


@dataclass(frozen=True)
class _Instruments:
    tracer: trace.Tracer
    rows: metrics.Counter
    duration: metrics.Histogram
    lag: metrics._Gauge  # the synchronous gauge (its public name is still underscored)
    failed: metrics.Counter
    quarantined: metrics.Counter
    throttled: metrics.Counter

    @classmethod
    def build(cls, tracer: trace.Tracer, meter: metrics.Meter) -> _Instruments:
        return cls(
            tracer=tracer,
            rows=meter.create_counter("mover.rows", unit="{row}", description="Rows moved"),
            duration=meter.create_histogram("mover.window.duration", unit="s", description="Seconds per window run"),
            lag=meter.create_gauge("mover.lag", unit="s", description="Now minus the end of the last window done"),
            failed=meter.create_counter("mover.windows.failed", unit="{window}", description="Window runs that failed"),
            quarantined=meter.create_counter(
                "mover.quarantined", unit="{line}", description="Malformed source lines set aside"
            ),
            throttled=meter.create_counter(
                "mover.query.throttled", unit="{request}", description="Query API answers 429 (throttled)"
            ),
        )


_lock = threading.Lock()
_state: dict[str, Any] = {"configured": False, "exporting": False, "instruments": None}


def _instruments() -> _Instruments:
    current = _state["instruments"]
    if current is None:
        with _lock:
            current = _state["instruments"]
            if current is None:  # the global (proxy) providers: no-op until configure() sets real ones
                current = _Instruments.build(trace.get_tracer(SCOPE), metrics.get_meter(SCOPE))
                _state["instruments"] = current
    assert isinstance(current, _Instruments)
    return current


def use_providers(
    tracer_provider: trace.TracerProvider | None = None, meter_provider: metrics.MeterProvider | None = None
) -> None:
    """Send the mover's spans and metrics to these providers (tests: in-memory exporters);
    ``None`` goes back to the global ones. Process-wide."""
    tracer = tracer_provider.get_tracer(SCOPE) if tracer_provider else trace.get_tracer(SCOPE)
    meter = meter_provider.get_meter(SCOPE) if meter_provider else metrics.get_meter(SCOPE)
    with _lock:
        _state["instruments"] = _Instruments.build(tracer, meter)


def configured() -> bool:
    """Whether ``configure`` started exporting (to Azure Monitor) in this process."""
    return bool(_state["exporting"])


def configure(env: Mapping[str, str]) -> bool:
    """Start the Azure Monitor distro once per process when a connection string is set.

    Idempotent (a second call returns the first call's answer). Returns whether telemetry
    is exported. Never raises for a bad telemetry setup: the mover moves data without it.
    """
    with _lock:
        if _state["configured"]:
            return bool(_state["exporting"])
        _state["configured"] = True
        connection = env.get(CONNECTION_SETTING, "").strip()
        if not connection:
            return False
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor

            if env.get("FUNCTIONS_WORKER_RUNTIME"):  # the distro takes this only from the environment
                os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
            configure_azure_monitor(**distro_options(env))
        except Exception as exc:  # a broken exporter setup must not stop the mover
            log.warning("telemetry: Azure Monitor not configured: %s: %s", type(exc).__name__, exc)
            return False
        _state["exporting"] = True
        _state["instruments"] = None  # rebuilt on the providers the distro set
    own = _connection_field(connection, "ApplicationId")
    if own and own.lower() in {a.lower() for a in app_ids_read(env)}:
        log.warning(
            "telemetry: %s points at application %s, which a pipeline reads; the mover's own spans and"
            " logs will be moved with the data. Point it at a separate Application Insights resource"
            " (docs/telemetry.md)",
            CONNECTION_SETTING,
            own,
        )
    return True


def distro_options(env: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``configure_azure_monitor``: only bounded, per-window telemetry.

    With ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` the exporter gets the managed identity it
    names (``ingestion_credential``), read from ``env`` like every other setting here rather than
    left to the exporter's own look at the process environment.
    Library instrumentations are off (each query and storage call would be a span); those
    named in ``MOVER_TELEMETRY_INSTRUMENTATIONS`` are turned back on. Logs: only the engine's
    logger (``shared``), not the root (azure-core logs every request), and none inside the
    Functions host, which already sends the worker's logs to the same connection string. No live metrics or
    performance counters. Every window span is kept (one per window is little) unless
    ``OTEL_TRACES_SAMPLER``/``_ARG`` choose a sampler: the distro's default rate-limited
    sampler would drop spans at random.
    """
    from opentelemetry.sdk.resources import Resource

    wanted = {n.strip() for n in env.get(INSTRUMENTATIONS_SETTING, "").split(",") if n.strip()}
    options: dict[str, Any] = {} if env.get("OTEL_TRACES_SAMPLER") else {"sampling_ratio": 1.0}
    credential = ingestion_credential(env)
    if credential is not None:
        options["credential"] = credential
    return options | {
        "connection_string": env[CONNECTION_SETTING].strip(),
        "instrumentation_options": {name: {"enabled": name in wanted} for name in _INSTRUMENTATIONS},
        "logger_name": "shared",
        "enable_live_metrics": False,
        "enable_performance_counters": False,
        "resource": Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "insights-mover")}),
    }


def ingestion_credential(env: Mapping[str, str]) -> TokenCredential | None:
    """The managed identity ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` names, or None (key-based ingestion).

    ``ClientId=<id>;Authorization=AAD`` is a user-assigned identity, ``Authorization=AAD`` alone the
    system-assigned one. Anything else raises ``ValueError`` naming the setting (never its value):
    with local auth off the service rejects whatever is sent without a token, so a typo must be seen.
    """
    raw = env.get(AUTHENTICATION_SETTING, "").strip()
    if not raw:
        return None
    fields: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{AUTHENTICATION_SETTING} must read ClientId=<client id>;Authorization=AAD")
        fields[key.strip().lower()] = value.strip()
    if fields.get("authorization", "").lower() != "aad" or set(fields) - {"authorization", "clientid"}:
        raise ValueError(f"{AUTHENTICATION_SETTING} must read ClientId=<client id>;Authorization=AAD")
    from azure.identity import ManagedIdentityCredential

    client_id = fields.get("clientid")
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def _connection_field(connection: str, name: str) -> str:
    for part in connection.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def app_ids_read(env: Mapping[str, str]) -> list[str]:
    """App ids the pipelines read (best effort: the settings parser reports bad JSON, not this)."""
    try:
        raw = json.loads(env.get("MOVER_PIPELINES", "") or "{}")
        items = raw.get("pipelines", []) if isinstance(raw, dict) else raw
        return [str(p["source"]["app_id"]) for p in items if isinstance(p.get("source", {}).get("app_id"), str)]
    except (ValueError, AttributeError, TypeError, KeyError):
        return []


# -- the engine's hooks ------------------------------------------------------------------------
def traced_window(
    run: Callable[Concatenate[Any, Pipeline, Window, P], WindowResult],
) -> Callable[Concatenate[Any, Pipeline, Window, P], WindowResult]:
    """Decorates ``WindowWorker.run_window``: one span per window run and the per-window metrics.

    Span ``mover.window`` with ``mover.pipeline``, ``mover.window.start``/``end``, ``mover.rows``,
    ``mover.bytes``, ``mover.attempt``, ``mover.outcome`` (plus what ``source_done`` adds).
    A ``skipped`` window (not ours to run) records no metrics.
    """

    @functools.wraps(run)
    def wrapper(engine: Any, pipeline: Pipeline, window: Window, *args: P.args, **kwargs: P.kwargs) -> WindowResult:
        inst = _instruments()
        attrs = {"pipeline": pipeline.name}
        began = time.monotonic()
        with inst.tracer.start_as_current_span(
            "mover.window",
            attributes={
                "mover.pipeline": pipeline.name,
                "mover.window.start": window.start.isoformat(),
                "mover.window.end": window.end.isoformat(),
                "mover.source.kind": pipeline.source.kind,
            },
        ) as span:
            result = run(engine, pipeline, window, *args, **kwargs)
            span.set_attributes(
                {
                    "mover.rows": result.rows,
                    "mover.bytes": result.bytes,
                    "mover.attempt": result.attempt,
                    "mover.outcome": result.outcome,
                }
            )
            if result.outcome == "failed":
                span.set_status(trace.StatusCode.ERROR, result.error[:_QUERY_ATTR_MAX])
        if result.outcome == "skipped":
            return result
        inst.duration.record(time.monotonic() - began, {**attrs, "outcome": result.outcome})
        if result.rows:
            inst.rows.add(result.rows, attrs)
        if result.outcome == "failed":
            inst.failed.add(1, attrs)
        elif result.outcome == "done":
            clocked: _Clocked = engine
            inst.lag.set(max(0.0, (clocked.clock() - window.end).total_seconds()), attrs)
        return result

    return cast("Callable[Concatenate[Any, Pipeline, Window, P], WindowResult]", wrapper)


def source_done(pipeline: Pipeline, summary: SourceSummary) -> None:
    """What the source learned, on the current window span; quarantined lines counted."""
    span = trace.get_current_span()
    extra = summary.extra
    for key in ("queries", "splits", "planned"):
        if isinstance(extra.get(key), int):
            span.set_attribute(f"mover.source.{key}", extra[key])
    query = getattr(pipeline.source, "query", None)
    if isinstance(query, str):
        span.set_attribute("mover.source.query", query[:_QUERY_ATTR_MAX])
    if summary.quarantined:
        span.set_attribute("mover.quarantined", summary.quarantined)
        _instruments().quarantined.add(summary.quarantined, {"pipeline": pipeline.name})


def throttled(pipeline: str) -> None:
    """The query API answered 429 for ``pipeline`` (counted per answer, retried or not)."""
    _instruments().throttled.add(1, {"pipeline": pipeline})
