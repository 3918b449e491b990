"""HTTP layer: routes, auth, throttling, fault injection and response writing.

``ThreadingHTTPServer`` (stdlib) is enough: a response is a few ``sendall`` calls of
pre-built bytes, so loopback throughput is bounded by the client, not by this server.
HTTP/1.1 keep-alive and ``TCP_NODELAY`` avoid per-request connection and Nagle costs.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import socket
import struct
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import orjson

from .control import handle_control
from .errors import (
    ApiError,
    bad_argument,
    forbidden,
    kql_error,
    method_not_allowed,
    not_found,
    status_error,
    throttled,
    unauthorized,
)
from .kql import KqlError
from .response import render
from .timeutil import parse_timespan_param
from .tokens import AUDIENCES, check_token, looks_like_jwt

if TYPE_CHECKING:
    from .emulator import EmulatorCore as Emulator

__all__ = ["EmulatorHTTPServer"]

log = logging.getLogger(__name__)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Threaded loopback server that remembers its connections so ``stop`` can close them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ai-emulator/1.0"
    sys_version = ""
    timeout = 300  # idle keep-alive connections give their thread back eventually
    server: EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- plumbing --------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, parts: list[bytes], headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(sum(len(p) for p in parts)))
        request_id = str(uuid.uuid4())
        self.send_header("x-ms-request-id", request_id)
        self.send_header("x-ms-correlation-request-id", request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        for part in parts:
            if part:
                self.wfile.write(part)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, [orjson.dumps(payload)], headers)

    def _send_error(self, err: ApiError) -> None:
        self._send_json(err.status, err.payload, err.headers)

    def _abort(self) -> None:
        """Close the connection with a TCP RST (SO_LINGER 0) instead of a response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    # --- routing ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        emu = self.server.emulator
        split = urlsplit(self.path)
        parts = [unquote(p) for p in split.path.split("/") if p]
        try:
            body = self._read_body()
            if parts[:1] == ["_emulator"]:
                emu.counters.add(control_requests=1)
                params = {k: v[-1] for k, v in parse_qs(split.query).items()}
                status, payload = handle_control(emu, method, parts[1:], params, body)
                self._send_json(status, payload)
                return
            if len(parts) == 4 and parts[0] == "v1" and parts[1] in ("apps", "workspaces") and (parts[3] == "query"):
                self._query(method, parts[1], parts[2], split.query, body)
                return
            raise not_found(f"The requested path '{split.path}' does not exist")
        except ApiError as err:
            self._send_error(err)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("emulator bug while serving %s %s", method, self.path)
            self._send_json(
                500,
                {"error": {"message": "Internal emulator error", "code": "InternalServerError"}},
            )

    def _authenticate(self, kind: str) -> str:
        """The caller's identity (rate limits are per identity) or an ``ApiError``.

        Accepts the dev key, the dev token, and (with ``token_key`` set) JWTs from the local
        managed-identity endpoint, checked like the service checks Entra tokens (``tokens``)."""
        cfg = self.server.emulator.config
        key = self.headers.get("x-api-key")
        auth = self.headers.get("Authorization")
        if key is None and auth is None:
            raise unauthorized()
        if key is not None and cfg.api_key and hmac.compare_digest(key.encode(), cfg.api_key.encode()):
            return "key:" + key
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and cfg.token and hmac.compare_digest(token.encode(), cfg.token.encode()):
                return "bearer:" + token
            if scheme.lower() == "bearer" and cfg.token_key and looks_like_jwt(token):
                return "oid:" + check_token(token, cfg.token_key, AUDIENCES[kind])
        raise forbidden()

    def _echo_credentials(self) -> ApiError:
        """A 400 whose text repeats the credentials the client sent (plain and URL-encoded)."""
        sent = {name: self.headers.get(name, "") for name in ("Authorization", "x-api-key")}
        text = "; ".join(f"{k}={v}" for k, v in sent.items())
        encoded = "&".join(f"{k}={quote(v, safe='')}" for k, v in sent.items())
        inner = {"code": "EchoedRequest", "message": f"upstream rejected ?{encoded}"}
        return ApiError(400, {"error": {"code": "BadRequest", "message": f"bad request ({text})", "innererror": inner}})

    def _query(self, method: str, kind: str, resource: str, raw_query: str, body: bytes) -> None:
        emu = self.server.emulator
        cfg = emu.config
        counters = emu.counters
        counters.add(requests=1)
        try:
            if method not in ("GET", "POST"):
                raise method_not_allowed(method)
            identity = self._authenticate(kind)
            expected = cfg.app_id if kind == "apps" else cfg.workspace_id
            if resource != expected:
                what = "application" if kind == "apps" else "workspace"
                raise not_found(f"The {what} '{resource}' could not be found")
            retry = emu.limiter.check(identity, cfg.rate_limit, cfg.rate_window)
            if retry is not None:
                counters.add(throttled_rate=1)
                raise throttled(retry)
            if not emu.gate.try_enter(cfg.max_concurrent):
                counters.add(throttled_concurrency=1)
                raise throttled(cfg.concurrency_retry_after)
            try:
                self._run_query(method, kind, raw_query, body)
            finally:
                emu.gate.leave()
        except ApiError as err:
            counters.status(err.status)
            counters.add(errors=1)
            if err.status == 429:
                counters.add(throttled=1)
            elif err.status in (401, 403):
                counters.add(auth_failures=1)
            elif err.status == 404:
                counters.add(not_found=1)
            elif err.status == 400:
                counters.add(bad_requests=1)
            self._send_error(err)

    def _run_query(self, method: str, kind: str, raw_query: str, body: bytes) -> None:
        emu = self.server.emulator
        cfg = emu.config
        fault = emu.faults.next()
        mode = ""
        if fault is not None:
            emu.counters.add(faults=1)
            if fault.delay > 0 and emu.stopping.wait(fault.delay):
                self._abort()
                return
            if isinstance(fault.status, int):
                raise status_error(fault.status, fault.retry_after)
            mode = fault.status
            if mode == "reset":
                emu.counters.add(resets=1, errors=1)
                self._abort()
                return
            if mode == "echo":
                raise self._echo_credentials()
        text, timespan = _query_args(method, raw_query, body)
        if fault is None:
            scoped = emu.faults.scoped_for(_leading_table(text), _span(timespan, emu.now_ticks()))
            if scoped is not None:
                emu.counters.add(faults=1)
                if isinstance(scoped.status, int):
                    raise status_error(scoped.status, scoped.retry_after)
                mode = scoped.status
        if mode in ("overflow", "warning"):
            emu.counters.add(**{mode + "s": 1})
        try:
            result = emu.execute("workspace" if kind == "workspaces" else "app", text, timespan)
        except KqlError as exc:
            raise kql_error(exc, text) from exc
        except ValueError as exc:
            raise bad_argument("InvalidTimespan", f"Invalid timespan '{timespan}': {exc}") from exc
        other = mode if mode in ("overflow", "warning") else ""
        out = render(result, cfg.max_rows, cfg.max_bytes, force_partial=mode == "partial", other=other)
        headers = {"x-emulator-row-count": str(out.rows)}
        latency = cfg.latency_ms + cfg.latency_per_1k_rows_ms * out.rows / 1000
        if latency > 0:  # the service's own time, spent while the query holds its concurrency slot
            emu.counters.add(latency_ms_total=round(latency))
            if emu.stopping.wait(latency / 1000):
                self._abort()
                return
        if mode == "truncate":
            emu.counters.add(resets=1, errors=1)
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(out.length))
            self.end_headers()
            self.wfile.write(b"".join(out.parts)[: max(1, out.length // 2)])
            self._abort()
            return
        # Count before sending: a client that got the response must see it in the stats.
        emu.counters.status(200)
        emu.counters.add(
            queries=1,
            rows_returned=out.rows,
            bytes_returned=out.length,
            partials=1 if out.partial else 0,
        )
        self._send(200, out.parts, headers)


def _leading_table(text: str) -> str:
    """The table a query starts with (``requests`` of ``requests | where …``); ``""`` for other forms."""
    match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", text)
    return match.group(1) if match else ""


def _span(timespan: str | None, now: int) -> tuple[int, int] | None:
    try:
        return parse_timespan_param(timespan, now) if timespan else None
    except ValueError:
        return None  # the query itself answers 400


def _query_args(method: str, raw_query: str, body: bytes) -> tuple[str, str | None]:
    """(query text, timespan) from the GET query string or the POST JSON body."""
    if method == "GET":
        params = parse_qs(raw_query)
        text = params.get("query", [""])[-1]
        timespan: str | None = params.get("timespan", [""])[-1] or None
    else:
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError as exc:
            raise bad_argument("InvalidRequestBody", f"The request body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise bad_argument("InvalidRequestBody", "The request body must be a JSON object")
        query, span = payload.get("query"), payload.get("timespan")
        if not isinstance(query, str):
            raise bad_argument("QueryValidationError", "The 'query' property is required")
        if span is not None and not isinstance(span, str):
            raise bad_argument("InvalidTimespan", "The 'timespan' property must be a string")
        text, timespan = query, span
    if not text.strip():
        raise bad_argument("QueryValidationError", "The 'query' property is required")
    return text, timespan or None
