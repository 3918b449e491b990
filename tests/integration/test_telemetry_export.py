"""``telemetry.configure`` with the real Azure Monitor distro, exporting to a local ingestion endpoint.

Each case runs in its own process (the distro sets process-wide providers once): a window
span, an HTTP call and two log records; the local endpoint records the envelopes the
exporter posts to ``/v2.1/track``. Checked: the window span, the metrics and the engine's
log go out; the HTTP call and azure-core's log do not (no loop of per-call telemetry)
unless an instrumentation is turned back on; a pipeline reading the same resource is warned about.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = r"""
import logging, os
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx

from shared import telemetry
from shared.model import Window
from shared.runner import WindowResult

assert telemetry.configure(os.environ) and telemetry.configure(os.environ)  # idempotent
window = Window(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 2, 1, tzinfo=UTC))
pipeline = SimpleNamespace(name="req", source=SimpleNamespace(kind="app_insights", query="requests"))

def run(engine, pipeline, window):
    httpx.get(os.environ["PROBE_URL"])
    from azure.storage.blob import BlobClient

    try:  # an Azure SDK call (a storage call of the engine); its answer does not matter here
        BlobClient.from_blob_url(os.environ["PROBE_URL"] + "/container/blob").get_blob_properties()
    except Exception:
        pass
    logging.getLogger("shared.runner").warning("window moved")
    logging.getLogger("azure.core.pipeline").warning("azure-core noise")
    return WindowResult("req", window, "done", rows=7, bytes=70, attempt=1)

telemetry.traced_window(run)(SimpleNamespace(clock=lambda: window.end + timedelta(minutes=5)), pipeline, window)
from opentelemetry import _logs, metrics, trace
for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider()):
    getattr(provider, "force_flush", lambda: None)()  # no logger provider when logs are off
"""


class _Ingestion(BaseHTTPRequestHandler):
    envelopes: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path.endswith("/v2.1/track"):
            self.server.envelopes += json.loads(body)  # type: ignore[attr-defined]
        self._reply(json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}).encode())

    def do_GET(self) -> None:
        self._reply(b"{}")

    do_HEAD = do_GET

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def ingestion() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingestion)
    server.envelopes = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _export(server: ThreadingHTTPServer, **env: str) -> list[dict[str, Any]]:
    port = server.server_address[1]
    server.envelopes.clear()  # type: ignore[attr-defined]
    full = {
        **os.environ,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint=http://127.0.0.1:{port}/;"
            "ApplicationId=own-app"
        ),
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "PROBE_URL": f"http://127.0.0.1:{port}/probe",
        "MOVER_PIPELINES": json.dumps({"pipelines": [{"source": {"app_id": "other-app"}}]}),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return list(server.envelopes)  # type: ignore[attr-defined]


def _items(envelopes: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["data"]["baseData"] for e in envelopes if e["name"] == f"Microsoft.ApplicationInsights.{kind}"]


def test_only_window_spans_metrics_and_engine_logs_are_exported(ingestion):
    envelopes = _export(ingestion)
    dependencies = _items(envelopes, "RemoteDependency")
    assert [d["name"] for d in dependencies] == ["mover.window"]  # no span for the HTTP call
    [span] = dependencies
    assert span["properties"]["mover.pipeline"] == "req" and span["properties"]["mover.rows"] == "7"
    metrics = {m["name"]: m["value"] for item in _items(envelopes, "Metric") for m in item["metrics"]}
    assert metrics["mover.rows"] == 7 and metrics["mover.lag"] == 300.0 and "mover.window.duration" in metrics
    messages = [m["message"] for m in _items(envelopes, "Message")]
    assert "window moved" in messages and "azure-core noise" not in messages
    assert not any("points at application" in m for m in messages)
    roles = {e["tags"].get("ai.cloud.role") for e in envelopes if e["name"].endswith("RemoteDependency")}
    assert roles == {"insights-mover"}


def test_an_instrumentation_can_be_turned_back_on(ingestion):
    envelopes = _export(ingestion, MOVER_TELEMETRY_INSTRUMENTATIONS="httpx")
    names = sorted(d["name"] for d in _items(envelopes, "RemoteDependency"))
    assert names == ["GET /probe", "mover.window"], names
    envelopes = _export(ingestion, MOVER_TELEMETRY_INSTRUMENTATIONS=" azure_sdk ")
    names = sorted(d["name"] for d in _items(envelopes, "RemoteDependency"))
    assert names == ["BlobClient.get_blob_properties", "HEAD /probe/container/blob", "mover.window"], names


def test_exporting_into_a_resource_a_pipeline_reads_is_warned_about(ingestion):
    pipelines = json.dumps({"pipelines": [{"source": {"app_id": "OWN-APP"}}]})
    envelopes = _export(ingestion, MOVER_PIPELINES=pipelines)
    messages = [m["message"] for m in _items(envelopes, "Message")]
    assert any("points at application own-app, which a pipeline reads" in m for m in messages), messages


def test_inside_the_functions_host_logs_are_left_to_the_host(ingestion):
    envelopes = _export(ingestion, FUNCTIONS_WORKER_RUNTIME="python")
    assert [d["name"] for d in _items(envelopes, "RemoteDependency")] == ["mover.window"]
    assert _items(envelopes, "Message") == []  # the host already forwards the worker's logs
