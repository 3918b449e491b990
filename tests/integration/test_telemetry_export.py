"""``telemetry.configure`` with the real Azure Monitor distro, exporting to a local ingestion endpoint.

Each case runs in its own process (the distro sets process-wide providers once): a window
span, an HTTP call and two log records; the local endpoint records the envelopes the
exporter posts to ``/v2.1/track``. Checked: the window span, the metrics and the engine's
log go out; the HTTP call and azure-core's log do not (no loop of per-call telemetry)
unless an instrumentation is turned back on; a pipeline reading the same resource is warned about.
With local auth off the endpoint takes only envelopes that carry a token of the managed identity
(``devtools.identity``'s local token endpoint signs it), as Entra-only ingestion does.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.identity import IdentityEndpoint, Principal
from shared.runtime import telemetry

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-ingestion-signing-key-0123456789"
UAI = Principal("eeeeeeee-0000-4000-8000-00000000000e", "ffffffff-0000-4000-8000-00000000000f", "uai-mover")
AUDIENCE = "https://monitor.azure.com/"  # the exporter asks for https://monitor.azure.com//.default
SCRIPT = r"""
import logging, os
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx

from shared.runtime import telemetry
from shared.model import Window
from shared.app import WindowResult

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
    logging.getLogger("shared.engine.worker").warning("window moved")
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
            items = json.loads(body)
            if self.server.token_key and not self._authorized():  # type: ignore[attr-defined]
                self.server.rejected += 1  # type: ignore[attr-defined]
                error = {"index": 0, "statusCode": 401, "message": "local authentication is disabled"}
                self._reply(
                    json.dumps({"itemsReceived": len(items), "itemsAccepted": 0, "errors": [error]}).encode(), 401
                )
                return
            self.server.envelopes += items  # type: ignore[attr-defined]
        self._reply(json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}).encode())

    def _authorized(self) -> bool:
        """Entra-only ingestion: a bearer token signed by the local identity endpoint, for Azure Monitor."""
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme != "Bearer":
            return False
        try:
            claims = jwt.decode(token, self.server.token_key, algorithms=["HS256"], audience=AUDIENCE)  # type: ignore[attr-defined]
        except jwt.InvalidTokenError:
            return False
        self.server.callers.append(claims["appid"])  # type: ignore[attr-defined]
        return True

    def do_GET(self) -> None:
        self._reply(b"{}")

    do_HEAD = do_GET

    def _reply(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA (the exporter sends tokens over HTTPS only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "ingestion.pem", directory / "ingestion.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _ingestion_server() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingestion)
    server.scheme = "http"  # type: ignore[attr-defined]
    server.ca_file = None  # type: ignore[attr-defined]
    server.envelopes = []  # type: ignore[attr-defined]
    server.token_key = None  # type: ignore[attr-defined]  # set: local auth off, a token is required
    server.rejected = 0  # type: ignore[attr-defined]
    server.callers = []  # type: ignore[attr-defined]  # appid of each accepted token
    return server


@pytest.fixture()
def ingestion() -> Iterator[ThreadingHTTPServer]:
    yield from _serve(_ingestion_server())


@pytest.fixture()
def entra_ingestion(tmp_path: Path) -> Iterator[ThreadingHTTPServer]:
    """Entra-only ingestion (local auth off): HTTPS, and only envelopes with a managed-identity token get in."""
    server = _ingestion_server()
    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.scheme, server.ca_file, server.token_key = "https", str(cert_file), KEY  # type: ignore[attr-defined]
    yield from _serve(server)


def _export(server: ThreadingHTTPServer, **env: str) -> list[dict[str, Any]]:
    """One process: configure, one window, flush. Its own temp dir, so envelopes the exporter keeps
    for a retry (after a refusal) are never sent again by a later case."""
    base = f"{server.scheme}://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    server.envelopes.clear()  # type: ignore[attr-defined]
    ca_file = server.ca_file  # type: ignore[attr-defined]
    trust = {"REQUESTS_CA_BUNDLE": ca_file, "SSL_CERT_FILE": ca_file} if ca_file else {}
    with tempfile.TemporaryDirectory(prefix="mover-telemetry-") as tmp:
        return _run_export(server, {**trust, "TMPDIR": tmp}, base, env)


def _run_export(server: ThreadingHTTPServer, extra: dict[str, str], base: str, env: dict[str, str]) -> list[Any]:
    full = {
        **os.environ,
        **extra,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint={base}/;ApplicationId=own-app"
        ),
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "PROBE_URL": f"{base}/probe",
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


@pytest.fixture()
def identity() -> Iterator[IdentityEndpoint]:
    """The platform's managed-identity endpoint, knowing the template's user-assigned identity."""
    with IdentityEndpoint(KEY, user_assigned={UAI.client_id: UAI}) as endpoint:
        yield endpoint


def test_with_local_auth_off_the_exporter_sends_with_the_managed_identity(entra_ingestion, identity):
    ingestion = entra_ingestion
    auth = f"ClientId={UAI.client_id};Authorization=AAD"  # what infra/resources.bicep sets
    envelopes = _export(ingestion, APPLICATIONINSIGHTS_AUTHENTICATION_STRING=auth, **identity.env())
    metrics = {m["name"] for item in _items(envelopes, "Metric") for m in item["metrics"]}
    assert {"mover.lag", "mover.rows"} <= metrics  # what the lag alert reads got in
    assert [d["name"] for d in _items(envelopes, "RemoteDependency")] == ["mover.window"]
    assert ingestion.rejected == 0
    assert ingestion.callers and set(ingestion.callers) == {UAI.client_id}
    assert set(identity.issued) == {UAI.client_id}


def test_with_local_auth_off_nothing_gets_in_without_the_identity(entra_ingestion):
    assert _export(entra_ingestion) == []
    assert entra_ingestion.rejected > 0  # the metrics were sent, and refused: the alerts would stay silent


def test_a_malformed_authentication_string_is_reported_and_exports_nothing(ingestion):
    port = ingestion.server_address[1]
    env = {
        **os.environ,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey=k;IngestionEndpoint=http://127.0.0.1:{port}/",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=secret-looking-value;Authorization=Key",
    }
    done = subprocess.run(
        [sys.executable, "-c",
         "import os; from shared.runtime import telemetry; print(telemetry.configure(os.environ))"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING must read ClientId=<client id>;Authorization=AAD" in done.stderr
    assert "secret-looking-value" not in done.stderr


@pytest.mark.parametrize(
    ("value", "client_id"),
    [(f"ClientId={UAI.client_id};Authorization=AAD", UAI.client_id), ("authorization=aad;", None)],
    ids=["user-assigned", "system-assigned"],
)
def test_the_credential_is_the_identity_the_setting_names(identity, monkeypatch, value, client_id):
    for name, setting in identity.env().items():
        monkeypatch.setenv(name, setting)  # the credential reads the platform's variables when built
    credential = telemetry.ingestion_credential({telemetry.AUTHENTICATION_SETTING: value})
    assert credential is not None
    token = credential.get_token("https://monitor.azure.com//.default").token
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["appid"] == (client_id or identity.system.client_id)


@pytest.mark.parametrize(
    "value", ["Authorization=Key", "ClientId;Authorization=AAD", "ClientId=x", "Foo=1;Authorization=AAD"]
)
def test_a_malformed_authentication_string_is_refused(value):
    with pytest.raises(ValueError, match="APPLICATIONINSIGHTS_AUTHENTICATION_STRING must read"):
        telemetry.ingestion_credential({telemetry.AUTHENTICATION_SETTING: value})
    assert telemetry.ingestion_credential({}) is None
    assert "credential" not in telemetry.distro_options(
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=k"}
    )
