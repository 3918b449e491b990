"""A small stand-in for the Functions host: index a v2 ``FunctionApp``, fire its timers, serve its
HTTP routes and listen on its queues.

Core Tools (``func start``) cannot be installed everywhere; this drives the very same
decorated functions through the ``azure.functions`` programming model: real
``TimerRequest``, ``HttpRequest`` and ``QueueMessage`` objects in, ``HttpResponse`` out.
Queue triggers get the host's semantics from ``host.json`` (``extensions.queues``: batch
size, ``maxDequeueCount`` then ``<queue>-poison``, visibility timeout after a failure).
Like ``func start``, it does not enforce function keys locally.

``python -m devtools.funchost --queues-only`` runs one more "instance": only the queue
triggers, until SIGTERM (the dev stack starts several, as the platform scales out).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.queue import QueueMessage as HostQueueMessage  # what the worker builds for a trigger
from azure.functions.timer import TimerRequest

from shared.engine.queue_loop import QueueLoop

__all__ = ["FunctionIndex", "HttpFunction", "LocalHost", "QueueFunction", "TimerFunction", "index_app", "queue_loop"]

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
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
class QueueFunction:
    name: str
    queue: str
    connection: str
    call: Callable[[func.QueueMessage], None]


@dataclass(frozen=True)
class FunctionIndex:
    timers: dict[str, TimerFunction]
    http: dict[str, HttpFunction]
    queues: dict[str, QueueFunction] = field(default_factory=dict)


def index_app(app: func.FunctionApp) -> FunctionIndex:
    """Index once per app object (``get_functions`` may only be called once)."""
    timers: dict[str, TimerFunction] = {}
    routes: dict[str, HttpFunction] = {}
    queues: dict[str, QueueFunction] = {}
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
        elif data["type"] == "queueTrigger":
            queues[name] = QueueFunction(name, str(data["queueName"]), str(data["connection"]), user)
    return FunctionIndex(timers, routes, queues)


def queue_settings(path: Path = ROOT / "host.json") -> dict[str, Any]:
    """``extensions.queues`` of host.json, with the host's defaults for what it leaves out."""
    defaults: dict[str, Any] = {"batchSize": 16, "maxDequeueCount": 5, "visibilityTimeout": "00:00:00"}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    queues: dict[str, Any] = data.get("extensions", {}).get("queues", {})
    return defaults | queues


def _seconds(hms: str) -> int:
    h, m, sec = (int(float(x)) for x in hms.split(":"))
    return h * 3600 + m * 60 + sec


def queue_loop(fn: QueueFunction, env: dict[str, str] | None = None) -> QueueLoop:
    """A listener that calls ``fn`` with real ``QueueMessage`` objects, as the host would."""
    from shared.runtime.storage import queue_client
    from shared.settings import StorageConfig

    environ = os.environ if env is None else env
    config = StorageConfig(setting=fn.connection, conn_string=environ[fn.connection].strip().rstrip(";"))
    opts = queue_settings()
    poison = None if fn.queue.endswith("-poison") else queue_client(config, f"{fn.queue}-poison")

    def handle(body: bytes, count: int) -> None:
        fn.call(HostQueueMessage(id=uuid.uuid4().hex, body=body, dequeue_count=count))  # type: ignore[no-untyped-call]

    return QueueLoop(
        queue_client(config, fn.queue),
        handle,
        poison=poison,
        max_dequeue=int(opts["maxDequeueCount"]),
        batch=int(opts["batchSize"]),
        new_batch_threshold=int(opts.get("newBatchThreshold", int(opts["batchSize"]) // 2)),
        retry_after=_seconds(str(opts["visibilityTimeout"])),
    )


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
                if self.command != "HEAD":  # a HEAD answer carries the headers only
                    self.wfile.write(body)

            do_GET = _serve
            do_POST = _serve
            # 405 from the route, as the host answers (HEAD included: never the server's own 501)
            do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

        return Handler

    def start(self, *, timer_every: float | None = None, queues: bool = True) -> None:
        """Serve HTTP, fire every timer (on its schedule, or every ``timer_every`` seconds) and,
        with ``queues``, listen on every queue trigger's queue."""
        serve = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)
        serve.start()
        self._threads.append(serve)
        for qfn in self.index.queues.values() if queues else ():
            loop = queue_loop(qfn)
            q = threading.Thread(target=loop.serve, args=(self.stop_event,), name=f"queue-{qfn.name}", daemon=True)
            q.start()
            self._threads.append(q)
        for fn in self.index.timers.values():
            t = threading.Thread(target=self._timer_loop, args=(fn, timer_every), name=f"timer-{fn.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _timer_loop(self, fn: TimerFunction, every: float | None) -> None:
        from shared.frontends.cli import next_fire

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


def serve_queues(argv: list[str] | None = None) -> int:
    """One more function app instance with only its queue triggers (until SIGTERM / Ctrl-C)."""
    parser = argparse.ArgumentParser(description="local Functions instance: queue triggers only")
    parser.add_argument("--queues-only", action="store_true", required=True)
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("azure", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    index = index_app(load_app())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [
        threading.Thread(target=queue_loop(fn).serve, args=(stop,), name=f"queue-{fn.name}", daemon=True)
        for fn in index.queues.values()
    ]
    for t in threads:
        t.start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        stop.set()
    for t in threads:
        t.join(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(serve_queues())
