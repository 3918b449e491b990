"""The app's own telemetry, read back with the OpenTelemetry SDK's in-memory exporters.

Real engine runs (Azurite + the query API emulator, blob exports for quarantine): the
window spans and the ``mover.*`` metrics must carry what actually moved, failed, was set
aside or throttled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from devtools import export_writer as ew
from shared.model import Window, format_ts
from shared.runtime import telemetry
from tests.conftest import T0, H, query_pipeline

NOW = T0 + 48 * H + timedelta(minutes=10)  # make_engine's default clock


@dataclass
class Recorded:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def windows(self) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == "mover.window"]

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, point) of every data point of metric ``name``."""
        data = self.reader.get_metrics_data()
        out: list[tuple[dict[str, Any], Any]] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return out

    def value(self, name: str, **attrs: str) -> float:
        """Sum (counters) or last value (gauge) of the points whose attributes include ``attrs``."""
        return sum(p.value for a, p in self.points(name) if attrs.items() <= a.items())


@pytest.fixture()
def recorded() -> Iterator[Recorded]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry.use_providers(tracer_provider, MeterProvider(metric_readers=[reader]))
    yield Recorded(spans, reader)
    telemetry.use_providers(None, None)


def _windows(first: int, count: int) -> list[Window]:
    return [Window(T0 + (first + i) * H, T0 + (first + i + 1) * H) for i in range(count)]


def test_window_spans_and_metrics_carry_what_moved(recorded, make_engine, emulator, unique):
    engine = make_engine([query_pipeline("req", "requests", emulator, f"out-{unique}")])
    pipeline = engine.settings.pipeline("req")
    windows = _windows(3, 3)
    results = [engine.worker.run_window(pipeline, w) for w in windows]
    expected = [emulator.expected_count("requests", w.start, w.end) for w in windows]
    assert [(r.outcome, r.rows) for r in results] == [("done", n) for n in expected] and all(expected)

    spans = recorded.windows()
    assert [(s.attributes["mover.window.start"], s.attributes["mover.rows"]) for s in spans] == [
        (w.start.isoformat(), n) for w, n in zip(windows, expected, strict=True)
    ]
    for span, result in zip(spans, results, strict=True):
        attrs = span.attributes or {}
        assert attrs["mover.pipeline"] == "req" and attrs["mover.outcome"] == "done"
        assert attrs["mover.bytes"] == result.bytes > 0 and attrs["mover.attempt"] == 1
        assert attrs["mover.source.queries"] >= 2  # the bin count, then the rows
        assert attrs["mover.source.query"] == "requests"
        assert span.status.status_code is not StatusCode.ERROR

    assert recorded.value("mover.rows", pipeline="req") == sum(expected)
    [(attrs, duration)] = recorded.points("mover.window.duration")
    assert attrs == {"pipeline": "req", "outcome": "done"} and duration.count == 3
    assert recorded.value("mover.lag", pipeline="req") == (NOW - windows[-1].end).total_seconds()
    assert recorded.points("mover.windows.failed") == []


def test_failed_window_is_counted_and_its_span_marked(recorded, make_engine, emulator, unique):
    engine = make_engine([query_pipeline("req", "requests", emulator, f"out-{unique}")])
    pipeline = engine.settings.pipeline("req")
    [window] = _windows(7, 1)
    emulator.faults.push(400)  # a bad request is fatal: no retry
    try:
        result = engine.worker.run_window(pipeline, window)
    finally:
        emulator.faults.clear()
    assert result.outcome == "failed" and "400" in result.error
    assert recorded.value("mover.windows.failed", pipeline="req") == 1
    [span] = recorded.windows()
    assert span.status.status_code is StatusCode.ERROR and (span.attributes or {})["mover.outcome"] == "failed"
    assert [a for a, _ in recorded.points("mover.window.duration")] == [{"pipeline": "req", "outcome": "failed"}]
    assert recorded.points("mover.rows") == [] and recorded.points("mover.lag") == []

    again = engine.worker.run_window(pipeline, window, force=True)  # the next attempt moves it
    assert again.outcome == "done" and recorded.value("mover.windows.failed", pipeline="req") == 1
    assert recorded.value("mover.rows", pipeline="req") == again.rows > 0


def test_throttled_answers_are_counted_per_pipeline(recorded, make_engine, emulator, unique):
    engine = make_engine(
        [
            query_pipeline("req", "requests", emulator, f"out-{unique}"),
            query_pipeline("dep", "dependencies", emulator, f"out-{unique}"),
        ]
    )
    before = emulator.stats.throttled
    emulator.faults.push(429, count=3, retry_after=0)
    try:
        result = engine.worker.run_window(engine.settings.pipeline("dep"), _windows(9, 1)[0])
    finally:
        emulator.faults.clear()
    assert result.outcome == "done" and result.rows > 0  # retried through the 429s
    assert emulator.stats.throttled - before == 3
    assert recorded.value("mover.query.throttled", pipeline="dep") == 3
    assert recorded.value("mover.query.throttled", pipeline="req") == 0


def test_quarantined_lines_are_counted(recorded, make_engine, storage_conn, unique):
    hour = T0 + 10 * H
    container = f"export-{unique}"
    export = BlobServiceClient.from_connection_string(storage_conn).get_container_client(container)
    ew.write_export_hour(export, "Requests", hour, blobs=4, lines_per_blob=5, seed=unique, bad_every=2)
    pipeline = {
        "name": "ce",
        "source": {"kind": "continuous_export", "container": container, "prefix": ew.export_prefix("Requests")},
        "window": {"size": "PT1H", "start": format_ts(hour), "delay": "PT5M", "max_per_tick": 10},
        "sink": {"container": f"out-{unique}"},
    }
    engine = make_engine([pipeline], now=hour + H + timedelta(minutes=10))
    report = engine.tick()
    state = engine.ledger.get("ce", Window(hour, hour + H))
    assert [(r.outcome, r.rows) for r in report.results] == [("done", 20)]
    assert state is not None and state.quarantined == 6
    assert recorded.value("mover.quarantined", pipeline="ce") == 6
    assert recorded.value("mover.rows", pipeline="ce") == 20
    [span] = recorded.windows()
    assert (span.attributes or {})["mover.quarantined"] == 6 and (span.attributes or {})["mover.source.kind"] == (
        "continuous_export"
    )


def test_configure_without_a_connection_string_exports_nothing():
    assert telemetry.configure({}) is False
    assert telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}) is False  # once
    assert telemetry.configured() is False
