"""``make fuzz``: a few hundred malformed requests and settings against the running app; none may hurt it.

Why: one bad request used to write a ledger entity the engine could not read back and
stop every pipeline; dates at the ends of the calendar, Unicode digits and bad bodies
answered 5xx. The rule is that a request is validated completely before anything is
written, and every bad one gets a 4xx with a reason.

What runs, on loopback, started and stopped here: Azurite, the query API emulator and
the function app's real decorated functions served over HTTP by ``devtools.funchost``
(as ``func start`` would). Then:

* ``requests`` malformed HTTP requests (``devtools.fuzz_cases``: bad JSON, wrong types,
  unknown and missing fields, calendar edges, reversed ranges, huge values and bodies,
  Unicode digits, injection strings, duplicated parameters, wrong methods and routes,
  bad ``Content-Length``), each sent on its own connection. Each must be answered 4xx
  with a JSON ``{"error": "<reason>"}``: no 5xx, no dropped connection, no 2xx;
* ``settings`` malformed settings environments: each must raise ``ConfigError`` with
  its problems, never another exception and never load;
* afterwards the app must be healthy: a valid replay moves its window, and the status
  (JSON and page) reports no pipeline error.

The last line printed is ``FUZZ {"requests": …, "settings": …, "failures": 0, …}``; the
exit status is non-zero on any failure. ``tests/functions/test_fuzz.py`` runs a small
version in ``make test``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.fuzz_cases import Request, request_cases, settings_cases

__all__ = ["FuzzReport", "app_env", "check_health", "main", "run_requests", "run_settings", "settings_doc"]

TOKEN = "fuzz-token-0123456789"  # noqa: S105 - the local emulator's token
APP_ID = "fuzz-app"
PIPELINE = "requests"


@dataclass
class FuzzReport:
    """What the suite saw: answers by status, and every case that broke a rule."""

    requests: int = 0
    settings: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "settings": self.settings,
            "statuses": dict(sorted(self.statuses.items())),
            "failures": len(self.failures),
        }


def send(host: str, port: int, request: Request, timeout: float = 60.0) -> tuple[int | None, bytes, str]:
    """One request on a fresh connection: (status, body, "") or (None, b"", why it was dropped)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request.raw(f"{host}:{port}"))
            response = http.client.HTTPResponse(sock, method=request.method)
            response.begin()
            return response.status, response.read(), ""
    except (OSError, http.client.HTTPException) as exc:
        return None, b"", f"dropped connection ({type(exc).__name__}: {exc})"


def judge(status: int | None, body: bytes, dropped: str) -> str | None:
    """Why an answer to a malformed request breaks the rule, or ``None``."""
    if status is None:
        return dropped
    if not 400 <= status < 500:
        return f"answered {status}: {body[:200]!r}"
    try:
        reason = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return f"{status} without a JSON reason: {body[:200]!r}"
    if not isinstance(reason, str) or not reason.strip():
        return f"{status} with an empty reason: {body[:200]!r}"
    return None


def run_requests(host: str, port: int, cases: Sequence[Request], report: FuzzReport) -> None:
    for case in cases:
        status, body, dropped = send(host, port, case)
        report.requests += 1
        report.statuses[status or 0] += 1
        problem = judge(status, body, dropped)
        if problem:
            report.failures.append(f"request {case.name}: {problem}")


def run_settings(cases: Sequence[tuple[str, dict[str, str]]], report: FuzzReport) -> None:
    from shared.errors import ConfigError
    from shared.settings import load_settings

    for what, env in cases:
        report.settings += 1
        try:
            load_settings(env)
        except ConfigError as exc:
            if not exc.problems or not all(isinstance(p, str) and p.strip() for p in exc.problems):
                report.failures.append(f"settings {what}: ConfigError without problems")
        except Exception as exc:  # the point of the suite: anything else is a bug
            report.failures.append(f"settings {what}: {type(exc).__name__}: {exc}")
        else:
            report.failures.append(f"settings {what}: accepted")


def settings_doc(endpoint: str, start: str, container: str, app_id: str = APP_ID) -> dict[str, Any]:
    """A valid pipelines document touching every section (the settings cases mutate it)."""
    source = {
        "kind": "app_insights",
        "app_id": app_id,
        "endpoint": endpoint,
        "query": "requests",
        "auth": {"kind": "token", "setting": "FUZZ_TOKEN"},
        "max_retries": 2,
        "timeout_seconds": 30,
    }
    window = {"size": "PT1H", "start": start, "delay": "PT5M", "max_per_tick": 4, "lease": "PT10M"}
    first = {"name": PIPELINE, "source": source, "window": window, "sink": {"container": container}}
    second = {
        "name": "traces-x",
        "source": source | {"query": "traces", "retention": "P30D"},
        "window": {"size": "PT15M", "start": start, "max_attempts": 3, "retry_backoff": "PT1M"},
        "columns": {"include": ["timestamp", "message"]},
        "sinks": [
            {"container": container, "format": "parquet", "compression": "zstd", "path": "{pipeline}/{window}"},
            {"kind": "table", "table": "fuzztraces", "connection_setting": "AzureWebJobsStorage"},
        ],
    }
    return {"pipelines": [first, second]}


