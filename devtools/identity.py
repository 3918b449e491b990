"""A local managed-identity token endpoint speaking the App Service / Functions protocol.

On App Service and Azure Functions the platform sets ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER``; azure-identity's ``ManagedIdentityCredential`` (through MSAL) then asks::

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource={scope minus /.default}[&client_id=…]
    X-IDENTITY-HEADER: {IDENTITY_HEADER}

and gets ``{"access_token", "expires_on" (epoch seconds, a string), "resource", "token_type",
"client_id"}``. This endpoint answers the same way with HS256-signed JWTs (``aud`` = the
resource, ``exp``, ``oid``/``appid``/``tid``) that the query API emulator checks with the same
key (``EmulatorConfig.token_key``), so the Entra / managed-identity path runs end to end
locally. Errors are the platform's ``{"statusCode", "message", "correlationId"}`` bodies: a
missing or wrong header → 401, a user-assigned ``client_id`` it does not know → 400
"Unable to load the proper Managed Identity.", a missing resource or other api-version → 400.

``lifetime`` (seconds, changeable while running) sets how long tokens live; clients refresh
tokens with less than 5 minutes left, so ``lifetime=300`` makes every token request a refresh.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import orjson

__all__ = ["API_VERSION", "IdentityEndpoint", "Principal"]

API_VERSION = "2019-08-01"
PATH = "/msi/token"
TENANT = "72f988bf-0000-4000-8000-000000000001"


@dataclass(frozen=True)
class Principal:
    """One managed identity: its client (application) id and object (principal) id."""

    client_id: str
    object_id: str
    name: str = ""


class IdentityEndpoint:
    """The token endpoint on a loopback port; ``env()`` gives the variables a Functions host sets."""

    def __init__(
        self,
        key: str,
        *,
        system: Principal | None = None,
        user_assigned: Mapping[str, Principal] | None = None,
        lifetime: float = 3600.0,
        header: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.key = key
        self.system = system or Principal(str(uuid.uuid4()), str(uuid.uuid4()), "system-assigned")
        self.user_assigned = {k.lower(): v for k, v in (user_assigned or {}).items()}
        self.lifetime = lifetime
        self.header = header or secrets.token_hex(16)
        self._lock = threading.Lock()
        self.issued: Counter[str] = Counter()  # tokens issued per client id
        self.rejected: Counter[int] = Counter()  # refusals per HTTP status
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{PATH}"

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header}

    def start(self) -> IdentityEndpoint:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="identity-endpoint", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> IdentityEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def total_issued(self) -> int:
        with self._lock:
            return sum(self.issued.values())

    def token(self, resource: str, principal: Principal, *, lifetime: float | None = None) -> tuple[str, int]:
        """A signed token for ``principal`` with audience ``resource``: (token, expires_on)."""
        now = int(time.time())
        expires = now + int(self.lifetime if lifetime is None else lifetime)
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{TENANT}/",
            "iat": now,
            "nbf": now,
            "exp": expires,
            "oid": principal.object_id,
            "sub": principal.object_id,
            "appid": principal.client_id,
            "tid": TENANT,
            "idtyp": "app",
            "uti": uuid.uuid4().hex,  # every token differs, even two in the same second
        }
        return jwt.encode(claims, self.key, algorithm="HS256"), expires

    def answer(self, params: Mapping[str, str], header: str | None) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for one token request; the protocol without the HTTP."""
        if header is None or not secrets.compare_digest(header.encode(), self.header.encode()):
            return self._refuse(401, "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER.")
        if params.get("api-version") != API_VERSION:
            return self._refuse(400, f"Unsupported api-version '{params.get('api-version', '')}'.")
        resource = params.get("resource", "").strip()
        if not resource:
            return self._refuse(400, "The 'resource' parameter is required.")
        client_id = params.get("client_id")
        if client_id is not None or params.get("object_id") or params.get("mi_res_id"):
            principal = self.user_assigned.get((client_id or "").lower())
            if principal is None:
                return self._refuse(400, "Unable to load the proper Managed Identity.")
        else:
            principal = self.system
        token, expires = self.token(resource, principal)
        with self._lock:
            self.issued[principal.client_id] += 1
        return 200, {
            "access_token": token,
            "expires_on": str(expires),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": principal.client_id,
        }

    def _refuse(self, status: int, message: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.rejected[status] += 1
        return status, {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], endpoint: IdentityEndpoint) -> None:
        self.endpoint = endpoint
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        if split.path.rstrip("/") != PATH:
            self._send(404, {"statusCode": 404, "message": f"Not found: {split.path}"})
            return
        params = {k: v[-1] for k, v in parse_qs(split.query).items()}
        status, body = self.server.endpoint.answer(params, self.headers.get("X-IDENTITY-HEADER"))
        self._send(status, body)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = orjson.dumps(body)
        with contextlib.suppress(ConnectionError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
