"""A small stand-in for the Functions host: index a v2 ``FunctionApp``, fire its timers, serve its HTTP routes.

Core Tools (``func start``) cannot be installed everywhere; this drives the very same
decorated functions through the ``azure.functions`` programming model: real
``TimerRequest`` and ``HttpRequest`` objects in, ``HttpResponse`` out. Like
``func start``, it does not enforce function keys locally.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.timer import TimerRequest

__all__ = ["FunctionIndex", "HttpFunction", "LocalHost", "TimerFunction", "index_app"]

log = logging.getLogger(__name__)
_MAX_REQUEST = 100 * 1024 * 1024  # the Functions host's request size limit


@dataclass(frozen=True)
class TimerFunction:
    name: str
    schedule: str
    run_on_startup: bool
    call: Callable[[func.TimerRequest], None]


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    methods: tuple[str, ...]
    auth_level: str
    call: Callable[[func.HttpRequest], func.HttpResponse]


@dataclass(frozen=True)
class FunctionIndex:
    timers: dict[str, TimerFunction]
    http: dict[str, HttpFunction]


def index_app(app: func.FunctionApp) -> FunctionIndex:
    """Index once per app object (``get_functions`` may only be called once)."""
    timers: dict[str, TimerFunction] = {}
    routes: dict[str, HttpFunction] = {}
    for fn in app.get_functions():
        trigger: Any = fn.get_trigger()
        data = trigger.get_dict_repr()
        user = fn.get_user_function()
        name = str(fn.get_function_name())
        if data["type"] == "timerTrigger":
            timers[name] = TimerFunction(name, data["schedule"], bool(data.get("runOnStartup", False)), user)
        elif data["type"] == "httpTrigger":
            methods = tuple(str(m).upper() for m in data.get("methods") or ("GET", "POST"))
            level = str(data.get("authLevel", "FUNCTION"))
            routes[str(data.get("route") or name)] = HttpFunction(
                name, str(data.get("route") or name), methods, level, user
            )
    return FunctionIndex(timers, routes)


def load_app(module: str = "function_app") -> func.FunctionApp:
    mod = importlib.import_module(module)
    app = mod.app
    assert isinstance(app, func.FunctionApp)
    return app


def fire_timer(fn: TimerFunction, *, past_due: bool = False) -> None:
    fn.call(
        TimerRequest(
            past_due=past_due, schedule={"AdjustForDST": True}, schedule_status={"Last": datetime.now(UTC).isoformat()}
        )
    )


class LocalHost:
    """HTTP on ``host:port`` under ``/api/<route>`` and a timer thread per schedule."""

    def __init__(self, index: FunctionIndex, *, host: str = "127.0.0.1", port: int = 7071) -> None:
        self.index = index
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self._threads: list[threading.Thread] = []
        self.stop_event = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        index = self.index

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                route = parts.path.removeprefix("/api/").strip("/")
                fn = index.http.get(route)
                if fn is None or not parts.path.startswith("/api/"):
                    self._send(404, b'{"error": "no such function"}', "application/json")
                    return
                if self.command not in fn.methods:
                    self._send(405, b'{"error": "method not allowed"}', "application/json")
                    return
                raw_length = (self.headers.get("Content-Length") or "0").strip()
                if not (raw_length.isascii() and raw_length.isdigit()):
                    self.close_connection = True  # the body's end is unknown: this connection is done
                    self._send(400, b'{"error": "bad Content-Length"}', "application/json")
                    return
                if int(raw_length) > _MAX_REQUEST:
                    self.close_connection = True
                    self._send(413, b'{"error": "request body over 100 MB"}', "application/json")
                    return
                length = int(raw_length)
                body = self.rfile.read(length) if length else b""
                request = func.HttpRequest(
                    method=self.command,
                    url=f"http://{self.headers.get('Host', 'localhost')}{self.path}",
                    headers=dict(self.headers.items()),
                    params=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    route_params={},
                    body=body,
                )
                response = fn.call(request)
                self._send(response.status_code, response.get_body(), response.mimetype or "text/plain")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _serve
            do_POST = _serve
            do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve  # 405 from the route, as the host answers

        return Handler

    def start(self, *, timer_every: float | None = None) -> None:
        """Serve HTTP and fire every timer (on its schedule, or every ``timer_every`` seconds)."""
        serve = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)
        serve.start()
        self._threads.append(serve)
        for fn in self.index.timers.values():
            t = threading.Thread(target=self._timer_loop, args=(fn, timer_every), name=f"timer-{fn.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _timer_loop(self, fn: TimerFunction, every: float | None) -> None:
        from shared.__main__ import next_fire

        first = True
        while not self.stop_event.is_set():
            if not first or fn.run_on_startup or every:
                try:
                    fire_timer(fn)
                except Exception:
                    log.exception("timer %s failed", fn.name)
            first = False
            now = datetime.now(UTC)
            wait = every if every else (next_fire(fn.schedule, now) - now).total_seconds()
            self.stop_event.wait(max(0.0, wait))

    def stop(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()