def app_env(
    storage_conn: str, endpoint: str, suffix: str, start: str, *, app_id: str = APP_ID, token: str = TOKEN
) -> dict[str, str]:
    """App settings of the app under test: two pipelines on the emulator, a fresh ledger."""
    doc = settings_doc(endpoint, start, f"fuzz-{suffix}", app_id)
    return {
        "AzureWebJobsStorage": storage_conn,
        "FUZZ_TOKEN": token,
        "MOVER_PIPELINES": json.dumps(doc),
        "MOVER_LEDGER_TABLE": f"fuzzledger{suffix}",
        "MOVER_QUARANTINE_CONTAINER": f"fuzz-quarantine-{suffix}",
    }


def valid_window(now: datetime) -> tuple[datetime, datetime]:
    """A closed hour well inside retention: the one before the last due hour."""
    due = (now - timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0)
    return due - timedelta(hours=2), due - timedelta(hours=1)


def check_health(host: str, port: int, window: tuple[datetime, datetime], report: FuzzReport) -> None:
    """After the storm: a valid replay moves its window; status (JSON and page) shows no error."""
    start, end = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in window)
    body = json.dumps({"pipeline": PIPELINE, "start": start, "end": end, "mode": "inline"}).encode()
    status, answer, dropped = send(host, port, Request("valid replay", "POST", "/api/replay", body))
    results = json.loads(answer).get("results", []) if status == 200 else []
    if status != 200 or [r.get("outcome") for r in results] != ["done"]:
        report.failures.append(f"health: valid replay answered {status or dropped}: {answer[:300]!r}")
    status, answer, dropped = send(host, port, Request("status", "GET", "/api/status"))
    report_doc = json.loads(answer) if status == 200 else {}
    if status != 200 or report_doc.get("errors") != {} or len(report_doc.get("pipelines", [])) != 2:
        report.failures.append(f"health: status answered {status or dropped}: {answer[:300]!r}")
    status, answer, dropped = send(host, port, Request("page", "GET", "/api/status?format=html&recent=5"))
    if status != 200 or b"<html" not in answer.lower():
        report.failures.append(f"health: status page answered {status or dropped}")


@contextmanager
def serve(index: Any) -> Iterator[tuple[str, int]]:
    """The app's HTTP functions on a free loopback port (no timers: the suite drives every call)."""
    from devtools.funchost import LocalHost

    host = LocalHost(index, port=0)
    thread = threading.Thread(target=host.server.serve_forever, name="fuzz-http", daemon=True)
    thread.start()
    try:
        address = host.server.server_address
        yield str(address[0]), int(address[1])
    finally:
        host.server.shutdown()
        host.server.server_close()


def fuzz(index: Any, env: dict[str, str], *, requests: int, settings: int, seed: int, now: datetime) -> FuzzReport:
    """Run the suite against the app ``index`` whose settings are ``env`` (put in ``os.environ``)."""
    from shared.frontends import http as api

    rng = random.Random(seed)
    report = FuzzReport()
    window = valid_window(now)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    api.reset_engine(None)
    try:
        with serve(index) as (host, port):
            cases = request_cases(rng, requests, PIPELINE, (window[0].strftime(fmt), window[1].strftime(fmt)))
            run_requests(host, port, cases, report)
            check_health(host, port, window, report)
    finally:
        api.reset_engine(None)
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    run_settings(settings_cases(rng, settings, env, json.loads(env["MOVER_PIPELINES"])), report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--settings", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from devtools.ai_emulator import Emulator, EmulatorConfig
    from devtools.azurite import Azurite
    from devtools.funchost import index_app, load_app

    now = datetime.now(UTC)
    start = (now - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    with Azurite() as azurite:
        emu = Emulator(EmulatorConfig(app_id=APP_ID, token=TOKEN, api_key=None))
        emu.start()
        try:
            emu.generate("requests", start, now, count=2000, seed=args.seed)
            emu.generate("traces", start, now, count=2000, seed=args.seed + 1)
            env = app_env(azurite.connection_string, emu.url, "cli", start.strftime("%Y-%m-%dT%H:%M:%SZ"))
            os.environ.update(env)  # the function app reads its schedule when imported
            report = fuzz(
                index_app(load_app()), env, requests=args.requests, settings=args.settings, seed=args.seed, now=now
            )
        finally:
            emu.stop()
    for failure in report.failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print("FUZZ " + json.dumps(report.summary()))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
